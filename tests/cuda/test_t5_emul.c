/* The text encoder's device path (core/src/text/t5_cuda.c) on an emulated
 * device (vkc_emul.c: host memory, reference kernels), against the CPU path
 * on the umT5 conformance weights given as the argument: the same token ids
 * with padding (n_real < n) and without, fp32 within 1e-5 of the CPU (only
 * the summation order differs), bf16 within the text encoder's bf16 bound
 * (3e-2, docs/precision.md); the taps (embedding, position bias, every
 * block's output) as the CPU's; every byte of device memory given back; a
 * context without a device or of the other precision refused. Runs in every
 * build: what a GPU adds is vkc.cu's kernels alone (test_cuda).
 *
 * usage: test_t5_emul UMT5_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "kernels/cuda/vkc.h"
#include "kernels/impl.h"
#include "t.h"
#include "text/text.h"

static vd_log lg;

static void check(const char *what, double e, double tol)
{
    printf("%-44s rel %.2e (tol %.0e) %s\n", what, e, tol, e <= tol ? "OK" : "FAIL");
    T_CHECK(e <= tol, "%s: %.2e > %.0e", what, e, tol);
}

typedef struct taps {
    int n;
    float *block_last; /* the last block's output */
    size_t len;
} taps;

static void on_tap(void *user, const char *name, const float *x, size_t n)
{
    taps *t = user;
    t->n++;
    if (!strncmp(name, "inter/block", 11)) {
        free(t->block_last);
        t->block_last = malloc(n * sizeof(float));
        if (t->block_last)
            memcpy(t->block_last, x, n * sizeof(float));
        t->len = n;
    }
}

static vd_t5 *load(const char *dir, vd_ckpt **ck)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/weights.safetensors", dir);
    vd_t5 *t = NULL;
    if (vd_ckpt_open(p, &lg, ck) || vd_t5_canonicalize(*ck, &lg) || vd_t5_load(*ck, &lg, &t))
        T_CHECK(0, "%s: %s", p, lg.msg);
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s UMT5_DIR\n", argv[0]);
        return 2;
    }
    vd_ckpt *ck = NULL;
    vd_t5 *t = load(argv[1], &ck);
    vk_ctx *kc = vk_ctx_new(1, 0, &lg);
    if (!t || !kc)
        return 1;
    const vd_t5_config cfg = *vd_t5_get_config(t), *c = &cfg; /* t is reloaded below */
    const int64_t n = 24, D = c->dim;
    int32_t ids[24];
    t_rng r = { 42 };
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(t_next(&r) % (uint64_t)c->vocab);
    const int64_t reals[2] = { 17, 24 };
    float *ref[2], *got = malloc((size_t)(n * D) * sizeof(float));
    taps tr = { 0 };
    for (int i = 0; i < 2; i++) {
        ref[i] = malloc((size_t)(n * D) * sizeof(float));
        T_CHECK(vd_t5_encode_tap(t, kc, ids, n, reals[i], ref[i], i ? NULL : on_tap, &tr) == 0,
                "CPU encode: %s", lg.msg);
    }
    vd_t5_free(&t);
    vd_ckpt_free(&ck);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        t = load(argv[1], &ck);
        vkc_ctx *vm = NULL, *vr = NULL;
        char err[128];
        T_CHECK(!vkc_ctx_new(0, &vm, err, sizeof(err)) && !vkc_ctx_new(0, &vr, err, sizeof(err)),
                "emulated device");
        if (!t || !vm || !vr)
            return 1;
        T_CHECK(vd_t5_upload(t, vm, bf16 ? VK_PREC_BF16 : VK_PREC_F32, NULL, NULL, &lg) == 0,
                "upload: %s", lg.msg);
        size_t wb = vkc_mem_used(vm);
        kc->cuda = vr;
        kc->cuda_bf16 = bf16;
        const char *pn = bf16 ? "bf16" : "fp32";
        double tol = bf16 ? 3e-2 : 1e-5, e;
        char what[96];
        for (int i = 0; i < 2; i++) {
            taps td = { 0 };
            T_CHECK(vd_t5_encode_tap(t, kc, ids, n, reals[i], got, i ? NULL : on_tap, &td) == 0,
                    "device encode: %s", lg.msg);
            t_maxabs(got, ref[i], (size_t)(n * D), &e);
            snprintf(what, sizeof(what), "%s: out, %lld of %lld tokens real", pn,
                     (long long)reals[i], (long long)n);
            check(what, e, tol);
            if (!i) {
                T_CHECK(td.n == tr.n && td.n == c->n_layers + 2, "%s: %d taps, the CPU %d", pn,
                        td.n, tr.n);
                if (td.block_last && tr.block_last && td.len == tr.len) {
                    t_maxabs(td.block_last, tr.block_last, td.len, &e);
                    snprintf(what, sizeof(what), "%s: the last block's tap", pn);
                    check(what, e, tol);
                }
                free(td.block_last);
            }
        }
        T_CHECK(vkc_mem_used(vr) == 0, "%s: %zu bytes of run memory not given back", pn,
                vkc_mem_used(vr));
        /* contexts the weights do not fit */
        kc->cuda_bf16 = !bf16;
        lg.msg[0] = 0;
        T_CHECK(vd_t5_encode(t, kc, ids, n, n, got) == VDIT_ERR_INVALID_ARG &&
                    strstr(lg.msg, bf16 ? "in bf16" : "in fp32"),
                "%s: a context of the other precision: refused (%s)", pn, lg.msg);
        kc->cuda = NULL;
        lg.msg[0] = 0;
        T_CHECK(vd_t5_encode(t, kc, ids, n, n, got) == VDIT_ERR_INVALID_ARG &&
                    strstr(lg.msg, "CUDA device"),
                "%s: a context without a device: refused (%s)", pn, lg.msg);
        printf("%s: %.1f KiB of weights on the device; contexts that do not fit refused\n", pn,
               wb / 1024.0);
        vd_t5_free(&t);
        T_CHECK(vkc_mem_used(vm) == 0, "%s: %zu bytes of weights not given back", pn,
                vkc_mem_used(vm));
        vkc_ctx_free(&vm);
        vkc_ctx_free(&vr);
        vd_ckpt_free(&ck);
    }
    free(tr.block_last);
    free(ref[0]);
    free(ref[1]);
    free(got);
    vk_ctx_free(&kc);
    T_DONE();
}
