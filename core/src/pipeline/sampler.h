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
 * Few-step (the DMD-distilled models: CausVid, Self-Forcing, lightx2v's
 * StepDistill): an explicit list of timesteps L_0 > ... > L_{N-1} in
 * 1..1000. Their code looks every level up in a float32 table of 1000
 * shifted levels, tab_j = shift(float32(1 - j/1000)) for j < 1000, ttab_j =
 * 1000 tab_j: warped, the model gets t_i = ttab[1000 - L_i] and sigma_i =
 * tab[1000 - L_i]; unwarped, t_i = L_i and sigma_i = the tab entry whose
 * ttab is nearest L_i (the first on a tie). A step predicts x0 = x -
 * sigma_i v and re-noises it to the next level with fresh noise eps_i:
 * x = (1 - sigma_{i+1}) x0 + sigma_{i+1} eps_i; the last step returns x0.
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
    VD_SAMPLER_FEWSTEP,   /* x0 at each listed timestep, re-noised with fresh noise */
    VD_SAMPLER_COUNT
} vd_sampler_kind;

typedef struct vd_sampler vd_sampler;

/* n: elements of a sample (> 0). steps >= 1. shift > 0 (Wan t2v: 5.0).
 * VD_SAMPLER_FEWSTEP here takes the evenly spaced list vd_fewstep_default
 * gives, warped. Returns NULL on a bad argument or out of memory. */
vd_sampler *vd_sampler_new(vd_sampler_kind kind, int steps, double shift, int64_t n);
/* A few-step sampler on an explicit list (vd_fewstep_check'ed), warped
 * through the shifted table or not. NULL on a bad argument or no memory. */
vd_sampler *vd_sampler_new_list(const int *list, int n_list, int warp, double shift, int64_t n);
/* 0 when list[0..n_list) is a valid few-step list (1 <= n_list <= 1000,
 * values in 1..1000, strictly decreasing), else VDIT_ERR_INVALID_ARG. */
int vd_fewstep_check(const int *list, int n_list);
/* The evenly spaced list of n steps: list[k] = 1000 - (1000 k) / n
 * ([1000, 750, 500, 250] for 4, Self-Forcing's and lightx2v's). */
void vd_fewstep_default(int n, int *list);
/* The few-step schedule alone: t[n_list] model timesteps, sig[n_list + 1]. */
int vd_fewstep_schedule(const int *list, int n_list, int warp, double shift, float *t, float *sig);
void vd_sampler_free(vd_sampler **s);
int vd_sampler_steps(const vd_sampler *s);
/* Timestep the model receives at step i (int64, as the reference truncates;
 * a warped few-step timestep such as 937.5 truncated). */
int64_t vd_sampler_timestep(const vd_sampler *s, int i);
/* The same as the model receives it: a float (937.5 for a warped few-step
 * list), equal to vd_sampler_timestep for the other samplers. */
float vd_sampler_model_t(const vd_sampler *s, int i);
/* 1 when step i takes fresh noise (vd_sampler_step_noise's eps): a
 * few-step sampler's steps but the last. */
int vd_sampler_needs_noise(const vd_sampler *s, int i);
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
/* vd_sampler_step with the step's fresh noise eps (n floats, read only),
 * needed where vd_sampler_needs_noise(s, i) (VDIT_ERR_INVALID_ARG without
 * it), ignored elsewhere (may be NULL). */
int vd_sampler_step_noise(vd_sampler *s, int i, const float *v, const float *eps, float *x);

/* The schedule alone: ts[steps] timesteps and sig[steps + 1] sigmas. */
int vd_sampler_schedule(vd_sampler_kind kind, int steps, double shift, int64_t *ts, float *sig);

#endif
