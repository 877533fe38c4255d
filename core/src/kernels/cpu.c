/* What the CPU can run, read once with CPUID, and the VDIT_CPU override. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "impl.h"

static const char *const isa_names[VK_ISA_COUNT] = { "c", "avx2", "avx512", "avx512_bf16" };

const char *vk_isa_name(vk_isa isa)
{
    return isa >= 0 && isa < VK_ISA_COUNT ? isa_names[isa] : "?";
}

int vk_isa_parse(const char *name, vk_isa *isa)
{
    for (int i = 0; name && i < VK_ISA_COUNT; i++)
        if (!strcmp(name, isa_names[i])) {
            *isa = (vk_isa)i;
            return 0;
        }
    return -1;
}

const char *vk_prec_name(vk_prec p)
{
    return p == VK_PREC_F32 ? "fp32" : p == VK_PREC_BF16 ? "bf16" : "auto";
}

int vk_isa_native_bf16(vk_isa isa)
{
    return isa >= VK_ISA_AVX512_BF16;
}

#if defined(__x86_64__) || defined(__i386__)
/* The OS saves the registers a level uses (XCR0): ymm for AVX2, opmask and
 * zmm for AVX-512. Read with the xgetbv opcode so no -mxsave is needed. */
static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static vk_isa detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return VK_ISA_C;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return VK_ISA_C;
    uint64_t x = xcr0();
    if ((x & 6) != 6) /* xmm and ymm state */
        return VK_ISA_C;
    unsigned max = __get_cpuid_max(0, NULL);
    if (max < 7)
        return VK_ISA_C;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    if (!(avx2 && fma && f16c))
        return VK_ISA_C;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (!(f && dq && bw && vl) || (x & 0xe6) != 0xe6) /* opmask, zmm hi256, hi16 zmm */
        return VK_ISA_AVX2;
    __cpuid_count(7, 1, a, b, c, d);
    if ((a >> 5) & 1) /* AVX512_BF16 */
        return VK_ISA_AVX512_BF16;
    return VK_ISA_AVX512;
}
#else
static vk_isa detect(void)
{
    return VK_ISA_C;
}
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static vk_isa cpu_isa, default_isa;
static const char *env_rejected; /* VDIT_CPU's value when it names no level */

static void init(void)
{
    cpu_isa = detect();
#if !VK_HAVE_X86
    cpu_isa = VK_ISA_C; /* no x86 kernels were built (another architecture) */
#endif
    default_isa = cpu_isa;
    const char *e = getenv("VDIT_CPU");
    vk_isa want;
    if (e && *e && vk_isa_parse(e, &want))
        env_rejected = e;
    else if (e && *e && want < default_isa)
        default_isa = want;
}

vk_isa vk_isa_cpu(void)
{
    pthread_once(&once, init);
    return cpu_isa;
}

vk_isa vk_isa_default(void)
{
    pthread_once(&once, init);
    return default_isa;
}

const char *vk_isa_env_rejected(void)
{
    pthread_once(&once, init);
    return env_rejected;
}
