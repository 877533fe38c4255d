/* Golden test of the bundled model (issue 7): for the fixed prompt, stored
 * noise and step count of models/golden (written by models/make_golden.py
 * from the PyTorch model; see models/README.md), the C engine's prompt
 * tokens, text embedding, latent after every step and decoded frames match
 * the PyTorch run within tolerance.
 *
 *   test_golden MODEL_DIR GOLDEN_DIR
 *
 * Exits 77 (SKIP) only while MODEL_DIR or GOLDEN_DIR does not exist. Runs
 * the pipeline's own pieces (the context's text cache and DiT run, the
 * sampler, the VAE decoder) with the stored noise instead of the engine's
 * counter-based noise, which is the one thing a public call cannot take.
 *
 * Tolerances (both sides upcast the same fp16 weights to fp32; only the
 * summation order differs, and UniPC carries the difference across steps;
 * on a random model of the bundled architecture the errors were ~1e-6):
 *   text embedding: max |c - ref| <= 1e-4 * max |ref|;
 *   every latent: max |c - ref| <= 1e-3 * max |ref|;
 *   decoded video in [-1, 1]: max abs <= 1e-2, mean abs <= 1e-3;
 *   uint8 frames: mean abs <= 0.1 levels. */
#include <sys/stat.h>

#include "../t.h"
#include "ckpt.h"
#include "json.h"
#include "pipeline/pipeline.h"
#include "pipeline/wan/wan.h"

static float *input_f32(const vd_ckpt *ck, const char *name, const vt_tensor **tp)
{
    const vt_tensor *t = vd_ckpt_find(ck, name);
    T_CHECK(t != NULL, "golden tensor %s missing", name);
    if (!t)
        return NULL;
    float *x = vd_malloc(sizeof(float) * (size_t)vt_nelem(t));
    if (x && vt_to_f32(x, t->data, t->dtype, (size_t)vt_nelem(t))) {
        vd_free(x);
        x = NULL;
    }
    T_CHECK(x != NULL, "golden tensor %s: cannot read as float (%s)", name, vt_dtype_name(t->dtype));
    if (tp)
        *tp = t;
    return x;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n, double *max_abs)
{
    double m = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    if (max_abs)
        *max_abs = m;
    return mb > 0 ? m / mb : m;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (argc > 3 && strcmp(argv[3], "fp32") && strcmp(argv[3], "bf16"))) {
        fprintf(stderr, "usage: %s MODEL_DIR GOLDEN_DIR [fp32|bf16]\n", argv[0]);
        return 2;
    }
    /* fp32 matches PyTorch's fp32 run to rounding; bf16 (operands of the
     * products rounded to bfloat16, fp32 accumulation) is held to looser,
     * documented bounds (docs/precision.md): measured on the bundled model
     * text 2.1e-3, latents 7.7e-3, decoded max 6.0e-2 / mean 8.8e-4, 0.11
     * uint8 levels; the bounds leave 2.5-3x room */
    int bf16 = argc > 3 && !strcmp(argv[3], "bf16");
    if (bf16 && !vk_isa_native_bf16(vk_isa_default())) {
        printf("SKIP: this CPU (%s) does not compute bf16 natively\n",
               vk_isa_name(vk_isa_default()));
        return 77;
    }
    const double tol_text = bf16 ? 6e-3 : 1e-4, tol_lat = bf16 ? 2e-2 : 1e-3,
                 tol_max = bf16 ? 0.15 : 1e-2, tol_mean = bf16 ? 2.5e-3 : 1e-3,
                 tol_u8 = bf16 ? 0.3 : 0.1;
    struct stat st;
    if (stat(argv[1], &st) || stat(argv[2], &st)) {
        printf("SKIP: no bundled model (%s) or golden file (%s)\n", argv[1], argv[2]);
        return 77;
    }
    const char *s = getenv("VDIT_TEST_THREADS");
    int threads = s ? atoi(s) : 1;
    vd_log lg = {0};
    char path[4096], *json = NULL, err[128];
    size_t len = 0;
    vj_val *cfg = NULL;
    vd_ckpt *ck = NULL;
    vdit_model *m = NULL;
    vdit_ctx *c = NULL;
    vd_sampler *smp = NULL;
    float *noise = NULL, *ref_ctx = NULL, *ref_lat = NULL, *ref_dec = NULL, *x = NULL, *vc = NULL,
          *vu = NULL, *px = NULL;
    const vt_tensor *tn = NULL, *tl = NULL, *td = NULL, *tcx = NULL;

    snprintf(path, sizeof(path), "%s/config.json", argv[2]);
    T_CHECK(vd_read_file(&lg, path, &json, &len) == 0, "%s unreadable", path);
    if (json)
        cfg = vj_parse(json, len, err, sizeof(err));
    T_CHECK(cfg != NULL, "%s: %s", path, json ? err : "");
    snprintf(path, sizeof(path), "%s/golden.safetensors", argv[2]);
    T_CHECK(vd_ckpt_open(path, &lg, &ck) == 0, "%s: %s", path, lg.msg);
    if (!cfg || !ck)
        goto done;
    const char *prompt = vj_str(vj_get(cfg, "prompt"), NULL);
    const char *neg = vj_str(vj_get(cfg, "negative_prompt"), NULL);
    const char *sname = vj_str(vj_get(cfg, "sampler"), "unipc");
    int steps = (int)vj_int(vj_get(cfg, "steps"), -1);
    double guidance = vj_num(vj_get(cfg, "guidance"), -1), shift = vj_num(vj_get(cfg, "shift"), -1);
    T_CHECK(prompt && neg && steps >= 1 && steps <= 1000 && guidance >= 0 && shift > 0,
            "config.json needs prompt, negative_prompt, steps, guidance, shift");
    vd_sampler_kind kind = !strcmp(sname, "euler") ? VD_SAMPLER_EULER
                           : !strcmp(sname, "dpm++") ? VD_SAMPLER_DPMPP : VD_SAMPLER_UNIPC;
    noise = input_f32(ck, "noise", &tn);
    ref_lat = input_f32(ck, "latents", &tl);
    ref_dec = input_f32(ck, "decoded", &td);
    ref_ctx = input_f32(ck, "context_cond", &tcx);
    if (!prompt || !neg || steps < 1 || !noise || !ref_lat || !ref_dec || !ref_ctx)
        goto done;
    T_CHECK(tn->ndim == 4 && tl->ndim == 5 && tl->shape[0] == steps + 1 && td->ndim == 4,
            "golden shapes: noise %dD, latents %dD [%lld], decoded %dD", tn->ndim, tl->ndim,
            (long long)tl->shape[0], td->ndim);
    if (tn->ndim != 4 || tl->ndim != 5 || tl->shape[0] != steps + 1 || td->ndim != 4)
        goto done;
    int64_t ch = tn->shape[0], lt = tn->shape[1], lh = tn->shape[2], lw = tn->shape[3];
    int64_t n = ch * lt * lh * lw;

    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = threads;
    T_CHECK(vdit_model_load(argv[1], &mp, &m) == 0, "load %s: %s", argv[1], mp.error);
    if (!m)
        goto done;
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = threads;
    cp.precision = bf16 ? VDIT_PRECISION_BF16 : VDIT_PRECISION_FP32;
    T_CHECK(vdit_ctx_init(m, &cp, &c) == 0, "ctx");
    if (c)
        printf("compute: %s\n", vdit_ctx_compute(c));
    if (!c)
        goto done;

    /* tokens */
    const vt_tensor *tid = vd_ckpt_find(ck, "ids_cond");
    if (tid && tid->dtype == VT_I64) {
        int64_t tlen = vt_nelem(tid);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)tlen);
        int bad = -1;
        if (ids && vd_tok_encode_padded(vd_wan_parts_of(m)->tok, prompt, (int)tlen, ids) >= 0)
            for (int64_t i = 0; i < tlen && bad < 0; i++)
                if (ids[i] != ((const int64_t *)tid->data)[i])
                    bad = (int)i;
        T_CHECK(ids && bad < 0, "prompt tokens differ from PyTorch's at %d", bad);
        free(ids);
    }

    /* text embedding: the context's cache entry for the prompt */
    vd_ctx_begin(c);
    const vd_cond *cond = NULL, *uncond = NULL;
    T_CHECK(vd_ctx_cond(c, 0, prompt, &cond) == 0 && vd_ctx_cond(c, 1, neg, &uncond) == 0,
            "text: %s", vdit_ctx_last_error(c));
    if (!cond || !uncond)
        goto done;
    for (int i = 0; i < VD_TEXT_CACHE; i++) {
        const vd_text_entry *e = &c->text[i];
        if (!e->text || strcmp(e->text, prompt))
            continue;
        T_CHECK(tcx->ndim == 2 && e->n == tcx->shape[0], "text rows %lld, PyTorch %lld",
                (long long)e->n, (long long)tcx->shape[0]);
        if (tcx->ndim == 2 && e->n == tcx->shape[0]) {
            double r = rel_err(e->emb, ref_ctx, (size_t)vt_nelem(tcx), NULL);
            printf("golden text embedding [%lld, %lld]: rel %.2e\n", (long long)tcx->shape[0],
                   (long long)tcx->shape[1], r);
            T_CHECK(r <= tol_text, "text embedding rel %.2e > %.0e", r, tol_text);
        }
    }

    /* the sampling loop from the stored noise, as vd_run_job runs it */
    smp = vd_sampler_new(kind, steps, shift, n);
    x = vd_malloc(sizeof(float) * (size_t)n);
    vc = vd_malloc(sizeof(float) * (size_t)n);
    vu = vd_malloc(sizeof(float) * (size_t)n);
    T_CHECK(smp && x && vc && vu, "out of memory");
    if (!smp || !x || !vc || !vu)
        goto done;
    memcpy(x, noise, sizeof(float) * (size_t)n);
    double worst = 0;
    for (int i = 0; i < steps; i++) {
        float t = (float)vd_sampler_timestep(smp, i);
        int ret = vd_dit_forward(vd_wan_dit_run(c->run), x, NULL, lt, lh, lw, t, vd_wan_dit_cond(cond), vc);
        if (!ret)
            ret = vd_dit_forward(vd_wan_dit_run(c->run), x, NULL, lt, lh, lw, t, vd_wan_dit_cond(uncond), vu);
        T_CHECK(ret == 0, "DiT step %d: %s", i, vdit_ctx_last_error(c));
        if (ret)
            goto done;
        for (int64_t k = 0; k < n; k++)
            vc[k] = vu[k] + (float)guidance * (vc[k] - vu[k]);
        vd_sampler_step(smp, i, vc, x);
        double r = rel_err(x, ref_lat + n * (i + 1), (size_t)n, NULL);
        worst = fmax(worst, r);
        T_CHECK(r <= tol_lat, "latent after step %d: rel %.2e > %.0e", i + 1, r, tol_lat);
    }
    printf("golden latents (%d steps, [%lld, %lld, %lld, %lld]): worst rel %.2e, final rel %.2e\n",
           steps, (long long)ch, (long long)lt, (long long)lh, (long long)lw, worst,
           rel_err(x, ref_lat + n * steps, (size_t)n, NULL));

    /* decode the C latent; compare with the PyTorch decoded video */
    int64_t dn = vt_nelem(td);
    px = vd_malloc(sizeof(float) * (size_t)dn);
    T_CHECK(px != NULL, "out of memory");
    if (!px)
        goto done;
    int ret = vd_vae_decode(vd_wan_parts_of(m)->vae, c->kc, x, (int)lt, (int)lh, (int)lw, px);
    T_CHECK(ret == 0 && td->shape[0] == 3 && td->shape[2] == 8 * lh && td->shape[3] == 8 * lw,
            "decode: %s", vdit_ctx_last_error(c));
    if (ret)
        goto done;
    double mx = 0, mean = 0, mean8 = 0;
    for (int64_t k = 0; k < dn; k++) {
        double d = fabs((double)px[k] - ref_dec[k]);
        mx = fmax(mx, d);
        mean += d / (double)dn;
        /* sample.to_uint8's rounding on both sides */
        double a = round((fmin(fmax(px[k], -1.0), 1.0) + 1) * 127.5);
        double b = round((fmin(fmax(ref_dec[k], -1.0), 1.0) + 1) * 127.5);
        mean8 += fabs(a - b) / (double)dn;
    }
    printf("golden decoded [3, %lld, %lld, %lld]: max abs %.2e, mean abs %.2e, uint8 mean %.3f "
           "levels\n", (long long)td->shape[1], (long long)td->shape[2], (long long)td->shape[3],
           mx, mean, mean8);
    T_CHECK(mx <= tol_max && mean <= tol_mean, "decoded: max abs %.2e (<= %.0e), mean %.2e (<= %.0e)",
            mx, tol_max, mean, tol_mean);
    T_CHECK(mean8 <= tol_u8, "uint8 frames: mean %.3f levels > %.2f", mean8, tol_u8);
done:
    vd_free(noise);
    vd_free(ref_lat);
    vd_free(ref_dec);
    vd_free(ref_ctx);
    vd_free(x);
    vd_free(vc);
    vd_free(vu);
    vd_free(px);
    vd_sampler_free(&smp);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    vd_ckpt_free(&ck);
    vj_free(cfg);
    free(json);
    T_DONE();
}
