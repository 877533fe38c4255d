/* A tiny safetensors writer for tests: builds the header text from a list
 * of tensors (or takes a raw header), so tests can make good files and every
 * kind of broken one. */
#ifndef VDIT_TEST_ST_WRITER_H
#define VDIT_TEST_ST_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_tensor {
    const char *name;
    const char *dtype;     /* "F32", ... */
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} st_tensor;

/* Writes header length, `header` (padded with spaces to 8 bytes) and
 * `data_len` bytes of data. Returns 0 on success. */
static inline int st_write_raw(const char *path, const char *header, const void *data,
                               size_t data_len)
{
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8;
    uint64_t n = hl + pad;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(n >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    if (data_len)
        fwrite(data, 1, data_len, f);
    return fclose(f);
}

/* Header for tensors laid out back to back. Returns a malloc'd string and
 * the total data size in *data_len; the data itself is concatenated into
 * *data (malloc'd). */
static inline char *st_header(const st_tensor *t, int n, uint8_t **data, size_t *data_len)
{
    size_t cap = 256 + (size_t)n * 256, o = 0, off = 0, total = 0;
    for (int i = 0; i < n; i++)
        total += t[i].nbytes;
    char *h = malloc(cap);
    uint8_t *d = malloc(total ? total : 1);
    o += (size_t)snprintf(h + o, cap - o, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(h + o, cap - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                              t[i].dtype);
        for (int k = 0; k < t[i].ndim; k++)
            o += (size_t)snprintf(h + o, cap - o, "%s%lld", k ? "," : "", (long long)t[i].shape[k]);
        o += (size_t)snprintf(h + o, cap - o, "],\"data_offsets\":[%zu,%zu]}", off,
                              off + t[i].nbytes);
        if (t[i].nbytes)
            memcpy(d + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    snprintf(h + o, cap - o, "}");
    *data = d;
    *data_len = total;
    return h;
}

static inline int st_write(const char *path, const st_tensor *t, int n)
{
    uint8_t *d;
    size_t dl;
    char *h = st_header(t, n, &d, &dl);
    int r = st_write_raw(path, h, d, dl);
    free(h);
    free(d);
    return r;
}

#endif
