/* The DiT's device path (core/src/dit/dit_cuda.c) on an emulated device
 * (vkc_emul.c: host memory, reference kernels), against the CPU path on the
 * conformance folders given as arguments: the same weights, inputs and
 * timesteps (one, or one per token for Wan2.2), the text (and image)
 * condition made on the "device", one branch and guidance's two branches
 * batched, the per-block taps. fp32 must agree with the CPU to summation
 * order; bf16 (weights uploaded in bf16, bf16 operands) within the bf16
 * conformance bound. Runs in every build: this is what a GPU run adds to
 * nothing but the kernels of vkc.cu (test_cuda). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "dit/dit.h"
#include "json.h"
#include "kernels/cuda/vkc.h"
#include "kernels/impl.h"
#include "t.h"

/* max |a - b| / max |b| */
static double rel(const float *a, const float *b, size_t n)
{
    double r;
    t_maxabs(a, b, n, &r);
    return r;
}

static void check(const char *dir, const char *what, double e, double tol)
{
    printf("%s: %-44s rel %.2e (tol %.0e) %s\n", dir, what, e, tol, e <= tol ? "OK" : "FAIL");
    T_CHECK(e <= tol, "%s: %s: %.2e > %.0e", dir, what, e, tol);
}

static int taps;
static void on_tap(void *user, const char *name, const float *x, size_t n)
{
    (void)user, (void)x, (void)n;
    taps += !strncmp(name, "inter/block", 11);
}

typedef struct side {
    vd_ckpt *ck;
    vd_dit *d;
    vk_ctx *kc;
    vkc_ctx *vc;
    vd_dit_run *r;
    vd_dit_cond *cond, *empty;
    size_t weights; /* device bytes right after the upload */
} side;

static void side_free(side *s)
{
    vd_dit_cond_free(&s->cond);
    vd_dit_cond_free(&s->empty);
    vd_dit_run_free(&s->r);
    vd_dit_free(&s->d);
    if (s->kc)
        s->kc->cuda = NULL; /* freed here, whatever vk_ctx_free does in this build */
    vk_ctx_free(&s->kc);
    vkc_ctx_free(&s->vc);
    vd_ckpt_free(&s->ck);
}

/* prec: VK_PREC_F32 or BF16 on the device; dev 0: the CPU in fp32. */
static int side_new(side *s, const char *dir, int64_t text_len, int64_t heads, int dev,
                    vk_prec prec, const float *ctx, int64_t n_ctx, const float *clip,
                    int64_t n_clip, vd_log *lg)
{
    char path[4200];
    char err[256];
    memset(s, 0, sizeof(*s));
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    if (vd_ckpt_open(path, lg, &s->ck) || vd_dit_canonicalize(s->ck, lg) ||
        vd_dit_load_ex(s->ck, text_len, heads, lg, &s->d) ||
        !(s->kc = vk_ctx_new_ex(1, -1, VK_PREC_F32, lg)))
        return -1;
    if (dev) {
        if (vkc_ctx_new(0, &s->vc, err, sizeof(err)) ||
            vd_dit_upload(s->d, s->vc, prec, NULL, NULL, lg))
            return -1;
        s->kc->cuda = s->vc;
        s->kc->cuda_bf16 = prec == VK_PREC_BF16;
        s->weights = vkc_mem_used(s->vc);
    }
    if (!(s->r = vd_dit_run_new(s->d, s->kc)) ||
        vd_dit_cond_new(s->r, ctx, n_ctx, clip, n_clip, &s->cond) ||
        vd_dit_cond_new(s->r, ctx, 0, clip, n_clip, &s->empty))
        return -1;
    return 0;
}

static float *io(vd_ckpt *c, const char *name, const vt_tensor **t)
{
    *t = vd_ckpt_find(c, name);
    return *t ? vd_tensor_f32(*t) : NULL;
}

static int run_dir(const char *dir)
{
    vd_log lg = { 0 };
    char path[4200], jerr[128];
    char *txt = NULL;
    size_t len;
    vd_ckpt *ioc = NULL;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (vd_read_file(&lg, path, &txt, &len)) {
        printf("%s: %s\n", dir, lg.msg);
        return -1;
    }
    vj_val *cfg = vj_parse(txt, len, jerr, sizeof(jerr));
    free(txt);
    const vj_val *ctor = vj_get(cfg, "constructor");
    int64_t text_len = vj_int(vj_get(ctor, "text_len"), 512);
    int64_t heads = vj_int(vj_get(ctor, "num_heads"), 0);
    vj_free(cfg);
    snprintf(path, sizeof(path), "%s/io.safetensors", dir);
    if (vd_ckpt_open(path, &lg, &ioc)) {
        printf("%s: %s\n", dir, lg.msg);
        return -1;
    }
    const vt_tensor *xt, *tt, *ct, *yt = NULL, *clt = NULL;
    float *x = io(ioc, "x", &xt), *t = io(ioc, "t", &tt), *ctx = io(ioc, "context", &ct);
    float *y = io(ioc, "y", &yt), *clip = io(ioc, "clip_fea", &clt);
    int64_t n_clip = clt ? clt->shape[clt->ndim >= 2 ? clt->ndim - 2 : 0] : 0;
    int ret = 0;
    side cpu, dev32, dev16;
    int bad = !x || !t || !ctx ||
              side_new(&cpu, dir, text_len, heads, 0, VK_PREC_F32, ctx, ct->shape[0], clip,
                       n_clip, &lg) ||
              side_new(&dev32, dir, text_len, heads, 1, VK_PREC_F32, ctx, ct->shape[0], clip,
                       n_clip, &lg) ||
              side_new(&dev16, dir, text_len, heads, 1, VK_PREC_BF16, ctx, ct->shape[0], clip,
                       n_clip, &lg);
    if (bad) {
        printf("%s: cannot set up: %s\n", dir, lg.msg[0] ? lg.msg : "missing io tensor");
        ret = -1;
        goto done;
    }
    const vd_dit_config *c = vd_dit_get_config(cpu.d);
    int64_t Fr = xt->shape[1], H = xt->shape[2], W = xt->shape[3];
    int64_t L = Fr / c->patch[0] * (H / c->patch[1]) * (W / c->patch[2]);
    size_t no = (size_t)(c->out_dim * Fr * H * W);
    const float *t_tok = vt_nelem(tt) > 1 ? t : NULL; /* Wan2.2: one per token */
    float *o[3][2];
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 2; b++)
            o[s][b] = malloc(no * sizeof(float));
    side *sides[3] = { &cpu, &dev32, &dev16 };
    for (int s = 0; s < 3; s++) {
        /* one branch, then both branches batched (the prompt, the empty one) */
        if (s == 1) {
            taps = 0;
            vd_dit_run_set_tap(sides[s]->r, on_tap, NULL);
        }
        ret = vd_dit_forward_tok(sides[s]->r, x, y, Fr, H, W, t[0], t_tok, sides[s]->cond,
                                 o[s][0]);
        vd_dit_run_set_tap(sides[s]->r, NULL, NULL);
        const vd_dit_cond *conds[2] = { sides[s]->cond, sides[s]->empty };
        float *outs[2] = { o[s][1], o[s][0] };
        float *first = malloc(no * sizeof(float));
        if (!ret && first) {
            memcpy(first, o[s][0], no * sizeof(float));
            ret = vd_dit_forward_batch_tok(sides[s]->r, x, y, Fr, H, W, t[0], t_tok, 2, conds,
                                           outs, 0, NULL, 0, NULL);
            /* the batch's first branch is the single pass again */
            if (!ret)
                check(dir, s == 0   ? "cpu: batched branch 1 = single pass"
                           : s == 1 ? "device fp32: batched branch 1 = single"
                                    : "device bf16: batched branch 1 = single",
                      rel(o[s][1], first, no), s == 2 ? 1e-5 : 1e-6);
            /* keep: o[s][0] the empty branch, o[s][1] the prompt */
        }
        free(first);
        if (ret) {
            printf("%s: forward failed: %s\n", dir, lg.msg);
            goto outs;
        }
    }
    check(dir, "device fp32 vs cpu, prompt", rel(o[1][1], o[0][1], no), 1e-5);
    check(dir, "device fp32 vs cpu, empty prompt", rel(o[1][0], o[0][0], no), 1e-5);
    check(dir, "device bf16 vs cpu fp32, prompt", rel(o[2][1], o[0][1], no), 3e-2);
    check(dir, "device bf16 vs cpu fp32, empty prompt", rel(o[2][0], o[0][0], no), 3e-2);
    check(dir, "device taps: one per block", taps == c->n_layers ? 0 : 1, 0);
    /* the conditions and the runs give their device memory back; the
     * weights theirs with the model */
    for (int s = 1; s < 3; s++) {
        /* the path was the device's: weights and activations went there */
        check(dir, s == 1 ? "device fp32: weights and activations on it"
                          : "device bf16: weights and activations on it",
              sides[s]->weights > 0 && vkc_mem_peak(sides[s]->vc) > sides[s]->weights ? 0 : 1,
              0);
        vd_dit_cond_free(&sides[s]->cond);
        vd_dit_cond_free(&sides[s]->empty);
        vd_dit_run_free(&sides[s]->r);
        size_t left = vkc_mem_used(sides[s]->vc);
        vd_dit_free(&sides[s]->d);
        check(dir, s == 1 ? "device fp32: memory back (run, cond, weights)"
                          : "device bf16: memory back (run, cond, weights)",
              left == sides[s]->weights && vkc_mem_used(sides[s]->vc) == 0 ? 0 : 1, 0);
    }
    printf("%s: %lld tokens, %lld layers, %s\n", dir, (long long)L, (long long)c->n_layers,
           t_tok ? "per-token timesteps" : "one timestep");
outs:
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 2; b++)
            free(o[s][b]);
done:
    side_free(&cpu);
    side_free(&dev32);
    side_free(&dev16);
    vd_free(x), vd_free(t), vd_free(ctx), vd_free(y), vd_free(clip);
    vd_ckpt_free(&ioc);
    return ret ? -1 : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        T_CHECK(run_dir(argv[i]) == 0, "%s could not be run", argv[i]);
    T_CHECK(argc > 1, "no conformance folder given");
    T_DONE();
}
