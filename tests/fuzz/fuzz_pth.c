/* libFuzzer target: the PyTorch checkpoint reader (zip + restricted
 * pickle) on arbitrary bytes; accepted tensors are read entirely.
 *
 * The first byte picks the mode: even, the rest is a whole archive (zip
 * structure and everything in it); odd, the rest is data.pkl alone, wrapped
 * here into a valid archive with four 64-byte storages "0".."3", so the
 * mutations go to the pickle machine. */
#include "ckpt.h"
#include "fuzz.h"

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* Stored zip of the given entries; returns its size (buffer from malloc). */
static uint8_t *wrap(const uint8_t *pkl, size_t n, size_t *out_len)
{
    static const uint8_t storage[64] = { 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 60, 0, 64 };
    const char *names[5] = { "a/data.pkl", "a/data/0", "a/data/1", "a/data/2", "a/data/3" };
    const uint8_t *data[5] = { pkl, storage, storage, storage, storage };
    size_t sizes[5] = { n, 64, 64, 64, 64 };
    size_t total = 22;
    for (int i = 0; i < 5; i++)
        total += 30 + 46 + 2 * strlen(names[i]) + sizes[i];
    uint8_t *z = calloc(1, total), *cd = calloc(1, 5 * (46 + 16));
    if (!z || !cd) {
        free(z);
        free(cd);
        return NULL;
    }
    size_t o = 0, co = 0;
    for (int i = 0; i < 5; i++) {
        size_t nl = strlen(names[i]);
        uint8_t *h = z + o, *c = cd + co;
        put32(h, 0x04034b50u);
        put16(h + 4, 20);
        put32(h + 18, (uint32_t)sizes[i]);
        put32(h + 22, (uint32_t)sizes[i]);
        put16(h + 26, (unsigned)nl);
        memcpy(h + 30, names[i], nl);
        if (sizes[i])
            memcpy(h + 30 + nl, data[i], sizes[i]);
        put32(c, 0x02014b50u);
        put16(c + 4, 20);
        put16(c + 6, 20);
        put32(c + 20, (uint32_t)sizes[i]);
        put32(c + 24, (uint32_t)sizes[i]);
        put16(c + 28, (unsigned)nl);
        put32(c + 42, (uint32_t)o);
        memcpy(c + 46, names[i], nl);
        o += 30 + nl + sizes[i];
        co += 46 + nl;
    }
    memcpy(z + o, cd, co);
    uint8_t *e = z + o + co;
    put32(e, 0x06054b50u);
    put16(e + 8, 5);
    put16(e + 10, 5);
    put32(e + 12, (uint32_t)co);
    put32(e + 16, (uint32_t)o);
    free(cd);
    *out_len = o + co + 22;
    return z;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t *img = NULL;
    size_t len = size - 1;
    const uint8_t *buf = data + 1;
    if (data[0] & 1) {
        img = wrap(data + 1, size - 1, &len);
        if (!img)
            return 0;
        buf = img;
    }
    vd_ckpt *c = vd_ckpt_new();
    vd_log lg = { 0 };
    if (vd_ckpt_add_pth_mem(c, buf, len, "fuzz", &lg) == 0)
        fuzz_touch_all(c);
    vd_ckpt_free(&c);
    free(img);
    return 0;
}
