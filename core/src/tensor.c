#include "tensor.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[VT_COUNT] = {
    [VT_F32] = { "F32", 4 },     [VT_F16] = { "F16", 2 },   [VT_BF16] = { "BF16", 2 },
    [VT_F64] = { "F64", 8 },     [VT_I64] = { "I64", 8 },   [VT_I32] = { "I32", 4 },
    [VT_I16] = { "I16", 2 },     [VT_I8] = { "I8", 1 },     [VT_U8] = { "U8", 1 },
    [VT_BOOL] = { "BOOL", 1 },   [VT_F8_E4M3] = { "F8_E4M3", 1 },
    [VT_F8_E5M2] = { "F8_E5M2", 1 },
};

size_t vt_dtype_size(vt_dtype t)
{
    return (unsigned)t < VT_COUNT ? dtypes[t].size : 0;
}

const char *vt_dtype_name(vt_dtype t)
{
    return (unsigned)t < VT_COUNT ? dtypes[t].name : "?";
}

int vt_dtype_from_name(const char *name)
{
    for (int i = 0; i < VT_COUNT; i++)
        if (!strcmp(dtypes[i].name, name))
            return i;
    return -1;
}

float vt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t vt_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00); /* NaN */
    if (a >= 0x477ff000u)                 /* rounds to >= 65536: inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal: subnormal or zero */
        float af;
        memcpy(&af, &a, 4);
        /* scale so the subnormal unit (2^-24) becomes 1, round to nearest even */
        float s = af * 16777216.0f;
        uint32_t m = (uint32_t)lrintf(s);
        return (uint16_t)(sign | m);
    }
    uint32_t e = (a >> 23) - 127 + 15;
    uint32_t man = a & 0x7fffff;
    uint32_t h = (e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float vt_f8e4m3_to_f32(uint8_t b)
{
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m / 8.0f, -6);
    else
        v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

float vt_f8e5m2_to_f32(uint8_t b)
{
    return vt_f16_to_f32((uint16_t)((uint16_t)b << 8));
}

int vt_to_f32(float *dst, const void *src, vt_dtype t, size_t n)
{
    switch (t) {
    case VT_F8_E4M3:
    case VT_F8_E5M2: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = t == VT_F8_E4M3 ? vt_f8e4m3_to_f32(s[i]) : vt_f8e5m2_to_f32(s[i]);
        return 0;
    }
    case VT_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case VT_F16: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = vt_f16_to_f32(h);
        }
        return 0;
    }
    case VT_BF16: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = vt_bf16_to_f32(h);
        }
        return 0;
    }
    case VT_F64: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    }
    default:
        return -1;
    }
}
