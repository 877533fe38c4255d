/* Tokenizer unit tests: prompt cleaning against Python's html.unescape +
 * whitespace rules (fixture made by make_spm.py), padding/truncation as Wan
 * feeds umT5, hashing, and robustness on damaged model files and arbitrary
 * bytes. Token-id parity with SentencePiece is tok_parity.sh / tok_live.py. */
#include "../t.h"
#include "json.h"
#include "text/text.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    char *d = NULL;
    if (vd_read_file(NULL, path, &d, len))
        return NULL;
    return (uint8_t *)d;
}

static void test_clean(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/prompt_clean.json", dir);
    size_t len;
    char *js = (char *)slurp(path, &len);
    T_CHECK(js != NULL, "cannot read %s", path);
    if (!js)
        return;
    char err[128];
    vj_val *root = vj_parse(js, len, err, sizeof(err));
    T_CHECK(root && root->type == VJ_ARR && root->len > 10, "bad %s", path);
    for (size_t i = 0; root && i < root->len; i++) {
        const vj_val *c = &root->kids[i];
        char *got = vd_tok_clean_prompt(c->kids[0].str);
        T_CHECK(got && !strcmp(got, c->kids[1].str), "clean(\"%s\") = \"%s\", want \"%s\"",
                c->kids[0].str, got ? got : "(null)", c->kids[1].str);
        free(got);
    }
    vj_free(root);
    free(js);
}

static void test_padded(const vd_tok *t)
{
    int32_t ids[64], raw[256];
    int eos = vd_tok_eos_id(t), pad = vd_tok_pad_id(t);
    T_CHECK(eos == 1 && pad == 0, "tiny_spiece ids: eos %d pad %d (want umT5's 1, 0)", eos, pad);
    const char *p = "  A cat &amp; a dog\n walking   on the beach ";
    int n = vd_tok_encode_padded(t, p, 64, ids);
    const char *c = "A cat & a dog walking on the beach";
    int m = vd_tok_encode(t, c, strlen(c), raw, 256);
    T_CHECK(n == m && n > 3, "padded n_real %d vs %d", n, m);
    T_CHECK(!memcmp(ids, raw, (size_t)n * 4), "padded ids differ from the cleaned encoding");
    for (int i = n; i < 64; i++)
        T_CHECK(ids[i] == pad, "pad at %d is %d", i, ids[i]);
    /* truncation keeps EOS last */
    n = vd_tok_encode_padded(t, p, 4, ids);
    T_CHECK(n == 4 && ids[3] == eos && !memcmp(ids, raw, 12), "truncated: n %d last %d", n, ids[3]);
    /* the count before truncation (the pipeline warns with it), same ids */
    int32_t ids_n[64];
    int full = -5;
    int n2 = vd_tok_encode_padded_n(t, p, 4, ids_n, &full);
    T_CHECK(n2 == 4 && full == m && !memcmp(ids_n, ids, 4 * sizeof(int32_t)),
            "padded_n truncated: n %d, full count %d (want %d)", n2, full, m);
    n2 = vd_tok_encode_padded_n(t, p, 64, ids_n, &full);
    T_CHECK(n2 == m && full == m, "padded_n: n %d full %d (want %d)", n2, full, m);
    T_CHECK(vd_tok_encode_padded_n(t, p, 64, ids_n, NULL) == m, "padded_n without a count");
    n = vd_tok_encode_padded(t, " \t ", 8, ids);
    T_CHECK(n == 1 && ids[0] == eos && ids[1] == pad, "empty prompt: n %d", n);
    /* the hash follows the ids */
    uint64_t h1 = vd_tok_hash_ids(raw, m), h2 = vd_tok_hash_ids(raw, m - 1);
    T_CHECK(h1 == vd_tok_hash_ids(raw, m) && h1 != h2, "hash");
    /* count beyond max */
    int k = vd_tok_encode(t, c, strlen(c), raw, 2);
    T_CHECK(k == m, "encode with small max returns the full count %d vs %d", k, m);
}

static void test_damaged(const uint8_t *model, size_t len)
{
    t_rng r = { 42 };
    uint8_t *b = malloc(len);
    vd_log lg = { 0 };
    int loaded = 0;
    /* truncations and bit flips: errors are fine, crashes and leaks are not */
    for (int it = 0; it < 60; it++) {
        size_t n = it < 20 ? (size_t)(t_next(&r) % len) : len;
        memcpy(b, model, n);
        if (it >= 20)
            for (int f = 0; f < 1 + it % 8; f++)
                b[t_next(&r) % n] ^= (uint8_t)(1u << (t_next(&r) % 8));
        vd_tok *t = NULL;
        int rc = vd_tok_load_mem(b, n, "damaged", &lg, &t);
        T_CHECK((rc == 0) == (t != NULL), "rc %d vs handle", rc);
        if (t) {
            loaded++;
            char txt[200];
            for (size_t i = 0; i < sizeof(txt); i++)
                txt[i] = (char)t_next(&r);
            int32_t ids[64];
            int k = vd_tok_encode(t, txt, sizeof(txt), ids, 64);
            T_CHECK(k >= 0, "encode on a loadable damaged model failed: %d", k);
            vd_tok_free(&t);
        } else {
            T_CHECK(lg.msg[0] != 0, "no message for rc %d", rc);
        }
    }
    free(b);
    const char *junk = "{\"model\": {\"type\": \"BPE\"}}";
    vd_tok *t = NULL;
    T_CHECK(vd_tok_load_mem((const uint8_t *)junk, strlen(junk), "bpe.json", &lg, &t) ==
                VDIT_ERR_UNSUPPORTED,
            "BPE json must be unsupported");
    T_CHECK(vd_tok_load_mem((const uint8_t *)"\x0a\x02", 2, "x", &lg, &t) < 0, "truncated proto");
    T_CHECK(vd_tok_load_mem(NULL, 0, "empty", &lg, &t) < 0, "empty file");
    printf("damaged models: %d of 60 still loadable\n", loaded);
}

static void test_arbitrary(const vd_tok *t)
{
    t_rng r = { 7 };
    char txt[4096];
    static int32_t ids[16 * 4096 + 8];
    for (int it = 0; it < 50; it++) {
        size_t n = t_next(&r) % sizeof(txt);
        for (size_t i = 0; i < n; i++) {
            uint64_t v = t_next(&r);
            txt[i] = (char)(v % 5 == 0 ? ' ' : v % 7 == 0 ? 0xe4 : v);
        }
        int k = vd_tok_encode(t, txt, n, ids, 16 * 4096 + 8);
        T_CHECK(k >= 1 && k <= 16 * (int)n + 4, "random bytes: %d ids for %zu bytes", k, n);
        for (int i = 0; i < k; i++)
            T_CHECK(ids[i] >= 0 && ids[i] < vd_tok_vocab_size(t), "id %d out of range", ids[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_tok TINY_SPIECE_MODEL FIXTURE_DIR\n");
        return 2;
    }
    size_t len;
    uint8_t *model = slurp(argv[1], &len);
    T_CHECK(model != NULL, "cannot read %s", argv[1]);
    if (!model)
        T_DONE();
    vd_log lg = { 0 };
    vd_tok *t = NULL;
    T_CHECK(vd_tok_load_mem(model, len, argv[1], &lg, &t) == 0, "%s", lg.msg);
    if (t) {
        test_padded(t);
        test_arbitrary(t);
        vd_tok_free(&t);
        T_CHECK(t == NULL, "free clears");
    }
    test_clean(argv[2]);
    test_damaged(model, len);
    free(model);
    T_DONE();
}
