/* TAEHV decoder (taehv.h): loading taehv.py's state dict, and its
 * sequential (StreamingTAEHV) evaluation one latent frame at a time.
 *
 * Why this shape:
 * - A MemBlock's first conv takes cat(x, past) (2C channels). Its weights
 *   [C, 2C, 3, 3] are stored here as a two-tap convolution [C, C, 2, 3, 3]
 *   (tap 0: the x half, tap 1: the past half), so the kernels' conv_tap
 *   runs it on the two frames where they lie: no concatenated copy, and at
 *   frame 0 (past = zeros) the second tap is skipped.
 * - Upsample (nearest x2) then TGrow (a bias-free 1x1 conv) equals TGrow
 *   then upsample: TGrow runs at the low resolution (4x fewer products).
 * - Nearest x2 then a 3x3 conv is run without the x2 frame, as the
 *   Wan-VAE's upsamplers are (vae.c, up_spatial): output pixel (2i + a,
 *   2j + b) sees input rows i - 1 + a, i + a and columns j - 1 + b, j + b
 *   only, so each of the four parities is a 2x2 conv of the low-resolution
 *   frame with summed taps (made at load, summed in double): 2.25x fewer
 *   products and no frame of 4x the size.
 * - Depth first: a level calls the next one for every frame it emits, so
 *   each level holds one frame in flight, three working frames and one past
 *   frame per MemBlock; nothing depends on the number of frames.
 * - The first 3 raw frames (frames_to_trim) are dropped before the last
 *   conv, which has no memory: their two head convolutions are not run. */
#include <math.h>
#include <stdio.h>

#include "taehv.h"
#include "vae.h"

typedef struct tconv {
    vk_conv cv;
    float *own;   /* fp32 weights the layer reads until detached (owned) */
    int has_bias;
} tconv;

/* c0 has two taps: x, past */
typedef struct tmem {
    tconv c0, c1, c2;
} tmem;

struct vd_taehv {
    vd_taehv_config cfg;
    tconv in;         /* decoder.1 */
    tmem mem[3][3];   /* decoder.3-5, 9-11, 15-17 */
    tconv grow[3];    /* decoder.7, 13, 19 (1x1, the kept rows) */
    tconv up[3][4];   /* decoder.8, 14, 20 as four sub-pixel 2x2 convs (parity 2a + b) */
    tconv out;        /* decoder.22 */
};

static const vk_conv_geom g3 = { 1, 1, 1, 0, 0, 1, 1, 1, 1 };
static const vk_conv_geom g1 = { 1, 1, 1, 0, 0, 0, 0, 0, 0 };

/* taehv.py's default decoder_time_upscale (False, True, True) */
static const int t_stride[3] = { 1, 2, 2 };

/* ---- loading ---------------------------------------------------------------- */

typedef struct loader {
    const vd_ckpt *ck;
    vd_log *lg;
    char pre[256];
    vd_taehv *t;
} loader;

static const vt_tensor *findf(const loader *L, char *name, size_t sz, const char *fmt, int i,
                              const char *suf)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), fmt, i);
    if ((size_t)snprintf(name, sz, "%s%s%s", L->pre, tmp, suf) >= sz)
        name[0] = 0;
    return vd_ckpt_find(L->ck, name);
}

/* decoder.<i><suf>.weight of shape [co, ci, k, k] (-1: any), as fp32. */
static int get_w(const loader *L, int i, const char *suf, int64_t co, int64_t ci, int k,
                 const vt_tensor **tw, float **w)
{
    char n[400], s2[64];
    snprintf(s2, sizeof(s2), "%s.weight", suf);
    findf(L, n, sizeof(n), "decoder.%d", i, s2);
    int64_t shp[4] = { co, ci, k, k };
    int r = vd_ckpt_get(L->ck, L->lg, n, 4, shp, tw);
    if (r)
        return r;
    if (!(*w = vd_tensor_f32(*tw)))
        return vd_err(L->lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory",
                      vd_ckpt_file(L->ck, *tw), n);
    L->t->cfg.n_params += vt_nelem(*tw);
    return 0;
}

/* The bias decoder.<i><suf>.bias of co values; absent is an error when need. */
static int get_b(const loader *L, int i, const char *suf, int64_t co, int need,
                 const vt_tensor **tb)
{
    char n[400], s2[64];
    snprintf(s2, sizeof(s2), "%s.bias", suf);
    *tb = NULL;
    if (!findf(L, n, sizeof(n), "decoder.%d", i, s2) && !need)
        return 0;
    int64_t shp[1] = { co };
    int r = vd_ckpt_get(L->ck, L->lg, n, 1, shp, tb);
    if (!r)
        L->t->cfg.n_params += co;
    return r;
}

/* Makes c from fp32 weights w [co, ci, kd, k, k] (taken over: freed on
 * failure too). */
static int make(const loader *L, tconv *c, float *w, int co, int ci, int kd, int k,
                const vt_tensor *bias, int i)
{
    vt_tensor t = { .dtype = VT_F32, .ndim = 5, .shape = { co, ci, kd, k, k }, .data = w };
    c->own = w;
    c->has_bias = bias != NULL;
    int r = vk_conv_init(&c->cv, &t, bias);
    if (r)
        return vd_err(L->lg, r, "%s: decoder.%d: cannot prepare the convolution: %s",
                      vd_ckpt_label(L->ck), i, vdit_strerror(r));
    return 0;
}

/* A plain conv3x3 decoder.<i> (ci inputs, any outputs: *co). */
static int load_conv(const loader *L, tconv *c, int i, int ci, int bias_needed, int *co)
{
    const vt_tensor *tw, *tb;
    float *w = NULL;
    int r = get_w(L, i, "", -1, ci, 3, &tw, &w);
    if (r)
        return r;
    if ((r = get_b(L, i, "", tw->shape[0], bias_needed, &tb))) {
        vd_free(w);
        return r;
    }
    *co = (int)tw->shape[0];
    return make(L, c, w, *co, ci, 1, 3, tb, i);
}

/* decoder.<i> (nearest x2, then this 3x3 conv of ci inputs) as four 2x2
 * convs, one per output parity (a, b): tap rows {w0}, {w1 + w2} for a = 0
 * (input rows i - 1, i, i), {w0 + w1}, {w2} for a = 1 (i, i, i + 1);
 * columns likewise. *co: the outputs. */
static int load_up(const loader *L, tconv up[4], int i, int ci, int *co)
{
    const vt_tensor *tw, *tb;
    float *w = NULL;
    int r = get_w(L, i, "", -1, ci, 3, &tw, &w);
    if (r)
        return r;
    if ((r = get_b(L, i, "", tw->shape[0], 0, &tb))) {
        vd_free(w);
        return r;
    }
    int o = (int)tw->shape[0];
    size_t per = (size_t)o * ci * 4;
    for (int p = 0; p < 4 && !r; p++) {
        int a = p >> 1, b = p & 1;
        float *d = vd_malloc(per * sizeof(float));
        if (!d) {
            r = vd_err(L->lg, VDIT_ERR_NOMEM, "out of memory");
            break;
        }
        vd_subpixel_fold(w, (size_t)o * ci, a, b, d);
        r = make(L, &up[p], d, o, ci, 1, 2, tb, i);
    }
    vd_free(w);
    *co = o;
    return r;
}

static int load_mem(const loader *L, tmem *mb, int i, int n)
{
    const vt_tensor *tw, *tb;
    float *w = NULL;
    int r;
    char n0[400];
    if (findf(L, n0, sizeof(n0), "decoder.%d", i, ".skip.weight"))
        return vd_err(L->lg, VDIT_ERR_FORMAT,
                      "%s: tensor '%s': a MemBlock of %d channels in and out has no skip "
                      "convolution in taehv.py",
                      vd_ckpt_label(L->ck), n0, n);
    if ((r = get_w(L, i, ".conv.0", n, 2 * n, 3, &tw, &w)))
        return r;
    if ((r = get_b(L, i, ".conv.0", n, 1, &tb))) {
        vd_free(w);
        return r;
    }
    /* [n, 2n, 3, 3] -> [n, n, 2, 3, 3]: tap 0 = the x half, tap 1 = past */
    float *w2 = vd_malloc(sizeof(float) * (size_t)n * 2 * n * 9);
    if (!w2) {
        vd_free(w);
        return vd_err(L->lg, VDIT_ERR_NOMEM, "out of memory");
    }
    for (int o = 0; o < n; o++)
        for (int s = 0; s < 2; s++)
            for (int c = 0; c < n; c++)
                memcpy(w2 + (((size_t)o * n + c) * 2 + s) * 9,
                       w + ((size_t)o * 2 * n + (size_t)s * n + c) * 9, 9 * sizeof(float));
    vd_free(w);
    if ((r = make(L, &mb->c0, w2, n, n, 2, 3, tb, i)))
        return r;
    static const char *const sub[2] = { ".conv.2", ".conv.4" };
    tconv *cs[2] = { &mb->c1, &mb->c2 };
    for (int k = 0; k < 2; k++) {
        if ((r = get_w(L, i, sub[k], n, n, 3, &tw, &w)))
            return r;
        if ((r = get_b(L, i, sub[k], n, 1, &tb))) {
            vd_free(w);
            return r;
        }
        if ((r = make(L, cs[k], w, n, n, 1, 3, tb, i)))
            return r;
    }
    return 0;
}

/* TGrow decoder.<i>.conv: [k n, n, 1, 1]; taehv.py's patch_tgrow_layers
 * keeps the last s n rows when the file has more (a checkpoint trained with
 * more temporal upscaling); fewer cannot make Wan's frame count. */
static int load_grow(const loader *L, tconv *c, int i, int n, int s)
{
    const vt_tensor *tw;
    float *w = NULL;
    int r = get_w(L, i, ".conv", -1, n, 1, &tw, &w);
    if (r)
        return r;
    int64_t rows = tw->shape[0];
    if (rows % n || rows < (int64_t)s * n) {
        vd_free(w);
        return vd_err(L->lg, VDIT_ERR_UNSUPPORTED,
                      "%s: tensor '%sdecoder.%d.conv.weight' has %lld output channels: the "
                      "temporal upscaling of the Wan latents needs %d x %d here (a TAEHV with "
                      "temporal upscaling switched off is not supported)",
                      vd_ckpt_file(L->ck, tw), L->pre, i, (long long)rows, s, n);
    }
    if (rows > (int64_t)s * n) {
        L->t->cfg.n_params -= (rows - (int64_t)s * n) * n;
        memmove(w, w + (size_t)(rows - (int64_t)s * n) * n, sizeof(float) * (size_t)s * n * n);
    }
    return make(L, c, w, s * n, n, 1, 1, NULL, i);
}

/* The prefix under which the file holds decoder.1.weight ("" usually). */
static int find_prefix(loader *L)
{
    static const char key[] = "decoder.1.weight";
    if (vd_ckpt_find(L->ck, key))
        return 0;
    size_t nk = strlen(key);
    for (size_t i = 0; i < vd_ckpt_count(L->ck); i++) {
        const char *n = vd_ckpt_at(L->ck, i)->name;
        size_t ln = strlen(n);
        if (ln > nk && ln - nk < sizeof(L->pre) && !strcmp(n + ln - nk, key) &&
            n[ln - nk - 1] == '.') {
            memcpy(L->pre, n, ln - nk);
            L->pre[ln - nk] = 0;
            return 0;
        }
    }
    return vd_err(L->lg, VDIT_ERR_FORMAT,
                  "%s: not a TAEHV checkpoint (no tensor 'decoder.1.weight'; taehv.py's "
                  "taew2_1 / taew2_2 files have it)",
                  vd_ckpt_label(L->ck));
}

int vd_taehv_load(const vd_ckpt *ck, vd_log *lg, vd_taehv **out)
{
    *out = NULL;
    vd_taehv *t = calloc(1, sizeof(*t));
    if (!t)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    loader L = { .ck = ck, .lg = lg, .t = t };
    int r;
    char nm[400];
    if ((r = find_prefix(&L)))
        goto fail;
    if (findf(&L, nm, sizeof(nm), "decoder.%d", 0, ".weight") ||
        findf(&L, nm, sizeof(nm), "decoder.%d", 1, ".conv.0.weight")) {
        r = vd_err(lg, VDIT_ERR_UNSUPPORTED,
                   "%s: tensor '%s': this is TAEHV's \"super\" decoder (taew2_2_super, "
                   "taehv1_5_super), which vdit does not run; use taew2_1 or taew2_2",
                   vd_ckpt_label(ck), nm);
        goto fail;
    }
    vd_taehv_config *c = &t->cfg;
    {
        const vt_tensor *tw;
        findf(&L, nm, sizeof(nm), "decoder.%d", 1, ".weight");
        int64_t shp[4] = { -1, -1, 3, 3 };
        if ((r = vd_ckpt_get(ck, lg, nm, 4, shp, &tw)))
            goto fail;
        c->z_dim = (int)tw->shape[1];
    }
    if ((r = load_conv(&L, &t->in, 1, c->z_dim, 1, &c->width[0])))
        goto fail;
    for (int l = 0; l < 3; l++) {
        int n = c->width[l];
        c->t_stride[l] = t_stride[l];
        for (int j = 0; j < 3; j++)
            if ((r = load_mem(&L, &t->mem[l][j], 3 + 6 * l + j, n)))
                goto fail;
        if ((r = load_grow(&L, &t->grow[l], 7 + 6 * l, n, t_stride[l])) ||
            (r = load_up(&L, t->up[l], 8 + 6 * l, n, &c->width[l + 1])))
            goto fail;
    }
    int co = 0;
    if ((r = load_conv(&L, &t->out, 22, c->width[3], 1, &co)))
        goto fail;
    if (co != 3 && co != 12) {
        r = vd_err(lg, VDIT_ERR_FORMAT,
                   "%s: tensor '%sdecoder.22.weight' has %d output channels: 3 (RGB) or 12 (RGB "
                   "in 2x2 patches) expected",
                   vd_ckpt_label(ck), L.pre, co);
        goto fail;
    }
    c->patch = co == 3 ? 1 : 2;
    c->s_factor = 8 * c->patch;
    c->t_factor = 4;
    *out = t;
    return 0;
fail:
    vd_taehv_free(&t);
    return r;
}

int vd_taehv_load_file(const char *path, vd_log *lg, vd_taehv **out)
{
    vd_ckpt *ck = NULL;
    *out = NULL;
    int r = vd_ckpt_open(path, lg, &ck);
    if (!r)
        r = vd_taehv_load(ck, lg, out);
    vd_ckpt_free(&ck);
    return r;
}

static void tconv_free(tconv *c)
{
    vk_conv_free(&c->cv);
    vd_free(c->own);
    c->own = NULL;
}

void vd_taehv_free(vd_taehv **pt)
{
    vd_taehv *t = pt ? *pt : NULL;
    if (!t)
        return;
    tconv_free(&t->in);
    tconv_free(&t->out);
    for (int l = 0; l < 3; l++) {
        for (int j = 0; j < 3; j++) {
            tconv_free(&t->mem[l][j].c0);
            tconv_free(&t->mem[l][j].c1);
            tconv_free(&t->mem[l][j].c2);
        }
        tconv_free(&t->grow[l]);
        for (int p = 0; p < 4; p++)
            tconv_free(&t->up[l][p]);
    }
    free(t);
    *pt = NULL;
}

const vd_taehv_config *vd_taehv_get_config(const vd_taehv *t)
{
    return &t->cfg;
}

/* The padding of parity p's 2x2 conv: output size = input size. */
static vk_conv_geom up_geom(int p)
{
    int a = p >> 1, b = p & 1;
    vk_conv_geom g = { 1, 1, 1, 0, 0, 1 - a, a, 1 - b, b };
    return g;
}

static int detach1(vk_ctx *kc, tconv *c, const vk_conv_geom *g, int h, int w)
{
    int r = vk_conv_detach(kc, &c->cv, g, h, w);
    if (!r && c->cv.w != c->own) {
        vd_free(c->own);
        c->own = NULL;
    }
    return r;
}

int vd_taehv_detach(vd_taehv *t, vk_ctx *kc, int lh, int lw)
{
    int h = lh > 0 ? lh : 64, w = lw > 0 ? lw : 64, r = detach1(kc, &t->in, &g3, h, w);
    for (int l = 0; l < 3 && !r; l++, h *= 2, w *= 2) {
        for (int j = 0; j < 3 && !r; j++)
            if (!(r = detach1(kc, &t->mem[l][j].c0, &g3, h, w)) &&
                !(r = detach1(kc, &t->mem[l][j].c1, &g3, h, w)))
                r = detach1(kc, &t->mem[l][j].c2, &g3, h, w);
        if (!r)
            r = detach1(kc, &t->grow[l], &g1, h, w);
        for (int p = 0; p < 4 && !r; p++) {
            vk_conv_geom g = up_geom(p);
            r = detach1(kc, &t->up[l][p], &g, h, w);
        }
    }
    if (!r)
        r = detach1(kc, &t->out, &g3, h, w);
    return r;
}

/* ---- the stream --------------------------------------------------------------- */

typedef struct lvl {
    int c, h, w;     /* MemBlock width and frame size at this level */
    float *pool[3];  /* working frames: the input, then the blocks' temporaries */
    float *past[3];  /* each MemBlock's input one frame earlier */
    float *g;        /* TGrow's output [s c, h, w] */
    int64_t t;       /* frames seen */
} lvl;

struct vd_taehv_stream {
    const vd_taehv *m;
    vk_ctx *kc;
    int raw, lh, lw;
    lvl L[3];
    float *zc;   /* clamped latent [z, lh, lw] */
    float *u;    /* one parity of an x2 conv (the largest level's) [c, h, w] */
    float *hd;   /* the head's input [n3, 8 lh, 8 lw] */
    float *o;    /* the head's output [3 p^2, 8 lh, 8 lw] */
    int64_t n_raw;
    float *frames; /* the caller's output during a push */
    int n_out;
    size_t bytes;
    vd_owned own;
};

static float *alloc_f(vd_taehv_stream *s, size_t n)
{
    s->bytes += n * sizeof(float);
    return vd_owned_add(&s->own, vd_malloc(n * sizeof(float)));
}

int vd_taehv_stream_new(const vd_taehv *t, vk_ctx *kc, int lh, int lw, int raw,
                        vd_taehv_stream **out)
{
    *out = NULL;
    if (!t || !kc || lh < 1 || lw < 1 || lh > 8192 || lw > 8192 || raw < 0 || raw > 1)
        return VDIT_ERR_INVALID_ARG;
    vd_taehv_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return VDIT_ERR_NOMEM;
    const vd_taehv_config *c = &t->cfg;
    s->m = t;
    s->kc = kc;
    s->raw = raw;
    s->lh = lh;
    s->lw = lw;
    int ok = !!(s->zc = alloc_f(s, (size_t)c->z_dim * lh * lw));
    size_t umax = 0;
    for (int l = 0; l < 3 && ok; l++) {
        lvl *L = &s->L[l];
        L->c = c->width[l];
        L->h = lh << l;
        L->w = lw << l;
        size_t fs = (size_t)L->c * L->h * L->w;
        for (int j = 0; j < 3 && ok; j++)
            ok = (L->pool[j] = alloc_f(s, fs)) && (L->past[j] = alloc_f(s, fs));
        ok = ok && (L->g = alloc_f(s, fs * (size_t)c->t_stride[l]));
        umax = VD_MAX(umax, (size_t)c->width[l + 1] * L->h * L->w);
    }
    size_t ps = (size_t)(8 * lh) * (size_t)(8 * lw);
    ok = ok && (s->u = alloc_f(s, umax)) && (s->hd = alloc_f(s, (size_t)c->width[3] * ps)) &&
         (s->o = alloc_f(s, (size_t)3 * c->patch * c->patch * ps));
    if (!ok) {
        vd_taehv_stream_free(&s);
        return VDIT_ERR_NOMEM;
    }
    *out = s;
    return 0;
}

void vd_taehv_stream_free(vd_taehv_stream **ps)
{
    vd_taehv_stream *s = ps ? *ps : NULL;
    if (!s)
        return;
    vd_owned_free(&s->own);
    free(s);
    *ps = NULL;
}

size_t vd_taehv_stream_bytes(const vd_taehv_stream *s)
{
    return s ? s->bytes : 0;
}

static void relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0 ? x[i] : 0;
}

/* MemBlock j of level L on its input pool[xi]: ReLU(conv(cat(x, past)) +
 * x); returns the pool slot of the output. x becomes the block's past (the
 * buffers swap, nothing is copied). */
static int memblock(vd_taehv_stream *s, lvl *L, const tmem *mb, int j, int xi)
{
    vk_ctx *kc = s->kc;
    int a = (xi + 1) % 3, b = (xi + 2) % 3, h = L->h, w = L->w;
    float *x = L->pool[xi], *t1 = L->pool[a], *t2 = L->pool[b];
    size_t n = (size_t)L->c * h * w;
    kc->f->conv_tap(kc, &mb->c0.cv, &g3, 0, VK_CONV_BIAS, x, h, w, t1);
    if (L->t > 0)
        kc->f->conv_tap(kc, &mb->c0.cv, &g3, 1, VK_CONV_ACC, L->past[j], h, w, t1);
    relu(t1, n);
    kc->f->conv_tap(kc, &mb->c1.cv, &g3, 0, VK_CONV_BIAS, t1, h, w, t2);
    relu(t2, n);
    kc->f->conv_tap(kc, &mb->c2.cv, &g3, 0, VK_CONV_BIAS, t2, h, w, t1);
    for (size_t i = 0; i < n; i++) {
        float v = t1[i] + x[i];
        t1[i] = v > 0 ? v : 0;
    }
    L->pool[xi] = L->past[j];
    L->past[j] = x;
    return a;
}

/* nearest x2 then conv3x3 of x [c, h, w] into y [co, 2h, 2w], parity by
 * parity through s->u. */
static void up_conv(vd_taehv_stream *s, const tconv up[4], const float *x, int h, int w,
                    float *y)
{
    vk_ctx *kc = s->kc;
    int co = up[0].cv.c_out;
    for (int p = 0; p < 4; p++) {
        int a = p >> 1, b = p & 1;
        vk_conv_geom g = up_geom(p);
        kc->f->conv_tap(kc, &up[p].cv, &g, 0, up[p].has_bias ? VK_CONV_BIAS : 0, x, h, w, s->u);
        for (int o = 0; o < co; o++)
            for (int r = 0; r < h; r++) {
                const float *src = s->u + ((size_t)o * h + r) * w;
                float *dst = y + ((size_t)o * 2 * h + 2 * r + a) * 2 * w + b;
                for (int q = 0; q < w; q++)
                    dst[2 * q] = src[q];
            }
    }
}

/* ReLU, the last conv, pixel shuffle, [0, 1] -> [-1, 1] into the caller's
 * next frame. */
static void head(vd_taehv_stream *s)
{
    const vd_taehv *m = s->m;
    vk_ctx *kc = s->kc;
    int p = m->cfg.patch, h = 8 * s->lh, w = 8 * s->lw;
    size_t hw = (size_t)h * w;
    relu(s->hd, (size_t)m->cfg.width[3] * hw);
    kc->f->conv_tap(kc, &m->out.cv, &g3, 0, VK_CONV_BIAS, s->hd, h, w, s->o);
    int H = h * p, W = w * p;
    float *f = s->frames + (size_t)s->n_out * 3 * H * W;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < p; i++)
            for (int j = 0; j < p; j++) {
                const float *src = s->o + (size_t)((c * p + i) * p + j) * hw;
                for (int y = 0; y < h; y++) {
                    float *d = f + ((size_t)c * H + (size_t)y * p + i) * W + j;
                    const float *sr = src + (size_t)y * w;
                    if (s->raw)
                        for (int x = 0; x < w; x++)
                            d[(size_t)x * p] = sr[x];
                    else
                        for (int x = 0; x < w; x++) {
                            float v = sr[x] < 0 ? 0 : sr[x] > 1 ? 1 : sr[x];
                            d[(size_t)x * p] = 2 * v - 1;
                        }
                }
            }
    s->n_out++;
}

/* Level l on the frame in its pool[0]: three MemBlocks, TGrow, then for each
 * of its frames nearest x2 + conv into the next level (or the head). */
static void level(vd_taehv_stream *s, int l)
{
    const vd_taehv *m = s->m;
    vk_ctx *kc = s->kc;
    lvl *L = &s->L[l];
    int xi = 0;
    for (int j = 0; j < 3; j++)
        xi = memblock(s, L, &m->mem[l][j], j, xi);
    L->t++;
    int st = m->cfg.t_stride[l];
    size_t fs = (size_t)L->c * L->h * L->w;
    kc->f->conv_tap(kc, &m->grow[l].cv, &g1, 0, 0, L->pool[xi], L->h, L->w, L->g);
    for (int k = 0; k < st; k++) {
        if (l == 2 && s->n_raw++ < 3)
            continue; /* frames_to_trim: dropped, and the head has no memory */
        up_conv(s, m->up[l], L->g + (size_t)k * fs, L->h, L->w,
                l < 2 ? s->L[l + 1].pool[0] : s->hd);
        if (l < 2)
            level(s, l + 1);
        else
            head(s);
    }
}

int vd_taehv_stream_push(vd_taehv_stream *s, const float *lat, float *frames, int *n_out)
{
    if (!s || !lat || !frames || !n_out)
        return VDIT_ERR_INVALID_ARG;
    const vd_taehv *m = s->m;
    size_t n = (size_t)m->cfg.z_dim * s->lh * s->lw;
    for (size_t i = 0; i < n; i++)
        s->zc[i] = tanhf(lat[i] / 3.0f) * 3.0f;
    float *x = s->L[0].pool[0];
    s->kc->f->conv_tap(s->kc, &m->in.cv, &g3, 0, VK_CONV_BIAS, s->zc, s->lh, s->lw, x);
    relu(x, (size_t)s->L[0].c * s->lh * s->lw);
    s->frames = frames;
    s->n_out = 0;
    level(s, 0);
    *n_out = s->n_out;
    s->frames = NULL;
    return 0;
}

int vd_taehv_decode(const vd_taehv *t, vk_ctx *kc, const float *z, int tl, int lh, int lw,
                    float *video)
{
    if (!t || !kc || !z || !video || tl < 1)
        return VDIT_ERR_INVALID_ARG;
    vd_taehv_stream *s = NULL;
    int r = vd_taehv_stream_new(t, kc, lh, lw, 0, &s);
    if (r)
        return r;
    int sf = t->cfg.s_factor, tv = 1 + 4 * (tl - 1);
    size_t ls = (size_t)lh * lw, fs = (size_t)lh * sf * (size_t)lw * sf;
    float *lat = vd_malloc(sizeof(float) * t->cfg.z_dim * ls);
    float *fr = vd_malloc(sizeof(float) * 3 * 4 * fs);
    if (!lat || !fr)
        r = VDIT_ERR_NOMEM;
    for (int k = 0, f = 0; k < tl && !r; k++) {
        for (int c = 0; c < t->cfg.z_dim; c++)
            memcpy(lat + c * ls, z + ((size_t)c * tl + k) * ls, ls * sizeof(float));
        int got = 0;
        if ((r = vd_taehv_stream_push(s, lat, fr, &got)))
            break;
        for (int q = 0; q < got; q++, f++)
            for (int c = 0; c < 3; c++)
                memcpy(video + ((size_t)c * tv + f) * fs, fr + ((size_t)q * 3 + c) * fs,
                       fs * sizeof(float));
    }
    vd_free(lat);
    vd_free(fr);
    vd_taehv_stream_free(&s);
    return r;
}
