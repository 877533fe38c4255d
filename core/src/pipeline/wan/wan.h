/* The Wan families: Wan2.1 text-to-video (1.3B, 14B) and Wan2.2 TI2V-5B.
 * Both are a umT5-XXL text encoder, a WanModel DiT and a Wan VAE (Wan2.1's
 * 8x8 / 16 channels, or Wan2.2's 16x16 / 48 channels); they differ in the
 * VAE, the defaults, the file names and how given frames are held. */
#ifndef VDIT_WAN_H
#define VDIT_WAN_H

#include "../family.h"
#include "../../dit/dit.h"
#include "../../text/text.h"
#include "../../vae/vae.h"

extern const vd_family vd_family_wan21, vd_family_wan22_ti2v;

/* A Wan model's parts (vdit_model.parts). */
typedef struct vd_wan_parts {
    vd_ckpt *ck_dit, *ck_t5;
    /* The VAE's checkpoint while the model loads: NULL once the VAE is
     * detached from it. */
    vd_ckpt *ck_vae;
    vd_dit *dit;
    vd_vae *vae;
    vd_t5 *t5;
    vd_tok *tok;
} vd_wan_parts;

/* The parts of a Wan model (tests, benchmarks); NULL for another family. */
vd_wan_parts *vd_wan_parts_of(const vdit_model *m);
/* The DiT run behind a context's vd_run (tests). */
vd_dit_run *vd_wan_dit_run(vd_run *r);
/* The DiT condition behind a vd_cond (tests). */
const vd_dit_cond *vd_wan_dit_cond(const vd_cond *c);

#endif
