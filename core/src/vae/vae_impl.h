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
    VN_COUNT
};

typedef struct vnode {
    int type;
    int ci, co;         /* channels in / out */
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
    float inv_std[16];    /* float32(1 / std), as the reference's scale[1] */
};

#endif
