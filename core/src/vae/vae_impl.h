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

struct vd_vae {
    vd_vae_config cfg;
    vnet enc, dec;
    vk_conv conv1, conv2; /* top-level 1x1x1: [2z, 2z] and [z, z] */
    float inv_std[VD_VAE_MAX_Z]; /* float32(1 / std), as the reference's scale[1] */
};

#endif
