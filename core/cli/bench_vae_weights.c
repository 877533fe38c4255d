/* Random weights for the VAE benches (bench_vae.c, bench_tae.c), by name as
 * the published checkpoints have them, and the release that hands a
 * tensor's pages back once a model has prepared its own copy. */
#include <math.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"


typedef bench_wgen wgen;

float bench_urand(uint64_t *s)
{
    return (float)((double)(bench_rng_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

void bench_wgen_tensor(bench_wgen *g, const char *name, int kind, int ndim, const int64_t *sh)
{
    if (g->err)
        return;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= sh[i];
    float *p = vd_malloc((size_t)n * sizeof(float));
    if (!p) {
        g->err = VDIT_ERR_NOMEM;
        return;
    }
    double fan_in = (double)n / (double)sh[0];
    float sc = kind == 0 ? (float)sqrt(3.0 / fan_in) : kind == 1 ? 0.02f : 0.1f;
    for (int64_t i = 0; i < n; i++)
        p[i] = (kind == 2 ? 1.0f : 0.0f) + sc * bench_urand(&g->rng);
    g->bytes += (size_t)n * sizeof(float);
    g->err = vd_ckpt_add(g->ck, name, VT_F32, ndim, sh, p, p, "random", NULL);
}

static void tensor(wgen *g, const char *name, int kind, int ndim, int64_t a, int64_t b, int64_t c,
                   int64_t d, int64_t e)
{
    int64_t sh[5] = { a, b, c, d, e };
    bench_wgen_tensor(g, name, kind, ndim, sh);
}

static void conv(wgen *g, const char *pre, int k3d, int co, int ci, int kd, int kh)
{
    char n[160];
    snprintf(n, sizeof(n), "%s.weight", pre);
    if (k3d)
        tensor(g, n, 0, 5, co, ci, kd, kh, kh);
    else
        tensor(g, n, 0, 4, co, ci, kh, kh, 0);
    snprintf(n, sizeof(n), "%s.bias", pre);
    tensor(g, n, 1, 1, co, 0, 0, 0, 0);
}

static void norm_scale(wgen *g, const char *pre, int c, int images)
{
    tensor(g, pre, 2, images ? 3 : 4, c, 1, 1, 1, 0);
}

static void res(wgen *g, const char *pre, int ci, int co)
{
    char n[160];
    snprintf(n, sizeof(n), "%s.residual.0.gamma", pre);
    norm_scale(g, n, ci, 0);
    snprintf(n, sizeof(n), "%s.residual.2", pre);
    conv(g, n, 1, co, ci, 3, 3);
    snprintf(n, sizeof(n), "%s.residual.3.gamma", pre);
    norm_scale(g, n, co, 0);
    snprintf(n, sizeof(n), "%s.residual.6", pre);
    conv(g, n, 1, co, co, 3, 3);
    if (ci != co) {
        snprintf(n, sizeof(n), "%s.shortcut", pre);
        conv(g, n, 1, co, ci, 1, 1);
    }
}

static void attn(wgen *g, const char *pre, int c)
{
    char n[160];
    snprintf(n, sizeof(n), "%s.norm.gamma", pre);
    norm_scale(g, n, c, 1);
    snprintf(n, sizeof(n), "%s.to_qkv", pre);
    conv(g, n, 0, 3 * c, c, 1, 1);
    snprintf(n, sizeof(n), "%s.proj", pre);
    conv(g, n, 0, c, c, 1, 1);
}

/* What the two VAEs share between their encoder's down path and their
 * decoder's up path: the encoder's middle (top channels) and head, the
 * latent 1x1 convolutions, the decoder's first convolution and middle (dc
 * channels). */
static void middle(wgen *g, int top, int z, int dc)
{
    res(g, "encoder.middle.0", top, top);
    attn(g, "encoder.middle.1", top);
    res(g, "encoder.middle.2", top, top);
    norm_scale(g, "encoder.head.0.gamma", top, 0);
    conv(g, "encoder.head.2", 1, 2 * z, top, 3, 3);
    conv(g, "conv1", 1, 2 * z, 2 * z, 1, 1);
    conv(g, "conv2", 1, z, z, 1, 1);
    conv(g, "decoder.conv1", 1, dc, z, 3, 3);
    res(g, "decoder.middle.0", dc, dc);
    attn(g, "decoder.middle.1", dc);
    res(g, "decoder.middle.2", dc, dc);
}

/* The WanVAE_ parameter list for dim, z, dim_mult [1,2,4,4], 2 res blocks,
 * temporal_down [F,T,T] (names as in Wan2.1_VAE.pth). */
vd_ckpt *bench_vae21_weights(int dim, int z, size_t *bytes)
{
    static const int mult[4] = { 1, 2, 4, 4 }, tdown[3] = { 0, 1, 1 };
    const int nrb = 2;
    wgen g = { vd_ckpt_new(), 1234, 0, 0 };
    if (!g.ck)
        return NULL;
    char n[160];
    conv(&g, "encoder.conv1", 1, dim, 3, 3, 3);
    int dims[5] = { dim, dim * mult[0], dim * mult[1], dim * mult[2], dim * mult[3] }, idx = 0;
    for (int i = 0; i < 4; i++) {
        int ci = dims[i], co = dims[i + 1];
        for (int r = 0; r < nrb; r++, idx++) {
            snprintf(n, sizeof(n), "encoder.downsamples.%d", idx);
            res(&g, n, ci, co);
            ci = co;
        }
        if (i != 3) {
            snprintf(n, sizeof(n), "encoder.downsamples.%d.resample.1", idx);
            conv(&g, n, 0, co, co, 1, 3);
            if (tdown[i]) {
                snprintf(n, sizeof(n), "encoder.downsamples.%d.time_conv", idx);
                conv(&g, n, 1, co, co, 3, 1);
            }
            idx++;
        }
    }
    int dd[5] = { dim * mult[3], dim * mult[3], dim * mult[2], dim * mult[1], dim * mult[0] };
    middle(&g, dims[4], z, dd[0]);
    idx = 0;
    for (int i = 0; i < 4; i++) {
        int ci = dd[i], co = dd[i + 1];
        if (i > 0)
            ci /= 2;
        for (int r = 0; r < nrb + 1; r++, idx++) {
            snprintf(n, sizeof(n), "decoder.upsamples.%d", idx);
            res(&g, n, ci, co);
            ci = co;
        }
        if (i != 3) {
            snprintf(n, sizeof(n), "decoder.upsamples.%d.resample.1", idx);
            conv(&g, n, 0, co / 2, co, 1, 3);
            if (tdown[2 - i]) {
                snprintf(n, sizeof(n), "decoder.upsamples.%d.time_conv", idx);
                conv(&g, n, 1, 2 * co, co, 3, 1);
            }
            idx++;
        }
    }
    norm_scale(&g, "decoder.head.0.gamma", dd[4], 0);
    conv(&g, "decoder.head.2", 1, 3, dd[4], 3, 3);
    if (g.err)
        vd_ckpt_free(&g.ck);
    if (bytes)
        *bytes = g.bytes;
    return g.ck;
}

/* The Wan2.2 VAE (wan.modules.vae2_2.WanVAE_, names as in Wan2.2_VAE.pth):
 * dim, decoder dim dd, z, dim_mult [1,2,4,4], 2 res blocks, temporal_down
 * [F,T,T]; every level a block of residual blocks and a resample
 * (encoder.downsamples.B.downsamples.N, decoder.upsamples.B.upsamples.N),
 * the shortcuts parameter-free, the upsamplers' 3x3 conv keeping its
 * channels, 12 = 3 x 2 x 2 patchified channels at both ends. */
vd_ckpt *bench_vae22_weights(int dim, int dd, int z, size_t *bytes)
{
    static const int mult[4] = { 1, 2, 4, 4 }, tdown[3] = { 0, 1, 1 };
    const int nrb = 2;
    wgen g = { vd_ckpt_new(), 1234, 0, 0 };
    if (!g.ck)
        return NULL;
    char n[160];
    conv(&g, "encoder.conv1", 1, dim, 12, 3, 3);
    int dims[5] = { dim, dim * mult[0], dim * mult[1], dim * mult[2], dim * mult[3] };
    for (int i = 0; i < 4; i++) {
        int ci = dims[i], co = dims[i + 1], r = 0;
        for (; r < nrb; r++) {
            snprintf(n, sizeof(n), "encoder.downsamples.%d.downsamples.%d", i, r);
            res(&g, n, ci, co);
            ci = co;
        }
        if (i != 3) {
            snprintf(n, sizeof(n), "encoder.downsamples.%d.downsamples.%d.resample.1", i, r);
            conv(&g, n, 0, co, co, 1, 3);
            if (tdown[i]) {
                snprintf(n, sizeof(n), "encoder.downsamples.%d.downsamples.%d.time_conv", i, r);
                conv(&g, n, 1, co, co, 3, 1);
            }
        }
    }
    int du[5] = { dd * mult[3], dd * mult[3], dd * mult[2], dd * mult[1], dd * mult[0] };
    middle(&g, dims[4], z, du[0]);
    for (int i = 0; i < 4; i++) {
        int ci = du[i], co = du[i + 1], r = 0;
        for (; r < nrb + 1; r++) {
            snprintf(n, sizeof(n), "decoder.upsamples.%d.upsamples.%d", i, r);
            res(&g, n, ci, co);
            ci = co;
        }
        if (i != 3) {
            snprintf(n, sizeof(n), "decoder.upsamples.%d.upsamples.%d.resample.1", i, r);
            conv(&g, n, 0, co, co, 1, 3);
            if (tdown[2 - i]) {
                snprintf(n, sizeof(n), "decoder.upsamples.%d.upsamples.%d.time_conv", i, r);
                conv(&g, n, 1, 2 * co, co, 3, 1);
            }
        }
    }
    norm_scale(&g, "decoder.head.0.gamma", du[4], 0);
    conv(&g, "decoder.head.2", 1, 12, du[4], 3, 3);
    if (g.err)
        vd_ckpt_free(&g.ck);
    if (bytes)
        *bytes = g.bytes;
    return g.ck;
}

/* vd_vae_detach's release: the model no longer reads this tensor, so its
 * whole pages go back to the system now (the buffer itself is freed with
 * the checkpoint), and the weights never exist twice in full. */
void bench_release_pages(void *ctx, const void *data)
{
    const vd_ckpt *ck = ctx;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i);
        if (t->data != data)
            continue;
        uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)data;
        uintptr_t e = a + (uintptr_t)vt_nelem(t) * vt_dtype_size(t->dtype);
        a = (a + pg - 1) / pg * pg;
        e = e / pg * pg;
        if (e > a)
            madvise((void *)a, e - a, MADV_DONTNEED);
        return;
    }
}

