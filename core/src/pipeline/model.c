/* Model folders: finding the DiT, VAE, umT5 and tokenizer files in the
 * layouts users download, and the defaults that come with them.
 *
 * Layouts (checked in this order):
 *   diffusers   model_index.json; transformer/, vae/, text_encoder/,
 *               tokenizer/ (spiece.model or tokenizer.json)
 *   a family's  the names each family (family.h) lists, e.g. Wan's
 *               diffusion_pytorch_model.safetensors (or its sharded
 *               .index.json), Wan2.1_VAE / Wan2.2_VAE .safetensors|.pth,
 *               models_t5_umt5-xxl-enc.safetensors|-bf16.pth,
 *               google/umt5-xxl/ or tokenizer/ (spiece.model or
 *               tokenizer.json); config.json (num_heads, text_len).
 *               vdit's own (bundled) layout is the same plus vdit.json.
 *   a file      a DiT checkpoint; the other parts are looked up beside it
 *               (also under ComfyUI's names: wan_2.1_vae.safetensors,
 *               wan2.2_vae.safetensors, umt5_xxl_fp16 /
 *               _fp8_e4m3fn_scaled.safetensors).
 * The family is the one whose VAE name the folder has, then confirmed from
 * the loaded parts (a folder may hold another family's files under a name
 * vdit.json gives): its defaults are used where vdit.json gives none.
 * vdit.json (optional) gives width, height, frames, fps, steps, guidance,
 * shift, sampler ("unipc", "dpm++", "euler", "fewstep"), the few-step recipe
 * of a distilled model (timesteps: a list of 1..16 decreasing timesteps in
 * 1..1000, which makes fewstep the sampler, the steps its length and
 * guidance 1 unless given; warp: true to look the list up in the shifted
 * table, default false), causal (true: a causal model, which loads but
 * does not generate yet), text_len, num_heads,
 * negative_prompt, context ("noised", the default, or "clean": how the
 * engine holds given frames while it generates the others, see
 * docs/operations.md), and may name the parts (dit, vae, t5, tokenizer) by path
 * relative to the folder.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../json.h"
#include "pipeline.h"
#include "pipeline/pipeline_config.h" /* VDIT_DEFAULT_MODEL_DIR, from meson */
#include "../ckpt.h"

/* The few-step fields came out of the reserved bytes: the struct's size
 * and every older field's place are unchanged. */
_Static_assert(offsetof(vdit_model_info, reserved) + sizeof(((vdit_model_info *)0)->reserved) ==
                   offsetof(vdit_model_info, n_timesteps) + 64,
               "vdit_model_info's few-step fields must fit the 64 reserved bytes");

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

int vd_model_check_files(const vdit_model *m, vd_log *lg)
{
    return m->fam->check_files(m, lg);
}

static int parse_sampler(const char *s)
{
    if (!strcmp(s, "unipc"))
        return VDIT_SAMPLER_UNIPC;
    if (!strcmp(s, "dpm++") || !strcmp(s, "dpmpp"))
        return VDIT_SAMPLER_DPMPP;
    if (!strcmp(s, "euler"))
        return VDIT_SAMPLER_EULER;
    if (!strcmp(s, "fewstep"))
        return VDIT_SAMPLER_FEWSTEP;
    return -1;
}

typedef vd_files parts;

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
    static const char *const bools[] = { "warp", "causal" };
    for (size_t k = 0; k < 2; k++) {
        const vj_val *v = vj_get(vj, bools[k]);
        if (v && v->type != VJ_BOOL)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: \"%s\" must be true or false", file, bools[k]);
    }
    const vj_val *tl = vj_get(vj, "timesteps");
    if (tl) {
        int list[16], ok = tl->type == VJ_ARR && tl->len >= 1 && tl->len <= 16;
        for (size_t i = 0; ok && i < tl->len; i++) {
            const vj_val *e = &tl->kids[i];
            ok = e->type == VJ_NUM && e->num == floor(e->num) && e->num >= 1 && e->num <= 1000;
            list[i] = ok ? (int)e->num : 0;
        }
        if (!ok || vd_fewstep_check(list, (int)tl->len))
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: \"timesteps\" must be a list of 1 to 16 integers in 1..1000, "
                          "decreasing (e.g. [1000, 757, 522])", file);
        const char *smp = vj_str(vj_get(vj, "sampler"), "fewstep");
        if (parse_sampler(smp) != VDIT_SAMPLER_FEWSTEP)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: \"timesteps\" is the few-step sampler's list: \"sampler\" must be "
                          "\"fewstep\" (or left out), not '%s'", file, smp);
        const vj_val *st = vj_get(vj, "steps");
        if (st && st->type == VJ_NUM && st->num != (double)tl->len)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: \"steps\" %g differs from the %zu \"timesteps\" listed", file,
                          st->num, tl->len);
    }
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
                              "%s: unknown \"sampler\" '%s' (unipc, dpm++, euler or fewstep)",
                              file, v->str);
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

/* A folder's parts, found under the names of the family whose VAE it holds
 * (the first family otherwise); *fam receives that family. */
static int find_parts(const char *path, vd_log *lg, const vj_val *vj, parts *p,
                      const vd_family **fam)
{
    char dir[4096];
    char tmp[4200];
    memset(p, 0, sizeof(*p));
    *fam = vd_families[0];
    int diffusers = 0;
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
            diffusers = 1;
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
        }
    } else {
        return vd_err(lg, VDIT_ERR_IO, "%s: no such file or folder", path);
    }
    /* the family: the first whose VAE is here under one of its names */
    for (int i = 0; !diffusers && vd_families[i]; i++) {
        char v[4096];
        if (find_first(dir, vd_families[i]->vae_names, v, sizeof(v))) {
            *fam = vd_families[i];
            memcpy(p->vae, v, sizeof(v));
            break;
        }
    }
    const vd_family *f = *fam;
    if (!p->dit[0])
        find_first(dir, f->dit_names, p->dit, sizeof(p->dit));
    if (!p->t5[0])
        find_first(dir, f->t5_names, p->t5, sizeof(p->t5));
    if (!p->tok[0])
        find_first(dir, f->tok_names, p->tok, sizeof(p->tok));
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
    char what[700] = "";
    if (!p->dit[0]) {
        snprintf(what, sizeof(what), "DiT (%s)", f->dit_names[1] ? f->dit_names[1] : f->dit_names[0]);
    } else if (!p->vae[0]) {
        size_t o = (size_t)snprintf(what, sizeof(what), "VAE (");
        for (int i = 0; vd_families[i] && o < sizeof(what); i++)
            o += (size_t)snprintf(what + o, sizeof(what) - o, "%s%s", i ? " or " : "",
                                  vd_families[i]->vae_names[0]);
        if (o < sizeof(what))
            snprintf(what + o, sizeof(what) - o, ")");
    } else if (!p->t5[0])
        snprintf(what, sizeof(what), "text encoder (%s)", f->t5_names[0]);
    else if (!p->tok[0])
        snprintf(what, sizeof(what), "tokenizer (%s)", f->tok_names[0]);
    if (what[0])
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no %s found", path, what);
    return 0;
}

static int read_defaults(vdit_model *m, const vj_val *vj, const char *path)
{
    vdit_model_info *in = &m->info;
    const vdit_model_info *d = &m->fam->defaults;
    in->width = (int)vj_int(vj_get(vj, "width"), d->width);
    in->height = (int)vj_int(vj_get(vj, "height"), d->height);
    in->n_frames = (int)vj_int(vj_get(vj, "frames"), d->n_frames);
    in->fps = (float)vj_num(vj_get(vj, "fps"), d->fps);
    in->steps = (int)vj_int(vj_get(vj, "steps"), d->steps);
    in->guidance = (float)vj_num(vj_get(vj, "guidance"), d->guidance);
    in->shift = (float)vj_num(vj_get(vj, "shift"), d->shift);
    const char *smp = vj_str(vj_get(vj, "sampler"), NULL);
    in->sampler = smp ? parse_sampler(smp) : d->sampler;
    /* A distilled model's recipe (checked by check_vdit_json): its list,
     * the few-step sampler, as many steps, no guidance unless given. */
    const vj_val *tl = vj_get(vj, "timesteps");
    in->n_timesteps = tl ? (int)tl->len : 0;
    for (int i = 0; i < in->n_timesteps; i++)
        in->timesteps[i] = (int16_t)tl->kids[i].num;
    in->timesteps_warped = (uint8_t)vj_bool(vj_get(vj, "warp"), 0);
    in->causal = (uint8_t)vj_bool(vj_get(vj, "causal"), 0);
    if (tl) {
        in->sampler = VDIT_SAMPLER_FEWSTEP;
        in->steps = in->n_timesteps;
        in->guidance = (float)vj_num(vj_get(vj, "guidance"), 1.0);
    }
    in->spatial_align = d->spatial_align; /* the loaded parts' once known */
    if (in->width < 16 || in->width > 16384 || in->height < 16 || in->height > 16384 ||
        in->n_frames < 1 || in->n_frames > 100000 || !(in->fps > 0) || in->steps < 1 ||
        in->steps > 10000 || in->guidance < 0 || !(in->shift > 0) || in->sampler < 0)
        return vd_err(&m->log, VDIT_ERR_FORMAT,
                      "%s/vdit.json: a default is out of range (width/height 16..16384, frames, "
                      "fps > 0, steps 1..10000, guidance >= 0, shift > 0, sampler unipc|dpm++|euler|fewstep)",
                      path);
    m->given_t0 = m->fam->given_t0;
    const char *ctxs = vj_str(vj_get(vj, "context"), NULL);
    m->clean_context = ctxs ? !strcmp(ctxs, "clean") : m->fam->given_t0;
    m->circular_loop = !strcmp(vj_str(vj_get(vj, "loop"), "bridge"), "circular");
    m->loop_turns = (int)vj_int(vj_get(vj, "loop_turns"), 1);
    m->loop_history = (int)vj_int(vj_get(vj, "loop_history"), 0);
    const char *neg = vj_str(vj_get(vj, "negative_prompt"), m->fam->neg_prompt);
    free(m->neg_prompt);
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
    if (p->n_loras < 0 || p->n_loras > 64 || (p->n_loras && !p->loras)) {
        snprintf(p->error, sizeof(p->error),
                 "vdit_model_load: n_loras %d out of range (0..64, with loras set)", p->n_loras);
        return VDIT_ERR_INVALID_ARG;
    }
    for (int i = 0; i < p->n_loras; i++) {
        if (!p->loras[i].path || !isfinite(p->loras[i].scale)) {
            snprintf(p->error, sizeof(p->error), "vdit_model_load: LoRA %d has %s", i,
                     p->loras[i].path ? "a scale that is not a finite number" : "no path");
            return VDIT_ERR_INVALID_ARG;
        }
    }
    {
        vk_device dv;
        vd_log dl = { 0 };
        if (vk_device_parse(p->device, &dv, &dl)) {
            snprintf(p->error, sizeof(p->error), "vdit_model_load: %.230s", dl.msg);
            return VDIT_ERR_INVALID_ARG;
        }
    }
    /* Threads for the work done while loading: widening fp8 weights,
     * merging LoRAs. */
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
    if ((ret = find_parts(path, &m->log, vj, pt, &m->fam)) || (ret = read_defaults(m, vj, path)))
        goto fail;
    pt->loras = p->loras;
    pt->n_loras = p->n_loras;
    int ck_flags = p->no_mmap ? VD_CKPT_READ : 0;
    vd_logf(&m->log, VDIT_LOG_INFO, "loading %s: DiT %s, VAE %s, text encoder %s, tokenizer %s",
            m->fam->name, pt->dit, pt->vae, pt->t5, pt->tok);
    /* bf16 contexts read a bf16 copy of fp32/fp16 weights made once here */
    vk_prec prep = p->precision != VDIT_PRECISION_FP32 && vk_isa_native_bf16(vk_isa_default())
                       ? VK_PREC_BF16
                       : VK_PREC_F32;
    if ((ret = vk_device_parse(p->device, &m->dev, &m->log)) ||
        (ret = vk_device_open(&m->dev, &m->cuda, &m->log)))
        goto fail;
    m->cuda_bf16 = p->precision != VDIT_PRECISION_FP32;
    if (m->cuda)
        vd_logf(&m->log, VDIT_LOG_INFO, "device cuda:%d: %s", m->dev.index,
                vk_device_describe(m->cuda));
    if ((ret = m->fam->load(m, pt, prep, n_threads, ck_flags)))
        goto fail;
    /* the parts say which family this is (the folder's names only guessed) */
    const vd_family *fam = m->fam->identify(m);
    if (fam != m->fam) {
        vd_logf(&m->log, VDIT_LOG_INFO, "%s: the parts are %s's", path, fam->name);
        m->fam = fam;
        if ((ret = read_defaults(m, vj, path))) /* its defaults, not the guess's */
            goto fail;
    }
    m->geom = m->fam->geom(m);
    m->info.spatial_align = m->geom.align;
    {
        char dir[4096];
        join(dir, sizeof(dir), path, NULL);
        char *sl = is_dir(dir) ? NULL : strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else if (!is_dir(dir))
            snprintf(dir, sizeof(dir), ".");
        if ((ret = vd_decoder_load(m, p->decoder, dir, prep, n_threads)))
            goto fail;
    }
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
    vd_decoder_free(m);
    if (m->fam)
        m->fam->free(m);
    vk_device_close(&m->cuda); /* after the parts whose device memory it holds */
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

const char *vdit_model_family(const vdit_model *m)
{
    return m && m->fam ? m->fam->name : "";
}

const char *vdit_model_family_title(const vdit_model *m)
{
    return m && m->fam ? m->fam->title : "";
}
