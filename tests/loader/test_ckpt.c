/* Safetensors loading: good files (F32/F16/BF16, shards with an index,
 * folders), every kind of malformed file (each must fail with a message
 * naming the file and the tensor, never crash), lookups with shape checks,
 * and renaming rules. argv[1]: a scratch folder. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "st_writer.h"
#include "t.h"

static char dir[1024];

static const char *path_of(const char *name)
{
    static char p[4][1200];
    static int k;
    k = (k + 1) & 3;
    snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(d, 1, n, f);
        fclose(f);
    }
}

/* Opening `path` must fail with code `code` (0: any error) and a message
 * containing every string in `needles` (NULL-terminated). */
static void expect_fail(const char *path, int code, const char *const *needles, const char *what)
{
    vd_log lg = { 0 };
    vd_ckpt *c = (vd_ckpt *)1;
    int r = vd_ckpt_open(path, &lg, &c);
    T_CHECK(r < 0, "%s: accepted", what);
    T_CHECK(c == NULL, "%s: set returned on failure", what);
    if (code)
        T_CHECK(r == code, "%s: code %d, expected %d (%s)", what, r, code, lg.msg);
    for (int i = 0; needles && needles[i]; i++)
        T_CHECK(strstr(lg.msg, needles[i]) != NULL, "%s: message '%s' lacks '%s'", what, lg.msg,
                needles[i]);
}

static void expect_header_fail(const char *name, const char *header, size_t data_len,
                               const char *const *needles)
{
    uint8_t *data = calloc(1, data_len ? data_len : 1);
    st_write_raw(path_of(name), header, data, data_len);
    free(data);
    expect_fail(path_of(name), VDIT_ERR_FORMAT, needles, name);
}

static void test_good(void)
{
    float a[6] = { 1, -2, 3.5f, 0.25f, -0.125f, 100 };
    uint16_t h[4], b[4];
    float hv[4] = { 0.5f, -1.5f, 65504.f, 0.0009765625f }, bv[4] = { 1, -3, 1024, 0.0078125f };
    for (int i = 0; i < 4; i++) {
        h[i] = vt_f32_to_f16(hv[i]);
        b[i] = vt_f32_to_bf16(bv[i]);
    }
    st_tensor t[] = {
        { "a.weight", "F32", 2, { 2, 3 }, a, sizeof(a) },
        { "h", "F16", 1, { 4 }, h, sizeof(h) },
        { "b", "BF16", 2, { 2, 2 }, b, sizeof(b) },
        { "empty", "F32", 2, { 0, 5 }, NULL, 0 },
        { "scalar", "F32", 0, { 0 }, a, 4 },
    };
    T_CHECK(!st_write(path_of("good.safetensors"), t, 5), "write");
    vd_log lg = { 0 };
    vd_ckpt *c;
    int r = vd_ckpt_open(path_of("good.safetensors"), &lg, &c);
    T_CHECK(r == 0, "open good: %s", lg.msg);
    if (r)
        return;
    T_CHECK(vd_ckpt_count(c) == 5, "count %zu", vd_ckpt_count(c));
    const vt_tensor *x;
    int64_t sh[2] = { 2, 3 };
    T_CHECK(!vd_ckpt_get(c, &lg, "a.weight", 2, sh, &x), "get a: %s", lg.msg);
    T_CHECK(x && x->dtype == VT_F32 && !memcmp(x->data, a, sizeof(a)), "a data");
    T_CHECK(!strcmp(vd_ckpt_file(c, x), path_of("good.safetensors")), "file of a: %s",
            vd_ckpt_file(c, x));
    T_CHECK(((uintptr_t)x->data & 3) == 0, "aligned");
    T_CHECK(!vd_ckpt_getf(c, &lg, &x, 1, 4, -1, -1, -1, "%s", "h"), "getf h: %s", lg.msg);
    float *f = x ? vd_tensor_f32(x) : NULL;
    T_CHECK(f && !memcmp(f, hv, sizeof(hv)), "F16 values");
    vd_free(f);
    T_CHECK(!vd_ckpt_getf(c, &lg, &x, 2, -1, 2, -1, -1, "b"), "getf b: %s", lg.msg);
    f = x ? vd_tensor_f32(x) : NULL;
    T_CHECK(f && !memcmp(f, bv, sizeof(bv)), "BF16 values");
    vd_free(f);
    x = vd_ckpt_find(c, "empty");
    T_CHECK(x && vt_nelem(x) == 0 && x->shape[1] == 5, "empty tensor");
    x = vd_ckpt_find(c, "scalar");
    T_CHECK(x && x->ndim == 0 && vt_nelem(x) == 1 && ((const float *)x->data)[0] == 1, "scalar");

    /* lookups with checks: messages name the file, the tensor, both shapes */
    int64_t wrong[2] = { 2, 4 };
    r = vd_ckpt_get(c, &lg, "a.weight", 2, wrong, &x);
    T_CHECK(r == VDIT_ERR_FORMAT && x == NULL, "wrong shape accepted");
    char want[1400];
    snprintf(want, sizeof(want), "%s: tensor 'a.weight' has shape [2, 3], expected [2, 4]",
             path_of("good.safetensors"));
    T_CHECK(!strcmp(lg.msg, want), "message '%s'", lg.msg);
    r = vd_ckpt_getf(c, &lg, &x, 3, -1, -1, -1, -1, "a.%s", "weight");
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(lg.msg, "has shape [2, 3], expected [*, *, *]"),
            "ndim message '%s'", lg.msg);
    r = vd_ckpt_get(c, &lg, "a.weight", 1, NULL, &x);
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(lg.msg, "expected 1 dimensions"), "'%s'", lg.msg);
    r = vd_ckpt_get(c, &lg, "nope", 1, NULL, &x);
    T_CHECK(r == VDIT_ERR_MISSING && strstr(lg.msg, "tensor 'nope' is missing")
                && strstr(lg.msg, "good.safetensors"),
            "missing message '%s'", lg.msg);
    vd_ckpt_free(&c);
    T_CHECK(c == NULL, "free clears");
    vd_ckpt_free(&c);

    /* an integer tensor is not a weight */
    int32_t iv[2] = { 1, 2 };
    st_tensor ti[] = { { "ids", "I32", 1, { 2 }, iv, sizeof(iv) } };
    st_write(path_of("int.safetensors"), ti, 1);
    if (!vd_ckpt_open(path_of("int.safetensors"), &lg, &c)) {
        r = vd_ckpt_get(c, &lg, "ids", 1, NULL, &x);
        T_CHECK(r == VDIT_ERR_UNSUPPORTED && strstr(lg.msg, "'ids' has type I32"), "'%s'", lg.msg);
        vd_ckpt_free(&c);
    }

    /* a header whose length is not a multiple of 8 leaves data misaligned:
     * the loader keeps an aligned copy */
    const char *hd = "{\"m\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    uint8_t img[256];
    uint64_t hl = strlen(hd);
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(hl >> (8 * i));
    memcpy(img + 8, hd, hl);
    memcpy(img + 8 + hl, a, 8);
    write_file(path_of("odd.safetensors"), img, 8 + hl + 8);
    r = vd_ckpt_open(path_of("odd.safetensors"), &lg, &c);
    T_CHECK(r == 0, "misaligned: %s", lg.msg);
    if (!r) {
        x = vd_ckpt_find(c, "m");
        T_CHECK(x && ((uintptr_t)x->data & 3) == 0 && !memcmp(x->data, a, 8), "aligned copy");
        vd_ckpt_free(&c);
    }
}

static void test_sharded(void)
{
    float a[4] = { 1, 2, 3, 4 }, b[2] = { 5, 6 }, d[3] = { 7, 8, 9 };
    mkdir(path_of("sharded"), 0755);
    mkdir(path_of("folder"), 0755);
    st_tensor s1[] = { { "x.a", "F32", 1, { 4 }, a, 16 }, { "x.b", "F32", 1, { 2 }, b, 8 } };
    st_tensor s2[] = { { "y.d", "F32", 1, { 3 }, d, 12 } };
    st_write(path_of("sharded/m-00001-of-00002.safetensors"), s1, 2);
    st_write(path_of("sharded/m-00002-of-00002.safetensors"), s2, 1);
    const char *idx = "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
                      "\"x.a\":\"m-00001-of-00002.safetensors\","
                      "\"x.b\":\"m-00001-of-00002.safetensors\","
                      "\"y.d\":\"m-00002-of-00002.safetensors\"}}";
    write_file(path_of("sharded/m.safetensors.index.json"), idx, strlen(idx));
    vd_log lg = { 0 };
    vd_ckpt *c;
    int r = vd_ckpt_open(path_of("sharded/m.safetensors.index.json"), &lg, &c);
    T_CHECK(r == 0, "open index: %s", lg.msg);
    if (!r) {
        T_CHECK(vd_ckpt_count(c) == 3, "3 tensors");
        const vt_tensor *t = vd_ckpt_find(c, "y.d");
        T_CHECK(t && ((const float *)t->data)[2] == 9, "y.d");
        T_CHECK(t && strstr(vd_ckpt_file(c, t), "m-00002-of-00002"), "file of y.d");
        vd_ckpt_free(&c);
    }
    /* the folder holding an index opens through it */
    r = vd_ckpt_open(path_of("sharded"), &lg, &c);
    T_CHECK(r == 0 && vd_ckpt_count(c) == 3, "open sharded folder: %s", lg.msg);
    vd_ckpt_free(&c);

    /* a folder of plain files: all of them */
    st_write(path_of("folder/one.safetensors"), s1, 2);
    st_write(path_of("folder/two.safetensors"), s2, 1);
    write_file(path_of("folder/README"), "x", 1);
    r = vd_ckpt_open(path_of("folder"), &lg, &c);
    T_CHECK(r == 0 && vd_ckpt_count(c) == 3, "open folder: %s", lg.msg);
    T_CHECK(!strcmp(vd_ckpt_label(c), path_of("folder")), "label");
    vd_ckpt_free(&c);
    /* the same tensor in two files of a folder */
    st_write(path_of("folder/three.safetensors"), s2, 1);
    expect_fail(path_of("folder"), VDIT_ERR_FORMAT,
                (const char *[]){ "'y.d' appears twice", "folder/", NULL }, "duplicate across files");

    mkdir(path_of("emptydir"), 0755);
    expect_fail(path_of("emptydir"), VDIT_ERR_MISSING, (const char *[]){ "emptydir", NULL },
                "empty folder");
    expect_fail(path_of("does-not-exist"), VDIT_ERR_MISSING,
                (const char *[]){ "does-not-exist", NULL }, "no such path");

    /* a missing shard: the message names the index, the shard and a tensor */
    mkdir(path_of("missing"), 0755);
    st_write(path_of("missing/m-00001-of-00002.safetensors"), s1, 2);
    write_file(path_of("missing/m.safetensors.index.json"), idx, strlen(idx));
    expect_fail(path_of("missing/m.safetensors.index.json"), VDIT_ERR_MISSING,
                (const char *[]){ "m.safetensors.index.json", "m-00002-of-00002.safetensors",
                                  "'y.d'", NULL },
                "missing shard");
    /* the index names a tensor the shard does not hold */
    const char *idx2 = "{\"weight_map\":{\"x.a\":\"m-00001-of-00002.safetensors\","
                       "\"x.zz\":\"m-00001-of-00002.safetensors\"}}";
    write_file(path_of("missing/two.safetensors.index.json"), idx2, strlen(idx2));
    expect_fail(path_of("missing/two.safetensors.index.json"), VDIT_ERR_MISSING,
                (const char *[]){ "two.safetensors.index.json", "'x.zz'", "absent", NULL },
                "index names a missing tensor");
    /* ... or places it in the wrong shard */
    st_write(path_of("missing/m-00002-of-00002.safetensors"), s2, 1);
    const char *idx3 = "{\"weight_map\":{\"x.a\":\"m-00002-of-00002.safetensors\","
                       "\"y.d\":\"m-00002-of-00002.safetensors\",\"x.b\":\"m-00001-of-00002.safetensors\"}}";
    write_file(path_of("missing/three.safetensors.index.json"), idx3, strlen(idx3));
    expect_fail(path_of("missing/three.safetensors.index.json"), VDIT_ERR_FORMAT,
                (const char *[]){ "'x.a'", "found in", NULL }, "index puts a tensor in the wrong shard");
    /* shard names may not leave the folder */
    const char *idx4 = "{\"weight_map\":{\"x.a\":\"../m-00001-of-00002.safetensors\"}}";
    write_file(path_of("missing/four.safetensors.index.json"), idx4, strlen(idx4));
    expect_fail(path_of("missing/four.safetensors.index.json"), VDIT_ERR_FORMAT,
                (const char *[]){ "'x.a'", "bad file name", NULL }, "index escapes the folder");
    write_file(path_of("missing/five.safetensors.index.json"), "{\"weight_map\":[", 15);
    expect_fail(path_of("missing/five.safetensors.index.json"), VDIT_ERR_FORMAT,
                (const char *[]){ "five.safetensors.index.json", "JSON", NULL }, "index not JSON");
    write_file(path_of("missing/six.safetensors.index.json"), "{}", 2);
    expect_fail(path_of("missing/six.safetensors.index.json"), VDIT_ERR_FORMAT,
                (const char *[]){ "weight_map", NULL }, "index without weight_map");
    /* several indexes in a folder: ambiguous */
    expect_fail(path_of("missing"), VDIT_ERR_FORMAT, (const char *[]){ "several", NULL },
                "several indexes");
}

static void test_malformed(void)
{
    const char *T = "'w'";
    /* under 8 bytes */
    write_file(path_of("short.safetensors"), "abc", 3);
    expect_fail(path_of("short.safetensors"), VDIT_ERR_FORMAT,
                (const char *[]){ "short.safetensors", "too short", NULL }, "3-byte file");
    /* header length beyond the file */
    uint8_t big[16] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}' };
    write_file(path_of("hlen.safetensors"), big, 16);
    expect_fail(path_of("hlen.safetensors"), VDIT_ERR_FORMAT,
                (const char *[]){ "hlen.safetensors", "header length 65535", NULL },
                "header length beyond file");
    uint8_t huge[16] = { 0, 0, 0, 0, 0, 0, 0, 0x80 };
    write_file(path_of("hlen2.safetensors"), huge, 16);
    expect_fail(path_of("hlen2.safetensors"), VDIT_ERR_FORMAT,
                (const char *[]){ "hlen2.safetensors", NULL }, "header length 2^63");
    /* header not JSON / not an object */
    expect_header_fail("notjson.safetensors", "{\"w\": {\"dtype\": F32}}", 0,
                       (const char *[]){ "notjson.safetensors", "JSON", NULL });
    expect_header_fail("array.safetensors", "[1, 2]", 0,
                       (const char *[]){ "array.safetensors", "start with '{'", NULL });
    expect_header_fail("entry.safetensors", "{\"w\": 3}", 0,
                       (const char *[]){ "entry.safetensors", T, "not an object", NULL });
    expect_header_fail("meta.safetensors", "{\"__metadata__\": 3}", 0,
                       (const char *[]){ "meta.safetensors", "__metadata__", NULL });
    expect_header_fail("fields.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
                       (const char *[]){ "fields.safetensors", T, "data_offsets", NULL });
    /* unknown dtype */
    expect_header_fail("dtype.safetensors",
                       "{\"w\": {\"dtype\": \"F31\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "dtype.safetensors", T, "unknown dtype 'F31'", NULL });
    /* shape times element size is not the byte range */
    expect_header_fail("size.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 24,
                       (const char *[]){ "size.safetensors", T, "needs 24 bytes but data_offsets span 20", NULL });
    expect_header_fail("size16.safetensors",
                       "{\"w\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 4]}}", 8,
                       (const char *[]){ "size16.safetensors", T, "BF16", NULL });
    expect_header_fail("negshape.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "negshape.safetensors", T, "shape", NULL });
    expect_header_fail("fshape.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "fshape.safetensors", T, "shape", NULL });
    expect_header_fail("ovf.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], "
                       "\"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "ovf.safetensors", T, "overflows", NULL });
    expect_header_fail("dims.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                       "\"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "dims.safetensors", T, "9 dimensions", NULL });
    /* offsets beyond the file, reversed, not integers */
    expect_header_fail("past.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 16,
                       (const char *[]){ "past.safetensors", T, "past the end", NULL });
    expect_header_fail("rev.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 16,
                       (const char *[]){ "rev.safetensors", T, "data_offsets", NULL });
    expect_header_fail("negoff.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 16,
                       (const char *[]){ "negoff.safetensors", T, "data_offsets", NULL });
    expect_header_fail("stroff.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", 16,
                       (const char *[]){ "stroff.safetensors", T, "data_offsets", NULL });
    expect_header_fail("hugeoff.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": "
                       "[18446744073709551612, 18446744073709551616]}}", 16,
                       (const char *[]){ "hugeoff.safetensors", T, NULL });
    /* overlapping tensors: both named */
    expect_header_fail("overlap.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                       " \"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
                       (const char *[]){ "overlap.safetensors", T, "'v'", "overlap", NULL });
    /* duplicate names */
    expect_header_fail("dup.safetensors",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                       " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                       (const char *[]){ "dup.safetensors", T, "appears twice", NULL });
    expect_header_fail("nul.safetensors",
                       "{\"w\\u0000x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                       (const char *[]){ "nul.safetensors", "NUL", NULL });

    /* empty tensors may share an offset with a real one */
    const char *zh = "{\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                     " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    float zd[2] = { 1, 2 };
    st_write_raw(path_of("zero.safetensors"), zh, zd, 8);
    vd_log lg = { 0 };
    vd_ckpt *c;
    T_CHECK(vd_ckpt_open(path_of("zero.safetensors"), &lg, &c) == 0, "empty tensor inside: %s", lg.msg);
    vd_ckpt_free(&c);

    /* a failed file leaves the set as it was */
    vd_ckpt *keep = vd_ckpt_new();
    float one[1] = { 5 };
    int64_t s1 = 1;
    vd_ckpt_add(keep, "before", VT_F32, 1, &s1, one, NULL, "mem", &lg);
    const char *two = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}";
    uint8_t img2[256] = { 0 };
    size_t tl = strlen(two);
    img2[0] = (uint8_t)tl;
    memcpy(img2 + 8, two, tl);
    T_CHECK(vd_ckpt_add_safetensors_mem(keep, img2, 8 + tl + 4, "two", &lg) == VDIT_ERR_FORMAT
                && strstr(lg.msg, "overlap"),
            "overlap after adding: '%s'", lg.msg);
    T_CHECK(vd_ckpt_count(keep) == 1 && vd_ckpt_find(keep, "before") && !vd_ckpt_find(keep, "a")
                && !vd_ckpt_find(keep, "b"),
            "set restored after a failed file");
    T_CHECK(!vd_ckpt_add(keep, "a", VT_F32, 1, &s1, one, NULL, "mem", &lg), "name free again");
    vd_ckpt_free(&keep);

    /* truncated at every length: always a clean failure naming the file */
    float a[8] = { 0 };
    st_tensor t[] = { { "w", "F32", 2, { 2, 4 }, a, sizeof(a) }, { "v", "F16", 1, { 3 }, a, 6 } };
    st_write(path_of("full.safetensors"), t, 2);
    FILE *f = fopen(path_of("full.safetensors"), "rb");
    uint8_t img[512];
    size_t n = f ? fread(img, 1, sizeof(img), f) : 0;
    if (f)
        fclose(f);
    T_CHECK(n > 40 && n < sizeof(img), "image size %zu", n);
    int all_ok = 1;
    for (size_t k = 0; k < n; k++) {
        write_file(path_of("cut.safetensors"), img, k);
        vd_log l2 = { 0 };
        if (!vd_ckpt_open(path_of("cut.safetensors"), &l2, &c) || !strstr(l2.msg, "cut.safetensors")) {
            all_ok = 0;
            T_CHECK(0, "truncated to %zu bytes: '%s'", k, l2.msg);
        }
        vd_ckpt_free(&c);
    }
    T_CHECK(all_ok, "truncations");
    /* the message for a cut in the data names the tensor */
    write_file(path_of("cut.safetensors"), img, n - 2);
    expect_fail(path_of("cut.safetensors"), VDIT_ERR_FORMAT,
                (const char *[]){ "cut.safetensors", "'v'", "truncated", NULL }, "cut data");

    /* in-memory parser on random bytes after a valid length prefix */
    t_rng r = { 42 };
    for (int it = 0; it < 2000; it++) {
        uint8_t buf[96];
        size_t len = 8 + (size_t)(t_next(&r) % 88);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)t_next(&r);
        uint64_t hl = t_next(&r) % (len - 7);
        for (int i = 0; i < 8; i++)
            buf[i] = (uint8_t)(hl >> (8 * i));
        buf[8] = '{';
        vd_ckpt *m = vd_ckpt_new();
        vd_ckpt_add_safetensors_mem(m, buf, len, "rand", NULL);
        vd_ckpt_free(&m);
    }
}

static void test_rename(void)
{
    char out[64];
    T_CHECK(vd_key_rewrite("blocks.12.attn1.to_q.weight", "blocks.#.attn1.to_q.*",
                           "blocks.#.self_attn.q.*", out, sizeof(out))
                && !strcmp(out, "blocks.12.self_attn.q.weight"),
            "diffusers attn: %s", out);
    T_CHECK(!vd_key_rewrite("blocks.x.attn1.to_q.weight", "blocks.#.attn1.to_q.*", "*", out,
                            sizeof(out)),
            "'#' needs digits");
    T_CHECK(vd_key_rewrite("model.diffusion_model.head.weight", "model.diffusion_model.*", "*", out,
                           sizeof(out))
                && !strcmp(out, "head.weight"),
            "prefix: %s", out);
    T_CHECK(vd_key_rewrite("a.1.b.22.c", "a.#.b.#.c", "x.#.#", out, sizeof(out))
                && !strcmp(out, "x.1.22"),
            "two numbers: %s", out);
    T_CHECK(vd_key_rewrite("pre.mid.post", "*.post", "*", out, sizeof(out)) && !strcmp(out, "pre.mid"),
            "star before suffix: %s", out);
    T_CHECK(!vd_key_rewrite("abc", "abd", "x", out, sizeof(out)), "no match");
    T_CHECK(!vd_key_rewrite("abcdefghij", "*", "*", out, 5), "output too small");
    T_CHECK(!vd_key_rewrite("blocks.1", "blocks.#.x", "y", out, sizeof(out)), "pattern longer");

    float v[1] = { 1 };
    vd_ckpt *c = vd_ckpt_new();
    vd_log lg = { 0 };
    const char *names[] = { "model.diffusion_model.blocks.0.attn1.to_q.weight",
                            "model.diffusion_model.blocks.0.attn1.to_k.weight",
                            "model.diffusion_model.blocks.11.ffn.net.0.proj.weight",
                            "model.diffusion_model.patch_embedding.weight", "other" };
    int64_t one = 1;
    for (int i = 0; i < 5; i++)
        T_CHECK(!vd_ckpt_add(c, names[i], VT_F32, 1, &one, v, NULL, "mem", &lg), "add: %s", lg.msg);
    T_CHECK(vd_ckpt_add(c, "other", VT_F32, 1, &one, v, NULL, "mem", &lg) == VDIT_ERR_FORMAT
                && strstr(lg.msg, "'other' appears twice"),
            "duplicate add: %s", lg.msg);
    T_CHECK(vd_ckpt_count_prefix(c, "model.diffusion_model.") == 4, "count_prefix");
    T_CHECK(!vd_ckpt_strip_prefix(c, "model.diffusion_model.", &lg), "strip: %s", lg.msg);
    T_CHECK(vd_ckpt_find(c, "blocks.0.attn1.to_q.weight") && vd_ckpt_find(c, "other"), "stripped");
    const vd_keyrule rules[] = {
        { "blocks.#.attn1.to_q.*", "blocks.#.self_attn.q.*" },
        { "blocks.#.attn1.to_k.*", "blocks.#.self_attn.k.*" },
        { "blocks.#.ffn.net.0.proj.*", "blocks.#.ffn.0.*" },
        { "blocks.#.*", "never.#.*" }, /* first matching rule wins */
    };
    T_CHECK(!vd_ckpt_rename(c, rules, 4, &lg), "rename: %s", lg.msg);
    T_CHECK(vd_ckpt_find(c, "blocks.0.self_attn.q.weight") && vd_ckpt_find(c, "blocks.0.self_attn.k.weight")
                && vd_ckpt_find(c, "blocks.11.ffn.0.weight") && vd_ckpt_find(c, "patch_embedding.weight")
                && !vd_ckpt_find(c, "blocks.0.attn1.to_q.weight"),
            "renamed");
    const vt_tensor *t = vd_ckpt_find(c, "blocks.0.self_attn.q.weight");
    T_CHECK(t && !strcmp(t->name, "blocks.0.self_attn.q.weight"), "tensor name updated");
    /* a collision leaves the set as it was */
    const vd_keyrule clash[] = { { "blocks.0.self_attn.*.weight", "same" } };
    int r = vd_ckpt_rename(c, clash, 1, &lg);
    T_CHECK(r == VDIT_ERR_FORMAT && strstr(lg.msg, "'blocks.0.self_attn.q.weight'")
                && strstr(lg.msg, "'blocks.0.self_attn.k.weight'") && strstr(lg.msg, "'same'"),
            "collision message '%s'", lg.msg);
    T_CHECK(vd_ckpt_find(c, "blocks.0.self_attn.q.weight") && !vd_ckpt_find(c, "same")
                && vd_ckpt_count(c) == 5,
            "unchanged after collision");
    r = vd_ckpt_strip_prefix(c, "blocks.0.self_attn.", &lg);
    T_CHECK(r == 0, "strip without collision");
    const vd_keyrule clash2[] = { { "other", "q.weight" } };
    T_CHECK(vd_ckpt_rename(c, clash2, 1, &lg) == VDIT_ERR_FORMAT, "rename onto an existing name");
    /* many tensors: hash table growth keeps every lookup */
    char nm[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(nm, sizeof(nm), "t.%d", i);
        vd_ckpt_add(c, nm, VT_F32, 1, &one, v, NULL, "mem", &lg);
    }
    const vd_keyrule grow[] = { { "t.#", "u.#.w" } };
    T_CHECK(!vd_ckpt_rename(c, grow, 1, &lg), "rename 3000");
    int found = 0;
    for (int i = 0; i < 3000; i++) {
        snprintf(nm, sizeof(nm), "u.%d.w", i);
        found += vd_ckpt_find(c, nm) != NULL;
    }
    T_CHECK(found == 3000, "found %d", found);
    vd_ckpt_free(&c);
}

/* Resident pages of this process (/proc/self/statm), or -1. */
static long resident_pages(void)
{
    long size = -1, res = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = -1;
        fclose(f);
    }
    return res;
}

/* vd_ckpt_release: a mapped tensor's whole pages go back to the system (the
 * resident size drops), the tensor still reads the same afterwards, and
 * nothing is released for a tensor under a page, one held in memory (an
 * aligned copy) or a pointer the set does not know. */
static void test_release(void)
{
    enum { N = 1 << 16 };
    float *big = malloc(N * sizeof(float)), small[6] = { 1, 2, 3, 4, 5, 6 };
    for (int i = 0; i < N; i++)
        big[i] = (float)(i % 1000) * 0.5f;
    st_tensor t[] = { { "small", "F32", 1, { 6 }, small, sizeof(small) },
                      { "big", "F32", 2, { 256, N / 256 }, big, N * sizeof(float) } };
    T_CHECK(!st_write(path_of("release.safetensors"), t, 2), "write");
    vd_log lg = { 0 };
    vd_ckpt *c;
    int r = vd_ckpt_open(path_of("release.safetensors"), &lg, &c);
    T_CHECK(r == 0, "open: %s", lg.msg);
    if (!r) {
        const vt_tensor *b = vd_ckpt_find(c, "big"), *sm = vd_ckpt_find(c, "small");
        T_CHECK(b && sm && !memcmp(b->data, big, N * sizeof(float)), "big data");
        long pg = sysconf(_SC_PAGESIZE), before = resident_pages();
        size_t n = b ? vd_ckpt_release(c, b->data) : 0;
        long after = resident_pages();
        T_CHECK(n % (size_t)pg == 0 && n + 2 * (size_t)pg > N * sizeof(float) &&
                    n <= N * sizeof(float),
                "released %zu bytes of %zu", n, N * sizeof(float));
        T_CHECK(before > 0 && before - after >= (long)(n / (size_t)pg) / 2,
                "resident %ld -> %ld pages after releasing %zu bytes", before, after, n);
        T_CHECK(b && !memcmp(b->data, big, N * sizeof(float)), "released tensor reads again");
        T_CHECK(sm && vd_ckpt_release(c, sm->data) == 0, "a tensor under a page");
        T_CHECK(vd_ckpt_release(c, big) == 0 && vd_ckpt_release(c, NULL) == 0 &&
                    vd_ckpt_release(NULL, big) == 0,
                "unknown pointers");
        vd_ckpt_free(&c);
    }
    /* the same tensor as an owned copy (misaligned in the file) stays */
    const char *hd = "{\"m\":{\"dtype\":\"F32\",\"shape\":[65536],\"data_offsets\":[0,262144]}}";
    uint64_t hl = strlen(hd);
    uint8_t *img = malloc(8 + hl + N * sizeof(float));
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(hl >> (8 * i));
    memcpy(img + 8, hd, hl);
    memcpy(img + 8 + hl, big, N * sizeof(float));
    write_file(path_of("release_odd.safetensors"), img, 8 + hl + N * sizeof(float));
    r = vd_ckpt_open(path_of("release_odd.safetensors"), &lg, &c);
    T_CHECK(r == 0 && (hl & 3), "open misaligned: %s", lg.msg);
    if (!r) {
        const vt_tensor *m = vd_ckpt_find(c, "m");
        T_CHECK(m && vd_ckpt_release(c, m->data) == 0 && !memcmp(m->data, big, N * sizeof(float)),
                "an owned copy is kept");
        vd_ckpt_free(&c);
    }
    free(img);
    free(big);
}

/* fp8 weights widened at load (vd_ckpt_widen_f8) with the threads the model
 * loader gives the set (vdit_model_params.n_threads): the same bits for any
 * thread count, each the fp8 value times its row's scale rounded to BF16. */
static void test_widen_threads(void)
{
    enum { ROWS = 300, COLS = 256 }; /* above the size that runs threaded */
    uint8_t *b8 = malloc(ROWS * COLS);
    float *sc = malloc(ROWS * sizeof(float));
    t_rng r = { 5 };
    for (int i = 0; i < ROWS * COLS; i++)
        b8[i] = (uint8_t)(t_next(&r) & 0xff);
    for (int i = 0; i < ROWS * COLS; i++)
        if ((b8[i] & 0x7f) == 0x7f)
            b8[i] = 0x3c; /* not NaN */
    for (int i = 0; i < ROWS; i++)
        sc[i] = 0.5f + (float)i / ROWS;
    uint16_t *got[3] = { 0 };
    const int threads[3] = { 0, 1, 4 };
    for (int k = 0; k < 3; k++) {
        vd_log lg = { 0 };
        vd_ckpt *c = vd_ckpt_new();
        const int64_t ws[2] = { ROWS, COLS }, ss[1] = { ROWS };
        T_CHECK(c && !vd_ckpt_add(c, "l.weight", VT_F8_E4M3, 2, ws, b8, NULL, "mem", &lg)
                    && !vd_ckpt_add(c, "l.scale_weight", VT_F32, 1, ss, sc, NULL, "mem", &lg),
                "fp8 set: %s", lg.msg);
        if (!c)
            continue;
        vd_ckpt_set_threads(c, threads[k]);
        vd_owned own = { 0 };
        const vt_tensor *w = vd_ckpt_find(c, "l.weight");
        vt_tensor tmp;
        T_CHECK(w && !vd_ckpt_widen_f8(c, &lg, "l.weight", &own, &w, &tmp), "widen: %s", lg.msg);
        if (w && w->dtype == VT_BF16) {
            got[k] = malloc(ROWS * COLS * 2);
            memcpy(got[k], w->data, ROWS * COLS * 2);
        }
        vd_owned_free(&own);
        vd_ckpt_free(&c);
    }
    int same = got[0] && got[1] && got[2], exact = same;
    for (int i = 0; same && i < ROWS * COLS; i++) {
        same &= got[0][i] == got[1][i] && got[2][i] == got[1][i];
        exact &= got[1][i] == vt_f32_to_bf16(vt_f8e4m3_to_f32(b8[i]) * sc[i / COLS]);
    }
    T_CHECK(same, "widened fp8: same bits with 0, 1 and 4 threads");
    T_CHECK(exact, "widened fp8: value times the row's scale, in BF16");
    for (int k = 0; k < 3; k++)
        free(got[k]);
    free(b8);
    free(sc);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

int main(int argc, char **argv)
{
    /* a fresh scratch folder every run: the cases depend on what is absent */
    snprintf(dir, sizeof(dir), "%s/loader_ckpt_tmp", argc > 1 ? argv[1] : ".");
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(dir, 0755);
    test_good();
    test_sharded();
    test_malformed();
    test_rename();
    test_release();
    test_widen_threads();
    T_DONE();
}
