/* The public C API as a program using the installed library sees it: linked
 * against the shared libvdit with only vdit/vdit.h. Covers what the core
 * itself provides (version, errors, stages, parameter defaults, clips); the
 * model and context calls are tested with the pipeline. */
#include <stdio.h>
#include <string.h>

#include "vdit/vdit.h"

static int failed, checks;
#define CHECK(c, ...)                                                        \
    do {                                                                     \
        checks++;                                                            \
        if (!(c)) {                                                          \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #c);   \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

int main(void)
{
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", VDIT_VERSION_MAJOR, VDIT_VERSION_MINOR,
             VDIT_VERSION_PATCH);
    CHECK(!strcmp(vdit_version(), want), "version %s, header says %s", vdit_version(), want);

    /* every code has its own message; others are "unknown" */
    for (int e = 0; e > -VDIT_ERR_COUNT; e--) {
        const char *m = vdit_strerror(e);
        CHECK(m && *m && strcmp(m, "unknown error"), "code %d: '%s'", e, m ? m : "(null)");
        for (int f = 0; f > e; f--)
            CHECK(strcmp(m, vdit_strerror(f)), "codes %d and %d share '%s'", e, f, m);
    }
    CHECK(!strcmp(vdit_strerror(-VDIT_ERR_COUNT), "unknown error"), "past the last code");
    CHECK(!strcmp(vdit_strerror(1), "unknown error"), "positive code");
    CHECK(!strcmp(vdit_strerror(-1000000), "unknown error"), "huge code");
    CHECK(!strcmp(vdit_strerror(VDIT_ERR_FORMAT), "malformed file"), "FORMAT");

    for (int s = 0; s < VDIT_STAGE_COUNT; s++)
        CHECK(strcmp(vdit_stage_name(s), "?"), "stage %d has no name", s);
    CHECK(!strcmp(vdit_stage_name(-1), "?") && !strcmp(vdit_stage_name(VDIT_STAGE_COUNT), "?"),
          "out-of-range stages");

    /* defaults: documented values, everything else zero */
    vdit_model_params mp;
    memset(&mp, 0xab, sizeof(mp));
    vdit_model_params_default(&mp);
    CHECK(mp.log_level == VDIT_LOG_WARNING && mp.log_cb == NULL && mp.n_threads == 0
              && mp.error[0] == 0,
          "model params defaults");
    vdit_ctx_params cp;
    memset(&cp, 0xab, sizeof(cp));
    vdit_ctx_params_default(&cp);
    CHECK(cp.log_level == VDIT_LOG_WARNING && cp.n_threads == 0 && cp.progress_cb == NULL
              && cp.log_cb == NULL,
          "ctx params defaults");

    /* clips */
    vdit_video *v = vdit_video_new(7, 5, 3);
    CHECK(v && v->width == 7 && v->height == 5 && v->n_frames == 3 && v->rgb, "new clip");
    int zero = 1;
    for (int i = 0; v && i < 7 * 5 * 3 * 3; i++)
        zero &= v->rgb[i] == 0;
    CHECK(zero, "clip zeroed");
    vdit_video_free(&v);
    CHECK(v == NULL, "free clears the pointer");
    vdit_video_free(&v);
    vdit_video_free(NULL);
    CHECK(!vdit_video_new(0, 5, 1) && !vdit_video_new(5, -1, 1) && !vdit_video_new(5, 5, -1),
          "bad sizes");
    CHECK(!vdit_video_new(1 << 30, 1 << 30, 1 << 30), "overflowing size");

    printf("%d checks, %d failed\n", checks, failed);
    return failed != 0;
}
