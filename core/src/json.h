/* A small, strict JSON reader (RFC 8259) for checkpoint headers, index files,
 * config.json and tokenizer.json. Untrusted input: bounded nesting depth,
 * every length checked, never reads past `len`. */
#ifndef VDIT_JSON_H
#define VDIT_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum vj_type { VJ_NULL = 0, VJ_BOOL, VJ_NUM, VJ_STR, VJ_ARR, VJ_OBJ } vj_type;

typedef struct vj_val {
    vj_type type;
    int is_int;          /* number written without fraction/exponent and fits int64 */
    int64_t i;           /* its value when is_int */
    double num;          /* numeric value (VJ_NUM), 0/1 for VJ_BOOL */
    char *str;           /* VJ_STR: decoded UTF-8, NUL-terminated (may hold NULs: see len) */
    size_t len;          /* VJ_STR: bytes; VJ_ARR / VJ_OBJ: number of children */
    struct vj_val *kids; /* VJ_ARR / VJ_OBJ children */
    char **keys;         /* VJ_OBJ: key of each child */
    size_t *key_lens;
} vj_val;

/* Parses `len` bytes. Returns the root or NULL with a message in err.
 * The whole tree is freed by vj_free(root). Max nesting depth 128. */
vj_val *vj_parse(const char *s, size_t len, char *err, size_t errlen);

/* The error code for a vj_parse failure whose message is err: out of memory
 * is not a malformed file. */
int vj_error_code(const char *err);
void vj_free(vj_val *root);

/* Object member by key (first match), or NULL. NULL-safe on obj. */
const vj_val *vj_get(const vj_val *obj, const char *key);
/* Convenience accessors with defaults when v is NULL or of another type. */
double vj_num(const vj_val *v, double def);
int64_t vj_int(const vj_val *v, int64_t def);
const char *vj_str(const vj_val *v, const char *def);
int vj_bool(const vj_val *v, int def);

#endif
