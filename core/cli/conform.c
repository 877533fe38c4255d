#include "conform.h"

#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

void conform_check(conform_ctx *c, const char *name, const float *got, size_t n, double tol_abs,
                   double tol_rel)
{
    const vt_tensor *t = vd_ckpt_find(c->io, name);
    if (!t) {
        conform_fail(c, name, "reference tensor missing from io.safetensors");
        return;
    }
    if ((size_t)vt_nelem(t) != n) {
        char m[96];
        snprintf(m, sizeof(m), "size mismatch: got %zu values, reference has %lld", n,
                 (long long)vt_nelem(t));
        conform_fail(c, name, m);
        return;
    }
    float *ref = vd_tensor_f32(t);
    if (!ref) {
        conform_fail(c, name, "reference tensor is not a float tensor");
        return;
    }
    conform_check_values(c, name, got, ref, n, tol_abs, tol_rel);
    vd_free(ref);
}

void conform_check_values(conform_ctx *c, const char *label, const float *got, const float *ref,
                          size_t n, double tol_abs, double tol_rel)
{
    double max_abs = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= max_abs))
            max_abs = d; /* NaN sticks */
        if (fabs((double)ref[i]) > max_ref)
            max_ref = fabs((double)ref[i]);
    }
    double rel = max_ref > 0 ? max_abs / max_ref : max_abs;
    if (tol_abs <= 0)
        tol_abs = c->tol_abs;
    if (tol_rel <= 0)
        tol_rel = c->tol_rel;
    int ok = max_abs <= tol_abs && rel <= tol_rel;
    printf("%-32s max_abs=%.3e rel=%.3e %s\n", label, max_abs, rel, ok ? "PASS" : "FAIL");
    if (ok)
        c->n_pass++;
    else
        c->n_fail++;
}

void conform_check_i64(conform_ctx *c, const char *name, const int64_t *got, size_t n)
{
    const vt_tensor *t = vd_ckpt_find(c->io, name);
    if (!t || t->dtype != VT_I64 || (size_t)vt_nelem(t) != n) {
        conform_fail(c, name, "reference missing, not I64, or of another size");
        return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t r;
        memcpy(&r, (const char *)t->data + 8 * i, 8);
        bad += r != got[i];
    }
    printf("%-32s mismatches=%zu/%zu %s\n", name, bad, n, bad ? "FAIL" : "PASS");
    if (bad)
        c->n_fail++;
    else
        c->n_pass++;
}

void conform_fail(conform_ctx *c, const char *what, const char *msg)
{
    printf("%-32s FAIL (%s)\n", what, msg);
    c->n_fail++;
}

float *conform_input(conform_ctx *c, const char *name, const vt_tensor **tp)
{
    const vt_tensor *t = vd_ckpt_find(c->io, name);
    if (tp)
        *tp = t;
    float *f = t ? vd_tensor_f32(t) : NULL;
    if (!f)
        conform_fail(c, name, "input missing from io.safetensors or not a float tensor");
    return f;
}

/* tol_abs, tol_rel: the README's fp32 criteria; tol_bf16: the bound on the
 * relative error (max |got - ref| / max |ref|) in bf16, where absolute
 * bounds do not apply (docs/precision.md has the measured values). */
int conform_kc(conform_ctx *c, vk_ctx **out)
{
    vk_prec host = !c->device ? c->prec : c->prec == VK_PREC_BF16 ? VK_PREC_AUTO : VK_PREC_F32;
    vk_ctx *kc = vk_ctx_new_ex(c->n_threads, -1, host, &c->log);
    int ret = kc ? 0 : VDIT_ERR_NOMEM;
    if (kc && c->device) {
        vk_device dev;
        if (!(ret = vk_device_parse(c->device, &dev, &c->log)) &&
            !(ret = vk_device_open(&dev, &kc->cuda, &c->log)))
            kc->cuda_bf16 = c->prec == VK_PREC_BF16;
    }
    if (ret)
        vk_ctx_free(&kc);
    *out = kc;
    return ret;
}

typedef struct handler {
    const char *prefix;
    int (*fn)(conform_ctx *);
    double tol_abs, tol_rel, tol_bf16;
} handler;

static int run_dir(const char *dir, int n_threads, vk_prec prec, int verbose, const char *device,
                   int *n_pass, int *n_fail)
{
    static const handler handlers[] = {
        { "wan.modules.model.WanModel", conform_dit, 1e-4, 3e-5, 3e-2 },
        { "wan.modules.vae.WanVAE", conform_vae, 1e-4, 3e-5, 6e-2 },
        { "wan.modules.vae2_2.WanVAE", conform_vae, 1e-4, 3e-5, 6e-2 },
        { "wan.modules.t5.T5Encoder", conform_umt5, 1e-4, 3e-5, 3e-2 },
        { "wan.utils.fm_solvers", conform_sampler, 1e-4, 3e-5, 3e-2 },
        { "few-step DMD samplers", conform_fewstep, 1e-4, 3e-5, 3e-2 },
        { "wan.text2video.WanT2V.generate", conform_t2v_loop, 3e-4, 1e-4, 5e-2 },
        { "wan.textimage2video.WanTI2V.t2v", conform_ti2v_t2v_loop, 3e-4, 1e-4, 5e-2 },
        { "wan.textimage2video.WanTI2V.generate (size", conform_ti2v_geometry, 0, 0, 0 },
        { "wan.textimage2video.WanTI2V.i2v", conform_ti2v_loop, 3e-4, 1e-4, 5e-2 },
        { "taehv.TAEHV.decode_video", conform_taehv, 1e-4, 1e-4, 8e-2 },
    };
    conform_ctx c;
    memset(&c, 0, sizeof(c));
    c.dir = dir;
    c.n_threads = n_threads;
    c.prec = prec;
    c.verbose = verbose;
    c.device = device;
    char path[4096];
    char *txt = NULL;
    vj_val *cfg = NULL;
    int ret = 0;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    size_t len;
    if (vd_read_file(&c.log, path, &txt, &len)) {
        fprintf(stderr, "vdit conform: %s\n", c.log.msg);
        return 1;
    }
    char jerr[128];
    cfg = vj_parse(txt, len, jerr, sizeof(jerr));
    free(txt);
    if (!cfg) {
        fprintf(stderr, "vdit conform: %s: %s\n", path, jerr);
        return 1;
    }
    c.cfg = cfg;
    const char *ref = vj_str(vj_get(cfg, "reference"), NULL);
    const handler *h = NULL;
    for (size_t i = 0; ref && i < VD_ARRAY_SIZE(handlers); i++)
        if (!strncmp(ref, handlers[i].prefix, strlen(handlers[i].prefix)))
            h = &handlers[i];
    if (!h) {
        fprintf(stderr, "vdit conform: %s: unknown component '%s'\n", path, ref ? ref : "(none)");
        vj_free(cfg);
        return 1;
    }
    if (device && h->fn != conform_dit && h->fn != conform_vae && h->fn != conform_umt5) {
        fprintf(stderr,
                "vdit conform: %s: --device %s: only the DiT, the VAE and the text encoder run "
                "on a device so far\n",
                dir, device);
        vj_free(cfg);
        return 1;
    }
    c.tol_abs = prec == VK_PREC_BF16 ? HUGE_VAL : h->tol_abs;
    c.tol_rel = prec == VK_PREC_BF16 ? h->tol_bf16 : h->tol_rel;
    printf("# %s: %s (%s on %s)\n", dir, ref, vk_prec_name(prec),
           device ? device : vk_isa_name(vk_isa_default()));
    snprintf(path, sizeof(path), "%s/io.safetensors", dir);
    if (vd_ckpt_open(path, &c.log, &c.io)) {
        fprintf(stderr, "vdit conform: %s\n", c.log.msg);
        vj_free(cfg);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    struct stat st;
    if (!stat(path, &st) && vd_ckpt_open(path, &c.log, &c.weights)) {
        fprintf(stderr, "vdit conform: %s\n", c.log.msg);
        ret = 1;
        goto done;
    }
    if (h->fn(&c) < 0) {
        fprintf(stderr, "vdit conform: %s: %s\n", dir, c.log.msg[0] ? c.log.msg : "failed");
        ret = 1;
        goto done;
    }
    ret = c.n_fail ? 1 : 0;
done:
    *n_pass += c.n_pass;
    *n_fail += c.n_fail;
    vd_ckpt_free(&c.io);
    vd_ckpt_free(&c.weights);
    vj_free(cfg);
    return ret;
}

int cmd_conform(int argc, char **argv)
{
    int n_threads = 0, verbose = 0, worst = 0, n_pass = 0, n_fail = 0, n_dirs = 0;
    int skip_no_dev = 0;
    const char *device = NULL;
    vk_prec prec = VK_PREC_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vdit conform [--threads N] [--precision fp32|bf16] [--verbose]\n"
                   "                    [--device cuda|cuda:N [--skip-without-device]] DIR...\n"
                   "Runs the component a conformance folder describes (config.json,\n"
                   "io.safetensors, weights.safetensors) and compares each output with the\n"
                   "stored reference: one line per output, exit 0 only if all pass.\n"
                   "  --threads N   CPU threads (default: all cores)\n"
                   "  --precision P fp32 (default; the folders' own bounds) or bf16 (bf16\n"
                   "                products, held to a relative bound, docs/precision.md)\n"
                   "  --verbose     also compare the intermediate tensors a folder stores\n"
                   "  --device D    run the DiT, the VAE or the text encoder on that CUDA\n"
                   "                device (their folders only)\n"
                   "  --skip-without-device  exit 77 (a skipped test) when the device\n"
                   "                cannot be opened (no CUDA in this build, no GPU)\n"
                   "Exit status: 0 all pass, 1 a comparison failed or a folder could not\n"
                   "be run (message on stderr), 2 bad usage, 77 skipped.\n");
            return 0;
        } else if (!strcmp(argv[i], "--threads")) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (!end || end == argv[i + 1] || *end || v < 1 || v > 4096) {
                fprintf(stderr, "vdit conform: --threads needs a number from 1 to 4096\n");
                return 2;
            }
            n_threads = (int)v;
            i++;
        } else if (!strcmp(argv[i], "--precision")) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "fp32") && strcmp(v, "bf16")) {
                fprintf(stderr, "vdit conform: --precision takes fp32 or bf16\n");
                return 2;
            }
            prec = strcmp(v, "bf16") ? VK_PREC_F32 : VK_PREC_BF16;
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            vk_device d;
            vd_log lg = { 0 };
            device = argv[++i];
            if (vk_device_parse(device, &d, &lg) || !d.cuda || d.is_auto) {
                fprintf(stderr, "vdit conform: --device takes cuda or cuda:N\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--skip-without-device")) {
            skip_no_dev = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "vdit conform: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else {
            if (device && n_dirs == 0) {
                /* the device answers, or the run is skipped / fails here */
                vk_device d;
                vd_log lg = { 0 };
                void *vc = NULL;
                vk_device_parse(device, &d, &lg);
                if (vk_device_open(&d, &vc, &lg)) {
                    if (skip_no_dev) {
                        printf("conform: skipped (%s)\n", lg.msg);
                        return 77;
                    }
                    fprintf(stderr, "vdit conform: %s\n", lg.msg);
                    return 1;
                }
                vk_device_close(&vc);
            }
            int r = run_dir(argv[i], n_threads, prec, verbose, device, &n_pass, &n_fail);
            if (r > worst)
                worst = r;
            n_dirs++;
        }
    }
    if (!n_dirs) {
        fprintf(stderr, "vdit conform: no folder given (see --help)\n");
        return 2;
    }
    printf("conform: %d passed, %d failed\n", n_pass, n_fail);
    return worst;
}
