/* `vdit bench dit`: one forward step of the Wan DiT on random weights at a
 * released model's configuration (--model):
 *   wan21-1.3b (default): Wan2.1 T2V 1.3B (dim 1536, 12 heads, ffn 8960, 30
 *     layers, 16 latent channels), latent 16 x 5 x 24 x 40 (1200 tokens), fp16
 *     and fp32 weights;
 *   wan22-5b: Wan2.2 TI2V-5B (dim 3072, 24 heads, ffn 14336, 30 layers, 48
 *     latent channels, one timestep per token: the first latent frame's tokens
 *     at 0, the others at t, as in image-to-video; vd_dit_forward_tok), the same
 *     1200-token latent grid by default, bf16 weights (10 GB for all 30
 *     layers: --layers N measures N of them).
 * Both take text 4096 x 512. Sizes: --latent F,H,W, --size WxHxT (pixels,
 * through the family's VAE: 8 or 16 pixels per latent row, 4 frames per
 * latent frame) or --tokens N. --layers N < 30 runs the first N (identical)
 * blocks; each time is then also given scaled to the model's 30, the
 * per-forward part (time embedding, patches, head) counted once:
 * scaled = other + blocks x 30 / N, labelled as such.
 * Prints seconds per step (the once-per-prompt condition apart), effective
 * GFLOP/s and share of the measured peak of the level and precision in use
 * (--precision, --isa; vk_peak_gflops), peak RSS. The weights are prepared
 * at load as vdit_model_load does for users (vd_dit_prepare: for bf16 a bf16
 * copy, for fp32 a packed copy of fp32 weights, each in the matmul's
 * layout), counted in the load time. With --torch, the same network on the same weights and
 * inputs in the Python baselines (models/bench/bench_dit_torch.py: PyTorch 2
 * bf16 and fp32 and diffusers bf16 from scripts/bench-venv.sh's venv,
 * Debian's torch 1.13 fp32; --torch-rows picks some), each with its seconds
 * per step, vdit's time at the same precision over it, and how far the
 * outputs are apart.
 *
 * The random weights are written to a safetensors file first and loaded
 * through the ordinary path (mmap, canonicalize, load), as a user's
 * checkpoint is; the fp16 and fp32 files hold the same fp16-representable
 * values (bf16 files: those values rounded to bf16).
 *
 * --dit PATH runs a checkpoint instead (any layout vdit loads: a file, a
 * sharded index, a folder): its configuration, load time, one forward at the
 * asked latent, whether the output is finite, peak RSS (no baselines). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"
#include "dit/dit.h"

typedef struct bcfg {
    const char *name;
    int64_t dim, ffn, text_dim, freq, in_dim, out_dim, layers, heads, text_len;
    int64_t f, h, w;
    int64_t model_layers; /* the released model's; layers < this: a subset, scaled */
    int vae_s;            /* pixels per latent row and column (--size) */
    int per_tok;          /* one timestep per token (Wan2.2 TI2V) */
} bcfg;

typedef struct spec {
    char name[64];
    int ndim;
    int64_t shape[5];
    int kind; /* 0 weight (1/sqrt(fan_in)), 1 bias, 2 norm weight, 3 norm bias, 4 modulation */
} spec;

/* As vdit_model_load does: a stored weight's pages go back once its prepared
 * copy is made (vd_dit_prepare_ex), so the figures show the loader's memory. */
static void release_stored(void *ck, const void *data)
{
    vd_ckpt_release(ck, data);
}

/* A DiT loaded as vdit_model_load loads one: opened, canonicalized, loaded,
 * and prepared for prec, or uploaded to the device vc (a vkc_ctx) when given
 * (their stored pages handed back where a copy is made). *open_s and *prep_s (may be NULL): the seconds of the first three
 * steps and of the preparation. 0, or VDIT_ERR_* said in lg. */
static int load_dit(const char *path, int64_t text_len, int64_t heads, vk_prec prec,
                    int threads, void *vc, vd_log *lg, vd_ckpt **ck, vd_dit **d, double *open_s,
                    double *prep_s)
{
    double t0 = vd_time();
    int ret;
    if ((ret = vd_ckpt_open(path, lg, ck)) || (ret = vd_dit_canonicalize(*ck, lg)) ||
        (ret = vd_dit_load_ex(*ck, text_len, heads, lg, d)))
        return ret;
    double t1 = vd_time();
    if (vc) { /* on a device: uploaded instead (vd_dit_upload says why it failed) */
        if ((ret = vd_dit_upload(*d, vc, prec, release_stored, *ck, lg)))
            return ret;
    } else if ((ret = vd_dit_prepare_ex(*d, prec, threads, release_stored, *ck))) {
        return vd_err(lg, ret, "out of memory for the prepared copy of the weights");
    }
    if (open_s)
        *open_s = t1 - t0;
    if (prep_s)
        *prep_s = vd_time() - t1;
    return 0;
}

static int add(spec *s, int n, const char *name, int kind, int ndim, int64_t a, int64_t b,
               int64_t c, int64_t d, int64_t e)
{
    snprintf(s[n].name, sizeof(s[n].name), "%s", name);
    s[n].ndim = ndim;
    int64_t sh[5] = { a, b, c, d, e };
    memcpy(s[n].shape, sh, sizeof(sh));
    s[n].kind = kind;
    return n + 1;
}

static int lin(spec *s, int n, const char *p, int64_t o, int64_t i)
{
    char nm[64];
    snprintf(nm, sizeof(nm), "%s.weight", p);
    n = add(s, n, nm, 0, 2, o, i, 0, 0, 0);
    snprintf(nm, sizeof(nm), "%s.bias", p);
    return add(s, n, nm, 1, 1, o, 0, 0, 0, 0);
}

static int make_specs(const bcfg *c, spec *s)
{
    int64_t D = c->dim;
    int n = 0;
    char p[64];
    n = add(s, n, "patch_embedding.weight", 0, 5, D, c->in_dim, 1, 2, 2);
    n = add(s, n, "patch_embedding.bias", 1, 1, D, 0, 0, 0, 0);
    n = lin(s, n, "text_embedding.0", D, c->text_dim);
    n = lin(s, n, "text_embedding.2", D, D);
    n = lin(s, n, "time_embedding.0", D, c->freq);
    n = lin(s, n, "time_embedding.2", D, D);
    n = lin(s, n, "time_projection.1", 6 * D, D);
    for (int64_t i = 0; i < c->layers; i++) {
        const char *at[2] = { "self_attn", "cross_attn" };
        for (int a = 0; a < 2; a++) {
            for (const char *q = "qkvo"; *q; q++) {
                snprintf(p, sizeof(p), "blocks.%lld.%s.%c", (long long)i, at[a], *q);
                n = lin(s, n, p, D, D);
            }
            snprintf(p, sizeof(p), "blocks.%lld.%s.norm_q.weight", (long long)i, at[a]);
            n = add(s, n, p, 2, 1, D, 0, 0, 0, 0);
            snprintf(p, sizeof(p), "blocks.%lld.%s.norm_k.weight", (long long)i, at[a]);
            n = add(s, n, p, 2, 1, D, 0, 0, 0, 0);
        }
        snprintf(p, sizeof(p), "blocks.%lld.norm3.weight", (long long)i);
        n = add(s, n, p, 2, 1, D, 0, 0, 0, 0);
        snprintf(p, sizeof(p), "blocks.%lld.norm3.bias", (long long)i);
        n = add(s, n, p, 3, 1, D, 0, 0, 0, 0);
        snprintf(p, sizeof(p), "blocks.%lld.ffn.0", (long long)i);
        n = lin(s, n, p, c->ffn, D);
        snprintf(p, sizeof(p), "blocks.%lld.ffn.2", (long long)i);
        n = lin(s, n, p, D, c->ffn);
        snprintf(p, sizeof(p), "blocks.%lld.modulation", (long long)i);
        n = add(s, n, p, 4, 3, 1, 6, D, 0, 0);
    }
    n = lin(s, n, "head.head", c->out_dim * 4, D);
    n = add(s, n, "head.modulation", 4, 3, 1, 2, D, 0, 0);
    return n;
}

static int64_t numel(const spec *s)
{
    int64_t k = 1;
    for (int i = 0; i < s->ndim; i++)
        k *= s->shape[i];
    return k;
}

/* uniform in [-1, 1), rounded to an fp16-representable value */
static uint16_t rnd_h(uint64_t *s, float scale, float mean)
{
    float u = (float)((double)(bench_rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    return vt_f32_to_f16(mean + scale * u);
}

static const char *dt_name(vt_dtype dt)
{
    return dt == VT_F16 ? "fp16" : dt == VT_BF16 ? "bf16" : "fp32";
}

/* Writes the random model (dt F16, BF16 or F32); returns 0 or -1. Values
 * depend only on the tensor name's position, so the fp16 and fp32 files
 * agree (bf16: the same values rounded to bf16). */
static int write_weights(const char *path, const spec *s, int n, vt_dtype dt)
{
    size_t esz = dt == VT_F32 ? 4 : 2;
    size_t cap = 1024 + (size_t)n * 160, len = 0, off = 0;
    char *h = malloc(cap);
    if (!h)
        return -1;
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)numel(&s[i]) * esz;
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", s[i].name,
                                dt == VT_F16 ? "F16" : dt == VT_BF16 ? "BF16" : "F32");
        for (int k = 0; k < s[i].ndim; k++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", k ? "," : "",
                                    (long long)s[i].shape[k]);
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
    int ok = fwrite(&hl, 8, 1, fp) == 1 && fwrite(h, 1, len, fp) == len;
    free(h);
    enum { CH = 1 << 20 };
    uint16_t *bh = malloc(CH * 2);
    float *bf = malloc(CH * 4);
    for (int i = 0; ok && i < n; i++) {
        uint64_t st = 0x1234567ull + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        int64_t ne = numel(&s[i]);
        float scale, mean = 0;
        switch (s[i].kind) {
        case 0: /* fan_in: every dim but the first */
            scale = sqrtf(3.0f / (float)(ne / s[i].shape[0]));
            break;
        case 1: scale = 0.05f; break;
        case 2: scale = 0.1f; mean = 1.0f; break;
        case 3: scale = 0.05f; break;
        default: scale = 0.1f; break;
        }
        for (int64_t o = 0; ok && o < ne; o += CH) {
            int64_t m = VD_MIN((int64_t)CH, ne - o);
            for (int64_t k = 0; k < m; k++)
                bh[k] = rnd_h(&st, scale, mean);
            if (dt == VT_F16) {
                ok = fwrite(bh, 2, (size_t)m, fp) == (size_t)m;
            } else if (dt == VT_BF16) {
                for (int64_t k = 0; k < m; k++)
                    bh[k] = vt_f32_to_bf16(vt_f16_to_f32(bh[k]));
                ok = fwrite(bh, 2, (size_t)m, fp) == (size_t)m;
            } else {
                for (int64_t k = 0; k < m; k++)
                    bf[k] = vt_f16_to_f32(bh[k]);
                ok = fwrite(bf, 4, (size_t)m, fp) == (size_t)m;
            }
        }
    }
    free(bh);
    free(bf);
    if (fclose(fp))
        ok = 0;
    return ok ? 0 : -1;
}

/* The inputs both engines read: x [in_dim,F,H,W], t [1] (or per token:
 * t [1, L]), context [text_len, text_dim]. */
static int write_io(const char *path, const bcfg *c, const float *x, float t, const float *t_tok,
                    const float *ctx)
{
    char h[512];
    int64_t nx = c->in_dim * c->f * c->h * c->w, nc = c->text_len * c->text_dim;
    int64_t nt = t_tok ? c->f * (c->h / 2) * (c->w / 2) : 1;
    char tshape[64];
    if (t_tok)
        snprintf(tshape, sizeof(tshape), "1,%lld", (long long)nt);
    else
        snprintf(tshape, sizeof(tshape), "1");
    int len = snprintf(h, sizeof(h),
                       "{\"context\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[0,%lld]},"
                       "\"t\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%lld,%lld]},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld,%lld,%lld],\"data_offsets\":[%lld,%lld]}}",
                       (long long)c->text_len, (long long)c->text_dim, (long long)(4 * nc), tshape,
                       (long long)(4 * nc), (long long)(4 * nc + 4 * nt), (long long)c->in_dim,
                       (long long)c->f, (long long)c->h, (long long)c->w,
                       (long long)(4 * nc + 4 * nt), (long long)(4 * nc + 4 * nt + 4 * nx));
    while ((8 + len) % 8)
        h[len++] = ' ';
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    uint64_t hl = (uint64_t)len;
    int ok = fwrite(&hl, 8, 1, fp) == 1 && fwrite(h, 1, (size_t)len, fp) == (size_t)len &&
             fwrite(ctx, 4, (size_t)nc, fp) == (size_t)nc &&
             fwrite(t_tok ? t_tok : &t, 4, (size_t)nt, fp) == (size_t)nt &&
             fwrite(x, 4, (size_t)nx, fp) == (size_t)nx;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

static double rss_now(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(fp);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

typedef struct result {
    double step, cpu, cond, load, prep, peak_rss; /* prep: the bf16 copy, part of load */
    double prof[VD_DIT_PROF_COUNT];
    float *out;
} result;

/* --guidance: the two branches of classifier-free guidance (the prompt and an
 * empty one) as two passes and as one batched pass, best of two runs each,
 * alternating; whether the outputs are the same bits. */
static int guidance_rows;
/* per-token timesteps of the step (NULL: one t for all tokens) */
static const float *bench_t_tok;

static int time_guidance(vd_dit_run *r, const bcfg *c, const float *x, float t,
                         const vd_dit_cond *cd, const float *ctx)
{
    vd_dit_cond *cu = NULL;
    size_t n = (size_t)(c->out_dim * c->f * c->h * c->w);
    float *a0 = vd_malloc(n * 4), *a1 = vd_malloc(n * 4), *b0 = vd_malloc(n * 4),
          *b1 = vd_malloc(n * 4);
    int ret = !a0 || !a1 || !b0 || !b1 ? VDIT_ERR_NOMEM : vd_dit_cond_new(r, ctx, 0, NULL, 0, &cu);
    double two = 1e30, one = 1e30;
    for (int k = 0; k < 4 && !ret; k++) {
        const vd_dit_cond *conds[2] = { cd, cu };
        float *outs[2] = { b0, b1 };
        double t0 = vd_time();
        if ((k & 1) == (k >> 1)) { /* two, one, one, two */
            ret = vd_dit_forward_tok(r, x, NULL, c->f, c->h, c->w, t, bench_t_tok, cd, a0);
            ret = ret ? ret
                      : vd_dit_forward_tok(r, x, NULL, c->f, c->h, c->w, t, bench_t_tok, cu, a1);
            two = VD_MIN(two, vd_time() - t0);
        } else {
            ret = vd_dit_forward_batch_tok(r, x, NULL, c->f, c->h, c->w, t, bench_t_tok, 2,
                                           conds, outs, 0, NULL, 0, NULL);
            one = VD_MIN(one, vd_time() - t0);
        }
    }
    if (!ret) {
        int same = !memcmp(a0, b0, n * 4) && !memcmp(a1, b1, n * 4);
        printf("  guidance, 2 branches: two passes %.3f s, one batched pass %.3f s: %.3fx the "
               "time; outputs %s\n",
               two, one, one / two, same ? "bit-identical" : "DIFFER");
    }
    vd_dit_cond_free(&cu);
    vd_free(a0);
    vd_free(a1);
    vd_free(b0);
    vd_free(b1);
    return ret;
}

static int run_one(const char *path, const bcfg *c, int threads, vk_isa isa, vk_prec prec,
                   int steps, const float *x, float t, const float *ctx, result *res)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cd = NULL;
    int ret;
    double t0 = vd_time();
    /* what vdit_model_load does for users: the weights prepared once at load */
    if ((ret = load_dit(path, c->text_len, c->heads, prec, threads, NULL, &lg, &ck, &d, NULL,
                        &res->prep)))
        goto done;
    res->load = vd_time() - t0;
    kc = vk_ctx_new_ex(threads, (int)isa, prec, &lg);
    if (!kc) {
        ret = VDIT_ERR_UNSUPPORTED;
        goto done;
    }
    if (!(r = vd_dit_run_new(d, kc))) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    t0 = vd_time();
    if ((ret = vd_dit_cond_new(r, ctx, c->text_len, NULL, 0, &cd)))
        goto done;
    res->cond = vd_time() - t0;
    res->out = vd_malloc(sizeof(float) * (size_t)(c->out_dim * c->f * c->h * c->w));
    res->step = 1e30;
    double prof[VD_DIT_PROF_COUNT];
    vd_dit_run_set_profile(r, prof);
    for (int s = 0; s < steps && res->out; s++) {
        memset(prof, 0, sizeof(prof));
        double c0 = bench_cpu_seconds();
        t0 = vd_time();
        if ((ret = vd_dit_forward_tok(r, x, NULL, c->f, c->h, c->w, t, bench_t_tok, cd,
                                      res->out)))
            goto done;
        double dt = vd_time() - t0, dc = bench_cpu_seconds() - c0;
        printf("  step %d: %.3f s (process CPU time %.3f s)\n", s + 1, dt, dc);
        fflush(stdout);
        if (dt < res->step) {
            res->step = dt;
            res->cpu = dc;
            memcpy(res->prof, prof, sizeof(prof));
        }
    }
    res->peak_rss = bench_peak_rss();
    if (guidance_rows && (ret = time_guidance(r, c, x, t, cd, ctx)))
        goto done;
    printf("  resident now %.0f MiB (weights mapped: file pages touched)\n", rss_now() / 1048576.0);
done:
    if (ret)
        fprintf(stderr, "vdit bench dit: %s\n", lg.msg);
    vd_dit_cond_free(&cd);
    vd_dit_run_free(&r);
    vk_ctx_free(&kc);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
    return ret;
}

/* The released configurations at the benchmark's default latent (1200
 * tokens: 17 frames of 320x192 for Wan2.1, of 640x384 for Wan2.2). */
static const bcfg wan_1_3b = { .name = "Wan2.1 T2V 1.3B", .dim = 1536, .ffn = 8960,
                               .text_dim = 4096, .freq = 256, .in_dim = 16, .out_dim = 16,
                               .layers = 30, .heads = 12, .text_len = 512, .f = 5, .h = 24,
                               .w = 40, .model_layers = 30, .vae_s = 8 };
static const bcfg wan22_5b = { .name = "Wan2.2 TI2V-5B", .dim = 3072, .ffn = 14336,
                               .text_dim = 4096, .freq = 256, .in_dim = 48, .out_dim = 48,
                               .layers = 30, .heads = 24, .text_len = 512, .f = 5, .h = 24,
                               .w = 40, .model_layers = 30, .vae_s = 16, .per_tok = 1 };

int bench_random_dit(vk_prec prec, int threads, vd_ckpt **ck, vd_dit **d, vd_log *lg)
{
    bcfg c = wan_1_3b;
    spec *sp = calloc((size_t)(16 + c.layers * 40), sizeof(*sp));
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[1100];
    snprintf(path, sizeof(path), "%s/vdit_bench_random_dit_%d.safetensors", dir, (int)getpid());
    int ret = !sp ? VDIT_ERR_NOMEM : 0;
    if (!ret && write_weights(path, sp, make_specs(&c, sp), VT_F16))
        ret = vd_err(lg, VDIT_ERR_IO, "cannot write %s", path);
    free(sp);
    if (!ret)
        ret = load_dit(path, c.text_len, c.heads, prec, threads, NULL, lg, ck, d, NULL, NULL);
    unlink(path); /* mapped: the pages stay until the checkpoint is freed */
    return ret;
}

int bench_guided_new(vk_ctx *kc, vd_log *lg, bench_guided *g)
{
    memset(g, 0, sizeof(*g));
    const int64_t T = 512, TD = 4096;
    int ret = bench_random_dit(kc->prec, kc->n_threads, &g->ck, &g->d, lg);
    float *ctx = ret ? NULL : vd_malloc(sizeof(float) * T * TD);
    if (!ret && (!(g->r = vd_dit_run_new(g->d, kc)) || !ctx))
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    if (!ret) {
        uint64_t st = 7;
        for (int64_t i = 0; i < T * TD; i++)
            ctx[i] = (float)((double)(bench_rng_next(&st) >> 11) / 9007199254740992.0 - 0.5);
        if ((ret = vd_dit_cond_new(g->r, ctx, 40, NULL, 0, &g->cc)) ||
            (ret = vd_dit_cond_new(g->r, ctx, 0, NULL, 0, &g->cu)))
            vd_err(lg, ret, "the text conditions: out of memory");
    }
    vd_free(ctx);
    if (ret)
        bench_guided_free(g);
    return ret;
}

void bench_guided_free(bench_guided *g)
{
    vd_dit_cond_free(&g->cc);
    vd_dit_cond_free(&g->cu);
    vd_dit_run_free(&g->r);
    vd_dit_free(&g->d);
    vd_ckpt_free(&g->ck);
}

/* One PyTorch baseline of --torch: how it runs, then what it measured. */
typedef struct trow {
    const char *name;  /* until it ran: "PyTorch 2 bf16", ... */
    const char *args;  /* bench_dit_torch.py options */
    int bf16;          /* compared with vdit's bf16 run (else fp32) */
    int extra;         /* a table row without a summary line (unless it is the only one) */
    const char *key;   /* its --torch-rows name */
    const char *py;    /* the interpreter; NULL: skipped, why says why */
    const char *why;
    int ok, vp;        /* vp: the vdit precision compared with (0 fp32, 1 bf16) */
    double sec, cpu, rel, rel32;
    double blk;        /* seconds in the blocks (of sec), or -1 */
    char ver[64], dver[64], impl[32], dtype[16], attn[16];
} trow;


/* The row's name from its torch_* lines (mm: versions as major.minor). */
static void trow_label(const trow *r, int mm, char *buf, size_t n)
{
    char a[64], b[64];
    if (!strcmp(r->impl, "diffusers"))
        snprintf(buf, n, "diffusers %s %s (torch %s%s%s)", bench_short_ver(r->dver, mm, a, sizeof(a)),
                 r->dtype, bench_short_ver(r->ver, mm, b, sizeof(b)), mm ? "" : ", ", mm ? "" : r->attn);
    else
        snprintf(buf, n, "PyTorch %s %s (%smodels/wan/dit.py, %s)",
                 bench_short_ver(r->ver, mm, a, sizeof(a)), r->dtype, r->extra ? "Debian, " : "",
                 r->attn);
}

/* max |a - ref| / max |ref| */
static double rel_diff(const float *a, const float *ref, int64_t n)
{
    double m = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - ref[i]));
        mb = fmax(mb, fabs(ref[i]));
    }
    return mb > 0 ? m / mb : m;
}

/* Runs bench_dit_torch.py for row r (its output echoed as "  | ..."); 0 when
 * it printed a time and exited 0. */
static int torch_run(trow *r, const char *script, const char *weights, const char *io,
                     const char *out, int threads, int steps)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d '%s' '%s' --weights '%s' --io '%s' "
             "--out '%s' --threads %d --steps %d %s 2>&1",
             threads, threads, r->py, script, weights, io, out, threads, steps, r->args);
    printf("  %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024];
    r->sec = -1;
    r->blk = -1;
    while (fgets(line, sizeof(line), p)) {
        fputs("  | ", stdout);
        fputs(line, stdout);
        if (!strchr(line, '\n'))
            fputc('\n', stdout);
        fflush(stdout);
        sscanf(line, "torch_seconds_per_step %lf", &r->sec);
        sscanf(line, "torch_cpu_seconds_per_step %lf", &r->cpu);
        sscanf(line, "torch_blocks_seconds %lf", &r->blk);
        sscanf(line, "torch_version %63s", r->ver);
        sscanf(line, "torch_diffusers_version %63s", r->dver);
        sscanf(line, "torch_impl %31s", r->impl);
        sscanf(line, "torch_dtype %15s", r->dtype);
        sscanf(line, "torch_attention %15s", r->attn);
    }
    return pclose(p) || r->sec <= 0 ? -1 : 0;
}



/* ---- --device: the DiT on a CUDA device ------------------------------------ */
#if VK_HAVE_CUDA
#include "kernels/cuda/vkc.h"

/* The device's bf16 (or fp32) matrix rate: the best of 5 products of
 * 8192 x 8192 x 8192 through the backend's own linear (cuBLASLt). */
static double device_peak(void *vcv, int bf16)
{
    vkc_ctx *vc = vcv;
    const int64_t n = 8192;
    void *x = vkc_alloc(vc, (size_t)(n * n) * 4), *y = vkc_alloc(vc, (size_t)(n * n) * 4);
    void *w = vkc_alloc(vc, (size_t)(n * n) * 4);
    double best = 1e30;
    if (x && y && w) {
        vkc_memset0(vc, x, (size_t)(n * n) * 4);
        vkc_memset0(vc, w, (size_t)(n * n) * 4);
        for (int i = 0; i < 6; i++) {
            vkc_sync(vc);
            double t0 = vd_time();
            vkc_linear(vc, bf16, x, bf16, n, n, w, bf16 ? VKC_BF16 : VKC_F32, NULL, n, 0, y, 0);
            if (vkc_sync(vc))
                break;
            if (i > 0) /* the first one loads the kernels */
                best = VD_MIN(best, vd_time() - t0);
        }
    }
    vkc_free(vc, x), vkc_free(vc, y), vkc_free(vc, w);
    return best < 1e30 ? 2.0 * n * n * n / best / 1e9 : 0;
}

/* Loads path onto the device, times S forwards (each ends when its output is
 * back on the host), compares with PyTorch on the same device when asked. */
static int run_device(const char *device, const char *path, const bcfg *c, int threads,
                      vk_prec prec, int steps, const float *x, float t, const float *ctx,
                      double flops, int torch, const char *script, const char *python,
                      int no_venv, const char *dir)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cd = NULL;
    vk_device dev;
    float *out = NULL;
    int bf16 = prec != VK_PREC_F32, ret;
    if ((ret = vk_device_parse(device, &dev, &lg)))
        goto done;
    if (!(kc = vk_ctx_new_ex(threads, -1, VK_PREC_AUTO, &lg))) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    if ((ret = vk_device_open(&dev, &kc->cuda, &lg)))
        goto done;
    if (!kc->cuda) {
        ret = vd_err(&lg, VDIT_ERR_UNSUPPORTED, "device %s: no CUDA device", device);
        goto done;
    }
    kc->cuda_bf16 = bf16;
    double peak = device_peak(kc->cuda, bf16);
    printf("device %s: %s; %s matrix peak %.1f TFLOP/s (measured: 8192^3 products through "
           "cuBLASLt, best of 5)\n",
           device, vkc_device_name(kc->cuda), bf16 ? "bf16" : "fp32", peak / 1e3);
    double t0 = vd_time();
    if ((ret = load_dit(path, c->text_len, c->heads, bf16 ? VK_PREC_BF16 : VK_PREC_F32, threads,
                        kc->cuda, &lg, &ck, &d, NULL, NULL)))
        goto done;
    printf("  loaded and uploaded in %.2f s: %.2f GiB of device memory\n", vd_time() - t0,
           (double)vkc_mem_used(kc->cuda) / (1 << 30));
    if (!(r = vd_dit_run_new(d, kc))) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    t0 = vd_time();
    if ((ret = vd_dit_cond_new(r, ctx, c->text_len, NULL, 0, &cd)))
        goto done;
    double tcond = vd_time() - t0, best = 1e30;
    size_t no = (size_t)(c->out_dim * c->f * c->h * c->w);
    if (!(out = vd_malloc(no * sizeof(float)))) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    for (int s = 0; s < steps + 1; s++) { /* the first run loads the kernels: not counted */
        t0 = vd_time();
        if ((ret = vd_dit_forward_tok(r, x, NULL, c->f, c->h, c->w, t, bench_t_tok, cd, out)))
            goto done;
        double dt = vd_time() - t0;
        printf("  %s %d: %.4f s\n", s ? "step" : "warm-up", s, dt);
        if (s)
            best = VD_MIN(best, dt);
    }
    double tf = flops / best / 1e12;
    printf("vdit %s on %s: %.4f s/forward  %.1f TFLOP/s  %.1f%% of the measured %s peak  "
           "(cond once per prompt %.3f s, peak device memory %.2f GiB)\n",
           bf16 ? "bf16" : "fp32", device, best, tf, peak > 0 ? 100.0 * tf * 1e3 / peak : 0,
           bf16 ? "bf16" : "fp32", tcond, (double)vkc_mem_peak(kc->cuda) / (1 << 30));
    if (torch) {
        char iopath[1100], opath[1100], root[1024], vpy[1100] = "", why[1400] = "";
        snprintf(iopath, sizeof(iopath), "%s/vdit_bench_dit_io.safetensors", dir);
        snprintf(opath, sizeof(opath), "%s/vdit_bench_dit_torch_out.bin", dir);
        bench_src_root(script, root, sizeof(root));
        bench_torch_python(root, python, !no_venv, vpy, sizeof(vpy), why, sizeof(why));
        char args[160];
        snprintf(args, sizeof(args), "--dtype %s --impl vdit-py --attn sdpa --device %s",
                 bf16 ? "bf16" : "fp32", device);
        trow tr = { .name = "PyTorch on the device", .args = args, .py = *vpy ? vpy : NULL };
        if (!tr.py || write_io(iopath, c, x, t, bench_t_tok, ctx)) {
            printf("PyTorch on %s: skipped (%s)\n", device, tr.py ? "cannot write the io file" : why);
        } else if (torch_run(&tr, script, path, iopath, opath, threads, steps) == 0) {
            float *to = vd_malloc(no * sizeof(float));
            FILE *f = to ? fopen(opath, "rb") : NULL;
            double rd = -1;
            if (f && fread(to, sizeof(float), no, f) == no)
                rd = rel_diff(out, to, (int64_t)no);
            if (f)
                fclose(f);
            vd_free(to);
            printf("PyTorch %s %s on %s: %.4f s/forward; vdit / PyTorch %.2fx the time; output "
                   "difference (relative to max) %.2e\n",
                   tr.ver, bf16 ? "bf16" : "fp32", device, tr.sec, best / tr.sec, rd);
            remove(opath);
        } else {
            printf("PyTorch on %s: failed (see its output above)\n", device);
        }
        remove(iopath);
    }
done:
    if (ret)
        fprintf(stderr, "vdit bench dit: %s\n", lg.msg);
    vd_free(out);
    vd_dit_cond_free(&cd);
    vd_dit_run_free(&r);
    vd_dit_free(&d); /* before kc, whose device context holds its weights */
    vk_ctx_free(&kc);
    vd_ckpt_free(&ck);
    return ret;
}
#endif

static void usage(void)
{
    printf("usage: vdit bench dit [--model wan21-1.3b|wan22-5b] [--threads N] [--layers L]\n"
           "                      [--latent F,H,W | --size WxHxT | --tokens N] [--steps S]\n"
           "                      [--dtype f16|bf16|f32|both|bf16,f32]\n"
           "                      [--precision fp32|bf16|auto]\n"
           "                      [--isa c|avx2|avx512|avx512_bf16] [--torch]\n"
           "                      [--torch-rows LIST] [--torch-script PATH] [--python PATH]\n"
           "                      [--no-venv] [--dir DIR] [--keep] [--guidance]\n"
           "                      [--device cuda|cuda:N]\n"
           "       vdit bench dit --dit CHECKPOINT [--latent F,H,W | --size WxHxT]\n"
           "                      [--threads N] [--precision P] [--steps S]\n"
           "The DiT of a released model on random weights (text 4096 x 512):\n"
           "  wan21-1.3b (default): Wan2.1 T2V 1.3B, dim 1536, 12 heads, ffn 8960, 30 layers,\n"
           "    16 latent channels; fp16 and fp32 weights (--dtype both);\n"
           "  wan22-5b: Wan2.2 TI2V-5B, dim 3072, 24 heads, ffn 14336, 30 layers, 48 latent\n"
           "    channels, one timestep per token (the first latent frame's tokens at 0, as in\n"
           "    image-to-video); bf16 weights (--dtype bf16).\n"
           "Latent C x F x H x W, default 5,24,40 = 1200 tokens (17 frames of 320x192 for\n"
           "Wan2.1, of 640x384 for Wan2.2); --size WxHxT gives it in pixels through the\n"
           "model's VAE (Wan2.2: 1280x704x121 = 31,44,80 = 27280 tokens). --layers L < 30:\n"
           "the first L blocks only (the blocks are identical, so time is linear in them);\n"
           "every time is then also given scaled to 30 layers, the per-forward part (time\n"
           "embedding, patches, head) counted once: other + blocks x 30 / L, marked\n"
           "'scaled'. Prints seconds per step (best of S, default 2), the once-per-prompt\n"
           "condition apart, effective GFLOP/s, %% of the peak measured for the level and\n"
           "precision in use, peak RSS; ends with a summary line (the faster weight type),\n"
           "with --torch then one per baseline.\n"
           "--precision: default auto (bf16 where the CPU computes it natively); --isa:\n"
           "default the CPU's level (VDIT_CPU lowers it). Smaller runs: --layers L,\n"
           "--latent F,H,W or --tokens N, --steps 1.\n"
           "--torch: the same network, weights and inputs in the Python baselines, one row\n"
           "each: PyTorch 2 bf16 (SDPA), diffusers WanTransformer3DModel bf16, PyTorch 2\n"
           "fp32 (SDPA), and Debian's torch 1.13 fp32 (/usr/bin/python3, if it imports torch;\n"
           "its attention holds heads x tokens^2 scores: skipped where they do not fit in\n"
           "half the memory, as are fp32 rows whose weights do not); each with seconds per\n"
           "step, vdit's time at the same precision over theirs (vdit runs the other\n"
           "precision too when a row needs it) and the output difference. --torch-rows:\n"
           "some of torch-bf16,diffusers,torch-fp32,debian (comma-separated; default all).\n"
           "Run from the source tree or give --torch-script models/bench/bench_dit_torch.py.\n"
           "PyTorch 2 and diffusers come from scripts/bench-venv.sh (it creates .venv-bench\n"
           "when missing: about 2.7 GB from PyPI); --python PATH: that interpreter instead;\n"
           "--no-venv: never create one (the rows without an interpreter are skipped).\n"
           "--device cuda[:N]: the DiT on that GPU (CUDA builds): the device's matrix peak\n"
           "measured first (8192^3 products), then S forwards timed to the output back on\n"
           "the host, TFLOP/s, %% of that peak, peak device memory; with --torch the same\n"
           "network, weights and inputs in PyTorch on the same device (bf16 autocast,\n"
           "SDPA), its time, the ratio and the output difference. bf16 unless --precision\n"
           "fp32 (exact fp32, no TF32).\n"
           "--guidance: also guidance's two branches (the prompt, an empty one) as two\n"
           "passes and as one batched pass (vd_dit_forward_batch): both times (best of 2)\n"
           "and whether the outputs are the same bits.\n"
           "--dit CHECKPOINT: that checkpoint instead of random weights (a file, a sharded\n"
           "index or a folder, any layout and dtype vdit loads): its configuration, load\n"
           "time, S forwards at the latent (default 1,8,8), whether the output is finite,\n"
           "peak RSS. Wan2.2 (48 channels) gets per-token timesteps.\n");
}

static double phys_bytes(void)
{
    return (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
}

/* A time of `layers` blocks scaled to the model's: the per-forward part
 * (other) once, the blocks' part times model_layers / layers. */
static double scaled(const bcfg *c, double sec, double other)
{
    if (other < 0 || other > sec)
        other = 0;
    return other + (sec - other) * (double)c->model_layers / (double)c->layers;
}

/* --dit: a user's checkpoint, loaded as the models load it. */
static int run_file(const char *path, bcfg *c, int latent_set, int threads, vk_isa isa,
                    vk_prec prec, int steps)
{
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_dit *d = NULL;
    vk_ctx *kc = NULL;
    vd_dit_run *r = NULL;
    vd_dit_cond *cd = NULL;
    float *x = NULL, *ctx = NULL, *out = NULL, *tt = NULL;
    int ret;
    double t0 = vd_time(), t_open = 0;
    if ((ret = load_dit(path, 512, 0, prec, threads, NULL, &lg, &ck, &d, &t_open, NULL)))
        goto done;
    double t_load = vd_time() - t0;
    const vd_dit_config *g = vd_dit_get_config(d);
    if (!latent_set)
        c->f = 1, c->h = 8, c->w = 8;
    c->in_dim = g->in_dim, c->out_dim = g->out_dim, c->text_len = g->text_len;
    c->text_dim = g->text_dim;
    int per_tok = g->in_dim == 48 && !g->i2v;
    int64_t L = c->f * (c->h / 2) * (c->w / 2), nx = c->in_dim * c->f * c->h * c->w;
    size_t nparam = 0, nbytes = 0;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *t = vd_ckpt_at(ck, i);
        nparam += (size_t)vt_nelem(t);
        nbytes += (size_t)vt_nelem(t) * vt_dtype_size(t->dtype);
    }
    printf("dit file %s\n  dim %lld, %lld layers, %lld heads, ffn %lld, in %lld, out %lld, text "
           "%lld x %lld, freq %lld%s; %.2f G values, %.2f GB stored\n",
           path, (long long)g->dim, (long long)g->n_layers, (long long)g->n_heads,
           (long long)g->ffn_dim, (long long)g->in_dim, (long long)g->out_dim,
           (long long)g->text_len, (long long)g->text_dim, (long long)g->freq_dim,
           per_tok ? ", per-token timesteps" : "", (double)nparam / 1e9, (double)nbytes / 1e9);
    printf("  opened and loaded in %.2f s (%s; %.2f s with the %s preparation)\n", t_open,
           "mapped, canonicalized", t_load, vk_prec_name(prec));
    kc = vk_ctx_new_ex(threads, (int)isa, prec, &lg);
    if (!kc || !(r = vd_dit_run_new(d, kc))) {
        ret = kc ? VDIT_ERR_NOMEM : VDIT_ERR_UNSUPPORTED;
        goto done;
    }
    x = vd_malloc(sizeof(float) * (size_t)nx);
    ctx = vd_malloc(sizeof(float) * (size_t)(c->text_len * c->text_dim));
    out = vd_malloc(sizeof(float) * (size_t)(c->out_dim * c->f * c->h * c->w));
    tt = vd_malloc(sizeof(float) * (size_t)L);
    if (!x || !ctx || !out || !tt) {
        ret = VDIT_ERR_NOMEM;
        goto done;
    }
    uint64_t st = 42;
    for (int64_t i = 0; i < nx; i++)
        x[i] = (float)((double)(bench_rng_next(&st) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    for (int64_t i = 0; i < c->text_len * c->text_dim; i++)
        ctx[i] = (float)((double)(bench_rng_next(&st) >> 11) * (2.0 / 9007199254740992.0) - 1.0) *
                 0.3f;
    for (int64_t i = 0; i < L; i++)
        tt[i] = i < (c->h / 2) * (c->w / 2) && c->f > 1 ? 0.0f : 937.0f;
    if ((ret = vd_dit_cond_new(r, ctx, c->text_len, NULL, 0, &cd)))
        goto done;
    for (int s = 0; s < steps; s++) {
        t0 = vd_time();
        if ((ret = vd_dit_forward_tok(r, x, NULL, c->f, c->h, c->w, 937.0f, per_tok ? tt : NULL,
                                      cd, out)))
            goto done;
        printf("  forward %d: latent %lldx%lldx%lldx%lld (%lld tokens), %s: %.3f s\n", s + 1,
               (long long)c->in_dim, (long long)c->f, (long long)c->h, (long long)c->w,
               (long long)L, vk_prec_name(prec), vd_time() - t0);
    }
    int64_t no = c->out_dim * c->f * c->h * c->w, bad = 0;
    double mx = 0;
    for (int64_t i = 0; i < no; i++) {
        if (!isfinite(out[i]))
            bad++;
        else
            mx = fmax(mx, fabs(out[i]));
    }
    printf("  output: %s (max |v| %.3g); peak RSS %.0f MiB\n",
           bad ? "NOT FINITE" : "finite", mx, bench_peak_rss() / 1048576.0);
    if (bad) {
        printf("  %lld of %lld values are not finite\n", (long long)bad, (long long)no);
        ret = VDIT_ERR_FORMAT;
        snprintf(lg.msg, sizeof(lg.msg), "non-finite output");
    }
done:
    if (ret)
        fprintf(stderr, "vdit bench dit: %s\n", lg.msg);
    vd_free(x);
    vd_free(ctx);
    vd_free(out);
    vd_free(tt);
    vd_dit_cond_free(&cd);
    vd_dit_run_free(&r);
    vk_ctx_free(&kc);
    vd_dit_free(&d);
    vd_ckpt_free(&ck);
    return ret ? 1 : 0;
}

int bench_dit(int argc, char **argv)
{
    bcfg c = wan_1_3b;
    int threads = 0, steps = 2, torch = 0, keep = 0, do16 = 1, do32 = 1, isa_opt = -1;
    int dtype_set = 0, latent_set = 0;
    vt_dtype half = VT_F16; /* the 16-bit weight type of slot 0 (slot 1: fp32) */
    vk_prec prec_opt = VK_PREC_AUTO;
    const char *script = "models/bench/bench_dit_torch.py", *python = NULL, *dit_file = NULL;
    const char *rows_opt = NULL;
    int no_venv = 0;
    const char *device = NULL;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    /* the model first: the other options change its copy */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--model")) {
            if (!strcmp(argv[i + 1], "wan22-5b") || !strcmp(argv[i + 1], "wan2.2-ti2v-5b"))
                c = wan22_5b;
            else if (strcmp(argv[i + 1], "wan21-1.3b") && strcmp(argv[i + 1], "wan2.1-1.3b")) {
                fprintf(stderr, "vdit bench dit: --model wants wan21-1.3b or wan22-5b\n");
                return 2;
            }
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--model") && v) {
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            int bad = 0;
            threads = bench_parse_threads(v, &bad), i++;
            if (bad) {
                fprintf(stderr, "vdit bench dit: bad --threads '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--layers") && v) {
            c.layers = atoi(v), i++;
        } else if (!strcmp(a, "--steps") && v) {
            steps = atoi(v), i++;
        } else if (!strcmp(a, "--latent") && v) {
            long long f, h, w;
            if (sscanf(v, "%lld,%lld,%lld", &f, &h, &w) != 3) {
                fprintf(stderr, "vdit bench dit: --latent wants F,H,W\n");
                return 2;
            }
            c.f = f, c.h = h, c.w = w, i++;
            latent_set = 1;
        } else if (!strcmp(a, "--size") && v) {
            /* pixels -> latent as the family pads: sides to 2 latent rows (one
             * token), frames to 1 + 4k */
            long long pw, ph, pt;
            if (sscanf(v, "%lldx%lldx%lld", &pw, &ph, &pt) != 3 || pw < 1 || ph < 1 || pt < 1) {
                fprintf(stderr, "vdit bench dit: --size wants WxHxT (pixels, frames)\n");
                return 2;
            }
            int64_t a2 = 2 * c.vae_s;
            c.w = (pw + a2 - 1) / a2 * 2, c.h = (ph + a2 - 1) / a2 * 2, c.f = 1 + (pt - 1 + 3) / 4;
            latent_set = 1;
            i++;
        } else if (!strcmp(a, "--tokens") && v) {
            /* 1200 is the documented point; other counts scale the frame count */
            long long n = atoll(v);
            c.f = n / (c.h / 2 * (c.w / 2)) > 0 ? n / (c.h / 2 * (c.w / 2)) : 1, i++;
            latent_set = 1;
        } else if (!strcmp(a, "--dtype") && v) {
            do16 = !strcmp(v, "f16") || !strcmp(v, "both") || !strncmp(v, "bf16", 4);
            do32 = !strcmp(v, "f32") || !strcmp(v, "both") || !strcmp(v, "bf16,f32");
            if (!strncmp(v, "bf16", 4))
                half = VT_BF16;
            else if (!strcmp(v, "f16"))
                half = VT_F16;
            dtype_set = 1;
            i++;
        } else if (!strcmp(a, "--precision") && v) {
            if (bench_parse_prec(v, &prec_opt)) {
                fprintf(stderr, "vdit bench dit: --precision wants fp32, bf16 or auto\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--isa") && v) {
            if (bench_parse_isa(v, &isa_opt)) {
                fprintf(stderr, "vdit bench dit: --isa wants c, avx2, avx512 or avx512_bf16\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--torch")) {
            torch = 1;
        } else if (!strcmp(a, "--torch-rows") && v) {
            rows_opt = v, torch = 1, i++;
        } else if (!strcmp(a, "--torch-script") && v) {
            script = v, torch = 1, i++;
        } else if (!strcmp(a, "--python") && v) {
            python = v, torch = 1, i++;
        } else if (!strcmp(a, "--no-venv")) {
            no_venv = 1;
        } else if (!strcmp(a, "--dir") && v) {
            dir = v, i++;
        } else if (!strcmp(a, "--dit") && v) {
            dit_file = v, i++;
        } else if (!strcmp(a, "--keep")) {
            keep = 1;
        } else if (!strcmp(a, "--guidance")) {
            guidance_rows = 1;
        } else if (!strcmp(a, "--device") && v) {
            device = v, i++;
        } else {
            fprintf(stderr, "vdit bench dit: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!dtype_set && c.per_tok) /* 5B: 10 GB in bf16, as released; fp32 only when asked */
        half = VT_BF16, do16 = 1, do32 = 0;
    if (threads <= 0)
        threads = vd_cpu_count();
    if (c.layers < 1 || c.layers > c.model_layers || steps < 1 || c.f < 1 || c.h < 2 ||
        c.w < 2 || c.h % 2 || c.w % 2 || (!do16 && !do32)) {
        fprintf(stderr, "vdit bench dit: bad options (see --help)\n");
        return 2;
    }
    int64_t L = c.f * (c.h / 2) * (c.w / 2);
    vk_isa isa;
    vk_prec prec;
    if (bench_resolve("dit", threads, isa_opt, prec_opt, &isa, &prec))
        return 2;
    if (dit_file)
        return run_file(dit_file, &c, latent_set, threads, isa, prec, steps);
    if (device) {
        vk_device dv;
        vd_log dl = { 0 };
        if (vk_device_parse(device, &dv, &dl) || !dv.cuda || dv.is_auto) {
            fprintf(stderr, "vdit bench dit: --device takes cuda or cuda:N\n");
            return 2;
        }
#if !VK_HAVE_CUDA
        fprintf(stderr, "vdit bench dit: --device %s: this build has no CUDA backend\n", device);
        return 1;
#endif
        /* the device computes bf16 natively: --precision auto means bf16 there */
        prec = prec_opt == VK_PREC_F32 ? VK_PREC_F32 : VK_PREC_BF16;
        if (!dtype_set)
            half = VT_BF16, do16 = 1, do32 = 0;
    }
    vd_dit_config vc = { .dim = c.dim, .ffn_dim = c.ffn, .freq_dim = c.freq, .text_dim = c.text_dim,
                         .in_dim = c.in_dim, .out_dim = c.out_dim, .n_heads = c.heads,
                         .n_layers = c.layers, .text_len = c.text_len, .patch = { 1, 2, 2 } };
    const char *pn = vk_prec_name(prec);
    char how[256];
    double flops = vd_dit_flops(&vc, L);
    double peak = device ? 0 : vk_peak_gflops(isa, prec, threads, NULL, how, sizeof(how));
    int sub = c.layers < c.model_layers; /* a subset of the blocks: times also scaled */
    char lay[160];
    if (sub)
        snprintf(lay, sizeof(lay), "%lld of the model's %lld layers (times also scaled to %lld)",
                 (long long)c.layers, (long long)c.model_layers, (long long)c.model_layers);
    else
        snprintf(lay, sizeof(lay), "%lld layers", (long long)c.layers);
    printf("dit bench: %s: dim %lld, %s, %lld heads, ffn %lld, text %lld x %lld, latent "
           "%lldx%lldx%lldx%lld = %lld tokens (%lld frames of %lldx%lld)%s, %d threads\n",
           c.name, (long long)c.dim, lay, (long long)c.heads, (long long)c.ffn,
           (long long)c.text_len, (long long)c.text_dim, (long long)c.in_dim, (long long)c.f,
           (long long)c.h, (long long)c.w, (long long)L, (long long)(1 + 4 * (c.f - 1)),
           (long long)(c.w * c.vae_s), (long long)(c.h * c.vae_s),
           c.per_tok ? ", one timestep per token (first latent frame at 0)" : "", threads);
    if (device) /* the device's peak is measured when it is opened */
        printf("work per step %.1f GFLOP\n", flops / 1e9);
    else
        printf("level %s, precision %s; work per step %.1f GFLOP; %s peak %.1f GFLOP/s (%s)\n",
               vk_isa_name(isa), pn, flops / 1e9, pn, peak, how);
    fflush(stdout);

    spec *sp = calloc((size_t)(16 + c.layers * 40), sizeof(*sp));
    int ns = make_specs(&c, sp);
    double nparam = 0;
    for (int i = 0; i < ns; i++)
        nparam += (double)numel(&sp[i]);
    int64_t nx = c.in_dim * c.f * c.h * c.w;
    float *x = vd_malloc(sizeof(float) * (size_t)nx);
    float *ctx = vd_malloc(sizeof(float) * (size_t)(c.text_len * c.text_dim));
    float *t_tok = c.per_tok ? vd_malloc(sizeof(float) * (size_t)L) : NULL;
    uint64_t st = 42;
    for (int64_t i = 0; i < nx; i++)
        x[i] = (float)((double)(bench_rng_next(&st) >> 11) * (2.0 / 9007199254740992.0) - 1.0) * 1.7f;
    for (int64_t i = 0; i < c.text_len * c.text_dim; i++)
        ctx[i] = (float)((double)(bench_rng_next(&st) >> 11) * (2.0 / 9007199254740992.0) - 1.0) * 0.3f;
    float t = 937.0f;
    /* image-to-video's timesteps: latent frame 0 clean (0), the rest at t */
    for (int64_t i = 0; t_tok && i < L; i++)
        t_tok[i] = i < (c.h / 2) * (c.w / 2) && c.f > 1 ? 0.0f : t;
    bench_t_tok = t_tok;
    char wpath[2][1024], iopath[1024], opath[1024];
    vt_dtype kdt[2] = { half, VT_F32 };
    int rc = 0;
    float *out16 = NULL;
    double step[2] = { 0, 0 }, cpu[2] = { 0, 0 }, cond[2] = { 0, 0 }, other[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        if (!(k == 0 ? do16 : do32))
            continue;
        vt_dtype dt = kdt[k];
        snprintf(wpath[k], sizeof(wpath[k]), "%s/vdit_bench_dit_%s_d%lld_l%lld.safetensors", dir,
                 dt == VT_F16 ? "f16" : dt == VT_BF16 ? "bf16" : "f32", (long long)c.dim,
                 (long long)c.layers);
        double t0 = vd_time();
        if (write_weights(wpath[k], sp, ns, dt)) {
            fprintf(stderr, "vdit bench dit: cannot write %s\n", wpath[k]);
            rc = 1;
            break;
        }
        struct stat sb;
        stat(wpath[k], &sb);
        printf("%s weights: %s (%.2f GB, %.2f G values, written in %.1f s)\n", dt_name(dt),
               wpath[k], (double)sb.st_size / 1e9, nparam / 1e9, vd_time() - t0);
#if VK_HAVE_CUDA
        if (device) {
            rc = run_device(device, wpath[k], &c, threads, prec, steps, x, t, ctx, flops, torch,
                            script, python, no_venv, dir) ? 1 : rc;
            if (!keep)
                remove(wpath[k]);
            continue;
        }
#endif
        result res = { 0 };
        if (run_one(wpath[k], &c, threads, isa, prec, steps, x, t, ctx, &res)) {
            rc = 1;
            vd_free(res.out);
            break;
        }
        double gf = flops / res.step / 1e9;
        step[k] = res.step;
        cpu[k] = res.cpu;
        cond[k] = res.cond;
        other[k] = res.prof[VD_DIT_PROF_OTHER];
        {
            /* where the time went, and the matmul rates by kind */
            int64_t D = c.dim, Lt = L, T = c.text_len;
            double fl[VD_DIT_PROF_COUNT] = {
                [VD_DIT_PROF_PROJ] = 2.0 * Lt * D * D * 6 * c.layers,
                [VD_DIT_PROF_ATTN] = 4.0 * Lt * Lt * D * c.layers,
                [VD_DIT_PROF_XATTN] = 4.0 * Lt * T * D * c.layers,
                [VD_DIT_PROF_FFN] = 4.0 * Lt * D * c.ffn * c.layers,
            };
            const char *nm[VD_DIT_PROF_COUNT] = { "projections", "self-attention",
                                                  "cross-attention", "feed-forward",
                                                  "norms/rope/residual", "embed/head" };
            for (int j = 0; j < VD_DIT_PROF_COUNT; j++) {
                printf("    %-20s %7.3f s %5.1f%%", nm[j], res.prof[j],
                       100.0 * res.prof[j] / res.step);
                if (fl[j] > 0 && res.prof[j] > 0)
                    printf("  %6.1f GFLOP/s", fl[j] / res.prof[j] / 1e9);
                printf("\n");
            }
        }
        if (res.cpu > res.step * threads * 1.05 || res.cpu < res.step * threads * 0.9)
            printf("  note: %.2f of %d cores busy on average during the step (other load on the "
                   "machine?); at full use of %d cores the rate would be %.1f GFLOP/s\n",
                   res.cpu / res.step, threads, threads, flops / (res.cpu / threads) / 1e9);
        char prep[64] = "";
        snprintf(prep, sizeof(prep), " (prepared in %.2f s)", res.prep);
        printf("vdit %s weights: %.3f s/step  %.1f GFLOP/s  %.1f%% of the %s peak  (cond once "
               "per prompt %.3f s, load %.2f s%s, peak RSS %.0f MiB)\n",
               dt_name(kdt[k]), res.step, gf, 100.0 * gf / peak, pn, res.cond, res.load, prep,
               res.peak_rss / 1048576.0);
        if (sub)
            printf("vdit %s weights, scaled to %lld layers: %.3f s/forward (measured %lld "
                   "layers: embed/head %.3f s + blocks %.3f s)\n",
                   dt_name(kdt[k]), (long long)c.model_layers, scaled(&c, res.step, other[k]),
                   (long long)c.layers, other[k], res.step - other[k]);
        fflush(stdout);
        if (k == 0) {
            out16 = res.out;
        } else {
            if (out16) {
                double rel;
                double m = 0, mb = 0;
                for (int64_t i = 0; i < nx; i++) {
                    m = fmax(m, fabs(out16[i] - res.out[i]));
                    mb = fmax(mb, fabs(res.out[i]));
                }
                rel = mb > 0 ? m / mb : m;
                printf("%s vs fp32 weights (same values%s): max_abs %.2e rel %.2e\n",
                       dt_name(half), half == VT_BF16 ? " before bf16 rounding" : "", m, rel);
            }
            if (!out16)
                out16 = res.out;
            else
                vd_free(res.out);
        }
    }
    if (device) { /* done in run_device, with its own PyTorch row */
        vd_free(out16);
        vd_free(x);
        vd_free(ctx);
        vd_free(t_tok);
        bench_t_tok = NULL;
        free(sp);
        return rc;
    }
    /* --torch: the baselines, each compared with vdit at its precision on the
     * same weights file (0 fp32, 1 bf16; the run above is one of them) */
    trow rows[4] = {
        { .name = "PyTorch 2 bf16", .key = "torch-bf16",
          .args = "--dtype bf16 --impl vdit-py --attn sdpa", .bf16 = 1 },
        { .name = "diffusers bf16", .key = "diffusers", .args = "--dtype bf16 --impl diffusers",
          .bf16 = 1 },
        { .name = "PyTorch 2 fp32", .key = "torch-fp32",
          .args = "--dtype fp32 --impl vdit-py --attn sdpa" },
        { .name = "PyTorch (Debian) fp32", .key = "debian", .args = "--dtype fp32 --impl vdit-py",
          .extra = 1 },
    };
    int nrows = 0, trc = 0, kt = do16 ? 0 : 1, pi = prec == VK_PREC_BF16;
    float *vo[2] = { NULL, NULL };
    double vs[2] = { 0, 0 }, vcpu[2] = { 0, 0 }, voth[2] = { 0, 0 };
    int vwk[2] = { kt, kt }; /* the weight slot of vs[] */
    if (!rc && torch) {
        /* the time: the faster weight type (the same values, the same output) */
        int kb = step[0] > 0 && (step[1] <= 0 || step[0] <= step[1]) ? 0 : 1;
        vo[pi] = out16, vs[pi] = step[kb], vcpu[pi] = cpu[kb], vwk[pi] = kb, voth[pi] = other[kb];
        snprintf(iopath, sizeof(iopath), "%s/vdit_bench_dit_io.safetensors", dir);
        snprintf(opath, sizeof(opath), "%s/vdit_bench_dit_torch_out.bin", dir);
        char root[1024], vpy[1100] = "", why[1400] = "";
        bench_src_root(script, root, sizeof(root));
        printf("torch baselines (%s, %s weights):\n", script, dt_name(kdt[kt]));
        if (access(script, R_OK)) {
            fprintf(stderr, "vdit bench dit: no %s (run from the source tree or give "
                            "--torch-script)\n", script);
            trc = 1;
        } else if (write_io(iopath, &c, x, t, t_tok, ctx)) {
            fprintf(stderr, "vdit bench dit: cannot write %s\n", iopath);
            trc = 1;
        } else {
            bench_torch_python(root, python, !no_venv, vpy, sizeof(vpy), why, sizeof(why));
            for (int j = 0; j < 3; j++)
                rows[j].py = *vpy ? vpy : NULL, rows[j].why = why;
            if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0)
                rows[3].py = "/usr/bin/python3";
            else
                rows[3].why = "/usr/bin/python3 cannot import torch (Debian: apt-get install "
                              "python3-torch)";
            /* what does not fit: the fp32 rows' weights (fp32 copies of every
             * parameter), the Debian row's attention scores (heads x L x L
             * fp32, scores and their softmax) */
            static char why_w[160], why_a[200];
            double ram = phys_bytes();
            snprintf(why_w, sizeof(why_w), "fp32 weights %.1f GB, more than 3/4 of the %.1f GB "
                     "of memory", nparam * 4 / 1e9, ram / 1e9);
            double att = 2.0 * 4.0 * (double)c.heads * (double)L * (double)L;
            snprintf(why_a, sizeof(why_a), "its attention (softmax(q k^T) v, no SDPA in torch "
                     "1.13) holds %.1f GB of scores, more than half the %.1f GB of memory",
                     att / 1e9, ram / 1e9);
            for (int j = 0; j < 4; j++) {
                if (rows_opt && !strstr(rows_opt, rows[j].key)) {
                    rows[j].py = NULL, rows[j].why = "not in --torch-rows";
                } else if (rows[j].py && !rows[j].bf16 && nparam * 4 > 0.75 * ram) {
                    rows[j].py = NULL, rows[j].why = why_w;
                } else if (rows[j].py && j == 3 && att > 0.5 * ram) {
                    rows[j].py = NULL, rows[j].why = why_a;
                }
            }
            /* vdit at the other precision, when a row needs it and the CPU has it */
            int op = !pi, need = 0;
            for (int j = 0; j < 4; j++)
                need |= rows[j].py && rows[j].bf16 == op;
            if (need && (op == 0 || vk_isa_native_bf16(isa))) {
                vk_prec opp = op ? VK_PREC_BF16 : VK_PREC_F32;
                const char *on = vk_prec_name(opp);
                char how2[256];
                double peak2 = vk_peak_gflops(isa, opp, threads, NULL, how2, sizeof(how2));
                printf("vdit in %s too (for the %s rows), %s weights:\n", on, on,
                       dt_name(kdt[kt]));
                result r2 = { 0 };
                if (run_one(wpath[kt], &c, threads, isa, opp, steps, x, t, ctx, &r2)) {
                    vd_free(r2.out);
                    trc = 1;
                } else {
                    char prep[64] = "";
                    snprintf(prep, sizeof(prep), " (prepared in %.2f s)", r2.prep);
                    vo[op] = r2.out, vs[op] = r2.step, vcpu[op] = r2.cpu;
                    voth[op] = r2.prof[VD_DIT_PROF_OTHER];
                    printf("vdit %s, %s weights: %.3f s/step  %.1f GFLOP/s  %.1f%% of the %s "
                           "peak %.1f  (load %.2f s%s, peak RSS %.0f MiB)\n", on,
                           dt_name(kdt[kt]), r2.step, flops / r2.step / 1e9,
                           100.0 * flops / r2.step / 1e9 / peak2, on, peak2, r2.load, prep,
                           r2.peak_rss / 1048576.0);
                    if (sub)
                        printf("vdit %s, scaled to %lld layers: %.3f s/forward\n", on,
                               (long long)c.model_layers, scaled(&c, r2.step, voth[op]));
                }
            }
            float *to = vd_malloc(sizeof(float) * (size_t)nx);
            for (int j = 0; j < 4 && to; j++) {
                trow *r = &rows[j];
                if (!r->py) {
                    printf("%s: skipped: %s\n", r->name, r->why);
                    continue;
                }
                printf("%s (%s):\n", r->name, r->py);
                remove(opath);
                FILE *fp = NULL;
                if (torch_run(r, script, wpath[kt], iopath, opath, threads, steps) ||
                    !(fp = fopen(opath, "rb")) || fread(to, 4, (size_t)nx, fp) != (size_t)nx) {
                    fprintf(stderr, "vdit bench dit: the %s run failed (see above)\n", r->name);
                    trc = 1;
                    if (fp)
                        fclose(fp);
                    continue;
                }
                fclose(fp);
                r->ok = 1;
                nrows++;
                r->vp = vo[r->bf16] ? r->bf16 : pi;
                r->rel = rel_diff(to, vo[r->vp], nx);
                r->rel32 = vo[0] ? rel_diff(to, vo[0], nx) : -1;
                char lab[256];
                trow_label(r, 0, lab, sizeof(lab));
                printf("%s: %.3f s/step (process CPU %.1f s); vdit %s %.3f s: %.2fx the time "
                       "(CPU time %.2fx); output vs vdit %s: rel %.2e\n", lab, r->sec, r->cpu,
                       r->vp ? "bf16" : "fp32", vs[r->vp], vs[r->vp] / r->sec,
                       vcpu[r->vp] / r->cpu, r->vp ? "bf16" : "fp32", r->rel);
                if (sub)
                    printf("%s, scaled to %lld layers: %.3f s/forward (blocks %.3f s of the "
                           "measured step); vdit %s %.3f s: %.2fx the time\n", lab,
                           (long long)c.model_layers, scaled(&c, r->sec, r->sec - r->blk),
                           r->blk, r->vp ? "bf16" : "fp32", scaled(&c, vs[r->vp], voth[r->vp]),
                           scaled(&c, vs[r->vp], voth[r->vp]) /
                               scaled(&c, r->sec, r->sec - r->blk));
            }
            vd_free(to);
            remove(opath);
            if (!keep)
                remove(iopath);
        }
        if (nrows) {
            printf("torch baselines, %d threads, best of %d steps (ratio: vdit's time at the "
                   "same precision over theirs; rel: max |difference| / max |vdit|)%s:\n",
                   threads, steps, sub ? "; scaled: to the model's layers" : "");
            printf("  %-58s %8s %7s  %-13s %7s %9s %9s %12s%s\n", "", "s/step", "CPU s",
                   "vdit s/step", "ratio", "CPU ratio", "rel", "rel to fp32",
                   sub ? "   scaled s  sc. ratio" : "");
            double busy = 1;
            for (int p = 1; p >= 0; p--)
                if (vo[p]) {
                    busy = fmin(busy, vcpu[p] / (vs[p] * threads));
                    char lab[256], r32[16] = "", sc[32] = "";
                    snprintf(lab, sizeof(lab), "vdit %s (%s weights)", p ? "bf16" : "fp32",
                             dt_name(kdt[vwk[p]]));
                    if (p && vo[0])
                        snprintf(r32, sizeof(r32), "%.2e", rel_diff(vo[1], vo[0], nx));
                    if (sub)
                        snprintf(sc, sizeof(sc), " %10.2f", scaled(&c, vs[p], voth[p]));
                    printf("  %-58s %8.3f %7.1f  %-13s %7s %9s %9s %12s%s\n", lab, vs[p], vcpu[p],
                           "", "", "", "", r32, sc);
                }
            for (int j = 0; j < 4; j++) {
                trow *r = &rows[j];
                if (!r->ok)
                    continue;
                char lab[256], vst[32], r32[16] = "", sc[48] = "";
                trow_label(r, 0, lab, sizeof(lab));
                snprintf(vst, sizeof(vst), "%s %.3f", r->vp ? "bf16" : "fp32", vs[r->vp]);
                if (r->rel32 >= 0)
                    snprintf(r32, sizeof(r32), "%.2e", r->rel32);
                if (sub) {
                    double ts = scaled(&c, r->sec, r->sec - r->blk);
                    snprintf(sc, sizeof(sc), " %10.2f %9.2fx", ts,
                             scaled(&c, vs[r->vp], voth[r->vp]) / ts);
                }
                printf("  %-58s %8.3f %7.1f  %-13s %6.2fx %8.2fx %9.2e %12s%s\n", lab, r->sec,
                       r->cpu, vst, vs[r->vp] / r->sec, vcpu[r->vp] / r->cpu, r->rel, r32, sc);
                busy = fmin(busy, r->cpu / (r->sec * threads));
            }
            if (busy < 0.9)
                printf("note: as few as %.2f of the %d cores busy on average in a step (other "
                       "load on the machine, or a single-threaded part): the CPU ratio is the "
                       "steadier comparison\n", busy * threads, threads);
        }
    }
    if (!keep)
        for (int k = 0; k < 2; k++)
            if (k == 0 ? do16 : do32)
                remove(wpath[k]);
    if (!rc) {
        int k = step[0] > 0 && (step[1] <= 0 || step[0] <= step[1]) ? 0 : 1;
        char sc[160] = "";
        if (sub)
            snprintf(sc, sizeof(sc), "; scaled to %lld layers: %.2f s/forward",
                     (long long)c.model_layers, scaled(&c, step[k], other[k]));
        printf("dit %s (%s, %lld tokens, %lld of %lld layers): %.2f s/forward (text %.2f s)%s, "
               "%.0f%% of the %s peak %.0f GFLOP/s (%s)\n",
               pn, c.name, (long long)L, (long long)c.layers, (long long)c.model_layers, step[k],
               cond[k], sc, 100.0 * flops / step[k] / 1e9 / peak, pn, peak, vk_isa_name(isa));
    }
    /* one line per compared baseline (the Debian row only when it is the only one) */
    int main_rows = 0;
    for (int j = 0; j < 4; j++)
        main_rows += rows[j].ok && !rows[j].extra;
    for (int j = 0; j < 4; j++) {
        trow *r = &rows[j];
        if (!r->ok || (r->extra && main_rows))
            continue;
        char lab[256], sc[160] = "";
        trow_label(r, 1, lab, sizeof(lab));
        if (sub)
            snprintf(sc, sizeof(sc), "; scaled to %lld layers: %.2f s vs %.2f s",
                     (long long)c.model_layers, scaled(&c, vs[r->vp], voth[r->vp]),
                     scaled(&c, r->sec, r->sec - r->blk));
        printf("vs %s: vdit %s%s %.2fx the time (CPU time %.2fx)%s\n", lab,
               r->vp ? "bf16" : "fp32", r->vp != r->bf16 ? " (no vdit bf16 run)" : "",
               vs[r->vp] / r->sec, vcpu[r->vp] / r->cpu, sc);
    }
    if (vo[!pi])
        vd_free(vo[!pi]);
    vd_free(out16);
    vd_free(x);
    vd_free(ctx);
    vd_free(t_tok);
    bench_t_tok = NULL;
    free(sp);
    return rc ? rc : trc;
}
