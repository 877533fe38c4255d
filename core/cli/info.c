/* `vdit info PATH`: what a checkpoint holds. Opens it like the models do
 * (safetensors file, sharded index, folder, PyTorch .pth), prints counts,
 * dtypes, parameters and bytes, and recognises the Wan2.1 components from
 * their key names and shapes. The recognition is deliberately shallow and
 * local to this file: the models own their real loading rules. */
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "dit/dit.h"
#include "cli.h"
#include "pipeline/family.h"

static void usage(FILE *o)
{
    fprintf(o, "usage: vdit info [--tensors] PATH\n"
               "  PATH: a .safetensors file, a *.safetensors.index.json, a .pth/.pt file or a folder\n"
               "  --tensors   list every tensor (name, type, shape, file)\n");
}

static void human(char *buf, size_t n, double v, const char *unit)
{
    const char *p[] = { "", " K", " M", " G", " T" };
    int k = 0;
    while (v >= 1000 && k < 4) {
        v /= 1000;
        k++;
    }
    snprintf(buf, n, k ? "%.2f%s%s" : "%.0f%s%s", v, k || !*unit ? p[k] : " ", unit);
}

/* Where the component's names start: "model.diffusion_model." in a
 * ComfyUI-style single file, "" in the official ones. */
static const char *find_prefix(const vd_ckpt *c, const char *anchor, char *buf, size_t n)
{
    size_t al = strlen(anchor);
    for (size_t i = 0; i < vd_ckpt_count(c); i++) {
        const char *name = vd_ckpt_at(c, i)->name;
        size_t l = strlen(name);
        if (l >= al && !strcmp(name + l - al, anchor) && (l == al || name[l - al - 1] == '.')
            && l - al < n) {
            memcpy(buf, name, l - al);
            buf[l - al] = 0;
            return buf;
        }
    }
    return NULL;
}

static const vt_tensor *get(const vd_ckpt *c, const char *prefix, const char *name)
{
    char full[512];
    snprintf(full, sizeof(full), "%s%s", prefix, name);
    return vd_ckpt_find(c, full);
}

static int64_t dim_of(const vd_ckpt *c, const char *prefix, const char *name, int d)
{
    const vt_tensor *t = get(c, prefix, name);
    return t && d < t->ndim ? t->shape[d] : -1;
}

/* 1 + the largest N in names "<prefix><group>N." */
static int count_numbered(const vd_ckpt *c, const char *prefix, const char *group)
{
    char head[512];
    snprintf(head, sizeof(head), "%s%s", prefix, group);
    size_t hl = strlen(head);
    int n = 0;
    for (size_t i = 0; i < vd_ckpt_count(c); i++) {
        const char *name = vd_ckpt_at(c, i)->name;
        if (strncmp(name, head, hl) || name[hl] < '0' || name[hl] > '9')
            continue;
        long k = strtol(name + hl, NULL, 10);
        if (k >= 0 && k < 100000 && k + 1 > n)
            n = (int)k + 1;
    }
    return n;
}

static void show_prefix(const char *prefix)
{
    if (*prefix)
        printf("  key prefix: '%s'\n", prefix);
}

static void show_heads(int64_t dim)
{
    if (dim > 0 && dim % 128 == 0)
        printf("  heads %" PRId64 " (head_dim 128 as in the released models; not stored)\n",
               dim / 128);
    else
        printf("  heads: not stored in the checkpoint\n");
}

static int wan_dit(const vd_ckpt *c)
{
    char pb[256];
    const char *p = find_prefix(c, "time_projection.1.weight", pb, sizeof(pb));
    int diffusers = 0;
    if (!p) {
        p = find_prefix(c, "condition_embedder.time_proj.weight", pb, sizeof(pb));
        diffusers = 1;
    }
    if (!p || !get(c, p, "patch_embedding.weight"))
        return 0;
    int64_t dim = dim_of(c, p, "patch_embedding.weight", 0);
    int64_t in_dim = dim_of(c, p, "patch_embedding.weight", 1);
    const vt_tensor *pe = get(c, p, "patch_embedding.weight");
    int layers = count_numbered(c, p, "blocks.");
    int64_t ffn, text_dim, freq_dim, head_out;
    int i2v;
    if (!diffusers) {
        ffn = dim_of(c, p, "blocks.0.ffn.0.weight", 0);
        text_dim = dim_of(c, p, "text_embedding.0.weight", 1);
        freq_dim = dim_of(c, p, "time_embedding.0.weight", 1);
        head_out = dim_of(c, p, "head.head.weight", 0);
        i2v = get(c, p, "img_emb.proj.0.weight") || get(c, p, "blocks.0.cross_attn.k_img.weight");
    } else {
        ffn = dim_of(c, p, "blocks.0.ffn.net.0.proj.weight", 0);
        text_dim = dim_of(c, p, "condition_embedder.text_embedder.linear_1.weight", 1);
        freq_dim = dim_of(c, p, "condition_embedder.time_embedder.linear_1.weight", 1);
        head_out = dim_of(c, p, "proj_out.weight", 0);
        i2v = get(c, p, "condition_embedder.image_embedder.ff.net.0.proj.weight")
              || get(c, p, "blocks.0.attn2.add_k_proj.weight");
    }
    int64_t patch = pe && pe->ndim == 5 ? pe->shape[2] * pe->shape[3] * pe->shape[4] : -1;
    int64_t out_dim = head_out > 0 && patch > 0 ? head_out / patch : -1;
    const char *size = dim == 1536 && layers == 30 ? " 1.3B" : dim == 5120 && layers == 40 ? " 14B"
                                                                                          : "";
    int ti2v = !i2v && in_dim == 48 && (out_dim == 48 || out_dim < 0);
    if (ti2v)
        size = dim == 3072 && layers == 30 ? " 5B" : "";
    printf("architecture: %s DiT%s (%s), %s key names; family %s\n", ti2v ? "Wan2.2" : "Wan2.1",
           size, ti2v ? "ti2v" : i2v ? "i2v" : "t2v", diffusers ? "diffusers" : "original",
           ti2v ? "wan2.2-ti2v" : i2v ? "wan2.1 (i2v: not run by vdit)" : "wan2.1");
    show_prefix(p);
    printf("  dim %" PRId64 ", layers %d, ffn %" PRId64 ", in_dim %" PRId64 ", out_dim %" PRId64
           ", text_dim %" PRId64 ", freq_dim %" PRId64,
           dim, layers, ffn, in_dim, out_dim, text_dim, freq_dim);
    if (pe && pe->ndim == 5)
        printf(", patch [%" PRId64 ", %" PRId64 ", %" PRId64 "]", pe->shape[2], pe->shape[3],
               pe->shape[4]);
    printf("\n");
    show_heads(dim);
    return 1;
}

static int wan_vae(const vd_ckpt *c)
{
    char pb[256];
    const char *p = find_prefix(c, "encoder.downsamples.0.residual.0.gamma", pb, sizeof(pb));
    int diffusers = 0;
    if (!p)
        p = find_prefix(c, "decoder.upsamples.0.residual.0.gamma", pb, sizeof(pb));
    if (!p) {
        p = find_prefix(c, "post_quant_conv.weight", pb, sizeof(pb));
        diffusers = 1;
        if (p && !get(c, p, "decoder.conv_in.weight"))
            p = NULL;
    }
    if (!p)
        return 0;
    int64_t base, z_dim;
    int enc, dec, down, up;
    if (!diffusers) {
        base = dim_of(c, p, "encoder.conv1.weight", 0);
        if (base < 0)
            base = dim_of(c, p, "decoder.head.0.gamma", 0);
        z_dim = dim_of(c, p, "conv2.weight", 0);
        enc = get(c, p, "encoder.conv1.weight") != NULL;
        dec = get(c, p, "decoder.conv1.weight") != NULL;
        down = count_numbered(c, p, "encoder.downsamples.");
        up = count_numbered(c, p, "decoder.upsamples.");
    } else {
        base = dim_of(c, p, "encoder.conv_in.weight", 0);
        z_dim = dim_of(c, p, "post_quant_conv.weight", 0);
        enc = get(c, p, "encoder.conv_in.weight") != NULL;
        dec = get(c, p, "decoder.conv_in.weight") != NULL;
        down = count_numbered(c, p, "encoder.down_blocks.");
        up = count_numbered(c, p, "decoder.up_blocks.");
    }
    int v22 = z_dim == 48;
    printf("architecture: %s VAE, %s key names; family %s\n", v22 ? "Wan2.2" : "Wan2.1",
           diffusers ? "diffusers" : "original", v22 ? "wan2.2-ti2v" : "wan2.1");
    show_prefix(p);
    printf("  base dim %" PRId64 ", z_dim %" PRId64 ", encoder %s (%d downsample modules), decoder %s "
           "(%d upsample modules)\n",
           base, z_dim, enc ? "yes" : "no", down, dec ? "yes" : "no", up);
    return 1;
}

static int umt5(const vd_ckpt *c)
{
    char pb[256];
    const char *p = find_prefix(c, "blocks.0.pos_embedding.embedding.weight", pb, sizeof(pb));
    int hf = 0;
    if (!p) {
        p = find_prefix(c, "block.0.layer.0.SelfAttention.relative_attention_bias.weight", pb,
                        sizeof(pb));
        hf = 1;
    }
    if (!p)
        return 0;
    int64_t vocab, dim, ffn, buckets, heads;
    int layers, per_layer;
    const vt_tensor *emb;
    if (!hf) {
        emb = get(c, p, "token_embedding.weight");
        layers = count_numbered(c, p, "blocks.");
        ffn = dim_of(c, p, "blocks.0.ffn.fc1.weight", 0);
        buckets = dim_of(c, p, "blocks.0.pos_embedding.embedding.weight", 0);
        heads = dim_of(c, p, "blocks.0.pos_embedding.embedding.weight", 1);
        per_layer = get(c, p, "blocks.1.pos_embedding.embedding.weight") != NULL;
    } else {
        emb = get(c, p, "embed_tokens.weight");
        if (!emb)
            emb = vd_ckpt_find(c, "shared.weight");
        layers = count_numbered(c, p, "block.");
        ffn = dim_of(c, p, "block.0.layer.1.DenseReluDense.wi_0.weight", 0);
        buckets = dim_of(c, p, "block.0.layer.0.SelfAttention.relative_attention_bias.weight", 0);
        heads = dim_of(c, p, "block.0.layer.0.SelfAttention.relative_attention_bias.weight", 1);
        per_layer = get(c, p, "block.1.layer.0.SelfAttention.relative_attention_bias.weight") != NULL;
    }
    vocab = emb && emb->ndim == 2 ? emb->shape[0] : -1;
    dim = emb && emb->ndim == 2 ? emb->shape[1] : -1;
    printf("architecture: %s encoder, %s key names\n",
           per_layer || layers < 2 ? "umT5" : "T5 (shared position bias)",
           hf ? "Hugging Face" : "original");
    show_prefix(p);
    printf("  vocab %" PRId64 ", dim %" PRId64 ", layers %d, heads %" PRId64 ", ffn %" PRId64
           ", position buckets %" PRId64 "\n",
           vocab, dim, layers, heads, ffn, buckets);
    return 1;
}

static void shape_str(char *buf, size_t n, const vt_tensor *t)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

int cmd_info(int argc, char **argv)
{
    int list = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tensors")) {
            list = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        /* a model folder: what vdit makes of it as a whole */
        vdit_model_params mp;
        vdit_model_params_default(&mp);
        mp.precision = VDIT_PRECISION_FP32;
        vdit_model *m = NULL;
        if (!vdit_model_load(path, &mp, &m)) {
            vdit_model_info mi;
            vdit_model_get_info(m, &mi);
            printf("model: %s\nfamily: %s (%s)\n", path, vdit_model_family(m),
                   vdit_model_family_title(m));
            printf("defaults: %dx%d, %d frames at %g fps, %d steps, guidance %g, shift %g; "
                   "sizes in multiples of %d\n", mi.width, mi.height, mi.n_frames,
                   (double)mi.fps, mi.steps, (double)mi.guidance, (double)mi.shift,
                   mi.spatial_align);
            static const char *const smp[] = { "unipc", "dpm++", "euler", "fewstep" };
            printf("sampler: %s", mi.sampler >= 0 && mi.sampler < 4 ? smp[mi.sampler] : "?");
            if (mi.n_timesteps) {
                printf(", timesteps [");
                for (int i = 0; i < mi.n_timesteps; i++)
                    printf("%s%d", i ? ", " : "", mi.timesteps[i]);
                printf("]%s", mi.timesteps_warped ? " warped through the shifted table" : "");
            }
            printf("%s\n", mi.guidance == 1.0f ? ", no guidance" : "");
            if (mi.causal)
                printf("causal: yes (chunk-by-chunk generation with a KV cache: loads, "
                       "not run yet)\n");
            /* the TAEHV files `--decoder tae` would take from this folder */
            for (int f = 0; vd_families[f]; f++) {
                const char *const *tn = vd_families[f]->tae_names;
                if (strcmp(vd_families[f]->name, vdit_model_family(m)) || !tn)
                    continue;
                const char *found = NULL;
                char p[4200];
                for (int i = 0; tn[i] && !found; i++) {
                    struct stat ts;
                    snprintf(p, sizeof(p), "%s/%s", path, tn[i]);
                    if (!stat(p, &ts) && S_ISREG(ts.st_mode))
                        found = tn[i];
                }
                printf("decoders: the VAE (default)%s%s%s\n", found ? "; TAEHV " : "",
                       found ? found : "", found ? " (--decoder tae)" : "");
            }
            vdit_model_free(&m);
        } else {
            printf("model: %s: %s\n", path, mp.error);
        }
    }
    vd_log lg = { 0 };
    vd_ckpt *c = NULL;
    int r = vd_ckpt_open(path, &lg, &c);
    if (r) {
        fprintf(stderr, "vdit info: %s\n", lg.msg);
        return 1;
    }
    size_t n = vd_ckpt_count(c);
    uint64_t params = 0, bytes = 0;
    uint64_t per_type[VT_COUNT] = { 0 }, per_type_n[VT_COUNT] = { 0 };
    const char *files[64];
    size_t n_files = 0, more_files = 0;
    for (size_t i = 0; i < n; i++) {
        const vt_tensor *t = vd_ckpt_at(c, i);
        uint64_t e = (uint64_t)vt_nelem(t);
        params += e;
        bytes += e * vt_dtype_size(t->dtype);
        per_type[t->dtype] += e;
        per_type_n[t->dtype]++;
        const char *f = vd_ckpt_file(c, t);
        size_t k;
        for (k = 0; k < n_files; k++)
            if (files[k] == f)
                break;
        if (k == n_files) {
            if (n_files < 64)
                files[n_files++] = f;
            else
                more_files = 1;
        }
    }
    char hp[32], hb[32];
    human(hp, sizeof(hp), (double)params, "");
    human(hb, sizeof(hb), (double)bytes, "B");
    printf("checkpoint: %s\n", path);
    printf("files: %zu%s\n", n_files, more_files ? "+" : "");
    printf("tensors: %zu\n", n);
    printf("parameters: %" PRIu64 " (%s)\n", params, hp);
    printf("bytes: %" PRIu64 " (%s)\n", bytes, hb);
    printf("dtypes:");
    for (int d = 0; d < VT_COUNT; d++)
        if (per_type_n[d]) {
            human(hp, sizeof(hp), (double)per_type[d], "");
            printf(" %s %" PRIu64 " tensors (%s params);", vt_dtype_name((vt_dtype)d),
                   per_type_n[d], hp);
        }
    printf("\n");
    int dropped = 0;
    if (!vd_dit_drop_wrappers(c, &lg, &dropped) && dropped)
        printf("module wrappers in the names (_fsdp_wrapped_module. ...): dropped, as loading "
               "does%s\n", list ? " (the list below shows the names without them)" : "");
    int known = wan_dit(c);
    known += wan_vae(c);
    known += umt5(c);
    char lora[400];
    if (!known && vd_lora_describe(c, lora, sizeof(lora))) {
        printf("LoRA: %s (vdit generate --lora FILE[:SCALE]; docs/lora.md)\n", lora);
        known = 1;
    }
    if (!known)
        printf("architecture: not recognised\n");
    if (list) {
        for (size_t i = 0; i < n; i++) {
            const vt_tensor *t = vd_ckpt_at(c, i);
            char s[160];
            shape_str(s, sizeof(s), t);
            printf("%s\t%s\t%s", t->name, vt_dtype_name(t->dtype), s);
            if (n_files > 1)
                printf("\t%s", vd_ckpt_file(c, t));
            printf("\n");
        }
    }
    vd_ckpt_free(&c);
    return 0;
}
