/* TAEHV decoder (core/src/vae/taehv.c): the published layouts (.pth and
 * safetensors, a prefix), stream = one-shot, bad files refused with
 * messages naming the file and the tensor, and the model-level choice
 * (vdit_model_params.decoder: "tae" found in the folder, a path, a
 * mismatched or missing file) giving the Wan-VAE's frame count.
 * usage: test_taehv TAEHV_DIR DATA_DIR MODEL_DIR
 *   TAEHV_DIR: tests/conformance/taehv (taew2_1_tiny/, taew2_2_tiny/)
 *   DATA_DIR: tests/vae/data (taew2_1_tiny.pth: taew2_1_tiny's weights)
 *   MODEL_DIR: models/default (a Wan2.1 model) */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "t.h"
#include "ckpt.h"
#include "kernels/kernels.h"
#include "vae/taehv.h"

static char taehv_dir[PATH_MAX], data_dir[PATH_MAX], model_dir[PATH_MAX];

/* Decodes tl random latent frames of lh x lw (seeded) one-shot. */
static float *decode_rand(const vd_taehv *t, vk_ctx *kc, int tl, int lh, int lw, uint64_t seed)
{
    const vd_taehv_config *c = vd_taehv_get_config(t);
    size_t nz = (size_t)c->z_dim * tl * lh * lw;
    size_t nv = (size_t)3 * (1 + 4 * (tl - 1)) * lh * c->s_factor * lw * c->s_factor;
    float *z = malloc(nz * sizeof(float)), *v = malloc(nv * sizeof(float));
    t_rng r = { seed };
    t_fill(&r, z, nz, 2.0f);
    int ret = vd_taehv_decode(t, kc, z, tl, lh, lw, v);
    free(z);
    if (ret) {
        free(v);
        return NULL;
    }
    return v;
}

static vd_taehv *load_path(const char *path, int expect_ok)
{
    vd_log lg = { 0 };
    vd_taehv *t = NULL;
    int r = vd_taehv_load_file(path, &lg, &t);
    T_CHECK(!r == !!expect_ok, "%s: %d %s", path, r, lg.msg);
    return t;
}

/* A set holding the tensors of `src` except `drop`, with `reshape` given
 * the shape sh (ndim 4), and `add` (a copy of decoder.1.weight's data under
 * another name) when not NULL; every name under `prefix`. */
static vd_ckpt *edited(const vd_ckpt *src, const char *drop, const char *reshape,
                       const int64_t *sh, const char *add, const char *prefix)
{
    vd_ckpt *c = vd_ckpt_new();
    vd_log lg = { 0 };
    for (size_t i = 0; i < vd_ckpt_count(src); i++) {
        const vt_tensor *t = vd_ckpt_at(src, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        char n[256];
        snprintf(n, sizeof(n), "%s%s", prefix ? prefix : "", t->name);
        int re = reshape && !strcmp(t->name, reshape);
        T_CHECK(!vd_ckpt_add(c, n, t->dtype, re ? 4 : t->ndim, re ? sh : t->shape, t->data, NULL,
                             "edited.safetensors", &lg),
                "%s", lg.msg);
        if (add && !strcmp(t->name, "decoder.1.weight"))
            T_CHECK(!vd_ckpt_add(c, add, t->dtype, t->ndim, t->shape, t->data, NULL,
                                 "edited.safetensors", &lg),
                    "%s", lg.msg);
    }
    return c;
}

static void expect_fail(const vd_ckpt *c, int err, const char *what, const char *needle)
{
    vd_log lg = { 0 };
    vd_taehv *t = NULL;
    int r = vd_taehv_load(c, &lg, &t);
    T_CHECK(r == err && !t, "%s: returned %d (%s), expected %d", what, r, lg.msg, err);
    T_CHECK(strstr(lg.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, lg.msg, needle);
}

static void test_layouts(vk_ctx *kc)
{
    char st[4200], pth[4200];
    snprintf(st, sizeof(st), "%s/taew2_1_tiny/weights.safetensors", taehv_dir);
    snprintf(pth, sizeof(pth), "%s/taew2_1_tiny.pth", data_dir);
    vd_taehv *a = load_path(st, 1), *b = load_path(pth, 1);
    if (!a || !b)
        goto done;
    const vd_taehv_config *c = vd_taehv_get_config(a);
    T_CHECK(c->z_dim == 16 && c->patch == 1 && c->s_factor == 8 && c->t_factor == 4 &&
                c->width[0] == 16 && c->width[1] == 12 && c->width[2] == 8 && c->width[3] == 8,
            "config z %d p %d widths %d %d %d %d", c->z_dim, c->patch, c->width[0], c->width[1],
            c->width[2], c->width[3]);
    float *va = decode_rand(a, kc, 3, 3, 5, 7), *vb = decode_rand(b, kc, 3, 3, 5, 7);
    size_t nv = (size_t)3 * 9 * 24 * 40;
    T_CHECK(va && vb && !memcmp(va, vb, nv * sizeof(float)), ".pth decodes unlike its safetensors");
    /* [-1, 1] */
    float lo = 1, hi = -1;
    for (size_t i = 0; va && i < nv; i++) {
        lo = va[i] < lo ? va[i] : lo;
        hi = va[i] > hi ? va[i] : hi;
    }
    T_CHECK(lo >= -1 && hi <= 1 && hi > lo, "range [%g, %g]", lo, hi);
    /* a prefix (as in repackaged files) */
    vd_ckpt *ck = NULL;
    vd_log lg = { 0 };
    if (!vd_ckpt_open(st, &lg, &ck)) {
        vd_ckpt *p = edited(ck, NULL, NULL, NULL, NULL, "taehv.");
        vd_taehv *pt = NULL;
        T_CHECK(!vd_taehv_load(p, &lg, &pt), "prefixed: %s", lg.msg);
        float *vp = pt ? decode_rand(pt, kc, 3, 3, 5, 7) : NULL;
        T_CHECK(vp && va && !memcmp(va, vp, nv * sizeof(float)), "prefixed file decodes otherwise");
        free(vp);
        vd_taehv_free(&pt);
        vd_ckpt_free(&p);
        /* a detached model decodes identically */
        vd_taehv *d = NULL;
        T_CHECK(!vd_taehv_load(ck, &lg, &d), "%s", lg.msg);
        vd_ckpt_free(&ck); /* the model keeps nothing of the checkpoint */
        T_CHECK(d && !vd_taehv_detach(d, kc, 3, 5), "detach");
        float *vd = d ? decode_rand(d, kc, 3, 3, 5, 7) : NULL;
        T_CHECK(vd && va && !memcmp(va, vd, nv * sizeof(float)),
                "detached model decodes otherwise");
        free(vd);
        vd_taehv_free(&d);
    }
    free(va);
    free(vb);
done:
    vd_taehv_free(&a);
    vd_taehv_free(&b);
}

/* Stream pushes give 1 then 4 frames, equal to the one-shot decode, and
 * the stream's size does not depend on the frame count. */
static void test_stream(vk_ctx *kc, const char *sub, int tl, int lh, int lw)
{
    char st[4200];
    snprintf(st, sizeof(st), "%s/%s/weights.safetensors", taehv_dir, sub);
    vd_taehv *t = load_path(st, 1);
    if (!t)
        return;
    const vd_taehv_config *c = vd_taehv_get_config(t);
    int sf = c->s_factor, tv = 1 + 4 * (tl - 1);
    size_t ls = (size_t)lh * lw, fs = (size_t)lh * sf * lw * sf;
    float *one = decode_rand(t, kc, tl, lh, lw, 11);
    float *z = malloc(sizeof(float) * c->z_dim * tl * ls);
    float *lat = malloc(sizeof(float) * c->z_dim * ls);
    float *fr = malloc(sizeof(float) * 12 * fs);
    t_rng r = { 11 };
    t_fill(&r, z, (size_t)c->z_dim * tl * ls, 2.0f);
    vd_taehv_stream *s = NULL;
    T_CHECK(!vd_taehv_stream_new(t, kc, lh, lw, 0, &s), "stream");
    size_t bytes = vd_taehv_stream_bytes(s);
    int f = 0, same = 1;
    for (int k = 0; s && k < tl; k++) {
        for (int ch = 0; ch < c->z_dim; ch++)
            memcpy(lat + ch * ls, z + ((size_t)ch * tl + k) * ls, ls * sizeof(float));
        int got = -1;
        T_CHECK(!vd_taehv_stream_push(s, lat, fr, &got), "push");
        T_CHECK(got == (k ? 4 : 1), "%s: latent frame %d gave %d frames", sub, k, got);
        for (int q = 0; q < got && f < tv; q++, f++)
            for (int ch = 0; ch < 3; ch++)
                same &= !memcmp(fr + ((size_t)q * 3 + ch) * fs, one + ((size_t)ch * tv + f) * fs,
                                fs * sizeof(float));
    }
    T_CHECK(f == tv && same, "%s: stream (%d frames) differs from one-shot", sub, f);
    T_CHECK(vd_taehv_stream_bytes(s) == bytes && bytes > 0, "stream bytes changed");
    vd_taehv_stream_free(&s);
    T_CHECK(!s, "freed stream pointer cleared");
    T_CHECK(vd_taehv_stream_new(t, kc, 0, lw, 0, &s) == VDIT_ERR_INVALID_ARG, "size 0");
    free(one);
    free(z);
    free(lat);
    free(fr);
    vd_taehv_free(&t);
}

static void test_bad(void)
{
    char st[4200], tmp[] = "/tmp/vdit_taehv_XXXXXX";
    snprintf(st, sizeof(st), "%s/taew2_1_tiny/weights.safetensors", taehv_dir);
    vd_ckpt *ck = NULL;
    vd_log lg = { 0 };
    if (vd_ckpt_open(st, &lg, &ck)) {
        T_CHECK(0, "%s", lg.msg);
        return;
    }
    vd_ckpt *c = edited(ck, "decoder.9.conv.2.weight", NULL, NULL, NULL, NULL);
    expect_fail(c, VDIT_ERR_MISSING, "missing tensor", "decoder.9.conv.2.weight");
    vd_ckpt_free(&c);
    int64_t sh[4] = { 8, 11, 3, 3 };
    c = edited(ck, NULL, "decoder.14.weight", sh, NULL, NULL);
    expect_fail(c, VDIT_ERR_FORMAT, "wrong shape", "decoder.14.weight");
    vd_ckpt_free(&c);
    int64_t g1[4] = { 12, 12, 1, 1 }; /* TGrow(12, 2) needs 24 rows */
    c = edited(ck, NULL, "decoder.13.conv.weight", g1, NULL, NULL);
    expect_fail(c, VDIT_ERR_UNSUPPORTED, "TGrow without temporal upscaling",
                "decoder.13.conv.weight");
    vd_ckpt_free(&c);
    c = edited(ck, NULL, NULL, NULL, "decoder.0.weight", NULL);
    expect_fail(c, VDIT_ERR_UNSUPPORTED, "super variant", "super");
    vd_ckpt_free(&c);
    int64_t o5[4] = { 5, 8, 3, 3 };
    c = edited(ck, "decoder.22.bias", "decoder.22.weight", o5, NULL, NULL);
    expect_fail(c, VDIT_ERR_MISSING, "head without bias", "decoder.22.bias");
    vd_ckpt_free(&c);
    vd_ckpt_free(&ck);
    /* another model's checkpoint: the Wan-VAE */
    char vae[4200];
    snprintf(vae, sizeof(vae), "%s/../wan2.1/vae_tiny/weights.safetensors", taehv_dir);
    vd_taehv *t = NULL;
    int r = vd_taehv_load_file(vae, &lg, &t);
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(lg.msg, "not a TAEHV checkpoint"), "VAE as TAEHV: %d %s",
            r, lg.msg);
    /* a truncated file */
    int fd = mkstemp(tmp);
    FILE *in = fopen(st, "rb");
    if (fd >= 0 && in) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof(buf), in);
        T_CHECK(write(fd, buf, n) == (ssize_t)n, "write");
        close(fd);
        lg.msg[0] = 0;
        r = vd_taehv_load_file(tmp, &lg, &t);
        T_CHECK(r < 0 && !t && strstr(lg.msg, tmp), "truncated file: %d %s", r, lg.msg);
        unlink(tmp);
    }
    if (in)
        fclose(in);
    r = vd_taehv_load_file("/nonexistent/taew2_1.pth", &lg, &t);
    T_CHECK(r < 0 && strstr(lg.msg, "/nonexistent/taew2_1.pth"), "missing file: %d %s", r, lg.msg);
}

/* The model-level option through the public API. */
static int load_model(const char *path, const char *decoder, vdit_model **m, char *err)
{
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.precision = VDIT_PRECISION_FP32;
    mp.decoder = decoder;
    int r = vdit_model_load(path, &mp, m);
    snprintf(err, 256, "%s", mp.error);
    return r;
}

static vdit_video *gen(vdit_model *m, int frames)
{
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.precision = VDIT_PRECISION_FP32;
    vdit_ctx *c = NULL;
    vdit_video *v = NULL;
    if (vdit_ctx_init(m, &cp, &c))
        return NULL;
    vdit_gen_params gp;
    vdit_gen_params_default(&gp);
    gp.prompt = "a red ball";
    gp.width = 64;
    gp.height = 48;
    gp.n_frames = frames;
    gp.steps = 2;
    gp.seed = 3;
    int r = vdit_generate(c, &gp, &v);
    T_CHECK(!r, "generate: %s", vdit_ctx_last_error(c));
    vdit_ctx_free(&c);
    return v;
}

static void test_model(void)
{
    char dir[] = "/tmp/vdit_taehv_model_XXXXXX", err[256], a[4200], b[4200];
    static const char *const parts[] = { "Wan2.1_VAE.safetensors",
                                         "diffusion_pytorch_model.safetensors",
                                         "models_t5_umt5-xxl-enc.safetensors", "tokenizer",
                                         "vdit.json" };
    snprintf(a, sizeof(a), "%s/vdit.json", model_dir);
    if (access(a, R_OK)) {
        printf("no model at %s: model tests skipped\n", model_dir);
        return;
    }
    if (!mkdtemp(dir)) {
        T_CHECK(0, "mkdtemp");
        return;
    }
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        snprintf(a, sizeof(a), "%s/%s", model_dir, parts[i]);
        snprintf(b, sizeof(b), "%s/%s", dir, parts[i]);
        T_CHECK(!symlink(a, b), "symlink %s", b);
    }
    vdit_model *m = NULL;
    /* "tae" with no TAEHV in the folder */
    int r = load_model(dir, "tae", &m, err);
    T_CHECK(r == VDIT_ERR_MISSING && strstr(err, "taew2_1.safetensors"), "no file: %d %s", r, err);
    /* the taew2_2 one for a Wan2.1 model */
    snprintf(a, sizeof(a), "%s/taew2_2_tiny/weights.safetensors", taehv_dir);
    r = load_model(dir, a, &m, err);
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(err, "48 latent channels"), "mismatch: %d %s", r, err);
    r = load_model(dir, "", &m, err);
    T_CHECK(r == VDIT_ERR_INVALID_ARG, "empty decoder: %d %s", r, err);
    /* found in the folder */
    snprintf(a, sizeof(a), "%s/taew2_1_tiny.pth", data_dir);
    snprintf(b, sizeof(b), "%s/taew2_1.pth", dir);
    T_CHECK(!symlink(a, b), "symlink %s", b);
    r = load_model(dir, "tae", &m, err);
    T_CHECK(!r, "tae: %s", err);
    vdit_video *vt = m ? gen(m, 9) : NULL, *vt5 = m ? gen(m, 7) : NULL;
    vdit_model_free(&m);
    T_CHECK(vt && vt->n_frames == 9 && vt->width == 64 && vt->height == 48, "tae: %d frames",
            vt ? vt->n_frames : -1);
    T_CHECK(vt5 && vt5->n_frames == 7, "tae, 7 frames: %d", vt5 ? vt5->n_frames : -1);
    /* the same file by its path */
    r = load_model(dir, b, &m, err);
    T_CHECK(!r, "path: %s", err);
    vdit_video *vp = m ? gen(m, 9) : NULL;
    vdit_model_free(&m);
    T_CHECK(vp && vt && !memcmp(vp->rgb, vt->rgb, (size_t)9 * 64 * 48 * 3), "path != tae");
    /* the VAE: same latents, another decoder */
    r = load_model(dir, "vae", &m, err);
    T_CHECK(!r, "vae: %s", err);
    vdit_video *vv = m ? gen(m, 9) : NULL;
    vdit_model_free(&m);
    T_CHECK(vv && vv->n_frames == 9 && vt && memcmp(vv->rgb, vt->rgb, (size_t)9 * 64 * 48 * 3),
            "vae and tae decode alike");
    vdit_video_free(&vt);
    vdit_video_free(&vt5);
    vdit_video_free(&vp);
    vdit_video_free(&vv);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        snprintf(b, sizeof(b), "%s/%s", dir, parts[i]);
        unlink(b);
    }
    snprintf(b, sizeof(b), "%s/taew2_1.pth", dir);
    unlink(b);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s TAEHV_DIR DATA_DIR MODEL_DIR\n", argv[0]);
        return 2;
    }
    /* absolute: the model test links them from a temporary folder */
    if (!realpath(argv[1], taehv_dir) || !realpath(argv[2], data_dir)) {
        fprintf(stderr, "%s: cannot resolve %s / %s\n", argv[0], argv[1], argv[2]);
        return 2;
    }
    if (!realpath(argv[3], model_dir))
        snprintf(model_dir, sizeof(model_dir), "%s", argv[3]);
    vk_ctx *kc = vk_ctx_new_ex(1, -1, VK_PREC_F32, NULL);
    T_CHECK(kc != NULL, "context");
    if (kc) {
        test_layouts(kc);
        test_stream(kc, "taew2_1_tiny", 4, 3, 5);
        test_stream(kc, "taew2_2_tiny", 3, 2, 3);
    }
    test_bad();
    test_model();
    vk_ctx_free(&kc);
    T_DONE();
}
