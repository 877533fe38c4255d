/* Private to the VAE: the layer list built by vae_load.c and run by vae.c. */
#ifndef VDIT_VAE_IMPL_H
#define VDIT_VAE_IMPL_H

#include "vae.h"

/* Layer kinds, in the order the reference's nn.Sequential lists run them. */
enum vnode_type {
    VN_CONV_IN = 0, /* CausalConv3d 3x3x3 (encoder.conv1 / decoder.conv1) */
    VN_RES,         /* ResidualBlock */
    VN_ATTN,        /* AttentionBlock (single head, per frame) */
    VN_DOWN2D,      /* Resample downsample2d */
    VN_DOWN3D,      /* Resample downsample3d */
    VN_UP2D,        /* Resample upsample2d */
    VN_UP3D,        /* Resample upsample3d */
    VN_HEAD,        /* RMS_norm, SiLU, CausalConv3d */
    /* Wan2.2 */
    VN_PATCH,       /* patchify (encoder input): [ci, H, W] -> [ci p p, H/p, W/p], p = fs */
    VN_UNPATCH,     /* unpatchify (decoder output): [co p p, h, w] -> [co, h p, w p] */
    VN_AVG_START,   /* Down_ResidualBlock input: sums its AvgDown3D shortcut, passes x on */
    VN_AVG_ADD,     /* Down_ResidualBlock output: residual path + the shortcut of `pair` */
    VN_DUP_START,   /* Up_ResidualBlock input: keeps it for DupUp3D, passes x on */
    VN_DUP_ADD,     /* Up_ResidualBlock output: residual path + DupUp3D of `pair`'s input */
    VN_COUNT
};

/* Kinds that emit their input unchanged (no output buffer of their own). */
static inline int vnode_passes(int type)
{
    return type == VN_AVG_START || type == VN_DUP_START;
}

typedef struct vnode {
    int type;
    int ci, co;         /* channels in / out (START kinds: ci = co, they pass x on) */
    int obuf;           /* the ping buffer it writes (vae_load.c; unused by START kinds) */
    /* shortcut kinds (START and ADD alike): temporal / spatial factor, group
     * size (AvgDown3D: in * factor / out channels averaged) or repeats
     * (DupUp3D: out * factor / in), the shortcut's out channels, and for
     * ADD the index of its START node. PATCH / UNPATCH: fs = patch size. */
    int ft, fs, grp, sco, pair;
    float *g1, *g2;     /* RMS_norm gammas, fp32, owned (RES: both; ATTN, HEAD: g1) */
    /* RES: c1 = residual.2, c2 = residual.6, sc = shortcut (has_sc).
     * CONV_IN, HEAD: c1. ATTN: c1 = to_qkv, c2 = proj.
     * Resample: c1 = resample.1 (2D 3x3), c2 = time_conv (3D kinds). */
    vk_conv c1, c2, sc;
    int has_sc;
    /* UP2D / UP3D: c1 after nearest x2 as four 2x2 convs of the low-resolution
     * frame, one per output parity p = 2a + b (pixel (2i + a, 2j + b)); their
     * weights [4][co, ci, 2, 2] in upw (owned). */
    vk_conv up[4];
    float *upw;
} vnode;

typedef struct vnet {
    vnode *nodes;
    int n;
} vnet;

typedef struct vae_dev vae_dev;

struct vd_vae {
    vd_vae_config cfg;
    vnet enc, dec;
    vk_conv conv1, conv2; /* top-level 1x1x1: [2z, 2z] and [z, z] */
    float inv_std[VD_VAE_MAX_Z]; /* float32(1 / std), as the reference's scale[1] */
    vae_dev *dev;         /* the nets' weights on a CUDA device (vae_cuda.c), or NULL */
};

/* ---- where a stream's frames live ----
 * vae.c's stream engine (rings, rate changers, tiles) allocates every buffer
 * of a stream and does every operation on frames through a vae_ops: the
 * host's (vae.c, the vk_ctx's kernels) or a CUDA device's (vae_cuda.c,
 * kernels/cuda/vkc.h), whose pointers are device pointers. `u` is the
 * implementation's state for the stream. Layers are named by their host
 * vk_conv and host gamma pointers (the device keeps its copies by those). The
 * operations are vae.c's, one for one: see its comments for the semantics. */
typedef struct vae_ops {
    void *(*alloc)(void *u, size_t bytes); /* uninitialised; NULL: no memory */
    void (*release)(void *u, void *p);
    /* vk_funcs.conv_tap, and vk_funcs.conv of one frame (1x1, with bias) */
    void (*conv_tap)(void *u, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                     const float *x, int h, int w, float *y);
    void (*conv)(void *u, const vk_conv *cv, const float *x, int h, int w, float *y);
    /* vk_funcs.chnorm with gamma g (no beta), then SiLU when silu */
    void (*chnorm)(void *u, const float *x, float *y, int c, size_t s, const float *g, int silu);
    void (*copy)(void *u, float *dst, const float *src, size_t n);
    /* y = a + sb b */
    void (*add)(void *u, float *y, const float *a, const float *b, float sb, size_t n);
    /* single-head attention over the s positions of qkv [3c, s] into o [c, s] */
    void (*attention)(void *u, const float *qkv, int c, size_t s, float *o);
    /* src [co, h, w] into the pixels (2i + a, 2j + b) of y [co, 2h, 2w] */
    void (*up_scatter)(void *u, const float *src, int co, int h, int w, int a, int b, float *y);
    void (*patchify)(void *u, const float *x, int c, int h, int w, int p, float *y);
    void (*unpatchify)(void *u, const float *x, int c, int h, int w, int p, float *y);
    void (*avg_share)(void *u, const vnode *n, const float *x, int h, int w, int dt, int first,
                      float *sc);
    void (*dup_add)(void *u, const vnode *n, const float *xin, int h, int w, int dt,
                    const float *x, float *y);
    /* n floats from the host into the stream's memory, and back */
    void (*put)(void *u, float *dst, const float *host, size_t n);
    void (*get)(void *u, float *host, const float *src, size_t n);
    /* 0, or the first error since the stream began (said in lg) */
    int (*check)(void *u, vd_log *lg);
} vae_ops;

/* vae.c: every layer of a net (see there), and the detaching of conv1 and
 * conv2 alone (vd_vae_detach_part's, for frames of h x w pixels). */
int vd_vae_walk(vnet *net, int h, int w,
                int (*fn)(void *ud, vk_conv *cv, const vk_conv_geom *g, int h, int w), void *ud);
int vd_vae_detach_ends(vd_vae *v, vk_ctx *kc, int h, int w,
                       void (*release)(void *ctx, const void *data), void *ctx);

/* ---- the CUDA device (vae_cuda.c; without the backend: stubs) ---- */
/* The device's operations, and a stream's state for them on kc's device
 * (kc->cuda, whose precision kc->cuda_bf16 must be the weights'): 0, or
 * VDIT_ERR_* said in lg. */
const vae_ops *vd_vae_dev_ops(void);
int vd_vae_dev_stream_new(const vd_vae *v, vk_ctx *kc, vd_log *lg, void **out);
void vd_vae_dev_stream_free(void *u);
void vd_vae_dev_free(vae_dev **d);

#endif
