/* libFuzzer target: the JSON reader. Accepted documents are walked and
 * their strings read to their stated lengths. */
#include "fuzz.h"
#include "json.h"

static size_t walk(const vj_val *v, int depth)
{
    size_t h = (size_t)v->type;
    if (v->type == VJ_STR)
        for (size_t i = 0; i < v->len; i++)
            h = h * 31 + (uint8_t)v->str[i];
    if (v->type == VJ_ARR || v->type == VJ_OBJ)
        for (size_t i = 0; i < v->len; i++) {
            h += walk(&v->kids[i], depth + 1);
            if (v->type == VJ_OBJ) {
                h += v->key_lens[i] + (uint8_t)v->keys[i][v->key_lens[i]];
                h += vj_get(v, v->keys[i]) != NULL;
            }
        }
    if (v->type == VJ_NUM)
        h += (size_t)vj_int(v, 0);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    /* an exact-size copy so reads past the end are caught */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    vj_val *v = vj_parse(buf, size, err, sizeof(err));
    if (v)
        fuzz_sink += walk(v, 0);
    vj_free(v);
    free(buf);
    return 0;
}
