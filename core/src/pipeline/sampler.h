/*
 * Flow-matching samplers as Wan2.1 uses them: schedule (timesteps, sigmas
 * with shift) + stepper (UniPC multistep, DPM++ 2M, Euler). The model is
 * not called here: the caller computes the velocity v for the current
 * sample and timestep and hands it to vd_sampler_step.
 */
#ifndef VDIT_SAMPLER_H
#define VDIT_SAMPLER_H

#include <stdint.h>

typedef enum vd_sampler_kind {
    VD_SAMPLER_UNIPC = 0,
    VD_SAMPLER_DPMPP,
    VD_SAMPLER_EULER,
    VD_SAMPLER_COUNT
} vd_sampler_kind;

typedef struct vd_sampler vd_sampler;

/* n: elements of a sample. steps >= 1. shift > 0 (Wan t2v: 5.0). */
vd_sampler *vd_sampler_new(vd_sampler_kind kind, int steps, double shift, int64_t n);
void vd_sampler_free(vd_sampler **s);
int vd_sampler_steps(const vd_sampler *s);
/* Timestep the model receives at step i (int64, as the reference truncates). */
int64_t vd_sampler_timestep(const vd_sampler *s, int i);
/* sigma_i, i in [0, steps] (sigma_steps = 0). */
float vd_sampler_sigma(const vd_sampler *s, int i);
/* Starts the schedule at step `first` (SDEdit / strength). */
void vd_sampler_reset(vd_sampler *s, int first);
/* x <- step(x, v) for step i; v = model velocity at (x, timestep(i)). */
int vd_sampler_step(vd_sampler *s, int i, const float *v, float *x);

#endif
