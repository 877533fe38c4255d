/* Bad input through the public API on the tiny model: frames that do not fit
 * a stream are refused with VDIT_ERR_INVALID_ARG and a message naming the
 * problem, the stream stays usable and no good frame is lost; odd sizes and
 * nonsense parameters give errors, not crashes.
 * Argument: the tiny model folder (tests/pipeline). */
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "vdit/vdit.h"

static vdit_gen_params base(void)
{
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = "a cat";
    p.steps = 1;
    p.seed = 3;
    return p;
}

static void stream_cases(vdit_ctx *ctx)
{
    enum { W = 20, H = 12, N = 7 };
    uint8_t *px = malloc(64 * 64 * 3);
    for (int i = 0; i < 64 * 64 * 3; i++)
        px[i] = (uint8_t)(i * 7);
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.gen = base();
    sp.window = 5;
    vdit_stream *s = NULL;
    T_CHECK(vdit_stream_open(ctx, &sp, W, H, &s) == 0 && s, "open: %s", vdit_ctx_last_error(ctx));
    if (!s) {
        free(px);
        return;
    }
    int64_t next_out = 0;
    int sent = 0;
    for (int i = 0; i < N; i++) {
        /* before each good frame, frames that must be refused */
        const vdit_frame bad[] = {
            { W + 2, H, px, (W + 2) * 3, 100, NULL },  /* wider */
            { W, H - 2, px, W * 3, 101, NULL },        /* shorter */
            { -W, H, px, W * 3, 102, NULL },           /* negative */
            { 0, 0, px, 0, 103, NULL },                /* empty */
            { W, H, NULL, W * 3, 104, NULL },          /* no pixels */
            { W, H, px, W * 3 - 1, 105, NULL },        /* stride too small */
        };
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            int r = vdit_stream_send(s, &bad[b]);
            T_CHECK(r == VDIT_ERR_INVALID_ARG, "frame %d, bad case %zu: %d", i, b, r);
            T_CHECK(vdit_ctx_last_error(ctx)[0] != 0, "bad case %zu has a message", b);
        }
        T_CHECK(vdit_stream_send(NULL, &bad[0]) == VDIT_ERR_INVALID_ARG, "NULL stream");
        T_CHECK(vdit_stream_send(s, NULL) == VDIT_ERR_INVALID_ARG, "NULL frame");
        vdit_frame good = { W, H, px, W * 3, i, NULL };
        int r;
        while ((r = vdit_stream_send(s, &good)) == VDIT_ERR_AGAIN) {
            vdit_frame o;
            while (vdit_stream_receive(s, &o) == 0) {
                T_CHECK(o.pts == next_out && o.width == W && o.height == H, "out pts %lld",
                        (long long)o.pts);
                next_out++;
            }
        }
        T_CHECK(r == 0, "good frame %d after bad ones: %d %s", i, r, vdit_ctx_last_error(ctx));
        sent += r == 0;
    }
    T_CHECK(vdit_stream_drain(s) == 0, "drain");
    vdit_frame o;
    int r;
    while ((r = vdit_stream_receive(s, &o)) == 0) {
        T_CHECK(o.pts == next_out, "out pts %lld, expected %lld", (long long)o.pts,
                (long long)next_out);
        next_out++;
    }
    T_CHECK(r == VDIT_ERR_EOF, "ends with EOF: %d", r);
    T_CHECK(next_out == sent && sent == N, "every good frame came out: %lld of %d",
            (long long)next_out, N);
    vdit_frame late = { W, H, px, W * 3, 0, NULL };
    T_CHECK(vdit_stream_send(s, &late) == VDIT_ERR_INVALID_ARG, "send after drain refused");
    vdit_stream_close(&s);

    /* streams of odd and nonsense sizes */
    static const int sizes[][2] = { { 1, 1 }, { 2, 2 }, { 7, 5 } };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        T_CHECK(vdit_stream_open(ctx, &sp, sizes[k][0], sizes[k][1], &s) == 0, "open %dx%d",
                sizes[k][0], sizes[k][1]);
        vdit_frame f = { sizes[k][0], sizes[k][1], px, sizes[k][0] * 3, 0, NULL };
        T_CHECK(vdit_stream_send(s, &f) == 0 && vdit_stream_drain(s) == 0, "send %dx%d",
                sizes[k][0], sizes[k][1]);
        T_CHECK(vdit_stream_receive(s, &o) == 0 && o.width == sizes[k][0] &&
                    o.height == sizes[k][1], "one frame back at %dx%d: %s", sizes[k][0],
                sizes[k][1], vdit_ctx_last_error(ctx));
        T_CHECK(vdit_stream_receive(s, &o) == VDIT_ERR_EOF, "then EOF");
        vdit_stream_close(&s);
    }
    T_CHECK(vdit_stream_open(ctx, &sp, 0, 16, &s) == VDIT_ERR_INVALID_ARG && !s, "width 0");
    T_CHECK(vdit_stream_open(ctx, &sp, 16, -4, &s) == VDIT_ERR_INVALID_ARG && !s, "height < 0");
    T_CHECK(vdit_stream_open(ctx, &sp, 1 << 30, 16, &s) == VDIT_ERR_INVALID_ARG && !s,
            "huge width");
    sp.gen.strength = 1.5f;
    T_CHECK(vdit_stream_open(ctx, &sp, 16, 16, &s) == VDIT_ERR_INVALID_ARG && !s,
            "strength 1.5");
    sp.gen.strength = 0.5f;
    sp.gen.sampler = 99;
    T_CHECK(vdit_stream_open(ctx, &sp, 16, 16, &s) == VDIT_ERR_INVALID_ARG && !s, "sampler 99");
    free(px);
}

static void generate_cases(vdit_ctx *ctx)
{
    static const int sizes[][3] = { { 1, 1, 1 }, { 2, 2, 2 }, { 7, 5, 3 }, { 130, 74, 1 },
                                    { 4097, 9, 1 } };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        vdit_gen_params p = base();
        p.width = sizes[k][0];
        p.height = sizes[k][1];
        p.n_frames = sizes[k][2];
        vdit_video *v = NULL;
        int r = vdit_generate(ctx, &p, &v);
        T_CHECK(r == 0 && v && v->width == p.width && v->height == p.height &&
                    v->n_frames == p.n_frames,
                "generate %dx%d x%d: %d %s", p.width, p.height, p.n_frames, r,
                vdit_ctx_last_error(ctx));
        vdit_video_free(&v);
    }
    const struct {
        int w, h, f, steps;
        float strength, guidance, shift;
    } bad[] = {
        { -1, 16, 1, 1, 0.5f, 5, 5 }, { 16, -16, 1, 1, 0.5f, 5, 5 },  { 16, 16, -3, 1, 0.5f, 5, 5 },
        { 16, 16, 1, -1, 0.5f, 5, 5 }, { 16, 16, 1, 5000, 0.5f, 5, 5 }, { 16, 16, 1, 1, 0.5f, 200, 5 },
        { 16, 16, 1, 1, 0.5f, 5, 1000 }, { 1 << 20, 1 << 20, 1, 1, 0.5f, 5, 5 },
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        vdit_gen_params p = base();
        p.width = bad[k].w;
        p.height = bad[k].h;
        p.n_frames = bad[k].f;
        p.steps = bad[k].steps;
        p.strength = bad[k].strength;
        p.guidance = bad[k].guidance;
        p.shift = bad[k].shift;
        vdit_video *v = NULL;
        int r = vdit_generate(ctx, &p, &v);
        T_CHECK(r == VDIT_ERR_INVALID_ARG && !v && vdit_ctx_last_error(ctx)[0],
                "bad params %zu refused: %d", k, r);
        vdit_video_free(&v);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_bad_stream TINY_MODEL_DIR\n");
        return 2;
    }
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = 1;
    vdit_model *m = NULL;
    T_CHECK(vdit_model_load(argv[1], &mp, &m) == 0, "load: %s", mp.error);
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    vdit_ctx *ctx = NULL;
    if (m)
        T_CHECK(vdit_ctx_init(m, &cp, &ctx) == 0, "ctx");
    if (ctx) {
        stream_cases(ctx);
        generate_cases(ctx);
    }
    vdit_ctx_free(&ctx);
    vdit_model_free(&m);
    T_DONE();
}
