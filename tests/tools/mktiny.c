/* mktiny: writes a tiny random-weight model folder in vdit's own layout
 * (Wan2.1 key names, F32), small enough that a whole generation runs in a
 * fraction of a second. Used by the pipeline, CLI and adapter tests.
 *
 *   mktiny OUT_DIR TOKENIZER [SEED [WAN22_VAE]]
 *
 * With WAN22_VAE (a Wan2.2-VAE safetensors file, e.g. the conformance
 * folder's), a Wan2.2 TI2V folder instead: the DiT takes 48 latent channels
 * and the VAE is that file, copied as Wan2.2_VAE.safetensors; 64x64.
 *
 * OUT_DIR/diffusion_pytorch_model.safetensors  DiT: dim 32, 2 heads, 2 layers
 * OUT_DIR/Wan2.1_VAE.safetensors               VAE: dim 4, z_dim 16
 * OUT_DIR/models_t5_umt5-xxl-enc.safetensors   umT5: dim 32, 2 layers
 * OUT_DIR/tokenizer/spiece.model               copy of TOKENIZER
 * OUT_DIR/vdit.json                            64x48, 9 frames, 4 steps
 *
 * Weights: uniform with the variance of N(0, 1/fan_in) (norm scales around
 * 1, biases small), from a fixed splitmix64 stream: the same seed gives the
 * same bytes. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct tens {
    char name[200];
    int nd;
    int64_t sh[5];
    float *d;
} tens;

typedef struct tset {
    tens *t;
    int n, cap;
    uint64_t rng;
} tset;

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* mean + uniform with standard deviation std */
static void add(tset *s, const char *name, float mean, float std, int nd, int64_t d0, int64_t d1,
                int64_t d2, int64_t d3, int64_t d4)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->t = realloc(s->t, sizeof(tens) * (size_t)s->cap);
        if (!s->t)
            exit(1);
    }
    tens *t = &s->t[s->n++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->nd = nd;
    int64_t d[5] = { d0, d1, d2, d3, d4 }, n = 1;
    for (int i = 0; i < nd; i++)
        n *= (t->sh[i] = d[i]);
    t->d = malloc(sizeof(float) * (size_t)n);
    if (!t->d)
        exit(1);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(next(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
        t->d[i] = mean + std * (float)(u * 1.7320508075688772);
    }
}

static float rs(int64_t fan_in)
{
    return 1.0f / sqrtf((float)fan_in);
}

#define W2(s, nm, o, i) add(s, nm, 0, rs(i), 2, o, i, 0, 0, 0)
#define B1(s, nm, o) add(s, nm, 0, 0.02f, 1, o, 0, 0, 0, 0)

static int write_st(const tset *s, const char *path)
{
    size_t hcap = 1 << 20, hl = 0;
    char *h = malloc(hcap);
    if (!h)
        return -1;
    hl += (size_t)snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        const tens *t = &s->t[i];
        uint64_t n = 1;
        for (int k = 0; k < t->nd; k++)
            n *= (uint64_t)t->sh[k];
        hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t->name);
        for (int k = 0; k < t->nd; k++)
            hl += (size_t)snprintf(h + hl, hcap - hl, "%s%lld", k ? "," : "", (long long)t->sh[k]);
        hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%llu,%llu]}",
                               (unsigned long long)off, (unsigned long long)(off + 4 * n));
        off += 4 * n;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    while (hl % 8)
        h[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    uint64_t hl64 = hl;
    fwrite(&hl64, 8, 1, f);
    fwrite(h, 1, hl, f);
    for (int i = 0; i < s->n; i++) {
        const tens *t = &s->t[i];
        size_t n = 1;
        for (int k = 0; k < t->nd; k++)
            n *= (size_t)t->sh[k];
        fwrite(t->d, 4, n, f);
    }
    free(h);
    return fclose(f) ? -1 : 0;
}

static void tset_free(tset *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->t[i].d);
    free(s->t);
    s->t = NULL;
    s->n = s->cap = 0;
}

/* ---- DiT (WanModel t2v) ---- */
enum { DIT_DIM = 32, DIT_FFN = 64, DIT_FREQ = 32, DIT_LAYERS = 2, TXT_DIM = 32, Z = 16 };

static int64_t dit_z = Z; /* the DiT's latent channels (48 for Wan2.2) */

static void make_dit(tset *s)
{
    char nm[96];
    int64_t d = DIT_DIM;
    add(s, "patch_embedding.weight", 0, rs(dit_z * 4), 5, d, dit_z, 1, 2, 2);
    B1(s, "patch_embedding.bias", d);
    W2(s, "text_embedding.0.weight", d, TXT_DIM);
    B1(s, "text_embedding.0.bias", d);
    W2(s, "text_embedding.2.weight", d, d);
    B1(s, "text_embedding.2.bias", d);
    W2(s, "time_embedding.0.weight", d, DIT_FREQ);
    B1(s, "time_embedding.0.bias", d);
    W2(s, "time_embedding.2.weight", d, d);
    B1(s, "time_embedding.2.bias", d);
    W2(s, "time_projection.1.weight", 6 * d, d);
    B1(s, "time_projection.1.bias", 6 * d);
    for (int l = 0; l < DIT_LAYERS; l++) {
        snprintf(nm, sizeof(nm), "blocks.%d.modulation", l);
        add(s, nm, 0, 0.1f, 3, 1, 6, d, 0, 0);
        const char *at[2] = { "self_attn", "cross_attn" };
        for (int a = 0; a < 2; a++) {
            const char *pr[4] = { "q", "k", "v", "o" };
            for (int p = 0; p < 4; p++) {
                snprintf(nm, sizeof(nm), "blocks.%d.%s.%s.weight", l, at[a], pr[p]);
                W2(s, nm, d, d);
                snprintf(nm, sizeof(nm), "blocks.%d.%s.%s.bias", l, at[a], pr[p]);
                B1(s, nm, d);
            }
            snprintf(nm, sizeof(nm), "blocks.%d.%s.norm_q.weight", l, at[a]);
            add(s, nm, 1, 0.1f, 1, d, 0, 0, 0, 0);
            snprintf(nm, sizeof(nm), "blocks.%d.%s.norm_k.weight", l, at[a]);
            add(s, nm, 1, 0.1f, 1, d, 0, 0, 0, 0);
            if (a == 0) {
                snprintf(nm, sizeof(nm), "blocks.%d.norm3.weight", l);
                add(s, nm, 1, 0.1f, 1, d, 0, 0, 0, 0);
                snprintf(nm, sizeof(nm), "blocks.%d.norm3.bias", l);
                B1(s, nm, d);
            }
        }
        snprintf(nm, sizeof(nm), "blocks.%d.ffn.0.weight", l);
        W2(s, nm, DIT_FFN, d);
        snprintf(nm, sizeof(nm), "blocks.%d.ffn.0.bias", l);
        B1(s, nm, DIT_FFN);
        snprintf(nm, sizeof(nm), "blocks.%d.ffn.2.weight", l);
        W2(s, nm, d, DIT_FFN);
        snprintf(nm, sizeof(nm), "blocks.%d.ffn.2.bias", l);
        B1(s, nm, d);
    }
    add(s, "head.modulation", 0, 0.1f, 3, 1, 2, d, 0, 0);
    W2(s, "head.head.weight", dit_z * 4, d);
    B1(s, "head.head.bias", dit_z * 4);
}

/* ---- VAE (WanVAE_, dim 4, dim_mult 1 2 4 4, 2 res blocks, down F T T) ---- */
enum { VAE_DIM = 4, VAE_RES = 2 };

static void conv3(tset *s, const char *nm, int64_t o, int64_t i, int k)
{
    char b[200];
    snprintf(b, sizeof(b), "%.150s.weight", nm);
    add(s, b, 0, rs(i * k * k * k), 5, o, i, k, k, k);
    snprintf(b, sizeof(b), "%.150s.bias", nm);
    B1(s, b, o);
}

static void gamma_w(tset *s, const char *nm, int64_t c, int img)
{
    char b[200];
    snprintf(b, sizeof(b), "%.150s.gamma", nm);
    if (img)
        add(s, b, 1, 0.1f, 3, c, 1, 1, 0, 0);
    else
        add(s, b, 1, 0.1f, 4, c, 1, 1, 1, 0);
}

static void resblock(tset *s, const char *pre, int64_t in, int64_t out)
{
    char b[200];
    snprintf(b, sizeof(b), "%.150s.residual.0", pre);
    gamma_w(s, b, in, 0);
    snprintf(b, sizeof(b), "%.150s.residual.2", pre);
    conv3(s, b, out, in, 3);
    snprintf(b, sizeof(b), "%.150s.residual.3", pre);
    gamma_w(s, b, out, 0);
    snprintf(b, sizeof(b), "%.150s.residual.6", pre);
    conv3(s, b, out, out, 3);
    if (in != out) {
        snprintf(b, sizeof(b), "%.150s.shortcut", pre);
        conv3(s, b, out, in, 1);
    }
}

static void attnblock(tset *s, const char *pre, int64_t c)
{
    char b[200];
    snprintf(b, sizeof(b), "%.150s.norm", pre);
    gamma_w(s, b, c, 1);
    snprintf(b, sizeof(b), "%.150s.to_qkv.weight", pre);
    add(s, b, 0, rs(c), 4, 3 * c, c, 1, 1, 0);
    snprintf(b, sizeof(b), "%.150s.to_qkv.bias", pre);
    B1(s, b, 3 * c);
    snprintf(b, sizeof(b), "%.150s.proj.weight", pre);
    add(s, b, 0, rs(c), 4, c, c, 1, 1, 0);
    snprintf(b, sizeof(b), "%.150s.proj.bias", pre);
    B1(s, b, c);
}

static void resample(tset *s, const char *pre, int64_t c, int up, int temporal)
{
    char b[200];
    int64_t o = up ? c / 2 : c;
    snprintf(b, sizeof(b), "%.150s.resample.1.weight", pre);
    add(s, b, 0, rs(c * 9), 4, o, c, 3, 3, 0);
    snprintf(b, sizeof(b), "%.150s.resample.1.bias", pre);
    B1(s, b, o);
    if (temporal) {
        snprintf(b, sizeof(b), "%.150s.time_conv.weight", pre);
        add(s, b, 0, rs(c * 3), 5, up ? 2 * c : c, c, 3, 1, 1);
        snprintf(b, sizeof(b), "%.150s.time_conv.bias", pre);
        B1(s, b, up ? 2 * c : c);
    }
}

static void make_vae(tset *s)
{
    const int mult[4] = { 1, 2, 4, 4 };
    const int tdown[3] = { 0, 1, 1 };
    char b[200];
    int64_t dims[5] = { VAE_DIM };
    for (int i = 0; i < 4; i++)
        dims[i + 1] = VAE_DIM * mult[i];
    conv3(s, "encoder.conv1", dims[0], 3, 3);
    int idx = 0;
    for (int i = 0; i < 4; i++) {
        int64_t in = dims[i], out = dims[i + 1];
        for (int r = 0; r < VAE_RES; r++) {
            snprintf(b, sizeof(b), "encoder.downsamples.%d", idx++);
            resblock(s, b, in, out);
            in = out;
        }
        if (i != 3) {
            snprintf(b, sizeof(b), "encoder.downsamples.%d", idx++);
            resample(s, b, out, 0, tdown[i]);
        }
    }
    int64_t top = dims[4];
    resblock(s, "encoder.middle.0", top, top);
    attnblock(s, "encoder.middle.1", top);
    resblock(s, "encoder.middle.2", top, top);
    gamma_w(s, "encoder.head.0", top, 0);
    conv3(s, "encoder.head.2", 2 * Z, top, 3);
    conv3(s, "conv1", 2 * Z, 2 * Z, 1);
    conv3(s, "conv2", Z, Z, 1);
    /* decoder: dims = [top] + reversed(dim * mult) */
    int64_t dd[5] = { top };
    for (int i = 0; i < 4; i++)
        dd[i + 1] = VAE_DIM * mult[3 - i];
    conv3(s, "decoder.conv1", dd[0], Z, 3);
    resblock(s, "decoder.middle.0", dd[0], dd[0]);
    attnblock(s, "decoder.middle.1", dd[0]);
    resblock(s, "decoder.middle.2", dd[0], dd[0]);
    idx = 0;
    const int tup[3] = { 1, 1, 0 };
    int64_t out = dd[0];
    for (int i = 0; i < 4; i++) {
        int64_t in = dd[i];
        out = dd[i + 1];
        if (i >= 1)
            in /= 2;
        for (int r = 0; r < VAE_RES + 1; r++) {
            snprintf(b, sizeof(b), "decoder.upsamples.%d", idx++);
            resblock(s, b, in, out);
            in = out;
        }
        if (i != 3) {
            snprintf(b, sizeof(b), "decoder.upsamples.%d", idx++);
            resample(s, b, out, 1, tup[i]);
        }
    }
    gamma_w(s, "decoder.head.0", out, 0);
    conv3(s, "decoder.head.2", 3, out, 3);
}

/* ---- umT5 encoder ---- */
enum { T5_VOCAB = 1024, T5_HEADS = 4, T5_FFN = 64, T5_LAYERS = 2, T5_BUCKETS = 32 };

static void make_t5(tset *s)
{
    char b[200];
    int64_t d = TXT_DIM;
    add(s, "token_embedding.weight", 0, 1.0f, 2, T5_VOCAB, d, 0, 0, 0);
    for (int l = 0; l < T5_LAYERS; l++) {
        snprintf(b, sizeof(b), "blocks.%d.norm1.weight", l);
        add(s, b, 1, 0.1f, 1, d, 0, 0, 0, 0);
        const char *pr[4] = { "q", "k", "v", "o" };
        for (int p = 0; p < 4; p++) {
            snprintf(b, sizeof(b), "blocks.%d.attn.%s.weight", l, pr[p]);
            add(s, b, 0, p < 2 ? 0.7f * rs(d) : rs(d), 2, d, d, 0, 0, 0);
        }
        snprintf(b, sizeof(b), "blocks.%d.norm2.weight", l);
        add(s, b, 1, 0.1f, 1, d, 0, 0, 0, 0);
        snprintf(b, sizeof(b), "blocks.%d.ffn.gate.0.weight", l);
        W2(s, b, T5_FFN, d);
        snprintf(b, sizeof(b), "blocks.%d.ffn.fc1.weight", l);
        W2(s, b, T5_FFN, d);
        snprintf(b, sizeof(b), "blocks.%d.ffn.fc2.weight", l);
        W2(s, b, d, T5_FFN);
        snprintf(b, sizeof(b), "blocks.%d.pos_embedding.embedding.weight", l);
        add(s, b, 0, 0.5f, 2, T5_BUCKETS, T5_HEADS, 0, 0, 0);
    }
    add(s, "norm.weight", 1, 0.1f, 1, d, 0, 0, 0, 0);
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb");
    if (!a)
        return -1;
    FILE *b = fopen(to, "wb");
    if (!b) {
        fclose(a);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    return fclose(b) ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mktiny OUT_DIR TOKENIZER [SEED [WAN22_VAE]]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
    const char *vae22 = argc > 4 ? argv[4] : NULL;
    if (vae22)
        dit_z = 48;
    char p[4096];
    if (mkdir(dir, 0755) && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    snprintf(p, sizeof(p), "%s/tokenizer", dir);
    if (mkdir(p, 0755) && errno != EEXIST) {
        perror(p);
        return 1;
    }
    tset s = { .rng = seed * 3 + 1 };
    make_dit(&s);
    snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors", dir);
    int bad = write_st(&s, p);
    tset_free(&s);
    if (vae22) {
        snprintf(p, sizeof(p), "%s/Wan2.2_VAE.safetensors", dir);
        bad |= copy_file(vae22, p);
    } else {
        s.rng = seed * 3 + 2;
        make_vae(&s);
        snprintf(p, sizeof(p), "%s/Wan2.1_VAE.safetensors", dir);
        bad |= write_st(&s, p);
        tset_free(&s);
    }
    s.rng = seed * 3 + 3;
    make_t5(&s);
    snprintf(p, sizeof(p), "%s/models_t5_umt5-xxl-enc.safetensors", dir);
    bad |= write_st(&s, p);
    tset_free(&s);
    snprintf(p, sizeof(p), "%s/tokenizer/spiece.model", dir);
    bad |= copy_file(argv[2], p);
    snprintf(p, sizeof(p), "%s/vdit.json", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return 1;
    fprintf(f, "{\n  \"width\": 64, \"height\": %d, \"frames\": 9, \"fps\": 8,\n"
               "  \"steps\": 4, \"guidance\": 5.0, \"shift\": 5.0, \"sampler\": \"unipc\",\n"
               "  \"text_len\": 32, \"num_heads\": 2,\n"
               "  \"negative_prompt\": \"blurry, static\"\n}\n", vae22 ? 64 : 48);
    bad |= fclose(f);
    if (bad) {
        fprintf(stderr, "mktiny: cannot write %s\n", dir);
        return 1;
    }
    return 0;
}
