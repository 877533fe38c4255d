/*
 * Checkpoints: a set of named tensors gathered from one or more files.
 *
 * Sources: safetensors files (memory-mapped, validated before any use),
 * sharded safetensors through their *.index.json, whole folders; other
 * readers (PyTorch zip checkpoints) register tensors through vd_ckpt_add().
 *
 * Every problem is reported with the file and the tensor name, never a
 * crash or an out-of-bounds read: this is the first code that sees
 * untrusted bytes.
 *
 * Names: models look tensors up by their canonical (original Wan2.1) names.
 * Other layouts (diffusers, repackaged single files with a prefix) are
 * mapped onto those names once, after opening, by vd_ckpt_rename() with a
 * table of rules that lives with each model.
 */
#ifndef VDIT_CKPT_H
#define VDIT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "tensor.h"

typedef struct vd_ckpt vd_ckpt;

/* An empty set. */
vd_ckpt *vd_ckpt_new(void);

/* Threads the set's own conversion work may use (vd_ckpt_widen_f8 at model
 * load); n_threads <= 0 means 1, the default. Results do not depend on it. */
void vd_ckpt_set_threads(vd_ckpt *c, int n_threads);

/* Opens `path`: a .safetensors file, a *.safetensors.index.json (all shards
 * it names), a PyTorch zip checkpoint (.pth/.pt/.bin, recognised by its zip
 * magic), or a folder (its index if it holds exactly one, else every
 * *.safetensors file in it, else every *.pth/.pt/.bin/.ckpt file). Returns
 * 0 or VDIT_ERR_* with lg->msg set. */
int vd_ckpt_open(const char *path, vd_log *lg, vd_ckpt **out);

enum {
    VD_CKPT_READ = 1, /* read files into memory instead of mapping them */
};
/* vd_ckpt_open with VD_CKPT_* flags. */
int vd_ckpt_open_ex(const char *path, int flags, vd_log *lg, vd_ckpt **out);

/* Whether the set's mapped files are still as they were mapped: a file
 * truncated under its mapping would kill the process (SIGBUS) when a weight
 * past its new end is read, and one rewritten in place would mix old and new
 * weights. Returns 0, or VDIT_ERR_IO naming the file and what happened.
 * Files read into memory (VD_CKPT_READ) are immune. */
int vd_ckpt_check(const vd_ckpt *c, vd_log *lg);

/* Adds one safetensors file to the set (a duplicate name is an error). On
 * failure the set keeps only what it held before (the readers below too). */
int vd_ckpt_add_safetensors(vd_ckpt *c, const char *path, vd_log *lg);

/* Parses a safetensors image held in memory (len bytes at buf, which must
 * stay valid while c lives). `label` names it in messages. Used by the file
 * reader and by the fuzzer. */
int vd_ckpt_add_safetensors_mem(vd_ckpt *c, const uint8_t *buf, size_t len, const char *label,
                                vd_log *lg);

/* Registers a tensor whose data lives elsewhere. If `owned` is non-NULL the
 * set frees it (vd_free) when freed. `file` names the source in messages.
 * The name and shape are copied. */
int vd_ckpt_add(vd_ckpt *c, const char *name, vt_dtype dtype, int ndim, const int64_t *shape,
                const void *data, void *owned, const char *file, vd_log *lg);

/* Replaces the data of tensor `name` (same shape) with `data` of type
 * `dtype`, e.g. a LoRA-merged copy; `owned` (may be NULL) is freed with the
 * set (vd_free). Pointers from earlier lookups see the new data. Errors:
 * VDIT_ERR_MISSING (no such tensor), VDIT_ERR_NOMEM (owned is then freed). */
int vd_ckpt_replace(vd_ckpt *c, const char *name, vt_dtype dtype, const void *data, void *owned,
                    vd_log *lg);

/* Drops the tensors added after the first n (readers undo a failed file
 * with it, so a failure leaves the set as it was; memory kept with
 * vd_ckpt_keep stays until the set is freed). */
void vd_ckpt_truncate(vd_ckpt *c, size_t n);

/* Keeps `mem` alive for the lifetime of the set (freed with free_fn). */
int vd_ckpt_keep(vd_ckpt *c, void *mem, void (*free_fn)(void *));

/* Maps a regular file read-only for the lifetime of the set: *data and *len
 * (NULL and 0 for an empty file). Errors name the path: VDIT_ERR_MISSING,
 * VDIT_ERR_IO or VDIT_ERR_NOMEM. */
int vd_ckpt_map_file(vd_ckpt *c, const char *path, vd_log *lg, const void **data, size_t *len);

void vd_ckpt_free(vd_ckpt **c);
/* The caller no longer reads the tensor whose data is `data` (a model that
 * keeps its own prepared copy, e.g. vd_vae_detach's release): the whole
 * pages of it that lie in one of the set's file mappings go back to the
 * system now (madvise), so the weights are not held twice before the set
 * is freed. The set stays valid (dropped pages are read again from the
 * file if touched); copies it owns stay until it is freed. Returns the
 * bytes handed back (0: none, e.g. a tensor held in memory or under a page). */
size_t vd_ckpt_release(const vd_ckpt *c, const void *data);

size_t vd_ckpt_count(const vd_ckpt *c);
const vt_tensor *vd_ckpt_at(const vd_ckpt *c, size_t i);
/* The file a tensor came from (for messages). */
const char *vd_ckpt_file(const vd_ckpt *c, const vt_tensor *t);
/* A label for the whole set (the path given to open). */
const char *vd_ckpt_label(const vd_ckpt *c);

/* Lookup by exact name, or NULL. */
const vt_tensor *vd_ckpt_find(const vd_ckpt *c, const char *name);

/* Lookup with checks: the tensor must exist, have `ndim` dimensions and
 * match `shape` where shape[i] >= 0 (shape may be NULL). F32/F16/BF16/F64
 * only. Errors name the checkpoint and the tensor:
 *   "model.safetensors: tensor 'blocks.3.ffn.0.weight' has shape [8960, 1536], expected [8960, 2048]" */
int vd_ckpt_get(const vd_ckpt *c, vd_log *lg, const char *name, int ndim, const int64_t *shape,
                const vt_tensor **out);
/* The same, also accepting fp8 (for weights a loader widens itself with
 * vd_ckpt_f8_to_bf16). */
int vd_ckpt_get_f8(const vd_ckpt *c, vd_log *lg, const char *name, int ndim, const int64_t *shape,
                   const vt_tensor **out);

/* printf-style name, shape given as up to 4 trailing dims (-1 = any, unused
 * trailing ones ignored beyond ndim). */
int vd_ckpt_getf(const vd_ckpt *c, vd_log *lg, const vt_tensor **out, int ndim, int64_t d0,
                 int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));

/* Renaming. A rule maps names matching `from` onto `to`. In patterns, '#'
 * matches a decimal number (captured in order) and '*' matches any run of
 * characters (captured); in `to`, '#' and '*' emit the captures in order.
 * Each name is rewritten by the first matching rule; names no rule matches
 * are kept. Two tensors renamed onto one name is an error. */
typedef struct vd_keyrule {
    const char *from;
    const char *to;
} vd_keyrule;

int vd_ckpt_rename(vd_ckpt *c, const vd_keyrule *rules, size_t n_rules, vd_log *lg);

/* Removes `prefix` from every name that starts with it. */
int vd_ckpt_strip_prefix(vd_ckpt *c, const char *prefix, vd_log *lg);

/* Removes the name components segs[] (each ending in '.', e.g.
 * "_fsdp_wrapped_module.") wherever they stand in a name: at its start or
 * after a '.'. *dropped (may be NULL): 1 if any name held one. */
int vd_ckpt_drop_segments(vd_ckpt *c, const char *const *segs, size_t n_segs, vd_log *lg,
                          int *dropped);

/* Number of names starting with prefix. */
size_t vd_ckpt_count_prefix(const vd_ckpt *c, const char *prefix);

/* A freshly allocated fp32 copy of a float tensor (vd_free it), or NULL. */
float *vd_tensor_f32(const vt_tensor *t);

/* Whether vd_tensor_f32 converts t's type: when it returns NULL for such a
 * tensor, memory ran out. */
int vd_tensor_is_float(const vt_tensor *t);

/* A weight `name` stored as fp8 (*w: F8_E4M3 or F8_E5M2, as in the
 * "fp8_e4m3fn" and "fp8_scaled" repackagings) times its companion scale
 * ("<module>.scale_weight" or "<name>_scale": one value or one per row of
 * dim 0; absent = 1), widened once into a BF16 buffer of *w's shape kept in
 * `owned`; *w is then replaced by tmp, which describes it. Each product is
 * rounded to 8 mantissa bits, the precision of the bf16 releases. Other
 * types pass through unchanged. Errors name the scale tensor. */
int vd_ckpt_widen_f8(const vd_ckpt *ck, vd_log *lg, const char *name, vd_owned *owned,
                     const vt_tensor **w, vt_tensor *tmp);

/* Pattern match used by rename (exposed for tests). Returns 1 on match and
 * writes the rewritten name into out (outsz bytes). */
int vd_key_rewrite(const char *name, const char *from, const char *to, char *out, size_t outsz);

/* PyTorch checkpoints (.pth/.pt zip archives as torch.save writes them),
 * read with a restricted unpickler that only rebuilds tensors (no code is
 * ever executed; any other object is rejected with an error naming it).
 * Stored tensors are used in place when contiguous. Implemented in pth.c. */
int vd_ckpt_add_pth(vd_ckpt *c, const char *path, vd_log *lg);
/* The same for an image held in memory (len bytes at buf, which must stay
 * valid while c lives); `label` names it in messages. For the fuzzer. */
int vd_ckpt_add_pth_mem(vd_ckpt *c, const uint8_t *buf, size_t len, const char *label, vd_log *lg);

#endif
