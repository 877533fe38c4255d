/* Video I/O of the CLI: a synthetic clip written in every supported format
 * and read back (sizes, frame counts, pixel closeness), and the errors. */
#include <stdio.h>
#include <sys/stat.h>

#include <libavutil/log.h>

#include "t.h"
#include "videoio.h"

static char dir[1024];

static const char *path_of(const char *name)
{
    static char p[2][1200];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
    return p[k];
}

/* smooth gradients plus a moving square: codecs keep it recognisable */
static vdit_video *clip(int w, int h, int n)
{
    vdit_video *v = vdit_video_new(w, h, n);
    for (int f = 0; f < n; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = v->rgb + (((size_t)f * h + y) * w + x) * 3;
                int sq = x >= 4 + 3 * f && x < 16 + 3 * f && y >= 8 && y < 20;
                p[0] = (uint8_t)(sq ? 230 : 20 + 200 * x / w);
                p[1] = (uint8_t)(sq ? 40 : 30 + 180 * y / h);
                p[2] = (uint8_t)(sq ? 60 : 128 + 40 * f / (n > 1 ? n - 1 : 1));
            }
    return v;
}

static void compare(const char *what, const vdit_video *a, const vdit_video *b, double max_tol,
                    double mean_tol)
{
    T_CHECK(b->width == a->width && b->height == a->height, "%s: size %dx%d, expected %dx%d", what,
            b->width, b->height, a->width, a->height);
    T_CHECK(b->n_frames == a->n_frames, "%s: %d frames, expected %d", what, b->n_frames,
            a->n_frames);
    if (b->width != a->width || b->height != a->height || b->n_frames != a->n_frames)
        return;
    size_t n = (size_t)a->n_frames * a->width * a->height * 3;
    double sum = 0;
    int mx = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        sum += d;
        if (d > mx)
            mx = d;
    }
    T_CHECK(mx <= max_tol && sum / (double)n <= mean_tol, "%s: max %d (<= %g), mean %.3f (<= %g)",
            what, mx, max_tol, sum / (double)n, mean_tol);
}

static void round_trip(const char *name, const vdit_video *v, double max_tol, double mean_tol,
                       const char *read_name)
{
    char err[512] = "";
    int r = vio_write(path_of(name), v, 16, err, sizeof(err));
    T_CHECK(r == 0, "write %s: %s", name, err);
    vdit_video *b = NULL;
    double fps = 0;
    r = vio_read(path_of(read_name ? read_name : name), &b, &fps, err, sizeof(err));
    T_CHECK(r == 0 && b, "read %s: %s", name, err);
    if (b)
        compare(name, v, b, max_tol, mean_tol);
    if (strstr(name, ".mp4") || strstr(name, ".y4m"))
        T_CHECK(fabs(fps - 16) < 0.01, "%s: fps %g", name, fps);
    vdit_video_free(&b);
    T_CHECK(b == NULL, "free clears");
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof(dir), "%s/videoio_tmp", argc > 1 ? argv[1] : ".");
    mkdir(dir, 0755);
    av_log_set_level(AV_LOG_QUIET); /* expected failures below */
    vdit_video *v = clip(64, 48, 6);
    round_trip("clip.y4m", v, 3, 0.6, NULL);        /* yuv444p: rounding only */
    round_trip("clip.mp4", v, 120, 3.0, NULL);      /* lossy, edges of the square */
    round_trip("clip.mkv", v, 120, 3.0, NULL);
    round_trip("frame_%03d.png", v, 0, 0, NULL);    /* lossless */
    round_trip("clip.gif", v, 100, 25, NULL);        /* 3-3-2 bit palette */
    vdit_video *one = clip(40, 24, 1);
    round_trip("one.png", one, 0, 0, NULL);
    vdit_video *odd = clip(33, 21, 3);
    round_trip("odd.mp4", odd, 120, 4.0, NULL);
    round_trip("odd.y4m", odd, 3, 0.6, NULL);

    /* errors come back as codes with messages, never crashes */
    char err[512] = "";
    vdit_video *b = (vdit_video *)1;
    int r = vio_read(path_of("nope.mp4"), &b, NULL, err, sizeof(err));
    T_CHECK(r < 0 && b == NULL && strstr(err, "nope.mp4"), "missing input: %d '%s'", r, err);
    FILE *f = fopen(path_of("junk.mp4"), "wb");
    for (int i = 0; f && i < 4096; i++)
        fputc((i * 7919) & 0xff, f);
    if (f)
        fclose(f);
    r = vio_read(path_of("junk.mp4"), &b, NULL, err, sizeof(err));
    T_CHECK(r < 0 && b == NULL && strstr(err, "junk.mp4"), "junk input: %d '%s'", r, err);
    r = vio_write(path_of("clip.xyz"), v, 16, err, sizeof(err));
    T_CHECK(r == VDIT_ERR_UNSUPPORTED && strstr(err, ".xyz"), "unknown extension: '%s'", err);
    r = vio_write(path_of("many.png"), v, 16, err, sizeof(err));
    T_CHECK(r == VDIT_ERR_INVALID_ARG && strstr(err, "%d"), "frames without pattern: '%s'", err);
    r = vio_write(path_of("no/such/dir/x.mp4"), v, 16, err, sizeof(err));
    T_CHECK(r < 0 && strstr(err, "x.mp4"), "unwritable: '%s'", err);
    vdit_video empty = { 0 };
    r = vio_write(path_of("e.mp4"), &empty, 16, err, sizeof(err));
    T_CHECK(r == VDIT_ERR_INVALID_ARG, "empty clip");
    T_CHECK(vdit_video_new(0, 10, 1) == NULL && vdit_video_new(10, 10, -1) == NULL
                && vdit_video_new(1 << 30, 1 << 30, 1 << 30) == NULL,
            "bad sizes rejected");
    vdit_video_free(&v);
    vdit_video_free(&one);
    vdit_video_free(&odd);
    T_DONE();
}
