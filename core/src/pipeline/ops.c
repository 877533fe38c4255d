/* The operations: text to video / image, SDEdit, extend, loop and bridge,
 * as jobs for the engine (engine.c, vd_run_job). They never go back up
 * through the public API: a long edit runs the stream's internals. */
#include <math.h>
#include <stdio.h>

#include "pipeline.h"

/* ---- operations ---------------------------------------------------------------- */

static int check_size(vdit_ctx *c, int w, int h, int n)
{
    if (w < 1 || h < 1 || w > 8192 || h > 8192)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "size %dx%d out of range (1..8192)", w, h);
    if (n < 1 || n > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "frame count %d out of range (1..100000)",
                      n);
    return 0;
}

static int check_video(vdit_ctx *c, const vdit_video *v, const char *what)
{
    if (!v || !v->rgb)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "%s: no video given", what);
    if (check_size(c, v->width, v->height, v->n_frames))
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "%s: %dx%d with %d frames is out of range",
                      what, v->width, v->height, v->n_frames);
    return 0;
}

/* p's parameters with the model's defaults filled in (p NULL: defaults). */
static int resolve(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp)
{
    vdit_gen_params defp;
    if (!p) {
        vdit_gen_params_default(&defp);
        p = &defp;
    }
    return vd_resolve_params(c, p, rp);
}

/* Starts an operation that returns a clip in *out. */
static int start(vdit_ctx *c, const vdit_gen_params *p, vd_run_params *rp, vdit_video **out)
{
    if (!c)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(c);
    if (!out)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    return resolve(c, p, rp);
}

static int extend_forward(vdit_ctx *c, const vd_run_params *rp, int h, int w, int tw, int kmax,
                          int tw1, vdit_video *v, int cur, uint64_t win0);

/* Source frames of a window: f0 .. f0 + n - 1 of v. */
typedef struct span {
    const vdit_video *v;
    int f0, n;
} span;

static int fill_window(vdit_ctx *c, const vd_run_params *rp, int h, int w, span a, int pad_front,
                       int n_gen, int pad_back, span b, float strength, uint64_t stream,
                       vdit_video *dst, int d0);

/* Output size of image-to-video: the asked size; with none asked, the
 * image's aspect at the model's default area (Wan2.2: 1280 x 704, its max_area),
 * sides multiples of the model's alignment (Wan2.2's best_output_size);
 * with one side asked, the other from the aspect. */
static int image_size(const vdit_model *m, vd_log *lg, const vdit_video *im, int pw, int ph,
                      int *w, int *h)
{
    if (pw > 0 && ph > 0) {
        *w = pw;
        *h = ph;
    } else if (pw > 0 || ph > 0) {
        double a = (double)im->width / im->height;
        *w = pw > 0 ? pw : (int)VD_MAX(1, lround(ph * a));
        *h = ph > 0 ? ph : (int)VD_MAX(1, lround(pw / a));
    } else {
        int64_t area = (int64_t)m->info.width * m->info.height;
        if (vd_best_output_size(im->width, im->height, m->geom.align, area, w, h))
            return vd_err(lg, VDIT_ERR_INVALID_ARG,
                          "image %dx%d: no output size of at most %lld pixels in its aspect "
                          "(sides multiples of %d); give a width and height",
                          im->width, im->height, (long long)area, m->geom.align);
    }
    return 0;
}

/* The frame size vdit_generate() makes for p (NULL: the defaults) on m: the
 * one place that decides it, so that vdit_gen_size() announces what
 * vdit_generate() then makes. Failures go to lg (may be NULL). Reads only
 * the image's size, not its pixels. */
static int gen_size(const vdit_model *m, const vdit_gen_params *p, vd_log *lg, int *w, int *h)
{
    *w = p && p->width > 0 ? p->width : m->info.width;
    *h = p && p->height > 0 ? p->height : m->info.height;
    if (p && (p->width < 0 || p->height < 0 || p->n_frames < 0))
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "negative width, height or frame count");
    const vdit_video *im = p ? p->image : NULL;
    if (!im)
        return 0;
    if (im->width < 1 || im->height < 1 || im->width > 8192 || im->height > 8192)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "image: size %dx%d out of range (1..8192)",
                      im->width, im->height);
    return image_size(m, lg, im, p->width, p->height, w, h);
}

int vdit_gen_size(const vdit_model *m, const vdit_gen_params *p, int *width, int *height)
{
    int w, h, ret;
    if (!m || !width || !height)
        return VDIT_ERR_INVALID_ARG;
    if ((ret = gen_size(m, p, NULL, &w, &h)))
        return ret;
    if (w < 1 || h < 1 || w > 8192 || h > 8192)
        return VDIT_ERR_INVALID_ARG; /* vdit_generate refuses it (check_size) */
    *width = w;
    *height = h;
    return 0;
}

/* The image's first frame resized to cover w x h (scale max(w / iw, h / ih),
 * sides rounded) and centre-cropped, as Wan2.2's image-to-video prepares it. */
static vdit_video *fit_image(vdit_ctx *c, const vdit_video *im, int w, int h)
{
    int rw, rh, x0, y0;
    vd_image_fit(im->width, im->height, w, h, &rw, &rh, &x0, &y0);
    return vd_video_resize_crop(im, 0, rw, rh, x0, y0, w, h);
}

/* Noise stream of a loop's closing window (windows of a long clip count up from 1). */
#define VD_LOOP_STREAM 0x4c4f4f50u

int vdit_generate(vdit_ctx *c, const vdit_gen_params *p, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret)
        return ret;
    const vdit_model_info *in = &c->model->info;
    int w, h, nf = p && p->n_frames > 0 ? p->n_frames : in->n_frames;
    const vdit_video *image = p ? p->image : NULL;
    if (image) {
        if ((ret = check_video(c, image, "image")))
            return ret;
        if (p->loop)
            return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                          "an image and a loop together: make the clip from the image, then "
                          "loop it with vdit_bridge");
    }
    if ((ret = gen_size(c->model, p, &c->log, &w, &h)))
        return ret;
    if ((ret = check_size(c, w, h, nf)))
        return ret;
    int loop = p && p->loop;
    /* A loop of 8 frames or more is a clip whose last 4 frames are then
     * made again as a bridge from the frame before them back to its first
     * 8 frames (docs/operations.md); shorter loops, and every loop of a
     * model whose vdit.json says "loop": "circular", denoise a circular
     * timeline (vd_run_job). The clip is made one frame longer and its
     * first frame dropped: a clip's first frame is decoded alone (Wan's
     * first latent frame) and stands apart from the rest, and the loop
     * then starts on a whole latent frame of 4. */
    int loop_back = loop && nf >= 8 && !c->model->circular_loop;
    /* the finished loop is decoded after its own last frame (vd_loop_decode;
     * vdit.json "loop_turns" 0 leaves it out): whole latent frames, 4k */
    int loop_decode = loop_back && c->model->loop_turns > 0;
    if (loop_decode)
        nf = (nf + 3) / 4 * 4;
    if (loop_back) {
        loop = 0;
        if ((ret = vd_check_strength(&c->log, p->strength)))
            return ret;
        nf++;
    }
    vd_job job = { 0 };
    job.h = vd_align(c->model, h);
    job.w = vd_align(c->model, w);
    job.strength = -1;
    if (loop) {
        if (nf < 4)
            return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                          "a loop needs at least 4 frames (got %d)", nf);
        nf = (nf + 3) / 4 * 4; /* a loop is 4 frames per latent frame */
        job.t = 1 + (nf / 4 - 1) * 4;
        job.circular = 1;
    } else {
        job.t = vd_align_frames(nf);
    }
    /* Longer than the model's length: the first window is generated, the
     * rest continues from it window by window (as vdit_extend), so cost
     * grows linearly and every window stays within what the model learnt. */
    int tw = VD_MAX(vd_align_frames(in->n_frames), 5);
    int first = nf;
    if (!loop && job.t > tw) {
        job.t = tw;
        first = tw;
    }
    float *px = NULL, *clip = NULL;
    uint8_t *known = NULL;
    int td = 0;
    if (image) {
        /* the image, fitted to the output, is the timeline's first frame */
        vdit_video *fit = fit_image(c, image, w, h);
        clip = fit ? vd_malloc(sizeof(float) * 3 * (size_t)job.t * job.h * job.w) : NULL;
        known = calloc((size_t)job.t, 1);
        if (!fit || !clip || !known) {
            vdit_video_free(&fit);
            vd_free(clip);
            free(known);
            return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        }
        for (int f = 0; f < job.t; f++)
            vd_put_frame(fit, 0, clip, job.t, job.h, job.w, f);
        vdit_video_free(&fit);
        known[0] = 1;
        job.px = clip;
        job.known = known;
    }
    ret = vd_run_job(c, &rp, &job, &px, &td);
    vd_free(clip);
    free(known);
    if (ret)
        return ret;
    vdit_video *v = vdit_video_new(w, h, nf);
    if (!v) {
        vd_free(px);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    for (int f = 0; f < first; f++)
        vd_get_frame(px, td, job.h, job.w, f, v, f);
    vd_free(px);
    if (first < nf) {
        int kmax = VD_MAX(1, ((tw - 1) / 4 + 1) / 4);
        if ((ret = extend_forward(c, &rp, job.h, job.w, tw, kmax, tw, v, first, 1))) {
            vdit_video_free(&v);
            return ret;
        }
    }
    if (loop_back) {
        /* from a crossfade of the frame before the tail into the loop's
         * first frame, as a bridge at the call's strength, with the loop's
         * first 8 frames after it (two latent frames: the motion to join;
         * a loop under 12 frames lends some of the frames being made again,
         * as first made) */
        const span a = { v, nf - 5, 1 }, b = { v, 1, 8 };
        if ((ret = fill_window(c, &rp, job.h, job.w, a, 0, 4, 0, b, p->strength, VD_LOOP_STREAM, v,
                               nf - 4))) {
            vdit_video_free(&v);
            return ret;
        }
        if (loop_decode && (ret = vd_loop_decode(c, v, 1, (nf - 1) / 4, c->model->loop_turns,
                                                 c->model->loop_history, job.h, job.w))) {
            vdit_video_free(&v);
            return ret;
        }
        size_t fsz = (size_t)w * h * 3;
        memmove(v->rgb, v->rgb + fsz, fsz * (size_t)(nf - 1));
        v->n_frames = nf - 1;
    }
    *out = v;
    return 0;
}

/* A clip longer than one window is edited as a stream: window by window,
 * each continuing from the previous window's output (stream.c), so the
 * attention cost stays that of one window and no seam shows. Each frame
 * goes to sink as it comes out. */
static int edit_windows(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, int win,
                        vdit_frame_sink sink, void *user)
{
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    if (p)
        sp.gen = *p;
    sp.window = win;
    vdit_stream *s = NULL;
    int ret = vd_stream_open(c, &sp, in->width, in->height, &s);
    if (ret)
        return ret;
    size_t fsz = (size_t)in->width * in->height * 3;
    int sent = 0, got = 0;
    while (got < in->n_frames) {
        if (sent < in->n_frames) {
            vdit_frame f = { in->width, in->height, in->rgb + fsz * sent, in->width * 3, sent,
                             NULL };
            ret = vd_stream_send(s, &f, 0);
            if (!ret) {
                if (++sent == in->n_frames)
                    vdit_stream_drain(s);
                continue;
            }
            if (ret != VDIT_ERR_AGAIN)
                break;
        }
        vdit_frame o;
        ret = vd_stream_receive(s, &o);
        if (ret == VDIT_ERR_AGAIN)
            continue;
        if (ret || (ret = sink(user, got, o.rgb)))
            break;
        got++;
    }
    vdit_stream_close(&s);
    if (got != in->n_frames)
        return ret ? ret : vd_err(&c->log, VDIT_ERR_INTERNAL, "stream lost frames");
    return 0;
}

/* The edit of any length, every frame to sink in order (vdit_edit_frames;
 * rp resolved by the caller). */
static int edit_frames(vdit_ctx *c, const vd_run_params *rp, const vdit_gen_params *p,
                       const vdit_video *in, vdit_frame_sink sink, void *user)
{
    int ret = check_video(c, in, "edit input");
    if (ret)
        return ret;
    float strength = p ? p->strength : (float)VDIT_DEFAULT_STRENGTH;
    if ((ret = vd_check_strength(&c->log, strength)))
        return ret;
    if (!sink)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "no frame sink given");
    int win = p && p->n_frames > 0 ? p->n_frames : c->model->info.n_frames;
    if (in->n_frames > vd_align_frames(win))
        return edit_windows(c, p, in, win, sink, user);
    vd_job job = { 0 };
    job.h = vd_align(c->model, in->height);
    job.w = vd_align(c->model, in->width);
    job.t = vd_align_frames(in->n_frames);
    job.strength = strength;
    float *clip = vd_malloc(sizeof(float) * 3 * (size_t)job.t * job.h * job.w);
    if (!clip)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    for (int f = 0; f < job.t; f++)
        vd_put_frame(in, f, clip, job.t, job.h, job.w, f);
    job.px = clip;
    float *px = NULL;
    int td = 0;
    ret = vd_run_job(c, rp, &job, &px, &td);
    vd_free(clip);
    if (ret)
        return ret;
    vdit_video *fr = vdit_video_new(in->width, in->height, 1);
    if (!fr) {
        vd_free(px);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    for (int f = 0; f < in->n_frames && !ret; f++) {
        vd_get_frame(px, td, job.h, job.w, f, fr, 0);
        ret = sink(user, f, fr->rgb);
    }
    vdit_video_free(&fr);
    vd_free(px);
    return ret;
}

int vdit_edit_frames(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in,
                     vdit_frame_sink sink, void *user)
{
    if (!c)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(c);
    vd_run_params rp;
    int ret = resolve(c, p, &rp);
    return ret ? ret : edit_frames(c, &rp, p, in, sink, user);
}

/* vdit_edit's sink: frame i into the clip. */
static int copy_frame(void *user, int i, const uint8_t *rgb)
{
    vdit_video *v = user;
    size_t fsz = (size_t)v->width * v->height * 3;
    memcpy(v->rgb + fsz * (size_t)i, rgb, fsz);
    return 0;
}

int vdit_edit(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, in, "edit input")))
        return ret;
    vdit_video *v = vdit_video_new(in->width, in->height, in->n_frames);
    if (!v)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    if ((ret = edit_frames(c, &rp, p, in, copy_frame, v))) {
        vdit_video_free(&v);
        return ret;
    }
    *out = v;
    return 0;
}

/* One window of an in-time fill: [a: ca given frames | n_gen new | b: cb
 * given frames] (a or b may be absent), T = 1 + 4k. a's frames are the
 * first ca of its timeline (latent aligned: ca = 4k - 3); b's fill the end.
 * Frames past the end of a source repeat its last frame. The n_gen new
 * frames go to dst[d0 ...]. */
static int fill_window(vdit_ctx *c, const vd_run_params *rp, int h, int w, span a, int pad_front,
                       int n_gen, int pad_back, span b, float strength, uint64_t stream,
                       vdit_video *dst, int d0)
{
    int t = a.n + pad_front + n_gen + pad_back + b.n;
    if ((t - 1) % 4)
        return vd_err(&c->log, VDIT_ERR_INTERNAL, "window of %d frames is not 1 + 4k", t);
    vd_job job = { 0 };
    job.t = t;
    job.h = h;
    job.w = w;
    job.strength = strength;
    job.stream = stream;
    float *clip = vd_malloc(sizeof(float) * 3 * (size_t)t * h * w);
    uint8_t *known = calloc((size_t)t, 1);
    if (!clip || !known) {
        vd_free(clip);
        free(known);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    /* Given frames; the rest hold the nearest given frame (only the
     * encoder sees them: those latents start from noise), or, between two
     * sources, a crossfade from a's last frame to b's first (the start of
     * a bridge at strength < 1). */
    for (int f = 0; f < a.n; f++) {
        vd_put_frame(a.v, a.f0 + f, clip, t, h, w, f);
        known[f] = 1;
    }
    for (int f = 0; f < b.n; f++) {
        vd_put_frame(b.v, b.f0 + f, clip, t, h, w, t - b.n + f);
        known[t - b.n + f] = 1;
    }
    for (int f = a.n; f < t - b.n; f++) {
        if (a.n)
            vd_put_frame(a.v, a.f0 + a.n - 1, clip, t, h, w, f);
        else
            vd_put_frame(b.v, b.f0, clip, t, h, w, f);
    }
    if (a.n && b.n && t - b.n > a.n) {
        float *fb = vd_malloc(sizeof(float) * 3 * (size_t)h * w);
        if (!fb) {
            vd_free(clip);
            free(known);
            return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        }
        vd_put_frame(b.v, b.f0, fb, 1, h, w, 0);
        int g0 = a.n, ng = t - b.n - a.n;
        size_t fsz = (size_t)h * w;
        for (int f = g0; f < g0 + ng; f++) {
            float wb = (float)(f - g0 + 1) / (float)(ng + 1);
            for (int ch = 0; ch < 3; ch++) {
                float *d = clip + ((size_t)ch * t + f) * fsz;
                const float *e = fb + (size_t)ch * fsz;
                for (size_t k = 0; k < fsz; k++)
                    d[k] += wb * (e[k] - d[k]);
            }
        }
        vd_free(fb);
    }
    job.px = clip;
    job.known = known;
    float *px = NULL;
    int td = 0;
    int ret = vd_run_job(c, rp, &job, &px, &td);
    vd_free(clip);
    free(known);
    if (ret)
        return ret;
    for (int f = 0; f < n_gen; f++)
        vd_get_frame(px, td, h, w, a.n + pad_front + f, dst, d0 + f);
    vd_free(px);
    return 0;
}

/* Fills frames cur .. v->n_frames - 1 of v window by window, each window
 * keeping the last 4k - 3 frames made so far (k <= kmax latent frames,
 * aligned with the start of its timeline); windows are tw frames long, tw1
 * where only one latent frame is kept. Windows use noise streams win0,
 * win0 + 1... */
static int extend_forward(vdit_ctx *c, const vd_run_params *rp, int h, int w, int tw, int kmax,
                          int tw1, vdit_video *v, int cur, uint64_t win0)
{
    const span none = { NULL, 0, 0 };
    int ret = 0;
    while (cur < v->n_frames) {
        int k = VD_MIN(kmax, (cur + 3) / 4);
        int ca = 4 * k - 3;
        int n_gen = VD_MIN(v->n_frames - cur, (k > 1 ? tw : tw1) - ca);
        int pad = vd_align_frames(ca + n_gen) - (ca + n_gen);
        span a = { v, cur - ca, ca };
        if ((ret = fill_window(c, rp, h, w, a, 0, n_gen, pad, none, -1, win0++, v, cur)))
            return ret;
        cur += n_gen;
    }
    return 0;
}

/* An extension's windows keep at least two latent frames of context where
 * there are that many: one holds no motion to go on from (forward it is a
 * single frame), and the joint then stops or turns back (docs/operations.md).
 * Those windows are widened to 13 frames where the model's are shorter (5
 * new frames beside 8 held, 8 beside 5); *tw1 is the window that keeps one
 * latent frame. A window the caller set keeps its length. */
static void context_plan(int *tw, int *kmax, int *tw1, int caller_set)
{
    *tw1 = *tw;
    if (*tw < 13 && !caller_set)
        *tw = 13;
    if (*tw >= 13)
        *kmax = VD_MAX(*kmax, 2);
}

/* Window length and the most latent frames of context a window keeps. */
static void window_plan(vdit_ctx *c, const vdit_gen_params *p, int *tw, int *kmax)
{
    int nw = p && p->n_frames > 0 ? p->n_frames : c->model->info.n_frames;
    *tw = VD_MAX(vd_align_frames(nw), 5);
    int lt = (*tw - 1) / 4 + 1;
    *kmax = VD_MAX(1, lt / 4);
}

int vdit_extend(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, int n_new,
                int backward, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, in, "extend input")))
        return ret;
    if (n_new < 1 || n_new > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "new frame count %d out of range (1..100000)", n_new);
    int h = vd_align(c->model, in->height), w = vd_align(c->model, in->width);
    int tw, kmax, tw1;
    window_plan(c, p, &tw, &kmax);
    context_plan(&tw, &kmax, &tw1, p && p->n_frames > 0);
    int total = in->n_frames + n_new;
    vdit_video *v = vdit_video_new(in->width, in->height, total);
    if (!v)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    size_t fsz = (size_t)in->width * in->height * 3;
    const span none = { NULL, 0, 0 };
    uint64_t win = 0;
    if (!backward) {
        /* Windows move forward; each keeps the last 4k - 3 frames made so
         * far (k latent frames, aligned with the start of its timeline). */
        memcpy(v->rgb, in->rgb, fsz * in->n_frames);
        if ((ret = extend_forward(c, &rp, h, w, tw, kmax, tw1, v, in->n_frames, 0)))
            goto fail;
    } else {
        /* Windows move backward; each keeps the first 4k frames known so
         * far (k latent frames aligned with the end of its timeline; a clip
         * shorter than 4 frames is held on its last frame). */
        memcpy(v->rgb + fsz * n_new, in->rgb, fsz * in->n_frames);
        int first = n_new;
        while (first > 0) {
            int have = total - first;
            int k = VD_MIN(kmax, VD_MAX(1, have / 4));
            int cb = 4 * k;
            int n_gen = VD_MIN(first, (k > 1 ? tw : tw1) - cb);
            int pad = (4 - (n_gen - 1) % 4) % 4;
            span b = { v, first, cb };
            if ((ret = fill_window(c, &rp, h, w, none, pad, n_gen, 0, b, -1, win++, v,
                                   first - n_gen)))
                goto fail;
            first -= n_gen;
        }
    }
    *out = v;
    return 0;
fail:
    vdit_video_free(&v);
    return ret;
}

int vdit_bridge(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *a, const vdit_video *b,
                int n_mid, vdit_video **out)
{
    vd_run_params rp;
    int ret = start(c, p, &rp, out);
    if (ret || (ret = check_video(c, a, "bridge first clip")) ||
        (ret = check_video(c, b, "bridge second clip")))
        return ret;
    if (a->width != b->width || a->height != b->height)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "bridge clips differ in size (%dx%d and %dx%d)", a->width, a->height,
                      b->width, b->height);
    if (n_mid < 1 || n_mid > 100000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                      "bridge frame count %d out of range (1..100000)", n_mid);
    float strength = p ? p->strength : (float)VDIT_DEFAULT_STRENGTH;
    if ((ret = vd_check_strength(&c->log, strength)))
        return ret;
    int h = vd_align(c->model, a->height), w = vd_align(c->model, a->width);
    int tw, kmax;
    window_plan(c, p, &tw, &kmax);
    /* One window: a's tail (4ka - 3 frames), the new frames, b's head (4kb
     * frames, plus up to 3 more so the timeline is 1 + 4k: those share a
     * latent frame with new ones and are generated, not held). */
    int ka = VD_MIN(kmax, (a->n_frames + 3) / 4);
    int kb = VD_MIN(kmax, VD_MAX(1, b->n_frames / 4));
    span sa = { a, a->n_frames - (4 * ka - 3), 4 * ka - 3 };
    span sb = { b, 0, 4 * kb + (4 - n_mid % 4) % 4 };
    vdit_video *v = vdit_video_new(a->width, a->height, n_mid);
    if (!v)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    if ((ret = fill_window(c, &rp, h, w, sa, 0, n_mid, 0, sb, strength, 0, v, 0))) {
        vdit_video_free(&v);
        return ret;
    }
    *out = v;
    return 0;
}
