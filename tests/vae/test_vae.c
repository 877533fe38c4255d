/* Wan-VAE unit tests: streaming vs one-shot, first frame as an image, frame
 * counts that are not 1 + 4k, tiled vs untiled, key layouts (original,
 * prefixed, diffusers, .pth), broken checkpoints, a model detached from its
 * freed checkpoint, memory in use flat while a stream runs.
 *
 * usage: test_vae VAE_TINY_DIR DATA_DIR
 *   VAE_TINY_DIR: tests/conformance/wan2.1/vae_tiny (weights + io)
 *   DATA_DIR: tests/vae/data (vae_d2.pth / vae_d2.safetensors) */
#include "t.h"

#include "vae_checks.h"






/* Tiled vs untiled on a 64x96 smooth video (tiles 32 px, 8 px overlap). */
static void test_tiles(const vd_vae *v, vk_ctx *kc)
{
    int t = 5, h = 64, w = 96, z = vd_vae_get_config(v)->z_dim;
    size_t ps = (size_t)h * w, ls = ps / 64;
    float *video = alloc_f(3 * t * ps);
    smooth_video(video, t, h, w, 77);
    int tl = 2;
    size_t n = (size_t)z * tl * ls, nv = 3 * (size_t)t * ps;
    float *a = alloc_f(n), *b = alloc_f(n), *da = alloc_f(nv), *db = alloc_f(nv);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 0, 0, a, NULL) == 0, "untiled encode");
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 32, 0, b, NULL) == 0, "tiled encode");
    double rel, d = t_maxabs(b, a, n, &rel);
    printf("tiles: encode 64x96, 32 px tiles: max_abs %.3g rel %.3g\n", d, rel);
    /* random weights make the network non-local (and the middle attention is
     * global per frame), so tiles only approximate; the figure is reported,
     * the checks below are exact properties of the tiling */
    T_CHECK(d == d && rel < 1.0, "tiled encode: max_abs %.3g rel %.3g", d, rel);
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / 8, w / 8, 0, 0, da) == 0, "untiled decode");
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / 8, w / 8, 32, 0, db) == 0, "tiled decode");
    d = t_maxabs(db, da, nv, &rel);
    printf("tiles: decode 64x96, 32 px tiles: max_abs %.3g rel %.3g\n", d, rel);
    T_CHECK(d == d && d <= 2.0, "tiled decode: max_abs %.3g rel %.3g", d, rel);
    /* tiles as large as the frame: exactly the untiled result */
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / 8, w / 8, 96, 0, db) == 0, "one-tile decode");
    d = t_maxabs(db, da, nv, NULL);
    T_CHECK(d == 0, "one tile vs untiled decode max_abs %.3g", d);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 128, 0, b, NULL) == 0, "one-tile encode");
    d = t_maxabs(b, a, n, NULL);
    T_CHECK(d == 0, "one tile vs untiled encode max_abs %.3g", d);
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / 8, w / 8, 32, 0, db) == 0, "tiled decode");
    /* tiled streams equal the tiled one-shot calls (same tiles, same blend) */
    test_stream_vs_oneshot(v, kc, video, t, h, w, 32);
    /* no NaN, weights sum to one: a constant-free check that the blend is a
     * convex combination: tiled output stays within [-1, 1] */
    int ok = 1;
    for (size_t i = 0; i < nv; i++)
        ok &= db[i] >= -1 && db[i] <= 1;
    T_CHECK(ok, "tiled decode in [-1, 1]");
    vd_free(video);
    vd_free(a);
    vd_free(b);
    vd_free(da);
    vd_free(db);
}

/* Decodes a fixed latent (for comparing layouts). */
static float *decode_probe(const vd_vae *v, vk_ctx *kc)
{
    int z = vd_vae_get_config(v)->z_dim;
    size_t n = (size_t)z * 2 * 2 * 3;
    float *lat = alloc_f(n), *out = alloc_f(3 * 5 * 16 * 24);
    t_rng r = { 5 };
    t_fill(&r, lat, n, 1.5f);
    if (vd_vae_decode(v, kc, lat, 2, 2, 3, out)) {
        vd_free(out);
        out = NULL;
    }
    vd_free(lat);
    return out;
}

/* original name -> diffusers AutoencoderKLWan name (independent statement
 * of convert_wan_to_diffusers.py's mapping for num_res_blocks 2) */
static void to_diffusers(const char *n, char *o, size_t os)
{
    int a, b;
    char rest[200];
    static const char *res_from[] = { "residual.0.gamma", "residual.2.", "residual.3.gamma",
                                      "residual.6.", "shortcut." };
    static const char *res_to[] = { "norm1.gamma", "conv1.", "norm2.gamma", "conv2.",
                                    "conv_shortcut." };
    const char *pre = NULL;
    char head[120] = "";
    if (sscanf(n, "encoder.downsamples.%d.%199s", &a, rest) == 2) {
        snprintf(head, sizeof(head), "encoder.down_blocks.%d.", a);
        pre = rest;
    } else if (sscanf(n, "decoder.upsamples.%d.%199s", &a, rest) == 2) {
        b = a % 4;
        if (b == 3)
            snprintf(head, sizeof(head), "decoder.up_blocks.%d.upsamplers.0.", a / 4);
        else
            snprintf(head, sizeof(head), "decoder.up_blocks.%d.resnets.%d.", a / 4, b);
        pre = rest;
    } else if (sscanf(n, "encoder.middle.%d.%199s", &a, rest) == 2 ||
               sscanf(n, "decoder.middle.%d.%199s", &a, rest) == 2) {
        const char *side = n[0] == 'e' ? "encoder" : "decoder";
        if (a == 1)
            snprintf(head, sizeof(head), "%s.mid_block.attentions.0.", side);
        else
            snprintf(head, sizeof(head), "%s.mid_block.resnets.%d.", side, a / 2);
        pre = rest;
    }
    if (pre) {
        for (size_t i = 0; i < 5; i++)
            if (!strncmp(pre, res_from[i], strlen(res_from[i]))) {
                snprintf(o, os, "%s%s%s", head, res_to[i], pre + strlen(res_from[i]));
                return;
            }
        snprintf(o, os, "%s%s", head, pre);
        return;
    }
    static const char *from[] = { "encoder.conv1.", "decoder.conv1.", "encoder.head.0.",
                                  "decoder.head.0.", "encoder.head.2.", "decoder.head.2.",
                                  "conv1.", "conv2." };
    static const char *to[] = { "encoder.conv_in.", "decoder.conv_in.", "encoder.norm_out.",
                                "decoder.norm_out.", "encoder.conv_out.", "decoder.conv_out.",
                                "quant_conv.", "post_quant_conv." };
    for (size_t i = 0; i < 8; i++)
        if (!strncmp(n, from[i], strlen(from[i]))) {
            snprintf(o, os, "%s%s", to[i], n + strlen(from[i]));
            return;
        }
    snprintf(o, os, "%s", n);
}


static void test_layouts(const vd_ckpt *ck, vk_ctx *kc, const float *ref)
{
    const char *prefixes[] = { "vae.", "first_stage_model." };
    for (int k = 0; k < 3; k++) {
        vd_ckpt *c = copy_ckpt(ck, k < 2 ? prefixes[k] : NULL, k == 2 ? to_diffusers : NULL, NULL,
                               NULL, NULL);
        vd_vae *v = NULL;
        int r = c ? vd_vae_canonicalize(c, &lg) : -1;
        T_CHECK(r == 0, "layout %d canonicalize: %s", k, lg.msg);
        r = r ? r : vd_vae_load(c, &lg, &v);
        T_CHECK(r == 0, "layout %d load: %s", k, lg.msg);
        if (!r) {
            float *out = decode_probe(v, kc);
            double d = out ? t_maxabs(out, ref, 3 * 5 * 16 * 24, NULL) : 1e9;
            T_CHECK(d == 0, "layout %d decodes differently: %.3g", k, d);
            vd_free(out);
        }
        vd_vae_free(&v);
        vd_ckpt_free(&c);
    }
    /* broken: a missing tensor, a wrong shape; errors name the tensor */
    const char *name = "decoder.middle.0.residual.2.weight";
    for (int k = 0; k < 2; k++) {
        vd_ckpt *c = copy_ckpt(ck, NULL, NULL, k ? NULL : name, k ? name : NULL, NULL);
        vd_vae *v = NULL;
        lg.msg[0] = 0;
        int r = vd_vae_load(c, &lg, &v);
        T_CHECK(r < 0 && !v, "broken %d loads", k);
        T_CHECK(strstr(lg.msg, name) != NULL, "broken %d message lacks the tensor: %s", k, lg.msg);
        T_CHECK(k == 0 || strstr(lg.msg, "copy.safetensors") != NULL,
                "message lacks the file: %s", lg.msg);
        vd_ckpt_free(&c);
    }
}

/* A model detached from its checkpoint (every tensor in its own buffer;
 * release frees the buffer at once and the rest goes right after
 * vd_vae_detach: ASan sees any later use) decodes bit-identically with the
 * fast kernels at a frame size it was not prepared for, the reference and
 * bf16 kernels make the forms they need for the call, and no run adds
 * anything to the model's layers. */

static void test_detach(const vd_ckpt *ck, vk_ctx *kc, const float *ref)
{
    bufs b;
    vd_ckpt *c = own_copy(ck, &b);
    vd_vae *v = NULL;
    vk_ctx *rc = vk_ctx_new(1, 1, &lg);
    int r = c && rc ? vd_vae_load(c, &lg, &v) : -1;
    T_CHECK(r == 0, "detach: load: %s", lg.msg);
    r = r ? r : vd_vae_detach(v, kc, release_buf, &b);
    T_CHECK(r == 0, "detach: %s", lg.msg);
    /* every convolution weight handed back (the upsamplers' 3x3 ones are
     * converted at load and not referenced) */
    T_CHECK(b.released > 40, "detach released %zu tensors", b.released);
    size_t bytes = vd_vae_prepared_bytes(v);
    T_CHECK(r || bytes > 0, "detach: no prepared weights counted");
    vd_ckpt_free(&c);
    for (size_t i = 0; i < b.n; i++)
        vd_free(b.p[i]);
    free(b.p);
    if (!r) {
        float *out = decode_probe(v, kc);
        double d = out ? t_maxabs(out, ref, 3 * 5 * 16 * 24, NULL) : 1e9;
        T_CHECK(d == 0, "detached model decodes differently: %.3g", d);
        vd_free(out);
        out = decode_probe(v, rc);
        d = out ? t_maxabs(out, ref, 3 * 5 * 16 * 24, NULL) : 1e9;
        T_CHECK(d <= 1e-5, "detached model, reference kernels: max_abs %.3g", d);
        vd_free(out);
        /* a precision it was not prepared for: that layout made per call */
        if (vk_isa_native_bf16(vk_isa_default())) {
            vk_ctx *bc = vk_ctx_new_ex(1, -1, VK_PREC_BF16, &lg);
            out = bc ? decode_probe(v, bc) : NULL;
            double rel = 1e9;
            d = out ? t_maxabs(out, ref, 3 * 5 * 16 * 24, &rel) : 1e9;
            T_CHECK(rel <= 6e-2, "detached model, bf16 kernels: max_abs %.3g rel %.3g", d, rel);
            vd_free(out);
            vk_ctx_free(&bc);
        }
        /* the probe's frames (16 x 24) are not the size it was prepared for
         * (512 x 512), and no run added a form to the model's layers */
        T_CHECK(vd_vae_prepared_bytes(v) == bytes, "runs changed the prepared weights: %zu -> %zu",
                bytes, vd_vae_prepared_bytes(v));
    }
    vd_vae_free(&v);
    vk_ctx_free(&rc);
}



/* The .pth fixture (F16, original names) equals its safetensors twin. */
static void test_pth(const char *data, vk_ctx *kc)
{
    char p1[1024], p2[1024];
    snprintf(p1, sizeof(p1), "%s/vae_d2.pth", data);
    snprintf(p2, sizeof(p2), "%s/vae_d2.safetensors", data);
    vd_ckpt *a = NULL, *b = NULL;
    vd_vae *va = NULL, *vb = NULL;
    T_CHECK(vd_ckpt_open(p1, &lg, &a) == 0, "open %s: %s", p1, lg.msg);
    T_CHECK(vd_ckpt_open(p2, &lg, &b) == 0, "open %s: %s", p2, lg.msg);
    if (a && b && !vd_vae_canonicalize(a, &lg) && !vd_vae_load(a, &lg, &va) &&
        !vd_vae_load(b, &lg, &vb)) {
        const vd_vae_config *cf = vd_vae_get_config(va);
        T_CHECK(cf->dim == 2 && cf->z_dim == 16 && cf->num_res_blocks == 2 &&
                    cf->dim_mult[3] == 4 && !cf->temporal_down[0] && cf->temporal_down[2] &&
                    cf->s_factor == 8 && cf->t_factor == 4,
                "pth config");
        float *oa = decode_probe(va, kc), *ob = decode_probe(vb, kc);
        T_CHECK(oa && ob && t_maxabs(oa, ob, 3 * 5 * 16 * 24, NULL) == 0, ".pth vs safetensors");
        vd_free(oa);
        vd_free(ob);
    } else {
        T_CHECK(0, "pth fixture load: %s", lg.msg);
    }
    vd_vae_free(&va);
    vd_vae_free(&vb);
    vd_ckpt_free(&a);
    vd_ckpt_free(&b);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_vae VAE_TINY_DIR DATA_DIR\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/weights.safetensors", argv[1]);
    vd_ckpt *ck = NULL, *io = NULL;
    if (vd_ckpt_open(path, &lg, &ck)) {
        fprintf(stderr, "%s\n", lg.msg);
        return 2;
    }
    snprintf(path, sizeof(path), "%s/io.safetensors", argv[1]);
    if (vd_ckpt_open(path, &lg, &io)) {
        fprintf(stderr, "%s\n", lg.msg);
        return 2;
    }
    vk_ctx *kc = vk_ctx_new(1, 0, &lg); /* 1 thread: fast on a loaded machine */
    vd_vae *v = NULL;
    T_CHECK(vd_vae_load(ck, &lg, &v) == 0, "load: %s", lg.msg);
    if (!v || !kc)
        T_DONE();
    const vd_vae_config *cf = vd_vae_get_config(v);
    T_CHECK(cf->dim == 6 && cf->z_dim == 16 && cf->num_res_blocks == 2 && cf->dim_mult[0] == 1 &&
                cf->dim_mult[1] == 2 && cf->dim_mult[2] == 4 && cf->dim_mult[3] == 4 &&
                cf->temporal_down[0] == 0 && cf->temporal_down[1] == 1 &&
                cf->temporal_down[2] == 1 && cf->n_levels == 4 && cf->n_attn == 0 &&
                cf->version == 21 && cf->patch == 1 && cf->dec_dim == 6 && cf->s_factor == 8 &&
                cf->t_factor == 4,
            "config from shapes");
    T_CHECK(fabsf(cf->mean[7] - 1.5508f) < 1e-7f && fabsf(cf->std[8] - 3.2687f) < 1e-7f,
            "latent constants");
    const vt_tensor *tv = vd_ckpt_find(io, "video");
    float *video = tv ? vd_tensor_f32(tv) : NULL;
    T_CHECK(video && tv->shape[2] == 9, "io video");
    if (video) {
        int h = (int)tv->shape[3], w = (int)tv->shape[4];
        test_stream_vs_oneshot(v, kc, video, 9, h, w, 0);
        test_frame_counts(v, kc, video, h, w);
    }
    test_tiles(v, kc);
    float *ref = decode_probe(v, kc);
    T_CHECK(ref != NULL, "probe decode");
    if (ref) {
        test_layouts(ck, kc, ref);
        test_detach(ck, kc, ref);
    }
    /* as the pipeline holds it: detached at load (a layer that is not makes
     * its layouts per call, through oneDNN's primitive cache, which grows) */
    T_CHECK(vd_vae_detach(v, kc, NULL, NULL) == 0, "detach: %s", lg.msg);
    test_flat_memory(v, kc);
    test_pth(argv[2], kc);
    /* argument checks */
    vd_vae_stream *s = NULL;
    T_CHECK(vd_vae_enc_stream_new(v, kc, 30, 48, 0, &s) < 0 && !s, "H not a multiple of 8");
    T_CHECK(vd_vae_enc_stream_new(v, kc, 32, 48, -1, &s) < 0 && !s, "negative tile");
    T_CHECK(vd_vae_encode(v, kc, video, 0, 32, 48, ref, NULL) < 0, "0 frames");
    vd_free(ref);
    vd_free(video);
    vd_vae_free(&v);
    T_CHECK(v == NULL, "free clears");
    vk_ctx_free(&kc);
    vd_ckpt_free(&ck);
    vd_ckpt_free(&io);
    T_DONE();
}
