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
 *
 * Frames are 8- or 16-bit packed RGB (the stream's format), converted to
 * and from the model's [-1, 1] at full precision. Frames sent with
 * VDIT_FRAME_KEEP (FFmpeg's timeline: outside the range to edit) come back
 * as they went in; a window of kept frames only is passed through with no
 * model work, a window with any frame to edit is edited whole, and edited
 * frames within `fade` frames of a kept one are blended with their input
 * (weight d / (fade + 1) of the edit at distance d). Knowing the distance to
 * the next kept frame means seeing `fade` frames ahead, so with fade > 0 the
 * last frames of a window wait for the next window's first sends.
 */
#include <limits.h>
#include <stdio.h>

#include "pipeline.h"

typedef struct tag {
    int64_t pts;
    void *user;
    int keep;      /* sent with VDIT_FRAME_KEEP */
    int dist_prev; /* frames since the last kept frame before it (INT_MAX: none) */
} tag;

/* n frames of w x h packed pixels, bpp bytes a pixel */
typedef struct frames {
    uint8_t *px;
    size_t fsz; /* bytes a frame */
} frames;

struct vdit_stream {
    vdit_ctx *c;
    vdit_gen_params gen;
    char *prompt, *negative;  /* owned copies behind gen.prompt / negative_prompt */
    char *next_prompt;        /* pending update */
    float next_strength;      /* pending update, < 0: none */
    int width, height, h, w;  /* frame size; aligned size */
    int fmt;                  /* enum vdit_pixel_format */
    size_t fsz;               /* bytes a frame */
    int win;                  /* W: frames of a first window (1 + 4k) */
    int ctx_max;              /* C: context frames (4j - 3) */
    int fade;                 /* frames of fade next to kept frames */
    frames in;                /* queued input frames (capacity win) */
    tag *in_tag;
    int n_in;
    frames out;               /* edited frames of the last window */
    frames out_in;            /* their input (fade > 0 only: blending) */
    tag *out_tag;
    int n_out, out_pos;
    int64_t out_base;         /* stream index of out frame 0 */
    frames ctx;               /* the last ctx_max frames output */
    int n_ctx;
    int64_t n_sent;           /* frames taken since open */
    int64_t last_keep;        /* stream index of the last kept frame, -1: none */
    int draining;
    uint64_t n_windows;
};

void vdit_stream_params_default(vdit_stream_params *p)
{
    memset(p, 0, sizeof(*p));
    vdit_gen_params_default(&p->gen);
    p->window = VDIT_DEFAULT_WINDOW;
    p->overlap = VDIT_DEFAULT_OVERLAP;
    p->format = VDIT_PIXFMT_RGB24;
}

static int alloc_frames(frames *f, size_t fsz, int n)
{
    f->fsz = fsz;
    f->px = malloc(fsz * (size_t)n);
    return f->px ? 0 : -1;
}

static uint8_t *frame_at(const frames *f, int i)
{
    return f->px + f->fsz * (size_t)i;
}

int vdit_stream_open(vdit_ctx *c, const vdit_stream_params *p, int width, int height,
                     vdit_stream **out)
{
    if (!c || !out)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(c);
    return vd_stream_open(c, p, width, height, out);
}

int vd_stream_open(vdit_ctx *c, const vdit_stream_params *p, int width, int height,
                   vdit_stream **out)
{
    *out = NULL;
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
    int bpp = vdit_pixel_format_bytes(p->format);
    if (!bpp)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "stream pixel format %d unknown",
                      p->format);
    if (p->fade < 0 || p->fade > 10000)
        return vd_err(&c->log, VDIT_ERR_INVALID_ARG, "fade %d out of range (0..10000)",
                      p->fade);
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
    s->h = vd_align(c->model, height);
    s->w = vd_align(c->model, width);
    s->fmt = p->format;
    s->fsz = (size_t)width * height * (size_t)bpp;
    s->last_keep = -1;
    int nw = p->window > 0 ? p->window : c->model->info.n_frames;
    s->win = VD_MAX(vd_align_frames(nw), 5);
    int lt = (s->win - 1) / 4 + 1;
    int j = p->overlap > 0 ? (p->overlap + 3 + 3) / 4 : 1; /* C = 4j - 3 >= overlap */
    j = VD_MAX(1, VD_MIN(j, (lt - 1) / 2));
    s->ctx_max = 4 * j - 3;
    /* a held frame waits for `fade` sends, which a window always takes */
    s->fade = VD_MIN(p->fade, s->win - s->ctx_max);
    if ((p->gen.prompt && !(s->prompt = strdup(p->gen.prompt))) ||
        (p->gen.negative_prompt && !(s->negative = strdup(p->gen.negative_prompt))) ||
        alloc_frames(&s->in, s->fsz, s->win) || alloc_frames(&s->out, s->fsz, s->win) ||
        alloc_frames(&s->ctx, s->fsz, s->ctx_max) ||
        (s->fade && alloc_frames(&s->out_in, s->fsz, s->win)) ||
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
    free(s->in.px);
    free(s->out.px);
    free(s->out_in.px);
    free(s->ctx.px);
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
    return vd_stream_send(s, in, 0);
}

int vdit_stream_send_flags(vdit_stream *s, const vdit_frame *in, unsigned flags)
{
    if (!s)
        return VDIT_ERR_INVALID_ARG;
    vd_ctx_begin(s->c);
    return vd_stream_send(s, in, flags);
}

int vd_stream_send(vdit_stream *s, const vdit_frame *in, unsigned flags)
{
    if (!in || !in->rgb)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "stream_send: no frame");
    if (flags & ~(unsigned)VDIT_FRAME_KEEP)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG, "stream_send: unknown flags 0x%x",
                      flags);
    if (s->draining)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send after drain (flush to start again)");
    if (in->width != s->width || in->height != s->height)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send: frame is %dx%d, the stream is %dx%d", in->width, in->height,
                      s->width, s->height);
    size_t row = s->fsz / (size_t)s->height;
    if (in->stride < (ptrdiff_t)row)
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send: stride %td < width * %zu bytes", in->stride,
                      row / (size_t)s->width);
    if (s->fmt == VDIT_PIXFMT_RGB48 && (((uintptr_t)in->rgb | (uintptr_t)in->stride) & 1))
        return vd_err(&s->c->log, VDIT_ERR_INVALID_ARG,
                      "stream_send: 16-bit pixels or stride not 2-byte aligned");
    if (s->n_in >= window_need(s))
        return VDIT_ERR_AGAIN;
    uint8_t *dst = frame_at(&s->in, s->n_in);
    for (int y = 0; y < s->height; y++)
        memcpy(dst + y * row, in->rgb + (ptrdiff_t)y * in->stride, row);
    tag *t = &s->in_tag[s->n_in];
    t->pts = in->pts;
    t->user = in->user;
    t->keep = !!(flags & VDIT_FRAME_KEEP);
    t->dist_prev = s->last_keep < 0 ? INT_MAX : (int)VD_MIN(s->n_sent - s->last_keep, INT_MAX);
    if (t->keep)
        s->last_keep = s->n_sent;
    s->n_sent++;
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

/* Makes the queued input the output window: its frames and tags move over,
 * the input queue empties. The input's pixels stay beside the output when
 * fades need them. */
static void input_to_output(vdit_stream *s, int n)
{
    for (int f = 0; f < n; f++)
        s->out_tag[f] = s->in_tag[f];
    if (s->fade) { /* keep the input beside the output: swap the buffers */
        frames t = s->out_in;
        s->out_in = s->in;
        s->in = t;
    }
    s->out_base = s->n_sent - s->n_in;
    s->n_out = n;
    s->out_pos = 0;
    s->n_in = 0;
}

static int process_window(vdit_stream *s)
{
    vdit_ctx *c = s->c;
    apply_updates(s);
    int cn = s->n_ctx, n = s->n_in, any_edit = 0;
    for (int f = 0; f < n; f++)
        any_edit |= !s->in_tag[f].keep;
    if (!any_edit) {
        /* nothing to edit: the frames go back as they came, no model work;
         * the next edited window starts afresh (as after a flush) */
        memcpy(s->out.px, s->in.px, s->fsz * (size_t)n);
        input_to_output(s, n);
        s->n_ctx = 0;
        return 0;
    }
    vd_run_params rp;
    int ret = vd_resolve_params(c, &s->gen, &rp);
    if (ret)
        return ret;
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
    ptrdiff_t row = (ptrdiff_t)(s->fsz / (size_t)s->height);
    if (!clip || !known) {
        ret = vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int f = 0; f < cn; f++) {
        vd_put_pixels(frame_at(&s->ctx, s->ctx_max - cn + f), row, s->fmt, s->width, s->height,
                      clip, t, job.h, job.w, f);
        known[f] = 1;
    }
    for (int f = cn; f < t; f++)
        vd_put_pixels(frame_at(&s->in, f - cn < n ? f - cn : n - 1), row, s->fmt, s->width,
                      s->height, clip, t, job.h, job.w, f);
    job.px = clip;
    job.known = known;
    int td = 0;
    if ((ret = vd_run_job(c, &rp, &job, &px, &td)))
        goto done;
    for (int f = 0; f < n; f++) {
        if (s->in_tag[f].keep) /* edited with the window, given back as it came */
            memcpy(frame_at(&s->out, f), frame_at(&s->in, f), s->fsz);
        else
            vd_get_pixels(px, td, job.h, job.w, cn + f, frame_at(&s->out, f), row, s->fmt,
                          s->width, s->height);
    }
    input_to_output(s, n);
    /* Context for the next window: the last ctx_max frames output (from
     * this window, topped up from the previous context if it was short). */
    size_t fsz = s->fsz;
    int keep = VD_MIN(s->ctx_max, n + s->n_ctx);
    int from_new = VD_MIN(keep, n);
    int from_old = keep - from_new;
    memmove(frame_at(&s->ctx, s->ctx_max - keep), frame_at(&s->ctx, s->ctx_max - from_old),
            fsz * from_old);
    memcpy(frame_at(&s->ctx, s->ctx_max - from_new), frame_at(&s->out, n - from_new),
           fsz * from_new);
    s->n_ctx = keep == s->ctx_max ? keep : 0; /* too short to align: start afresh */
    s->n_windows++;
done:
    vd_free(clip);
    vd_free(px);
    free(known);
    return ret;
}

/* Whether the frame of stream index i was sent with VDIT_FRAME_KEEP (0 for
 * frames not sent yet). */
static int kept_at(const vdit_stream *s, int64_t i)
{
    if (i >= s->out_base && i < s->out_base + s->n_out)
        return s->out_tag[i - s->out_base].keep;
    int64_t in_base = s->n_sent - s->n_in;
    if (i >= in_base && i < s->n_sent)
        return s->in_tag[i - in_base].keep;
    return 0;
}

/* Output frame f is ready to go: it needs no fade, or enough frames after it
 * were sent to know how far the next kept frame is. */
static int ready(const vdit_stream *s, int f)
{
    return !s->fade || s->draining || s->out_tag[f].keep ||
           s->n_sent - 1 >= s->out_base + f + s->fade;
}

/* Fades output frame f from / back to its input by its distance to the
 * nearest kept frame (1 .. fade frames: weight d / (fade + 1) of the edit). */
static void fade_frame(vdit_stream *s, int f)
{
    const tag *tg = &s->out_tag[f];
    if (!s->fade || tg->keep)
        return;
    int d = tg->dist_prev;
    for (int j = 1; j <= s->fade && j < d; j++)
        if (kept_at(s, s->out_base + f + j))
            d = j;
    if (d > s->fade)
        return;
    float a = (float)d / (float)(s->fade + 1);
    size_t ns = (size_t)s->width * s->height * 3;
    if (s->fmt == VDIT_PIXFMT_RGB48) {
        uint16_t *o = (uint16_t *)(void *)frame_at(&s->out, f);
        const uint16_t *i = (const uint16_t *)(const void *)frame_at(&s->out_in, f);
        for (size_t k = 0; k < ns; k++)
            o[k] = (uint16_t)((float)i[k] + a * ((float)o[k] - (float)i[k]) + 0.5f);
    } else {
        uint8_t *o = frame_at(&s->out, f);
        const uint8_t *i = frame_at(&s->out_in, f);
        for (size_t k = 0; k < ns; k++)
            o[k] = (uint8_t)((float)i[k] + a * ((float)o[k] - (float)i[k]) + 0.5f);
    }
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
    int f = s->out_pos;
    if (!ready(s, f))
        return VDIT_ERR_AGAIN;
    fade_frame(s, f);
    s->out_pos++;
    out->width = s->width;
    out->height = s->height;
    out->stride = (ptrdiff_t)(s->fsz / (size_t)s->height);
    out->rgb = frame_at(&s->out, f);
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
    s->last_keep = -1;
}

int vdit_stream_latency(const vdit_stream *s)
{
    return s ? s->win + s->fade : 0;
}
