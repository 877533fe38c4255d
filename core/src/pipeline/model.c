/* Model folders: finding the DiT, VAE, umT5 and tokenizer files in the
 * layouts users download, and the defaults that come with them.
 *
 * Layouts (checked in this order):
 *   diffusers   model_index.json; transformer/, vae/, text_encoder/,
 *               tokenizer/ (spiece.model or tokenizer.json)
 *   Wan2.1      diffusion_pytorch_model.safetensors (or its sharded
 *               .index.json), Wan2.1_VAE.safetensors|.pth,
 *               models_t5_umt5-xxl-enc.safetensors|-bf16.pth,
 *               google/umt5-xxl/ or tokenizer/ (spiece.model or
 *               tokenizer.json); config.json (num_heads, text_len).
 *               vdit's own (bundled) layout is the same plus vdit.json.
 *   a file      a DiT checkpoint; the other parts are looked up beside it
 *               (also under ComfyUI's names: wan_2.1_vae.safetensors,
 *               umt5_xxl_fp16 / _fp8_e4m3fn_scaled.safetensors).
 * vdit.json (optional) gives width, height, frames, fps, steps, guidance,
 * shift, sampler ("unipc", "dpm++", "euler"), text_len, num_heads,
 * negative_prompt, context ("noised", the default, or "clean": how the
 * engine holds given frames while it generates the others, see
 * docs/operations.md), and may name the parts (dit, vae, t5, tokenizer) by path
 * relative to the folder.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../json.h"
#include "pipeline.h"
#include "pipeline/pipeline_config.h" /* VDIT_DEFAULT_MODEL_DIR, from meson */

static const char wan_neg_prompt[] =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
    "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

const char *vdit_default_model_path(void)
{
    return VDIT_DEFAULT_MODEL_DIR;
}

/* out = a "/" b (b may be NULL); 0 if it did not fit. */
static int join(char *out, size_t sz, const char *a, const char *b)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    if (la + lb + 2 > sz) {
        out[0] = 0;
        return 0;
    }
    memcpy(out, a, la);
    if (b) {
        out[la] = '/';
        memcpy(out + la + 1, b, lb + 1);
    } else {
        out[la] = 0;
    }
    return 1;
}

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* First of `names` (relative to dir) that exists; writes it to out. */
static int find_first(const char *dir, const char *const *names, char *out, size_t outsz)
{
    for (int i = 0; names[i]; i++) {
        if (join(out, outsz, dir, names[i]) && is_file(out))
            return 1;
    }
    out[0] = 0;
    return 0;
}

static vj_val *read_json(vd_log *lg, const char *path, int *err)
{
    char *txt = NULL;
    size_t len;
    *err = 0;
    if (!is_file(path))
        return NULL;
    if ((*err = vd_read_file(lg, path, &txt, &len)))
        return NULL;
    char jerr[128];
    vj_val *v = vj_parse(txt, len, jerr, sizeof(jerr));
    free(txt);
    if (!v)
        *err = vd_err(lg, vj_error_code(jerr), "%s: %s", path, jerr);
    return v;
}

/* Opens one part's checkpoint (vd_ckpt_open recognises the format) with the
 * threads its conversions at load may use. */
static int open_part(const char *path, vd_log *lg, int n_threads, int flags, vd_ckpt **out)
{
    int ret = vd_ckpt_open_ex(path, flags, lg, out);
    if (!ret)
        vd_ckpt_set_threads(*out, n_threads);
    return ret;
}

int vd_model_check_files(const vdit_model *m, vd_log *lg)
{
    int ret = vd_ckpt_check(m->ck_dit, lg);
    return ret ? ret : vd_ckpt_check(m->ck_t5, lg);
}

/* vd_vae_detach's release: the VAE no longer reads this stored tensor. */
static void release_vae_tensor(void *ck, const void *data)
{
    vd_ckpt_release(ck, data);
}

/* The VAE's weights are held once, prepared for the kernels, not also as the
 * mapped checkpoint: both halves are detached from it while the model loads
 * (each tensor's pages go back as soon as its layer is prepared) and the
 * checkpoint is freed. Prepared for frames of the model's default size
 * (oneDNN's layout for the weights can depend on it; other sizes ask for the
 * same layout), in fp32 and, unless the model is loaded for fp32 or the CPU
 * has no native bf16, in bf16. After this the model is read-only: contexts
 * share it without locks. */
static int vae_detach(vdit_model *m, vk_prec prec, int n_threads)
{
    vk_ctx *kc = vk_ctx_new_ex(n_threads, -1, prec, &m->log);
    if (!kc)
        return VDIT_ERR_NOMEM;
    int ret = vd_vae_detach_part(m->vae, kc, VD_VAE_ENCODER | VD_VAE_DECODER, m->info.height,
                                 m->info.width, release_vae_tensor, m->ck_vae);
    vk_ctx_free(&kc);
    if (!ret)
        vd_ckpt_free(&m->ck_vae);
    return ret;
}

static int parse_sampler(const char *s)
{
    if (!strcmp(s, "unipc"))
        return VDIT_SAMPLER_UNIPC;
    if (!strcmp(s, "dpm++") || !strcmp(s, "dpmpp"))
        return VDIT_SAMPLER_DPMPP;
    if (!strcmp(s, "euler"))
        return VDIT_SAMPLER_EULER;
    return -1;
}

typedef struct parts {
    char dit[4096], vae[4096], t5[4096], tok[4096];
    int64_t n_heads, text_len;
} parts;

static void opt_path(const vj_val *vj, const char *key, const char *dir, char *out, size_t sz)
{
    const char *s = vj_str(vj_get(vj, key), NULL);
    if (s)
        join(out, sz, s[0] == '/' ? s : dir, s[0] == '/' ? NULL : s);
}

/* vdit.json is written by hand: every known key must have the right type and
 * a sensible value, and a mistake names the key (a wrong type must not fall
 * back to the default silently). Unknown keys are ignored (newer files). */
static int check_vdit_json(vd_log *lg, const vj_val *vj, const char *file)
{
    static const struct {
        const char *key;
        char kind; /* 'i' integer, 'n' number, 's' string */
        double lo, hi;
    } keys[] = {
        { "width", 'i', 16, 16384 },  { "height", 'i', 16, 16384 },   { "frames", 'i', 1, 100000 },
        { "fps", 'n', 1e-3, 1000 },    { "steps", 'i', 1, 10000 },      { "guidance", 'n', 0, 1000 },
        { "shift", 'n', 1e-3, 1000 },  { "text_len", 'i', 1, 65536 },   { "num_heads", 'i', 1, 4096 },
        { "sampler", 's', 0, 0 },      { "negative_prompt", 's', 0, 0 }, { "dit", 's', 0, 0 },
        { "vae", 's', 0, 0 },          { "t5", 's', 0, 0 },             { "tokenizer", 's', 0, 0 },
        { "context", 's', 0, 0 },      { "loop", 's', 0, 0 },          { "loop_turns", 'i', 0, 16 },
        { "loop_history", 'i', 0, 256 },
    };
    if (vj->type != VJ_OBJ)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: not a JSON object", file);
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const vj_val *v = vj_get(vj, keys[k].key);
        if (!v)
            continue;
        if (keys[k].kind == 's') {
            if (v->type != VJ_STR || (keys[k].key[0] != 'n' && !v->str[0]))
                return vd_err(lg, VDIT_ERR_FORMAT, "%s: \"%s\" must be a%s string", file,
                              keys[k].key, keys[k].key[0] != 'n' ? " non-empty" : "");
            if (!strcmp(keys[k].key, "sampler") && parse_sampler(v->str) < 0)
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "%s: unknown \"sampler\" '%s' (unipc, dpm++ or euler)", file, v->str);
            if (!strcmp(keys[k].key, "context") && strcmp(v->str, "noised") && strcmp(v->str, "clean"))
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "%s: unknown \"context\" '%s' (noised or clean)", file, v->str);
            if (!strcmp(keys[k].key, "loop") && strcmp(v->str, "bridge") && strcmp(v->str, "circular"))
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "%s: unknown \"loop\" '%s' (bridge or circular)", file, v->str);
            continue;
        }
        int is_int = v->type == VJ_NUM && (v->is_int || v->num == floor(v->num));
        if (v->type != VJ_NUM || (keys[k].kind == 'i' && !is_int) ||
            !(v->num >= keys[k].lo && v->num <= keys[k].hi))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: \"%s\" must be %s in [%g, %g]", file,
                          keys[k].key, keys[k].kind == 'i' ? "an integer" : "a number",
                          keys[k].lo, keys[k].hi);
    }
    return 0;
}

static int find_parts(const char *path, vd_log *lg, const vj_val *vj, parts *p)
{
    static const char *const dit_names[] = { "diffusion_pytorch_model.safetensors.index.json",
                                             "diffusion_pytorch_model.safetensors", NULL };
    /* the release's names, then ComfyUI's repackaged ones */
    static const char *const vae_names[] = { "Wan2.1_VAE.safetensors", "Wan2.1_VAE.pth",
                                             "wan_2.1_vae.safetensors", NULL };
    static const char *const t5_names[] = { "models_t5_umt5-xxl-enc.safetensors",
                                            "models_t5_umt5-xxl-enc-bf16.safetensors",
                                            "models_t5_umt5-xxl-enc-bf16.pth",
                                            "umt5_xxl_fp16.safetensors",
                                            "umt5_xxl_fp8_e4m3fn_scaled.safetensors", NULL };
    static const char *const tok_names[] = {
        "tokenizer/spiece.model",        "tokenizer/tokenizer.json",
        "google/umt5-xxl/spiece.model",  "google/umt5-xxl/tokenizer.json",
        "spiece.model",                  "tokenizer.json", NULL
    };
    char dir[4096];
    char tmp[4200];
    memset(p, 0, sizeof(*p));
    if (is_file(path)) {
        /* A DiT checkpoint file: the other parts live beside it. */
        join(p->dit, sizeof(p->dit), path, NULL);
        join(dir, sizeof(dir), path, NULL);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, sizeof(dir), ".");
    } else if (is_dir(path)) {
        join(dir, sizeof(dir), path, NULL);
        join(tmp, sizeof(tmp), dir, "model_index.json");
        if (is_file(tmp)) { /* diffusers */
            join(p->dit, sizeof(p->dit), dir, "transformer");
            join(p->vae, sizeof(p->vae), dir, "vae");
            join(p->t5, sizeof(p->t5), dir, "text_encoder");
            static const char *const dtok[] = { "tokenizer/spiece.model",
                                                "tokenizer/tokenizer.json", NULL };
            find_first(dir, dtok, p->tok, sizeof(p->tok));
            int e;
            join(tmp, sizeof(tmp), dir, "transformer/config.json");
            vj_val *cfg = read_json(lg, tmp, &e);
            if (e)
                return e;
            p->n_heads = vj_int(vj_get(cfg, "num_attention_heads"), 0);
            p->text_len = vj_int(vj_get(cfg, "text_len"), 0);
            vj_free(cfg);
        } else {
            find_first(dir, dit_names, p->dit, sizeof(p->dit));
        }
    } else {
        return vd_err(lg, VDIT_ERR_IO, "%s: no such file or folder", path);
    }
    if (!p->vae[0])
        find_first(dir, vae_names, p->vae, sizeof(p->vae));
    if (!p->t5[0])
        find_first(dir, t5_names, p->t5, sizeof(p->t5));
    if (!p->tok[0])
        find_first(dir, tok_names, p->tok, sizeof(p->tok));
    /* Official config.json (WanModel constructor arguments). */
    join(tmp, sizeof(tmp), dir, "config.json");
    int e;
    vj_val *cfg = read_json(lg, tmp, &e);
    if (e)
        return e;
    if (cfg) {
        if (!p->n_heads)
            p->n_heads = vj_int(vj_get(cfg, "num_heads"), 0);
        if (!p->text_len)
            p->text_len = vj_int(vj_get(cfg, "text_len"), 0);
        vj_free(cfg);
    }
    opt_path(vj, "dit", dir, p->dit, sizeof(p->dit));
    opt_path(vj, "vae", dir, p->vae, sizeof(p->vae));
    opt_path(vj, "t5", dir, p->t5, sizeof(p->t5));
    opt_path(vj, "tokenizer", dir, p->tok, sizeof(p->tok));
    if (vj_get(vj, "num_heads"))
        p->n_heads = vj_int(vj_get(vj, "num_heads"), 0);
    if (vj_get(vj, "text_len"))
        p->text_len = vj_int(vj_get(vj, "text_len"), 0);
    const char *what = !p->dit[0] ? "DiT (diffusion_pytorch_model.safetensors)"
                       : !p->vae[0] ? "VAE (Wan2.1_VAE.safetensors or .pth)"
                       : !p->t5[0]  ? "text encoder (models_t5_umt5-xxl-enc.safetensors)"
                       : !p->tok[0] ? "tokenizer (tokenizer/spiece.model or tokenizer.json)"
                                    : NULL;
    if (what)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no %s found", path, what);
    return 0;
}

static int read_defaults(vdit_model *m, const vj_val *vj, const char *path)
{
    vdit_model_info *in = &m->info;
    in->width = (int)vj_int(vj_get(vj, "width"), VD_WAN_WIDTH);
    in->height = (int)vj_int(vj_get(vj, "height"), VD_WAN_HEIGHT);
    in->n_frames = (int)vj_int(vj_get(vj, "frames"), VD_WAN_FRAMES);
    in->fps = (float)vj_num(vj_get(vj, "fps"), VD_WAN_FPS);
    in->steps = (int)vj_int(vj_get(vj, "steps"), VD_WAN_STEPS);
    in->guidance = (float)vj_num(vj_get(vj, "guidance"), VD_WAN_GUIDANCE);
    in->shift = (float)vj_num(vj_get(vj, "shift"), VD_WAN_SHIFT);
    const char *smp = vj_str(vj_get(vj, "sampler"), "unipc");
    in->sampler = parse_sampler(smp);
    in->spatial_align = 16;
    if (in->width < 16 || in->width > 16384 || in->height < 16 || in->height > 16384 ||
        in->n_frames < 1 || in->n_frames > 100000 || !(in->fps > 0) || in->steps < 1 ||
        in->steps > 10000 || in->guidance < 0 || !(in->shift > 0) || in->sampler < 0)
        return vd_err(&m->log, VDIT_ERR_FORMAT,
                      "%s/vdit.json: a default is out of range (width/height 16..16384, frames, "
                      "fps > 0, steps 1..10000, guidance >= 0, shift > 0, sampler unipc|dpm++|euler)",
                      path);
    m->clean_context = !strcmp(vj_str(vj_get(vj, "context"), "noised"), "clean");
    m->circular_loop = !strcmp(vj_str(vj_get(vj, "loop"), "bridge"), "circular");
    m->loop_turns = (int)vj_int(vj_get(vj, "loop_turns"), 1);
    m->loop_history = (int)vj_int(vj_get(vj, "loop_history"), 0);
    const char *neg = vj_str(vj_get(vj, "negative_prompt"), wan_neg_prompt);
    if (!(m->neg_prompt = strdup(neg)))
        return vd_err(&m->log, VDIT_ERR_NOMEM, "out of memory");
    return 0;
}

int vdit_model_load(const char *path, vdit_model_params *p, vdit_model **out)
{
    vdit_model_params defp;
    if (!p) {
        vdit_model_params_default(&defp);
        p = &defp;
    }
    p->error[0] = 0;
    if (out)
        *out = NULL;
    if (!path || !out) {
        snprintf(p->error, sizeof(p->error), "vdit_model_load: path and out are required");
        return VDIT_ERR_INVALID_ARG;
    }
    if (p->precision < VDIT_PRECISION_AUTO || p->precision > VDIT_PRECISION_BF16) {
        snprintf(p->error, sizeof(p->error),
                 "vdit_model_load: precision %d is not auto (0), fp32 (1) or bf16 (2)",
                 p->precision);
        return VDIT_ERR_INVALID_ARG;
    }
    if (p->n_threads < 0 || p->n_threads > 4096) {
        snprintf(p->error, sizeof(p->error), "vdit_model_load: n_threads %d out of range (0..4096)",
                 p->n_threads);
        return VDIT_ERR_INVALID_ARG;
    }
    /* Threads for the work done while loading: widening fp8 weights. */
    int n_threads = p->n_threads > 0 ? p->n_threads : vd_cpu_count();
    vdit_model *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(p->error, sizeof(p->error), "out of memory");
        return VDIT_ERR_NOMEM;
    }
    m->log.cb = p->log_cb;
    m->log.user = p->log_user;
    m->log.level = p->log_level;
    int ret = 0;
    vj_val *vj = NULL;
    parts *pt = malloc(sizeof(*pt));
    if (!pt) {
        ret = vd_err(&m->log, VDIT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (is_dir(path)) {
        char tmp[4200];
        join(tmp, sizeof(tmp), path, "vdit.json");
        vj = read_json(&m->log, tmp, &ret);
        if (ret || (vj && (ret = check_vdit_json(&m->log, vj, tmp))))
            goto fail;
    }
    if ((ret = find_parts(path, &m->log, vj, pt)) || (ret = read_defaults(m, vj, path)))
        goto fail;
    int64_t text_len = pt->text_len > 0 ? pt->text_len : VD_WAN_TEXT_LEN;
    int ck_flags = p->no_mmap ? VD_CKPT_READ : 0;
    vd_logf(&m->log, VDIT_LOG_INFO, "loading DiT %s, VAE %s, text encoder %s, tokenizer %s",
            pt->dit, pt->vae, pt->t5, pt->tok);
    if ((ret = open_part(pt->dit, &m->log, n_threads, ck_flags, &m->ck_dit)) ||
        (ret = vd_dit_canonicalize(m->ck_dit, &m->log)) ||
        (ret = vd_dit_load_ex(m->ck_dit, text_len, pt->n_heads, &m->log, &m->dit)))
        goto fail;
    /* bf16 contexts read a bf16 copy of fp32/fp16 DiT weights made once here */
    vk_prec prep = p->precision != VDIT_PRECISION_FP32 && vk_isa_native_bf16(vk_isa_default())
                       ? VK_PREC_BF16
                       : VK_PREC_F32;
    if (prep == VK_PREC_BF16 && (ret = vd_dit_prepare(m->dit, VK_PREC_BF16, n_threads))) {
        ret = vd_err(&m->log, ret, "%s: out of memory for the bf16 copy of the weights (load "
                     "with precision fp32 to do without it)", pt->dit);
        goto fail;
    }
    if ((ret = open_part(pt->vae, &m->log, n_threads, ck_flags, &m->ck_vae)) ||
        (ret = vd_vae_canonicalize(m->ck_vae, &m->log)) ||
        (ret = vd_vae_load(m->ck_vae, &m->log, &m->vae)) ||
        (ret = vae_detach(m, prep, n_threads)))
        goto fail;
    if ((ret = open_part(pt->t5, &m->log, n_threads, ck_flags, &m->ck_t5)) ||
        (ret = vd_t5_canonicalize(m->ck_t5, &m->log)) ||
        (ret = vd_t5_load(m->ck_t5, &m->log, &m->t5)))
        goto fail;
    if ((ret = vd_tok_load(pt->tok, &m->log, &m->tok)))
        goto fail;
    const vd_dit_config *dc = vd_dit_get_config(m->dit);
    const vd_vae_config *vc = vd_vae_get_config(m->vae);
    const vd_t5_config *tc = vd_t5_get_config(m->t5);
    if (dc->i2v) {
        ret = vd_err(&m->log, VDIT_ERR_UNSUPPORTED,
                     "%s: image-to-video (i2v) DiT checkpoints are not supported by the "
                     "generation pipeline; use a text-to-video model", pt->dit);
        goto fail;
    }
    if (dc->in_dim != vc->z_dim || dc->out_dim != vc->z_dim || dc->text_dim != tc->dim) {
        ret = vd_err(&m->log, VDIT_ERR_FORMAT,
                     "%s: parts do not fit together: DiT in/out %lld/%lld and text %lld, VAE "
                     "z_dim %d, text encoder dim %lld",
                     path, (long long)dc->in_dim, (long long)dc->out_dim,
                     (long long)dc->text_dim, vc->z_dim, (long long)tc->dim);
        goto fail;
    }
    if (vd_tok_vocab_size(m->tok) > tc->vocab) {
        ret = vd_err(&m->log, VDIT_ERR_FORMAT,
                     "%s: tokenizer has %d pieces but the text encoder only %lld embeddings",
                     pt->tok, vd_tok_vocab_size(m->tok), (long long)tc->vocab);
        goto fail;
    }
    m->z_dim = vc->z_dim;
    m->info.text_len = (int)dc->text_len;
    m->info.dim = dc->dim;
    m->info.n_layers = dc->n_layers;
    m->info.n_heads = dc->n_heads;
    vj_free(vj);
    free(pt);
    *out = m;
    return 0;
fail:
    snprintf(p->error, sizeof(p->error), "%.255s", m->log.msg[0] ? m->log.msg : vdit_strerror(ret));
    vj_free(vj);
    free(pt);
    vdit_model_free(&m);
    return ret ? ret : VDIT_ERR_INTERNAL;
}

void vdit_model_free(vdit_model **pm)
{
    vdit_model *m = pm ? *pm : NULL;
    if (!m)
        return;
    vd_dit_free(&m->dit);
    vd_vae_free(&m->vae);
    vd_t5_free(&m->t5);
    vd_tok_free(&m->tok);
    vd_ckpt_free(&m->ck_dit);
    vd_ckpt_free(&m->ck_vae);
    vd_ckpt_free(&m->ck_t5);
    free(m->neg_prompt);
    free(m);
    *pm = NULL;
}

int vdit_model_get_info(const vdit_model *m, vdit_model_info *out)
{
    if (!m || !out)
        return VDIT_ERR_INVALID_ARG;
    *out = m->info;
    return 0;
}
