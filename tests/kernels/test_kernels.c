/* Kernel unit test: the thorough fast-versus-reference set on 1 and 3
 * threads, plus checks of the reference itself against known values. */
#include <math.h>
#include <string.h>

#include "kernels/impl.h"
#include "kernels/selfcheck.h"
#include "t.h"

static void line(void *user, const char *name, double err, double tol, int guards, int ok)
{
    T_CHECK(ok, "%s: err %.3e tol %.0e%s", name, err, tol, guards ? "" : " (guard overwritten)");
}

/* The reference against hand-computed values: the fast kernels are only as
 * right as the reference. */
static void ref_known_values(void)
{
    vk_ctx *c = vk_ctx_new(1, 1, NULL);
    T_CHECK(c != NULL, "ctx");
    if (!c)
        return;
    const vk_funcs *f = c->f;

    /* linear with bf16 weights [2, 3]: exactly representable values */
    uint16_t wb[6];
    const float wv[6] = { 1, 2, 3, -1, 0.5f, 0.25f };
    for (int i = 0; i < 6; i++)
        wb[i] = vt_f32_to_bf16(wv[i]);
    float bias[2] = { 0.5f, -1 };
    vt_tensor w = { .dtype = VT_BF16, .ndim = 2, .shape = { 2, 3 }, .data = wb };
    vt_tensor b = { .dtype = VT_F32, .ndim = 1, .shape = { 2 }, .data = bias };
    vk_linear l;
    T_CHECK(vk_linear_init(&l, &w, &b) == 0, "linear init");
    float x[3] = { 1, 1, 2 }, y[2];
    f->linear(c, &l, x, 1, y, VK_ACT_RELU);
    T_CHECK(y[0] == 9.5f && y[1] == 0.0f, "linear %g %g", y[0], y[1]);
    vk_linear_free(&l);
    T_CHECK(l.bias == NULL, "free clears");

    /* bad layers are refused with an error, not accepted */
    vt_tensor w1 = { .dtype = VT_I32, .ndim = 2, .shape = { 2, 3 }, .data = wb };
    T_CHECK(vk_linear_init(&l, &w1, NULL) != 0, "int weights refused");
    vt_tensor w3 = { .dtype = VT_F32, .ndim = 3, .shape = { 2, 3, 1 }, .data = wb };
    T_CHECK(vk_linear_init(&l, &w3, NULL) != 0, "3-d linear refused");
    vt_tensor b3 = { .dtype = VT_F32, .ndim = 1, .shape = { 3 }, .data = bias };
    T_CHECK(vk_linear_init(&l, &w, &b3) != 0, "bias length mismatch refused");
    vk_conv cv;
    T_CHECK(vk_conv_init(&cv, &w, NULL) != 0, "2-d conv weight refused");

    /* activations at known points */
    T_CHECK(fabsf(vk_act1(1.0f, VK_ACT_GELU_ERF) - 0.8413447f) < 1e-6f, "gelu erf");
    T_CHECK(fabsf(vk_act1(1.0f, VK_ACT_GELU_TANH) - 0.8411920f) < 1e-6f, "gelu tanh");
    T_CHECK(fabsf(vk_act1(-2.0f, VK_ACT_SILU) + 0.2384058f) < 1e-6f, "silu");

    /* softmax rows sum to one; attention with one key returns v */
    float s[4] = { 1000, 1001, -5, 3 };
    f->softmax(c, s, 1, 4, 4);
    T_CHECK(fabsf(s[0] + s[1] + s[2] + s[3] - 1) < 1e-6f && s[1] > s[0], "softmax");
    float q[2] = { 1, 2 }, k[2] = { 3, 4 }, v[2] = { 5, -6 }, o[2];
    f->attention(c, q, 2, k, 2, v, 2, o, 2, 1, 2, 1, 1, 1, 0.5f, NULL);
    T_CHECK(o[0] == 5 && o[1] == -6, "attention one key %g %g", o[0], o[1]);

    /* chnorm: a column [3, 4] has norm 5, times sqrt(2) */
    float cx[2] = { 3, 4 }, cy[2];
    f->chnorm(c, cx, cy, 2, 1, NULL, NULL);
    T_CHECK(fabsf(cy[0] - 0.6f * sqrtf(2)) < 1e-6f && fabsf(cy[1] - 0.8f * sqrtf(2)) < 1e-6f,
            "chnorm");

    /* RoPE table for head_dim 16: pairs split 4 (frames) / 2 (rows) / 2 (cols),
     * frame frequencies 10000^(-2j/8), row/column 10000^(-2j/4) */
    float *cs = vk_rope3d_table(2, 3, 4, 16, 10000.0, 0, 0, 0);
    T_CHECK(cs != NULL, "rope table");
    if (cs) {
        int64_t tok = (1 * 3 + 2) * 4 + 3; /* f=1, h=2, w=3 */
        const float *r = cs + tok * 16;
        T_CHECK(fabs(r[2] - cos(1.0 * pow(10000.0, -2.0 / 8))) < 1e-7, "frame pair 1");
        T_CHECK(fabs(r[9] - sin(2.0 * 1.0)) < 1e-7, "row pair 0 (j=0)");
        T_CHECK(fabs(r[10] - cos(2.0 * pow(10000.0, -2.0 / 4))) < 1e-7, "row pair 1");
        T_CHECK(fabs(r[13] - sin(3.0)) < 1e-7, "column pair 0");
        T_CHECK(fabs(r[15] - sin(3.0 * pow(10000.0, -2.0 / 4))) < 1e-7, "column pair 1");
        vd_free(cs);
    }
    T_CHECK(vk_rope3d_table(1, 1, 1, 15, 1e4, 0, 0, 0) == NULL, "odd head_dim refused");
    vk_ctx_free(&c);
    T_CHECK(c == NULL, "ctx free clears");
}

int main(void)
{
    ref_known_values();
    /* every level this CPU has (checkasm style: the AVX2 code stays tested
     * on an AVX-512 machine), fp32 and, where native, bf16; 1 and 3 threads */
    vk_isa top = vk_isa_default();
    T_CHECK(top <= vk_isa_cpu(), "default level %s above the CPU's %s", vk_isa_name(top),
            vk_isa_name(vk_isa_cpu()));
    for (int isa = 0; isa <= (int)top; isa++)
        for (int p = 0; p < 2; p++) {
            if (p && !vk_isa_native_bf16((vk_isa)isa))
                continue;
            vk_prec prec = p ? VK_PREC_BF16 : VK_PREC_F32;
            int f1 = vk_selfcheck_run(1, isa, prec, 1, 1, line, NULL);
            int f3 = vk_selfcheck_run(3, isa, prec, 1, 2, line, NULL);
            T_CHECK(f1 == 0 && f3 == 0, "%s %s: %d + %d failures", vk_isa_name((vk_isa)isa),
                    vk_prec_name(prec), f1, f3);
        }
    /* a level above the CPU's and bf16 without native support are refused */
    vd_log lg = { 0 };
    if (vk_isa_cpu() + 1 < VK_ISA_COUNT)
        T_CHECK(!vk_ctx_new_ex(1, vk_isa_cpu() + 1, VK_PREC_F32, &lg), "level above the CPU's");
    vk_ctx *c = vk_ctx_new_ex(1, VK_ISA_AVX2 <= top ? VK_ISA_AVX2 : VK_ISA_C, VK_PREC_BF16, &lg);
    T_CHECK(!c && strstr(lg.msg, "bf16"), "bf16 at a level without it: %s", lg.msg);
    c = vk_ctx_new_ex(1, -1, VK_PREC_AUTO, NULL);
    T_CHECK(c && c->prec == (vk_isa_native_bf16(top) ? VK_PREC_BF16 : VK_PREC_F32), "auto");
    vk_ctx_free(&c);
    T_DONE();
}
