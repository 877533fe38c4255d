/* umT5 encoder unit tests on generated checkpoints: an independent double-
 * precision forward pass written from the README semantics, the three key
 * layouts (original, HF/diffusers/repackaged with a prefix and a tied
 * embedding copy), F32/F16/BF16 and scaled-fp8 weights, the padding rule
 * the pipeline relies on, and errors on broken checkpoints. */
#include "../t.h"
#include "ckpt.h"
#include "text/text.h"

enum { V = 64, D = 16, A = 24, F = 32, H = 3, NL = 2, NB = 8 };

typedef struct model {
    float *emb, *norm, *n1[NL], *n2[NL], *pos[NL];
    float *q[NL], *k[NL], *v[NL], *o[NL], *g[NL], *f1[NL], *f2[NL];
} model;

static float *rnd(t_rng *r, size_t n, float mean, float std)
{
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = mean + std * 1.7f * t_uniform(r);
    return x;
}

static void model_init(model *m, uint64_t seed)
{
    t_rng r = { seed };
    m->emb = rnd(&r, V * D, 0, 1);
    m->norm = rnd(&r, D, 1, 0.1f);
    for (int l = 0; l < NL; l++) {
        m->n1[l] = rnd(&r, D, 1, 0.1f);
        m->n2[l] = rnd(&r, D, 1, 0.1f);
        m->pos[l] = rnd(&r, NB * H, 0, 0.5f);
        m->q[l] = rnd(&r, A * D, 0, 0.7f / 4);
        m->k[l] = rnd(&r, A * D, 0, 0.7f / 4);
        m->v[l] = rnd(&r, A * D, 0, 0.25f);
        m->o[l] = rnd(&r, D * A, 0, 0.2f);
        m->g[l] = rnd(&r, F * D, 0, 0.25f);
        m->f1[l] = rnd(&r, F * D, 0, 0.25f);
        m->f2[l] = rnd(&r, D * F, 0, 0.18f);
    }
}

static void model_free(model *m)
{
    free(m->emb);
    free(m->norm);
    for (int l = 0; l < NL; l++) {
        free(m->n1[l]);
        free(m->n2[l]);
        free(m->pos[l]);
        free(m->q[l]);
        free(m->k[l]);
        free(m->v[l]);
        free(m->o[l]);
        free(m->g[l]);
        free(m->f1[l]);
        free(m->f2[l]);
    }
}

/* ---- independent reference (double) ---------------------------------------- */

static int ref_bucket(int rel)
{
    int nb = NB / 2, out = rel > 0 ? nb : 0, d = abs(rel), exact = nb / 2;
    if (d < exact)
        return out + d;
    int large = exact + (int)floor(log((double)d / exact) / log(128.0 / exact) * (nb - exact) + 1e-9);
    return out + (large < nb - 1 ? large : nb - 1);
}

static void ref_rms(const double *x, double *y, const float *w, int n)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++)
            s += x[i * D + j] * x[i * D + j];
        double r = 1.0 / sqrt(s / D + 1e-6);
        for (int j = 0; j < D; j++)
            y[i * D + j] = x[i * D + j] * r * w[j];
    }
}

static void ref_lin(const double *x, int n, int in, const float *w, int out, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int j = 0; j < in; j++)
                s += x[i * in + j] * w[o * in + j];
            y[i * out + o] = s;
        }
}

static void ref_forward(const model *m, const int32_t *ids, int n, int n_real, float *out)
{
    double *x = calloc((size_t)n * D, 8), *h = calloc((size_t)n * D, 8), *q = calloc((size_t)n * A, 8),
           *k = calloc((size_t)n * A, 8), *v = calloc((size_t)n * A, 8), *o = calloc((size_t)n * A, 8),
           *g = calloc((size_t)n * F, 8), *f = calloc((size_t)n * F, 8), *y = calloc((size_t)n * D, 8),
           *s = calloc((size_t)n, 8);
    const int hd = A / H;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            x[i * D + j] = m->emb[ids[i] * D + j];
    for (int l = 0; l < NL; l++) {
        ref_rms(x, h, m->n1[l], n);
        ref_lin(h, n, D, m->q[l], A, q);
        ref_lin(h, n, D, m->k[l], A, k);
        ref_lin(h, n, D, m->v[l], A, v);
        for (int hh = 0; hh < H; hh++)
            for (int i = 0; i < n; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < n; j++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++)
                        d += q[i * A + hh * hd + e] * k[j * A + hh * hd + e];
                    d += m->pos[l][ref_bucket(j - i) * H + hh];
                    s[j] = j < n_real ? d : -1e300; /* masked key */
                    if (s[j] > mx)
                        mx = s[j];
                }
                for (int j = 0; j < n; j++) {
                    s[j] = j < n_real ? exp(s[j] - mx) : 0;
                    sum += s[j];
                }
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++)
                        acc += s[j] * v[j * A + hh * hd + e];
                    o[i * A + hh * hd + e] = acc / sum;
                }
            }
        ref_lin(o, n, A, m->o[l], D, y);
        for (int i = 0; i < n * D; i++)
            x[i] += y[i];
        ref_rms(x, h, m->n2[l], n);
        ref_lin(h, n, D, m->g[l], F, g);
        ref_lin(h, n, D, m->f1[l], F, f);
        for (int i = 0; i < n * F; i++) {
            double z = g[i];
            f[i] *= 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
        }
        ref_lin(f, n, F, m->f2[l], D, y);
        for (int i = 0; i < n * D; i++)
            x[i] += y[i];
    }
    ref_rms(x, h, m->norm, n);
    for (int i = 0; i < n * D; i++)
        out[i] = (float)h[i];
    free(x), free(h), free(q), free(k), free(v), free(o), free(g), free(f), free(y), free(s);
}

/* ---- checkpoints ------------------------------------------------------------- */

enum { LAYOUT_ORIG, LAYOUT_HF };

/* Adds one tensor converted to dtype (F32, F16, BF16). */
static void add(vd_ckpt *ck, const char *name, const float *x, int ndim, int64_t d0, int64_t d1,
                vt_dtype dt)
{
    int64_t shape[2] = { d0, d1 };
    size_t n = (size_t)(ndim == 1 ? d0 : d0 * d1);
    void *buf = vd_malloc(n * vt_dtype_size(dt));
    for (size_t i = 0; i < n; i++) {
        if (dt == VT_F32)
            ((float *)buf)[i] = x[i];
        else if (dt == VT_F16)
            ((uint16_t *)buf)[i] = vt_f32_to_f16(x[i]);
        else
            ((uint16_t *)buf)[i] = vt_f32_to_bf16(x[i]);
    }
    int rc = vd_ckpt_add(ck, name, dt, ndim, shape, buf, buf, "generated", NULL);
    T_CHECK(rc == 0, "add %s", name);
}

/* Rounds the model's weights to dt in place (so the reference sees the
 * values the engine sees). */
static void round_to(float *x, size_t n, vt_dtype dt)
{
    for (size_t i = 0; i < n; i++)
        x[i] = dt == VT_F16 ? vt_f16_to_f32(vt_f32_to_f16(x[i]))
               : dt == VT_BF16 ? vt_bf16_to_f32(vt_f32_to_bf16(x[i])) : x[i];
}

static void model_round(model *m, vt_dtype dt)
{
    round_to(m->emb, V * D, dt);
    for (int l = 0; l < NL; l++) {
        round_to(m->q[l], A * D, dt);
        round_to(m->k[l], A * D, dt);
        round_to(m->v[l], A * D, dt);
        round_to(m->o[l], D * A, dt);
        round_to(m->g[l], F * D, dt);
        round_to(m->f1[l], F * D, dt);
        round_to(m->f2[l], D * F, dt);
    }
}

static vd_ckpt *make_ckpt(const model *m, int layout, vt_dtype dt, const char *prefix)
{
    vd_ckpt *ck = vd_ckpt_new();
    char nm[256];
#define N(...) (snprintf(nm, sizeof(nm), __VA_ARGS__), nm)
    if (layout == LAYOUT_ORIG) {
        add(ck, N("%stoken_embedding.weight", prefix), m->emb, 2, V, D, dt);
        add(ck, N("%snorm.weight", prefix), m->norm, 1, D, 0, VT_F32);
    } else {
        add(ck, N("%sshared.weight", prefix), m->emb, 2, V, D, dt);
        add(ck, N("%sencoder.embed_tokens.weight", prefix), m->emb, 2, V, D, dt);
        add(ck, N("%sencoder.final_layer_norm.weight", prefix), m->norm, 1, D, 0, VT_F32);
    }
    for (int l = 0; l < NL; l++) {
        const char *a = layout == LAYOUT_ORIG ? "blocks.%d.attn." : "encoder.block.%d.layer.0.SelfAttention.";
        char pa[128], pf[128];
        snprintf(pa, sizeof(pa), a, l);
        if (layout == LAYOUT_ORIG) {
            snprintf(pf, sizeof(pf), "blocks.%d.ffn.", l);
            add(ck, N("%sblocks.%d.norm1.weight", prefix, l), m->n1[l], 1, D, 0, VT_F32);
            add(ck, N("%sblocks.%d.norm2.weight", prefix, l), m->n2[l], 1, D, 0, VT_F32);
            add(ck, N("%sblocks.%d.pos_embedding.embedding.weight", prefix, l), m->pos[l], 2, NB, H, VT_F32);
            add(ck, N("%s%sgate.0.weight", prefix, pf), m->g[l], 2, F, D, dt);
            add(ck, N("%s%sfc1.weight", prefix, pf), m->f1[l], 2, F, D, dt);
            add(ck, N("%s%sfc2.weight", prefix, pf), m->f2[l], 2, D, F, dt);
        } else {
            snprintf(pf, sizeof(pf), "encoder.block.%d.layer.1.DenseReluDense.", l);
            add(ck, N("%sencoder.block.%d.layer.0.layer_norm.weight", prefix, l), m->n1[l], 1, D, 0, VT_F32);
            add(ck, N("%sencoder.block.%d.layer.1.layer_norm.weight", prefix, l), m->n2[l], 1, D, 0, VT_F32);
            add(ck, N("%s%srelative_attention_bias.weight", prefix, pa), m->pos[l], 2, NB, H, VT_F32);
            add(ck, N("%s%swi_0.weight", prefix, pf), m->g[l], 2, F, D, dt);
            add(ck, N("%s%swi_1.weight", prefix, pf), m->f1[l], 2, F, D, dt);
            add(ck, N("%s%swo.weight", prefix, pf), m->f2[l], 2, D, F, dt);
        }
        add(ck, N("%s%sq.weight", prefix, pa), m->q[l], 2, A, D, dt);
        add(ck, N("%s%sk.weight", prefix, pa), m->k[l], 2, A, D, dt);
        add(ck, N("%s%sv.weight", prefix, pa), m->v[l], 2, A, D, dt);
        add(ck, N("%s%so.weight", prefix, pa), m->o[l], 2, D, A, dt);
    }
#undef N
    return ck;
}

static float *run(vd_ckpt *ck, vk_ctx *kc, const int32_t *ids, int n, int n_real, int *rc_out)
{
    vd_log lg = { 0 };
    vd_t5 *t = NULL;
    float *out = NULL;
    int rc = vd_t5_canonicalize(ck, &lg);
    if (!rc)
        rc = vd_t5_load(ck, &lg, &t);
    if (!rc) {
        const vd_t5_config *c = vd_t5_get_config(t);
        T_CHECK(c->vocab == V && c->dim == D && c->dim_attn == A && c->dim_ffn == F &&
                    c->n_heads == H && c->n_layers == NL && c->n_buckets == NB && !c->shared_pos,
                "config from shapes");
        out = malloc((size_t)n * D * sizeof(float));
        rc = vd_t5_encode(t, kc, ids, n, n_real, out);
    }
    if (rc) {
        fprintf(stderr, "  (%s)\n", lg.msg[0] ? lg.msg : kc->log && kc->log->msg[0] ? kc->log->msg : "");
        free(out);
        out = NULL;
    }
    vd_t5_free(&t);
    *rc_out = rc;
    return out;
}

static void compare(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double rel, m = got ? t_maxabs(got, want, n, &rel) : 1e9;
    T_CHECK(got && m <= tol, "%s: max_abs %.3g (tol %.3g)", what, m, tol);
    if (got)
        printf("%-36s max_abs %.3e\n", what, m);
}

/* fp8: every linear weight a known e4m3 code times a power-of-two scale,
 * compared with the same model written in F32. */
static void test_fp8(vk_ctx *kc, const int32_t *ids, int n)
{
    static const struct { uint8_t code; float val; } k8[] = {
        { 0x38, 1.0f }, { 0x3c, 1.5f }, { 0x30, 0.5f }, { 0xb8, -1.0f }, { 0x40, 2.0f },
        { 0x01, 1.0f / 512 }, { 0x08, 1.0f / 64 }, { 0x7e, 448.0f }, { 0xc5, -3.25f }, { 0x00, 0 },
    };
    const float scale = 1.0f / 16;
    model m;
    model_init(&m, 99);
    vd_ckpt *ck8 = vd_ckpt_new();
    t_rng r = { 5 };
    char nm[128];
    const char *names[7] = { "attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate.0", "ffn.fc1", "ffn.fc2" };
    for (int l = 0; l < NL; l++) {
        float *w[7] = { m.q[l], m.k[l], m.v[l], m.o[l], m.g[l], m.f1[l], m.f2[l] };
        int64_t sh[7][2] = { { A, D }, { A, D }, { A, D }, { D, A }, { F, D }, { F, D }, { D, F } };
        for (int i = 0; i < 7; i++) {
            size_t cnt = (size_t)(sh[i][0] * sh[i][1]);
            uint8_t *b = vd_malloc(cnt);
            for (size_t j = 0; j < cnt; j++) {
                /* mostly small codes; 448 rarely, to keep activations sane */
                int c = (int)(t_next(&r) % (VD_ARRAY_SIZE(k8) * 4));
                c = c < (int)VD_ARRAY_SIZE(k8) ? c : (int)(c % 5);
                if (k8[c].code == 0x7e && t_next(&r) % 8)
                    c = 0;
                b[j] = k8[c].code;
                w[i][j] = k8[c].val * scale * 0.3f;
            }
            snprintf(nm, sizeof(nm), "blocks.%d.%s.weight", l, names[i]);
            vd_ckpt_add(ck8, nm, VT_F8_E4M3, 2, sh[i], b, b, "fp8", NULL);
            float *s = vd_malloc(4);
            *s = scale * 0.3f;
            snprintf(nm, sizeof(nm), "blocks.%d.%s.scale_weight", l, names[i]);
            vd_ckpt_add(ck8, nm, VT_F32, 0, sh[i], s, s, "fp8", NULL);
        }
        snprintf(nm, sizeof(nm), "blocks.%d.norm1.weight", l);
        add(ck8, nm, m.n1[l], 1, D, 0, VT_F32);
        snprintf(nm, sizeof(nm), "blocks.%d.norm2.weight", l);
        add(ck8, nm, m.n2[l], 1, D, 0, VT_F32);
        snprintf(nm, sizeof(nm), "blocks.%d.pos_embedding.embedding.weight", l);
        add(ck8, nm, m.pos[l], 2, NB, H, VT_F32);
    }
    add(ck8, "token_embedding.weight", m.emb, 2, V, D, VT_BF16);
    add(ck8, "norm.weight", m.norm, 1, D, 0, VT_F32);
    model_round(&m, VT_BF16); /* the embedding; the fp8 products are exact in bf16 */
    float *want = malloc((size_t)n * D * 4);
    ref_forward(&m, ids, n, n, want);
    int rc;
    float *got = run(ck8, kc, ids, n, n, &rc);
    T_CHECK(rc == 0, "fp8 load/encode: %d", rc);
    compare("fp8 e4m3 + scale_weight vs reference", got, want, (size_t)n * D, 1e-4);
    free(got);
    free(want);
    vd_ckpt_free(&ck8);
    model_free(&m);
}

static void test_errors(vk_ctx *kc, const model *m, const int32_t *ids)
{
    vd_log lg = { 0 };
    vd_t5 *t = NULL;
    /* an unrelated checkpoint */
    vd_ckpt *ck = vd_ckpt_new();
    float one = 1;
    int64_t s1 = 1;
    vd_ckpt_add(ck, "something.else", VT_F32, 1, &s1, &one, NULL, "x", NULL);
    T_CHECK(vd_t5_canonicalize(ck, &lg) == VDIT_ERR_MISSING, "unknown layout: %s", lg.msg);
    vd_ckpt_free(&ck);
    /* a missing block tensor */
    ck = make_ckpt(m, LAYOUT_ORIG, VT_F32, "");
    vd_ckpt *ck2 = vd_ckpt_new();
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *x = vd_ckpt_at(ck, i);
        if (strcmp(x->name, "blocks.1.ffn.fc2.weight"))
            vd_ckpt_add(ck2, x->name, x->dtype, x->ndim, x->shape, x->data, NULL, "x", NULL);
    }
    int rc = vd_t5_load(ck2, &lg, &t);
    T_CHECK(rc < 0 && !t && strstr(lg.msg, "blocks.1.ffn.fc2.weight"), "missing tensor: %d %s", rc, lg.msg);
    vd_ckpt_free(&ck2);
    /* a wrong shape */
    ck2 = vd_ckpt_new();
    for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
        const vt_tensor *x = vd_ckpt_at(ck, i);
        int64_t sh[2] = { x->shape[0], x->shape[1] };
        if (!strcmp(x->name, "blocks.0.attn.o.weight"))
            sh[1] = A - 1;
        vd_ckpt_add(ck2, x->name, x->dtype, x->ndim, sh, x->data, NULL, "x", NULL);
    }
    rc = vd_t5_load(ck2, &lg, &t);
    T_CHECK(rc < 0 && !t && strstr(lg.msg, "blocks.0.attn.o.weight"), "bad shape: %d %s", rc, lg.msg);
    vd_ckpt_free(&ck2);
    /* ids outside the vocabulary */
    T_CHECK(vd_t5_load(ck, &lg, &t) == 0, "%s", lg.msg);
    int32_t bad[3] = { ids[0], V, 1 };
    float out[3 * D];
    T_CHECK(vd_t5_encode(t, kc, bad, 3, 3, out) == VDIT_ERR_INVALID_ARG, "id >= vocab");
    T_CHECK(vd_t5_encode(t, kc, bad, 3, 4, out) == VDIT_ERR_INVALID_ARG, "n_real > n");
    vd_t5_free(&t);
    vd_ckpt_free(&ck);
}

int main(void)
{
    vk_ctx *kc = vk_ctx_new(1, 0, NULL);
    model m;
    model_init(&m, 1234);
    enum { N = 150, NR = 141 }; /* distances beyond 128 */
    int32_t ids[N];
    t_rng r = { 77 };
    for (int i = 0; i < N; i++)
        ids[i] = i < NR - 1 ? 2 + (int32_t)(t_next(&r) % (V - 2)) : i == NR - 1 ? 1 : 0;
    float *want = malloc(N * D * 4);
    int rc;

    /* F32, original names: against the independent reference */
    ref_forward(&m, ids, N, NR, want);
    vd_ckpt *ck = make_ckpt(&m, LAYOUT_ORIG, VT_F32, "");
    float *got = run(ck, kc, ids, N, NR, &rc);
    compare("F32 original names vs reference", got, want, N * D, 2e-5);
    /* the rows the pipeline keeps equal an encoding of the real ids alone */
    float *alone = run(ck, kc, ids, NR, NR, &rc);
    compare("real rows: padded vs unpadded", alone, got, NR * D, 2e-6);
    free(alone);
    free(got);
    vd_ckpt_free(&ck);
    test_errors(kc, &m, ids);

    /* stored 16-bit types, both layouts, with a prefix and a tied copy */
    vt_dtype dts[2] = { VT_BF16, VT_F16 };
    for (int d = 0; d < 2; d++) {
        model mr;
        model_init(&mr, 1234);
        model_round(&mr, dts[d]);
        ref_forward(&mr, ids, N, NR, want);
        model_free(&mr);
        vd_ckpt *a = make_ckpt(&m, LAYOUT_ORIG, dts[d], "");
        vd_ckpt *b = make_ckpt(&m, LAYOUT_HF, dts[d], "text_encoders.umt5xxl.transformer.");
        vd_ckpt *c = make_ckpt(&m, LAYOUT_HF, dts[d], "");
        float *ga = run(a, kc, ids, N, NR, &rc);
        float *gb = run(b, kc, ids, N, NR, &rc);
        float *gc = run(c, kc, ids, N, NR, &rc);
        char what[64];
        snprintf(what, sizeof(what), "%s original vs reference", vt_dtype_name(dts[d]));
        compare(what, ga, want, N * D, 2e-5);
        snprintf(what, sizeof(what), "%s HF + prefix == original", vt_dtype_name(dts[d]));
        compare(what, gb, ga, N * D, 0);
        snprintf(what, sizeof(what), "%s HF == original", vt_dtype_name(dts[d]));
        compare(what, gc, ga, N * D, 0);
        free(ga), free(gb), free(gc);
        vd_ckpt_free(&a), vd_ckpt_free(&b), vd_ckpt_free(&c);
    }
    test_fp8(kc, ids, 40);

    /* buckets: the boundaries the README names */
    T_CHECK(vd_t5_bucket(16, 32, 128) == 26 && vd_t5_bucket(-32, 32, 128) == 12 &&
                vd_t5_bucket(64, 32, 128) == 30 && vd_t5_bucket(-128, 32, 128) == 15 &&
                vd_t5_bucket(7, 32, 128) == 23 && vd_t5_bucket(0, 32, 128) == 0,
            "bucket boundaries");
    free(want);
    model_free(&m);
    vk_ctx_free(&kc);
    T_DONE();
}
