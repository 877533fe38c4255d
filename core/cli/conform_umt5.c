/* Conformance of the umT5 encoder (umt5_tiny and any folder of that layout):
 * loads weights.safetensors through the path real checkpoints take
 * (canonicalize + load), runs every case of config.json's call.cases on its
 * stored ids/mask and compares the final hidden states: the first n_real
 * rows (what the Wan pipeline keeps) and all rows; the relative-position
 * buckets exactly; with --verbose the inter/ tensors of the first case.
 * Sizes come from the tensor shapes; n_real from the stored mask. */
#include <math.h>
#include <stdio.h>

#include "conform.h"
#include "text/text.h"

typedef struct tap_ctx {
    conform_ctx *c;
    const char *case_name;
} tap_ctx;

static void on_tap(void *user, const char *name, const float *data, size_t n)
{
    tap_ctx *t = user;
    char full[128];
    snprintf(full, sizeof(full), "%s/%s", t->case_name, name);
    if (t->c->verbose && vd_ckpt_find(t->c->io, full))
        conform_check(t->c, full, data, n, 0, 0);
}

/* got[:rows] against ref[:rows] (row-major, `cols` wide). */
static void check_rows(conform_ctx *c, const char *name, const float *got, int64_t rows,
                       int64_t cols)
{
    const vt_tensor *t = vd_ckpt_find(c->io, name);
    float *ref = t ? vd_tensor_f32(t) : NULL;
    char label[200];
    snprintf(label, sizeof(label), "%s[:, :%lld]", name, (long long)rows);
    if (!ref || vt_nelem(t) < rows * cols) {
        conform_fail(c, label, "reference missing or too small");
        vd_free(ref);
        return;
    }
    conform_check_values(c, label, got, ref, (size_t)(rows * cols), 0, 0);
    vd_free(ref);
}

static void check_field(conform_ctx *c, const vj_val *ctor, const char *key, int64_t got)
{
    const vj_val *v = vj_get(ctor, key);
    if (v && (v->type == VJ_NUM || v->type == VJ_BOOL) && vj_int(v, v->num != 0) != got) {
        char m[160];
        snprintf(m, sizeof(m), "config.json says %lld, the weights give %lld",
                 (long long)vj_int(v, v->num != 0), (long long)got);
        conform_fail(c, key, m);
    }
}

int conform_umt5(conform_ctx *c)
{
    vd_log *lg = &c->log;
    if (!c->weights)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no weights.safetensors", c->dir);
    vd_t5 *t = NULL;
    vk_ctx *kc = NULL;
    int ret;
    if ((ret = vd_t5_canonicalize(c->weights, lg)) || (ret = vd_t5_load(c->weights, lg, &t)))
        return ret;
    const vd_t5_config *cfg = vd_t5_get_config(t);
    const vj_val *ctor = vj_get(c->cfg, "constructor");
    check_field(c, ctor, "vocab", cfg->vocab);
    check_field(c, ctor, "dim", cfg->dim);
    check_field(c, ctor, "dim_attn", cfg->dim_attn);
    check_field(c, ctor, "dim_ffn", cfg->dim_ffn);
    check_field(c, ctor, "num_heads", cfg->n_heads);
    check_field(c, ctor, "num_layers", cfg->n_layers);
    check_field(c, ctor, "num_buckets", cfg->n_buckets);
    if (vj_get(ctor, "shared_pos"))
        check_field(c, ctor, "shared_pos", cfg->shared_pos);
    /* on a device: the layers there at the folder's precision */
    if ((ret = conform_kc(c, &kc)) ||
        (kc->cuda && (ret = vd_t5_upload(t, kc->cuda, c->prec, NULL, NULL, lg)))) {
        vd_t5_free(&t);
        vk_ctx_free(&kc);
        return ret;
    }

    const vj_val *cases = vj_get(vj_get(c->cfg, "call"), "cases");
    for (size_t ci = 0; cases && cases->type == VJ_ARR && ci < cases->len; ci++) {
        const char *name = vj_str(vj_get(&cases->kids[ci], "name"), NULL);
        if (!name)
            continue;
        char nm[128];
        snprintf(nm, sizeof(nm), "%s/ids", name);
        const vt_tensor *it = vd_ckpt_find(c->io, nm);
        snprintf(nm, sizeof(nm), "%s/mask", name);
        const vt_tensor *mt = vd_ckpt_find(c->io, nm);
        if (!it || !mt || it->dtype != VT_I64 || mt->dtype != VT_I64 ||
            vt_nelem(it) != vt_nelem(mt) || vt_nelem(it) < 1) {
            conform_fail(c, name, "ids/mask missing, not int64 or of different sizes");
            continue;
        }
        int64_t L = vt_nelem(it), n_real = 0;
        int32_t *ids = malloc((size_t)L * sizeof(int32_t));
        float *out = vd_malloc((size_t)(L * cfg->dim) * sizeof(float));
        int mask_ok = 1;
        for (int64_t i = 0; ids && i < L; i++) {
            int64_t id, m;
            memcpy(&id, (const char *)it->data + 8 * i, 8);
            memcpy(&m, (const char *)mt->data + 8 * i, 8);
            ids[i] = (int32_t)VD_MAX(VD_MIN(id, INT32_MAX), -1);
            if (m && n_real != i)
                mask_ok = 0; /* the pipeline's masks are a prefix of ones */
            n_real += m != 0;
        }
        int64_t want = vj_int(vj_get(&cases->kids[ci], "n_real"), n_real);
        if (!ids || !out) {
            conform_fail(c, name, "out of memory");
        } else if (!mask_ok || n_real < 1 || want != n_real) {
            conform_fail(c, name, "mask is not a prefix of ones matching n_real");
        } else {
            tap_ctx tc = { c, name };
            double t0 = vd_time();
            int rc = vd_t5_encode_tap(t, kc, ids, L, n_real, out, on_tap, &tc);
            if (rc) {
                conform_fail(c, name, lg->msg);
            } else {
                if (c->verbose)
                    printf("# %s: %lld tokens (%lld real) in %.3f s\n", name, (long long)L,
                           (long long)n_real, vd_time() - t0);
                snprintf(nm, sizeof(nm), "%s/out", name);
                check_rows(c, nm, out, n_real, cfg->dim);
                conform_check(c, nm, out, (size_t)(L * cfg->dim), 0, 0);
            }
        }
        free(ids);
        vd_free(out);
    }

    /* buckets for d = j - (n-1)/2 */
    const vt_tensor *bt = vd_ckpt_find(c->io, "rel_pos_bucket");
    if (bt) {
        int64_t n = vt_nelem(bt), half = (n - 1) / 2;
        int64_t *b = malloc((size_t)n * sizeof(int64_t));
        if (b) {
            for (int64_t j = 0; j < n; j++)
                b[j] = vd_t5_bucket(j - half, cfg->n_buckets, 128);
            conform_check_i64(c, "rel_pos_bucket", b, (size_t)n);
            free(b);
        }
    }
    vd_t5_free(&t); /* before kc: its device weights live in kc's device context */
    vk_ctx_free(&kc);
    return 0;
}
