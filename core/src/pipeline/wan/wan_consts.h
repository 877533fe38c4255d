/* Constants of the Wan networks that the checkpoints do not carry: they come
 * from the official code (wan/modules/vae.py, vae2_2.py, model.py). They are
 * the family's, so they live here; the network modules (dit/, vae/) read
 * them when they load a Wan checkpoint. */
#ifndef VDIT_WAN_CONSTS_H
#define VDIT_WAN_CONSTS_H

/* RoPE base of WanModel's rope_params (theta 10000), over the head dim split
 * into frame, height and width parts (vk_rope3d_table). */
#define VD_WAN_ROPE_THETA 10000.0

/* The published latent statistics the VAE's latents are normalised with
 * (z = (mu - mean) / std): Wan2.1's 16 (WanVAE), Wan2.2's 48 (Wan2_2_VAE).
 * version 21 or 22, z_dim the VAE's latent channels. Returns 0 and sets
 * *mean, *std (z_dim values each), or -1 where the family publishes none
 * (another z_dim: a test or conformance VAE, normalised by mean 0, std 1). */
int vd_wan_latent_stats(int version, int z_dim, const float **mean, const float **std);

#endif
