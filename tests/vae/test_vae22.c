/* Wan2.2-VAE (wan.modules.vae2_2.WanVAE_) unit tests: the model found from
 * the tensor names, streaming vs one-shot, the first frame as an image,
 * frame counts that are not 1 + 4k, tiled vs untiled (16-pixel grid), sizes
 * refused, key layouts (original, prefixed, diffusers), broken checkpoints
 * (missing, renamed, reshaped tensor, truncated file), a detached model, and
 * memory flat while a stream runs.
 *
 * usage: test_vae22 VAE22_TINY_DIR
 *   VAE22_TINY_DIR: tests/conformance/wan2.2/vae22_tiny (weights + io) */
#include "t.h"

#include <unistd.h>

#include "vae_checks.h"





/* The stored reference: encode io video, decode io z. */
static void test_reference(const vd_vae *v, vk_ctx *kc, const vd_ckpt *io)
{
    const vt_tensor *tv = vd_ckpt_find(io, "video"), *tz = vd_ckpt_find(io, "z");
    const vt_tensor *tm = vd_ckpt_find(io, "mu"), *td = vd_ckpt_find(io, "decoded");
    T_CHECK(tv && tz && tm && td, "io tensors");
    if (!tv || !tz || !tm || !td)
        return;
    float *video = vd_tensor_f32(tv), *z = vd_tensor_f32(tz), *mu_ref = vd_tensor_f32(tm);
    float *dec_ref = vd_tensor_f32(td);
    int t = (int)tv->shape[2], h = (int)tv->shape[3], w = (int)tv->shape[4];
    int tl = (int)tz->shape[2], hl = (int)tz->shape[3], wl = (int)tz->shape[4];
    float *mu = alloc_f((size_t)vt_nelem(tm)), *dec = alloc_f((size_t)vt_nelem(td));
    T_CHECK(vd_vae_encode(v, kc, video, t, h, w, mu, NULL) == 0, "encode: %s", lg.msg);
    double rel, d = t_maxabs(mu, mu_ref, (size_t)vt_nelem(tm), &rel);
    T_CHECK(d <= 1e-4 && rel <= 3e-5, "mu vs reference max_abs %.3g rel %.3g", d, rel);
    T_CHECK(vd_vae_decode_ex(v, kc, z, tl, hl, wl, 0, 1, dec) == 0, "decode: %s", lg.msg);
    d = t_maxabs(dec, dec_ref, (size_t)vt_nelem(td), &rel);
    T_CHECK(d <= 1e-4 && rel <= 3e-5, "decoded vs reference max_abs %.3g rel %.3g", d, rel);
    vd_free(video);
    vd_free(z);
    vd_free(mu_ref);
    vd_free(dec_ref);
    vd_free(mu);
    vd_free(dec);
}



/* Tiled vs untiled on a 64x96 smooth video (32 px tiles on the 16 px grid). */
static void test_tiles(const vd_vae *v, vk_ctx *kc)
{
    int t = 5, h = 64, w = 96, z = vd_vae_get_config(v)->z_dim, sf = 16, tl = 2;
    size_t ps = (size_t)h * w, ls = ps / (sf * sf);
    float *video = alloc_f(3 * t * ps);
    smooth_video(video, t, h, w, 77);
    size_t n = (size_t)z * tl * ls, nv = 3 * (size_t)t * ps;
    float *a = alloc_f(n), *b = alloc_f(n), *da = alloc_f(nv), *db = alloc_f(nv);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 0, 0, a, NULL) == 0, "untiled encode");
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 32, 0, b, NULL) == 0, "tiled encode");
    double rel, d = t_maxabs(b, a, n, &rel);
    printf("tiles: encode 64x96, 32 px tiles: max_abs %.3g rel %.3g\n", d, rel);
    /* random weights make the network non-local (the middle attention is
     * global per frame): tiles approximate; exact properties below */
    T_CHECK(d == d && rel < 1.0, "tiled encode: max_abs %.3g rel %.3g", d, rel);
    /* a tile edge off the 16 px grid is rounded down to it: 40 -> 32 */
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 40, 0, a, NULL) == 0, "tile 40 encode");
    d = t_maxabs(b, a, n, NULL);
    T_CHECK(d == 0, "tile 40 vs tile 32 max_abs %.3g", d);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 0, 0, a, NULL) == 0, "untiled encode");
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / sf, w / sf, 0, 0, da) == 0, "untiled decode");
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / sf, w / sf, 32, 0, db) == 0, "tiled decode");
    d = t_maxabs(db, da, nv, &rel);
    printf("tiles: decode 64x96, 32 px tiles: max_abs %.3g rel %.3g\n", d, rel);
    T_CHECK(d == d && d <= 2.0, "tiled decode: max_abs %.3g rel %.3g", d, rel);
    int ok = 1;
    for (size_t i = 0; i < nv; i++)
        ok &= db[i] >= -1 && db[i] <= 1;
    T_CHECK(ok, "tiled decode in [-1, 1]");
    /* tiles as large as the frame: exactly the untiled result */
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / sf, w / sf, 96, 0, db) == 0, "one-tile decode");
    d = t_maxabs(db, da, nv, NULL);
    T_CHECK(d == 0, "one tile vs untiled decode max_abs %.3g", d);
    T_CHECK(vd_vae_encode_ex(v, kc, video, t, h, w, 128, 0, b, NULL) == 0, "one-tile encode");
    d = t_maxabs(b, a, n, NULL);
    T_CHECK(d == 0, "one tile vs untiled encode max_abs %.3g", d);
    /* tiled streams equal the tiled one-shot calls (same tiles, same blend) */
    test_stream_vs_oneshot(v, kc, video, t, h, w, 32);
    /* raw 2: the decoder output before unpatchify, unpatchified here */
    float *r2 = alloc_f(nv), *r1 = alloc_f(nv);
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / sf, w / sf, 0, 2, r2) == 0, "raw 2 decode");
    T_CHECK(vd_vae_decode_ex(v, kc, a, tl, h / sf, w / sf, 0, 1, r1) == 0, "raw 1 decode");
    int hh = h / 2, hw = w / 2;
    double m = 0;
    for (int c = 0; c < 3; c++)
        for (int f = 0; f < t; f++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int q = y & 1, r = x & 1, ch = c * 4 + r * 2 + q;
                    float g = r2[(((size_t)ch * t + f) * hh + y / 2) * hw + x / 2];
                    float e = r1[(((size_t)c * t + f) * h + y) * w + x];
                    m = fmax(m, fabs((double)g - e));
                }
    T_CHECK(m == 0, "raw 2 unpatchified vs raw 1 max_abs %.3g", m);
    vd_free(r1);
    vd_free(r2);
    vd_free(video);
    vd_free(a);
    vd_free(b);
    vd_free(da);
    vd_free(db);
}

/* Sizes and arguments refused with a message. */
static void test_refused(const vd_vae *v, vk_ctx *kc)
{
    vd_vae_stream *s = NULL;
    float *buf = alloc_f(3 * 9 * 48 * 48);
    lg.msg[0] = 0;
    T_CHECK(vd_vae_enc_stream_new(v, kc, 24, 48, 0, &s) < 0 && !s, "H 24 not a multiple of 16");
    T_CHECK(strstr(lg.msg, "24") && strstr(lg.msg, "16"), "message: %s", lg.msg);
    T_CHECK(vd_vae_enc_stream_new(v, kc, 32, 40, 0, &s) < 0 && !s, "W 40 not a multiple of 16");
    T_CHECK(vd_vae_encode(v, kc, buf, 1, 32, 8, buf, NULL) < 0, "W 8 encode");
    T_CHECK(vd_vae_enc_stream_new(v, kc, 0, 48, 0, &s) < 0 && !s, "H 0");
    T_CHECK(vd_vae_dec_stream_new(v, kc, 0, 3, 0, &s) < 0 && !s, "latent H 0");
    T_CHECK(vd_vae_dec_stream_new(v, kc, 2, -3, 0, &s) < 0 && !s, "latent W -3");
    T_CHECK(vd_vae_enc_stream_new(v, kc, 32, 48, -1, &s) < 0 && !s, "negative tile");
    T_CHECK(vd_vae_encode(v, kc, buf, 0, 32, 48, buf, NULL) < 0, "0 frames");
    T_CHECK(vd_vae_decode_ex(v, kc, buf, 1, 2, 3, 0, 3, buf) < 0, "decoder raw 3");
    /* odd latent sizes decode (the decoder has no alignment) */
    T_CHECK(vd_vae_decode(v, kc, buf, 1, 1, 3, buf + 48 * 3) == 0, "1x3 latent decode: %s",
            lg.msg);
    vd_free(buf);
}

/* original name -> diffusers AutoencoderKLWan (is_residual) name: an
 * independent statement of convert_wan_to_diffusers.py's convert_vae_22. */
static void to_diffusers22(const char *n, char *o, size_t os)
{
    static const char *res_from[] = { "residual.0.gamma", "residual.2.", "residual.3.gamma",
                                      "residual.6.", "shortcut." };
    static const char *res_to[] = { "norm1.gamma", "conv1.", "norm2.gamma", "conv2.",
                                    "conv_shortcut." };
    int a, b;
    char rest[128], head[120];
    const char *side = n[0] == 'e' ? "encoder" : "decoder";
    int enc = n[0] == 'e';
    if (sscanf(n, enc ? "encoder.downsamples.%d.downsamples.%d.%127s"
                      : "decoder.upsamples.%d.upsamples.%d.%127s",
               &a, &b, rest) == 3) {
        if (!strncmp(rest, "resample.", 9) || !strncmp(rest, "time_conv.", 10)) {
            snprintf(o, os, "%s.%s.%d.%s.%s", side, enc ? "down_blocks" : "up_blocks", a,
                     enc ? "downsampler" : "upsampler", rest);
            return;
        }
        snprintf(head, sizeof(head), "%s.%s.%d.resnets.%d.", side,
                 enc ? "down_blocks" : "up_blocks", a, b);
    } else if (sscanf(n, enc ? "encoder.middle.%d.%127s" : "decoder.middle.%d.%127s", &a, rest) ==
               2) {
        if (a == 1)
            snprintf(head, sizeof(head), "%s.mid_block.attentions.0.", side);
        else
            snprintf(head, sizeof(head), "%s.mid_block.resnets.%d.", side, a / 2);
    } else {
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
        return;
    }
    for (size_t i = 0; i < 5; i++)
        if (!strncmp(rest, res_from[i], strlen(res_from[i]))) {
            snprintf(o, os, "%s%s%s", head, res_to[i], rest + strlen(res_from[i]));
            return;
        }
    snprintf(o, os, "%s%s", head, rest);
}


/* Decodes a fixed latent (for comparing layouts). */
enum { PROBE_N = 3 * 5 * 32 * 48 };
static float *decode_probe(const vd_vae *v, vk_ctx *kc)
{
    int z = vd_vae_get_config(v)->z_dim;
    size_t n = (size_t)z * 2 * 2 * 3;
    float *lat = alloc_f(n), *out = alloc_f(PROBE_N);
    t_rng r = { 5 };
    t_fill(&r, lat, n, 1.5f);
    if (vd_vae_decode(v, kc, lat, 2, 2, 3, out)) {
        vd_free(out);
        out = NULL;
    }
    vd_free(lat);
    return out;
}

static void test_layouts(const vd_ckpt *ck, vk_ctx *kc, const float *ref)
{
    const char *prefixes[] = { "vae.", "first_stage_model." };
    for (int k = 0; k < 3; k++) {
        vd_ckpt *c = copy_ckpt(ck, k < 2 ? prefixes[k] : NULL, k == 2 ? to_diffusers22 : NULL,
                               NULL, NULL, NULL);
        vd_vae *v = NULL;
        T_CHECK(k < 2 || (c && vd_ckpt_find(c, "decoder.up_blocks.0.upsampler.time_conv.weight") &&
                          vd_ckpt_find(c, "encoder.down_blocks.1.resnets.0.conv_shortcut.bias")),
                "diffusers copy has the diffusers names");
        int r = c ? vd_vae_canonicalize(c, &lg) : -1;
        T_CHECK(r == 0, "layout %d canonicalize: %s", k, lg.msg);
        r = r ? r : vd_vae_load(c, &lg, &v);
        T_CHECK(r == 0, "layout %d load: %s", k, lg.msg);
        if (!r) {
            T_CHECK(vd_vae_get_config(v)->version == 22, "layout %d: not seen as Wan2.2", k);
            float *out = decode_probe(v, kc);
            double d = out ? t_maxabs(out, ref, PROBE_N, NULL) : 1e9;
            T_CHECK(d == 0, "layout %d decodes differently: %.3g", k, d);
            vd_free(out);
        }
        vd_vae_free(&v);
        vd_ckpt_free(&c);
    }
    /* broken: missing, renamed, reshaped; errors name the tensor (and file) */
    static const struct {
        const char *name, *rename_to;
        int reshape;
    } cases[] = {
        { "decoder.upsamples.1.upsamples.2.residual.2.weight", NULL, 0 },
        { "decoder.upsamples.0.upsamples.3.resample.1.bias", NULL, 0 },
        { "encoder.conv1.weight", "encoder.conv_first.weight", 0 },
        { "encoder.downsamples.1.downsamples.0.shortcut.weight", NULL, 1 },
        { "decoder.upsamples.0.upsamples.3.time_conv.weight", NULL, 1 },
    };
    for (size_t k = 0; k < VD_ARRAY_SIZE(cases); k++) {
        vd_ckpt *c = copy_ckpt(ck, NULL, NULL, cases[k].reshape ? NULL : cases[k].name,
                               cases[k].reshape ? cases[k].name : NULL, cases[k].rename_to);
        vd_vae *v = NULL;
        lg.msg[0] = 0;
        int r = c ? vd_vae_canonicalize(c, &lg) : -1;
        r = r ? r : vd_vae_load(c, &lg, &v);
        T_CHECK(r < 0 && !v, "broken %zu loads", k);
        T_CHECK(strstr(lg.msg, cases[k].name) != NULL, "broken %zu message lacks the tensor: %s",
                k, lg.msg);
        T_CHECK(!cases[k].reshape || strstr(lg.msg, "copy.safetensors") != NULL,
                "message lacks the file: %s", lg.msg);
        vd_vae_free(&v);
        vd_ckpt_free(&c);
    }
}

/* A truncated checkpoint file is refused at open, naming the file. */
static void test_truncated(const char *path)
{
    FILE *f = fopen(path, "rb");
    T_CHECK(f != NULL, "open %s", path);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    size_t got = buf ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    char tmp[] = "/tmp/vdit_vae22_XXXXXX.safetensors";
    int fd = mkstemps(tmp, 12);
    T_CHECK(fd >= 0 && got == (size_t)len, "temporary file");
    if (fd >= 0) {
        ssize_t wr = write(fd, buf, (size_t)len / 2);
        close(fd);
        T_CHECK(wr == len / 2, "write");
        vd_ckpt *c = NULL;
        lg.msg[0] = 0;
        T_CHECK(vd_ckpt_open(tmp, &lg, &c) < 0 && !c, "truncated file opens");
        T_CHECK(strstr(lg.msg, tmp) != NULL, "message lacks the file: %s", lg.msg);
        vd_ckpt_free(&c);
        unlink(tmp);
    }
    free(buf);
}

/* A model detached from its checkpoint (every tensor in its own buffer,
 * freed when released and the rest right after: ASan sees any later use)
 * decodes bit-identically, also at a size it was not prepared for. */

static void test_detach(const vd_ckpt *ck, vk_ctx *kc, const float *ref, const float *video,
                        int t, int h, int w, const float *mu_ref)
{
    bufs b;
    vd_ckpt *c = own_copy(ck, &b);
    vd_vae *v = NULL;
    int r = c ? vd_vae_load(c, &lg, &v) : -1;
    T_CHECK(r == 0, "detach: load: %s", lg.msg);
    r = r ? r : vd_vae_detach_part(v, kc, VD_VAE_ENCODER | VD_VAE_DECODER, 64, 64, release_buf,
                                   &b);
    T_CHECK(r == 0, "detach: %s", lg.msg);
    T_CHECK(b.released > 60, "detach released %zu tensors", b.released);
    vd_ckpt_free(&c);
    for (size_t i = 0; i < b.n; i++)
        vd_free(b.p[i]);
    free(b.p);
    if (!r) {
        float *out = decode_probe(v, kc);
        double d = out ? t_maxabs(out, ref, PROBE_N, NULL) : 1e9;
        T_CHECK(d == 0, "detached model decodes differently: %.3g", d);
        vd_free(out);
        int z = vd_vae_get_config(v)->z_dim, tl = vd_vae_latent_frames(v, t);
        size_t n = (size_t)z * tl * (h / 16) * (w / 16);
        float *mu = alloc_f(n);
        T_CHECK(vd_vae_encode(v, kc, video, t, h, w, mu, NULL) == 0, "detached encode");
        d = t_maxabs(mu, mu_ref, n, NULL);
        T_CHECK(d == 0, "detached model encodes differently: %.3g", d);
        vd_free(mu);
    }
    vd_vae_free(&v);
}



int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_vae22 VAE22_TINY_DIR\n");
        return 2;
    }
    char wpath[1024], path[1024];
    snprintf(wpath, sizeof(wpath), "%s/weights.safetensors", argv[1]);
    vd_ckpt *ck = NULL, *io = NULL;
    if (vd_ckpt_open(wpath, &lg, &ck)) {
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
    T_CHECK(vd_vae_canonicalize(ck, &lg) == 0, "canonicalize: %s", lg.msg);
    T_CHECK(vd_vae_load(ck, &lg, &v) == 0, "load: %s", lg.msg);
    if (!v || !kc)
        T_DONE();
    const vd_vae_config *cf = vd_vae_get_config(v);
    T_CHECK(cf->version == 22 && cf->dim == 4 && cf->dec_dim == 6 && cf->z_dim == 48 &&
                cf->num_res_blocks == 2 && cf->dim_mult[0] == 1 && cf->dim_mult[1] == 2 &&
                cf->dim_mult[2] == 4 && cf->dim_mult[3] == 4 && cf->temporal_down[0] == 0 &&
                cf->temporal_down[1] == 1 && cf->temporal_down[2] == 1 && cf->n_levels == 4 &&
                cf->n_attn == 0 && cf->patch == 2 && cf->s_factor == 16 && cf->t_factor == 4,
            "config from shapes: v%d dim %d dec_dim %d z %d s %d t %d patch %d", cf->version,
            cf->dim, cf->dec_dim, cf->z_dim, cf->s_factor, cf->t_factor, cf->patch);
    T_CHECK(fabsf(cf->mean[0] + 0.2289f) < 1e-7f && fabsf(cf->mean[47] + 0.0667f) < 1e-7f &&
                fabsf(cf->std[39] - 1.6887f) < 1e-7f && fabsf(cf->std[47] - 0.7744f) < 1e-7f,
            "latent constants");
    test_reference(v, kc, io);
    const vt_tensor *tv = vd_ckpt_find(io, "video");
    float *video = tv ? vd_tensor_f32(tv) : NULL;
    T_CHECK(video && tv->shape[2] == 9, "io video");
    float *mu_ref = NULL;
    int h = 0, w = 0;
    if (video) {
        h = (int)tv->shape[3];
        w = (int)tv->shape[4];
        test_stream_vs_oneshot(v, kc, video, 9, h, w, 0);
        test_frame_counts(v, kc, video, h, w);
        mu_ref = alloc_f((size_t)48 * 3 * (h / 16) * (w / 16));
        T_CHECK(vd_vae_encode(v, kc, video, 9, h, w, mu_ref, NULL) == 0, "encode");
    }
    test_tiles(v, kc);
    test_refused(v, kc);
    float *ref = decode_probe(v, kc);
    T_CHECK(ref != NULL, "probe decode");
    if (ref) {
        test_layouts(ck, kc, ref);
        if (video)
            test_detach(ck, kc, ref, video, 9, h, w, mu_ref);
    }
    test_truncated(wpath);
    T_CHECK(vd_vae_detach(v, kc, NULL, NULL) == 0, "detach: %s", lg.msg);
    test_flat_memory(v, kc);
    vd_free(ref);
    vd_free(video);
    vd_free(mu_ref);
    vd_vae_free(&v);
    vk_ctx_free(&kc);
    vd_ckpt_free(&ck);
    vd_ckpt_free(&io);
    T_DONE();
}
