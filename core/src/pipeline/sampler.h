/*
 * Flow-matching samplers as Wan2.1 uses them: schedule (timesteps, sigmas
 * with shift) + stepper (UniPC multistep, DPM++ 2M, Euler). The model is
 * not called here: the caller computes the velocity v for the current
 * sample and timestep and hands it to vd_sampler_step.
 *
 * Flow matching: x_sigma = (1 - sigma) * x0 + sigma * noise; the model
 * predicts v = noise - x0, so x0 = x - sigma * v.
 *
 * Schedules (bit-exact with the reference, computed in double, see
 * docs/sampling.md):
 *   UniPC  s_i = linspace(sigma_max, 0, steps + 1)[i], sigma_max =
 *          float32(1 - 1/1000) as a double (0.999...)
 *   DPM++  s_i = linspace(1, 0, steps + 1)[i]
 *   Euler  as DPM++
 * then s'_i = shift * s_i / (1 + (shift - 1) * s_i), timestep_i =
 * int64(s'_i * 1000) (truncation), sigma_i = float32(s'_i), sigma_steps = 0.
 *
 * Threads: a sampler is used by one thread at a time.
 */
#ifndef VDIT_SAMPLER_H
#define VDIT_SAMPLER_H

#include <stdint.h>

typedef enum vd_sampler_kind {
    VD_SAMPLER_UNIPC = 0, /* UniPC bh2, order 2, predict x0, lower order final */
    VD_SAMPLER_DPMPP,     /* DPM-Solver++ 2M midpoint, lower order final */
    VD_SAMPLER_EULER,     /* first-order flow-matching Euler */
    VD_SAMPLER_COUNT
} vd_sampler_kind;

typedef struct vd_sampler vd_sampler;

/* n: elements of a sample (> 0). steps >= 1. shift > 0 (Wan t2v: 5.0).
 * Returns NULL on a bad argument or out of memory. */
vd_sampler *vd_sampler_new(vd_sampler_kind kind, int steps, double shift, int64_t n);
void vd_sampler_free(vd_sampler **s);
int vd_sampler_steps(const vd_sampler *s);
/* Timestep the model receives at step i (int64, as the reference truncates). */
int64_t vd_sampler_timestep(const vd_sampler *s, int i);
/* sigma_i, i in [0, steps] (sigma_steps = 0). */
float vd_sampler_sigma(const vd_sampler *s, int i);
/* Forgets the multistep history; the next step must be `first` (SDEdit
 * starts part-way, as diffusers' set_begin_index does). The history is also
 * forgotten when a step other than the expected next one is requested. */
void vd_sampler_reset(vd_sampler *s, int first);
/* x <- step(x, v) for step i; v = model velocity at (x, timestep(i)).
 * x and v hold n floats; v is not modified. Steps run in order from the
 * last reset (0 after new); any other index starts a fresh history there.
 * Returns 0, or VDIT_ERR_INVALID_ARG for an index out of range. */
int vd_sampler_step(vd_sampler *s, int i, const float *v, float *x);

/* The schedule alone: ts[steps] timesteps and sig[steps + 1] sigmas. */
int vd_sampler_schedule(vd_sampler_kind kind, int steps, double shift, int64_t *ts, float *sig);

#endif
