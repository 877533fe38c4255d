/* One model shared by four contexts on four threads, each running another
 * operation at the same time (generate with the step cache on, edit, a
 * streaming edit, extend): every result is bit-identical to the same call
 * run alone. The model is read-only after vdit_model_load (the VAE detached
 * there, no layout made behind it), so nothing here may depend on timing.
 * Then cancellation from another thread: vdit_ctx_cancel while a long
 * generation runs ends it with VDIT_ERR_CANCELLED within a step, and the
 * context runs the next call normally. Usage: test_concurrency TINY_MODEL. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clips.h"
#include "t.h"
#include "vdit/vdit.h"

static vdit_model *model;

enum { JOB_GENERATE, JOB_EDIT, JOB_STREAM, JOB_EXTEND, N_JOBS };
enum { W = 40, H = 24, N_IN = 9, N_STREAM = 13 };

typedef struct job {
    int kind;
    vdit_ctx *ctx;
    const vdit_video *in;
    vdit_video *out;
    int ret;
} job;

static vdit_gen_params params(int kind)
{
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = kind == JOB_GENERATE ? "a red ball bounces" : "a blue square slides";
    p.steps = 6;
    p.seed = 7 + (uint64_t)kind;
    p.width = W;
    p.height = H;
    p.n_frames = 5;
    p.strength = 0.7f;
    if (kind == JOB_GENERATE) {
        p.cache = VDIT_CACHE_EASY;
        p.cache_threshold = 0.5f;
        p.cache_start = 0.01f;
    }
    return p;
}

static vdit_video *pattern(int w, int h, int n, int seed)
{
    vdit_video *v = vdit_video_new(w, h, n);
    for (size_t i = 0; v && i < (size_t)w * h * 3 * n; i++)
        v->rgb[i] = (uint8_t)((i * 7 + (size_t)seed * 13 + i / 97) & 0xff);
    return v;
}

/* The streaming edit of `in`, its frames collected into a clip. */
static int run_stream(vdit_ctx *c, const vdit_video *in, vdit_video **out)
{
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.gen = params(JOB_STREAM);
    sp.window = 5;
    vdit_stream *s = NULL;
    int r = vdit_stream_open(c, &sp, in->width, in->height, &s);
    vdit_video *v = r ? NULL : vdit_video_new(in->width, in->height, in->n_frames);
    size_t fsz = (size_t)in->width * in->height * 3;
    int sent = 0, got = 0;
    while (!r && v && got < in->n_frames) {
        if (sent < in->n_frames) {
            vdit_frame f = { in->width, in->height, in->rgb + fsz * sent, in->width * 3, sent,
                             NULL };
            int e = vdit_stream_send(s, &f);
            if (e == 0) {
                if (++sent == in->n_frames)
                    vdit_stream_drain(s);
                continue;
            }
            if (e != VDIT_ERR_AGAIN) {
                r = e;
                break;
            }
        }
        vdit_frame o;
        int e = vdit_stream_receive(s, &o);
        if (e == VDIT_ERR_AGAIN)
            continue;
        if (e) {
            r = e;
            break;
        }
        for (int y = 0; y < o.height; y++)
            memcpy(v->rgb + fsz * got + (size_t)y * o.width * 3, o.rgb + y * o.stride,
                   (size_t)o.width * 3);
        got++;
    }
    vdit_stream_close(&s);
    if (r || !v)
        vdit_video_free(&v);
    *out = v;
    return r ? r : v ? 0 : VDIT_ERR_NOMEM;
}

static void *run_job(void *arg)
{
    job *j = arg;
    vdit_gen_params p = params(j->kind);
    switch (j->kind) {
    case JOB_GENERATE: j->ret = vdit_generate(j->ctx, &p, &j->out); break;
    case JOB_EDIT: j->ret = vdit_edit(j->ctx, &p, j->in, &j->out); break;
    case JOB_STREAM: j->ret = run_stream(j->ctx, j->in, &j->out); break;
    default: j->ret = vdit_extend(j->ctx, &p, j->in, 4, 0, &j->out); break;
    }
    return NULL;
}

static void test_shared_model(void)
{
    static const char *const names[N_JOBS] = { "generate", "edit", "stream", "extend" };
    vdit_video *clip = pattern(W, H, N_IN, 3), *long_clip = pattern(W, H, N_STREAM, 5);
    const vdit_video *inputs[N_JOBS] = { NULL, clip, long_clip, clip };
    job alone[N_JOBS], together[N_JOBS];
    for (int k = 0; k < N_JOBS; k++) { /* one after another, each on a fresh context */
        alone[k] = (job){ .kind = k, .ctx = clip_ctx1(model), .in = inputs[k] };
        run_job(&alone[k]);
        T_CHECK(alone[k].ret == 0 && alone[k].out, "%s alone: %s", names[k],
                alone[k].ctx ? vdit_ctx_last_error(alone[k].ctx) : "");
    }
    for (int round = 0; round < 2; round++) { /* the four at once */
        pthread_t th[N_JOBS];
        for (int k = 0; k < N_JOBS; k++) {
            together[k] = (job){ .kind = k, .ctx = clip_ctx1(model), .in = inputs[k] };
            T_CHECK(pthread_create(&th[k], NULL, run_job, &together[k]) == 0, "thread");
        }
        for (int k = 0; k < N_JOBS; k++)
            pthread_join(th[k], NULL);
        for (int k = 0; k < N_JOBS; k++) {
            T_CHECK(together[k].ret == 0, "%s concurrent: %s", names[k],
                    vdit_ctx_last_error(together[k].ctx));
            T_CHECK(clip_equal(alone[k].out, together[k].out),
                    "%s: the concurrent result differs from the one run alone (round %d)",
                    names[k], round);
            vdit_video_free(&together[k].out);
            vdit_ctx_free(&together[k].ctx);
        }
    }
    vdit_stats st;
    T_CHECK(vdit_ctx_get_stats(alone[JOB_GENERATE].ctx, &st) == 0 &&
                st.forwards < st.forwards_total,
            "the cached generation reused no step (%lld of %lld)", (long long)st.forwards,
            (long long)st.forwards_total);
    for (int k = 0; k < N_JOBS; k++) {
        vdit_video_free(&alone[k].out);
        vdit_ctx_free(&alone[k].ctx);
    }
    vdit_video_free(&clip);
    vdit_video_free(&long_clip);
}

/* ---- cancel from another thread ---- */

typedef struct cancel_state {
    vdit_ctx *ctx;
    atomic_int steps;      /* denoising steps reported */
    atomic_int at_cancel;  /* steps reported when the cancel was sent */
    int ret;
} cancel_state;

static int on_progress(void *user, int stage, int step, int total)
{
    cancel_state *cs = user;
    if (stage == VDIT_STAGE_DENOISE && step > 0)
        atomic_fetch_add(&cs->steps, 1);
    return 0;
}

static void *long_generate(void *arg)
{
    cancel_state *cs = arg;
    vdit_gen_params p = params(JOB_EDIT);
    p.steps = 1000;
    vdit_video *out = NULL;
    cs->ret = vdit_generate(cs->ctx, &p, &out);
    vdit_video_free(&out);
    return NULL;
}

static void test_cancel_from_thread(void)
{
    cancel_state cs = { 0 };
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.progress_cb = on_progress;
    cp.progress_user = &cs;
    T_CHECK(vdit_ctx_init(model, &cp, &cs.ctx) == 0, "ctx");
    if (!cs.ctx)
        return;
    pthread_t th;
    T_CHECK(pthread_create(&th, NULL, long_generate, &cs) == 0, "thread");
    while (atomic_load(&cs.steps) < 3) { /* well inside the denoising loop */
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    vdit_ctx_cancel(cs.ctx);
    /* read after the flag is set: any later step report sees it */
    atomic_store(&cs.at_cancel, atomic_load(&cs.steps));
    pthread_join(th, NULL);
    int after = atomic_load(&cs.steps) - atomic_load(&cs.at_cancel);
    T_CHECK(cs.ret == VDIT_ERR_CANCELLED, "cancelled generation returned %d", cs.ret);
    T_CHECK(after <= 1, "%d steps ran after the cancel (at most the one running)", after);
    /* the context is usable afterwards: the same result as on a fresh one */
    vdit_gen_params p = params(JOB_GENERATE);
    vdit_video *a = NULL, *b = NULL;
    vdit_ctx *fresh = clip_ctx1(model);
    T_CHECK(vdit_generate(cs.ctx, &p, &a) == 0 && fresh && vdit_generate(fresh, &p, &b) == 0,
            "after cancel: %s", vdit_ctx_last_error(cs.ctx));
    T_CHECK(clip_equal(a, b), "a cancelled context's next result differs from a fresh one's");
    vdit_video_free(&a);
    vdit_video_free(&b);
    vdit_ctx_free(&fresh);
    vdit_ctx_free(&cs.ctx);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_concurrency TINY_MODEL_DIR\n");
        return 2;
    }
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = 1;
    int r = vdit_model_load(argv[1], &mp, &model);
    T_CHECK(r == 0, "load %s: %s", argv[1], mp.error);
    if (r)
        T_DONE();
    test_shared_model();
    test_cancel_from_thread();
    vdit_model_free(&model);
    T_DONE();
}
