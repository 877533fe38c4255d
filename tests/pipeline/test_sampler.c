/* Samplers: schedule invariants and exactness on a straight flow (the
 * model's velocity is exact, so every solver must land on x0). The
 * reference trajectories are checked by `vdit conform` (suite conform). */
#include "pipeline/sampler.h"
#include "t.h"
#include "common.h"

static void straight_flow(vd_sampler_kind kind, int steps, double shift)
{
    enum { N = 64 };
    t_rng r = { 7 + (uint64_t)kind * 100 + (uint64_t)steps };
    float x0[N], noise[N], x[N], v[N];
    t_fill(&r, x0, N, 1);
    t_fill(&r, noise, N, 1);
    vd_sampler *s = vd_sampler_new(kind, steps, shift, N);
    T_CHECK(s != NULL, "new kind %d", kind);
    if (!s)
        return;
    float s0 = vd_sampler_sigma(s, 0);
    for (int k = 0; k < N; k++) {
        x[k] = (1 - s0) * x0[k] + s0 * noise[k];
        v[k] = noise[k] - x0[k];
    }
    for (int i = 0; i < steps; i++)
        T_CHECK(vd_sampler_step(s, i, v, x) == 0, "step %d", i);
    double e = t_maxabs(x, x0, N, NULL);
    T_CHECK(e < 1e-4, "kind %d steps %d shift %g: |x - x0| = %g", kind, steps, shift, e);
    vd_sampler_free(&s);
    T_CHECK(s == NULL, "free clears");
}

int main(void)
{
    int64_t ts[50];
    float sig[51];
    /* Wan's defaults: UniPC starts at 999, DPM++ at 1000. */
    T_CHECK(vd_sampler_schedule(VD_SAMPLER_UNIPC, 50, 5.0, ts, sig) == 0, "schedule");
    T_CHECK(ts[0] == 999 && sig[50] == 0.0f, "unipc first %lld", (long long)ts[0]);
    for (int i = 1; i < 50; i++)
        T_CHECK(ts[i] < ts[i - 1] && sig[i] < sig[i - 1], "monotone at %d", i);
    T_CHECK(vd_sampler_schedule(VD_SAMPLER_DPMPP, 4, 5.0, ts, sig) == 0, "schedule");
    T_CHECK(ts[0] == 1000 && sig[0] == 1.0f, "dpm++ first %lld", (long long)ts[0]);
    /* numpy: [999, 937, 833, 624] for UniPC 4 steps shift 5 (t2v_loop_tiny). */
    vd_sampler_schedule(VD_SAMPLER_UNIPC, 4, 5.0, ts, sig);
    T_CHECK(ts[0] == 999 && ts[1] == 937 && ts[2] == 833 && ts[3] == 624, "unipc 4/5");

    for (int k = 0; k < VD_SAMPLER_COUNT; k++) {
        straight_flow(k, 1, 5.0);
        straight_flow(k, 2, 1.0);
        straight_flow(k, 7, 3.0);
        straight_flow(k, 30, 5.0);
    }

    /* Restarting part-way (SDEdit) works and out-of-range steps are refused. */
    enum { N = 16 };
    float x[N] = { 0 }, v[N] = { 0 };
    vd_sampler *s = vd_sampler_new(VD_SAMPLER_UNIPC, 10, 5.0, N);
    vd_sampler_reset(s, 6);
    for (int i = 6; i < 10; i++)
        T_CHECK(vd_sampler_step(s, i, v, x) == 0, "partial step %d", i);
    T_CHECK(vd_sampler_step(s, 10, v, x) == VDIT_ERR_INVALID_ARG, "out of range");
    T_CHECK(vd_sampler_step(s, -1, v, x) == VDIT_ERR_INVALID_ARG, "negative");
    vd_sampler_free(&s);
    T_CHECK(vd_sampler_new(VD_SAMPLER_UNIPC, 0, 5.0, N) == NULL, "0 steps");
    T_CHECK(vd_sampler_new(VD_SAMPLER_UNIPC, 4, 0.0, N) == NULL, "shift 0");
    T_CHECK(vd_sampler_new(VD_SAMPLER_COUNT, 4, 5.0, N) == NULL, "bad kind");
    T_CHECK(vd_sampler_new(VD_SAMPLER_EULER, 4, 5.0, 0) == NULL, "n 0");
    T_DONE();
}
