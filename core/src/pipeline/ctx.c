/* Contexts: per-run state, the text-condition cache, progress and
 * cancellation, and the noise generator. */
#include <math.h>
#include <stdio.h>

#include "pipeline.h"

void vdit_gen_params_default(vdit_gen_params *p)
{
    memset(p, 0, sizeof(*p));
    p->steps = VDIT_DEFAULT_STEPS;
    p->guidance = (float)VDIT_DEFAULT_GUIDANCE;
    p->shift = (float)VDIT_DEFAULT_SHIFT;
    p->sampler = VDIT_DEFAULT_SAMPLER;
    p->seed = VDIT_DEFAULT_SEED;
    p->strength = (float)VDIT_DEFAULT_STRENGTH;
}

int vdit_ctx_init(vdit_model *model, const vdit_ctx_params *p, vdit_ctx **out)
{
    vdit_ctx_params defp;
    if (!out)
        return VDIT_ERR_INVALID_ARG;
    *out = NULL;
    if (!model)
        return VDIT_ERR_INVALID_ARG;
    if (!p) {
        vdit_ctx_params_default(&defp);
        p = &defp;
    }
    if (p->n_threads < 0 || p->n_threads > 4096)
        return VDIT_ERR_INVALID_ARG;
    if (p->precision < VDIT_PRECISION_AUTO || p->precision > VDIT_PRECISION_BF16) {
        vd_log lg = { .cb = p->log_cb, .user = p->log_user, .level = p->log_level };
        return vd_err(&lg, VDIT_ERR_INVALID_ARG, "precision %d is not one of auto (0), fp32 (1), "
                      "bf16 (2)", p->precision);
    }
    vdit_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return VDIT_ERR_NOMEM;
    c->model = model;
    c->log.cb = p->log_cb;
    c->log.user = p->log_user;
    c->log.level = p->log_level;
    c->progress_cb = p->progress_cb;
    c->progress_user = p->progress_user;
    c->n_threads = p->n_threads > 0 ? p->n_threads : vd_cpu_count();
    atomic_init(&c->cancel, 0);
    /* the device: the model's; a context naming another is refused */
    if (p->device && strcmp(p->device, "auto")) {
        vk_device d;
        char want[32], have[32];
        int ret = vk_device_parse(p->device, &d, &c->log);
        if (!ret && (d.cuda != model->dev.cuda || (d.cuda && d.index != model->dev.index)))
            ret = vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                         "device %s: the model was loaded for %s, and a context runs where its "
                         "model's weights are (load the model with device %s)",
                         vk_device_name(&d, want, sizeof(want)),
                         vk_device_name(&model->dev, have, sizeof(have)), want);
        if (ret) {
            vdit_ctx_free(&c);
            return ret;
        }
    }
    if (model->cuda && p->precision != VDIT_PRECISION_AUTO &&
        (p->precision == VDIT_PRECISION_BF16) != model->cuda_bf16) {
        int ret = vd_err(&c->log, VDIT_ERR_INVALID_ARG,
                         "precision %s: the model's weights are on cuda:%d in %s (load it with "
                         "precision %s)",
                         p->precision == VDIT_PRECISION_BF16 ? "bf16" : "fp32", model->dev.index,
                         model->cuda_bf16 ? "bf16" : "fp32",
                         p->precision == VDIT_PRECISION_BF16 ? "bf16" : "fp32");
        vdit_ctx_free(&c);
        return ret;
    }
    static const vk_prec prec[] = { VK_PREC_AUTO, VK_PREC_F32, VK_PREC_BF16 };
    /* with a device the CPU computes only the small parts: in fp32 for an
     * exact (fp32) model, else at its best precision */
    c->kc = vk_ctx_new_ex(c->n_threads, -1,
                          model->cuda ? (model->cuda_bf16 ? VK_PREC_AUTO : VK_PREC_F32)
                                      : prec[p->precision],
                          &c->log);
    if (!c->kc) {
        int err = p->precision == VDIT_PRECISION_BF16 ? VDIT_ERR_UNSUPPORTED : VDIT_ERR_NOMEM;
        vdit_ctx_free(&c);
        return err; /* the reason went to the log callback */
    }
    if (model->cuda) {
        vk_device d = model->dev;
        int ret = vk_device_open(&d, &c->kc->cuda, &c->log);
        if (ret) {
            vdit_ctx_free(&c);
            return ret;
        }
        c->kc->cuda_bf16 = model->cuda_bf16;
        snprintf(c->compute, sizeof(c->compute), "%s on cuda:%d (%s); CPU parts %s on %s, %d thread%s",
                 model->cuda_bf16 ? "bf16" : "fp32", model->dev.index,
                 vk_device_describe(c->kc->cuda), vk_prec_name(c->kc->prec),
                 vk_isa_name(c->kc->isa), c->n_threads, c->n_threads == 1 ? "" : "s");
    } else {
        snprintf(c->compute, sizeof(c->compute), "%s on %s, %d thread%s",
                 vk_prec_name(c->kc->prec), vk_isa_name(c->kc->isa), c->n_threads,
                 c->n_threads == 1 ? "" : "s");
    }
    vd_logf(&c->log, VDIT_LOG_INFO, "compute: %s", c->compute);
    if (!(c->run = model->fam->run_new(model, c->kc))) {
        vdit_ctx_free(&c);
        return VDIT_ERR_NOMEM;
    }
    *out = c;
    return 0;
}

int vdit_ctx_get_stats(const vdit_ctx *c, vdit_stats *out)
{
    if (!c || !out)
        return VDIT_ERR_INVALID_ARG;
    *out = c->stats;
    return 0;
}

void vdit_ctx_free(vdit_ctx **pc)
{
    vdit_ctx *c = pc ? *pc : NULL;
    if (!c)
        return;
    for (int i = 0; i < 2; i++) {
        c->model->fam->cond_free(&c->cond[i]);
        free(c->cond_text[i]);
    }
    for (int i = 0; i < VD_TEXT_CACHE; i++) {
        free(c->text[i].text);
        vd_free(c->text[i].emb);
    }
    if (c->run)
        c->model->fam->run_free(&c->run);
    vk_ctx_free(&c->kc);
    free(c);
    *pc = NULL;
}

const char *vdit_ctx_compute(const vdit_ctx *c)
{
    return c ? c->compute : "";
}

const char *vdit_ctx_last_error(const vdit_ctx *c)
{
    return c ? c->log.msg : "";
}

void vdit_ctx_cancel(vdit_ctx *c)
{
    if (c)
        atomic_store(&c->cancel, 1);
}

void vd_ctx_begin(vdit_ctx *c)
{
    c->log.msg[0] = 0;
    memset(&c->stats, 0, sizeof(c->stats));
    atomic_store(&c->cancel, 0);
}

int vd_ctx_progress(vdit_ctx *c, int stage, int step, int total)
{
    if (c->progress_cb && c->progress_cb(c->progress_user, stage, step, total))
        atomic_store(&c->cancel, 1);
    if (atomic_load(&c->cancel))
        return vd_err(&c->log, VDIT_ERR_CANCELLED, "cancelled during %s (step %d of %d)",
                      vdit_stage_name(stage), step, total);
    return 0;
}

/* A prompt's embedding (the family's text encoder: encode_text), cached
 * per context. */
static int text_embed(vdit_ctx *c, const char *text, const float **emb, int64_t *n_out)
{
    vdit_model *m = c->model;
    vd_text_entry *e = NULL, *victim = &c->text[0];
    for (int i = 0; i < VD_TEXT_CACHE; i++) {
        if (c->text[i].text && !strcmp(c->text[i].text, text)) {
            e = &c->text[i];
            break;
        }
        if (!c->text[i].text || c->text[i].used < victim->used)
            victim = &c->text[i];
    }
    if (e) {
        e->used = ++c->text_clock;
        *emb = e->emb;
        *n_out = e->n;
        return 0;
    }
    char *key = strdup(text);
    if (!key)
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    float *out = NULL;
    int64_t n = 0;
    int n_all = 0;
    int ret = m->fam->encode_text(c, text, &out, &n, &n_all);
    if (ret) {
        free(key);
        return ret;
    }
    if (n_all > m->info.text_len)
        vd_logf(&c->log, VDIT_LOG_WARNING, "prompt has %d tokens; only the first %d are used",
                n_all, m->info.text_len);
    free(victim->text);
    vd_free(victim->emb);
    victim->text = key;
    victim->emb = out;
    victim->n = n;
    victim->used = ++c->text_clock;
    *emb = victim->emb;
    *n_out = victim->n;
    return 0;
}

int vd_ctx_cond(vdit_ctx *c, int slot, const char *text, const vd_cond **out)
{
    if (c->cond[slot] && !strcmp(c->cond_text[slot], text)) {
        *out = c->cond[slot];
        return 0;
    }
    /* The other slot may already hold this text. Calls ask for slot 0 (the
     * prompt) first, then slot 1: a prompt found in slot 1 moves to slot 0
     * so that filling slot 1 next cannot free it; a negative prompt equal
     * to the prompt shares slot 0's condition. */
    int other = !slot;
    if (c->cond[other] && !strcmp(c->cond_text[other], text)) {
        if (slot == 0) {
            vd_cond *tc = c->cond[0];
            char *tt = c->cond_text[0];
            c->cond[0] = c->cond[1];
            c->cond_text[0] = c->cond_text[1];
            c->cond[1] = tc;
            c->cond_text[1] = tt;
        }
        *out = c->cond[0];
        return 0;
    }
    const float *emb = NULL;
    int64_t n = 0;
    int ret = text_embed(c, text, &emb, &n);
    if (ret)
        return ret;
    c->model->fam->cond_free(&c->cond[slot]);
    free(c->cond_text[slot]);
    c->cond_text[slot] = NULL;
    if (!(c->cond_text[slot] = strdup(text)))
        return vd_err(&c->log, VDIT_ERR_NOMEM, "out of memory");
    if ((ret = c->model->fam->cond_new(c->run, emb, n, &c->cond[slot]))) {
        free(c->cond_text[slot]);
        c->cond_text[slot] = NULL;
        return ret;
    }
    *out = c->cond[slot];
    return 0;
}

/* ---- noise ----------------------------------------------------------------
 * Element k of (seed, stream): z1 = mix(key + 2k + 1), z2 = mix(key + 2k + 2)
 * with key = mix(seed ^ mix(stream + golden)) and mix the splitmix64
 * finaliser; u1 = (top 53 bits of z1 + 1) / 2^53 in (0, 1], u2 = top 53
 * bits of z2 / 2^53; value = float(sqrt(-2 ln u1) cos(2 pi u2)) in double.
 * Independent of thread count and of the order elements are drawn in.
 * (Cheap next to one DiT step, so it runs in the calling thread.) */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void vd_noise_fill(uint64_t seed, uint64_t stream, float *x, int64_t n)
{
    const uint64_t golden = 0x9e3779b97f4a7c15ull;
    uint64_t key = mix64(seed ^ mix64(stream + golden));
    for (int64_t k = 0; k < n; k++) {
        uint64_t z1 = mix64(key + 2 * (uint64_t)k + 1);
        uint64_t z2 = mix64(key + 2 * (uint64_t)k + 2);
        double u1 = ((double)(z1 >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(z2 >> 11) * (1.0 / 9007199254740992.0);
        x[k] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}
