/* Streaming edit (vdit_stream_*): the windowing logic the FFmpeg filter and
 * the GStreamer element share.
 *
 * Frames are collected into windows. The first window (or the first after a
 * flush) holds W = 1 + 4k frames and is edited by SDEdit alone. Every later
 * window holds W - C new frames and is prefixed, in its timeline, by the
 * last C = 4j - 3 frames the stream has output (j latent frames, aligned
 * with the timeline's start). Those context latents are held fixed while
 * the new frames are denoised (the mechanism of vdit_extend), so each
 * window continues from what was already shown and no seam appears; the
 * per-window cost stays that of W frames. Memory: one window of input, one
 * of output and C context frames, whatever the stream's length.
 *
 * Draining processes the partial last window (padded internally by
 * repeating its last frame; only real frames come out). A prompt or
 * strength update takes effect at the next window. Flush drops queued
 * input, pending output and the context.
 */
#include <stdio.h>

#include "pipeline.h"

typedef struct tag {
    int64_t pts;
    void *user;
} tag;

struct vdit_stream {
    vdit_ctx *c;
    vdit_gen_params gen;
    char *prompt, *negative;  /* owned copies behind gen.prompt / negative_prompt */
    char *next_prompt;        /* pending update */
    float next_strength;      /* pending update, < 0: none */
    int width, height, h, w;  /* frame size; aligned size */
    int win;                  /* W: frames of a first window (1 + 4k) */
    int ctx_max;              /* C: context frames (4j - 3) */
    vdit_video in;            /* queued input frames (capacity win) */
    tag *in_tag;
    int n_in;
    vdit_video out;           /* edited frames of the last window */
    tag *out_tag;
    int n_out, out_pos;
    vdit_video ctx;           /* the last ctx_max frames output */
    int n_ctx;
    int draining;
    uint64_t n_windows;
};

void vdit_stream_params_default(vdit_stream_params *p)
{
    memset(p, 0, sizeof(*p));
    vdit_gen_params_default(&p->gen);
    p->window = VDIT_DEFAULT_WINDOW;
    p->overlap = VDIT_DEFAULT_OVERLAP;
}

static int alloc_video(vdit_video *v, int w, int h, int n)
{
    v->width = w;
    v->height = h;
    v->n_frames = n;
    v->rgb = malloc((size_t)w * h * 3 * (size_t)n);
    return v->rgb ? 0 : -1;
}

int vdit_stream_open(vdit_ctx *c, const vdit_stream_params *p, int width, int height,
                     vdit_stream **out)
{
    if (!c || !out)
        return VDIT_ERR_INVALID_ARG;
    *out = NULL;
    vd_ctx_begin(c);
    vdit_stream_params defp;
    if (!p) {
        vdit_stream_params_default(&defp);
        p = &defp;
    }
    if (width < 1 || height < 1 || width > 8192 || height > 8192)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "stream size %dx%d out of range", width,
                      height);
    int e = vd_check_strength(&c->log, p->gen.strength);
    if (e)
        return e;
    if (p->window < 0 || p->window > 10000 || p->overlap < 0)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "window %d / overlap %d out of range",
                      p->window, p->overlap);
    vd_run_params rp;
    int ret = vd_resolve_params(c, &p->gen, &rp);
    if (ret)
        return ret;
    vdit_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    s->c = c;
    s->gen = p->gen;
    s->next_strength = -1;
    s->width = width;
    s->height = height;
    s->h = vd_align16(height);
    s->w = vd_align16(width);
    int nw = p->window > 0 ? p->window : c->model->info.n_frames;
    s->win = VD_MAX(vd_align_frames(nw), 5);
    int lt = (s->win - 1) / 4 + 1;
    int j = p->overlap > 0 ? (p->overlap + 3 + 3) / 4 : 1; /* C = 4j - 3 >= overlap */
    j = VD_MAX(1, VD_MIN(j, (lt - 1) / 2));
    s->ctx_max = 4 * j - 3;
    if ((p->gen.prompt && !(s->prompt = strdup(p->gen.prompt))) ||
        (p->gen.negative_prompt && !(s->negative = strdup(p->gen.negative_prompt))) ||
        alloc_video(&s->in, width, height, s->win) || alloc_video(&s->out, width, height, s->win) ||
        alloc_video(&s->ctx, width, height, s->ctx_max) ||
        !(s->in_tag = calloc((size_t)s->win, sizeof(tag))) ||
        !(s->out_tag = calloc((size_t)s->win, sizeof(tag)))) {
        vdit_stream_close(&s);
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    }
    s->gen.prompt = s->prompt;
    s->gen.negative_prompt = s->negative;
    *out = s;
    return 0;
}

void vdit_stream_close(vdit_stream **ps)
{
    vdit_stream *s = ps ? *ps : NULL;
    if (!s)
        return;
    free(s->prompt);
    free(s->negative);
    free(s->next_prompt);
    free(s->in.rgb);
    free(s->out.rgb);
    free(s->ctx.rgb);
    free(s->in_tag);
    free(s->out_tag);
    free(s);
    *ps = NULL;
}

/* New frames a window takes: W alone, or W - C after a context. */
static int window_need(const vdit_stream *s)
{
    return s->n_ctx ? s->win - s->n_ctx : s->win;
}

int vdit_stream_send(vdit_stream *s, const vdit_frame *in)
{
    if (!s)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(s->c);
    return vd_stream_send(s, in);
}

int vd_stream_send(vdit_stream *s, const vdit_frame *in)
{
    if (!in || !in->rgb)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "stream_send: no frame");
    if (s->draining)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send after drain (flush to start again)");
    if (in->width != s->width || in->height != s->height)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send: frame is %dx%d, the stream is %dx%d", in->width, in->height,
                      s->width, s->height);
    if (in->stride < (ptrdiff_t)in->width * 3)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "stream_send: stride %td < width * 3",
                      in->stride);
    if (s->n_in >= window_need(s))
        return VDIT_ERR_AGAIN;
    size_t row = (size_t)s->width * 3;
    uint8_t *dst = s->in.rgb + (size_t)s->n_in * row * s->height;
    for (int y = 0; y < s->height; y++)
        memcpy(dst + y * row, in->rgb + (ptrdiff_t)y * in->stride, row);
    s->in_tag[s->n_in].pts = in->pts;
    s->in_tag[s->n_in].user = in->user;
    s->n_in++;
    return 0;
}

int vdit_stream_drain(vdit_stream *s)
{
    if (!s)
        return VDIT_ERR_INVALID_ARG;
    s->draining = 1;
    return 0;
}

static int apply_updates(vdit_stream *s)
{
    if (s->next_prompt) {
        free(s->prompt);
        s->prompt = s->next_prompt;
        s->next_prompt = NULL;
        s->gen.prompt = s->prompt;
    }
    if (s->next_strength >= 0) {
        s->gen.strength = s->next_strength;
        s->next_strength = -1;
    }
    return 0;
}

static int process_window(vdit_stream *s)
{
    vdit_ctx *c = s->c;
    apply_updates(s);
    vd_run_params rp;
    int ret = vd_resolve_params(c, &s->gen, &rp);
    if (ret)
        return ret;
    int cn = s->n_ctx, n = s->n_in;
    int t = vd_align_frames(cn + n);
    vd_job job = { 0 };
    job.t = t;
    job.h = s->h;
    job.w = s->w;
    job.strength = s->gen.strength;
    job.stream = s->n_windows;
    float *clip = vd_malloc(sizeof(float) * 3 * (size_t)t * job.h * job.w);
    uint8_t *known = calloc((size_t)t, 1);
    float *px = NULL;
    if (!clip || !known) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int f = 0; f < cn; f++) {
        vd_put_frame(&s->ctx, s->ctx.n_frames - cn + f, clip, t, job.h, job.w, f);
        known[f] = 1;
    }
    for (int f = cn; f < t; f++)
        vd_put_frame(&s->in, f - cn < n ? f - cn : n - 1, clip, t, job.h, job.w, f);
    job.px = clip;
    job.known = known;
    int td = 0;
    if ((ret = vd_run_job(c, &rp, &job, &px, &td)))
        goto done;
    for (int f = 0; f < n; f++) {
        vd_get_frame(px, td, job.h, job.w, cn + f, &s->out, f);
        s->out_tag[f] = s->in_tag[f];
    }
    s->n_out = n;
    s->out_pos = 0;
    /* Context for the next window: the last ctx_max frames output (from
     * this window, topped up from the previous context if it was short). */
    size_t fsz = (size_t)s->width * s->height * 3;
    int keep = VD_MIN(s->ctx_max, n + s->n_ctx);
    int from_new = VD_MIN(keep, n);
    int from_old = keep - from_new;
    memmove(s->ctx.rgb + fsz * (s->ctx_max - keep),
            s->ctx.rgb + fsz * (s->ctx_max - from_old), fsz * from_old);
    memcpy(s->ctx.rgb + fsz * (s->ctx_max - from_new), s->out.rgb + fsz * (n - from_new),
           fsz * from_new);
    s->n_ctx = keep == s->ctx_max ? keep : 0; /* too short to align: start afresh */
    s->n_in = 0;
    s->n_windows++;
done:
    vd_free(clip);
    vd_free(px);
    free(known);
    return ret;
}

int vdit_stream_receive(vdit_stream *s, vdit_frame *out)
{
    if (!s)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(s->c);
    return vd_stream_receive(s, out);
}

int vd_stream_receive(vdit_stream *s, vdit_frame *out)
{
    if (!out)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "stream_receive: out is NULL");
    if (s->out_pos >= s->n_out) {
        if (s->n_in > 0 && (s->n_in >= window_need(s) || s->draining)) {
            int ret = process_window(s);
            if (ret)
                return ret;
        } else {
            return s->draining ? VDIT_ERR_EOF : VDIT_ERR_AGAIN;
        }
    }
    int f = s->out_pos++;
    out->width = s->width;
    out->height = s->height;
    out->stride = (ptrdiff_t)s->width * 3;
    out->rgb = s->out.rgb + (size_t)f * s->width * s->height * 3;
    out->pts = s->out_tag[f].pts;
    out->user = s->out_tag[f].user;
    return 0;
}

int vdit_stream_update(vdit_stream *s, const char *prompt, float strength)
{
    if (!s)
        return VDIT_ERR_INVALID_ARG;
    if (strength > 1 || strength != strength)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "strength %g out of range [0, 1]",
                      (double)strength);
    if (prompt) {
        char *cp = strdup(prompt);
        if (!cp)
            return vd_err(&s->c->log, VDIT_ERR_NOMEM, "out of memory");
        free(s->next_prompt);
        s->next_prompt = cp;
    }
    if (strength >= 0)
        s->next_strength = strength;
    return 0;
}

void vdit_stream_flush(vdit_stream *s)
{
    if (!s)
        return;
    s->n_in = 0;
    s->n_out = s->out_pos = 0;
    s->n_ctx = 0;
    s->draining = 0;
}

int vdit_stream_latency(const vdit_stream *s)
{
    return s ? s->win : 0;
}
