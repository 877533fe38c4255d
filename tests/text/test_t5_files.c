/* The umT5 checkpoint layouts users have, as files (made by
 * make_umt5_ref.py from the umt5_other conformance weights): the official
 * .pth (original names, bf16), the repackaged single safetensors (HF names,
 * fp16, tied embedding copy) and the diffusers text_encoder/ folder (HF
 * names, sharded with an index). Each is opened through vd_ckpt_open,
 * canonicalised, loaded and run on the folder's 'padded' case; the rows the
 * pipeline keeps are compared with the fp32 reference output. */
#include "../t.h"
#include "ckpt.h"
#include "text/text.h"

static void run_layout(const char *dir, const char *rel, vd_ckpt *io, double tol_rel, vk_ctx *kc)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/layouts/%s", dir, rel);
    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_t5 *t = NULL;
    int rc = vd_ckpt_open(path, &lg, &ck);
    if (!rc)
        rc = vd_t5_canonicalize(ck, &lg);
    if (!rc)
        rc = vd_t5_load(ck, &lg, &t);
    T_CHECK(rc == 0, "%s: %s", rel, lg.msg);
    const vt_tensor *it = vd_ckpt_find(io, "padded/ids"), *mt = vd_ckpt_find(io, "padded/mask"),
                    *ot = vd_ckpt_find(io, "padded/out");
    T_CHECK(it && mt && ot, "io tensors");
    if (!rc && it && mt && ot) {
        int64_t L = vt_nelem(it), n_real = 0, D = vd_t5_get_config(t)->dim;
        int32_t *ids = malloc((size_t)L * 4);
        for (int64_t i = 0; i < L; i++) {
            int64_t v, m;
            memcpy(&v, (const char *)it->data + 8 * i, 8);
            memcpy(&m, (const char *)mt->data + 8 * i, 8);
            ids[i] = (int32_t)v;
            n_real += m != 0;
        }
        /* the pipeline's call: only the real ids */
        float *out = malloc((size_t)(n_real * D) * 4), *ref = vd_tensor_f32(ot);
        rc = vd_t5_encode(t, kc, ids, n_real, n_real, out);
        T_CHECK(rc == 0, "%s: encode %d", rel, rc);
        double r, m = t_maxabs(out, ref, (size_t)(n_real * D), &r);
        T_CHECK(r <= tol_rel, "%s: rel %.3g > %.3g", rel, r, tol_rel);
        printf("%-28s %lld real rows: max_abs %.3e rel %.3e\n", rel, (long long)n_real, m, r);
        free(ids);
        free(out);
        vd_free(ref);
    }
    vd_t5_free(&t);
    vd_ckpt_free(&ck);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_t5_files UMT5_OTHER_DIR\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/io.safetensors", argv[1]);
    vd_log lg = { 0 };
    vd_ckpt *io = NULL;
    T_CHECK(vd_ckpt_open(path, &lg, &io) == 0, "%s", lg.msg);
    vk_ctx *kc = vk_ctx_new(1, 0, NULL);
    if (io) {
        run_layout(argv[1], "text_encoder", io, 1e-5, kc);
        run_layout(argv[1], "umt5_fp16.safetensors", io, 5e-3, kc);
        run_layout(argv[1], "enc-bf16.pth", io, 3e-2, kc);
    }
    vk_ctx_free(&kc);
    vd_ckpt_free(&io);
    T_DONE();
}
