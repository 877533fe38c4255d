/*
 * Text conditioning: SentencePiece unigram tokenizer and the umT5 encoder.
 */
#ifndef VDIT_TEXT_H
#define VDIT_TEXT_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

/* ---- tokenizer ---------------------------------------------------------- */
typedef struct vd_tok vd_tok;

/* Loads spiece.model (SentencePiece protobuf) or tokenizer.json (HF form);
 * the kind is detected from the content. */
int vd_tok_load(const char *path, vd_log *lg, vd_tok **out);
int vd_tok_load_mem(const uint8_t *buf, size_t len, const char *label, vd_log *lg, vd_tok **out);
void vd_tok_free(vd_tok **t);
int vd_tok_eos_id(const vd_tok *t);
int vd_tok_pad_id(const vd_tok *t);
int vd_tok_vocab_size(const vd_tok *t);

/* SentencePiece encoding of `text` (len bytes, any bytes), then the EOS id.
 * Writes at most max ids, returns the full count (may exceed max) or <0. */
int vd_tok_encode(const vd_tok *t, const char *text, size_t len, int32_t *ids, int max);

/* The prompt cleaning Wan's pipeline applies before tokenising (whitespace
 * and HTML-entity cleanup). Returns a malloc'd string. */
char *vd_tok_clean_prompt(const char *text);

/* ---- umT5 encoder -------------------------------------------------------- */
typedef struct vd_t5 vd_t5;

typedef struct vd_t5_config {
    int64_t vocab, dim, dim_attn, dim_ffn, n_heads, n_layers, n_buckets;
    int shared_pos;
} vd_t5_config;

int vd_t5_canonicalize(vd_ckpt *ck, vd_log *lg);
int vd_t5_load(const vd_ckpt *ck, vd_log *lg, vd_t5 **out);
void vd_t5_free(vd_t5 **t);
const vd_t5_config *vd_t5_get_config(const vd_t5 *t);

/* ids: [n] token ids, of which the first n_real are real (mask 1) and the rest
 * padding. out: [n, dim] final hidden states of every position. */
int vd_t5_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                 float *out);

#endif
