/* Kernel context, layer preparation and the rotary table. */
#include <math.h>
#include <stdlib.h>

#include "impl.h"

vk_ctx *vk_ctx_new(int n_threads, int use_ref, vd_log *log)
{
    vk_ctx *c = vk_ctx_new_ex(n_threads, -1, VK_PREC_F32, log);
    if (c && use_ref) {
        c->f = vk_funcs_ref();
        c->isa = VK_ISA_C;
    }
    return c;
}

vk_ctx *vk_ctx_new_ex(int n_threads, int isa, vk_prec prec, vd_log *log)
{
    const char *env = vk_isa_env_rejected();
    if (env)
        vd_logf(log, VDIT_LOG_WARNING, "VDIT_CPU=%s is not a level (c, avx2, avx512, avx512_bf16); "
                "ignored", env);
    if (isa >= VK_ISA_COUNT || isa > (int)vk_isa_cpu()) {
        vd_err(log, VDIT_ERR_UNSUPPORTED, "instruction set %s requested; this CPU has %s",
               vk_isa_name((vk_isa)isa), vk_isa_name(vk_isa_cpu()));
        return NULL;
    }
    vk_isa level = isa < 0 ? vk_isa_default() : (vk_isa)isa;
    if (prec == VK_PREC_AUTO)
        prec = vk_isa_native_bf16(level) ? VK_PREC_BF16 : VK_PREC_F32;
    if (prec == VK_PREC_BF16 && !vk_isa_native_bf16(level)) {
        vd_err(log, VDIT_ERR_UNSUPPORTED,
               "precision bf16 needs a CPU that computes bf16 natively (AVX512_BF16); this one "
               "runs at %s%s: use precision fp32 or auto", vk_isa_name(level),
               level < vk_isa_cpu() ? " (lowered by VDIT_CPU)" : "");
        return NULL;
    }
    vk_ctx *c = vd_calloc(sizeof(*c));
    if (!c) {
        vd_err(log, VDIT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *spin = getenv("GOMP_SPINCOUNT"), *pol = getenv("OMP_WAIT_POLICY");
    vd_logf(log, VDIT_LOG_DEBUG, "OpenMP waiting: GOMP_SPINCOUNT=%s OMP_WAIT_POLICY=%s",
            spin ? spin : "(unset)", pol ? pol : "(unset)");
    c->n_threads = n_threads > 0 ? n_threads : vd_cpu_count();
    c->isa = level;
    c->prec = prec;
    c->f = vk_funcs_for(level, prec);
    c->be = vk_backend_cpu();
    c->log = log;
    return c;
}

void vk_ctx_free(vk_ctx **pc)
{
    if (!pc || !*pc)
        return;
    vk_ctx *c = *pc;
    if (c->be && c->be_state)
        c->be->state_free(c->be_state);
    vk_device_close(&c->cuda);
    vd_free(c->scratch);
    vd_free(c);
    *pc = NULL;
}

void *vk_scratch(vk_ctx *c, size_t n)
{
    if (n <= c->scratch_size && c->scratch)
        return c->scratch;
    /* grow by half again so slowly growing requests do not reallocate each call */
    size_t want = n + n / 2;
    if (want < n)
        want = n;
    void *p = vd_malloc(want);
    if (!p)
        return NULL;
    vd_free(c->scratch);
    c->scratch = p;
    c->scratch_size = want;
    return p;
}

static int weight_type_ok(vt_dtype t)
{
    return t == VT_F32 || t == VT_F16 || t == VT_BF16;
}

/* Bias of any float type converted to an owned fp32 vector of n values. */
static int bias_init(vd_log *lg, float **out, const vt_tensor *b, int64_t n, const char *what)
{
    *out = NULL;
    if (!b)
        return 0;
    const char *name = b->name ? b->name : what;
    if (b->ndim != 1 || b->shape[0] != n)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: bias has %d dims / %lld values, expected [%lld]",
                      name, b->ndim, (long long)(b->ndim ? b->shape[0] : 0), (long long)n);
    if (!weight_type_ok(b->dtype) && b->dtype != VT_F64)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: bias type %s not supported", name,
                      vt_dtype_name(b->dtype));
    float *p = vd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", name);
    vt_to_f32(p, b->data, b->dtype, (size_t)n);
    *out = p;
    return 0;
}

int vk_linear_init(vk_linear *l, const vt_tensor *w, const vt_tensor *bias)
{
    return vk_linear_init_lg(NULL, l, w, bias);
}

int vk_linear_init_lg(vd_log *lg, vk_linear *l, const vt_tensor *w, const vt_tensor *bias)
{
    memset(l, 0, sizeof(*l));
    if (!w || !w->data)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "linear: no weight");
    const char *name = w->name ? w->name : "linear weight";
    if (w->ndim != 2 || w->shape[0] <= 0 || w->shape[1] <= 0)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: linear weight must be [n_out, n_in], has %d dims",
                      name, w->ndim);
    if (!weight_type_ok(w->dtype))
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: weight type %s not supported (F32/F16/BF16)",
                      name, vt_dtype_name(w->dtype));
    l->n_out = w->shape[0];
    l->n_in = w->shape[1];
    l->wtype = w->dtype;
    l->w = w->data;
    int err = bias_init(lg, &l->bias, bias, l->n_out, "linear bias");
    if (!err && (err = vk_backend_cpu()->linear_init(l)))
        vd_err(lg, err, "%s: out of memory preparing the weights", name);
    if (err)
        vk_linear_free(l);
    return err;
}

const void *vk_conv_src(const vk_conv *cv, vt_dtype *t, float **tmp)
{
    *tmp = NULL;
    *t = cv->w ? cv->wtype : VT_F32;
    if (cv->w)
        return cv->w;
    return cv->prep ? vk_backend_cpu()->conv_plain(cv, tmp) : NULL;
}

int vk_linear_prepare_n(vk_linear *const *ls, int n, vk_prec prec, int n_threads,
                        void (*done)(void *user, const vk_linear *l), void *user)
{
    for (int i = 0; i < n; i++)
        if (!ls || !ls[i] || !ls[i]->w)
            return VDIT_ERR_INVALID_ARG;
    return vk_backend_cpu()->linear_prepare(ls, n, prec, n_threads, done, user);
}

int vk_linear_prepare(vk_linear *l, vk_prec prec, int n_threads)
{
    return vk_linear_prepare_n(&l, 1, prec, n_threads, NULL, NULL);
}

void vk_linear_free(vk_linear *l)
{
    if (!l)
        return;
    vd_free(l->bias);
    if (l->prep && l->prep_free)
        l->prep_free(l->prep);
    memset(l, 0, sizeof(*l));
}

int vk_conv_init(vk_conv *cv, const vt_tensor *w, const vt_tensor *bias)
{
    return vk_conv_init_lg(NULL, cv, w, bias);
}

int vk_conv_init_lg(vd_log *lg, vk_conv *cv, const vt_tensor *w, const vt_tensor *bias)
{
    memset(cv, 0, sizeof(*cv));
    if (!w || !w->data)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "conv: no weight");
    const char *name = w->name ? w->name : "conv weight";
    if (w->ndim != 4 && w->ndim != 5)
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "%s: conv weight must be [c_out, c_in, (kd,) kh, kw], has %d dims", name,
                      w->ndim);
    for (int i = 0; i < w->ndim; i++)
        if (w->shape[i] <= 0 || w->shape[i] > INT32_MAX / 4)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: bad conv weight dimension %d", name, i);
    if (!weight_type_ok(w->dtype))
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: weight type %s not supported (F32/F16/BF16)",
                      name, vt_dtype_name(w->dtype));
    cv->c_out = (int)w->shape[0];
    cv->c_in = (int)w->shape[1];
    cv->kd = w->ndim == 5 ? (int)w->shape[2] : 1;
    cv->kh = (int)w->shape[w->ndim - 2];
    cv->kw = (int)w->shape[w->ndim - 1];
    cv->wtype = w->dtype;
    cv->w = w->data;
    int err = bias_init(lg, &cv->bias, bias, cv->c_out, "conv bias");
    if (!err && (err = vk_backend_cpu()->conv_init(cv)))
        vd_err(lg, err, "%s: out of memory preparing the weights", name);
    if (err)
        vk_conv_free(cv);
    return err;
}

int vk_conv_detach(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w)
{
    if (!c || !cv || !cv->prep || !g || h <= 0 || w <= 0 || g->sh <= 0 || g->sw <= 0)
        return VDIT_ERR_INVALID_ARG;
    return vk_backend_cpu()->conv_detach(c->f != vk_funcs_ref() ? c : NULL, cv, g, h, w);
}

size_t vk_conv_prepared_bytes(const vk_conv *cv)
{
    return cv && cv->prep ? vk_backend_cpu()->conv_bytes(cv) : 0;
}

void vk_conv_free(vk_conv *cv)
{
    if (!cv)
        return;
    vd_free(cv->bias);
    if (cv->prep && cv->prep_free)
        cv->prep_free(cv->prep);
    memset(cv, 0, sizeof(*cv));
}

float *vk_rope3d_table(int64_t f, int64_t h, int64_t w, int64_t hd, double theta, int64_t f0,
                       int64_t h0, int64_t w0)
{
    if (f <= 0 || h <= 0 || w <= 0 || hd <= 0 || (hd & 1))
        return NULL;
    size_t n;
    if (!vd_mul_ok((size_t)(f * h), (size_t)w, &n) || !vd_mul_ok(n, (size_t)hd, &n) ||
        !vd_mul_ok(n, sizeof(float), &n))
        return NULL;
    float *cs = vd_malloc(n);
    if (!cs)
        return NULL;
    int64_t c = hd / 2;
    int64_t cw = c / 3, cf = c - 2 * cw; /* pairs per axis: frames get the remainder */
    double nf = (double)(hd - 4 * (hd / 6)), nhw = (double)(2 * (hd / 6));
    int64_t tok = 0;
    for (int64_t a = 0; a < f; a++)
        for (int64_t b = 0; b < h; b++)
            for (int64_t e = 0; e < w; e++, tok++) {
                float *r = cs + tok * hd;
                for (int64_t i = 0; i < c; i++) {
                    double pos, n_ax;
                    int64_t j;
                    if (i < cf) {
                        pos = (double)(a + f0), n_ax = nf, j = i;
                    } else if (i < cf + cw) {
                        pos = (double)(b + h0), n_ax = nhw, j = i - cf;
                    } else {
                        pos = (double)(e + w0), n_ax = nhw, j = i - cf - cw;
                    }
                    /* theta^(-2j/n), as torch computes 1 / theta^(arange(0, n, 2) / n) */
                    double fr = 1.0 / pow(theta, (double)(2 * j) / n_ax);
                    double ang = pos * fr;
                    r[2 * i] = (float)cos(ang);
                    r[2 * i + 1] = (float)sin(ang);
                }
            }
    return cs;
}
