/* The detector must be right on the generator's own clips, else the
 * adherence figures of test_model mean nothing. Input: clips rendered by
 * mkfixtures.py (the held-out prompts' ground truth, plus growing,
 * shrinking and still objects). */
#include "../t.h"
#include "detect.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CLIPS.bin\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    T_CHECK(f != NULL, "cannot open %s", argv[1]);
    if (!f)
        T_DONE();
    int n = 0, ok_c = 0, ok_m = 0;
    int w, h, t;
    char col[32], mot[32];
    while (fscanf(f, "%d %d %d %31s %31s", &w, &h, &t, col, mot) == 5 && fgetc(f) == '\n') {
        size_t sz = (size_t)w * h * t * 3;
        uint8_t *v = malloc(sz);
        if (!v || fread(v, 1, sz, f) != sz) {
            T_CHECK(0, "clip %d truncated", n);
            free(v);
            break;
        }
        td_result r;
        T_CHECK(td_detect(v, w, h, t, &r) == 0, "clip %d", n);
        int want_c = td_colour_index(col), want_m = td_motion_index(mot);
        T_CHECK(want_c >= 0 && want_m >= 0, "clip %d: unknown label %s %s", n, col, mot);
        ok_c += r.colour == want_c;
        ok_m += r.motion == want_m;
        T_CHECK(r.colour == want_c, "clip %d (%dx%dx%d): colour %s, want %s", n, w, h, t,
                td_colour_name(r.colour), col);
        T_CHECK(r.motion == want_m, "clip %d (%dx%dx%d): motion %s (dx %.1f dy %.1f area x%.2f), "
                "want %s", n, w, h, t, td_motion_name(r.motion), r.dx, r.dy, r.area_ratio, mot);
        /* the same clip with its frames reversed moves the other way */
        if (want_m < TD_STILL) {
            size_t fs = (size_t)w * h * 3;
            uint8_t *rv = malloc(sz);
            if (rv) {
                for (int i = 0; i < t; i++)
                    memcpy(rv + i * fs, v + (size_t)(t - 1 - i) * fs, fs);
                T_CHECK(td_detect(rv, w, h, t, &r) == 0 && r.motion == (want_m + 4) % 8,
                        "clip %d reversed: motion %s", n, td_motion_name(r.motion));
                free(rv);
            }
        }
        free(v);
        n++;
    }
    fclose(f);
    T_CHECK(n >= 20, "only %d clips read", n);
    printf("detector on %d generator clips: colour %d/%d, motion %d/%d\n", n, ok_c, n, ok_m, n);

    /* an empty clip has no object */
    uint8_t flat[8 * 8 * 3 * 2];
    memset(flat, 90, sizeof(flat));
    td_result r;
    T_CHECK(td_detect(flat, 8, 8, 2, &r) == 0 && r.colour == -1 && r.motion == TD_NONE, "flat clip");
    T_CHECK(td_detect(NULL, 8, 8, 2, &r) == -1, "NULL clip");
    T_DONE();
}
