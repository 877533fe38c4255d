/*
 * Text conditioning: SentencePiece unigram tokenizer and the umT5 encoder.
 */
#ifndef VDIT_TEXT_H
#define VDIT_TEXT_H

#include "../ckpt.h"
#include "../kernels/kernels.h"

/* ---- tokenizer ---------------------------------------------------------- */
/* SentencePiece unigram tokenizer giving the ids SentencePiece itself gives
 * (checked against python3-sentencepiece by tests/text). Read-only after
 * loading: one vd_tok may be used from several threads at once. */
typedef struct vd_tok vd_tok;

/* Loads a SentencePiece model: spiece.model (ModelProto protobuf) or the HF
 * tokenizer.json form (Unigram model; its Precompiled charsmap, " {2,}"
 * Replace and Metaspace are mapped onto SentencePiece's normaliser
 * settings). The kind is detected from the content ('{' first = JSON).
 * Only unigram models are accepted (VDIT_ERR_UNSUPPORTED otherwise);
 * malformed files give VDIT_ERR_FORMAT naming the file. *out is owned by
 * the caller (vd_tok_free). load_mem does not keep `buf`. */
int vd_tok_load(const char *path, vd_log *lg, vd_tok **out);
int vd_tok_load_mem(const uint8_t *buf, size_t len, const char *label, vd_log *lg, vd_tok **out);
void vd_tok_free(vd_tok **t);
/* The end-of-sequence / padding ids (their pieces "</s>", "<pad>" or the
 * names the model gives, when they are control pieces), else -1. */
int vd_tok_eos_id(const vd_tok *t);
int vd_tok_pad_id(const vd_tok *t);
int vd_tok_vocab_size(const vd_tok *t);

/* SentencePiece encoding of `text` (len bytes, any bytes: malformed UTF-8
 * becomes U+FFFD as in SentencePiece), then the EOS id (if the model has
 * one). No cleaning, no padding. Writes at most max ids, returns the full
 * count (may exceed max) or <0. */
int vd_tok_encode(const vd_tok *t, const char *text, size_t len, int32_t *ids, int max);

/* What Wan's text encoder is fed (HuggingfaceTokenizer with clean='whitespace',
 * padding='max_length', truncation): vd_tok_clean_prompt(prompt), encoded,
 * truncated to text_len ids with EOS kept as the last one, then padded with
 * the pad id (0 if the model has none). ids: [text_len]. Returns n_real, the
 * number of non-padding ids (1..text_len, mask = 1 on those), or <0.
 * Wan2.1 uses text_len 512. */
int vd_tok_encode_padded(const vd_tok *t, const char *prompt, int text_len, int32_t *ids);
/* The same, also giving in *n_tokens (if not NULL) the count before
 * truncation (> text_len when the prompt was cut). */
int vd_tok_encode_padded_n(const vd_tok *t, const char *prompt, int text_len, int32_t *ids,
                           int *n_tokens);

/* A 64-bit hash of n ids (FNV-1a + length), to key cached prompt
 * embeddings: equal ids give equal hashes. */
uint64_t vd_tok_hash_ids(const int32_t *ids, int64_t n);

/* The prompt cleaning Wan applies before tokenising (clean='whitespace'):
 * html.unescape applied twice (all HTML5 named references, numeric ones
 * with Python's fix-ups), then every run of Python whitespace (str.isspace:
 * ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680,
 * U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) becomes one space
 * and leading/trailing whitespace is removed. ftfy.fix_text (mojibake
 * repair) is NOT applied. Returns a malloc'd string (free()) or NULL. */
char *vd_tok_clean_prompt(const char *text);

/* ---- umT5 encoder -------------------------------------------------------- */
/* The umT5-XXL encoder of Wan2.1 (wan/modules/t5.py T5Encoder). A vd_t5 is
 * read-only after loading and may be shared by contexts; vd_t5_encode uses
 * only its vk_ctx for scratch, so calls on different vk_ctx may overlap. */
typedef struct vd_t5 vd_t5;

typedef struct vd_t5_config {
    int64_t vocab, dim, dim_attn, dim_ffn, n_heads, n_layers, n_buckets;
    int shared_pos; /* 0 for umT5: every block has its own position table */
} vd_t5_config;

/* Maps the known key layouts onto the original Wan names
 * (token_embedding.weight, blocks.N.{norm1,attn.{q,k,v,o},norm2,
 * ffn.{gate.0,fc1,fc2},pos_embedding.embedding}.weight, norm.weight):
 *  - original (models_t5_umt5-xxl-enc-bf16.pth, or safetensors): unchanged;
 *  - HF UMT5EncoderModel names (diffusers text_encoder/ folder, the
 *    repackaged umt5_xxl_fp16.safetensors and its fp8_e4m3fn_scaled form):
 *    shared.weight, encoder.block.N.layer.0.SelfAttention.{q,k,v,o,
 *    relative_attention_bias}, layer.0.layer_norm, layer.1.DenseReluDense.
 *    {wi_0 (gelu gate), wi_1, wo}, layer.1.layer_norm, encoder.final_layer_norm;
 *  - either of them behind a prefix ("...encoder.final_layer_norm.weight").
 * Returns 0, or VDIT_ERR_MISSING when no layout is recognised. */
int vd_t5_canonicalize(vd_ckpt *ck, vd_log *lg);

/* Builds the encoder from canonical names; every size comes from the tensor
 * shapes. Weights stay in the checkpoint's type (F32/F16/BF16, used in place:
 * `ck` must outlive the encoder); F8_E4M3/F8_E5M2 weights are multiplied by
 * their "<module>.scale_weight" (or "<name>_scale") and kept as BF16. */
int vd_t5_load(const vd_ckpt *ck, vd_log *lg, vd_t5 **out);
void vd_t5_free(vd_t5 **t);
const vd_t5_config *vd_t5_get_config(const vd_t5 *t);
/* Puts every layer's linears and norms on a CUDA device (vc: a vkc_ctx,
 * kernels/cuda/vkc.h) once, in prec (VK_PREC_BF16: bf16 weights and
 * products with fp32 accumulation; otherwise fp32 without TF32); the token
 * embedding and the position tables stay on the host. Encodes then run on
 * the device of the vk_ctx they are given (kc->cuda, in the same precision:
 * kc->cuda_bf16); a vk_ctx without a device is refused. release(user, data)
 * is called with each stored weight as soon as the model no longer reads
 * it. 0 or VDIT_ERR_* said in lg (VDIT_ERR_UNSUPPORTED: no CUDA backend in
 * this build). */
int vd_t5_upload(vd_t5 *t, void *vc, vk_prec prec, void (*release)(void *user, const void *data),
                 void *user, vd_log *lg);
/* Bytes of weight data the encoder reads (linears + embedding). */
size_t vd_t5_weight_bytes(const vd_t5 *t);

/* ids: [n] token ids, of which the first n_real are real (mask 1) and the rest
 * padding. out: [n, dim] final hidden states of every position (padded rows
 * are computed as the reference does, attending to the real keys only).
 * Wan keeps only the first n_real rows (T5EncoderModel returns u[:seq_len])
 * and the DiT pads them with zeros to text_len itself; since real rows never
 * see padded keys, encoding just the n_real real ids (n = n_real) gives the
 * same rows faster. */
int vd_t5_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                 float *out);

/* Same, reporting intermediates (conformance, debugging): "inter/token_emb"
 * [n, dim], "inter/pos_bias0" [heads, n, n], "inter/blockL_out" [n, dim]. */
typedef void (*vd_t5_tap)(void *user, const char *name, const float *data, size_t n);
int vd_t5_encode_tap(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                     float *out, vd_t5_tap tap, void *user);

/* Relative-position bucket of rel = key - query (bidirectional, as the
 * reference computes it in float32 with truncation). */
int64_t vd_t5_bucket(int64_t rel, int64_t n_buckets, int64_t max_dist);

#endif
