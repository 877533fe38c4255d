/* `vdit bench cache`: what step caching costs in quality for what it saves.
 *
 * On a model (default: the bundled one) at its defaults, for a set of
 * prompts and seeds: the uncached clip first, then each caching mode at
 * each threshold; per setting the share of DiT forwards computed, the wall
 * time over the uncached run's, and the PSNR and SSIM of its frames against
 * the uncached clip's (8-bit RGB; PSNR over the whole clip, SSIM the mean of
 * per-frame SSIM on luma, 11x11 Gaussian window, sigma 1.5). With --random,
 * the same on the 1.3B DiT with random weights over a small latent (the
 * sampler loop without text encoder and VAE): latent-space relative error
 * against the uncached latent. A benchmark, not a test: it prints figures
 * and, with --csv FILE, writes them for models/bench/plot_cache.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "dit/dit.h"
#include "pipeline/sampler.h"
#include "ckpt.h"
#include "vdit/vdit.h"

static const char *const prompts[] = {
    "a red ball bouncing on a wooden floor",
    "a blue square sliding from left to right",
    "a yellow circle growing in the middle",
    "two green dots orbiting each other",
    "a white line rotating slowly",
    "waves moving across a dark sea",
    "a purple triangle falling down",
    "snow falling on a black background",
    "an orange square spinning fast",
    "a small cyan ball rolling to the right",
    "a pink ring pulsing",
    "stripes scrolling upwards",
};
#define N_PROMPTS ((int)(sizeof(prompts) / sizeof(prompts[0])))

typedef struct setting {
    int mode;
    float threshold;
} setting;

static const setting settings[] = {
    { VDIT_CACHE_EASY, 0.02f }, { VDIT_CACHE_EASY, 0.05f }, { VDIT_CACHE_EASY, 0.1f },
    { VDIT_CACHE_EASY, 0.2f },  { VDIT_CACHE_TEA, 0.04f },  { VDIT_CACHE_TEA, 0.08f },
    { VDIT_CACHE_TEA, 0.15f },  { VDIT_CACHE_TEA, 0.3f },
};
#define N_SETTINGS ((int)(sizeof(settings) / sizeof(settings[0])))

static const char *mode_name(int m)
{
    return m == VDIT_CACHE_EASY ? "easy" : m == VDIT_CACHE_TEA ? "tea" : "off";
}

static double psnr(const vdit_video *a, const vdit_video *b)
{
    size_t n = (size_t)a->n_frames * a->height * a->width * 3;
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a->rgb[i] - (double)b->rgb[i];
        se += d * d;
    }
    double mse = se / (double)n;
    return mse > 0 ? 10.0 * log10(255.0 * 255.0 / mse) : 99.0;
}

/* Luma of frame f, in [0, 255]. */
static void luma(const vdit_video *v, int f, double *y)
{
    size_t np = (size_t)v->width * v->height;
    const uint8_t *p = v->rgb + (size_t)f * np * 3;
    for (size_t i = 0; i < np; i++)
        y[i] = 0.299 * p[3 * i] + 0.587 * p[3 * i + 1] + 0.114 * p[3 * i + 2];
}

/* Mean SSIM over frames (Wang et al. 2004: Gaussian 11x11, sigma 1.5,
 * K1 0.01, K2 0.03, windows clipped at the borders). */
static double ssim(const vdit_video *a, const vdit_video *b)
{
    int w = a->width, h = a->height;
    double *ya = malloc(sizeof(double) * w * h), *yb = malloc(sizeof(double) * w * h);
    double g[11], c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255), total = 0;
    if (!ya || !yb) {
        free(ya);
        free(yb);
        return NAN;
    }
    for (int i = 0; i < 11; i++)
        g[i] = exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
    for (int f = 0; f < a->n_frames; f++) {
        luma(a, f, ya);
        luma(b, f, yb);
        double sum = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double sw = 0, ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
                for (int dy = -5; dy <= 5; dy++)
                    for (int dx = -5; dx <= 5; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w)
                            continue;
                        double wt = g[dy + 5] * g[dx + 5], p = ya[yy * w + xx], q = yb[yy * w + xx];
                        sw += wt;
                        ma += wt * p;
                        mb += wt * q;
                        saa += wt * p * p;
                        sbb += wt * q * q;
                        sab += wt * p * q;
                    }
                ma /= sw, mb /= sw;
                double va = saa / sw - ma * ma, vb = sbb / sw - mb * mb, cov = sab / sw - ma * mb;
                sum += ((2 * ma * mb + c1) * (2 * cov + c2)) /
                       ((ma * ma + mb * mb + c1) * (va + vb + c2));
            }
        total += sum / ((double)w * h);
    }
    free(ya);
    free(yb);
    return total / a->n_frames;
}

typedef struct acc {
    double psnr, psnr_min, ssim, frac, time_ratio;
    int n;
} acc;

static void usage(FILE *o)
{
    fprintf(o, "usage: vdit bench cache [--model PATH] [--steps N] [--seeds N] [--threads N]\n"
               "                        [--random] [--csv FILE]\n"
               "Step caching against the uncached result: for %d prompts x N seeds (default 1)\n"
               "at the model's defaults (default model: the bundled one; --steps overrides the\n"
               "step count, default 50), each caching mode at several thresholds: forwards\n"
               "computed, wall time over the uncached run's, PSNR (dB, mean and worst) and\n"
               "SSIM of the frames against the uncached clip's. --random: also the 1.3B DiT\n"
               "on random weights over a 16x3x8x8 latent (50 UniPC steps, guidance 5),\n"
               "latent-space relative error. --csv FILE: the rows for\n"
               "models/bench/plot_cache.py.\n",
            N_PROMPTS);
}

/* The random-weight 1.3B DiT's latent denoised at each setting. */
static int random_rows(int threads, int steps, FILE *csv);

int bench_cache(int argc, char **argv)
{
    const char *model_path = NULL, *csv_path = NULL;
    int steps = 50, seeds = 1, threads = 0, random = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--random")) {
            random = 1;
        } else if (v && !strcmp(a, "--model")) {
            model_path = v, i++;
        } else if (v && !strcmp(a, "--csv")) {
            csv_path = v, i++;
        } else if (v && !strcmp(a, "--steps")) {
            steps = atoi(v), i++;
            bad |= steps < 1 || steps > 1000;
        } else if (v && !strcmp(a, "--seeds")) {
            seeds = atoi(v), i++;
            bad |= seeds < 1 || seeds > 100;
        } else if (v && !strcmp(a, "--threads")) {
            threads = bench_parse_threads(v, &bad), i++;
        } else {
            bad = 1;
        }
    }
    if (bad) {
        usage(stderr);
        return 2;
    }
    if (!model_path)
        model_path = vdit_default_model_path();
    if (!model_path) {
        fprintf(stderr, "vdit bench cache: no bundled model in this build: give --model PATH\n");
        return 1;
    }
    FILE *csv = NULL;
    if (csv_path && !(csv = fopen(csv_path, "w"))) {
        fprintf(stderr, "vdit bench cache: cannot write %s\n", csv_path);
        return 1;
    }
    if (csv)
        fprintf(csv, "model,mode,threshold,forwards_frac,time_ratio,psnr_mean,psnr_min,"
                     "ssim_mean,latent_rel_err\n");
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = threads;
    vdit_model *m = NULL;
    vdit_ctx *c = NULL;
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = threads;
    if (vdit_model_load(model_path, &mp, &m) || vdit_ctx_init(m, &cp, &c)) {
        fprintf(stderr, "vdit bench cache: %s\n", mp.error[0] ? mp.error : "cannot make a context");
        vdit_model_free(&m);
        if (csv)
            fclose(csv);
        return 1;
    }
    printf("model %s, %d steps, %d prompts x %d seed%s, computing in %s\n", model_path, steps,
           N_PROMPTS, seeds, seeds == 1 ? "" : "s", vdit_ctx_compute(c));
    acc a[N_SETTINGS];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < N_SETTINGS; i++)
        a[i].psnr_min = 1e9;
    int rc = 0;
    for (int s = 0; s < seeds && !rc; s++)
        for (int pi = 0; pi < N_PROMPTS && !rc; pi++) {
            vdit_gen_params gp;
            vdit_gen_params_default(&gp);
            gp.prompt = prompts[pi];
            gp.steps = steps;
            gp.seed = 1000 + (uint64_t)s;
            vdit_video *ref = NULL, *out = NULL;
            double t0 = vd_time();
            if (vdit_generate(c, &gp, &ref)) {
                fprintf(stderr, "vdit bench cache: %s\n", vdit_ctx_last_error(c));
                rc = 1;
                break;
            }
            double tref = vd_time() - t0;
            for (int k = 0; k < N_SETTINGS; k++) {
                gp.cache = settings[k].mode;
                gp.cache_threshold = settings[k].threshold;
                vdit_stats st;
                t0 = vd_time();
                if (vdit_generate(c, &gp, &out) || vdit_ctx_get_stats(c, &st)) {
                    fprintf(stderr, "vdit bench cache: %s\n", vdit_ctx_last_error(c));
                    rc = 1;
                    break;
                }
                double t = vd_time() - t0, p = psnr(out, ref);
                a[k].psnr += p;
                a[k].psnr_min = p < a[k].psnr_min ? p : a[k].psnr_min;
                a[k].ssim += ssim(out, ref);
                a[k].frac += (double)st.forwards / (double)st.forwards_total;
                a[k].time_ratio += t / tref;
                a[k].n++;
                vdit_video_free(&out);
            }
            vdit_video_free(&ref);
        }
    if (!rc) {
        printf("%-6s %9s %11s %10s %10s %10s %8s\n", "mode", "threshold", "forwards %",
               "time", "PSNR mean", "PSNR min", "SSIM");
        for (int k = 0; k < N_SETTINGS; k++) {
            acc *q = &a[k];
            double n = q->n ? q->n : 1;
            printf("%-6s %9.3g %10.1f%% %9.2fx %8.2f dB %7.2f dB %8.4f\n",
                   mode_name(settings[k].mode), settings[k].threshold, 100 * q->frac / n,
                   q->time_ratio / n, q->psnr / n, q->psnr_min, q->ssim / n);
            if (csv)
                fprintf(csv, "bundled,%s,%g,%.4f,%.4f,%.3f,%.3f,%.5f,\n",
                        mode_name(settings[k].mode), settings[k].threshold, q->frac / n,
                        q->time_ratio / n, q->psnr / n, q->psnr_min, q->ssim / n);
        }
        printf("time: wall time over the uncached run of the same prompt and seed; PSNR and\n"
               "SSIM against it (%d clips per row)\n", a[0].n);
    }
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    if (!rc && random)
        rc = random_rows(threads, steps, csv);
    if (csv)
        fclose(csv);
    return rc;
}

/* ---- random weights, latent space ---- */

static int random_rows(int threads, int steps, FILE *csv)
{
    vd_log lg = { 0 };
    vk_ctx *kc = vk_ctx_new_ex(threads, -1, VK_PREC_AUTO, &lg);
    bench_guided g = { 0 };
    vd_dit_run *r = NULL;
    const vd_dit_cond *cc = NULL, *cu = NULL;
    int rc = 1;
    const int64_t ch = 16, f = 3, h = 8, w = 8, n = ch * f * h * w;
    float *x = NULL, *noise = NULL, *vc = NULL, *vu = NULL, *ref = NULL;
    if (!kc || bench_guided_new(kc, &lg, &g)) {
        fprintf(stderr, "vdit bench cache: random 1.3B DiT: %s\n", lg.msg);
        goto done;
    }
    r = g.r;
    cc = g.cc;
    cu = g.cu;
    x = vd_malloc(sizeof(float) * n);
    noise = vd_malloc(sizeof(float) * n);
    vc = vd_malloc(sizeof(float) * n);
    vu = vd_malloc(sizeof(float) * n);
    ref = vd_malloc(sizeof(float) * n);
    if (!x || !noise || !vc || !vu || !ref)
        goto done;
    uint64_t st = 7;
    for (int64_t i = 0; i < n; i++) {
        double u1 = ((double)(bench_rng_next(&st) >> 11) + 1) / 9007199254740993.0;
        double u2 = (double)(bench_rng_next(&st) >> 11) / 9007199254740992.0;
        noise[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
    }
    printf("\n1.3B DiT, random weights, latent 16x%lldx%lldx%lld, %d UniPC steps, guidance 5, "
           "computing in %s\n",
           (long long)f, (long long)h, (long long)w, steps, vk_prec_name(kc->prec));
    printf("%-6s %9s %11s %10s %14s\n", "mode", "threshold", "forwards %", "time",
           "latent rel err");
    double tref = 1; /* the uncached run's seconds */
    for (int k = -1; k < N_SETTINGS; k++) {
        int mode = k < 0 ? VD_CACHE_OFF
                   : settings[k].mode == VDIT_CACHE_EASY ? VD_CACHE_EASY
                                                         : VD_CACHE_TEA;
        vd_dit_cache *cache = NULL;
        if (k >= 0 && !(cache = vd_dit_cache_new(mode, settings[k].threshold, 4)))
            goto done;
        vd_sampler *s = vd_sampler_new(VD_SAMPLER_UNIPC, steps, 5.0f, n);
        if (!s) {
            vd_dit_cache_free(&cache);
            goto done;
        }
        vd_sampler_reset(s, 0);
        memcpy(x, noise, sizeof(float) * n);
        int fwd = 0, total = 0, err = 0;
        double t0 = vd_time();
        for (int i = 0; i < steps && !err; i++) {
            const vd_dit_cond *conds[2] = { cc, cu };
            float *outs[2] = { vc, vu };
            int comp = 1;
            /* the pipeline's default part: steps from 10% on may be reused */
            err = vd_dit_forward_batch(r, x, NULL, f, h, w, (float)vd_sampler_timestep(s, i), 2,
                                       conds, outs, 0, cache, i >= steps / 10, &comp);
            total += 2;
            fwd += comp ? 2 : 0;
            for (int64_t j = 0; j < n; j++)
                vc[j] = vu[j] + 5.0f * (vc[j] - vu[j]);
            err = err || vd_sampler_step(s, i, vc, x);
        }
        double t = vd_time() - t0;
        vd_sampler_free(&s);
        vd_dit_cache_free(&cache);
        if (err)
            goto done;
        if (k < 0) {
            memcpy(ref, x, sizeof(float) * n);
            tref = t;
            continue;
        }
        double num = 0, den = 0;
        for (int64_t j = 0; j < n; j++) {
            num += ((double)x[j] - ref[j]) * ((double)x[j] - ref[j]);
            den += (double)ref[j] * ref[j];
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        printf("%-6s %9.3g %10.1f%% %9.2fx %14.4f\n", mode_name(settings[k].mode),
               settings[k].threshold, 100.0 * fwd / total, t / tref, rel);
        if (csv)
            fprintf(csv, "random-1.3B,%s,%g,%.4f,%.4f,,,,%.5f\n", mode_name(settings[k].mode),
                    settings[k].threshold, (double)fwd / total, t / tref, rel);
    }
    printf("latent rel err: L2 distance to the uncached latent over its L2 norm\n");
    rc = 0;
done:
    vd_free(x);
    vd_free(noise);
    vd_free(vc);
    vd_free(vu);
    vd_free(ref);
    bench_guided_free(&g);
    vk_ctx_free(&kc);
    return rc;
}
