/* `vdit bench steps`: what a distilled few-step recipe saves against the
 * default one, at the same size, in the same run.
 *
 * On the 1.3B DiT with random weights (bench_dit.c's), the denoising loop
 * of one clip as the engine runs it: the default recipe (50 UniPC steps,
 * guidance 5: two branches a step, batched) against a few-step one (the
 * list 1000, 750, 500, 250 warped at shift 5, lightx2v's and
 * Self-Forcing's: one forward a step, no guidance, fresh noise between
 * steps), on the same noise and text. Seconds per clip and per frame of
 * each, and their ratio. Text encoding and VAE decoding are left out: they
 * are the same for both recipes (`vdit bench t5`, `vdit bench vae`).
 * A benchmark, not a test: random weights say nothing of quality. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ckpt.h"
#include "dit/dit.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampler.h"

static void usage(FILE *o)
{
    fprintf(o,
            "usage: vdit bench steps [--size WxH] [--frames N] [--steps N] [--guidance G]\n"
            "                        [--list T1,T2,...] [--shift X] [--threads N]\n"
            "                        [--precision fp32|bf16|auto] [--runs N]\n"
            "The denoising loop of one clip on the 1.3B DiT with random weights: the\n"
            "default recipe (--steps, default 50 UniPC steps, --guidance, default 5)\n"
            "against a few-step one (--list, default 1000,750,500,250 warped at --shift,\n"
            "default 5; no guidance), same size, same run; seconds per clip and per\n"
            "frame, and the ratio.\n"
            "  --size WxH     frame size in pixels, multiples of 16 (default 160x96)\n"
            "  --frames N     frames, 1 + 4k (default 9)\n"
            "  --runs N       best of N alternating runs of each (default 1)\n");
}

/* Seconds of one clip's loop; *fwd receives the DiT forwards run. */
static int run_loop(vd_dit_run *r, vd_sampler *s, const vd_dit_cond *cc, const vd_dit_cond *cu,
                    float g, const float *noise, float *x, float *vc, float *vu, float *eps,
                    int64_t f, int64_t h, int64_t w, int64_t n, double *secs, int *fwd)
{
    int steps = vd_sampler_steps(s), nb = g != 1.0f ? 2 : 1, err = 0;
    vd_sampler_reset(s, 0);
    memcpy(x, noise, sizeof(float) * (size_t)n);
    *fwd = 0;
    double t0 = vd_time();
    for (int i = 0; i < steps && !err; i++) {
        const vd_dit_cond *conds[2] = { cc, cu };
        float *outs[2] = { vc, vu };
        err = vd_dit_forward_batch(r, x, NULL, f, h, w, vd_sampler_model_t(s, i), nb, conds,
                                   outs, 0, NULL, 0, NULL);
        *fwd += nb;
        if (nb == 2)
            for (int64_t j = 0; j < n; j++)
                vc[j] = vu[j] + g * (vc[j] - vu[j]);
        /* the engine's fresh noise: the seed's stream for this step */
        if (!err && vd_sampler_needs_noise(s, i))
            vd_noise_fill(1, (uint64_t)(i + 1) << 32, eps, n);
        err = err || vd_sampler_step_noise(s, i, vc, eps, x);
    }
    *secs = vd_time() - t0;
    return err;
}

int bench_steps(int argc, char **argv)
{
    int threads = 0, bad = 0, width = 160, height = 96, frames = 9, steps = 50, runs = 1;
    float guidance = 5.0f;
    double shift = 5.0;
    int list[16] = { 1000, 750, 500, 250 }, n_list = 4;
    vk_prec prec_opt = VK_PREC_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "vdit bench steps: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--threads")) {
            threads = bench_parse_threads(v, &bad);
        } else if (!strcmp(a, "--size")) {
            bad |= sscanf(v, "%dx%d", &width, &height) != 2 || width < 16 || height < 16 ||
                   width > 4096 || height > 4096 || width % 16 || height % 16;
        } else if (!strcmp(a, "--frames")) {
            frames = atoi(v);
            bad |= frames < 1 || frames > 1001 || (frames - 1) % 4;
        } else if (!strcmp(a, "--steps")) {
            steps = atoi(v);
            bad |= steps < 1 || steps > 1000;
        } else if (!strcmp(a, "--runs")) {
            runs = atoi(v);
            bad |= runs < 1 || runs > 100;
        } else if (!strcmp(a, "--guidance")) {
            guidance = strtof(v, NULL);
            bad |= !(guidance >= 0 && guidance <= 100);
        } else if (!strcmp(a, "--shift")) {
            shift = strtod(v, NULL);
            bad |= !(shift > 0 && shift <= 100);
        } else if (!strcmp(a, "--list")) {
            n_list = 0;
            for (const char *p = v; *p && n_list < 16;) {
                char *end;
                list[n_list++] = (int)strtol(p, &end, 10);
                if (end == p || (*end && *end != ','))
                    bad = 1;
                p = *end ? end + 1 : end;
            }
            bad |= vd_fewstep_check(list, n_list) != 0;
        } else if (!strcmp(a, "--precision")) {
            bad |= bench_parse_prec(v, &prec_opt) != 0;
        } else {
            fprintf(stderr, "vdit bench steps: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "vdit bench steps: bad value for %s: '%s' (see --help)\n", a, v);
            return 2;
        }
    }
    vk_isa isa;
    vk_prec prec;
    if (bench_resolve("steps", threads, -1, prec_opt, &isa, &prec))
        return 1;
    vd_log lg = { 0 };
    vk_ctx *kc = vk_ctx_new_ex(threads, (int)isa, prec, &lg);
    bench_guided g = { 0 };
    vd_dit_run *r = NULL;
    const vd_dit_cond *cc = NULL, *cu = NULL;
    vd_sampler *s_def = NULL, *s_few = NULL;
    int rc = 1;
    const int64_t ch = 16, f = (frames - 1) / 4 + 1, h = height / 8, w = width / 8;
    const int64_t n = ch * f * h * w;
    float *x = NULL, *noise = NULL, *vc = NULL, *vu = NULL, *eps = NULL;
    if (!kc || bench_guided_new(kc, &lg, &g)) {
        fprintf(stderr, "vdit bench steps: random 1.3B DiT: %s\n", lg.msg);
        goto done;
    }
    r = g.r;
    cc = g.cc;
    cu = g.cu;
    x = vd_malloc(sizeof(float) * n);
    noise = vd_malloc(sizeof(float) * n);
    vc = vd_malloc(sizeof(float) * n);
    vu = vd_malloc(sizeof(float) * n);
    eps = vd_malloc(sizeof(float) * n);
    s_def = vd_sampler_new(VD_SAMPLER_UNIPC, steps, shift, n);
    s_few = vd_sampler_new_list(list, n_list, 1, shift, n);
    if (!x || !noise || !vc || !vu || !eps || !s_def || !s_few)
        goto done;
    vd_noise_fill(1, 0, noise, n);
    printf("1.3B DiT, random weights, %dx%d, %d frames (latent 16x%lldx%lldx%lld, %lld tokens), "
           "%s on %s, %d threads\n",
           width, height, frames, (long long)f, (long long)h, (long long)w,
           (long long)(f * h * w / 4), vk_prec_name(kc->prec), vk_isa_name(isa), kc->n_threads);
    printf("few-step list:");
    for (int i = 0; i < n_list; i++)
        printf("%s%d (t %g)", i ? "," : " ", list[i], (double)vd_sampler_model_t(s_few, i));
    printf(", warped at shift %g\n", shift);
    double best[2] = { HUGE_VAL, HUGE_VAL };
    int fwd[2] = { 0, 0 };
    for (int k = 0; k < runs; k++)
        for (int which = 0; which < 2; which++) {
            double t;
            int err = which ? run_loop(r, s_few, cc, cu, 1.0f, noise, x, vc, vu, eps, f, h, w, n,
                                       &t, &fwd[1])
                            : run_loop(r, s_def, cc, cu, guidance, noise, x, vc, vu, eps, f, h, w,
                                       n, &t, &fwd[0]);
            if (err) {
                fprintf(stderr, "vdit bench steps: the loop failed (%d)\n", err);
                goto done;
            }
            best[which] = t < best[which] ? t : best[which];
        }
    printf("%-34s %9s %10s %11s\n", "recipe", "forwards", "s / clip", "s / frame");
    char name[64];
    snprintf(name, sizeof(name), "default: %d UniPC steps, guidance %g", steps, (double)guidance);
    printf("%-34s %9d %10.2f %11.3f\n", name, fwd[0], best[0], best[0] / frames);
    snprintf(name, sizeof(name), "few-step: %d steps, no guidance", n_list);
    printf("%-34s %9d %10.2f %11.3f\n", name, fwd[1], best[1], best[1] / frames);
    printf("few-step / default: %.4fx the time (%.1fx faster), %.4fx the forwards\n",
           best[1] / best[0], best[0] / best[1], (double)fwd[1] / fwd[0]);
    rc = 0;
done:
    vd_free(x);
    vd_free(noise);
    vd_free(vc);
    vd_free(vu);
    vd_free(eps);
    vd_sampler_free(&s_def);
    vd_sampler_free(&s_few);
    bench_guided_free(&g);
    vk_ctx_free(&kc);
    return rc;
}
