/* Samplers: schedule invariants and exactness on a straight flow (the
 * model's velocity is exact, so every solver must land on x0). The
 * reference trajectories are checked by `vdit conform` (suite conform). */
#include "pipeline/pipeline.h"
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
    /* the few-step sampler re-noises with the same noise: on a straight
     * flow x0 is exact at every step, so that stays on the line */
    for (int i = 0; i < steps; i++)
        T_CHECK(vd_sampler_step_noise(s, i, v, noise, x) == 0, "step %d", i);
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

    /* Few-step lists (the values of tests/conformance/wan2.1/sampler_fewstep,
     * made by the distilled models' own code). */
    {
        float t[5], sg[6];
        static const int causvid[] = { 1000, 757, 522 }, sf[] = { 1000, 750, 500, 250 };
        T_CHECK(vd_fewstep_schedule(causvid, 3, 0, 8.0, t, sg) == 0, "causvid schedule");
        T_CHECK(t[0] == 1000 && t[1] == 757 && t[2] == 522, "unwarped: the list itself");
        T_CHECK(sg[0] == 1.0f && sg[1] == 0.7567567229270935f && sg[2] == 0.52173912525177f &&
                    sg[3] == 0,
                "unwarped: the nearest table levels %.9g %.9g", (double)sg[1], (double)sg[2]);
        T_CHECK(vd_fewstep_schedule(sf, 4, 1, 5.0, t, sg) == 0, "warped schedule");
        T_CHECK(t[0] == 1000 && t[1] == 937.5f && t[2] == 833.3333129882812f && t[3] == 625,
                "warped shift 5: %.9g %.9g %.9g", (double)t[1], (double)t[2], (double)t[3]);
        T_CHECK(sg[1] == 0.9375f && sg[3] == 0.625f && sg[4] == 0, "warped levels");
        vd_fewstep_schedule(sf, 4, 1, 8.0, t, sg);
        T_CHECK(t[1] == 960.0f && t[3] == 727.2727661132812f, "warped shift 8");
        int l[8];
        vd_fewstep_default(4, l);
        T_CHECK(l[0] == 1000 && l[1] == 750 && l[2] == 500 && l[3] == 250, "default list of 4");
        vd_fewstep_default(3, l);
        T_CHECK(l[0] == 1000 && l[1] == 667 && l[2] == 334, "default list of 3");
        static const int dup[] = { 1000, 1000 }, zero[] = { 500, 0 }, up[] = { 250, 500 };
        T_CHECK(vd_fewstep_check(dup, 2) && vd_fewstep_check(zero, 2) && vd_fewstep_check(up, 2) &&
                    vd_fewstep_check(sf, 0) && !vd_fewstep_check(sf, 4),
                "lists checked");
        T_CHECK(vd_sampler_new_list(up, 2, 1, 5.0, 4) == NULL, "a bad list is refused");
        /* the re-noising needs its noise, the last step none */
        enum { M = 4 };
        float x[M] = { 1, 2, 3, 4 }, v[M] = { 0 }, e[M] = { 0 };
        vd_sampler *s = vd_sampler_new_list(causvid, 3, 0, 8.0, M);
        T_CHECK(s && vd_sampler_needs_noise(s, 0) && vd_sampler_needs_noise(s, 1) &&
                    !vd_sampler_needs_noise(s, 2),
                "noise at all steps but the last");
        T_CHECK(vd_sampler_step(s, 0, v, x) == VDIT_ERR_INVALID_ARG, "no noise refused");
        T_CHECK(vd_sampler_step_noise(s, 0, v, e, x) == 0 && vd_sampler_step(s, 2, v, x) == 0,
                "noise given; last step without");
        T_CHECK(vd_sampler_model_t(s, 1) == 757.0f && vd_sampler_timestep(s, 1) == 757, "t");
        vd_sampler_free(&s);
        s = vd_sampler_new_list(sf, 4, 1, 5.0, M);
        T_CHECK(s && vd_sampler_model_t(s, 1) == 937.5f && vd_sampler_timestep(s, 1) == 937,
                "warped t: float to the model, truncated as an integer");
        vd_sampler_free(&s);

        /* SDEdit strength: the first listed timestep at or below 1000 s */
        static vd_run_params rp;
        rp.sampler = VD_SAMPLER_FEWSTEP;
        rp.steps = 3;
        memcpy(rp.list, causvid, sizeof(causvid));
        static const struct {
            float s;
            int first;
        } map[] = { { -1, 0 }, { 1, 0 }, { 0.999f, 1 }, { 0.757f, 1 }, { 0.6f, 2 },
                    { 0.522f, 2 }, { 0.5f, 3 }, { 0, 3 } };
        for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++)
            T_CHECK(vd_first_step(&rp, map[k].s) == map[k].first, "strength %g: first %d, want %d",
                    (double)map[k].s, vd_first_step(&rp, map[k].s), map[k].first);
        rp.sampler = VD_SAMPLER_UNIPC;
        rp.steps = 10;
        T_CHECK(vd_first_step(&rp, 0.6f) == 4 && vd_first_step(&rp, 1) == 0 &&
                    vd_first_step(&rp, 0) == 10 && vd_first_step(&rp, -1) == 0,
                "diffusers' mapping for the other samplers");
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
