/* Which decoder turns latents into frames (pipeline.h, vd_decoder_load):
 * the family's VAE, or a TAEHV loaded beside it. The engine decodes only
 * through the functions below, so generate, edit, stream and extend all
 * use the model's choice; the VAE's encoder is used either way. */
#include <stdio.h>
#include <sys/stat.h>

#include "../vae/taehv.h"
#include "pipeline.h"

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

/* The first of the family's TAEHV names present in dir. */
static int find_tae(vdit_model *m, const char *dir, char *out, size_t sz)
{
    const char *const *names = m->fam->tae_names;
    char list[512] = "";
    for (int i = 0; names && names[i]; i++) {
        if ((size_t)snprintf(out, sz, "%s/%s", dir, names[i]) < sz && is_file(out))
            return 0;
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", names[i]);
    }
    if (!names || !names[0])
        return vd_err(&m->log, VDIT_ERR_UNSUPPORTED,
                      "decoder \"tae\": no TAEHV is known for %s models (give a file's path)",
                      m->fam->name);
    return vd_err(&m->log, VDIT_ERR_MISSING,
                  "decoder \"tae\": no TAEHV file in %s (looked for %s; madebyollin/taehv "
                  "publishes them, or give a file's path)",
                  dir, list);
}

int vd_decoder_load(vdit_model *m, const char *decoder, const char *dir, vk_prec prep,
                    int n_threads)
{
    if (!decoder || !strcmp(decoder, "vae"))
        return 0;
    if (!decoder[0])
        return vd_err(&m->log, VDIT_ERR_INVALID_ARG,
                      "decoder: empty (\"vae\", \"tae\" or a TAEHV file's path)");
    char path[4200];
    int r;
    if (!strcmp(decoder, "tae")) {
        if ((r = find_tae(m, dir, path, sizeof(path))))
            return r;
    } else {
        snprintf(path, sizeof(path), "%s", decoder);
        if (!is_file(path))
            return vd_err(&m->log, VDIT_ERR_MISSING,
                          "decoder: %s is not a file (\"vae\", \"tae\" or a TAEHV file's path)",
                          decoder);
    }
    vd_taehv *t = NULL;
    if ((r = vd_taehv_load_file(path, &m->log, &t)))
        return r;
    const vd_taehv_config *tc = vd_taehv_get_config(t);
    if (tc->z_dim != m->geom.z_dim || tc->s_factor != m->geom.s_factor ||
        tc->t_factor != m->geom.t_factor) {
        r = vd_err(&m->log, VDIT_ERR_FORMAT,
                   "%s: a TAEHV decoder of %d latent channels at 1/%d size, but this %s model's "
                   "latents have %d channels at 1/%d (taew2_1 decodes Wan2.1's, taew2_2 Wan2.2 "
                   "TI2V-5B's)",
                   path, tc->z_dim, tc->s_factor, m->fam->name, m->geom.z_dim, m->geom.s_factor);
        vd_taehv_free(&t);
        return r;
    }
    /* prepared once for the kernels (the model's default frame size), as the VAE is */
    vk_ctx *kc = vk_ctx_new_ex(n_threads, -1, prep, &m->log);
    if (!kc) {
        vd_taehv_free(&t);
        return VDIT_ERR_NOMEM;
    }
    r = vd_taehv_detach(t, kc, m->info.height / tc->s_factor, m->info.width / tc->s_factor);
    vk_ctx_free(&kc);
    if (r) {
        vd_taehv_free(&t);
        return vd_err(&m->log, r, "%s: cannot prepare the TAEHV decoder: %s", path,
                      vdit_strerror(r));
    }
    vd_logf(&m->log, VDIT_LOG_INFO, "decoder: TAEHV %s (%d latent channels, widths %d %d %d %d)",
            path, tc->z_dim, tc->width[0], tc->width[1], tc->width[2], tc->width[3]);
    m->tae = t;
    return 0;
}

void vd_decoder_free(vdit_model *m)
{
    vd_taehv_free(&m->tae);
}

int vd_decode(const vdit_model *m, vk_ctx *kc, const float *z, int tl, int lh, int lw, float *px)
{
    if (m->tae)
        return vd_taehv_decode(m->tae, kc, z, tl, lh, lw, px);
    return m->fam->vae_decode(m, kc, z, tl, lh, lw, px);
}

void *vd_dec_stream_new(const vdit_model *m, vk_ctx *kc, int lh, int lw, vd_log *lg)
{
    if (!m->tae)
        return m->fam->dec_stream_new(m, kc, lh, lw, lg);
    vd_taehv_stream *s = NULL;
    if (vd_taehv_stream_new(m->tae, kc, lh, lw, 0, &s))
        vd_err(lg, VDIT_ERR_NOMEM, "out of memory (TAEHV decoder stream, latent %dx%d)", lw, lh);
    return s;
}

int vd_dec_stream_push(const vdit_model *m, void *s, const float *lat, float *frames, int *n_out)
{
    if (m->tae)
        return vd_taehv_stream_push(s, lat, frames, n_out);
    return m->fam->dec_stream_push(s, lat, frames, n_out);
}

void vd_dec_stream_free(const vdit_model *m, void **s)
{
    if (m->tae)
        vd_taehv_stream_free((vd_taehv_stream **)s);
    else
        m->fam->stream_free(s);
}
