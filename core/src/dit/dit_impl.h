/* The DiT's private structures, shared by dit.c (the network, CPU kernels
 * through vk_funcs) and dit_cuda.c (its blocks on a CUDA device). */
#ifndef VDIT_DIT_IMPL_H
#define VDIT_DIT_IMPL_H

#include "dit.h"

typedef struct dit_block {
    vk_linear sq, sk, sv, so;       /* self-attention */
    vk_linear cq, ck, cv, co;       /* cross-attention (text) */
    vk_linear ck_img, cv_img;       /* cross-attention (image), i2v only */
    vk_linear ffn0, ffn2;
    float *mod;                     /* [6, D] */
    float *s_norm_q, *s_norm_k;     /* [D] or NULL (no qk_norm) */
    float *c_norm_q, *c_norm_k, *c_norm_k_img;
    float *norm3_w, *norm3_b;       /* [D] or NULL (no cross_attn_norm) */
} dit_block;

struct vd_dit {
    vd_dit_config cfg;
    const vd_ckpt *ck;
    vk_linear patch;                /* [D, in_dim*pt*ph*pw] */
    vk_linear time0, time2, tproj;  /* freq->D, D->D, D->6D */
    vk_linear text0, text2;         /* text_dim->D, D->D */
    vk_linear head;                 /* D -> pt*ph*pw*out_dim */
    float *head_mod;                /* [2, D] */
    /* i2v image embedding (MLPProj) */
    float *img_ln0_w, *img_ln0_b, *img_ln4_w, *img_ln4_b;
    vk_linear img1, img3;
    dit_block *blocks;
    vd_owned owned;                 /* fp8 weights widened to BF16 */
    struct vd_dit_dev *dev;         /* the blocks' weights on a CUDA device, or NULL */
};

struct vd_dit_run {
    const vd_dit *d;
    vk_ctx *kc;
    int64_t cap_tok;                /* token capacity of the buffers below */
    float *x, *h, *y;               /* [L, D] */
    float *work;                    /* see work_floats() */
    float *rope;                    /* [L, head_dim] cos/sin table */
    int64_t rope_f, rope_h, rope_w;
    /* time table: one row per distinct timestep of the pass (n_tv rows,
     * room for cap_tv): tv [n], sinus [n, freq], e [n, D], tmp [n, D],
     * e0 [n, 6D], mod [n, 6D] (a block's or the head's modulation) */
    int64_t cap_tv, n_tv;
    float *tv, *sinus, *e, *e0, *tmp, *mod;
    /* tokens as runs of equal timestep: run s covers tokens
     * [seg_start[s], seg_start[s + 1]) of each branch, time-table row seg_tv[s] */
    int64_t cap_seg, n_seg;
    int64_t *seg_start, *seg_tv;
    vd_dit_tap_fn tap;
    void *tap_user;
    double *prof;                   /* [VD_DIT_PROF_COUNT] or NULL */
    double prof_t;
    struct vd_dit_run_dev *dev;     /* device activations (CUDA contexts), or NULL */
};

struct vd_dit_cond {
    const vd_dit *d;
    int64_t n_txt, n_img;
    float *kv;                      /* per block: K, V [n_txt, D], Kimg, Vimg [n_img, D] */
    float *kv_dev;                  /* the same on the device (CUDA contexts; kv NULL) */
    void *vc;                       /* the vkc_ctx kv_dev was made on */
};

/* ---- the CUDA device path (dit_cuda.c) ----
 * A model uploaded with vd_dit_upload runs its blocks and the per-block
 * cross-attention K/V on the device of a context whose vk_ctx has one
 * (kc->cuda): the tokens go up after the patch embedding, come back once
 * after the last block; the time embedding, patches and head stay on the
 * host (a few GFLOP). Without VK_HAVE_CUDA these return VDIT_ERR_UNSUPPORTED. */
int vd_dit_dev_cond(vd_dit_run *r, vd_dit_cond *cd, const float *ctx, const float *img);
/* The blocks over nb branches of Lb tokens: r->x (host, [nb * Lb, D] when
 * batched, else one branch) in, the blocks' output back in r->x. Taps
 * (r->tap) get each block's output, copied down. */
int vd_dit_dev_blocks(vd_dit_run *r, const vd_dit_cond *const *conds, int nb, int64_t Lb);
void vd_dit_dev_free(vd_dit *d);
void vd_dit_run_dev_free(vd_dit_run *r);
void vd_dit_cond_dev_free(vd_dit_cond *cd);
/* The modulation of time-table rows into r->mod (dit.c's block_mods). */
void vd_dit_block_mods(vd_dit_run *r, const float *table);
/* Whether the run computes on a CUDA device (the context has one and the
 * model was uploaded to it). */
int vd_dit_on_device(const vd_dit_run *r);

#endif
