/* DiT tests: the pieces (patches, 3-axis RoPE, modulation) against naive
 * versions, and loading: the conformance dit_tiny weights rewritten by this
 * test in bf16, fp16 and f32 as the official release (3 shards + index,
 * original names), the diffusers layout (2 shards + index) and a prefixed
 * single file (ComfyUI), and in fp8_e4m3 (scaled); broken files, odd
 * latent grids, buffer reuse, guidance batches and the step cache.
 *
 * Wan2.2 TI2V (dit_ti2v_tiny: in_dim 48, per-token timesteps): the same
 * layouts and dtypes, each checked for the configuration and the output,
 * and the per-token path (test_tok).
 *
 * usage: test_dit DIT_TINY_DIR TMP_DIR [DIT_TI2V_TINY_DIR] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "dit/dit.h"
#include "t.h"

/* ---- pieces ------------------------------------------------------------ */

static void test_patches(void)
{
    const int64_t patches[2][3] = { { 1, 2, 2 }, { 2, 2, 3 } };
    for (int pi = 0; pi < 2; pi++) {
        const int64_t *p = patches[pi];
        int64_t c = 3, f = 2 * p[0], h = 3 * p[1], w = 2 * p[2];
        int64_t n = c * f * h * w;
        float *x = malloc(sizeof(float) * n), *tok = malloc(sizeof(float) * n),
              *back = malloc(sizeof(float) * n);
        t_rng r = { 11 };
        t_fill(&r, x, n, 1);
        for (int cl = 0; cl < 2; cl++) {
            vd_dit_patchify(x, c, f, h, w, p, cl, tok);
            /* every element where the documented formula puts it */
            int bad = 0;
            int64_t gh = h / p[1], gw = w / p[2], pv = p[0] * p[1] * p[2];
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t ff = 0; ff < f; ff++)
                    for (int64_t hh = 0; hh < h; hh++)
                        for (int64_t ww = 0; ww < w; ww++) {
                            int64_t l = ((ff / p[0]) * gh + hh / p[1]) * gw + ww / p[2];
                            int64_t a = ff % p[0], b = hh % p[1], e = ww % p[2];
                            int64_t j = cl ? ((a * p[1] + b) * p[2] + e) * c + ch
                                           : ((ch * p[0] + a) * p[1] + b) * p[2] + e;
                            bad += tok[l * c * pv + j] != x[((ch * f + ff) * h + hh) * w + ww];
                        }
            T_CHECK(bad == 0, "patchify (patch %d, chan_last %d): %d misplaced", pi, cl, bad);
            memset(back, 0, sizeof(float) * n);
            vd_dit_unpatchify(tok, c, f, h, w, p, cl, back);
            T_CHECK(!memcmp(back, x, sizeof(float) * n), "unpatchify(patchify(x)) != x");
        }
        free(x);
        free(tok);
        free(back);
    }
}

/* RoPE straight from the README: pair i of a head is rotated by pos * theta_j
 * where the first c - 2(c/3) pairs take the frame index (n = d - 4(d/6)),
 * the next c/3 the row and the last c/3 the column (n = 2(d/6)). */
static void naive_rope(double *x, int64_t f, int64_t h, int64_t w, int64_t heads, int64_t d)
{
    int64_t c = d / 2, nr = c / 3, nf = c - 2 * nr;
    double n_f = (double)(d - 4 * (d / 6)), n_r = (double)(2 * (d / 6));
    for (int64_t tf = 0; tf < f; tf++)
        for (int64_t th = 0; th < h; th++)
            for (int64_t tw = 0; tw < w; tw++) {
                double *row = x + ((tf * h + th) * w + tw) * heads * d;
                for (int64_t hd = 0; hd < heads; hd++)
                    for (int64_t i = 0; i < c; i++) {
                        double ang;
                        if (i < nf)
                            ang = (double)tf * pow(10000.0, -2.0 * (double)i / n_f);
                        else if (i < nf + nr)
                            ang = (double)th * pow(10000.0, -2.0 * (double)(i - nf) / n_r);
                        else
                            ang = (double)tw * pow(10000.0, -2.0 * (double)(i - nf - nr) / n_r);
                        double *p = row + hd * d + 2 * i, a = p[0], b = p[1];
                        p[0] = a * cos(ang) - b * sin(ang);
                        p[1] = a * sin(ang) + b * cos(ang);
                    }
            }
}

static void test_rope(vk_ctx *kc)
{
    const int64_t cases[][5] = { { 3, 4, 5, 2, 16 }, { 2, 3, 7, 1, 128 }, { 1, 1, 6, 3, 20 },
                                 { 5, 2, 1, 2, 32 } };
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        int64_t f = cases[ci][0], h = cases[ci][1], w = cases[ci][2], heads = cases[ci][3],
                d = cases[ci][4], L = f * h * w, n = L * heads * d;
        float *x = malloc(sizeof(float) * n);
        double *xd = malloc(sizeof(double) * n);
        t_rng r = { 5 + ci };
        t_fill(&r, x, n, 2);
        for (int64_t i = 0; i < n; i++)
            xd[i] = x[i];
        float *cs = vk_rope3d_table(f, h, w, d, 10000.0, 0, 0, 0);
        T_CHECK(cs != NULL, "rope table");
        if (!cs)
            return;
        kc->f->rope(kc, x, L, heads, d, heads * d, cs);
        naive_rope(xd, f, h, w, heads, d);
        double m = 0;
        for (int64_t i = 0; i < n; i++)
            m = fmax(m, fabs(x[i] - xd[i]));
        T_CHECK(m < 2e-5, "rope %lldx%lldx%lld d=%lld vs naive: max_abs %g", (long long)f,
                (long long)h, (long long)w, (long long)d, m);
        vd_free(cs);
        free(x);
        free(xd);
    }
}

/* adaLN: LN(x)(1 + scale) + shift, as the model computes it (one LayerNorm
 * with weight 1 + scale, bias shift) and as layernorm + modulate. */
static void test_modulation(vk_ctx *kc)
{
    int64_t rows = 7, dim = 96;
    float *x = malloc(sizeof(float) * rows * dim), *a = malloc(sizeof(float) * rows * dim),
          *b = malloc(sizeof(float) * rows * dim), sh[96], sc[96], w1[96];
    t_rng r = { 77 };
    t_fill(&r, x, rows * dim, 3);
    t_fill(&r, sh, dim, 0.5f);
    t_fill(&r, sc, dim, 0.5f);
    for (int i = 0; i < dim; i++)
        w1[i] = 1.0f + sc[i];
    kc->f->layernorm(kc, x, a, rows, dim, w1, sh, 1e-6f);
    kc->f->layernorm(kc, x, b, rows, dim, NULL, NULL, 1e-6f);
    kc->f->modulate(kc, b, rows, dim, sh, sc);
    double ma = 0, mb = 0;
    for (int64_t i = 0; i < rows; i++) {
        double mu = 0, var = 0;
        for (int64_t j = 0; j < dim; j++)
            mu += x[i * dim + j];
        mu /= dim;
        for (int64_t j = 0; j < dim; j++)
            var += (x[i * dim + j] - mu) * (x[i * dim + j] - mu);
        var /= dim;
        for (int64_t j = 0; j < dim; j++) {
            double want = (x[i * dim + j] - mu) / sqrt(var + 1e-6) * (1.0 + sc[j]) + sh[j];
            ma = fmax(ma, fabs(a[i * dim + j] - want));
            mb = fmax(mb, fabs(b[i * dim + j] - want));
        }
    }
    T_CHECK(ma < 1e-5, "fused LayerNorm modulation vs naive: %g", ma);
    T_CHECK(mb < 1e-5, "layernorm + modulate vs naive: %g", mb);
    free(x);
    free(a);
    free(b);
}

/* ---- files ------------------------------------------------------------- */

typedef struct wt {
    const char *name;
    vt_dtype dtype;
    int ndim;
    int64_t shape[VT_MAX_DIMS];
    const void *data;
} wt;

static int write_st(const char *path, const wt *ts, int n)
{
    size_t cap = 256 + (size_t)n * 256, len = 0, off = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t nb = vt_dtype_size(ts[i].dtype);
        for (int k = 0; k < ts[i].ndim; k++)
            nb *= (size_t)ts[i].shape[k];
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", ts[i].name, vt_dtype_name(ts[i].dtype));
        for (int k = 0; k < ts[i].ndim; k++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", k ? "," : "",
                                    (long long)ts[i].shape[k]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while ((8 + len) % 8)
        h[len++] = ' ';
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(h);
        return -1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, fp);
    fwrite(h, 1, len, fp);
    for (int i = 0; i < n; i++) {
        size_t nb = vt_dtype_size(ts[i].dtype);
        for (int k = 0; k < ts[i].ndim; k++)
            nb *= (size_t)ts[i].shape[k];
        fwrite(ts[i].data, 1, nb, fp);
    }
    free(h);
    return fclose(fp);
}

/* original name -> diffusers name, written independently of dit_keys.c */
static void to_diffusers(const char *n, char *out, size_t sz)
{
    static const char *const map[][2] = {
        { "time_embedding.0.", "condition_embedder.time_embedder.linear_1." },
        { "time_embedding.2.", "condition_embedder.time_embedder.linear_2." },
        { "time_projection.1.", "condition_embedder.time_proj." },
        { "text_embedding.0.", "condition_embedder.text_embedder.linear_1." },
        { "text_embedding.2.", "condition_embedder.text_embedder.linear_2." },
        { "img_emb.proj.0.", "condition_embedder.image_embedder.norm1." },
        { "img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj." },
        { "img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2." },
        { "img_emb.proj.4.", "condition_embedder.image_embedder.norm2." },
        { "head.modulation", "scale_shift_table" },
        { "head.head.", "proj_out." },
        { ".modulation", ".scale_shift_table" },
        { ".self_attn.o.", ".attn1.to_out.0." },
        { ".cross_attn.o.", ".attn2.to_out.0." },
        { ".self_attn.norm_", ".attn1.norm_" },
        { ".cross_attn.norm_k_img.", ".attn2.norm_added_k." },
        { ".cross_attn.norm_", ".attn2.norm_" },
        { ".cross_attn.k_img.", ".attn2.add_k_proj." },
        { ".cross_attn.v_img.", ".attn2.add_v_proj." },
        { ".self_attn.", ".attn1.to_" },
        { ".cross_attn.", ".attn2.to_" },
        { ".norm3.", ".norm2." },
        { ".ffn.0.", ".ffn.net.0.proj." },
        { ".ffn.2.", ".ffn.net.2." },
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const char *p = strstr(n, map[i][0]);
        if (p) {
            snprintf(out, sz, "%.*s%s%s", (int)(p - n), n, map[i][1], p + strlen(map[i][0]));
            return;
        }
    }
    snprintf(out, sz, "%s", n);
}

typedef struct model_files {
    int n;
    wt *t;
    char **names;
    void **bufs;
} model_files;

/* All tensors of ck converted to `dt` (F32 means: rounded through `round_to`
 * first, kept as F32), with names from `rename` (or unchanged). */
static model_files convert(const vd_ckpt *ck, vt_dtype dt, vt_dtype round_to, int diffusers,
                           const char *prefix)
{
    model_files m = { 0 };
    m.n = (int)vd_ckpt_count(ck);
    m.t = calloc((size_t)m.n, sizeof(*m.t));
    m.names = calloc((size_t)m.n, sizeof(char *));
    m.bufs = calloc((size_t)m.n, sizeof(void *));
    for (int i = 0; i < m.n; i++) {
        const vt_tensor *t = vd_ckpt_at(ck, (size_t)i);
        int64_t ne = vt_nelem(t);
        float *f = vd_tensor_f32(t);
        char nm[256], full[300];
        if (diffusers)
            to_diffusers(t->name, nm, sizeof(nm));
        else
            snprintf(nm, sizeof(nm), "%s", t->name);
        snprintf(full, sizeof(full), "%s%s", prefix ? prefix : "", nm);
        m.names[i] = strdup(full);
        uint16_t *h = malloc(2 * (size_t)ne);
        for (int64_t k = 0; k < ne; k++) {
            if (round_to == VT_F16)
                h[k] = vt_f32_to_f16(f[k]);
            else if (round_to == VT_BF16)
                h[k] = vt_f32_to_bf16(f[k]);
        }
        if (dt == VT_F32) {
            if (round_to != VT_F32)
                for (int64_t k = 0; k < ne; k++)
                    f[k] = round_to == VT_F16 ? vt_f16_to_f32(h[k]) : vt_bf16_to_f32(h[k]);
            m.bufs[i] = f;
            free(h);
        } else {
            m.bufs[i] = h;
            vd_free(f);
        }
        m.t[i].name = m.names[i];
        m.t[i].dtype = dt;
        m.t[i].ndim = t->ndim;
        memcpy(m.t[i].shape, t->shape, sizeof(t->shape));
        m.t[i].data = m.bufs[i];
    }
    return m;
}

static void free_files(model_files *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->names[i]);
        if (m->t[i].dtype == VT_F32)
            vd_free(m->bufs[i]);
        else
            free(m->bufs[i]);
    }
    free(m->t);
    free(m->names);
    free(m->bufs);
}

/* A sharded checkpoint in folder `dir` (made if missing): n_shards files
 * "<stem>-0000N-of-0000M.safetensors" and "<stem>.safetensors.index.json",
 * as both the official release (diffusion_pytorch_model, original names)
 * and diffusers (transformer/, its own names) lay them out. */
static int write_sharded(const char *dir, const char *stem, int n_shards, const model_files *m)
{
    char p[8192];
    if (n_shards < 1 || n_shards > 8 || (mkdir(dir, 0755) && errno != EEXIST))
        return -1;
    char shard[8][256];
    int first[9];
    for (int k = 0; k <= n_shards; k++)
        first[k] = m->n * k / n_shards;
    for (int k = 0; k < n_shards; k++) {
        snprintf(shard[k], sizeof(shard[k]), "%s-%05d-of-%05d.safetensors", stem, k + 1,
                 n_shards);
        snprintf(p, sizeof(p), "%s/%s", dir, shard[k]);
        if (write_st(p, m->t + first[k], first[k + 1] - first[k]))
            return -1;
    }
    snprintf(p, sizeof(p), "%s/%s.safetensors.index.json", dir, stem);
    FILE *fp = fopen(p, "w");
    if (!fp)
        return -1;
    fprintf(fp, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int k = 0; k < n_shards; k++)
        for (int i = first[k]; i < first[k + 1]; i++)
            fprintf(fp, "%s\"%s\":\"%s\"", i ? "," : "", m->t[i].name, shard[k]);
    fprintf(fp, "}}\n");
    return fclose(fp);
}

/* Diffusers folder: transformer/ with 2 shards and the index. */
static int write_diffusers(const char *dir, const model_files *m)
{
    char p[4096];
    if (mkdir(dir, 0755) && errno != EEXIST)
        return -1;
    snprintf(p, sizeof(p), "%s/transformer", dir);
    return write_sharded(p, "diffusion_pytorch_model", 2, m);
}

/* A folder's inputs; t_tok: one timestep per token (Wan2.2), else NULL and
 * the model gets t[0]. c: latent channels (= the model's out_dim). */
typedef struct io_in {
    float *x, *t, *ctx, *out;
    const float *t_tok;
    int64_t n_ctx, c, f, h, w;
} io_in;

/* The configuration of the last model run_model loaded. */
static vd_dit_config last_cfg;

/* Loads `path` as users do (open, canonicalize, load) and runs x/t/context.
 * Returns 0 and fills out (caller frees) or the error with lg.msg set. */
static int run_model(const char *path, vk_ctx *kc, const io_in *io, int64_t f, int64_t h,
                     int64_t w, const float *x, float **out, vd_log *lg)
{
    vd_ckpt *ck = NULL;
    vd_dit *d = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cd = NULL;
    *out = NULL;
    int ret = vd_ckpt_open(path, lg, &ck);
    if (!ret)
        ret = vd_dit_canonicalize(ck, lg);
    if (!ret)
        ret = vd_dit_load_ex(ck, 16, 4, lg, &d);
    if (!ret && !(r = vd_dit_run_new(d, kc)))
        ret = VDIT_ERR_NOMEM;
    if (!ret)
        ret = vd_dit_cond_new(r, io->ctx, io->n_ctx, NULL, 0, &cd);
    if (!ret) {
        last_cfg = *vd_dit_get_config(d);
        *out = vd_malloc(sizeof(float) * io->c * f * h * w);
        ret = vd_dit_forward_tok(r, x, NULL, f, h, w, io->t[0], io->t_tok, cd, *out);
    }
    if (ret) {
        vd_free(*out);
        *out = NULL;
    }
    vd_dit_cond_free(&cd);
    vd_dit_run_free(&r);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
    return ret;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double rel;
    t_maxabs(a, b, n, &rel);
    return rel;
}

static void test_layouts(const char *tiny, const char *tmp, vk_ctx *kc, const io_in *io)
{
    char wpath[1024], p[4096], p2[2048];
    vd_log lg = { 0 };
    snprintf(wpath, sizeof(wpath), "%s/weights.safetensors", tiny);
    size_t n = (size_t)(io->c * io->f * io->h * io->w);
    float *ref = NULL;
    int ret = run_model(wpath, kc, io, io->f, io->h, io->w, io->x, &ref, &lg);
    T_CHECK(!ret, "original f32 load: %s", lg.msg);
    if (ret)
        return;
    double rel;
    double ma = t_maxabs(ref, io->out, n, &rel);
    T_CHECK(ma < 1e-4 && rel < 3e-5, "f32 forward vs stored out: %g (%g)", ma, rel);

    vd_dit_config want = last_cfg;

    vd_ckpt *ck = NULL;
    T_CHECK(!vd_ckpt_open(wpath, &lg, &ck), "%s", lg.msg);
    if (!ck)
        return;
    const struct {
        vt_dtype dt;
        const char *tag;
        double tol;
    } dts[] = { { VT_BF16, "bf16", 3e-2 }, { VT_F16, "f16", 4e-3 }, { VT_F32, "f32", 1e-6 } };
    for (int k = 0; k < 3; k++) {
        /* the same rounded values in f32 with original names: the exact
         * expectation for the half-precision files */
        model_files mr = convert(ck, VT_F32, dts[k].dt, 0, NULL);
        snprintf(p, sizeof(p), "%s/rounded_%s.safetensors", tmp, dts[k].tag);
        T_CHECK(!write_st(p, mr.t, mr.n), "write %s", p);
        free_files(&mr);
        float *exact = NULL, *got = NULL;
        ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &exact, &lg);
        T_CHECK(!ret, "%s: %s", p, lg.msg);

        /* every layout: the same configuration, the same output */
        const char *layout[4] = { "diffusers (2 shards + index)", "diffusers index path",
                                  "official (3 shards + index)", "prefixed single file" };
        char paths[4][4096];
        model_files md = convert(ck, dts[k].dt, dts[k].dt, 1, NULL);
        snprintf(p2, sizeof(p2), "%s/diffusers_%s", tmp, dts[k].tag);
        T_CHECK(!write_diffusers(p2, &md), "write %s", p2);
        free_files(&md);
        snprintf(paths[0], sizeof(paths[0]), "%s/transformer", p2);
        snprintf(paths[1], sizeof(paths[1]),
                 "%s/transformer/diffusion_pytorch_model.safetensors.index.json", p2);
        /* the official release: original names, shards + index in one folder */
        model_files mo = convert(ck, dts[k].dt, dts[k].dt, 0, NULL);
        snprintf(paths[2], sizeof(paths[2]), "%s/official_%s", tmp, dts[k].tag);
        T_CHECK(!write_sharded(paths[2], "diffusion_pytorch_model", 3, &mo), "write %s",
                paths[2]);
        free_files(&mo);
        /* repackaged single file with a prefix (ComfyUI) */
        model_files mp = convert(ck, dts[k].dt, dts[k].dt, 0, "model.diffusion_model.");
        snprintf(paths[3], sizeof(paths[3]), "%s/prefixed_%s.safetensors", tmp, dts[k].tag);
        T_CHECK(!write_st(paths[3], mp.t, mp.n), "write %s", paths[3]);
        free_files(&mp);
        for (int li = 0; li < 4; li++) {
            memset(&last_cfg, 0, sizeof(last_cfg));
            ret = run_model(paths[li], kc, io, io->f, io->h, io->w, io->x, &got, &lg);
            T_CHECK(!ret, "%s %s: %s", layout[li], dts[k].tag, lg.msg);
            T_CHECK(last_cfg.dim == want.dim && last_cfg.in_dim == want.in_dim &&
                        last_cfg.out_dim == want.out_dim && last_cfg.ffn_dim == want.ffn_dim &&
                        last_cfg.freq_dim == want.freq_dim && last_cfg.text_dim == want.text_dim &&
                        last_cfg.n_heads == want.n_heads && last_cfg.n_layers == want.n_layers &&
                        last_cfg.i2v == want.i2v && last_cfg.qk_norm == want.qk_norm &&
                        last_cfg.cross_attn_norm == want.cross_attn_norm,
                    "%s %s: configuration differs (in_dim %lld, dim %lld, %lld layers)",
                    layout[li], dts[k].tag, (long long)last_cfg.in_dim, (long long)last_cfg.dim,
                    (long long)last_cfg.n_layers);
            if (got && exact) {
                T_CHECK(rel_err(got, exact, n) < 1e-5, "%s %s vs same values in f32: rel %g",
                        layout[li], dts[k].tag, rel_err(got, exact, n));
                T_CHECK(rel_err(got, ref, n) < dts[k].tol, "%s %s vs f32 original: rel %g",
                        layout[li], dts[k].tag, rel_err(got, ref, n));
                if (li == 0 || li == 2)
                    printf("%s %s: rel %.2e vs f32 weights, %.2e vs the same values in f32\n",
                           layout[li], dts[k].tag, rel_err(got, ref, n), rel_err(got, exact, n));
            }
            vd_free(got);
            got = NULL;
        }
        vd_free(exact);
    }

    /* broken files: every error names the file and the tensor */
    model_files mf = convert(ck, VT_F32, VT_F32, 0, NULL);
    int64_t dim = 64;
    /* missing tensor */
    int miss = -1;
    for (int i = 0; i < mf.n; i++)
        if (!strcmp(mf.t[i].name, "blocks.1.cross_attn.v.bias"))
            miss = i;
    T_CHECK(miss >= 0, "blocks.1.cross_attn.v.bias in dit_tiny");
    if (miss >= 0) {
        wt save = mf.t[miss];
        mf.t[miss] = mf.t[mf.n - 1];
        snprintf(p, sizeof(p), "%s/missing.safetensors", tmp);
        T_CHECK(!write_st(p, mf.t, mf.n - 1), "write %s", p);
        mf.t[miss] = save;
        float *got = NULL;
        ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
        T_CHECK(ret == VDIT_ERR_MISSING && strstr(lg.msg, "missing.safetensors") &&
                    strstr(lg.msg, "blocks.1.cross_attn.v.bias"),
                "missing tensor: %d '%s'", ret, lg.msg);
        vd_free(got);
    }
    /* wrong shape */
    float *wrong = calloc((size_t)(dim * (dim + 1)), sizeof(float));
    for (int i = 0; i < mf.n; i++)
        if (!strcmp(mf.t[i].name, "blocks.1.self_attn.k.weight")) {
            wt save = mf.t[i];
            mf.t[i].shape[1] = dim + 1;
            mf.t[i].data = wrong;
            snprintf(p, sizeof(p), "%s/wrongshape.safetensors", tmp);
            T_CHECK(!write_st(p, mf.t, mf.n), "write %s", p);
            mf.t[i] = save;
        }
    float *got = NULL;
    ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
    T_CHECK(ret == VDIT_ERR_FORMAT && strstr(lg.msg, "wrongshape.safetensors") &&
                strstr(lg.msg, "blocks.1.self_attn.k.weight"),
            "wrong shape: %d '%s'", ret, lg.msg);
    vd_free(got);
    free(wrong);
    free_files(&mf);
    vd_ckpt_free(&ck);

    /* truncated and corrupted copies of the original file */
    FILE *fp = fopen(wpath, "rb");
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)sz);
    T_CHECK(fread(buf, 1, (size_t)sz, fp) == (size_t)sz, "read %s", wpath);
    fclose(fp);
    snprintf(p, sizeof(p), "%s/truncated.safetensors", tmp);
    fp = fopen(p, "wb");
    fwrite(buf, 1, (size_t)sz * 2 / 3, fp);
    fclose(fp);
    ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
    T_CHECK(ret == VDIT_ERR_FORMAT && strstr(lg.msg, "truncated.safetensors") &&
                strstr(lg.msg, "tensor '"),
            "truncated: %d '%s'", ret, lg.msg);
    vd_free(got);
    snprintf(p, sizeof(p), "%s/corrupt.safetensors", tmp);
    memcpy(buf + 40, "\x01\xff\"]]", 5);
    fp = fopen(p, "wb");
    fwrite(buf, 1, (size_t)sz, fp);
    fclose(fp);
    ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
    T_CHECK(ret < 0 && strstr(lg.msg, "corrupt.safetensors"), "corrupt: %d '%s'", ret, lg.msg);
    vd_free(got);
    free(buf);
    vd_free(ref);
}

/* e4m3fn from its definition (sign, 4 exponent bits of bias 7, 3 mantissa
 * bits; exponent 0 subnormal; 0x7f / 0xff NaN), independent of the loader. */
static double e4m3_value(int code)
{
    int e = (code >> 3) & 15, m = code & 7;
    double v = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);
    return code & 0x80 ? -v : v;
}

static uint8_t e4m3_nearest(double x)
{
    int best = 0;
    for (int c = 0; c < 256; c++)
        if ((c & 0x7f) != 0x7f && fabs(e4m3_value(c) - x) < fabs(e4m3_value(best) - x))
            best = c;
    return (uint8_t)best;
}

/* The fp8 repackagings of the DiT ("fp8_e4m3fn": plain casts; "fp8_scaled":
 * a scale per weight): every 2-D+ weight of the blocks and the patch
 * embedding stored as F8_E4M3 under "model.diffusion_model.", with a
 * per-row scale (block 0), a per-tensor scale (other blocks) or none (patch
 * embedding), next to the "scaled_fp8" marker and "scale_input" tensors
 * those files have. Expected: exactly the model whose weights are the
 * decoded, scaled values rounded to bf16, written as F32. */
static void test_fp8(const char *tiny, const char *tmp, vk_ctx *kc, const io_in *io)
{
    char wpath[1024], p[2048];
    vd_log lg = { 0 };
    snprintf(wpath, sizeof(wpath), "%s/weights.safetensors", tiny);
    vd_ckpt *ck = NULL;
    T_CHECK(!vd_ckpt_open(wpath, &lg, &ck), "%s", lg.msg);
    if (!ck)
        return;
    model_files ex = convert(ck, VT_F32, VT_F32, 0, NULL);
    int cap = 3 * ex.n + 1, nq = 0;
    wt *q = calloc((size_t)cap, sizeof(*q));
    char **names = calloc((size_t)cap, sizeof(char *));
    void **bufs = calloc((size_t)cap, sizeof(void *));
    static const float one = 1.0f;
    static const uint8_t marker[1] = { 0 };
    int n8 = 0;
    for (int i = 0; i < ex.n; i++) {
        wt *t = &ex.t[i];
        size_t nl = strlen(t->name);
        int quant = t->ndim >= 2 && nl > 7 && !strcmp(t->name + nl - 7, ".weight")
                    && (!strncmp(t->name, "blocks.", 7) || !strcmp(t->name, "patch_embedding.weight"));
        char full[320];
        snprintf(full, sizeof(full), "model.diffusion_model.%s", t->name);
        names[nq] = strdup(full);
        q[nq] = *t;
        q[nq].name = names[nq];
        if (!quant) {
            nq++;
            continue;
        }
        n8++;
        float *f = (float *)t->data; /* convert's own buffer: rewritten as the expectation */
        int64_t rows = t->shape[0], cols = 1;
        for (int k = 1; k < t->ndim; k++)
            cols *= t->shape[k];
        int per_row = !strncmp(t->name, "blocks.0.", 9), none = t->name[0] == 'p';
        float *sc = malloc(sizeof(float) * (size_t)rows);
        double all = 0;
        for (int64_t r = 0; r < rows * cols; r++)
            all = fmax(all, fabs(f[r]));
        for (int64_t r = 0; r < rows; r++) {
            double m = 0;
            for (int64_t c = 0; c < cols; c++)
                m = fmax(m, fabs(f[r * cols + c]));
            sc[r] = none ? 1.0f : (float)((per_row ? m : all) / 448.0);
            if (sc[r] == 0)
                sc[r] = 1;
        }
        uint8_t *b8 = malloc((size_t)(rows * cols));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                b8[r * cols + c] = e4m3_nearest(f[r * cols + c] / sc[r]);
                f[r * cols + c] = vt_bf16_to_f32(vt_f32_to_bf16(
                    (float)e4m3_value(b8[r * cols + c]) * sc[r]));
            }
        q[nq].dtype = VT_F8_E4M3;
        q[nq].data = bufs[nq] = b8;
        nq++;
        if (!none) {
            snprintf(full, sizeof(full), "model.diffusion_model.%.*s.scale_weight", (int)(nl - 7),
                     t->name);
            names[nq] = strdup(full);
            q[nq] = (wt){ names[nq], VT_F32, per_row ? 1 : 0, { per_row ? rows : 0 }, sc };
            bufs[nq++] = sc;
            snprintf(full, sizeof(full), "model.diffusion_model.%.*s.scale_input", (int)(nl - 7),
                     t->name);
            names[nq] = strdup(full);
            q[nq] = (wt){ names[nq], VT_F32, 0, { 0 }, &one };
            nq++;
        } else {
            free(sc);
        }
    }
    names[nq] = strdup("scaled_fp8");
    q[nq] = (wt){ names[nq], VT_F8_E4M3, 1, { 1 }, marker };
    nq++;
    T_CHECK(n8 > 20, "%d fp8 weights", n8);
    snprintf(p, sizeof(p), "%s/fp8_scaled.safetensors", tmp);
    T_CHECK(!write_st(p, q, nq), "write %s", p);
    float *got = NULL, *want = NULL, *ref = NULL;
    int ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
    T_CHECK(!ret, "fp8 file: %s", lg.msg);
    snprintf(p, sizeof(p), "%s/fp8_expected.safetensors", tmp);
    T_CHECK(!write_st(p, ex.t, ex.n), "write %s", p);
    ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &want, &lg);
    T_CHECK(!ret, "fp8 expectation: %s", lg.msg);
    ret = run_model(wpath, kc, io, io->f, io->h, io->w, io->x, &ref, &lg);
    size_t n = (size_t)(io->c * io->f * io->h * io->w);
    if (got && want && ref) {
        T_CHECK(rel_err(got, want, n) < 1e-5, "fp8 vs its values in f32: rel %g",
                rel_err(got, want, n));
        T_CHECK(rel_err(got, ref, n) < 0.15, "fp8 vs f32 original: rel %g", rel_err(got, ref, n));
        printf("fp8_e4m3fn (+ scales) DiT: rel %.2e vs f32 weights, %.2e vs the same values in "
               "f32\n", rel_err(got, ref, n), rel_err(got, want, n));
    }
    vd_free(got);
    vd_free(want);
    vd_free(ref);

    /* a scale that fits neither a tensor nor its rows is named */
    for (int i = 0; i < nq; i++)
        if (!strcmp(q[i].name, "model.diffusion_model.blocks.0.ffn.2.scale_weight")) {
            q[i].shape[0] = 3;
            snprintf(p, sizeof(p), "%s/fp8_badscale.safetensors", tmp);
            T_CHECK(!write_st(p, q, nq), "write %s", p);
            ret = run_model(p, kc, io, io->f, io->h, io->w, io->x, &got, &lg);
            T_CHECK(ret == VDIT_ERR_FORMAT && strstr(lg.msg, "blocks.0.ffn.2.scale_weight")
                        && strstr(lg.msg, "3 values"),
                    "bad scale: %d '%s'", ret, lg.msg);
            vd_free(got);
            got = NULL;
        }
    for (int i = 0; i < nq; i++) {
        free(names[i]);
        free(bufs[i]);
    }
    free(q);
    free(names);
    free(bufs);
    free_files(&ex);
    vd_ckpt_free(&ck);
}

/* Odd grids: one frame, portrait, landscape, a single token; the fast
 * kernels against the reference ones; buffer reuse across grid sizes. */
/* The tiny DiT (text_len 16, 4 heads), NULL with the reason checked. */
static vd_dit *load_tiny(const char *tiny, vd_log *lg, vd_ckpt **ck)
{
    char wpath[1024];
    snprintf(wpath, sizeof(wpath), "%s/weights.safetensors", tiny);
    vd_dit *d = NULL;
    T_CHECK(!vd_ckpt_open(wpath, lg, ck) && !vd_dit_canonicalize(*ck, lg) &&
                !vd_dit_load_ex(*ck, 16, 4, lg, &d),
            "%s", lg->msg);
    if (!d)
        vd_ckpt_free(ck);
    return d;
}

static void test_grids(const char *tiny, vk_ctx *kc, vk_ctx *kr, const io_in *io)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = load_tiny(tiny, &lg, &ck);
    if (!d)
        return;
    vd_dit_run *rf = vd_dit_run_new(d, kc), *rr = vd_dit_run_new(d, kr);
    vd_dit_cond *cf = NULL, *cr = NULL;
    T_CHECK(!vd_dit_cond_new(rf, io->ctx, io->n_ctx, NULL, 0, &cf), "cond");
    T_CHECK(!vd_dit_cond_new(rr, io->ctx, io->n_ctx, NULL, 0, &cr), "cond");
    const int64_t grids[][3] = { { 1, 4, 6 }, { 2, 10, 4 }, { 1, 2, 2 }, { 3, 2, 12 }, { 3, 8, 12 } };
    float *first = NULL;
    for (size_t g = 0; g < sizeof(grids) / sizeof(grids[0]); g++) {
        int64_t f = grids[g][0], h = grids[g][1], w = grids[g][2], n = 16 * f * h * w;
        float *x = malloc(sizeof(float) * n), *of = malloc(sizeof(float) * n),
              *orf = malloc(sizeof(float) * n);
        t_rng r = { 100 + g };
        t_fill(&r, x, n, 1.5f);
        int e1 = vd_dit_forward(rf, x, NULL, f, h, w, 421.0f, cf, of);
        int e2 = vd_dit_forward(rr, x, NULL, f, h, w, 421.0f, cr, orf);
        T_CHECK(!e1 && !e2, "grid %lldx%lldx%lld: %d %d", (long long)f, (long long)h,
                (long long)w, e1, e2);
        int finite = 1;
        for (int64_t i = 0; i < n; i++)
            finite &= isfinite(of[i]);
        T_CHECK(finite, "grid %zu: non-finite output", g);
        double rel;
        double ma = t_maxabs(of, orf, (size_t)n, &rel);
        T_CHECK(ma < 1e-4 && rel < 3e-5, "grid %lldx%lldx%lld fast vs ref kernels: %g (%g)",
                (long long)f, (long long)h, (long long)w, ma, rel);
        if (g == 0) {
            first = of;
            of = NULL;
        }
        free(x);
        free(of);
        free(orf);
    }
    /* the first grid again after larger ones: the same result */
    {
        int64_t n = 16 * 1 * 4 * 6;
        float *x = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * n);
        t_rng r = { 100 };
        t_fill(&r, x, n, 1.5f);
        T_CHECK(!vd_dit_forward(rf, x, NULL, 1, 4, 6, 421.0f, cf, o), "rerun");
        T_CHECK(first && !memcmp(o, first, sizeof(float) * n), "rerun after other grids differs");
        /* bad grids are refused, not crashed on */
        T_CHECK(vd_dit_forward(rf, x, NULL, 1, 3, 6, 421.0f, cf, o) == VDIT_ERR_INVALID_ARG,
                "odd height accepted");
        T_CHECK(vd_dit_forward(rf, x, NULL, 0, 4, 6, 421.0f, cf, o) == VDIT_ERR_INVALID_ARG,
                "zero frames accepted");
        T_CHECK(vd_dit_forward(rf, x, x, 1, 4, 6, 421.0f, cf, o) == VDIT_ERR_INVALID_ARG,
                "y accepted by t2v");
        vd_dit_cond *bad = NULL;
        T_CHECK(vd_dit_cond_new(rf, io->ctx, 17, NULL, 0, &bad) == VDIT_ERR_INVALID_ARG && !bad,
                "context longer than text_len accepted");
        free(x);
        free(o);
    }
    free(first);
    vd_dit_cond_free(&cf);
    vd_dit_cond_free(&cr);
    vd_dit_run_free(&rf);
    vd_dit_run_free(&rr);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
}

/* Guidance's two branches in one batched pass give bit-identical results to
 * two passes (fp32, stacked rows: nothing per row depends on the others),
 * and so does the pass that runs them one after the other when the batch
 * does not fit. The step cache: a skipped step reuses the residual (same
 * input: the same output up to rounding), max_skip bounds the skips in a
 * row, may_skip = 0 always computes, EasyCache needs two computed steps. */
static void test_batch_cache(const char *tiny, vk_ctx *kc, const io_in *io)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = load_tiny(tiny, &lg, &ck);
    if (!d)
        return;
    vd_dit_run *r = vd_dit_run_new(d, kc);
    vd_dit_cond *cc = NULL, *cu = NULL;
    T_CHECK(!vd_dit_cond_new(r, io->ctx, io->n_ctx, NULL, 0, &cc), "cond");
    T_CHECK(!vd_dit_cond_new(r, io->ctx, 0, NULL, 0, &cu), "uncond");
    const int64_t grids[][3] = { { 1, 4, 6 }, { 3, 8, 12 }, { 2, 10, 4 } };
    for (size_t g = 0; cc && cu && g < sizeof(grids) / sizeof(grids[0]); g++) {
        int64_t f = grids[g][0], h = grids[g][1], w = grids[g][2], n = 16 * f * h * w;
        float *x = malloc(sizeof(float) * n), *a0 = malloc(sizeof(float) * n),
              *a1 = malloc(sizeof(float) * n), *b0 = malloc(sizeof(float) * n),
              *b1 = malloc(sizeof(float) * n);
        t_rng rg = { 300 + g };
        t_fill(&rg, x, n, 1.5f);
        const vd_dit_cond *conds[2] = { cc, cu };
        float *outs[2] = { b0, b1 };
        int e = vd_dit_forward(r, x, NULL, f, h, w, 421.0f, cc, a0) ||
                vd_dit_forward(r, x, NULL, f, h, w, 421.0f, cu, a1) ||
                vd_dit_forward_batch(r, x, NULL, f, h, w, 421.0f, 2, conds, outs, 0, NULL, 0,
                                     NULL);
        T_CHECK(!e, "batched forward: %s", lg.msg);
        T_CHECK(!memcmp(a0, b0, sizeof(float) * n) && !memcmp(a1, b1, sizeof(float) * n),
                "grid %zu: the batched branches differ from two passes", g);
        memset(b0, 0, sizeof(float) * n);
        memset(b1, 0, sizeof(float) * n);
        e = vd_dit_forward_batch(r, x, NULL, f, h, w, 421.0f, 2, conds, outs, 1, NULL, 0, NULL);
        T_CHECK(!e && !memcmp(a0, b0, sizeof(float) * n) && !memcmp(a1, b1, sizeof(float) * n),
                "grid %zu: the unbatched pass (batch over budget) differs", g);

        /* TeaCache, any change below the threshold, at most one skip in a row */
        vd_dit_cache *tc = vd_dit_cache_new(VD_CACHE_TEA, 1e9f, 1);
        int comp[4] = { -1, -1, -1, -1 };
        for (int s = 0; tc && s < 4; s++) {
            e = vd_dit_forward_batch(r, x, NULL, f, h, w, 421.0f, 2, conds, outs, 0, tc, s != 3,
                                     &comp[s]);
            T_CHECK(!e, "cached step %d", s);
            if (s == 1) { /* skipped: x0 + (xL - x0) through the head */
                double rel0, rel1;
                t_maxabs(b0, a0, (size_t)n, &rel0);
                t_maxabs(b1, a1, (size_t)n, &rel1);
                T_CHECK(rel0 < 1e-5 && rel1 < 1e-5, "reused step: rel %g %g", rel0, rel1);
            }
        }
        T_CHECK(comp[0] == 1 && comp[1] == 0 && comp[2] == 1 && comp[3] == 1,
                "tea: computed %d %d %d %d (want 1 0 1 1)", comp[0], comp[1], comp[2], comp[3]);
        vd_dit_cache_free(&tc);
        /* a threshold of 0 never skips */
        tc = vd_dit_cache_new(VD_CACHE_TEA, 0.0f, 5);
        for (int s = 0; tc && s < 3; s++)
            vd_dit_forward_batch(r, x, NULL, f, h, w, 421.0f - 10 * s, 1, conds, outs, 0, tc, 1,
                                 &comp[s]);
        T_CHECK(comp[0] && comp[1] && comp[2], "threshold 0 skipped");
        vd_dit_cache_free(&tc);
        /* EasyCache: the rate needs two computed steps, then skips */
        vd_dit_cache *ec = vd_dit_cache_new(VD_CACHE_EASY, 1e9f, 2);
        for (int s = 0; ec && s < 4; s++) {
            for (int64_t i = 0; i < n; i++)
                x[i] *= 0.99f;
            vd_dit_forward_batch(r, x, NULL, f, h, w, 421.0f - 10 * s, 1, conds, outs, 0, ec, 1,
                                 &comp[s]);
        }
        T_CHECK(comp[0] == 1 && comp[1] == 1 && comp[2] == 0 && comp[3] == 0,
                "easy: computed %d %d %d %d (want 1 1 0 0)", comp[0], comp[1], comp[2], comp[3]);
        vd_dit_cache_free(&ec);
        free(x);
        free(a0);
        free(a1);
        free(b0);
        free(b1);
    }
    T_CHECK(!vd_dit_cache_new(7, 0.1f, 1) && !vd_dit_cache_new(VD_CACHE_EASY, -1.0f, 1) &&
                !vd_dit_cache_new(VD_CACHE_TEA, 0.1f, 0),
            "bad cache settings accepted");
    vd_dit_cond_free(&cc);
    vd_dit_cond_free(&cu);
    vd_dit_run_free(&r);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
}

/* Per-token timesteps (Wan2.2 TI2V, dit_ti2v_tiny): the configuration the
 * weights give; all tokens equal is the scalar pass bit for bit (single,
 * batched, cached); the image-to-video pattern (frame 0 at 0) against the
 * stored out, batched == two passes bit for bit, fast vs reference kernels;
 * scattered patterns (many runs, values out of order) fast vs reference; the
 * TEA metric sees a change of the last frame's timestep alone; the plain
 * t2v call (t2v/t) against t2v/out; non-finite timesteps refused. */
static void test_tok(const char *dir, vk_ctx *kc, vk_ctx *kr, const io_in *io, float t2v_t,
                     const float *t2v_out)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = load_tiny(dir, &lg, &ck);
    if (!d)
        return;
    const vd_dit_config *cfg = vd_dit_get_config(d);
    T_CHECK(cfg->in_dim == 48 && cfg->out_dim == 48 && !cfg->i2v && cfg->dim == 64 &&
                cfg->n_heads == 4 && cfg->n_layers == 2 && cfg->text_len == 16,
            "ti2v config: in %lld out %lld i2v %d dim %lld", (long long)cfg->in_dim,
            (long long)cfg->out_dim, cfg->i2v, (long long)cfg->dim);
    int64_t f = io->f, h = io->h, w = io->w, L = f * (h / 2) * (w / 2);
    size_t n = (size_t)(io->c * f * h * w), nbytes = n * sizeof(float);
    vd_dit_run *r = vd_dit_run_new(d, kc), *rr = vd_dit_run_new(d, kr);
    vd_dit_cond *cc = NULL, *cu = NULL, *cr = NULL;
    T_CHECK(!vd_dit_cond_new(r, io->ctx, io->n_ctx, NULL, 0, &cc) &&
                !vd_dit_cond_new(r, io->ctx, 0, NULL, 0, &cu) &&
                !vd_dit_cond_new(rr, io->ctx, io->n_ctx, NULL, 0, &cr),
            "conds");
    float *a0 = malloc(nbytes), *a1 = malloc(nbytes), *b0 = malloc(nbytes),
          *b1 = malloc(nbytes), *tok = malloc(sizeof(float) * L);
    const vd_dit_cond *conds[2] = { cc, cu };
    float *outs[2] = { b0, b1 };
    double rel;
    int e;

    /* all equal: the scalar pass, bit for bit */
    for (int64_t l = 0; l < L; l++)
        tok[l] = 731.0f;
    e = vd_dit_forward(r, io->x, NULL, f, h, w, 731.0f, cc, a0) ||
        vd_dit_forward_tok(r, io->x, NULL, f, h, w, 5.0f, tok, cc, b0);
    T_CHECK(!e && !memcmp(a0, b0, nbytes), "equal per-token timesteps differ from the scalar t");
    e = vd_dit_forward_batch(r, io->x, NULL, f, h, w, 731.0f, 2, conds, (float *[]){ a0, a1 }, 0,
                             NULL, 0, NULL) ||
        vd_dit_forward_batch_tok(r, io->x, NULL, f, h, w, 0.0f, tok, 2, conds, outs, 0, NULL, 0,
                                 NULL);
    T_CHECK(!e && !memcmp(a0, b0, nbytes) && !memcmp(a1, b1, nbytes),
            "batched: equal per-token timesteps differ from the scalar t");

    /* the plain t2v call of the folder */
    if (t2v_out) {
        e = vd_dit_forward(r, io->x, NULL, f, h, w, t2v_t, cc, a0);
        double ma = t_maxabs(a0, t2v_out, n, &rel);
        T_CHECK(!e && ma < 1e-4 && rel < 3e-5, "t2v/out: %g (%g)", ma, rel);
    }

    /* image-to-video pattern: the stored out; batched == two passes */
    const float *ti = io->t_tok;
    e = vd_dit_forward_tok(r, io->x, NULL, f, h, w, 0.0f, ti, cc, a0) ||
        vd_dit_forward_tok(r, io->x, NULL, f, h, w, 0.0f, ti, cu, a1);
    double ma = t_maxabs(a0, io->out, n, &rel);
    T_CHECK(!e && ma < 1e-4 && rel < 3e-5, "per-token out vs stored: %g (%g)", ma, rel);
    for (int mb = 0; mb < 2; mb++) {
        memset(b0, 0, nbytes);
        memset(b1, 0, nbytes);
        e = vd_dit_forward_batch_tok(r, io->x, NULL, f, h, w, 0.0f, ti, 2, conds, outs,
                                     mb ? 1 : 0, NULL, 0, NULL);
        T_CHECK(!e && !memcmp(a0, b0, nbytes) && !memcmp(a1, b1, nbytes),
                "per-token, %s: the branches differ from two passes",
                mb ? "one after the other" : "batched");
    }
    e = vd_dit_forward_tok(rr, io->x, NULL, f, h, w, 0.0f, ti, cr, b0);
    ma = t_maxabs(a0, b0, n, &rel);
    T_CHECK(!e && ma < 1e-4 && rel < 3e-5, "per-token fast vs reference kernels: %g (%g)", ma,
            rel);

    /* scattered: many runs, values not in increasing order */
    static const float vals[5] = { 999.5f, 0.0f, 412.0f, 731.0f, 0.25f };
    for (int pat = 0; pat < 2; pat++) {
        for (int64_t l = 0; l < L; l++)
            tok[l] = pat ? vals[(l * 7 + l / 5) % 5] : vals[(l / 3) % 5];
        e = vd_dit_forward_tok(r, io->x, NULL, f, h, w, 0.0f, tok, cc, a0) ||
            vd_dit_forward_tok(rr, io->x, NULL, f, h, w, 0.0f, tok, cr, b0);
        ma = t_maxabs(a0, b0, n, &rel);
        T_CHECK(!e && ma < 1e-4 && rel < 3e-5, "pattern %d fast vs reference: %g (%g)", pat, ma,
                rel);
        double me = t_maxabs(a0, io->out, n, NULL);
        T_CHECK(me > 1e-2, "pattern %d gives the frame-0 pattern's output (%g)", pat, me);
    }

    /* TEA: the same step is skipped; then only the last frame's timestep
     * changes: the first block's per-token modulated input changes, computed */
    vd_dit_cache *tc = vd_dit_cache_new(VD_CACHE_TEA, 1e-9f, 5);
    int comp[3] = { -1, -1, -1 };
    memcpy(tok, ti, sizeof(float) * L);
    for (int st = 0; tc && st < 3; st++) {
        if (st == 2)
            for (int64_t l = L - (h / 2) * (w / 2); l < L; l++)
                tok[l] = 700.0f;
        e = vd_dit_forward_batch_tok(r, io->x, NULL, f, h, w, 0.0f, tok, 2, conds, outs, 0, tc,
                                     1, &comp[st]);
        T_CHECK(!e, "cached per-token step %d", st);
        if (st == 1) {
            ma = t_maxabs(b0, io->out, n, &rel);
            T_CHECK(ma < 1e-4 && rel < 1e-5, "reused per-token step vs stored out: %g", ma);
        }
    }
    T_CHECK(comp[0] == 1 && comp[1] == 0 && comp[2] == 1,
            "tea per-token: computed %d %d %d (want 1 0 1)", comp[0], comp[1], comp[2]);
    vd_dit_cache_free(&tc);

    /* non-finite timesteps */
    memcpy(tok, ti, sizeof(float) * L);
    tok[L / 2] = NAN;
    T_CHECK(vd_dit_forward_tok(r, io->x, NULL, f, h, w, 0.0f, tok, cc, a0) ==
                VDIT_ERR_INVALID_ARG,
            "NaN timestep accepted");
    tok[L / 2] = INFINITY;
    T_CHECK(vd_dit_forward_tok(r, io->x, NULL, f, h, w, 0.0f, tok, cc, a0) ==
                VDIT_ERR_INVALID_ARG,
            "infinite timestep accepted");

    free(a0);
    free(a1);
    free(b0);
    free(b1);
    free(tok);
    vd_dit_cond_free(&cc);
    vd_dit_cond_free(&cu);
    vd_dit_cond_free(&cr);
    vd_dit_run_free(&r);
    vd_dit_run_free(&rr);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
}

/* Reads a folder's io.safetensors into in (t_tok set when t holds one value
 * per token). Returns the open io (free it after in's buffers) or NULL. */
static vd_ckpt *read_io(const char *dir, io_in *in)
{
    char p[1024];
    vd_log lg = { 0 };
    snprintf(p, sizeof(p), "%s/io.safetensors", dir);
    vd_ckpt *io = NULL;
    T_CHECK(!vd_ckpt_open(p, &lg, &io), "%s", lg.msg);
    if (!io)
        return NULL;
    memset(in, 0, sizeof(*in));
    const vt_tensor *xt = vd_ckpt_find(io, "x"), *ct = vd_ckpt_find(io, "context"),
                    *tt = vd_ckpt_find(io, "t");
    in->x = vd_tensor_f32(xt);
    in->t = vd_tensor_f32(tt);
    in->ctx = vd_tensor_f32(ct);
    in->out = vd_tensor_f32(vd_ckpt_find(io, "out"));
    in->n_ctx = ct->shape[0];
    in->c = xt->shape[0];
    in->f = xt->shape[1];
    in->h = xt->shape[2];
    in->w = xt->shape[3];
    in->t_tok = vt_nelem(tt) > 1 ? in->t : NULL;
    return io;
}

static void free_io(io_in *in, vd_ckpt **io)
{
    vd_free(in->x);
    vd_free(in->t);
    vd_free(in->ctx);
    vd_free(in->out);
    vd_ckpt_free(io);
}

int main(int argc, char **argv)
{
    vd_log lg = { 0 };
    vk_ctx *kc = vk_ctx_new(2, 0, &lg), *kr = vk_ctx_new(1, 1, &lg);
    T_CHECK(kc && kr, "vk_ctx_new");
    if (!kc || !kr)
        T_DONE();
    test_patches();
    test_rope(kc);
    test_rope(kr);
    test_modulation(kc);
    test_modulation(kr);

    if (argc >= 3) {
        const char *tiny = argv[1], *tmp = argv[2];
        mkdir(tmp, 0755);
        io_in in;
        vd_ckpt *io = read_io(tiny, &in);
        if (io) {
            test_layouts(tiny, tmp, kc, &in);
            test_fp8(tiny, tmp, kc, &in);
            test_grids(tiny, kc, kr, &in);
            test_batch_cache(tiny, kc, &in);
            free_io(&in, &io);
        }
    } else {
        printf("no dit_tiny folder given: loader tests skipped\n");
    }
    /* Wan2.2 TI2V: in_dim 48, per-token timesteps, in every layout and dtype */
    if (argc >= 4) {
        const char *ti2v = argv[3];
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s/ti2v", argv[2]);
        mkdir(tmp, 0755);
        io_in in;
        vd_ckpt *io = read_io(ti2v, &in);
        T_CHECK(!io || in.t_tok, "%s: t is not per token", ti2v);
        if (io && in.t_tok) {
            float *t2v_t = vd_tensor_f32(vd_ckpt_find(io, "t2v/t"));
            float *t2v_out = vd_tensor_f32(vd_ckpt_find(io, "t2v/out"));
            T_CHECK(t2v_t && t2v_out, "%s: no t2v/t, t2v/out", ti2v);
            test_layouts(ti2v, tmp, kc, &in);
            test_fp8(ti2v, tmp, kc, &in);
            test_tok(ti2v, kc, kr, &in, t2v_t ? t2v_t[0] : 0, t2v_out);
            vd_free(t2v_t);
            vd_free(t2v_out);
        }
        if (io)
            free_io(&in, &io);
    } else {
        printf("no dit_ti2v_tiny folder given: Wan2.2 tests skipped\n");
    }
    vk_ctx_free(&kc);
    vk_ctx_free(&kr);
    T_DONE();
}
