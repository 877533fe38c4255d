/*
 * Flow-matching samplers (see sampler.h).
 *
 * The reference (wan/utils/fm_solvers*.py) computes the schedule in double
 * (numpy) and every step in float32 with 0-dim float32 tensors for the
 * scalar coefficients. We follow the same precision split: the schedule is
 * double with the same operation order as numpy (no fused multiply-add: the
 * timesteps are truncated integers, so one ulp can change them), and the
 * per-step scalars are float, so that the trajectory stays within the fp32
 * noise of the reference.
 *
 * log(sigma) at sigma = 0 and log(alpha) at alpha = 0 give -inf, so lambda
 * is +-inf at the ends of the DPM++ schedule (sigma 1 at the start, 0 at the
 * end) and at the end of UniPC's. The formulas are written so that IEEE
 * arithmetic gives the limits the reference gets (exp(-inf) = 0, 1/inf = 0),
 * which needs a build without -ffast-math (meson.build uses only
 * -fno-math-errno -fno-trapping-math).
 */
#include "sampler.h"

#include <math.h>

#include "../common.h"

struct vd_sampler {
    vd_sampler_kind kind;
    int steps;
    int64_t n;
    int64_t *ts;   /* [steps] */
    float *tf;     /* [steps] the timesteps as the model receives them */
    float *sig;    /* [steps + 1] */
    int next;      /* step index expected next */
    int n_hist;    /* model outputs held (0..2): "lower_order_nums" */
    int last_order;
    float *m0, *m1;   /* x0 predictions of the last two steps (m0 newest) */
    float *last;      /* UniPC: sample the last predictor started from */
    float *tmp;
};

/* numpy.linspace(start, stop, num)[i] for i < num - 1: i * step + start
 * with step = (stop - start) / (num - 1), two separately rounded
 * operations. volatile keeps the compiler from fusing them. */
static double linspace_at(double start, double stop, int num, int i)
{
    double step = (stop - start) / (double)(num - 1);
    volatile double prod = (double)i * step;
    return prod + start;
}

static double shift_sigma(double s, double shift)
{
    volatile double a = shift * s;
    volatile double b = (shift - 1.0) * s;
    volatile double c = 1.0 + b;
    return a / c;
}

/* ---- few-step lists -------------------------------------------------------
 * The distilled models' code (CausVid, Self-Forcing: FlowMatchScheduler with
 * sigma_min 0, extra_one_step, set_timesteps(1000); lightx2v:
 * WanStepDistillScheduler) builds a float32 torch table of 1000 levels,
 * linspace(1, 0, 1001)[:-1] shifted as shift * s / (1 + (shift - 1) * s),
 * every operation in float32, and timesteps = 1000 * sigmas. We take the
 * linspace entries correctly rounded (1 - j/1000 in double, to float):
 * torch's vectorised linspace is off by an ulp at some entries, which moves
 * a level by at most 2e-7 (none at the multiples of 250 that the warped
 * lists use). */
static float table_sigma(int j, double shift)
{
    volatile float s = (float)(1.0 - (double)j / 1000.0);
    volatile float a = (float)shift * s;
    volatile float b = (float)(shift - 1.0) * s;
    volatile float c = 1.0f + b;
    return a / c;
}

int vd_fewstep_check(const int *list, int n_list)
{
    if (!list || n_list < 1 || n_list > 1000)
        return VDIT_ERR_INVALID_ARG;
    for (int i = 0; i < n_list; i++)
        if (list[i] < 1 || list[i] > 1000 || (i && list[i] >= list[i - 1]))
            return VDIT_ERR_INVALID_ARG;
    return 0;
}

void vd_fewstep_default(int n, int *list)
{
    for (int k = 0; k < n; k++)
        list[k] = 1000 - (int)((1000LL * k) / n);
}

int vd_fewstep_schedule(const int *list, int n_list, int warp, double shift, float *t, float *sig)
{
    if (vd_fewstep_check(list, n_list) || !(shift > 0))
        return VDIT_ERR_INVALID_ARG;
    for (int i = 0; i < n_list; i++) {
        int j = 1000 - list[i];
        if (!warp) {
            /* the level whose timestep is nearest the listed one (argmin:
             * the first on a tie); float differences of close values are
             * exact, so this agrees with torch's double and float lookups */
            float tl = (float)list[i], best = INFINITY;
            for (int q = 0; q < 1000; q++) {
                volatile float tq = table_sigma(q, shift) * 1000.0f; /* rounded, no FMA */
                float d = fabsf(tq - tl);
                if (d < best) {
                    best = d;
                    j = q;
                }
            }
        }
        sig[i] = table_sigma(j, shift);
        t[i] = warp ? sig[i] * 1000.0f : (float)list[i];
    }
    sig[n_list] = 0.0f;
    return 0;
}

int vd_sampler_schedule(vd_sampler_kind kind, int steps, double shift, int64_t *ts, float *sig)
{
    if (steps < 1 || steps > 100000 || !(shift > 0) || kind < 0 || kind >= VD_SAMPLER_COUNT)
        return VDIT_ERR_INVALID_ARG;
    if (kind == VD_SAMPLER_FEWSTEP) {
        int *list = malloc(sizeof(int) * (size_t)steps);
        float *tf = malloc(sizeof(float) * (size_t)steps);
        int ret = list && tf ? 0 : VDIT_ERR_NOMEM;
        if (!ret) {
            vd_fewstep_default(steps, list);
            ret = vd_fewstep_schedule(list, steps, 1, shift, tf, sig);
        }
        for (int i = 0; !ret && i < steps; i++)
            ts[i] = (int64_t)tf[i];
        free(list);
        free(tf);
        return ret;
    }
    /* UniPC takes sigma_max from its float32 training table (1 - 1/1000),
     * DPM++ (and our Euler) start from 1 exactly. */
    double smax = kind == VD_SAMPLER_UNIPC ? (double)(float)(1.0 - 1.0 / 1000.0) : 1.0;
    for (int i = 0; i < steps; i++) {
        double s = shift_sigma(linspace_at(smax, 0.0, steps + 1, i), shift);
        volatile double t = s * 1000.0;
        ts[i] = (int64_t)t;
        sig[i] = (float)s;
    }
    sig[steps] = 0.0f;
    return 0;
}

vd_sampler *vd_sampler_new_list(const int *list, int n_list, int warp, double shift, int64_t n)
{
    if (vd_fewstep_check(list, n_list) || n <= 0 || !(shift > 0))
        return NULL;
    vd_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kind = VD_SAMPLER_FEWSTEP;
    s->steps = n_list;
    s->n = n;
    s->ts = malloc(sizeof(int64_t) * (size_t)n_list);
    s->tf = malloc(sizeof(float) * (size_t)n_list);
    s->sig = malloc(sizeof(float) * (size_t)(n_list + 1));
    if (!s->ts || !s->tf || !s->sig) {
        vd_sampler_free(&s);
        return NULL;
    }
    vd_fewstep_schedule(list, n_list, warp, shift, s->tf, s->sig);
    for (int i = 0; i < n_list; i++)
        s->ts[i] = (int64_t)s->tf[i];
    return s;
}

vd_sampler *vd_sampler_new(vd_sampler_kind kind, int steps, double shift, int64_t n)
{
    if (steps < 1 || steps > 100000 || n <= 0 || !(shift > 0) || kind < 0 ||
        kind >= VD_SAMPLER_COUNT)
        return NULL;
    if (kind == VD_SAMPLER_FEWSTEP) {
        if (steps > 1000)
            return NULL;
        int list[1000];
        vd_fewstep_default(steps, list);
        return vd_sampler_new_list(list, steps, 1, shift, n);
    }
    vd_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kind = kind;
    s->steps = steps;
    s->n = n;
    s->ts = malloc(sizeof(int64_t) * (size_t)steps);
    s->sig = malloc(sizeof(float) * (size_t)(steps + 1));
    size_t bytes = sizeof(float) * (size_t)n;
    if (!s->ts || !s->sig)
        goto fail;
    if (kind != VD_SAMPLER_EULER) {
        s->m0 = vd_malloc(bytes);
        s->m1 = vd_malloc(bytes);
        s->tmp = vd_malloc(bytes);
        if (!s->m0 || !s->m1 || !s->tmp)
            goto fail;
        if (kind == VD_SAMPLER_UNIPC && !(s->last = vd_malloc(bytes)))
            goto fail;
    }
    if (!(s->tf = malloc(sizeof(float) * (size_t)steps)))
        goto fail;
    vd_sampler_schedule(kind, steps, shift, s->ts, s->sig);
    for (int i = 0; i < steps; i++)
        s->tf[i] = (float)s->ts[i];
    return s;
fail:
    vd_sampler_free(&s);
    return NULL;
}

void vd_sampler_free(vd_sampler **ps)
{
    vd_sampler *s = ps ? *ps : NULL;
    if (!s)
        return;
    free(s->ts);
    free(s->tf);
    free(s->sig);
    vd_free(s->m0);
    vd_free(s->m1);
    vd_free(s->last);
    vd_free(s->tmp);
    free(s);
    *ps = NULL;
}

int vd_sampler_steps(const vd_sampler *s)
{
    return s->steps;
}

int64_t vd_sampler_timestep(const vd_sampler *s, int i)
{
    return i >= 0 && i < s->steps ? s->ts[i] : 0;
}

float vd_sampler_model_t(const vd_sampler *s, int i)
{
    return i >= 0 && i < s->steps ? s->tf[i] : 0.0f;
}

int vd_sampler_needs_noise(const vd_sampler *s, int i)
{
    return s->kind == VD_SAMPLER_FEWSTEP && i >= 0 && i < s->steps - 1;
}

float vd_sampler_sigma(const vd_sampler *s, int i)
{
    return i >= 0 && i <= s->steps ? s->sig[i] : 0.0f;
}

void vd_sampler_reset(vd_sampler *s, int first)
{
    s->next = first;
    s->n_hist = 0;
    s->last_order = 0;
}

/* lambda = log(alpha) - log(sigma), alpha = 1 - sigma, in float. */
static float lambda_of(float sigma)
{
    float alpha = 1.0f - sigma;
    return logf(alpha) - logf(sigma);
}

static void push_x0(vd_sampler *s, const float *x, const float *v, float sigma)
{
    float *t = s->m1; /* oldest becomes the new slot */
    s->m1 = s->m0;
    s->m0 = t;
    for (int64_t k = 0; k < s->n; k++)
        t[k] = x[k] - sigma * v[k];
}

/* ---- UniPC (bh2, predict x0) --------------------------------------------
 * Step i: x0_i = x - sigma_i v. If a previous step exists, the corrector
 * (UniC) first refines x from the previous predictor's start sample
 * (s->last) using the new x0_i; then the predictor (UniP) of order
 * min(2, history, steps - i) moves the corrected x from sigma_i to
 * sigma_{i+1}. */

/* Coefficients shared by UniP and UniC for one interval s0 -> t. */
typedef struct unipc_coef {
    float c_x, c_m0, c_d; /* x_t = c_x x - c_m0 m0 - c_d (...) */
    float hh, h_phi_1, b_h;
} unipc_coef;

static unipc_coef unipc_interval(float sigma_t, float sigma_s0)
{
    unipc_coef c;
    float alpha_t = 1.0f - sigma_t;
    float h = lambda_of(sigma_t) - lambda_of(sigma_s0);
    c.hh = -h;
    c.h_phi_1 = expm1f(c.hh);
    c.b_h = expm1f(c.hh); /* bh2 */
    c.c_x = sigma_t / sigma_s0;
    c.c_m0 = alpha_t * c.h_phi_1;
    c.c_d = alpha_t * c.b_h;
    return c;
}

static void unipc_correct(vd_sampler *s, int i, float *x)
{
    /* Interval sigma_{i-1} -> sigma_i, started from s->last with history
     * m0 = x0_{i-1} (and m1 = x0_{i-2} at order 2); x0_i is in s->tmp. */
    int order = s->last_order;
    float sigma_t = s->sig[i], sigma_s0 = s->sig[i - 1];
    unipc_coef c = unipc_interval(sigma_t, sigma_s0);
    float h = -c.hh;
    float h_phi_k = c.h_phi_1 / c.hh - 1.0f;
    float b1 = h_phi_k * 1.0f / c.b_h;
    h_phi_k = h_phi_k / c.hh - 0.5f;
    float b2 = h_phi_k * 2.0f / c.b_h;
    float rho_d = 0, rho_t = 0.5f, rk = 1;
    if (order >= 2) {
        /* rks = [rk, 1]: solve [[1, 1], [rk, 1]] rho = [b1, b2]. */
        float lam_s0 = lambda_of(sigma_s0);
        rk = (lambda_of(s->sig[i - 2]) - lam_s0) / h;
        rho_d = (b1 - b2) / (1.0f - rk);
        rho_t = b1 - rho_d;
    }
    const float *m0 = s->m0, *m1 = s->m1, *xt = s->tmp, *last = s->last;
    for (int64_t k = 0; k < s->n; k++) {
        float base = c.c_x * last[k] - c.c_m0 * m0[k];
        float corr = rho_t * (xt[k] - m0[k]);
        if (order >= 2)
            corr = rho_d * ((m1[k] - m0[k]) / rk) + corr;
        x[k] = base - c.c_d * corr;
    }
}

static void unipc_predict(vd_sampler *s, int i, int order, float *x)
{
    float sigma_t = s->sig[i + 1], sigma_s0 = s->sig[i];
    unipc_coef c = unipc_interval(sigma_t, sigma_s0);
    float rk = 1;
    if (order >= 2) {
        float h = -c.hh;
        rk = (lambda_of(s->sig[i - 1]) - lambda_of(sigma_s0)) / h;
    }
    const float *m0 = s->m0, *m1 = s->m1;
    for (int64_t k = 0; k < s->n; k++) {
        float v = c.c_x * x[k] - c.c_m0 * m0[k];
        if (order >= 2)
            v = v - c.c_d * (0.5f * ((m1[k] - m0[k]) / rk));
        x[k] = v;
    }
}

static void unipc_step(vd_sampler *s, int i, const float *v, float *x)
{
    float sigma = s->sig[i];
    /* x0 of the current (uncorrected) sample. */
    for (int64_t k = 0; k < s->n; k++)
        s->tmp[k] = x[k] - sigma * v[k];
    if (s->n_hist > 0)
        unipc_correct(s, i, x);
    /* history shift: m1 <- m0, m0 <- x0_i */
    float *t = s->m1;
    s->m1 = s->m0;
    s->m0 = s->tmp;
    s->tmp = t;
    int order = VD_MIN(2, s->steps - i);
    order = VD_MIN(order, s->n_hist + 1);
    s->last_order = order;
    memcpy(s->last, x, sizeof(float) * (size_t)s->n);
    unipc_predict(s, i, order, x);
    if (s->n_hist < 2)
        s->n_hist++;
}

/* ---- DPM-Solver++ 2M (midpoint) ---------------------------------------- */

static void dpmpp_step(vd_sampler *s, int i, const float *v, float *x)
{
    float sigma_s0 = s->sig[i], sigma_t = s->sig[i + 1];
    push_x0(s, x, v, sigma_s0);
    float alpha_t = 1.0f - sigma_t;
    float lam_t = lambda_of(sigma_t), lam_s0 = lambda_of(sigma_s0);
    float h = lam_t - lam_s0;
    float c_x = sigma_t / sigma_s0;
    float c_d0 = alpha_t * (expf(-h) - 1.0f);
    int last = i == s->steps - 1;
    const float *m0 = s->m0, *m1 = s->m1;
    if (s->n_hist < 1 || last) {
        for (int64_t k = 0; k < s->n; k++)
            x[k] = c_x * x[k] - c_d0 * m0[k];
    } else {
        /* sigma_{i-1} = 1 gives lambda = -inf, r0 = inf and 1/r0 = 0: the
         * correction vanishes, as in the reference. */
        float h0 = lam_s0 - lambda_of(s->sig[i - 1]);
        float r0 = h0 / h;
        float inv_r0 = 1.0f / r0;
        float c_d1 = 0.5f * c_d0;
        for (int64_t k = 0; k < s->n; k++) {
            float d1 = inv_r0 * (m0[k] - m1[k]);
            x[k] = (c_x * x[k] - c_d0 * m0[k]) - c_d1 * d1;
        }
    }
    if (s->n_hist < 2)
        s->n_hist++;
}

static void euler_step(vd_sampler *s, int i, const float *v, float *x)
{
    float dt = s->sig[i + 1] - s->sig[i];
    for (int64_t k = 0; k < s->n; k++)
        x[k] = x[k] + dt * v[k];
}

/* ---- few-step: x0, re-noised --------------------------------------------
 * CausVid and Self-Forcing compute x0 = x - sigma v in double (their
 * _convert_flow_pred_to_x0) and round it to the sample's type; lightx2v in
 * float32 (at most an ulp apart). add_noise is float32: (1 - sigma) x0 +
 * sigma eps. */
static void fewstep_step(vd_sampler *s, int i, const float *v, const float *eps, float *x)
{
    double sg = s->sig[i];
    float sn = s->sig[i + 1], a = 1.0f - sn;
    int last = i == s->steps - 1;
    for (int64_t k = 0; k < s->n; k++) {
        float x0 = (float)((double)x[k] - sg * (double)v[k]);
        if (last) {
            x[k] = x0;
        } else {
            volatile float p = a * x0, q = sn * eps[k]; /* no fused multiply-add */
            x[k] = p + q;
        }
    }
}

int vd_sampler_step(vd_sampler *s, int i, const float *v, float *x)
{
    return vd_sampler_step_noise(s, i, v, NULL, x);
}

int vd_sampler_step_noise(vd_sampler *s, int i, const float *v, const float *eps, float *x)
{
    if (!s || !v || !x || i < 0 || i >= s->steps || (vd_sampler_needs_noise(s, i) && !eps))
        return VDIT_ERR_INVALID_ARG;
    if (i != s->next)
        vd_sampler_reset(s, i); /* a jump: start a fresh multistep history */
    switch (s->kind) {
    case VD_SAMPLER_UNIPC:
        unipc_step(s, i, v, x);
        break;
    case VD_SAMPLER_DPMPP:
        dpmpp_step(s, i, v, x);
        break;
    case VD_SAMPLER_FEWSTEP:
        fewstep_step(s, i, v, eps, x);
        break;
    default:
        euler_step(s, i, v, x);
        break;
    }
    s->next = i + 1;
    return 0;
}
