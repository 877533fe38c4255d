/*
 * Wan-VAE loading: key layouts onto the original names, then the layer list
 * and the configuration read from tensor shapes (nothing is assumed about
 * dim, z_dim, dim_mult, num_res_blocks, attention or temporal downsampling).
 */
#include <stdio.h>

#include "vae_impl.h"
#include "../pipeline/wan/wan_consts.h"

/* ---- key layouts ---------------------------------------------------------- */

/* diffusers AutoencoderKLWan names whose mapping needs no arithmetic. The
 * encoder keeps one flat list (down_blocks.N == downsamples.N); the decoder
 * groups resnets + upsampler per level, handled in code below. */
static const vd_keyrule diffusers_rules[] = {
    { "encoder.conv_in.*", "encoder.conv1.*" },
    { "decoder.conv_in.*", "decoder.conv1.*" },
    { "encoder.norm_out.gamma", "encoder.head.0.gamma" },
    { "decoder.norm_out.gamma", "decoder.head.0.gamma" },
    { "encoder.conv_out.*", "encoder.head.2.*" },
    { "decoder.conv_out.*", "decoder.head.2.*" },
    { "quant_conv.*", "conv1.*" },
    { "post_quant_conv.*", "conv2.*" },
    { "*coder.mid_block.resnets.0.*", "*coder.middle.0.*" },
    { "*coder.mid_block.attentions.0.*", "*coder.middle.1.*" },
    { "*coder.mid_block.resnets.1.*", "*coder.middle.2.*" },
    { "encoder.down_blocks.#.norm1.gamma", "encoder.downsamples.#.residual.0.gamma" },
    { "encoder.down_blocks.#.norm2.gamma", "encoder.downsamples.#.residual.3.gamma" },
    { "encoder.down_blocks.#.conv1.*", "encoder.downsamples.#.residual.2.*" },
    { "encoder.down_blocks.#.conv2.*", "encoder.downsamples.#.residual.6.*" },
    { "encoder.down_blocks.#.conv_shortcut.*", "encoder.downsamples.#.shortcut.*" },
    { "encoder.down_blocks.*", "encoder.downsamples.*" },
};

/* Resnet-internal names, applied after the block index is resolved. */
static const vd_keyrule res_rules[] = {
    { "*.norm1.gamma", "*.residual.0.gamma" }, { "*.norm2.gamma", "*.residual.3.gamma" },
    { "*.conv1.*", "*.residual.2.*" },         { "*.conv2.*", "*.residual.6.*" },
    { "*.conv_shortcut.*", "*.shortcut.*" },
};

static int count_indices(const vd_ckpt *ck, const char *fmt, int a)
{
    char p[128];
    int n = 0;
    for (;; n++) {
        snprintf(p, sizeof(p), fmt, a, n);
        if (!vd_ckpt_count_prefix(ck, p))
            return n;
    }
}

/* decoder.up_blocks.B.{resnets.R, upsamplers.0}.X -> decoder.upsamples.N.X,
 * N counting resnets then the upsampler level by level. */
static int rename_decoder_blocks(vd_ckpt *ck, vd_log *lg)
{
    char p[128];
    int n_blocks = 0;
    for (;; n_blocks++) {
        snprintf(p, sizeof(p), "decoder.up_blocks.%d.", n_blocks);
        if (!vd_ckpt_count_prefix(ck, p))
            break;
    }
    if (!n_blocks)
        return 0;
    /* at most 8 levels x 8 resnets; each rule needs two owned strings */
    enum { MAXR = 128 };
    vd_keyrule rules[MAXR];
    char (*buf)[2][80] = vd_malloc(sizeof(*buf) * MAXR);
    if (!buf)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    int nr = 0, idx = 0, ret = 0;
    for (int b = 0; b < n_blocks; b++) {
        int n_res = count_indices(ck, "decoder.up_blocks.%d.resnets.%d.", b);
        snprintf(p, sizeof(p), "decoder.up_blocks.%d.upsamplers.0.", b);
        int has_up = vd_ckpt_count_prefix(ck, p) > 0;
        if (nr + n_res + 1 > MAXR) {
            ret = vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: too many decoder blocks",
                         vd_ckpt_label(ck));
            goto done;
        }
        for (int r = 0; r < n_res; r++, idx++, nr++) {
            snprintf(buf[nr][0], 80, "decoder.up_blocks.%d.resnets.%d.*", b, r);
            snprintf(buf[nr][1], 80, "decoder.upsamples.%d.*", idx);
            rules[nr] = (vd_keyrule){ buf[nr][0], buf[nr][1] };
        }
        if (has_up) {
            snprintf(buf[nr][0], 80, "decoder.up_blocks.%d.upsamplers.0.*", b);
            snprintf(buf[nr][1], 80, "decoder.upsamples.%d.*", idx);
            rules[nr] = (vd_keyrule){ buf[nr][0], buf[nr][1] };
            nr++, idx++;
        }
    }
    ret = vd_ckpt_rename(ck, rules, (size_t)nr, lg);
    if (!ret) {
        /* resnet parts inside the renamed decoder blocks */
        vd_keyrule rr[VD_ARRAY_SIZE(res_rules)];
        for (size_t i = 0; i < VD_ARRAY_SIZE(res_rules); i++) {
            static const char *from[] = { "decoder.upsamples.#.norm1.gamma",
                                          "decoder.upsamples.#.norm2.gamma",
                                          "decoder.upsamples.#.conv1.*",
                                          "decoder.upsamples.#.conv2.*",
                                          "decoder.upsamples.#.conv_shortcut.*" };
            static const char *to[] = { "decoder.upsamples.#.residual.0.gamma",
                                        "decoder.upsamples.#.residual.3.gamma",
                                        "decoder.upsamples.#.residual.2.*",
                                        "decoder.upsamples.#.residual.6.*",
                                        "decoder.upsamples.#.shortcut.*" };
            rr[i] = (vd_keyrule){ from[i], to[i] };
        }
        ret = vd_ckpt_rename(ck, rr, VD_ARRAY_SIZE(rr), lg);
    }
done:
    vd_free(buf);
    return ret;
}

/* diffusers AutoencoderKLWan with is_residual (Wan2.2): the residual blocks'
 * resnets keep their block (down_blocks.B.resnets.R == downsamples.B.
 * downsamples.R); the resample is down_blocks.B.downsampler /
 * up_blocks.B.upsampler, index num_resnets(B) in the original. */
static const vd_keyrule diffusers22_rules[] = {
    { "encoder.down_blocks.#.resnets.#.norm1.gamma",
      "encoder.downsamples.#.downsamples.#.residual.0.gamma" },
    { "encoder.down_blocks.#.resnets.#.norm2.gamma",
      "encoder.downsamples.#.downsamples.#.residual.3.gamma" },
    { "encoder.down_blocks.#.resnets.#.conv1.*",
      "encoder.downsamples.#.downsamples.#.residual.2.*" },
    { "encoder.down_blocks.#.resnets.#.conv2.*",
      "encoder.downsamples.#.downsamples.#.residual.6.*" },
    { "encoder.down_blocks.#.resnets.#.conv_shortcut.*",
      "encoder.downsamples.#.downsamples.#.shortcut.*" },
    { "decoder.up_blocks.#.resnets.#.norm1.gamma",
      "decoder.upsamples.#.upsamples.#.residual.0.gamma" },
    { "decoder.up_blocks.#.resnets.#.norm2.gamma",
      "decoder.upsamples.#.upsamples.#.residual.3.gamma" },
    { "decoder.up_blocks.#.resnets.#.conv1.*", "decoder.upsamples.#.upsamples.#.residual.2.*" },
    { "decoder.up_blocks.#.resnets.#.conv2.*", "decoder.upsamples.#.upsamples.#.residual.6.*" },
    { "decoder.up_blocks.#.resnets.#.conv_shortcut.*",
      "decoder.upsamples.#.upsamples.#.shortcut.*" },
};

/* down_blocks.B.downsampler.X -> downsamples.B.downsamples.N.X (N = the
 * block's resnet count), likewise up_blocks.B.upsampler; then the resnets. */
static int rename_blocks22(vd_ckpt *ck, vd_log *lg)
{
    enum { MAXB = 16 };
    vd_keyrule rules[2 * MAXB];
    char buf[2 * MAXB][2][96];
    int nr = 0;
    for (int side = 0; side < 2; side++) {
        const char *blk = side ? "decoder.up_blocks" : "encoder.down_blocks";
        const char *rs = side ? "upsampler" : "downsampler";
        const char *orig = side ? "decoder.upsamples.%d.upsamples.%d.*"
                                : "encoder.downsamples.%d.downsamples.%d.*";
        char fmt[64], p[128];
        snprintf(fmt, sizeof(fmt), "%s.%%d.resnets.%%d.", blk);
        for (int b = 0; b < MAXB; b++) {
            snprintf(p, sizeof(p), "%s.%d.%s.", blk, b, rs);
            if (!vd_ckpt_count_prefix(ck, p))
                continue;
            snprintf(buf[nr][0], 96, "%s.%d.%s.*", blk, b, rs);
            snprintf(buf[nr][1], 96, orig, b, count_indices(ck, fmt, b));
            rules[nr] = (vd_keyrule){ buf[nr][0], buf[nr][1] };
            nr++;
        }
    }
    int r = vd_ckpt_rename(ck, rules, (size_t)nr, lg);
    return r ? r : vd_ckpt_rename(ck, diffusers22_rules, VD_ARRAY_SIZE(diffusers22_rules), lg);
}

int vd_vae_canonicalize(vd_ckpt *ck, vd_log *lg)
{
    if (!ck)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_vae_canonicalize: no checkpoint");
    /* repackaged single files sometimes carry the module path as a prefix */
    static const char *prefixes[] = { "vae.", "first_stage_model.", "model.", "module." };
    for (size_t i = 0; i < VD_ARRAY_SIZE(prefixes); i++) {
        size_t n = vd_ckpt_count_prefix(ck, prefixes[i]);
        if (n && n == vd_ckpt_count(ck)) {
            int r = vd_ckpt_strip_prefix(ck, prefixes[i], lg);
            if (r)
                return r;
        }
    }
    int diffusers = vd_ckpt_find(ck, "encoder.conv_in.weight") != NULL ||
                    vd_ckpt_count_prefix(ck, "decoder.up_blocks.") > 0;
    if (!diffusers)
        return 0;
    /* Wan2.2 keeps the blocks: down_blocks.B.resnets.R (Wan2.1: flat
     * down_blocks.N) */
    int r = vd_ckpt_count_prefix(ck, "encoder.down_blocks.0.resnets.") ||
                    vd_ckpt_count_prefix(ck, "decoder.up_blocks.0.upsampler.")
                ? rename_blocks22(ck, lg)
                : rename_decoder_blocks(ck, lg);
    if (r)
        return r;
    r = vd_ckpt_rename(ck, diffusers_rules, VD_ARRAY_SIZE(diffusers_rules), lg);
    if (r)
        return r;
    /* the encoder's middle resnets: mid_block names went to middle.N.norm1... */
    static const vd_keyrule mid_rules[] = {
        { "*coder.middle.#.norm1.gamma", "*coder.middle.#.residual.0.gamma" },
        { "*coder.middle.#.norm2.gamma", "*coder.middle.#.residual.3.gamma" },
        { "*coder.middle.#.conv1.*", "*coder.middle.#.residual.2.*" },
        { "*coder.middle.#.conv2.*", "*coder.middle.#.residual.6.*" },
    };
    return vd_ckpt_rename(ck, mid_rules, VD_ARRAY_SIZE(mid_rules), lg);
}

/* ---- layer list ---------------------------------------------------------- */

static int has(const vd_ckpt *ck, const char *pre, const char *suf)
{
    char n[256];
    snprintf(n, sizeof(n), "%s%s", pre, suf);
    return vd_ckpt_find(ck, n) != NULL;
}

/* A conv weight [co, ci, k...] (ndim 4 or 5, shape checked where >= 0) with
 * its bias [co]. */
static int get_conv(const vd_ckpt *ck, vd_log *lg, const char *pre, const char *name, int ndim,
                    int co, int ci, int kd, int kh, vk_conv *cv)
{
    char n[256];
    const vt_tensor *w, *b;
    int64_t shp[5] = { co, ci, kd, kh, kh };
    if (ndim == 4) {
        shp[2] = kh;
        shp[3] = kh;
    }
    snprintf(n, sizeof(n), "%s%s.weight", pre, name);
    int r = vd_ckpt_get(ck, lg, n, ndim, shp, &w);
    if (r)
        return r;
    int64_t bs[1] = { w->shape[0] };
    snprintf(n, sizeof(n), "%s%s.bias", pre, name);
    r = vd_ckpt_get(ck, lg, n, 1, bs, &b);
    if (r)
        return r;
    r = vk_conv_init(cv, w, b);
    if (r)
        return vd_err(lg, r, "%s: tensor '%s%s.weight': cannot prepare the convolution: %s",
                      vd_ckpt_file(ck, w), pre, name, vdit_strerror(r));
    return 0;
}

/* A norm scale with c values (any shape [c, 1, ...]) as an owned fp32 copy;
 * c < 0: take the size from the tensor. */
static int get_gamma(const vd_ckpt *ck, vd_log *lg, const char *pre, const char *name, int c,
                     float **out, int *c_out)
{
    char n[256];
    snprintf(n, sizeof(n), "%s%s", pre, name);
    const vt_tensor *t = vd_ckpt_find(ck, n);
    if (!t)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%s' is missing", vd_ckpt_label(ck), n);
    int64_t ne = vt_nelem(t);
    int ok = t->ndim >= 1 && (c < 0 ? ne > 0 && ne < (1 << 20) : ne == c) && t->shape[0] == ne;
    if (!ok)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' has %lld values, expected %d",
                      vd_ckpt_file(ck, t), n, (long long)ne, c);
    *out = vd_tensor_f32(t);
    if (!*out && vd_tensor_is_float(t))
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory", vd_ckpt_file(ck, t),
                      n);
    if (!*out)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' is not a float tensor",
                      vd_ckpt_file(ck, t), n);
    if (c_out)
        *c_out = (int)ne;
    return 0;
}

static int conv_out_ch(const vd_ckpt *ck, vd_log *lg, const char *pre, const char *name,
                       int *co)
{
    char n[256];
    snprintf(n, sizeof(n), "%s%s.weight", pre, name);
    const vt_tensor *t = vd_ckpt_find(ck, n);
    if (!t)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%s' is missing", vd_ckpt_label(ck), n);
    if (t->ndim < 4 || t->shape[0] <= 0 || t->shape[0] > (1 << 16))
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' is not a convolution weight",
                      vd_ckpt_file(ck, t), n);
    *co = (int)t->shape[0];
    return 0;
}

static void node_free(vnode *n)
{
    vd_free(n->g1);
    vd_free(n->g2);
    vk_conv_free(&n->c1);
    vk_conv_free(&n->c2);
    vk_conv_free(&n->sc);
    for (int p = 0; p < 4; p++)
        vk_conv_free(&n->up[p]);
    vd_free(n->upw);
    memset(n, 0, sizeof(*n));
}

static int load_res(const vd_ckpt *ck, vd_log *lg, const char *pre, int ci, vnode *n)
{
    int co, r;
    n->type = VN_RES;
    n->ci = ci;
    if ((r = get_gamma(ck, lg, pre, "residual.0.gamma", ci, &n->g1, NULL)) ||
        (r = conv_out_ch(ck, lg, pre, "residual.2", &co)))
        return r;
    n->co = co;
    if ((r = get_conv(ck, lg, pre, "residual.2", 5, co, ci, 3, 3, &n->c1)) ||
        (r = get_gamma(ck, lg, pre, "residual.3.gamma", co, &n->g2, NULL)) ||
        (r = get_conv(ck, lg, pre, "residual.6", 5, co, co, 3, 3, &n->c2)))
        return r;
    n->has_sc = has(ck, pre, "shortcut.weight");
    if (n->has_sc && (r = get_conv(ck, lg, pre, "shortcut", 5, co, ci, 1, 1, &n->sc)))
        return r;
    if (!n->has_sc && ci != co)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%sshortcut.weight' is missing",
                      vd_ckpt_label(ck), pre);
    return 0;
}

static int load_attn(const vd_ckpt *ck, vd_log *lg, const char *pre, int c, vnode *n)
{
    int r;
    n->type = VN_ATTN;
    n->ci = n->co = c;
    if ((r = get_gamma(ck, lg, pre, "norm.gamma", c, &n->g1, NULL)) ||
        (r = get_conv(ck, lg, pre, "to_qkv", 4, 3 * c, c, 1, 1, &n->c1)) ||
        (r = get_conv(ck, lg, pre, "proj", 4, c, c, 1, 1, &n->c2)))
        return r;
    return 0;
}

void vd_subpixel_fold(const float *w, size_t n, int a, int b, float *d)
{
    for (size_t oi = 0; oi < n; oi++)
        for (int u = 0; u < 2; u++)
            for (int v = 0; v < 2; v++) {
                double sum = 0; /* 3x3 rows y0..y1, columns x0..x1 */
                int y0 = a ? (u ? 2 : 0) : (u ? 1 : 0), y1 = a ? (u ? 2 : 1) : (u ? 2 : 0);
                int x0 = b ? (v ? 2 : 0) : (v ? 1 : 0), x1 = b ? (v ? 2 : 1) : (v ? 2 : 0);
                for (int y = y0; y <= y1; y++)
                    for (int x = x0; x <= x1; x++)
                        sum += (double)w[oi * 9 + (size_t)y * 3 + (size_t)x];
                d[oi * 4 + (size_t)u * 2 + (size_t)v] = (float)sum;
            }
}

/* The upsampler's 3x3 conv after nearest x2 as four 2x2 convs of the
 * low-resolution frame. Output row 2i + a reads x2 rows 2i + a - 1 .. 2i + a + 1,
 * i.e. input rows i - 1, i, i (a = 0) or i, i, i + 1 (a = 1): the 2x2 tap rows
 * are {w0}, {w1 + w2} (a = 0, padding before) or {w0 + w1}, {w2} (a = 1,
 * padding after); columns likewise. Taps summed in double, rounded once. */
static int make_subpixel(const vd_ckpt *ck, vd_log *lg, const char *pre, vnode *n)
{
    char nw[256], nb[256];
    snprintf(nw, sizeof(nw), "%sresample.1.weight", pre);
    snprintf(nb, sizeof(nb), "%sresample.1.bias", pre);
    const vt_tensor *tw = vd_ckpt_find(ck, nw), *tb = vd_ckpt_find(ck, nb);
    float *w = tw ? vd_tensor_f32(tw) : NULL;
    int co = n->co, ci = n->ci, r = 0;
    size_t per = (size_t)co * ci * 4;
    n->upw = vd_malloc(4 * per * sizeof(float));
    if (!tb || !w || !n->upw) {
        vd_free(w);
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory preparing '%s'", vd_ckpt_label(ck),
                      nw);
    }
    for (int p = 0; p < 4 && !r; p++) {
        int a = p >> 1, b = p & 1;
        float *d = n->upw + (size_t)p * per;
        vd_subpixel_fold(w, (size_t)co * ci, a, b, d);
        vt_tensor t = { .dtype = VT_F32, .ndim = 4, .shape = { co, ci, 2, 2 }, .data = d,
                        .name = tw->name };
        r = vk_conv_init_lg(lg, &n->up[p], &t, tb);
    }
    vd_free(w);
    return r;
}

/* Resample: downsample keeps channels; upsample halves them (the 3x3 conv
 * after nearest x2) in Wan2.1 and keeps them in Wan2.2 (v22); 3D kinds add
 * time_conv. */
static int load_resample(const vd_ckpt *ck, vd_log *lg, const char *pre, int c, int up, int v22,
                         vnode *n)
{
    int r, t3 = has(ck, pre, "time_conv.weight");
    n->type = up ? (t3 ? VN_UP3D : VN_UP2D) : (t3 ? VN_DOWN3D : VN_DOWN2D);
    n->ci = c;
    n->co = up && !v22 ? c / 2 : c;
    if (up && !v22 && (c % 2))
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: '%s' upsamples an odd channel count %d",
                      vd_ckpt_label(ck), pre, c);
    if ((r = get_conv(ck, lg, pre, "resample.1", 4, n->co, c, 1, 3, &n->c1)))
        return r;
    if (up && (r = make_subpixel(ck, lg, pre, n)))
        return r;
    if (up) /* shape checked; only the sub-pixel form runs */
        vk_conv_free(&n->c1);
    if (t3 && (r = get_conv(ck, lg, pre, "time_conv", 5, up ? 2 * c : c, c, 3, 1, &n->c2)))
        return r;
    return 0;
}

/* encoder.downsamples.N / decoder.upsamples.N, then middle.N (Wan2.2: the
 * entries of one residual block, ...downsamples.B.downsamples.N): each entry
 * is a residual block, an attention block or a resample, told apart by its
 * tensors. */
static int load_list(const vd_ckpt *ck, vd_log *lg, const char *fmt, int up, int v22, int *c,
                     vnode *nodes, int *nn, int max_nodes, int *n_attn)
{
    char pre[128];
    for (int i = 0;; i++) {
        snprintf(pre, sizeof(pre), fmt, i);
        if (!vd_ckpt_count_prefix(ck, pre))
            return 0;
        if (*nn >= max_nodes)
            return vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: too many layers under '%s'",
                          vd_ckpt_label(ck), pre);
        vnode *n = &nodes[(*nn)++];
        int r;
        if (has(ck, pre, "residual.0.gamma"))
            r = load_res(ck, lg, pre, *c, n);
        else if (has(ck, pre, "to_qkv.weight")) {
            r = load_attn(ck, lg, pre, *c, n);
            if (n_attn)
                (*n_attn)++;
        } else if (has(ck, pre, "resample.1.weight"))
            r = load_resample(ck, lg, pre, *c, up, v22, n);
        else
            r = vd_err(lg, VDIT_ERR_FORMAT, "%s: layer '%s' is neither a residual block, "
                       "an attention block nor a resample", vd_ckpt_label(ck), pre);
        if (r)
            return r;
        *c = n->co;
    }
}

/* Wan2.2: encoder.downsamples.B (Down_ResidualBlock) / decoder.upsamples.B
 * (Up_ResidualBlock), each its list of layers between a START node and an
 * ADD node that adds the block's shortcut (AvgDown3D / DupUp3D, factors
 * from the block's resample). An Up block without a resample has no
 * shortcut; a Down block without one averages over factor 1. */
static int load_blocks22(const vd_ckpt *ck, vd_log *lg, int enc, int *c, vnode *nodes, int *nn,
                         int max_nodes, int *n_attn)
{
    const char *side = enc ? "encoder.downsamples" : "decoder.upsamples";
    const char *inner = enc ? "downsamples" : "upsamples";
    char pre[128], fmt[128];
    for (int b = 0;; b++) {
        snprintf(pre, sizeof(pre), "%s.%d.", side, b);
        if (!vd_ckpt_count_prefix(ck, pre))
            return 0;
        snprintf(fmt, sizeof(fmt), "%s.%d.%s.%%d.", side, b, inner);
        int n_ent = 0;
        for (char p[128];; n_ent++) {
            snprintf(p, sizeof(p), fmt, n_ent);
            if (!vd_ckpt_count_prefix(ck, p))
                break;
        }
        if (!n_ent)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: block '%s' has no '%s%s.0.' layers",
                          vd_ckpt_label(ck), pre, pre, inner);
        char last[128];
        snprintf(last, sizeof(last), fmt, n_ent - 1);
        int shortcut = enc || has(ck, last, "resample.1.weight");
        if (*nn + 2 > max_nodes)
            return vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: too many layers under '%s'",
                          vd_ckpt_label(ck), pre);
        int si = -1, cin = *c, r;
        if (shortcut) {
            si = (*nn)++;
            nodes[si].type = enc ? VN_AVG_START : VN_DUP_START;
            nodes[si].ci = nodes[si].co = cin;
        }
        int first = *nn;
        if ((r = load_list(ck, lg, fmt, !enc, 1, c, nodes, nn, max_nodes - 1, n_attn)))
            return r;
        if (!shortcut)
            continue;
        int ft = 1, fs = 1;
        for (int i = first; i < *nn; i++) {
            int t = nodes[i].type;
            if (t == VN_DOWN2D || t == VN_DOWN3D || t == VN_UP2D || t == VN_UP3D) {
                fs = 2;
                ft = t == VN_DOWN3D || t == VN_UP3D ? 2 : 1;
            }
        }
        int cout = *c, f = ft * fs * fs;
        /* AvgDown3D: groups of in * f / out channels; DupUp3D: out * f / in repeats */
        int num = enc ? cin * f : cout * f, den = enc ? cout : cin;
        if (num % den)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: block '%s' maps %d to %d channels with factor %d: "
                          "not a whole %s",
                          vd_ckpt_label(ck), pre, cin, cout, f, enc ? "group" : "repeat");
        vnode *st = &nodes[si], *ad = &nodes[(*nn)++];
        st->ft = ad->ft = ft;
        st->fs = ad->fs = fs;
        st->grp = ad->grp = num / den;
        st->sco = ad->sco = cout;
        ad->type = enc ? VN_AVG_ADD : VN_DUP_ADD;
        ad->ci = ad->co = cout;
        ad->pair = si;
    }
}

static int load_net(const vd_ckpt *ck, vd_log *lg, int enc, int z2, int v22, int patch,
                    vnet *net, int *n_attn)
{
    const char *side = enc ? "encoder." : "decoder.";
    char pre[64];
    int max_nodes = 256, r, c;
    net->nodes = vd_calloc(sizeof(vnode) * (size_t)max_nodes);
    if (!net->nodes)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    vnode *n;
    if (enc && patch > 1) {
        n = &net->nodes[net->n++];
        n->type = VN_PATCH;
        n->ci = 3;
        n->co = 3 * patch * patch;
        n->fs = patch;
    }
    n = &net->nodes[net->n++];
    n->type = VN_CONV_IN;
    n->ci = enc ? 3 * patch * patch : z2;
    snprintf(pre, sizeof(pre), "%s", side);
    if ((r = conv_out_ch(ck, lg, pre, "conv1", &n->co)) ||
        (r = get_conv(ck, lg, pre, "conv1", 5, n->co, n->ci, 3, 3, &n->c1)))
        return r;
    c = n->co;
    char fmt[64];
    if (enc) {
        snprintf(fmt, sizeof(fmt), "encoder.downsamples.%%d.");
        r = v22 ? load_blocks22(ck, lg, 1, &c, net->nodes, &net->n, max_nodes - 4, n_attn)
                : load_list(ck, lg, fmt, 0, 0, &c, net->nodes, &net->n, max_nodes - 4, n_attn);
        if (r)
            return r;
    }
    snprintf(fmt, sizeof(fmt), "%smiddle.%%d.", side);
    int before = net->n;
    if ((r = load_list(ck, lg, fmt, enc ? 0 : 1, v22, &c, net->nodes, &net->n, max_nodes - 4,
                       NULL)))
        return r;
    if (net->n == before)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%smiddle.0.residual.0.gamma' is missing",
                      vd_ckpt_label(ck), side);
    if (!enc) {
        snprintf(fmt, sizeof(fmt), "decoder.upsamples.%%d.");
        r = v22 ? load_blocks22(ck, lg, 0, &c, net->nodes, &net->n, max_nodes - 4, n_attn)
                : load_list(ck, lg, fmt, 1, 0, &c, net->nodes, &net->n, max_nodes - 4, n_attn);
        if (r)
            return r;
    }
    n = &net->nodes[net->n++];
    n->type = VN_HEAD;
    n->ci = c;
    n->co = enc ? z2 : 3 * patch * patch;
    snprintf(pre, sizeof(pre), "%shead.", side);
    if ((r = get_gamma(ck, lg, pre, "0.gamma", c, &n->g1, NULL)) ||
        (r = get_conv(ck, lg, pre, "2", 5, n->co, c, 3, 3, &n->c1)))
        return r;
    if (!enc && patch > 1) {
        n = &net->nodes[net->n++];
        n->type = VN_UNPATCH;
        n->ci = 3 * patch * patch;
        n->co = 3;
        n->fs = patch;
    }
    /* output buffers: each layer writes the ping buffer its input is not in
     * (START kinds pass their input on and write nothing) */
    int cur = 1;
    for (int i = 0; i < net->n; i++) {
        n = &net->nodes[i];
        if (vnode_passes(n->type))
            continue;
        n->obuf = cur = !cur;
    }
    return 0;
}

static void net_free(vnet *net)
{
    for (int i = 0; i < net->n; i++)
        node_free(&net->nodes[i]);
    vd_free(net->nodes);
    net->nodes = NULL;
    net->n = 0;
}

static size_t net_bytes(const vnet *net)
{
    size_t n = 0;
    for (int i = 0; i < net->n; i++) {
        const vnode *nd = &net->nodes[i];
        n += vk_conv_prepared_bytes(&nd->c1) + vk_conv_prepared_bytes(&nd->c2) +
             vk_conv_prepared_bytes(&nd->sc);
        for (int p = 0; p < 4; p++)
            n += vk_conv_prepared_bytes(&nd->up[p]);
    }
    return n;
}

size_t vd_vae_prepared_bytes(const vd_vae *v)
{
    return v ? net_bytes(&v->enc) + net_bytes(&v->dec) + vk_conv_prepared_bytes(&v->conv1) +
                   vk_conv_prepared_bytes(&v->conv2)
             : 0;
}

void vd_vae_free(vd_vae **pv)
{
    if (!pv || !*pv)
        return;
    vd_vae *v = *pv;
    vd_vae_dev_free(&v->dev);
    net_free(&v->enc);
    net_free(&v->dec);
    vk_conv_free(&v->conv1);
    vk_conv_free(&v->conv2);
    vd_free(v);
    *pv = NULL;
}

/* Fills the configuration from the encoder's layer list and checks that the
 * decoder mirrors it (same number of spatial / temporal resamples). */
static int derive_config(const vd_ckpt *ck, vd_log *lg, vd_vae *v, int n_attn)
{
    vd_vae_config *cfg = &v->cfg;
    const vnet *e = &v->enc, *d = &v->dec;
    int i0 = e->nodes[0].type == VN_PATCH ? 1 : 0;
    cfg->dim = e->nodes[i0].co;
    int level = 0, nres0 = 0, n_down = 0, n_down3 = 0, n_up = 0, n_up3 = 0;
    for (int i = i0 + 1; i < e->n; i++) {
        const vnode *n = &e->nodes[i];
        if (n->type == VN_RES && level < 4 && n->co % cfg->dim == 0)
            cfg->dim_mult[level] = n->co / cfg->dim;
        if (n->type == VN_RES && level == 0)
            nres0++;
        if (n->type == VN_DOWN2D || n->type == VN_DOWN3D) {
            if (level < 3)
                cfg->temporal_down[level] = n->type == VN_DOWN3D;
            level++;
            n_down++;
            n_down3 += n->type == VN_DOWN3D;
        }
    }
    for (int i = 0; i < d->n; i++) {
        n_up += d->nodes[i].type == VN_UP2D || d->nodes[i].type == VN_UP3D;
        n_up3 += d->nodes[i].type == VN_UP3D;
    }
    cfg->n_levels = level + 1;
    cfg->num_res_blocks = nres0;
    cfg->n_attn = n_attn;
    cfg->s_factor = cfg->patch << n_down;
    cfg->t_factor = 1 << n_down3;
    /* the decoder's last width: dims[-1] = dec_dim * dim_mult[0] */
    const vnode *head = &d->nodes[d->n - (d->nodes[d->n - 1].type == VN_UNPATCH ? 2 : 1)];
    cfg->dec_dim = cfg->dim_mult[0] > 0 ? head->ci / cfg->dim_mult[0] : head->ci;
    if (n_up != n_down || n_up3 != n_down3 || n_down > 6)
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "%s: decoder has %d spatial / %d temporal upsamples but the encoder "
                      "%d / %d downsamples",
                      vd_ckpt_label(ck), n_up, n_up3, n_down, n_down3);
    return 0;
}

int vd_vae_load(const vd_ckpt *ck, vd_log *lg, vd_vae **out)
{
    if (!ck || !out)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_vae_load: missing argument");
    *out = NULL;
    vd_vae *v = vd_calloc(sizeof(*v));
    if (!v)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    int r, z, n_attn = 0;
    if ((r = conv_out_ch(ck, lg, "", "conv2", &z)))
        goto fail;
    if (z > VD_VAE_MAX_Z) {
        r = vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: z_dim %d > %d is not supported",
                   vd_ckpt_label(ck), z, VD_VAE_MAX_Z);
        goto fail;
    }
    /* Wan2.2 nests each level's layers in a residual block
     * (encoder.downsamples.B.downsamples.N) and patchifies the frames 2x2
     * (encoder.conv1 takes 12 channels) */
    int v22 = vd_ckpt_count_prefix(ck, "encoder.downsamples.0.downsamples.") > 0 ||
              vd_ckpt_count_prefix(ck, "decoder.upsamples.0.upsamples.") > 0;
    const vt_tensor *c1 = vd_ckpt_find(ck, "encoder.conv1.weight");
    int patch = c1 && c1->ndim == 5 && c1->shape[1] == 12 ? 2 : 1;
    v->cfg.z_dim = z;
    v->cfg.version = v22 ? 22 : 21;
    v->cfg.patch = patch;
    if ((r = get_conv(ck, lg, "", "conv1", 5, 2 * z, 2 * z, 1, 1, &v->conv1)) ||
        (r = get_conv(ck, lg, "", "conv2", 5, z, z, 1, 1, &v->conv2)) ||
        (r = load_net(ck, lg, 1, 2 * z, v22, patch, &v->enc, &n_attn)) ||
        (r = load_net(ck, lg, 0, z, v22, patch, &v->dec, &n_attn)) ||
        (r = derive_config(ck, lg, v, n_attn)))
        goto fail;
    const float *mean, *std;
    if (!vd_wan_latent_stats(v22 ? 22 : 21, z, &mean, &std)) {
        r = vd_vae_set_latent_stats(v, mean, std);
    } else {
        float m[VD_VAE_MAX_Z] = { 0 }, s[VD_VAE_MAX_Z];
        for (int i = 0; i < VD_VAE_MAX_Z; i++)
            s[i] = 1.0f;
        r = vd_vae_set_latent_stats(v, m, s);
    }
    if (r)
        goto fail;
    *out = v;
    return 0;
fail:
    vd_vae_free(&v);
    return r;
}

int vd_vae_set_latent_stats(vd_vae *v, const float *mean, const float *std)
{
    if (!v || !mean || !std)
        return VDIT_ERR_INVALID_ARG;
    for (int i = 0; i < v->cfg.z_dim; i++) {
        if (!(std[i] > 0))
            return VDIT_ERR_INVALID_ARG;
        v->cfg.mean[i] = mean[i];
        v->cfg.std[i] = std[i];
        v->inv_std[i] = 1.0f / std[i];
    }
    return 0;
}

const vd_vae_config *vd_vae_get_config(const vd_vae *v)
{
    return v ? &v->cfg : NULL;
}
