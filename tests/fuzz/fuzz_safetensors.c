/* libFuzzer target: the safetensors parser on arbitrary bytes. Whatever it
 * accepts must be readable: every tensor's bytes are touched. */
#include "ckpt.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vd_ckpt *c = vd_ckpt_new();
    vd_log lg = { 0 };
    if (vd_ckpt_add_safetensors_mem(c, data, size, "fuzz", &lg) == 0)
        fuzz_touch_all(c);
    vd_ckpt_free(&c);
    return 0;
}
