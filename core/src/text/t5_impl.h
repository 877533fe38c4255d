/* Private to the umT5 encoder: its structures, shared by t5.c (the CPU) and
 * t5_cuda.c (its layers on a CUDA device). */
#ifndef VDIT_TEXT_T5_IMPL_H
#define VDIT_TEXT_T5_IMPL_H

#include "text.h"

typedef struct t5_layer {
    float *norm1, *norm2; /* [dim] */
    float *pos;           /* [n_buckets, n_heads] or NULL (shared) */
    vk_linear q, k, v, o, gate, fc1, fc2;
} t5_layer;

typedef struct vd_t5_dev vd_t5_dev;

struct vd_t5 {
    vd_t5_config cfg;
    const vt_tensor *emb; /* [vocab, dim] stored */
    vt_tensor emb_own;    /* when the embedding had to be converted */
    float *norm;          /* [dim] */
    float *shared_pos;    /* [n_buckets, n_heads] if shared_pos */
    t5_layer *layers;
    vd_owned owned; /* converted weight buffers */
    vd_t5_dev *dev; /* the layers on a CUDA device (t5_cuda.c), or NULL */
};

/* t5.c: x[n, dim] = token_embedding[ids]; bk[2n - 1] = the bucket of every
 * distance j - i (index j - i + n - 1). */
void vd_t5_embed(const vd_t5 *t, const int32_t *ids, int64_t n, float *x);
void vd_t5_buckets(const vd_t5 *t, int64_t n, int32_t *bk);

/* t5_cuda.c (stubs without the backend): vd_t5_encode_tap on kc's device
 * (kc->cuda, in kc->cuda_bf16's precision, which must be the weights');
 * arguments checked by the caller. */
int vd_t5_dev_encode(const vd_t5 *t, vk_ctx *kc, const int32_t *ids, int64_t n, int64_t n_real,
                     float *out, vd_t5_tap tap, void *user);
void vd_t5_dev_free(vd_t5 *t);

#endif
