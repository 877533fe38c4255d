/* PyTorch checkpoints through the restricted reader: the fixtures in
 * tests/data/ were made by tests/data/make_pth.py with Debian's torch
 * (fp32/fp16/bf16, transposed and sliced views, storage offsets, shared
 * storages, nested dicts, zip64) plus broken and malicious archives that
 * must be rejected with a clear message. argv[2]: tests/data. */
#include <sys/stat.h>

#include "ckpt.h"
#include "t.h"

static char data_dir[1024];

static const char *fixture(const char *name)
{
    static char p[2][1200];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof(p[k]), "%s/%s", data_dir, name);
    return p[k];
}

static void check_values(vd_ckpt *c, const char *name, int ndim, const int64_t *shape,
                         const float *want, size_t n)
{
    vd_log lg = { 0 };
    const vt_tensor *t = vd_ckpt_find(c, name);
    T_CHECK(t != NULL, "tensor '%s' missing", name);
    if (!t)
        return;
    T_CHECK(t->ndim == ndim, "'%s': ndim %d", name, t->ndim);
    for (int i = 0; i < ndim && i < t->ndim; i++)
        T_CHECK(t->shape[i] == shape[i], "'%s': dim %d is %lld", name, i, (long long)t->shape[i]);
    T_CHECK((size_t)vt_nelem(t) == n, "'%s': %lld elements", name, (long long)vt_nelem(t));
    if ((size_t)vt_nelem(t) != n)
        return;
    float *f = vd_tensor_f32(t);
    T_CHECK(f != NULL, "'%s': conversion", name);
    for (size_t i = 0; f && i < n; i++)
        T_CHECK(f[i] == want[i], "'%s'[%zu] = %g, expected %g", name, i, f[i], want[i]);
    vd_free(f);
    (void)lg;
}

static void check_good(const char *file)
{
    vd_log lg = { 0 };
    vd_ckpt *c;
    int r = vd_ckpt_open(fixture(file), &lg, &c);
    T_CHECK(r == 0, "%s: %s", file, lg.msg);
    if (r)
        return;
    float w[20];
    for (int i = 0; i < 20; i++)
        w[i] = (float)i;
    check_values(c, "w32", 2, (int64_t[]){ 3, 4 }, w, 12);
    float h[6] = { 0, 0.5f, 1, 1.5f, 2, 2.5f };
    check_values(c, "w16", 2, (int64_t[]){ 2, 3 }, h, 6);
    T_CHECK(vd_ckpt_find(c, "w16") && vd_ckpt_find(c, "w16")->dtype == VT_F16, "w16 is F16");
    float b[4] = { -2, -1, 0, 1 };
    check_values(c, "wbf", 1, (int64_t[]){ 4 }, b, 4);
    T_CHECK(vd_ckpt_find(c, "wbf") && vd_ckpt_find(c, "wbf")->dtype == VT_BF16, "wbf is BF16");
    float tr[6] = { 0, 3, 1, 4, 2, 5 }; /* arange(6).reshape(2,3).t() */
    check_values(c, "wT", 2, (int64_t[]){ 3, 2 }, tr, 6);
    check_values(c, "off", 1, (int64_t[]){ 6 }, w + 4, 6);
    float sa[8] = { 0, 10, 20, 30, 40, 50, 60, 70 };
    check_values(c, "shared_a", 1, (int64_t[]){ 4 }, sa, 4);
    check_values(c, "shared_b", 2, (int64_t[]){ 2, 4 }, sa, 8);
    const vt_tensor *x = vd_ckpt_find(c, "shared_a"), *y = vd_ckpt_find(c, "shared_b");
    T_CHECK(x && y && x->data == y->data, "shared storage is not copied");
    float st[8] = { 1, 3, 6, 8, 11, 13, 16, 18 }; /* arange(20).reshape(4,5)[:, 1:4:2] */
    check_values(c, "strided", 2, (int64_t[]){ 4, 2 }, st, 8);
    x = vd_ckpt_find(c, "i64");
    T_CHECK(x && x->dtype == VT_I64 && x->ndim == 1 && x->shape[0] == 3
                && ((const int64_t *)x->data)[2] == 2,
            "i64");
    float p[4] = { 7, 7, 7, 7 };
    check_values(c, "param", 2, (int64_t[]){ 2, 2 }, p, 4);
    float s = 3.5f;
    check_values(c, "scalar", 0, NULL, &s, 1);
    float nx[2] = { 1, 2 }, n0 = 9;
    check_values(c, "nested.inner.x", 1, (int64_t[]){ 2 }, nx, 2);
    check_values(c, "nested.0", 1, (int64_t[]){ 1 }, &n0, 1);
    T_CHECK(vd_ckpt_count(c) == 13, "%s: %zu tensors (epoch and name are not tensors)", file,
            vd_ckpt_count(c));
    /* the contiguous ones point into the mapping, aligned */
    for (size_t i = 0; i < vd_ckpt_count(c); i++) {
        const vt_tensor *t = vd_ckpt_at(c, i);
        T_CHECK(((uintptr_t)t->data % vt_dtype_size(t->dtype)) == 0, "'%s' misaligned", t->name);
        T_CHECK(!strcmp(vd_ckpt_file(c, t), fixture(file)), "file of '%s'", t->name);
    }
    /* shape checks work as for safetensors */
    r = vd_ckpt_get(c, &lg, "w32", 2, (int64_t[]){ 4, 3 }, &x);
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(lg.msg, "'w32' has shape [3, 4], expected [4, 3]"),
            "'%s'", lg.msg);
    vd_ckpt_free(&c);
}

static void expect_fail(const char *file, int code, const char *needle)
{
    vd_log lg = { 0 };
    vd_ckpt *c = (vd_ckpt *)1;
    int r = vd_ckpt_open(fixture(file), &lg, &c);
    T_CHECK(r < 0 && c == NULL, "%s accepted", file);
    if (code)
        T_CHECK(r == code, "%s: code %d (%s)", file, r, lg.msg);
    T_CHECK(strstr(lg.msg, file) && strstr(lg.msg, needle), "%s: message '%s' lacks '%s'", file,
            lg.msg, needle);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    snprintf(data_dir, sizeof(data_dir), "%s", argc > 2 ? argv[2] : "tests/data");
    check_good("tensors.pth");
    check_good("zip64.pth");

    /* a broadcast view is copied out; a 2^62-element one is refused */
    vd_log elg = { 0 };
    vd_ckpt *ec;
    if (!vd_ckpt_open(fixture("expand.pth"), &elg, &ec)) {
        float e[6] = { 1, 2, 3, 1, 2, 3 };
        check_values(ec, "e", 2, (int64_t[]){ 2, 3 }, e, 6);
        vd_ckpt_free(&ec);
    } else {
        T_CHECK(0, "expand.pth: %s", elg.msg);
    }
    /* torch >= 2.3's layout for its newer dtypes: _rebuild_tensor_v3 over an
     * untyped storage (a byte count), the dtype as the seventh argument */
    vd_ckpt *v3;
    if (!vd_ckpt_open(fixture("v3.pth"), &elg, &v3)) {
        float w[12];
        for (int i = 0; i < 12; i++)
            w[i] = (float)i;
        check_values(v3, "w32", 2, (int64_t[]){ 3, 4 }, w, 12);
        float h[5] = { 0.5f, 0.75f, 1, 1.25f, 1.5f }; /* (arange(8) * 0.25).half()[2:7] */
        check_values(v3, "h16", 1, (int64_t[]){ 5 }, h, 5);
        const vt_tensor *f8 = vd_ckpt_find(v3, "f8");
        static const uint8_t f8b[6] = { 0x38, 0x40, 0xb8, 0x3c, 0x00, 0x01 };
        T_CHECK(f8 && f8->dtype == VT_F8_E4M3 && f8->ndim == 2 && f8->shape[0] == 2
                    && f8->shape[1] == 3 && !memcmp(f8->data, f8b, 6),
                "v3 f8 tensor");
        float f8v[6] = { 1, 2, -1, 1.5f, 0, 0.001953125f };
        check_values(v3, "f8", 2, (int64_t[]){ 2, 3 }, f8v, 6);
        T_CHECK(vd_ckpt_count(v3) == 3, "v3: %zu tensors", vd_ckpt_count(v3));
        vd_ckpt_free(&v3);
    } else {
        T_CHECK(0, "v3.pth: %s", elg.msg);
    }
    expect_fail("v3_short.pth", VDIT_ERR_FORMAT, "tensor 'w32': storage '0' holds 46 bytes");

    expect_fail("bomb.pth", VDIT_ERR_FORMAT, "tensor 'bomb': strided copies would exceed");

    /* a folder with no safetensors opens its .pth files; a non-zip .pth is
     * named as the old format */
    if (argc > 1) {
        char d[1200], f[1300];
        snprintf(d, sizeof(d), "%s/pth_folder_tmp", argv[1]);
        mkdir(d, 0755);
        snprintf(f, sizeof(f), "%s/model.pth", d);
        size_t bn;
        uint8_t *blob = slurp(fixture("small.pth"), &bn);
        FILE *o = fopen(f, "wb");
        if (o && blob)
            fwrite(blob, 1, bn, o);
        if (o)
            fclose(o);
        free(blob);
        vd_ckpt *fc;
        int fr = vd_ckpt_open(d, &elg, &fc);
        T_CHECK(fr == 0 && vd_ckpt_find(fc, "a") && vd_ckpt_count(fc) == 1, "pth folder: %s", elg.msg);
        vd_ckpt_free(&fc);
        snprintf(f, sizeof(f), "%s/legacy.pt", argv[1]);
        o = fopen(f, "wb");
        if (o) {
            fputs("\x80\x02not a zip", o);
            fclose(o);
        }
        fr = vd_ckpt_open(f, &elg, &fc);
        T_CHECK(fr == VDIT_ERR_UNSUPPORTED && strstr(elg.msg, "legacy.pt") && strstr(elg.msg, "not a zip"),
                "legacy: '%s'", elg.msg);
    }

    expect_fail("bad_global.pth", VDIT_ERR_UNSUPPORTED, "global 'posix.system' is not allowed");
    expect_fail("bad_opcode.pth", VDIT_ERR_FORMAT, "opcode 0x69 (INST)");
    expect_fail("bad_storage.pth", VDIT_ERR_FORMAT, "tensor 'w32': storage '0' holds 8 bytes");
    expect_fail("no_pkl.pth", VDIT_ERR_FORMAT, "no data.pkl");
    expect_fail("truncated.pth", VDIT_ERR_FORMAT, "truncated");
    expect_fail("deflated.pth", VDIT_ERR_UNSUPPORTED, "compressed");

    /* every truncation and many single-byte corruptions of a good file fail
     * cleanly or load; the sanitizer build checks nothing is read out of bounds */
    size_t n;
    uint8_t *img = slurp(fixture("tensors.pth"), &n);
    T_CHECK(img != NULL, "read fixture");
    if (img) {
        for (size_t k = 0; k < n; k += 3) {
            vd_ckpt *c = vd_ckpt_new();
            vd_log lg = { 0 };
            int r = vd_ckpt_add_pth_mem(c, img, k, "cut", &lg);
            T_CHECK(r < 0 && strstr(lg.msg, "cut"), "cut at %zu: %d '%s'", k, r, lg.msg);
            vd_ckpt_free(&c);
        }
        t_rng rng = { 7 };
        uint8_t *cp = malloc(n);
        for (int it = 0; it < 3000; it++) {
            memcpy(cp, img, n);
            for (int j = 0; j < 1 + it % 4; j++)
                cp[t_next(&rng) % n] = (uint8_t)t_next(&rng);
            vd_ckpt *c = vd_ckpt_new();
            vd_ckpt_add_pth_mem(c, cp, n, "flip", NULL);
            /* whatever loaded must be readable */
            for (size_t i = 0; i < vd_ckpt_count(c); i++) {
                float *f = vd_tensor_f32(vd_ckpt_at(c, i));
                vd_free(f);
            }
            vd_ckpt_free(&c);
        }
        free(cp);
        free(img);
    }
    T_DONE();
}
