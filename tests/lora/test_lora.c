/* LoRA merging against the merge done in Python (models/wan/make_lora.py):
 * every layout merges to the same bits as numpy's merge of the same files,
 * on F32, BF16 and fp8 DiTs, the forward pass on the merged weights is the
 * forward pass on Python's, two LoRAs at once, scale 0 changes nothing,
 * ragged tiles on two threads match a plain loop, and the bad files are
 * refused with a message saying why (no key matches, another model's
 * shapes, half a pair, not a LoRA, a truncated or garbage file, no file)
 * without touching the weights. Then the public API: vdit_model_load with
 * loras on a tiny model folder.
 *
 *   test_lora LORA_DIR DIT.safetensors IO_DIR [TINY_MODEL TINY_LORA_DIR]
 *
 * LORA_DIR and TINY_LORA_DIR are make_lora.py's output for DIT and for the
 * tiny model's DiT; IO_DIR holds io.safetensors (x, t, context). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "dit/dit.h"
#include "loader/st_writer.h"
#include "pipeline/pipeline.h"
#include "pipeline/wan/wan.h"
#include "t.h"
#include "vdit/vdit.h"

static const char *dir, *dit_path, *io_dir;

static int exists(const char *p)
{
    return access(p, R_OK) == 0;
}

static vd_ckpt *open_base(const char *path, vd_log *lg)
{
    vd_ckpt *ck = NULL;
    int ret = vd_ckpt_open(path, lg, &ck);
    if (!ret)
        ret = vd_dit_canonicalize(ck, lg);
    T_CHECK(!ret, "%s: %s", path, lg->msg);
    if (ret)
        vd_ckpt_free(&ck);
    return ck;
}

static size_t tensor_bytes(const vt_tensor *t)
{
    return (size_t)vt_nelem(t) * vt_dtype_size(t->dtype);
}

/* Forward pass of the DiT on ck (x, t, context of io.safetensors). */
static float *forward(const vd_ckpt *ck, vk_ctx *kc, size_t *n)
{
    char p[1024];
    vd_log lg = { 0 };
    snprintf(p, sizeof(p), "%s/io.safetensors", io_dir);
    vd_ckpt *io = NULL;
    vd_dit *d = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cd = NULL;
    float *out = NULL, *x = NULL, *ctx = NULL, *t = NULL;
    int ret = vd_ckpt_open(p, &lg, &io);
    if (!ret)
        ret = vd_dit_load_ex(ck, 16, 4, &lg, &d);
    if (!ret && !(r = vd_dit_run_new(d, kc)))
        ret = VDIT_ERR_NOMEM;
    const vt_tensor *xt = io ? vd_ckpt_find(io, "x") : NULL, *ct = io ? vd_ckpt_find(io, "context") : NULL;
    if (!ret && (!xt || !ct))
        ret = VDIT_ERR_MISSING;
    if (!ret) {
        x = vd_tensor_f32(xt);
        ctx = vd_tensor_f32(ct);
        t = vd_tensor_f32(vd_ckpt_find(io, "t"));
        ret = vd_dit_cond_new(r, ctx, ct->shape[0], NULL, 0, &cd);
    }
    if (!ret) {
        *n = (size_t)vt_nelem(xt);
        out = vd_malloc(*n * sizeof(float));
        ret = vd_dit_forward(r, x, NULL, xt->shape[1], xt->shape[2], xt->shape[3], t[0], cd, out);
    }
    T_CHECK(!ret, "forward: %s", lg.msg);
    if (ret) {
        vd_free(out);
        out = NULL;
    }
    vd_free(x);
    vd_free(ctx);
    vd_free(t);
    vd_dit_cond_free(&cd);
    vd_dit_run_free(&r);
    vd_dit_free(&d);
    vd_ckpt_free(&io);
    return out;
}

typedef struct lcase {
    const char *name, *base; /* base: NULL = the DiT given */
    const char *files[2];
    float scales[2];
    int forward;
} lcase;

static const lcase cases[] = {
    { "kohya", NULL, { "kohya.safetensors" }, { 1.0f }, 1 },
    { "comfy", NULL, { "comfy.safetensors" }, { 0.8f }, 1 },
    { "peft_diffusers", NULL, { "peft_diffusers.safetensors" }, { 1.0f }, 0 },
    { "peft_original", NULL, { "peft_original.safetensors" }, { -0.5f }, 0 },
    { "longlive", NULL, { "longlive.pth" }, { 1.0f }, 0 },
    { "two", NULL, { "kohya.safetensors", "comfy.safetensors" }, { 0.5f, -1.25f }, 1 },
    { "comfy_bf16", "dit_bf16.safetensors", { "comfy.safetensors" }, { 1.0f }, 1 },
    { "kohya_fp8", "dit_fp8.safetensors", { "kohya.safetensors" }, { 1.0f }, 1 },
};

static void run_case(const lcase *c, vk_ctx *kc)
{
    char base[1024], ref[1024], paths[2][1024];
    vd_log lg = { 0 };
    if (c->base)
        snprintf(base, sizeof(base), "%s/%s", dir, c->base);
    else
        snprintf(base, sizeof(base), "%s", dit_path);
    snprintf(ref, sizeof(ref), "%s/ref_%s.safetensors", dir, c->name);
    vdit_lora l[2];
    int n = 0;
    for (; n < 2 && c->files[n]; n++) {
        snprintf(paths[n], sizeof(paths[n]), "%s/%s", dir, c->files[n]);
        l[n].path = paths[n];
        l[n].scale = c->scales[n];
    }
    if (!exists(paths[0]) || !exists(ref)) {
        printf("%s: skipped (no %s: make_lora.py without torch?)\n", c->name, paths[0]);
        return;
    }
    vd_ckpt *ck = open_base(base, &lg), *orig = open_base(base, &lg), *rf = NULL;
    T_CHECK(!vd_ckpt_open(ref, &lg, &rf), "%s", lg.msg);
    if (!ck || !orig || !rf)
        goto done;
    int ret = vd_dit_merge_loras(ck, l, n, 2, &lg);
    T_CHECK(!ret, "%s: merge: %s", c->name, lg.msg);
    if (ret)
        goto done;
    /* every weight a LoRA changes: Python's bits */
    size_t n_diff = 0, n_ref = vd_ckpt_count(rf);
    for (size_t i = 0; i < n_ref; i++) {
        const vt_tensor *r = vd_ckpt_at(rf, i), *t = vd_ckpt_find(ck, r->name);
        T_CHECK(t && t->dtype == r->dtype && vt_nelem(t) == vt_nelem(r), "%s: '%s' %s", c->name,
                r->name, t ? vt_dtype_name(t->dtype) : "missing");
        if (!t || t->dtype != r->dtype || vt_nelem(t) != vt_nelem(r))
            continue;
        if (memcmp(t->data, r->data, tensor_bytes(r))) {
            float *a = vd_tensor_f32(t), *b = vd_tensor_f32(r);
            double rel, m = t_maxabs(a, b, (size_t)vt_nelem(r), &rel);
            T_CHECK(0, "%s: '%s' differs from Python's merge: max_abs %.3g rel %.3g", c->name,
                    r->name, m, rel);
            vd_free(a);
            vd_free(b);
            n_diff++;
        }
    }
    /* every other tensor as it was */
    size_t n_same = 0;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i);
        if (vd_ckpt_find(rf, t->name))
            continue;
        const vt_tensor *o = vd_ckpt_find(orig, t->name);
        T_CHECK(o && o->dtype == t->dtype && !memcmp(o->data, t->data, tensor_bytes(o)),
                "%s: '%s' changed", c->name, t->name);
        n_same++;
    }
    printf("%s: %zu weights merged bit-exact (%zu differ), %zu untouched\n", c->name,
           n_ref - n_diff, n_diff, n_same);
    if (c->forward) {
        /* the forward pass on Python's merged weights */
        for (size_t i = 0; i < n_ref; i++) {
            const vt_tensor *r = vd_ckpt_at(rf, i);
            T_CHECK(!vd_ckpt_replace(orig, r->name, r->dtype, r->data, NULL, &lg), "%s", lg.msg);
        }
        size_t na = 0, nb = 0;
        float *a = forward(ck, kc, &na), *b = forward(orig, kc, &nb);
        T_CHECK(a && b && na == nb && !memcmp(a, b, na * sizeof(float)),
                "%s: the forward pass differs from the one on Python's merged weights", c->name);
        /* and the LoRA did change it */
        vd_ckpt *plain = open_base(base, &lg);
        size_t np = 0;
        float *p = plain ? forward(plain, kc, &np) : NULL;
        double rel = 0;
        if (a && p && np == na)
            t_maxabs(a, p, na, &rel);
        T_CHECK(rel > 1e-4, "%s: the LoRA changed the output by rel %.3g only", c->name, rel);
        printf("%s: forward equal to Python-merged weights' (rel %.3g from the plain model)\n",
               c->name, rel);
        vd_free(a);
        vd_free(b);
        vd_free(p);
        vd_ckpt_free(&plain);
    }
done:
    vd_ckpt_free(&ck);
    vd_ckpt_free(&orig);
    vd_ckpt_free(&rf);
}

/* A file that must be refused: the error, its message, the weights as they were. */
static void refused(const char *file, float scale, const char *want1, const char *want2)
{
    char p[1024];
    vd_log lg = { 0 };
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    vd_ckpt *ck = open_base(dit_path, &lg), *orig = open_base(dit_path, &lg);
    if (!ck || !orig)
        goto done;
    /* a good one first: nothing is merged when a later one is refused */
    char good[1024];
    snprintf(good, sizeof(good), "%s/kohya.safetensors", dir);
    vdit_lora l[2] = { { good, 1.0f }, { p, scale } };
    int ret = vd_dit_merge_loras(ck, l, 2, 1, &lg);
    T_CHECK(ret < 0, "%s accepted", file);
    T_CHECK(strstr(lg.msg, want1) && (!want2 || strstr(lg.msg, want2)),
            "%s: message '%s' lacks '%s' / '%s'", file, lg.msg, want1, want2 ? want2 : "");
    printf("%s refused: %s\n", file, lg.msg);
    int same = 1;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i), *o = vd_ckpt_find(orig, t->name);
        same &= o && t->dtype == o->dtype && !memcmp(t->data, o->data, tensor_bytes(o));
    }
    T_CHECK(same, "%s: weights changed by a refused merge", file);
done:
    vd_ckpt_free(&ck);
    vd_ckpt_free(&orig);
}

static int copy_part(const char *from, const char *to, double frac, int garble)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    size_t got = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!b || got != (size_t)n) {
        free(b);
        return -1;
    }
    if (garble)
        for (long i = 0; i < n; i += 7)
            b[i] ^= 0x5a;
    FILE *o = fopen(to, "wb");
    if (!o) {
        free(b);
        return -1;
    }
    fwrite(b, 1, (size_t)(n * frac), o);
    free(b);
    return fclose(o);
}

static void test_bad(void)
{
    refused("bad_nomatch.safetensors", 1.0f, "no key names a tensor", "Flux");
    refused("bad_shape.safetensors", 1.0f, "another model", "blocks.0.self_attn.q.weight");
    refused("bad_half.safetensors", 1.0f, "no up (B) matrix", "blocks.0.self_attn.q");
    /* a model checkpoint given as a LoRA */
    refused("dit_bf16.safetensors", 1.0f, "not a LoRA file", NULL);
    /* checked even at scale 0 */
    refused("bad_shape.safetensors", 0.0f, "another model", NULL);
    char from[1024], to[1024];
    snprintf(from, sizeof(from), "%s/kohya.safetensors", dir);
    snprintf(to, sizeof(to), "%s/truncated.safetensors", dir);
    T_CHECK(!copy_part(from, to, 0.6, 0), "writing %s", to);
    refused("truncated.safetensors", 1.0f, "truncated.safetensors", NULL);
    snprintf(to, sizeof(to), "%s/garbage.safetensors", dir);
    T_CHECK(!copy_part(from, to, 1.0, 1), "writing %s", to);
    refused("garbage.safetensors", 1.0f, "garbage.safetensors", NULL);
    snprintf(from, sizeof(from), "%s/longlive.pth", dir);
    if (exists(from)) {
        snprintf(to, sizeof(to), "%s/truncated.pth", dir);
        T_CHECK(!copy_part(from, to, 0.7, 0), "writing %s", to);
        refused("truncated.pth", 1.0f, "truncated.pth", NULL);
    }
    refused("no_such_file.safetensors", 1.0f, "no_such_file.safetensors", NULL);
}

static void test_scale0(void)
{
    vd_log lg = { 0 };
    char p[1024];
    snprintf(p, sizeof(p), "%s/comfy.safetensors", dir);
    vd_ckpt *ck = open_base(dit_path, &lg), *orig = open_base(dit_path, &lg);
    if (!ck || !orig)
        goto done;
    vdit_lora l = { p, 0.0f };
    T_CHECK(!vd_dit_merge_loras(ck, &l, 1, 2, &lg), "%s", lg.msg);
    int same = 1;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i), *o = vd_ckpt_find(orig, t->name);
        same &= o && t->dtype == o->dtype && !memcmp(t->data, o->data, tensor_bytes(o));
    }
    T_CHECK(same, "scale 0 changed the weights");
done:
    vd_ckpt_free(&ck);
    vd_ckpt_free(&orig);
}

/* vdit_model_load with loras on a model folder. */
static void test_api(const char *tiny, const char *tdir)
{
    char good[1024], bad[1024], ref[1024];
    snprintf(good, sizeof(good), "%s/kohya.safetensors", tdir);
    snprintf(bad, sizeof(bad), "%s/bad_nomatch.safetensors", tdir);
    snprintf(ref, sizeof(ref), "%s/ref_kohya.safetensors", tdir);
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = 2;
    T_CHECK(mp.loras == NULL && mp.n_loras == 0, "LoRA defaults");
    vdit_lora l = { good, 1.0f };
    mp.loras = &l;
    mp.n_loras = 1;
    vdit_model *m = NULL;
    T_CHECK(!vdit_model_load(tiny, &mp, &m) && m, "load with a LoRA: %s", mp.error);
    vd_ckpt *rf = NULL;
    vd_log lg = { 0 };
    T_CHECK(!vd_ckpt_open(ref, &lg, &rf), "%s", lg.msg);
    if (m && rf) {
        const vd_ckpt *ck = vd_wan_parts_of(m)->ck_dit;
        size_t bad_n = 0;
        for (size_t i = 0; i < vd_ckpt_count(rf); i++) {
            const vt_tensor *r = vd_ckpt_at(rf, i), *t = vd_ckpt_find(ck, r->name);
            bad_n += !t || t->dtype != r->dtype || memcmp(t->data, r->data, tensor_bytes(r));
        }
        T_CHECK(!bad_n && vd_ckpt_count(rf) > 0, "%zu of the model's merged weights differ", bad_n);
        vdit_ctx_params cp;
        vdit_ctx_params_default(&cp);
        cp.n_threads = 1;
        vdit_ctx *c = NULL;
        T_CHECK(!vdit_ctx_init(m, &cp, &c), "ctx");
        vdit_ctx_free(&c);
    }
    vd_ckpt_free(&rf);
    vdit_model_free(&m);
    l.path = bad;
    T_CHECK(vdit_model_load(tiny, &mp, &m) == VDIT_ERR_FORMAT && !m &&
                strstr(mp.error, "no key names a tensor"),
            "a LoRA for another architecture: '%s'", mp.error);
    mp.n_loras = -1;
    T_CHECK(vdit_model_load(tiny, &mp, &m) == VDIT_ERR_INVALID_ARG && strstr(mp.error, "n_loras"),
            "n_loras -1: '%s'", mp.error);
    mp.n_loras = 1;
    l.path = NULL;
    T_CHECK(vdit_model_load(tiny, &mp, &m) == VDIT_ERR_INVALID_ARG, "no path: '%s'", mp.error);
    l.path = good;
    l.scale = NAN;
    T_CHECK(vdit_model_load(tiny, &mp, &m) == VDIT_ERR_INVALID_ARG, "NaN scale: '%s'", mp.error);
}

/* Shapes that do not fill the merge's tiles (rows not a multiple of 4,
 * columns over several 256-wide tiles, the last ragged) on two threads, against a
 * plain fp64 loop in the same order. */
static void test_tiles(void)
{
    enum { R = 37, C = 1000, K = 29 }; /* 1.07 M products: threads */
    static float w[R * C], up[R * K], dn[K * C], ref[R * C];
    t_rng g = { 7 };
    t_fill(&g, w, R * C, 1.0f);
    t_fill(&g, up, R * K, 0.5f);
    t_fill(&g, dn, K * C, 0.5f);
    const float scale = 0.3f, alpha = 5.0f;
    const double c = (double)scale * ((double)alpha / K);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)up[i * K + k] * (double)dn[k * C + j];
            volatile double t = c * acc; /* rounded before the sum */
            ref[i * C + j] = (float)((double)w[i * C + j] + t);
        }
    char p[1024];
    snprintf(p, sizeof(p), "%s/tiles.safetensors", dir);
    st_tensor ts[] = {
        { "blocks.0.ffn.0.lora_down.weight", "F32", 2, { K, C }, dn, sizeof(dn) },
        { "blocks.0.ffn.0.lora_up.weight", "F32", 2, { R, K }, up, sizeof(up) },
        { "blocks.0.ffn.0.alpha", "F32", 0, { 0 }, &alpha, sizeof(alpha) },
    };
    T_CHECK(!st_write(p, ts, 3), "writing %s", p);
    vd_log lg = { 0 };
    vd_ckpt *ck = vd_ckpt_new();
    int64_t sh[2] = { R, C };
    T_CHECK(ck && !vd_ckpt_add(ck, "blocks.0.ffn.0.weight", VT_F32, 2, sh, w, NULL, "mem", &lg),
            "%s", lg.msg);
    vdit_lora l = { p, scale };
    T_CHECK(!vd_dit_merge_loras(ck, &l, 1, 2, &lg), "%s", lg.msg);
    const vt_tensor *t = vd_ckpt_find(ck, "blocks.0.ffn.0.weight");
    T_CHECK(t && t->data != (const void *)w && !memcmp(t->data, ref, sizeof(ref)),
            "a 37 x 1000 weight differs from the plain loop's merge");
    vd_ckpt_free(&ck);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test_lora LORA_DIR DIT.safetensors IO_DIR [TINY_MODEL TINY_LORA_DIR]\n");
        return 2;
    }
    dir = argv[1];
    dit_path = argv[2];
    io_dir = argv[3];
    vd_log lg = { 0 };
    vk_ctx *kc = vk_ctx_new(2, 0, &lg);
    T_CHECK(kc, "vk_ctx_new: %s", lg.msg);
    for (size_t i = 0; kc && i < VD_ARRAY_SIZE(cases); i++)
        run_case(&cases[i], kc);
    test_scale0();
    test_tiles();
    test_bad();
    if (argc >= 6)
        test_api(argv[4], argv[5]);
    vk_ctx_free(&kc);
    T_DONE();
}
