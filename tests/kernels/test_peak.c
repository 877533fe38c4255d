/* vk_peak_gflops: a positive, finite figure at every level this CPU has, and
 * where bf16 is native its peak above the fp32 one. No timing thresholds
 * beyond that (the machine may be loaded). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "t.h"

static int ok_figure(double g)
{
    return g > 0 && isfinite(g);
}

int main(void)
{
    vk_isa top = vk_isa_default();
    char how[256];
    for (int isa = 0; isa <= (int)top; isa++) {
        double mhz = -1;
        how[0] = 0;
        double f = vk_peak_gflops((vk_isa)isa, VK_PREC_F32, 2, &mhz, how, sizeof(how));
        printf("%s fp32: %.1f GFLOP/s, %.0f MHz (%s)\n", vk_isa_name((vk_isa)isa), f, mhz, how);
        T_CHECK(ok_figure(f), "%s fp32 peak %g", vk_isa_name((vk_isa)isa), f);
        T_CHECK(mhz >= 0 && isfinite(mhz), "%s clock %g", vk_isa_name((vk_isa)isa), mhz);
        T_CHECK(!strncmp(how, vk_isa_name((vk_isa)isa), strlen(vk_isa_name((vk_isa)isa))),
                "%s: how '%s'", vk_isa_name((vk_isa)isa), how);
        if (!vk_isa_native_bf16((vk_isa)isa)) {
            /* bf16 where it is not native: the fp32 figure, said so */
            double b = vk_peak_gflops((vk_isa)isa, VK_PREC_BF16, 1, NULL, how, sizeof(how));
            T_CHECK(ok_figure(b) && strstr(how, "not native"), "%s bf16: %g '%s'",
                    vk_isa_name((vk_isa)isa), b, how);
            continue;
        }
        /* bf16 twice fp32 per cycle on every CPU that has it: other load can
         * only lower one figure or the other, so retry a few times */
        double b = 0;
        for (int tries = 0; tries < 4; tries++) {
            b = vk_peak_gflops((vk_isa)isa, VK_PREC_BF16, 2, NULL, how, sizeof(how));
            printf("%s bf16: %.1f GFLOP/s (%s)\n", vk_isa_name((vk_isa)isa), b, how);
            if (b > f)
                break;
            f = vk_peak_gflops((vk_isa)isa, VK_PREC_F32, 2, NULL, NULL, 0);
        }
#if defined(__SANITIZE_ADDRESS__)
        /* instrumented builds run the zmm loops at a fraction of their rate:
         * only the figure's sanity is checked there */
        T_CHECK(ok_figure(b), "%s bf16 peak %g", vk_isa_name((vk_isa)isa), b);
#else
        T_CHECK(ok_figure(b) && b > f, "%s bf16 peak %g not above fp32 %g",
                vk_isa_name((vk_isa)isa), b, f);
#endif
        double a = vk_peak_gflops((vk_isa)isa, VK_PREC_AUTO, 1, NULL, how, sizeof(how));
        T_CHECK(ok_figure(a) && strstr(how, "vdpbf16ps"), "auto at %s: '%s'",
                vk_isa_name((vk_isa)isa), how);
    }
    T_DONE();
}
