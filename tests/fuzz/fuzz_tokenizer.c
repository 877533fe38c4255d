/* libFuzzer target: the SentencePiece tokenizer.
 *  1. The input as a model file (spiece.model protobuf or tokenizer.json):
 *     loads or fails cleanly; a loaded model encodes fixed text and the
 *     input itself.
 *  2. The input as text (any bytes, invalid UTF-8 included), encoded with
 *     two fixed models from tests/ (nmt_nfkc charsmap + byte fallback, and
 *     user-defined symbols): every id must be inside the vocabulary.
 *  3. The input as a prompt for Wan's cleaning (HTML unescape, whitespace).
 * The fixed models are read once from the source tree (VDIT_TOK_MODELS, a
 * ':'-separated list, set at build time). */
#include <stdio.h>

#include "fuzz.h"
#include "text/text.h"

#ifndef VDIT_TOK_MODELS
#define VDIT_TOK_MODELS ""
#endif

static vd_tok *fixed[4];
static int n_fixed = -1;

static void load_fixed(void)
{
    char list[4096];
    snprintf(list, sizeof(list), "%s", VDIT_TOK_MODELS);
    n_fixed = 0;
    for (char *p = strtok(list, ":"); p && n_fixed < 4; p = strtok(NULL, ":")) {
        vd_log lg = { 0 };
        if (vd_tok_load(p, &lg, &fixed[n_fixed]) == 0)
            n_fixed++;
        else
            fprintf(stderr, "fuzz_tokenizer: %s\n", lg.msg);
    }
}

static void encode_check(const vd_tok *t, const char *s, size_t n)
{
    int32_t small[64];
    int k = vd_tok_encode(t, s, n, small, 64);
    if (k < 0)
        return;
    int32_t *ids = k > 64 ? malloc((size_t)k * sizeof(int32_t)) : small;
    if (!ids)
        return;
    if (k > 64 && vd_tok_encode(t, s, n, ids, k) != k)
        abort();
    int vs = vd_tok_vocab_size(t);
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || ids[i] >= vs)
            abort();
        fuzz_sink += (size_t)ids[i];
    }
    if (ids != small)
        free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (n_fixed < 0)
        load_fixed();
    /* an exact-size copy so reads past the end are caught */
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;

    vd_log lg = { 0 };
    vd_tok *t = NULL;
    if (vd_tok_load_mem((const uint8_t *)buf, size, "fuzz", &lg, &t) == 0) {
        static const char fixed_text[] = "  Hello,  WORLD! \xef\xac\x81 \xe4\xb8\x96\xe7\x95\x8c "
                                         "\xff\xc0 <0x41> </s> 123  ";
        encode_check(t, fixed_text, sizeof(fixed_text) - 1);
        encode_check(t, buf, size < 4096 ? size : 4096);
        int32_t pad[16];
        if (vd_tok_encode_padded(t, "a &amp; b", 16, pad) < 0)
            abort();
        vd_tok_free(&t);
    }
    for (int i = 0; i < n_fixed; i++)
        encode_check(fixed[i], buf, size);
    char *c = vd_tok_clean_prompt(buf);
    if (c) {
        fuzz_sink += strlen(c);
        free(c);
    }
    free(buf);
    return 0;
}
