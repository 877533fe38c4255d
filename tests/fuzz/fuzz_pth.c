/* libFuzzer target: the PyTorch checkpoint reader (zip + restricted
 * pickle) on arbitrary bytes; accepted tensors are read entirely. */
#include "ckpt.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vd_ckpt *c = vd_ckpt_new();
    vd_log lg = { 0 };
    if (vd_ckpt_add_pth_mem(c, data, size, "fuzz", &lg) == 0)
        fuzz_touch_all(c);
    vd_ckpt_free(&c);
    return 0;
}
