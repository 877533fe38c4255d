/* The VAE's device path (core/src/vae/vae_cuda.c under vae.c's stream
 * engine) on an emulated device (vkc_emul.c: host memory, reference
 * kernels), against the CPU path, on the Wan2.1 and Wan2.2 VAE conformance
 * weights given as arguments: encode (mu and log_var), decode (clamped, raw,
 * and Wan2.2's before-unpatchify output), tiled decode (every tile's input
 * cropped, going up, its output coming back and blended), the encoder and
 * decoder streams frame by frame, a single image. fp32 must agree with the
 * CPU to summation order; bf16 (bf16 weights and operands) within the bf16
 * bound of the VAE (docs/precision.md; the frames: see device_side). Also: every byte of
 * device memory given back, a context without a device or of the other
 * precision refused with a message. Runs in every build: what a GPU adds is
 * vkc.cu's kernels alone (test_cuda).
 *
 * usage: test_vae_emul VAE_DIR... (folders holding weights.safetensors) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "kernels/cuda/vkc.h"
#include "kernels/impl.h"
#include "t.h"
#include "vae/vae.h"

static vd_log lg;

static void check(const char *dir, const char *what, double e, double tol)
{
    printf("%s: %-40s rel %.2e (tol %.1e) %s\n", dir, what, e, tol, e <= tol ? "OK" : "FAIL");
    T_CHECK(e <= tol, "%s: %s: %.2e > %.0e", dir, what, e, tol);
}

static double rel(const float *a, const float *b, size_t n)
{
    double r;
    t_maxabs(a, b, n, &r);
    return r;
}

static float *buf(size_t n)
{
    float *p = vd_calloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static vd_vae *load(const char *dir, vd_ckpt **ck)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/weights.safetensors", dir);
    vd_vae *v = NULL;
    *ck = NULL;
    if (vd_ckpt_open(p, &lg, ck) || vd_vae_canonicalize(*ck, &lg) || vd_vae_load(*ck, &lg, &v))
        T_CHECK(0, "%s: %s", p, lg.msg);
    return v;
}

typedef struct outs {
    float *mu, *lv, *dec, *raw, *raw2, *tiled, *smu, *sdec, *img;
} outs;

enum { T = 5, H = 64, W = 96 };

/* Everything the comparison looks at, through kc (CPU or device); the
 * decoder decodes lat (NULL: the encoder's mu), so that its error is its
 * own. */
static void run_all(const vd_vae *v, vk_ctx *kc, const float *video, const float *lat0, outs *o)
{
    const vd_vae_config *c = vd_vae_get_config(v);
    int s = c->s_factor, z = c->z_dim, tl = vd_vae_latent_frames(v, T);
    int lh = H / s, lw = W / s, tv = vd_vae_video_frames(v, tl);
    size_t ls = (size_t)lh * lw, ps = (size_t)H * W;
    o->mu = buf((size_t)z * tl * ls);
    o->lv = buf((size_t)z * tl * ls);
    o->dec = buf(3 * (size_t)tv * ps);
    o->raw = buf(3 * (size_t)tv * ps);
    o->raw2 = buf(3 * (size_t)tv * ps); /* [3 p^2, tv, H / p, W / p] */
    o->tiled = buf(3 * (size_t)tv * ps);
    o->smu = buf((size_t)z * tl * ls);
    o->sdec = buf(3 * (size_t)tv * ps);
    o->img = buf((size_t)z * ls);
    T_CHECK(vd_vae_encode(v, kc, video, T, H, W, o->mu, o->lv) == 0, "encode: %s", lg.msg);
    const float *zl = lat0 ? lat0 : o->mu;
    T_CHECK(vd_vae_decode(v, kc, zl, tl, lh, lw, o->dec) == 0, "decode: %s", lg.msg);
    T_CHECK(vd_vae_decode_ex(v, kc, zl, tl, lh, lw, 0, 1, o->raw) == 0, "raw decode: %s",
            lg.msg);
    T_CHECK(vd_vae_decode_ex(v, kc, zl, tl, lh, lw, 0, 2, o->raw2) == 0, "raw 2 decode: %s",
            lg.msg);
    T_CHECK(vd_vae_decode_ex(v, kc, zl, tl, lh, lw, 2 * s, 0, o->tiled) == 0,
            "tiled decode: %s", lg.msg);
    T_CHECK(vd_vae_encode(v, kc, video, 1, H, W, o->img, NULL) == 0, "image: %s", lg.msg);
    /* the streams, frame by frame */
    vd_vae_stream *st = NULL;
    float *fr = buf(3 * ps), *lat = buf((size_t)z * ls), *frs = buf(4 * 3 * ps);
    T_CHECK(vd_vae_enc_stream_new(v, kc, H, W, 0, &st) == 0, "encoder stream: %s", lg.msg);
    int k = 0, n;
    for (int f = 0; st && f < T; f++) {
        for (int ch = 0; ch < 3; ch++)
            memcpy(fr + ch * ps, video + ((size_t)ch * T + f) * ps, ps * sizeof(float));
        T_CHECK(vd_vae_enc_stream_push(st, fr, lat, &n) == 0, "push: %s", lg.msg);
        for (int j = 0; j < n && k < tl; j++, k++)
            for (int ch = 0; ch < z; ch++)
                memcpy(o->smu + ((size_t)ch * tl + k) * ls, lat + ch * ls, ls * sizeof(float));
    }
    vd_vae_stream_free(&st);
    T_CHECK(k == tl, "encoder stream: %d latent frames, not %d", k, tl);
    T_CHECK(vd_vae_dec_stream_new(v, kc, lh, lw, 0, &st) == 0, "decoder stream: %s", lg.msg);
    k = 0;
    for (int f = 0; st && f < tl; f++) {
        for (int ch = 0; ch < z; ch++)
            memcpy(lat + ch * ls, zl + ((size_t)ch * tl + f) * ls, ls * sizeof(float));
        T_CHECK(vd_vae_dec_stream_push(st, lat, frs, &n) == 0, "push: %s", lg.msg);
        for (int j = 0; j < n && k < tv; j++, k++)
            for (int ch = 0; ch < 3; ch++)
                memcpy(o->sdec + ((size_t)ch * tv + k) * ps, frs + ((size_t)j * 3 + ch) * ps,
                       ps * sizeof(float));
    }
    vd_vae_stream_free(&st);
    T_CHECK(k == tv, "decoder stream: %d frames, not %d", k, tv);
    vd_free(fr);
    vd_free(lat);
    vd_free(frs);
}

static void outs_free(outs *o)
{
    float **p[] = { &o->mu, &o->lv, &o->dec, &o->raw, &o->raw2, &o->tiled, &o->smu, &o->sdec,
                    &o->img };
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
        vd_free(*p[i]);
}

/* The device side in precision bf16 against the CPU's fp32 outputs. */
static void device_side(const char *dir, const float *video, const outs *ref, int bf16)
{
    vd_ckpt *ck = NULL;
    vd_vae *v = load(dir, &ck);
    vkc_ctx *vm = NULL, *vr = NULL;
    char err[256];
    T_CHECK(vkc_ctx_new(0, &vm, err, sizeof(err)) == 0 && vkc_ctx_new(0, &vr, err, sizeof(err)) == 0,
            "emulated device");
    vk_ctx *kc = vk_ctx_new(1, 0, &lg), *host = vk_ctx_new(1, 0, &lg);
    if (!v || !vm || !vr || !kc || !host)
        goto out;
    kc->cuda = vr;
    kc->cuda_bf16 = bf16;
    T_CHECK(vd_vae_upload(v, vm, bf16 ? VK_PREC_BF16 : VK_PREC_F32, host, NULL, NULL, &lg) == 0,
            "upload: %s", lg.msg);
    size_t wbytes = vkc_mem_used(vm);
    T_CHECK(wbytes > 0 && vd_vae_device_bytes(v) == wbytes,
            "device bytes: %zu counted, %zu in use", vd_vae_device_bytes(v), wbytes);
    vd_ckpt_free(&ck); /* the weights are on the device and the ends detached */
    outs o;
    memset(&o, 0, sizeof(o));
    run_all(v, kc, video, ref->mu, &o);
    const vd_vae_config *c = vd_vae_get_config(v);
    int tl = vd_vae_latent_frames(v, T), tv = vd_vae_video_frames(v, tl);
    size_t nl = (size_t)c->z_dim * tl * (H / c->s_factor) * (W / c->s_factor);
    size_t nv = 3 * (size_t)tv * H * W, ni = nl / tl;
    /* fp32: summation order only. bf16: the latents within the VAE's bf16
     * bound (6e-2); the frames decoded from the fp32 latents within 1.5e-1:
     * this smooth 64x96 input takes the tiny random decoder to 8.7e-2 on the
     * CPU's own bf16 too (printed above where the CPU has bf16) */
    double tl_ = bf16 ? 6e-2 : 5e-5, tv_ = bf16 ? 1.5e-1 : 5e-5;
    char what[64];
    const char *pn = bf16 ? "bf16" : "fp32";
#define CMP(field, n, tol)                                                                         \
    snprintf(what, sizeof(what), "%s %s", pn, #field);                                            \
    check(dir, what, rel(o.field, ref->field, n), tol)
    CMP(mu, nl, tl_);
    CMP(lv, nl, tl_);
    CMP(dec, nv, tv_);
    CMP(raw, nv, tv_);
    CMP(raw2, nv, tv_);
    CMP(tiled, nv, tv_);
    CMP(smu, nl, tl_);
    CMP(sdec, nv, tv_);
    CMP(img, ni, tl_);
#undef CMP
    /* the device side computes what the device side computes: streams and
     * one-shot calls agree exactly */
    snprintf(what, sizeof(what), "%s stream = one-shot (encode)", pn);
    check(dir, what, rel(o.smu, o.mu, nl), 0);
    snprintf(what, sizeof(what), "%s stream = one-shot (decode)", pn);
    check(dir, what, rel(o.sdec, o.dec, nv), 0);
    outs_free(&o);
    T_CHECK(vkc_mem_used(vr) == 0, "%s: %zu bytes of stream memory not given back", dir,
            vkc_mem_used(vr));
    /* contexts the weights do not fit */
    float *lat = buf(nl), *vid = buf(nv);
    vk_ctx *cpu = vk_ctx_new(1, 0, &lg);
    lg.msg[0] = 0;
    T_CHECK(cpu && vd_vae_decode(v, cpu, lat, tl, H / c->s_factor, W / c->s_factor, vid) ==
                       VDIT_ERR_INVALID_ARG && strstr(lg.msg, "CUDA device"),
            "a context without a device: refused (%s)", lg.msg);
    kc->cuda_bf16 = !bf16;
    lg.msg[0] = 0;
    T_CHECK(vd_vae_decode(v, kc, lat, tl, H / c->s_factor, W / c->s_factor, vid) ==
                    VDIT_ERR_INVALID_ARG && strstr(lg.msg, bf16 ? "in bf16" : "in fp32"),
            "a context of the other precision: refused (%s)", lg.msg);
    printf("%s: %s: %.1f KiB of weights on the device; contexts that do not fit refused\n", dir,
           pn, wbytes / 1024.0);
    vk_ctx_free(&cpu);
    vd_free(lat);
    vd_free(vid);
out:
    vd_vae_free(&v);
    T_CHECK(!vm || vkc_mem_used(vm) == 0, "%s: %zu bytes of weights not given back", dir,
            vm ? vkc_mem_used(vm) : 0);
    if (kc)
        kc->cuda = NULL; /* freed here, whatever vk_ctx_free does in this build */
    vk_ctx_free(&kc);
    vk_ctx_free(&host);
    vkc_ctx_free(&vm);
    vkc_ctx_free(&vr);
    vd_ckpt_free(&ck);
}

static void folder(const char *dir)
{
    vd_ckpt *ck = NULL;
    vd_vae *v = load(dir, &ck);
    vk_ctx *kc = vk_ctx_new(1, 0, &lg);
    if (!v || !kc) {
        vd_vae_free(&v);
        vd_ckpt_free(&ck);
        vk_ctx_free(&kc);
        return;
    }
    /* a smooth video in [-1, 1] */
    size_t n = 3 * (size_t)T * H * W;
    float *video = buf(n);
    for (int ch = 0; ch < 3; ch++)
        for (int f = 0; f < T; f++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    video[(((size_t)ch * T + f) * H + y) * W + x] =
                        0.8f * sinf(0.21f * y + 0.13f * x * (ch + 1) + 0.7f * f + ch);
    outs ref;
    memset(&ref, 0, sizeof(ref));
    run_all(v, kc, video, NULL, &ref);
    /* for scale: the CPU's own bf16 (where it has one) against its fp32 */
    vk_ctx *kb = vk_isa_native_bf16(vk_isa_cpu()) ? vk_ctx_new_ex(1, -1, VK_PREC_BF16, &lg) : NULL;
    if (kb) {
        outs o;
        memset(&o, 0, sizeof(o));
        run_all(v, kb, video, ref.mu, &o);
        const vd_vae_config *c = vd_vae_get_config(v);
        int tl = vd_vae_latent_frames(v, T), tv = vd_vae_video_frames(v, tl);
        size_t nl = (size_t)c->z_dim * tl * (H / c->s_factor) * (W / c->s_factor);
        size_t nv = 3 * (size_t)tv * H * W;
        printf("%s: the CPU's bf16 for scale: mu %.2e, dec %.2e, raw %.2e, tiled %.2e\n", dir,
               rel(o.mu, ref.mu, nl), rel(o.dec, ref.dec, nv), rel(o.raw, ref.raw, nv),
               rel(o.tiled, ref.tiled, nv));
        outs_free(&o);
        vk_ctx_free(&kb);
    }
    vd_vae_free(&v);
    vd_ckpt_free(&ck);
    vk_ctx_free(&kc);
    device_side(dir, video, &ref, 0);
    device_side(dir, video, &ref, 1);
    outs_free(&ref);
    vd_free(video);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VAE_DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        folder(argv[i]);
    T_DONE();
}
