/* libFuzzer target: the option strings users type. vdit_lora_parse (the
 * --lora / lora= list: "FILE[:SCALE]|...") on the input as a string, into
 * buffers of a few sizes: it either fills entries that point into the
 * buffer, each path non-empty and each scale finite, or refuses; it never
 * reads or writes past what it was given. */
#include <math.h>

#include "fuzz.h"
#include "vdit/vdit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    if (!spec)
        return 0;
    memcpy(spec, data, size);
    spec[size] = 0;
    size_t len = strlen(spec);
    static const int maxes[] = { 1, 3, 64 };
    for (int k = 0; k < 3; k++) {
        /* exact-size heap buffers so that an overrun is caught */
        size_t bs = k == 0 ? len : len + 1;
        char *buf = malloc(bs ? bs : 1);
        vdit_lora *out = malloc(sizeof(*out) * (size_t)maxes[k]);
        if (buf && out) {
            int n = vdit_lora_parse(spec, out, maxes[k], buf, bs);
            if (n > maxes[k])
                abort();
            for (int i = 0; i < n; i++) {
                if (out[i].path < buf || out[i].path >= buf + bs || !out[i].path[0] ||
                    !isfinite(out[i].scale))
                    abort();
                fuzz_sink += (size_t)out[i].path[0] + (out[i].scale != 0);
            }
            if (len == 0 && n != 0)
                abort();
        }
        free(buf);
        free(out);
    }
    free(spec);
    return 0;
}
