/* Few-step models end to end on the tiny model's parts: a folder whose
 * vdit.json declares a distilled recipe generates with it and nothing else
 * (4 DiT forwards, no guidance), reproducibly from the seed; SDEdit strength
 * maps onto the list; a causal folder loads and refuses to generate; bad
 * recipes are refused at load. Usage: test_fewstep TINY_MODEL_DIR */
#define _DEFAULT_SOURCE /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "vdit/vdit.h"

static char dir[4096];

/* A folder whose vdit.json names the tiny model's parts and adds `extra`. */
static void write_folder(const char *tiny, const char *name, const char *extra)
{
    snprintf(dir, sizeof(dir), "%s_%s", tiny, name);
    if (mkdir(dir, 0755) && errno != EEXIST)
        T_CHECK(0, "mkdir %s", dir);
    char path[4200];
    snprintf(path, sizeof(path), "%s/vdit.json", dir);
    FILE *f = fopen(path, "w");
    T_CHECK(f != NULL, "write %s", path);
    if (!f)
        return;
    fprintf(f,
            "{ \"dit\": \"%s/diffusion_pytorch_model.safetensors\", "
            "\"vae\": \"%s/Wan2.1_VAE.safetensors\", "
            "\"t5\": \"%s/models_t5_umt5-xxl-enc.safetensors\", "
            "\"tokenizer\": \"%s/tokenizer/spiece.model\", "
            "\"width\": 32, \"height\": 32, \"frames\": 5, \"text_len\": 32, \"num_heads\": 2%s%s }\n",
            tiny, tiny, tiny, tiny, extra[0] ? ", " : "", extra);
    fclose(f);
}

static vdit_model *load(const char *tiny, const char *name, const char *extra, int *err)
{
    write_folder(tiny, name, extra);
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.precision = VDIT_PRECISION_FP32;
    mp.n_threads = 1;
    vdit_model *m = NULL;
    *err = vdit_model_load(dir, &mp, &m);
    if (*err)
        printf("%s: %s\n", name, mp.error);
    return m;
}

static int64_t forwards(vdit_ctx *c)
{
    vdit_stats st;
    vdit_ctx_get_stats(c, &st);
    return st.forwards_total == st.forwards ? st.forwards : -1;
}

static int same(const vdit_video *a, const vdit_video *b)
{
    size_t n = (size_t)a->width * a->height * a->n_frames * 3;
    return a->width == b->width && a->height == b->height && a->n_frames == b->n_frames &&
           !memcmp(a->rgb, b->rgb, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_fewstep TINY_MODEL_DIR\n");
        return 2;
    }
    static char tiny[4000];
    if (!realpath(argv[1], tiny)) {
        fprintf(stderr, "test_fewstep: %s: no such folder\n", argv[1]);
        return 1;
    }
    int err;
    vdit_model *m = load(tiny, "fewstep", "\"timesteps\": [1000, 750, 500, 250], \"warp\": true, "
                                          "\"shift\": 5", &err);
    T_CHECK(m && !err, "load the few-step folder");
    if (!m)
        T_DONE();
    vdit_model_info in;
    vdit_model_get_info(m, &in);
    T_CHECK(in.sampler == VDIT_SAMPLER_FEWSTEP && in.steps == 4 && in.guidance == 1.0f &&
                in.n_timesteps == 4 && in.timesteps[0] == 1000 && in.timesteps[3] == 250 &&
                in.timesteps_warped == 1 && in.causal == 0,
            "recipe: sampler %d, %d steps, guidance %g, %d listed", in.sampler, in.steps,
            (double)in.guidance, in.n_timesteps);

    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.precision = VDIT_PRECISION_FP32;
    vdit_ctx *c = NULL;
    T_CHECK(vdit_ctx_init(m, &cp, &c) == 0, "ctx");
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = "a cat";
    p.seed = 7;
    vdit_video *a = NULL, *b = NULL, *d = NULL;
    T_CHECK(vdit_generate(c, &p, &a) == 0 && a, "generate: %s", vdit_ctx_last_error(c));
    T_CHECK(forwards(c) == 4, "the folder's recipe: 4 forwards, no guidance (%lld)",
            (long long)forwards(c));
    T_CHECK(vdit_generate(c, &p, &b) == 0 && b && a && same(a, b), "same seed -> same clip");
    vdit_video_free(&b);
    p.seed = 8;
    T_CHECK(vdit_generate(c, &p, &b) == 0 && b && a && !same(a, b), "other seed -> other clip");
    vdit_video_free(&b);
    p.seed = 7;
    p.guidance = 3;
    T_CHECK(vdit_generate(c, &p, &b) == 0 && forwards(c) == 8, "guidance asked: 2 x 4 forwards");
    vdit_video_free(&b);
    p.guidance = VDIT_DEFAULT_GUIDANCE;
    p.steps = 2; /* another count: the evenly spaced list [1000, 500] */
    T_CHECK(vdit_generate(c, &p, &b) == 0 && forwards(c) == 2, "2 steps asked: 2 forwards");
    vdit_video_free(&b);
    p.steps = 0;

    /* SDEdit strength on the list: the first listed timestep <= 1000 s */
    static const struct {
        float s;
        int fwd;
    } edits[] = { { 1.0f, 4 }, { 0.75f, 3 }, { 0.6f, 2 }, { 0.25f, 1 }, { 0.2f, 0 } };
    for (size_t i = 0; a && i < sizeof(edits) / sizeof(edits[0]); i++) {
        p.strength = edits[i].s;
        T_CHECK(vdit_edit(c, &p, a, &d) == 0 && d && forwards(c) == edits[i].fwd,
                "edit at strength %g: %lld forwards, want %d", (double)edits[i].s,
                (long long)forwards(c), edits[i].fwd);
        vdit_video_free(&d);
    }
    vdit_ctx_free(&c);
    vdit_model_free(&m);

    /* An unwarped list (CausVid's) of 3 */
    m = load(tiny, "causvid", "\"timesteps\": [1000, 757, 522], \"shift\": 8", &err);
    T_CHECK(m && !err, "load CausVid's recipe");
    if (m && vdit_ctx_init(m, &cp, &c) == 0) {
        vdit_model_get_info(m, &in);
        T_CHECK(in.steps == 3 && !in.timesteps_warped && in.timesteps[1] == 757, "CausVid recipe");
        p.strength = 0.6f; /* 522 only */
        T_CHECK(a && vdit_edit(c, &p, a, &d) == 0 && forwards(c) == 1, "CausVid edit at 0.6");
        vdit_video_free(&d);
        vdit_ctx_free(&c);
    }
    vdit_model_free(&m);

    /* A causal model loads, says so, and refuses to generate */
    m = load(tiny, "causal", "\"timesteps\": [1000, 750, 500, 250], \"warp\": true, "
                             "\"causal\": true", &err);
    T_CHECK(m && !err, "a causal folder loads");
    if (m && vdit_ctx_init(m, &cp, &c) == 0) {
        vdit_model_get_info(m, &in);
        T_CHECK(in.causal == 1, "info says causal");
        T_CHECK(vdit_generate(c, &p, &b) == VDIT_ERR_UNSUPPORTED && !b &&
                    strstr(vdit_ctx_last_error(c), "causal"),
                "causal refused: %s", vdit_ctx_last_error(c));
        T_CHECK(a && vdit_edit(c, &p, a, &d) == VDIT_ERR_UNSUPPORTED, "causal edit refused");
        vdit_ctx_free(&c);
    }
    vdit_model_free(&m);

    /* Bad recipes are refused at load, naming the key */
    static const char *const bad[] = {
        "\"timesteps\": [1000, 1000]",
        "\"timesteps\": [1000, 0]",
        "\"timesteps\": []",
        "\"timesteps\": [1000, 500], \"sampler\": \"unipc\"",
        "\"timesteps\": [1000, 500], \"steps\": 3",
        "\"causal\": 1",
        "\"warp\": \"yes\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = load(tiny, "bad", bad[i], &err);
        T_CHECK(!m && err == VDIT_ERR_FORMAT, "refused: %s", bad[i]);
        vdit_model_free(&m);
    }

    /* The few-step sampler on a model without a list: the evenly spaced list */
    m = load(tiny, "plain", "\"steps\": 3, \"guidance\": 1", &err);
    if (m && vdit_ctx_init(m, &cp, &c) == 0) {
        p.sampler = VDIT_SAMPLER_FEWSTEP;
        T_CHECK(vdit_generate(c, &p, &b) == 0 && forwards(c) == 3, "fewstep asked: 3 forwards");
        vdit_video_free(&b);
        vdit_ctx_free(&c);
    }
    vdit_model_free(&m);
    vdit_video_free(&a);
    T_DONE();
}
