/* The public generation API on the tiny random-weight model (mktiny):
 * shapes and frame counts of every operation, determinism, the fixed-frame
 * guarantee, streaming order/tags/drain/update/flush, cancellation and
 * argument errors.
 *
 *   test_pipeline TINY_MODEL_DIR */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "pipeline/wan/wan.h"
#include "clips.h"
#include "t.h"
#include "vdit/vdit.h"

static vdit_model *model;
static vdit_ctx *ctx;

static vdit_gen_params base(void)
{
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = "a red ball bounces";
    p.steps = 3;
    p.seed = 42;
    return p;
}

static vdit_video *pattern(int w, int h, int n, int seed)
{
    vdit_video *v = vdit_video_new(w, h, n);
    for (size_t i = 0; i < (size_t)w * h * 3 * n; i++)
        v->rgb[i] = (uint8_t)((i * 7 + (size_t)seed * 13 + i / 97) & 0xff);
    return v;
}

static int same_frames(const vdit_video *a, int fa, const vdit_video *b, int fb, int n)
{
    size_t fsz = (size_t)a->width * a->height * 3;
    return a->width == b->width && a->height == b->height &&
           !memcmp(a->rgb + fsz * fa, b->rgb + fsz * fb, fsz * n);
}

static void test_generate(void)
{
    vdit_model_info in;
    T_CHECK(vdit_model_get_info(model, &in) == 0, "info");
    T_CHECK(in.width == 64 && in.height == 48 && in.n_frames == 9 && in.text_len == 32,
            "info %dx%d %d %d", in.width, in.height, in.n_frames, in.text_len);

    vdit_gen_params p = base();
    vdit_video *v = NULL, *v2 = NULL;
    T_CHECK(vdit_generate(ctx, &p, &v) == 0, "generate native: %s", vdit_ctx_last_error(ctx));
    T_CHECK(v && v->width == 64 && v->height == 48 && v->n_frames == 9, "native shape");
    T_CHECK(vdit_generate(ctx, &p, &v2) == 0 && clip_equal(v, v2), "same seed -> same bytes");
    vdit_video_free(&v2);
    p.seed = 43;
    T_CHECK(vdit_generate(ctx, &p, &v2) == 0 && !clip_equal(v, v2), "other seed -> other video");
    vdit_video_free(&v2);
    p.seed = 42;
    p.sampler = VDIT_SAMPLER_DPMPP;
    T_CHECK(vdit_generate(ctx, &p, &v2) == 0 && !clip_equal(v, v2), "dpm++ runs");
    vdit_video_free(&v2);
    p.sampler = VDIT_SAMPLER_EULER;
    p.guidance = 1.0f; /* no CFG: one DiT call per step */
    T_CHECK(vdit_generate(ctx, &p, &v2) == 0 && v2 && v2->n_frames == 9, "euler, no cfg");
    vdit_video_free(&v2);
    vdit_video_free(&v);

    static const int sizes[][3] = { { 130, 74, 10 }, { 33, 17, 1 }, { 48, 80, 5 }, { 16, 16, 9 },
                                    { 24, 16, 30 } };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        p = base();
        p.width = sizes[i][0];
        p.height = sizes[i][1];
        p.n_frames = sizes[i][2];
        int r = vdit_generate(ctx, &p, &v);
        T_CHECK(r == 0 && v && v->width == p.width && v->height == p.height &&
                    v->n_frames == p.n_frames,
                "generate %dx%d x%d: %s", p.width, p.height, p.n_frames,
                vdit_ctx_last_error(ctx));
        vdit_video_free(&v);
    }

    p = base();
    p.loop = 1;
    p.n_frames = 8;
    T_CHECK(vdit_generate(ctx, &p, &v) == 0 && v && v->n_frames == 8, "loop 8 frames");
    vdit_video_free(&v);
    p.n_frames = 6; /* under 8: rounded up to 4 frames per latent frame */
    T_CHECK(vdit_generate(ctx, &p, &v) == 0 && v && v->n_frames == 8, "loop 6 -> 8 frames");
    vdit_video_free(&v);
    /* 8 frames or more: a bridge-back loop, decoded after its last frame
     * (Wan's models by default: "loop_turns" 1), so of whole latent frames */
    int want[][2] = { { 9, 12 }, { 12, 12 }, { 13, 16 } };
    for (int i = 0; i < 3; i++) {
        p = base();
        p.loop = 1;
        p.n_frames = want[i][0];
        T_CHECK(vdit_generate(ctx, &p, &v) == 0 && v && v->n_frames == want[i][1],
                "loop %d -> %d frames: %d", want[i][0], want[i][1], v ? v->n_frames : -1);
        vdit_video_free(&v);
    }
}

/* Loops of 8 frames or more without the loop decode ("loop_turns": 0): the
 * plain clip of one frame more without its first frame, with its last 4
 * frames made again (a bridge back to its start); any length. */
static void test_loop_bridge_back(vdit_ctx *c)
{
    vdit_video *v = NULL, *v2 = NULL;
    for (int nf = 9; nf <= 11; nf += 2) {
        vdit_gen_params p = base();
        p.n_frames = nf + 1;
        T_CHECK(vdit_generate(c, &p, &v2) == 0 && v2, "plain %d", nf + 1);
        p.n_frames = nf;
        p.loop = 1;
        T_CHECK(vdit_generate(c, &p, &v) == 0 && v && v->n_frames == nf, "loop %d frames", nf);
        if (v && v2)
            T_CHECK(same_frames(v, 0, v2, 1, nf - 4) && !same_frames(v, nf - 4, v2, nf - 3, 4),
                    "loop %d: first %d frames as the plain clip's from its second, the last 4 "
                    "made again", nf, nf - 4);
        vdit_video_free(&v);
        vdit_video_free(&v2);
    }
}

/* Prompt pairs rotating through the context's condition slots (a prompt
 * found in the negative's slot must survive the negative being replaced). */
static void test_cond_cache(void)
{
    const char *pairs[][2] = { { "A cat", "B dog" }, { "B dog", "C owl" }, { "C owl", "C owl" },
                               { "B dog", "A cat" }, { "A cat", "B dog" } };
    vdit_video *first = NULL;
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        vdit_gen_params p = base();
        p.prompt = pairs[i][0];
        p.negative_prompt = pairs[i][1];
        p.n_frames = 1;
        vdit_video *v = NULL;
        T_CHECK(vdit_generate(ctx, &p, &v) == 0 && v, "pair %zu: %s", i, vdit_ctx_last_error(ctx));
        if (i == 0)
            first = v;
        else if (i == 4)
            T_CHECK(clip_equal(first, v), "same pair again -> same image");
        if (v != first)
            vdit_video_free(&v);
    }
    vdit_video_free(&first);
}

/* A prompt longer than text_len (32 here) runs on its first tokens (EOS
 * kept last, vd_tok_encode_padded) and says so once. */
static char long_warning[512];

static void keep_warning(void *user, int level, const char *msg)
{
    (void)user;
    if (level == VDIT_LOG_WARNING && strstr(msg, "tokens"))
        snprintf(long_warning, sizeof(long_warning), "%s", msg);
}

static void test_long_prompt(void)
{
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.log_cb = keep_warning;
    vdit_ctx *c = NULL;
    T_CHECK(vdit_ctx_init(model, &cp, &c) == 0, "ctx");
    if (!c)
        return;
    char prompt[2048] = "";
    for (int i = 0; i < 60; i++)
        strcat(prompt, i % 2 ? "dog " : "cat ");
    vdit_gen_params p = base();
    p.prompt = prompt;
    p.n_frames = 1;
    p.steps = 1;
    vdit_video *v = NULL;
    long_warning[0] = 0;
    T_CHECK(vdit_generate(c, &p, &v) == 0 && v, "long prompt: %s", vdit_ctx_last_error(c));
    T_CHECK(strstr(long_warning, "only the first 32 are used") != NULL, "warning '%s'",
            long_warning);
    vdit_video_free(&v);
    long_warning[0] = 0;
    p.prompt = "cat dog";
    T_CHECK(vdit_generate(c, &p, &v) == 0 && v && !long_warning[0], "short prompt: '%s'",
            long_warning);
    vdit_video_free(&v);
    vdit_ctx_free(&c);
}

typedef struct sink_state {
    vdit_video *v;
    int n, fail_at;
} sink_state;

/* Frames in order into st->v; VDIT_ERR_IO at frame fail_at. */
static int sink_frame(void *user, int index, const uint8_t *rgb)
{
    sink_state *st = user;
    if (index != st->n || index == st->fail_at)
        return VDIT_ERR_IO;
    size_t fsz = (size_t)st->v->width * st->v->height * 3;
    memcpy(st->v->rgb + fsz * (size_t)index, rgb, fsz);
    st->n++;
    return 0;
}

static void test_edit(void)
{
    vdit_video *in = pattern(40, 24, 10, 1), *a = NULL, *b = NULL;
    vdit_gen_params p = base();
    p.strength = 0.0f;
    T_CHECK(vdit_edit(ctx, &p, in, &a) == 0 && a && a->n_frames == 10 && a->width == 40,
            "edit strength 0: %s", vdit_ctx_last_error(ctx));
    p.strength = 0.7f;
    T_CHECK(vdit_edit(ctx, &p, in, &b) == 0 && b && b->n_frames == 10 && b->height == 24,
            "edit strength 0.7");
    T_CHECK(!clip_equal(a, b), "strength changes the result");
    vdit_video_free(&b);
    T_CHECK(vdit_edit(ctx, &p, in, &b) == 0 && b, "edit again");
    vdit_video *c = NULL;
    T_CHECK(vdit_edit(ctx, &p, in, &c) == 0 && clip_equal(b, c), "edit is deterministic");
    vdit_video_free(&a);
    vdit_video_free(&b);
    vdit_video_free(&c);
    vdit_video_free(&in);
    /* longer than a window (9): edited window by window, same length */
    in = pattern(24, 16, 23, 8);
    p = base();
    p.n_frames = 9;
    T_CHECK(vdit_edit(ctx, &p, in, &a) == 0 && a && a->n_frames == 23 && a->width == 24,
            "windowed edit: %s", vdit_ctx_last_error(ctx));
    /* the same frames handed out one by one, windowed or not; a sink's
     * error stops the edit and comes back */
    for (int k = 0; k < 2; k++) {
        if (k) {
            vdit_video_free(&a);
            p.n_frames = 25; /* a window longer than the clip: one job */
            T_CHECK(vdit_edit(ctx, &p, in, &a) == 0 && a, "one-window edit");
        }
        sink_state st = { vdit_video_new(24, 16, 23), 0, -1 };
        T_CHECK(vdit_edit_frames(ctx, &p, in, sink_frame, &st) == 0 && st.n == 23 &&
                    clip_equal(a, st.v),
                "edit_frames (%s): %d frames, %s", k ? "one window" : "windowed", st.n,
                vdit_ctx_last_error(ctx));
        st.n = 0;
        st.fail_at = 5;
        T_CHECK(vdit_edit_frames(ctx, &p, in, sink_frame, &st) == VDIT_ERR_IO && st.n == 5,
                "a failing sink: %d frames taken", st.n);
        vdit_video_free(&st.v);
    }
    vdit_video_free(&a);
    vdit_video_free(&in);
}

static void test_extend_bridge(void)
{
    vdit_video *in = pattern(32, 32, 5, 2), *v = NULL;
    vdit_gen_params p = base();
    T_CHECK(vdit_extend(ctx, &p, in, 7, 0, &v) == 0 && v && v->n_frames == 12,
            "extend forward: %s", vdit_ctx_last_error(ctx));
    T_CHECK(v && same_frames(v, 0, in, 0, 5), "given frames come back unchanged (forward)");
    vdit_video_free(&v);
    T_CHECK(vdit_extend(ctx, &p, in, 6, 1, &v) == 0 && v && v->n_frames == 11,
            "extend backward: %s", vdit_ctx_last_error(ctx));
    T_CHECK(v && same_frames(v, 6, in, 0, 5), "given frames come back unchanged (backward)");
    vdit_video_free(&v);
    /* several windows (window 9: 8 new frames per window forward) */
    p.n_frames = 9;
    T_CHECK(vdit_extend(ctx, &p, in, 21, 0, &v) == 0 && v && v->n_frames == 26,
            "extend forward in windows");
    vdit_video_free(&v);
    T_CHECK(vdit_extend(ctx, &p, in, 13, 1, &v) == 0 && v && v->n_frames == 18,
            "extend backward in windows");
    vdit_video_free(&v);
    /* image to video */
    vdit_video *img = pattern(32, 32, 1, 3);
    T_CHECK(vdit_extend(ctx, &p, img, 8, 0, &v) == 0 && v && v->n_frames == 9 &&
                same_frames(v, 0, img, 0, 1),
            "image to video");
    vdit_video_free(&v);
    T_CHECK(vdit_extend(ctx, &p, img, 3, 1, &v) == 0 && v && v->n_frames == 4 &&
                same_frames(v, 3, img, 0, 1),
            "one frame, backward");
    vdit_video_free(&v);
    /* image to video by vdit_generate: the size vdit_gen_size() announces
     * (the adapters configure their output with it) is the one made, with
     * no size asked (the image's aspect), one side or both */
    vdit_video *wide = pattern(100, 60, 1, 5);
    static const int asked[3][2] = { { 0, 0 }, { 48, 0 }, { 40, 24 } };
    for (int k = 0; k < 3; k++) {
        int w = -1, h = -1;
        p = base();
        p.n_frames = 5;
        p.image = wide;
        p.width = asked[k][0];
        p.height = asked[k][1];
        T_CHECK(vdit_gen_size(model, &p, &w, &h) == 0 && w > 0 && h > 0, "gen_size %dx%d",
                asked[k][0], asked[k][1]);
        T_CHECK(vdit_generate(ctx, &p, &v) == 0 && v && v->width == w && v->height == h &&
                    v->n_frames == 5,
                "image to video asked %dx%d: %dx%d made, gen_size said %dx%d: %s", asked[k][0],
                asked[k][1], v ? v->width : 0, v ? v->height : 0, w, h,
                vdit_ctx_last_error(ctx));
        vdit_video_free(&v);
    }
    vdit_video_free(&wide);

    vdit_video *b = pattern(32, 32, 6, 4);
    p = base();
    for (int n = 1; n <= 6; n++) {
        T_CHECK(vdit_bridge(ctx, &p, in, b, n, &v) == 0 && v && v->n_frames == n &&
                    v->width == 32,
                "bridge %d frames: %s", n, vdit_ctx_last_error(ctx));
        vdit_video_free(&v);
    }
    /* strength: how much of the crossfade is made anew (1: from noise) */
    vdit_video *bv[3] = { NULL, NULL, NULL };
    const float bs[3] = { 0.0f, 0.6f, 1.0f };
    for (int k = 0; k < 3; k++) {
        p = base();
        p.strength = bs[k];
        T_CHECK(vdit_bridge(ctx, &p, in, b, 5, &bv[k]) == 0 && bv[k], "bridge strength %.1f: %s",
                (double)bs[k], vdit_ctx_last_error(ctx));
    }
    if (bv[0] && bv[1] && bv[2])
        T_CHECK(!same_frames(bv[0], 0, bv[1], 0, 5) && !same_frames(bv[1], 0, bv[2], 0, 5),
                "bridge strength changes the result");
    for (int k = 0; k < 3; k++)
        vdit_video_free(&bv[k]);
    p = base();
    p.strength = -0.5f;
    T_CHECK(vdit_bridge(ctx, &p, in, b, 5, &v) == VDIT_ERR_INVALID_ARG && !v &&
                strstr(vdit_ctx_last_error(ctx), "strength"),
            "bridge strength < 0: %s", vdit_ctx_last_error(ctx));
    p = base();
    vdit_video *small = pattern(16, 16, 3, 5);
    T_CHECK(vdit_bridge(ctx, &p, in, small, 4, &v) == VDIT_ERR_INVALID_ARG && !v,
            "bridge size mismatch");
    T_CHECK(strstr(vdit_ctx_last_error(ctx), "differ") != NULL, "message: %s",
            vdit_ctx_last_error(ctx));
    vdit_video_free(&small);
    vdit_video_free(&b);
    vdit_video_free(&img);
    vdit_video_free(&in);
}

/* The latent-level guarantee behind extend / bridge / streaming: latent
 * frames whose pixels are all given are held, so the decoded given frames
 * are exactly the VAE round trip (the decoder is causal, so with the given
 * frames first they cannot depend on what is generated after them). */
static void test_fixed_frames(void)
{
    enum { T = 13, H = 32, W = 32 };
    vdit_video *src = pattern(W, H, T, 9);
    float *px = vd_malloc(sizeof(float) * 3 * T * H * W);
    uint8_t known_all[T], known_head[T];
    for (int f = 0; f < T; f++) {
        vd_put_frame(src, f, px, T, H, W, f);
        known_all[f] = 1;
        known_head[f] = f < 5; /* latent frames 0 and 1 */
    }
    vdit_gen_params gp = base();
    vd_run_params rp;
    T_CHECK(vd_resolve_params(ctx, &gp, &rp) == 0, "params");
    vd_job job = { .t = T, .h = H, .w = W, .px = px, .known = known_all, .strength = -1 };
    float *rt = NULL, *gen = NULL;
    int t1 = 0, t2 = 0;
    T_CHECK(vd_run_job(ctx, &rp, &job, &rt, &t1) == 0 && t1 == T, "round trip job");
    job.known = known_head;
    T_CHECK(vd_run_job(ctx, &rp, &job, &gen, &t2) == 0 && t2 == T, "fill job");
    if (rt && gen) {
        int same = 1, differ = 0;
        for (int c = 0; c < 3; c++)
            for (int f = 0; f < T; f++) {
                const float *a = rt + ((size_t)c * T + f) * H * W;
                const float *b = gen + ((size_t)c * T + f) * H * W;
                int eq = !memcmp(a, b, sizeof(float) * H * W);
                if (f < 5)
                    same &= eq;
                else
                    differ |= !eq;
            }
        T_CHECK(same, "given frames are the VAE round trip, bit for bit");
        T_CHECK(differ, "the other frames are generated");
    }
    vd_free(rt);
    vd_free(gen);
    vd_free(px);
    vdit_video_free(&src);
}

static void test_stream(void)
{
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.gen = base();
    sp.gen.strength = 0.5f;
    sp.window = 9;
    vdit_stream *s = NULL;
    T_CHECK(vdit_stream_open(ctx, &sp, 24, 20, &s) == 0 && s, "open: %s",
            vdit_ctx_last_error(ctx));
    if (!s)
        return;
    T_CHECK(vdit_stream_latency(s) == 9, "latency %d", vdit_stream_latency(s));
    enum { N = 23 };
    vdit_video *src = pattern(24, 20, N, 6);
    int tags[N];
    int sent = 0, got = 0, order_ok = 1, first_out_after = -1;
    vdit_frame f;
    while (got < N) {
        if (sent < N) {
            vdit_frame in = { 24, 20, src->rgb + (size_t)sent * 24 * 20 * 3, 24 * 3, 1000 + sent,
                              &tags[sent] };
            int r = vdit_stream_send(s, &in);
            if (r == 0) {
                sent++;
                if (sent == 12)
                    vdit_stream_update(s, "a blue ball", 0.3f);
                if (sent == N)
                    vdit_stream_drain(s);
                continue;
            }
            T_CHECK(r == VDIT_ERR_AGAIN, "send: %d", r);
        }
        int r = vdit_stream_receive(s, &f);
        if (r == VDIT_ERR_AGAIN)
            continue;
        T_CHECK(r == 0, "receive: %d %s", r, vdit_ctx_last_error(ctx));
        if (r)
            break;
        if (first_out_after < 0)
            first_out_after = sent;
        order_ok &= f.pts == 1000 + got && f.user == &tags[got] && f.width == 24 &&
                    f.height == 20 && f.stride >= 24 * 3;
        got++;
    }
    T_CHECK(got == N, "frames out %d == in %d", got, N);
    T_CHECK(order_ok, "order and tags preserved");
    T_CHECK(first_out_after == 9, "first output after %d frames", first_out_after);
    T_CHECK(vdit_stream_receive(s, &f) == VDIT_ERR_EOF, "EOF after drain");

    /* flush: queued input is dropped, a new unconditioned window starts */
    vdit_stream_flush(s);
    for (int i = 0; i < 3; i++) {
        vdit_frame in = { 24, 20, src->rgb, 24 * 3, i, NULL };
        T_CHECK(vdit_stream_send(s, &in) == 0, "send after flush");
    }
    vdit_stream_flush(s);
    T_CHECK(vdit_stream_receive(s, &f) == VDIT_ERR_AGAIN, "nothing after flush");
    vdit_frame bad = { 25, 20, src->rgb, 25 * 3, 0, NULL };
    T_CHECK(vdit_stream_send(s, &bad) == VDIT_ERR_INVALID_ARG, "size mismatch refused");
    vdit_stream_close(&s);
    T_CHECK(s == NULL, "close clears");
    vdit_video_free(&src);
}

/* One run of a stream over n frames of w x h in `fmt` (src: packed pixels,
 * frame after frame) with window 9; keep(i): flags of frame i (NULL: none);
 * fade; update_at >= 0: a new prompt once that many frames were sent. out
 * receives the output frames, sent_at[i] (if not NULL) how many frames had
 * been sent when frame i came out, *forwards (if not NULL) the DiT forwards
 * the run computed. Returns the frames received. */
static int stream_run(const uint8_t *src, int w, int h, int n, int fmt, int (*keep)(int),
                      int fade, int update_at, uint8_t *out, int *sent_at, int64_t *forwards)
{
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.gen = base();
    sp.gen.strength = 0.6f;
    sp.window = 9;
    sp.format = fmt;
    sp.fade = fade;
    vdit_stream *s = NULL;
    int64_t fw = 0;
    if (vdit_stream_open(ctx, &sp, w, h, &s))
        return -1;
    size_t fsz = (size_t)w * h * (size_t)vdit_pixel_format_bytes(fmt);
    int sent = 0, got = 0;
    while (got < n) {
        if (sent < n) {
            vdit_frame in = { w, h, src + fsz * sent, (ptrdiff_t)(fsz / (size_t)h), sent, NULL };
            if (vdit_stream_send_flags(s, &in, keep && keep(sent) ? VDIT_FRAME_KEEP : 0) == 0) {
                if (++sent == update_at)
                    vdit_stream_update(s, "a completely different prompt", -1);
                if (sent == n)
                    vdit_stream_drain(s);
                continue;
            }
        }
        vdit_frame f;
        vdit_stats st;
        int r = vdit_stream_receive(s, &f);
        vdit_ctx_get_stats(ctx, &st);
        fw += st.forwards;
        if (r == VDIT_ERR_AGAIN)
            continue;
        if (r || f.pts != got)
            break;
        memcpy(out + fsz * got, f.rgb, fsz);
        if (sent_at)
            sent_at[got] = sent;
        got++;
    }
    vdit_stream_close(&s);
    if (forwards)
        *forwards = fw;
    return got;
}

/* src streamed as an 8-bit clip (stream_run); NULL unless every frame came
 * out. */
static vdit_video *run_stream(const vdit_video *src, int update_at)
{
    vdit_video *out = vdit_video_new(src->width, src->height, src->n_frames);
    if (out && stream_run(src->rgb, src->width, src->height, src->n_frames, VDIT_PIXFMT_RGB24,
                          NULL, 0, update_at, out->rgb, NULL, NULL) != src->n_frames)
        vdit_video_free(&out);
    return out;
}

static int keep_outside_12_17(int i)
{
    return i < 12 || i > 17;
}

/* 16-bit frames; frames kept outside a range, windows of kept frames not
 * edited, fades at the range's edges. */
static void test_stream_keep_formats(void)
{
    enum { W = 16, H = 16, N = 30, FADE = 2 };
    const size_t fsz = (size_t)W * H * 3;
    vdit_video *src = pattern(W, H, N, 5);
    uint8_t *full = malloc(fsz * N), *fade0 = malloc(fsz * N), *faded = malloc(fsz * N);
    uint16_t *src16 = malloc(fsz * N * 2), *out16 = malloc(fsz * N * 2);
    int sent_at[N];
    int64_t fw_full, fw_keep, fw_keep2, fw16;
    for (size_t i = 0; i < fsz * N; i++)
        src16[i] = (uint16_t)(src->rgb[i] * 257);

    /* RGB48: the 8-bit clip scaled to 16 bits edits to the 8-bit result
     * scaled, within a code value, and keeps the finer steps (first window:
     * later ones continue from outputs that differ by the 8-bit rounding) */
    T_CHECK(stream_run(src->rgb, W, H, N, VDIT_PIXFMT_RGB24, NULL, 0, -1, full, NULL,
                       &fw_full) == N,
            "8-bit stream ran: %s", vdit_ctx_last_error(ctx));
    T_CHECK(stream_run((const uint8_t *)src16, W, H, N, VDIT_PIXFMT_RGB48, NULL, 0, -1,
                       (uint8_t *)out16, NULL, &fw16) == N,
            "16-bit stream ran: %s", vdit_ctx_last_error(ctx));
    int maxd = 0, fine = 0;
    for (size_t i = 0; i < fsz * 9; i++) {
        maxd = VD_MAX(maxd, abs((int)out16[i] - (int)full[i] * 257));
        fine += out16[i] % 257 != 0;
    }
    T_CHECK(maxd <= 2 * 257, "16-bit edit = 8-bit edit within 2 codes (max %d / 257)", maxd);
    T_CHECK(fine > (int)(fsz * 9 / 2), "16-bit output keeps its depth (%d of %zu)", fine,
            fsz * 9);

    /* kept frames: windows 0-8 (all kept: no model work), 9-17 (edited
     * whole), 18-25 and 26-29 (all kept) */
    T_CHECK(stream_run(src->rgb, W, H, N, VDIT_PIXFMT_RGB24, keep_outside_12_17, 0, -1, fade0,
                       NULL, &fw_keep) == N, "keep stream ran");
    T_CHECK(fw_full > 0 && fw_keep * 4 == fw_full,
            "only the window with frames to edit ran the model (%lld of %lld forwards)",
            (long long)fw_keep, (long long)fw_full);
    int kept_exact = 1, edited = 1;
    for (int f = 0; f < N; f++) {
        int same = !memcmp(fade0 + fsz * f, src->rgb + fsz * f, fsz);
        if (keep_outside_12_17(f))
            kept_exact &= same;
        else
            edited &= !same;
    }
    T_CHECK(kept_exact, "kept frames come back bit-exact");
    T_CHECK(edited, "frames in the range are edited");

    /* fades: frames 12, 13 fade in, 16, 17 out (17's next kept frame is in
     * the next window: it waits for it) */
    T_CHECK(stream_run(src->rgb, W, H, N, VDIT_PIXFMT_RGB24, keep_outside_12_17, FADE, -1, faded,
                       sent_at, &fw_keep2) == N, "fading stream ran");
    static const int dist[N] = { [12] = 1, [13] = 2, [16] = 2, [17] = 1 };
    int fade_ok = 1;
    for (int f = 0; f < N; f++) {
        const uint8_t *e = fade0 + fsz * f, *in = src->rgb + fsz * f, *o = faded + fsz * f;
        float a = dist[f] ? (float)dist[f] / (FADE + 1) : 1.0f;
        for (size_t k = 0; k < fsz; k++) {
            uint8_t want = dist[f] ? (uint8_t)((float)in[k] + a * ((float)e[k] - (float)in[k]) +
                                               0.5f)
                                   : e[k];
            fade_ok &= o[k] == want;
        }
    }
    T_CHECK(fade_ok, "edges fade over %d frames, the rest as without fade", FADE);
    T_CHECK(sent_at[17] >= 17 + FADE + 1, "frame 17 waited for frame %d (sent %d)", 17 + FADE,
            sent_at[17]);

    /* refusals */
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.format = VDIT_PIXFMT_COUNT;
    vdit_stream *s = NULL;
    T_CHECK(vdit_stream_open(ctx, &sp, W, H, &s) == VDIT_ERR_INVALID_ARG && !s,
            "unknown format refused");
    T_CHECK(strstr(vdit_ctx_last_error(ctx), "format") != NULL, "error names the format: %s",
            vdit_ctx_last_error(ctx));
    sp.format = VDIT_PIXFMT_RGB48;
    T_CHECK(vdit_stream_open(ctx, &sp, W, H, &s) == 0, "16-bit stream opens");
    if (s) {
        vdit_frame in = { W, H, (const uint8_t *)src16, W * 3, 0, NULL };
        T_CHECK(vdit_stream_send(s, &in) == VDIT_ERR_INVALID_ARG, "16-bit stride too short");
        in.stride = W * 6;
        in.rgb = (const uint8_t *)src16 + 1;
        T_CHECK(vdit_stream_send(s, &in) == VDIT_ERR_INVALID_ARG, "odd address refused");
        in.rgb = (const uint8_t *)src16;
        T_CHECK(vdit_stream_send_flags(s, &in, 2) == VDIT_ERR_INVALID_ARG, "unknown flag");
        T_CHECK(vdit_stream_send_flags(s, &in, VDIT_FRAME_KEEP) == 0, "kept frame taken");
        vdit_stream_close(&s);
    }
    T_CHECK(vdit_pixel_format_bytes(VDIT_PIXFMT_RGB24) == 3 &&
                vdit_pixel_format_bytes(VDIT_PIXFMT_RGB48) == 6 &&
                vdit_pixel_format_bytes(-1) == 0, "bytes per pixel");
    free(full);
    free(fade0);
    free(faded);
    free(src16);
    free(out16);
    vdit_video_free(&src);
}

static void test_stream_update(void)
{
    vdit_video *src = pattern(16, 16, 20, 11);
    vdit_video *a = run_stream(src, -1), *b = run_stream(src, 12), *a2 = run_stream(src, -1);
    T_CHECK(a && b && a2, "streams ran");
    if (a && b && a2) {
        T_CHECK(clip_equal(a, a2), "a stream is deterministic");
        /* window 1 = frames 0..8 (done before the update), window 2 = 9..16 */
        T_CHECK(same_frames(a, 0, b, 0, 9), "frames before the update unchanged");
        T_CHECK(!same_frames(a, 9, b, 9, 8), "the next window follows the new prompt");
    }
    vdit_video_free(&a);
    vdit_video_free(&a2);
    vdit_video_free(&b);
    vdit_video_free(&src);
}

static int stages_seen[VDIT_STAGE_COUNT];

static int cancel_cb(void *user, int stage, int step, int total)
{
    int *calls = user;
    (*calls)++;
    if (stage >= 0 && stage < VDIT_STAGE_COUNT)
        stages_seen[stage]++;
    return stage == VDIT_STAGE_DENOISE && step == 1;
}

static void test_cancel(void)
{
    int calls = 0;
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.progress_cb = cancel_cb;
    cp.progress_user = &calls;
    vdit_ctx *c = NULL;
    T_CHECK(vdit_ctx_init(model, &cp, &c) == 0, "ctx");
    vdit_gen_params p = base();
    vdit_video *v = NULL;
    memset(stages_seen, 0, sizeof(stages_seen));
    int r = vdit_generate(c, &p, &v);
    T_CHECK(r == VDIT_ERR_CANCELLED && !v, "cancelled: %d", r);
    T_CHECK(strstr(vdit_ctx_last_error(c), "cancel") != NULL, "message: %s",
            vdit_ctx_last_error(c));
    T_CHECK(stages_seen[VDIT_STAGE_ENCODE_TEXT] > 0 && stages_seen[VDIT_STAGE_DENOISE] == 2 &&
                stages_seen[VDIT_STAGE_DECODE] == 0,
            "stages text %d denoise %d decode %d", stages_seen[VDIT_STAGE_ENCODE_TEXT],
            stages_seen[VDIT_STAGE_DENOISE], stages_seen[VDIT_STAGE_DECODE]);
    /* windowed operations stop too, and leave nothing behind */
    vdit_video *in = pattern(16, 16, 5, 12);
    T_CHECK(vdit_extend(c, &p, in, 30, 0, &v) == VDIT_ERR_CANCELLED && !v, "extend cancelled");
    p.n_frames = 9;
    vdit_video *longer = pattern(16, 16, 20, 13);
    T_CHECK(vdit_edit(c, &p, longer, &v) == VDIT_ERR_CANCELLED && !v, "windowed edit cancelled");
    p.n_frames = 0;
    vdit_video_free(&longer);
    vdit_video_free(&in);
    /* the next call runs normally (the flag clears), and reports every stage */
    cp.progress_cb = NULL;
    vdit_ctx_free(&c);
    T_CHECK(vdit_ctx_init(model, &cp, &c) == 0, "ctx");
    vdit_ctx_cancel(c); /* before the call: cleared when the call starts */
    T_CHECK(vdit_generate(c, &p, &v) == 0 && v, "runs after cancel: %s", vdit_ctx_last_error(c));
    vdit_video_free(&v);
    vdit_ctx_free(&c);
    T_CHECK(c == NULL, "free clears");
}

static char last_error[512];
static const char *model_dir; /* the tiny model's folder (argv[1]) */

static void keep_error(void *user, int level, const char *msg)
{
    (void)user;
    if (level == VDIT_LOG_ERROR)
        snprintf(last_error, sizeof(last_error), "%s", msg);
}

/* Precision: a bad value is refused naming it; fp32 and bf16 say what they
 * run; where the CPU has bf16, a bf16 clip differs from the fp32 one (the
 * bf16 products are really used) but only a little. */
static void test_precision(void)
{
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    T_CHECK(cp.precision == VDIT_DEFAULT_PRECISION && VDIT_DEFAULT_PRECISION == VDIT_PRECISION_AUTO,
            "default precision auto");
    cp.n_threads = 1;
    cp.log_cb = keep_error;
    vdit_ctx *c = NULL;
    cp.precision = 7;
    T_CHECK(vdit_ctx_init(model, &cp, &c) == VDIT_ERR_INVALID_ARG && !c, "precision 7");
    T_CHECK(strstr(last_error, "precision") != NULL, "message: %s", last_error);
    vdit_video *v32 = NULL, *v16 = NULL;
    vdit_gen_params p = base();
    cp.precision = VDIT_PRECISION_FP32;
    T_CHECK(vdit_ctx_init(model, &cp, &c) == 0, "fp32 ctx");
    if (!c)
        return;
    T_CHECK(!strncmp(vdit_ctx_compute(c), "fp32 on ", 8), "compute: %s", vdit_ctx_compute(c));
    T_CHECK(vdit_generate(c, &p, &v32) == 0, "fp32 clip: %s", vdit_ctx_last_error(c));
    vdit_ctx_free(&c);
    cp.precision = VDIT_PRECISION_AUTO;
    T_CHECK(vdit_ctx_init(model, &cp, &c) == 0, "auto ctx");
    int native = c && !strncmp(vdit_ctx_compute(c), "bf16 on ", 8);
    T_CHECK(c && (native || !strncmp(vdit_ctx_compute(c), "fp32 on ", 8)), "auto: %s",
            c ? vdit_ctx_compute(c) : "");
    vdit_ctx_free(&c);
    cp.precision = VDIT_PRECISION_BF16;
    last_error[0] = 0;
    int r = vdit_ctx_init(model, &cp, &c);
    if (!native) {
        T_CHECK(r == VDIT_ERR_UNSUPPORTED && !c && strstr(last_error, "bf16"),
                "bf16 without native support: %d '%s'", r, last_error);
    } else {
        T_CHECK(r == 0 && c, "bf16 ctx: %s", last_error);
        T_CHECK(c && vdit_generate(c, &p, &v16) == 0, "bf16 clip: %s", vdit_ctx_last_error(c));
        if (v32 && v16) {
            size_t n = (size_t)v32->width * v32->height * 3 * v32->n_frames, diff = 0;
            double sum = 0;
            for (size_t i = 0; i < n; i++) {
                int d = abs(v32->rgb[i] - v16->rgb[i]);
                diff += d != 0;
                sum += d;
            }
            printf("bf16 against fp32: %zu of %zu bytes differ, mean %.3f levels\n", diff, n,
                   sum / (double)n);
            T_CHECK(diff > 0 && sum / (double)n < 2.0, "bf16 clip: %zu bytes differ, mean %.3f",
                    diff, sum / (double)n);
        }
        /* The model was loaded for bf16: its stored fp32 weights' pages went
         * back once their bf16 copy was made (vd_dit_prepare_ex), and the
         * fp32 context above read them again from the file. Its clip is the
         * one a model loaded for fp32 (no copy, nothing handed back) makes. */
        vdit_model_params mp;
        vdit_model_params_default(&mp);
        mp.precision = VDIT_PRECISION_FP32;
        vdit_model *m32 = NULL;
        vdit_ctx *c32 = NULL;
        vdit_video *w32 = NULL;
        cp.precision = VDIT_PRECISION_FP32;
        T_CHECK(vdit_model_load(model_dir, &mp, &m32) == 0, "fp32 model: %s", mp.error);
        T_CHECK(m32 && vdit_ctx_init(m32, &cp, &c32) == 0, "fp32 ctx on the fp32 model");
        T_CHECK(c32 && vdit_generate(c32, &p, &w32) == 0, "fp32 clip of the fp32 model");
        T_CHECK(v32 && w32 && !memcmp(v32->rgb, w32->rgb,
                                      (size_t)v32->width * v32->height * 3 * v32->n_frames),
                "fp32 clip: the model loaded for bf16 gives the fp32-loaded model's");
        vdit_video_free(&w32);
        vdit_ctx_free(&c32);
        vdit_model_free(&m32);
    }
    vdit_video_free(&v32);
    vdit_video_free(&v16);
    vdit_ctx_free(&c);
}

static void test_errors(void)
{
    vdit_gen_params p = base();
    vdit_video *v = NULL;
    p.width = -5;
    T_CHECK(vdit_generate(ctx, &p, &v) == VDIT_ERR_INVALID_ARG && !v, "negative width");
    T_CHECK(vdit_ctx_last_error(ctx)[0] != 0, "message set");
    p = base();
    p.width = 100000;
    T_CHECK(vdit_generate(ctx, &p, &v) == VDIT_ERR_INVALID_ARG, "huge width");
    T_CHECK(strstr(vdit_ctx_last_error(ctx), "size") != NULL, "message: %s",
            vdit_ctx_last_error(ctx));
    p = base();
    p.sampler = 7;
    T_CHECK(vdit_generate(ctx, &p, &v) == VDIT_ERR_INVALID_ARG, "bad sampler");
    p = base();
    p.steps = 5000;
    T_CHECK(vdit_generate(ctx, &p, &v) == VDIT_ERR_INVALID_ARG, "too many steps");
    p = base();
    p.loop = 1;
    p.n_frames = 2;
    T_CHECK(vdit_generate(ctx, &p, &v) == VDIT_ERR_INVALID_ARG, "loop too short");
    p = base();
    T_CHECK(vdit_generate(ctx, &p, NULL) == VDIT_ERR_INVALID_ARG, "NULL out");
    T_CHECK(vdit_generate(NULL, &p, &v) == VDIT_ERR_INVALID_ARG, "NULL ctx");
    vdit_video *in = pattern(16, 16, 3, 7);
    p.strength = 1.5f;
    T_CHECK(vdit_edit(ctx, &p, in, &v) == VDIT_ERR_INVALID_ARG, "strength > 1");
    T_CHECK(strstr(vdit_ctx_last_error(ctx), "strength") != NULL, "message: %s",
            vdit_ctx_last_error(ctx));
    p = base();
    T_CHECK(vdit_edit(ctx, &p, NULL, &v) == VDIT_ERR_INVALID_ARG, "edit NULL input");
    T_CHECK(vdit_extend(ctx, &p, in, 0, 0, &v) == VDIT_ERR_INVALID_ARG, "extend 0 frames");
    T_CHECK(vdit_bridge(ctx, &p, in, in, 0, &v) == VDIT_ERR_INVALID_ARG, "bridge 0 frames");
    vdit_video_free(&in);
    T_CHECK(vdit_video_new(0, 5, 5) == NULL && vdit_video_new(5, 5, -1) == NULL, "video_new");

    vdit_model_params mp;
    vdit_model_params_default(&mp);
    vdit_model *m = (vdit_model *)1;
    T_CHECK(vdit_model_load("/nonexistent/model", &mp, &m) < 0 && m == NULL, "bad path");
    T_CHECK(strstr(mp.error, "/nonexistent/model") != NULL, "error names the path: %s",
            mp.error);
    T_CHECK(vdit_model_load("/", &mp, &m) == VDIT_ERR_MISSING, "folder without a model: %s",
            mp.error);
}

static void link_into(const char *tiny, const char *dir, const char *from, const char *to)
{
    char a[4096], b[4096];
    snprintf(a, sizeof(a), "%s/%s", tiny, from);
    snprintf(b, sizeof(b), "%s/%s", dir, to);
    char *abs = realpath(a, NULL);
    T_CHECK(abs && symlink(abs, b) == 0, "link %s", b);
    free(abs);
}

/* Writes dir/vdit.json with `json` and loads dir. */
static int load_with_json(const char *dir, const char *json, vdit_model_params *mp,
                          vdit_model **m)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/vdit.json", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs(json, f);
    fclose(f);
    return vdit_model_load(dir, mp, m);
}

/* Folder layouts: the official release naming (google/umt5-xxl/,
 * config.json, no vdit.json: Wan's defaults), a DiT file given directly,
 * and a folder missing its VAE. */
/* The loop decode against its definition, run one-shot: the loop's last
 * frame and `turns` turns of it encoded; the last turn's latents decoded
 * after `hist` latents of their cycle, or (hist 0) all the latents decoded
 * as they are and the last turn kept (odd frame size: padded). */
static void loop_decode_case(int turns, int hist)
{
    const int w = 30, h = 22, pw = 32, ph = 32, p = 2, n = 8, f0 = 1;
    vdit_video *v = pattern(w, h, n + 2, 5), *ref = pattern(w, h, n + 2, 5);
    int64_t ch = model->geom.z_dim, hw = (ph / 8) * (pw / 8), lt = 1 + turns * p;
    int te = 1 + turns * n, ld = hist ? hist + p : (int)lt, td = 1 + 4 * (ld - 1);
    float *px = malloc(sizeof(float) * 3 * (size_t)te * ph * pw);
    float *lat = malloc(sizeof(float) * (size_t)(ch * hw * lt));
    float *zin = malloc(sizeof(float) * (size_t)(ch * hw * ld));
    float *out = malloc(sizeof(float) * 3 * (size_t)td * ph * pw);
    T_CHECK(v && ref && px && lat && zin && out, "alloc");
    if (!v || !ref || !px || !lat || !zin || !out)
        goto done;
    T_CHECK(vd_loop_decode(ctx, v, f0, p, turns, hist, ph, pw) == 0,
            "loop decode (%d turns, history %d): %s", turns, hist, vdit_ctx_last_error(ctx));
    for (int i = 0; i < te; i++)
        vd_put_frame(ref, f0 + (i == 0 ? n - 1 : (i - 1) % n), px, te, ph, pw, i);
    T_CHECK(vd_vae_encode(vd_wan_parts_of(model)->vae, ctx->kc, px, te, ph, pw, lat, NULL) == 0, "encode");
    for (int64_t c = 0; c < ch; c++)
        for (int j = 0; j < ld; j++) {
            int64_t src = hist ? lt - p + ((j - hist) % p + p) % p : j;
            memcpy(zin + (c * ld + j) * hw, lat + (c * lt + src) * hw, sizeof(float) * (size_t)hw);
        }
    T_CHECK(vd_vae_decode(vd_wan_parts_of(model)->vae, ctx->kc, zin, ld, ph / 8, pw / 8, out) == 0, "decode");
    for (int f = 0; f < n; f++)
        vd_get_frame(out, td, ph, pw, td - n + f, ref, f0 + f);
    int maxd = 0;
    size_t fsz = (size_t)w * h * 3;
    for (size_t k = 0; k < fsz * (size_t)(n + 2); k++)
        maxd = VD_MAX(maxd, abs((int)v->rgb[k] - (int)ref->rgb[k]));
    T_CHECK(maxd <= 1, "streamed loop decode (%d turns, history %d) = one-shot definition (max "
            "diff %d)", turns, hist, maxd);
    /* frames outside the loop are untouched */
    vdit_video *orig = pattern(w, h, n + 2, 5);
    T_CHECK(orig && !memcmp(v->rgb, orig->rgb, fsz) &&
                !memcmp(v->rgb + fsz * (n + 1), orig->rgb + fsz * (n + 1), fsz),
            "frames outside the loop kept");
    vdit_video_free(&orig);
    T_CHECK(vd_loop_decode(ctx, v, 4, p, turns, hist, ph, pw) == VDIT_ERR_INVALID_ARG &&
                vd_loop_decode(ctx, v, 0, p, 0, hist, ph, pw) == VDIT_ERR_INVALID_ARG &&
                vd_loop_decode(ctx, v, 0, p, 1, -1, ph, pw) == VDIT_ERR_INVALID_ARG,
            "loop decode rejects a loop past the clip, 0 turns and a negative history");
done:
    vdit_video_free(&v);
    vdit_video_free(&ref);
    free(px);
    free(lat);
    free(zin);
    free(out);
}

static void test_loop_decode(void)
{
    loop_decode_case(1, 0);
    loop_decode_case(2, 0);
    loop_decode_case(2, 3);
}

/* The tiny model with this vdit.json (*m) and a 1-thread context on it, or
 * NULL (the failure is checked). */
static vdit_ctx *ctx_with_json(const char *dir, const char *json, vdit_model **m)
{
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    T_CHECK(load_with_json(dir, json, &mp, m) == 0 && *m, "%s: %s", json, mp.error);
    if (!*m)
        return NULL;
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    vdit_ctx *c = NULL;
    T_CHECK(vdit_ctx_init(*m, &cp, &c) == 0, "ctx for %s", json);
    return c;
}

/* Frames of a loop asked for n frames, -1 on error (the message printed). */
static int loop_frames(vdit_ctx *c, int n)
{
    if (!c)
        return -1;
    vdit_gen_params g = base();
    g.n_frames = n;
    g.loop = 1;
    vdit_video *v = NULL;
    int got = vdit_generate(c, &g, &v) == 0 && v ? v->n_frames : -1;
    if (got < 0)
        fprintf(stderr, "loop of %d frames: %s\n", n, vdit_ctx_last_error(c));
    vdit_video_free(&v);
    return got;
}

static void test_layouts(const char *tiny)
{
    char dir[] = "/tmp/vdit_layout_XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char p[4200];
    snprintf(p, sizeof(p), "%s/google", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/google/umt5-xxl", dir);
    mkdir(p, 0755);
    link_into(tiny, dir, "diffusion_pytorch_model.safetensors",
              "diffusion_pytorch_model.safetensors");
    link_into(tiny, dir, "models_t5_umt5-xxl-enc.safetensors",
              "models_t5_umt5-xxl-enc.safetensors");
    link_into(tiny, dir, "tokenizer/spiece.model", "google/umt5-xxl/spiece.model");
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    vdit_model *m = NULL;
    T_CHECK(vdit_model_load(dir, &mp, &m) == VDIT_ERR_MISSING && !m, "no VAE: %s", mp.error);
    T_CHECK(strstr(mp.error, "VAE") != NULL, "message names the VAE: %s", mp.error);
    link_into(tiny, dir, "Wan2.1_VAE.safetensors", "Wan2.1_VAE.safetensors");
    snprintf(p, sizeof(p), "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"model_type\": \"t2v\", \"num_heads\": 2, \"text_len\": 32}\n");
    fclose(f);
    T_CHECK(vdit_model_load(dir, &mp, &m) == 0 && m, "official layout: %s", mp.error);
    vdit_model_info in;
    if (m) {
        vdit_model_get_info(m, &in);
        T_CHECK(in.width == 832 && in.height == 480 && in.n_frames == 81 && in.steps == 50 &&
                    in.sampler == VDIT_SAMPLER_UNIPC && in.text_len == 32 && in.n_heads == 2,
                "Wan defaults without vdit.json");
    }
    vdit_model_free(&m);
    snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors", dir);
    T_CHECK(vdit_model_load(p, &mp, &m) == 0 && m, "DiT file given: %s", mp.error);
    vdit_model_free(&m);
    {
        /* ComfyUI's repackaged names in one folder, the DiT file given */
        char cd[] = "/tmp/vdit_comfy_XXXXXX", q[4200];
        T_CHECK(mkdtemp(cd) != NULL, "mkdtemp");
        snprintf(q, sizeof(q), "%s/tokenizer", cd);
        mkdir(q, 0755);
        link_into(tiny, cd, "diffusion_pytorch_model.safetensors", "wan2.1_t2v_1.3B_fp16.safetensors");
        link_into(tiny, cd, "Wan2.1_VAE.safetensors", "wan_2.1_vae.safetensors");
        link_into(tiny, cd, "models_t5_umt5-xxl-enc.safetensors", "umt5_xxl_fp16.safetensors");
        link_into(tiny, cd, "tokenizer/spiece.model", "tokenizer/spiece.model");
        snprintf(q, sizeof(q), "%s/config.json", cd);
        FILE *cf = fopen(q, "w");
        fprintf(cf, "{\"num_heads\": 2, \"text_len\": 32}\n");
        fclose(cf);
        snprintf(q, sizeof(q), "%s/wan2.1_t2v_1.3B_fp16.safetensors", cd);
        T_CHECK(vdit_model_load(q, &mp, &m) == 0 && m, "ComfyUI names: %s", mp.error);
        vdit_model_free(&m);
        const char *names[] = { "wan2.1_t2v_1.3B_fp16.safetensors", "wan_2.1_vae.safetensors",
                                "umt5_xxl_fp16.safetensors", "tokenizer/spiece.model",
                                "config.json", "tokenizer" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(q, sizeof(q), "%s/%s", cd, names[i]);
            remove(q);
        }
        rmdir(cd);
    }
    /* a malformed vdit.json is reported with its path */
    T_CHECK(load_with_json(dir, "{\"width\": }", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "vdit.json"),
            "bad vdit.json: %s", mp.error);
    T_CHECK(load_with_json(dir, "{\"sampler\": \"magic\"}", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "sampler"),
            "bad sampler in vdit.json: %s", mp.error);
    T_CHECK(load_with_json(dir, "{\"context\": \"fresh\"}", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "context"),
            "bad context in vdit.json: %s", mp.error);
    T_CHECK(load_with_json(dir, "{\"context\": \"clean\"}", &mp, &m) == 0 && m,
            "context clean: %s", mp.error);
    vdit_model_free(&m);
    T_CHECK(load_with_json(dir, "{\"loop\": \"spiral\"}", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "loop"),
            "bad loop in vdit.json: %s", mp.error);
    T_CHECK(load_with_json(dir, "{\"loop_turns\": 1.5}", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "loop_turns"),
            "bad loop_turns in vdit.json: %s", mp.error);
    T_CHECK(load_with_json(dir, "{\"loop_history\": -1}", &mp, &m) == VDIT_ERR_FORMAT &&
                strstr(mp.error, "loop_history"),
            "bad loop_history in vdit.json: %s", mp.error);
    /* "loop_turns": 0: the bridge-back loop as made, of any length */
    vdit_ctx *c = ctx_with_json(dir, "{\"loop_turns\": 0, \"width\": 32, \"height\": 32}", &m);
    if (c)
        test_loop_bridge_back(c);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    /* "loop_history" > 0: the periodic steady state, also of whole latent
     * frames (12 for 9) */
    c = ctx_with_json(dir,
                      "{\"loop_turns\": 2, \"loop_history\": 3, \"width\": 32, \"height\": 32}",
                      &m);
    int nl = loop_frames(c, 9);
    T_CHECK(nl == 12, "periodic loop of 9 frames: %d frames", nl);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    /* "loop": "circular": a loop of 9 frames is a circular timeline of 4
     * frames per latent frame (12), not the clip with a bridge back (9) */
    c = ctx_with_json(dir, "{\"loop\": \"circular\", \"width\": 32, \"height\": 32}", &m);
    nl = loop_frames(c, 9);
    T_CHECK(nl == 12, "circular loop of 9 frames: %d frames", nl);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    /* diffusers: model_index.json and one folder per part (original key
     * names here; the parts' canonicalisers map diffusers names) */
    char dd[] = "/tmp/vdit_diffusers_XXXXXX";
    T_CHECK(mkdtemp(dd) != NULL, "mkdtemp");
    const char *sub[] = { "transformer", "vae", "text_encoder", "tokenizer" };
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", dd, sub[i]);
        mkdir(p, 0755);
    }
    link_into(tiny, dd, "diffusion_pytorch_model.safetensors",
              "transformer/diffusion_pytorch_model.safetensors");
    link_into(tiny, dd, "Wan2.1_VAE.safetensors", "vae/diffusion_pytorch_model.safetensors");
    link_into(tiny, dd, "models_t5_umt5-xxl-enc.safetensors", "text_encoder/model.safetensors");
    link_into(tiny, dd, "tokenizer/spiece.model", "tokenizer/spiece.model");
    snprintf(p, sizeof(p), "%s/model_index.json", dd);
    f = fopen(p, "w");
    fprintf(f, "{\"_class_name\": \"WanPipeline\"}\n");
    fclose(f);
    snprintf(p, sizeof(p), "%s/transformer/config.json", dd);
    f = fopen(p, "w");
    fprintf(f, "{\"num_attention_heads\": 2, \"attention_head_dim\": 16}\n");
    fclose(f);
    T_CHECK(vdit_model_load(dd, &mp, &m) == 0 && m, "diffusers layout: %s", mp.error);
    if (m) {
        vdit_model_get_info(m, &in);
        T_CHECK(in.n_heads == 2 && in.text_len == 512, "diffusers: heads %lld text_len %d",
                (long long)in.n_heads, in.text_len);
    }
    vdit_model_free(&m);
    const char *dn[] = { "transformer/diffusion_pytorch_model.safetensors",
                         "vae/diffusion_pytorch_model.safetensors",
                         "text_encoder/model.safetensors", "tokenizer/spiece.model",
                         "model_index.json", "transformer/config.json", "transformer", "vae",
                         "text_encoder", "tokenizer" };
    for (size_t i = 0; i < sizeof(dn) / sizeof(dn[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dd, dn[i]);
        if (remove(p))
            rmdir(p);
    }
    rmdir(dd);

    const char *names[] = { "vdit.json", "config.json", "Wan2.1_VAE.safetensors",
                            "diffusion_pytorch_model.safetensors",
                            "models_t5_umt5-xxl-enc.safetensors", "google/umt5-xxl/spiece.model",
                            "google/umt5-xxl", "google" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        if (remove(p))
            rmdir(p);
    }
    rmdir(dir);
}

/* The loaded model holds the VAE weights once: both halves are detached
 * from the VAE's checkpoint while the model loads, and the checkpoint is
 * freed then (the model no longer refers to it, and runs change nothing in
 * it). The detached VAE, prepared for the model's default frame size, decodes
 * and encodes at other sizes bit-identically to one loaded straight from the
 * same file. */
static void test_vae_detached(const char *dir)
{
    T_CHECK(!vd_wan_parts_of(model)->ck_vae, "after load: the VAE checkpoint is still held");
    vdit_gen_params p = base();
    p.width = 32;
    p.height = 24;
    p.n_frames = 5;
    vdit_video *out = NULL;
    T_CHECK(vdit_generate(ctx, &p, &out) == 0 && out, "generate: %s", vdit_ctx_last_error(ctx));
    vdit_video_free(&out);
    char path[1200];
    snprintf(path, sizeof(path), "%s/Wan2.1_VAE.safetensors", dir);
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_vae *v = NULL;
    vk_ctx *kc = vk_ctx_new(1, 0, &lg);
    int r = !kc || vd_ckpt_open(path, &lg, &ck) || vd_vae_canonicalize(ck, &lg) ||
            vd_vae_load(ck, &lg, &v);
    T_CHECK(!r, "load %s: %s", path, lg.msg);
    int z = vd_vae_get_config(vd_wan_parts_of(model)->vae)->z_dim, tl = 2, h = 3, w = 4;
    size_t nz = (size_t)z * tl * h * w, nv = (size_t)3 * 5 * 8 * h * 8 * w;
    float *lat = malloc(nz * sizeof(float)), *lb = malloc(nz * sizeof(float)),
          *a = malloc(nv * sizeof(float)), *b = malloc(nv * sizeof(float));
    if (!r && lat && lb && a && b) {
        for (size_t i = 0; i < nz; i++)
            lat[i] = (float)((int)((i * 37) % 23) - 11) / 8.0f;
        T_CHECK(vd_vae_decode(vd_wan_parts_of(model)->vae, kc, lat, tl, h, w, a) == 0 &&
                    vd_vae_decode(v, kc, lat, tl, h, w, b) == 0,
                "decode: %s", lg.msg);
        T_CHECK(!memcmp(a, b, nv * sizeof(float)), "the detached decoder decodes differently");

        vdit_video *in = pattern(40, 24, 5, 3);
        p = base();
        p.strength = 0.5f;
        T_CHECK(vdit_edit(ctx, &p, in, &out) == 0 && out, "edit: %s", vdit_ctx_last_error(ctx));
        vdit_video_free(&out);
        vdit_video_free(&in);
        T_CHECK(vd_vae_encode(vd_wan_parts_of(model)->vae, kc, b, 5, 8 * h, 8 * w, lat, NULL) == 0 &&
                    vd_vae_encode(v, kc, b, 5, 8 * h, 8 * w, lb, NULL) == 0,
                "encode: %s", lg.msg);
        T_CHECK(!memcmp(lat, lb, nz * sizeof(float)), "the detached encoder encodes differently");
    }
    free(lat);
    free(lb);
    free(a);
    free(b);
    vd_vae_free(&v);
    vd_ckpt_free(&ck);
    vk_ctx_free(&kc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_pipeline TINY_MODEL_DIR\n");
        return 2;
    }
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    model_dir = argv[1];
    int r = vdit_model_load(argv[1], &mp, &model);
    T_CHECK(r == 0, "load %s: %s", argv[1], mp.error);
    if (r)
        T_DONE();
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    T_CHECK(vdit_ctx_init(model, &cp, &ctx) == 0, "ctx");
    test_vae_detached(argv[1]);
    test_layouts(argv[1]);
    test_generate();
    test_cond_cache();
    test_long_prompt();
    test_edit();
    test_extend_bridge();
    test_fixed_frames();
    test_stream();
    test_stream_update();
    test_stream_keep_formats();
    test_cancel();
    test_precision();
    test_errors();
    test_loop_decode();
    vdit_ctx_free(&ctx);
    vdit_model_free(&model);
    T_CHECK(model == NULL, "model free clears");
    T_DONE();
}
