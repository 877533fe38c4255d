/* Element types and conversions. Weights keep their stored type; activations
 * are fp32. */
#ifndef VDIT_TENSOR_H
#define VDIT_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum vt_dtype {
    VT_F32 = 0,
    VT_F16,
    VT_BF16,
    VT_F64,
    VT_I64,
    VT_I32,
    VT_I16,
    VT_I8,
    VT_U8,
    VT_BOOL,
    VT_F8_E4M3,
    VT_F8_E5M2,
    VT_COUNT
} vt_dtype;

/* Bytes per element, name as safetensors spells it ("F32", "BF16"...). */
size_t vt_dtype_size(vt_dtype t);
const char *vt_dtype_name(vt_dtype t);
/* Returns -1 if unknown. */
int vt_dtype_from_name(const char *name);

#define VT_MAX_DIMS 8

/* A view of stored data: type, shape (outermost first, as PyTorch), data.
 * Always contiguous row-major (safetensors has no strides). */
typedef struct vt_tensor {
    vt_dtype dtype;
    int ndim;
    int64_t shape[VT_MAX_DIMS];
    const void *data;
    const char *name; /* name as found in the file */
} vt_tensor;

static inline int64_t vt_nelem(const vt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static inline float vt_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t vt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float vt_f16_to_f32(uint16_t h);
/* fp8 as torch's float8_e4m3fn (no infinities, NaN 0x7f/0xff) and float8_e5m2. */
float vt_f8e4m3_to_f32(uint8_t b);
float vt_f8e5m2_to_f32(uint8_t b);
uint16_t vt_f32_to_f16(float f);

/* Converts n elements of type src_t to fp32 (F32, F16, BF16, F64 supported;
 * returns -1 for other types). */
int vt_to_f32(float *dst, const void *src, vt_dtype src_t, size_t n);

#endif
