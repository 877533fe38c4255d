/* The public C API as a program using the installed library sees it: linked
 * against the shared libvdit with only vdit/vdit.h. Covers what the core
 * itself provides (version, errors, stages, parameter defaults, clips, the
 * size a generation makes, on the bundled model when the build has one); the
 * model and context calls are tested with the pipeline. */
#include <stdio.h>
#include <string.h>

#include <omp.h>

#include "vdit/vdit.h"

static int failed, checks;
#define CHECK(c, ...)                                                        \
    do {                                                                     \
        checks++;                                                            \
        if (!(c)) {                                                          \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #c);   \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* The parameter structs keep their size when fields are taken from their
 * reserved bytes (programs built against an older header stay compatible). */
_Static_assert(sizeof(void *) != 8 || sizeof(vdit_model_params) == 344,
               "vdit_model_params changed size");
_Static_assert(sizeof(void *) != 8 || sizeof(vdit_ctx_params) == 112,
               "vdit_ctx_params changed size");

int main(void)
{
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", VDIT_VERSION_MAJOR, VDIT_VERSION_MINOR,
             VDIT_VERSION_PATCH);
    CHECK(!strcmp(vdit_version(), want), "version %s, header says %s", vdit_version(), want);

    /* every code has its own message; others are "unknown" */
    for (int e = 0; e > -VDIT_ERR_COUNT; e--) {
        const char *m = vdit_strerror(e);
        CHECK(m && *m && strcmp(m, "unknown error"), "code %d: '%s'", e, m ? m : "(null)");
        for (int f = 0; f > e; f--)
            CHECK(strcmp(m, vdit_strerror(f)), "codes %d and %d share '%s'", e, f, m);
    }
    CHECK(!strcmp(vdit_strerror(-VDIT_ERR_COUNT), "unknown error"), "past the last code");
    CHECK(!strcmp(vdit_strerror(1), "unknown error"), "positive code");
    CHECK(!strcmp(vdit_strerror(-1000000), "unknown error"), "huge code");
    CHECK(!strcmp(vdit_strerror(VDIT_ERR_FORMAT), "malformed file"), "FORMAT");

    for (int s = 0; s < VDIT_STAGE_COUNT; s++)
        CHECK(strcmp(vdit_stage_name(s), "?"), "stage %d has no name", s);
    CHECK(!strcmp(vdit_stage_name(-1), "?") && !strcmp(vdit_stage_name(VDIT_STAGE_COUNT), "?"),
          "out-of-range stages");

    /* defaults: documented values, everything else zero */
    vdit_model_params mp;
    memset(&mp, 0xab, sizeof(mp));
    vdit_model_params_default(&mp);
    CHECK(mp.log_level == VDIT_LOG_WARNING && mp.log_cb == NULL && mp.n_threads == 0
              && mp.error[0] == 0,
          "model params defaults");
    vdit_ctx_params cp;
    memset(&cp, 0xab, sizeof(cp));
    vdit_ctx_params_default(&cp);
    CHECK(cp.log_level == VDIT_LOG_WARNING && cp.n_threads == 0 && cp.progress_cb == NULL
              && cp.log_cb == NULL,
          "ctx params defaults");
    CHECK(mp.n_threads == VDIT_DEFAULT_THREADS && cp.n_threads == VDIT_DEFAULT_THREADS,
          "threads default is VDIT_DEFAULT_THREADS");
    /* the load threads are checked like the context's */
    vdit_model *bad = NULL;
    mp.n_threads = -1;
    CHECK(vdit_model_load("/nonexistent", &mp, &bad) == VDIT_ERR_INVALID_ARG && !bad
              && strstr(mp.error, "n_threads"),
          "negative load threads: '%s'", mp.error);
    mp.n_threads = 0;
    CHECK(vdit_model_load("/nonexistent", &mp, &bad) != VDIT_ERR_INVALID_ARG && !bad,
          "missing model: '%s'", mp.error);
    /* a device that is no device is refused before any file is read */
    CHECK(mp.device == NULL, "device default NULL (cpu)");
    const char *bad_devs[] = { "gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA" };
    for (size_t i = 0; i < sizeof(bad_devs) / sizeof(bad_devs[0]); i++) {
        mp.device = bad_devs[i];
        CHECK(vdit_model_load("/nonexistent", &mp, &bad) == VDIT_ERR_INVALID_ARG && !bad &&
                  strstr(mp.error, bad_devs[i]) && strstr(mp.error, "cuda:N"),
              "device '%s': '%s'", bad_devs[i], mp.error);
    }
    mp.device = NULL;

    /* generation and stream defaults: the VDIT_DEFAULT_* constants the vdit
     * command and the adapters use, everything else zero */
    CHECK(VDIT_DEFAULT_STRENGTH == 0.6 && VDIT_DEFAULT_STEPS == 0 && VDIT_DEFAULT_GUIDANCE == -1.0
              && VDIT_DEFAULT_SHIFT == -1.0 && VDIT_DEFAULT_SAMPLER == -1
              && VDIT_DEFAULT_SEED == 0 && VDIT_DEFAULT_WINDOW == 0
              && VDIT_DEFAULT_OVERLAP == 0 && VDIT_DEFAULT_THREADS == 0,
          "documented default values");
    vdit_gen_params gp;
    memset(&gp, 0xab, sizeof(gp));
    vdit_gen_params_default(&gp);
    CHECK(gp.strength == (float)VDIT_DEFAULT_STRENGTH, "strength %g", (double)gp.strength);
    CHECK(gp.steps == VDIT_DEFAULT_STEPS && gp.guidance == (float)VDIT_DEFAULT_GUIDANCE
              && gp.shift == (float)VDIT_DEFAULT_SHIFT && gp.sampler == VDIT_DEFAULT_SAMPLER
              && gp.seed == VDIT_DEFAULT_SEED,
          "steps %d guidance %g shift %g sampler %d seed %llu", gp.steps, (double)gp.guidance,
          (double)gp.shift, gp.sampler, (unsigned long long)gp.seed);
    int rz = 1;
    for (size_t i = 0; i < sizeof(gp.reserved); i++)
        rz &= gp.reserved[i] == 0;
    CHECK(gp.prompt == NULL && gp.negative_prompt == NULL && gp.width == 0 && gp.height == 0
              && gp.n_frames == 0 && gp.loop == 0 && rz,
          "gen params: the rest zero");
    vdit_stream_params sp;
    memset(&sp, 0xab, sizeof(sp));
    vdit_stream_params_default(&sp);
    CHECK(sp.window == VDIT_DEFAULT_WINDOW && sp.overlap == VDIT_DEFAULT_OVERLAP,
          "window %d overlap %d", sp.window, sp.overlap);
    CHECK(!memcmp(&sp.gen, &gp, sizeof(gp)), "stream gen params are vdit_gen_params_default's");

    /* the LoRA list syntax */
    CHECK(mp.loras == NULL && mp.n_loras == 0, "LoRA defaults");
    vdit_lora ls[4];
    char lb[128];
    int nl = vdit_lora_parse("a.safetensors:0.5|b.pth|c:d.safetensors|/x/y:-1e-1", ls, 4, lb,
                             sizeof(lb));
    CHECK(nl == 4 && !strcmp(ls[0].path, "a.safetensors") && ls[0].scale == 0.5f &&
              !strcmp(ls[1].path, "b.pth") && ls[1].scale == 1.0f &&
              !strcmp(ls[2].path, "c:d.safetensors") && ls[2].scale == 1.0f &&
              !strcmp(ls[3].path, "/x/y") && ls[3].scale == -0.1f,
          "lora list: %d", nl);
    CHECK(vdit_lora_parse("", ls, 4, lb, sizeof(lb)) == 0 &&
              vdit_lora_parse(NULL, ls, 4, lb, sizeof(lb)) == 0,
          "empty lora list");
    static const char *const bad_lists[] = { "|a", "a||b", "a|", ":0.5", "a:inf", "a:nan",
                                             "a|b|c|d|e" };
    for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++)
        CHECK(vdit_lora_parse(bad_lists[i], ls, 4, lb, sizeof(lb)) == VDIT_ERR_INVALID_ARG,
              "lora list '%s' accepted", bad_lists[i]);
    CHECK(vdit_lora_parse("abcdef", ls, 4, lb, 4) == VDIT_ERR_INVALID_ARG, "small buffer");

    /* clips */
    vdit_video *v = vdit_video_new(7, 5, 3);
    CHECK(v && v->width == 7 && v->height == 5 && v->n_frames == 3 && v->rgb, "new clip");
    int zero = 1;
    for (int i = 0; v && i < 7 * 5 * 3 * 3; i++)
        zero &= v->rgb[i] == 0;
    CHECK(zero, "clip zeroed");
    vdit_video_free(&v);
    CHECK(v == NULL, "free clears the pointer");
    vdit_video_free(&v);
    vdit_video_free(NULL);
    CHECK(!vdit_video_new(0, 5, 1) && !vdit_video_new(5, -1, 1) && !vdit_video_new(5, 5, -1),
          "bad sizes");
    CHECK(!vdit_video_new(1 << 30, 1 << 30, 1 << 30), "overflowing size");

    /* vdit_gen_size: the frame size a generation makes, from the model's
     * defaults, the asked size and an image's aspect (pixels not read) */
    vdit_model *bm = NULL;
    int gw = -7, gh = -7;
    CHECK(vdit_gen_size(NULL, NULL, &gw, &gh) == VDIT_ERR_INVALID_ARG && gw == -7 && gh == -7,
          "gen_size without a model");
    const char *bundled = vdit_default_model_path();
    vdit_model_params_default(&mp);
    if (!bundled || vdit_model_load(bundled, &mp, &bm)) {
        printf("no bundled model (%s): vdit_gen_size with a model not checked\n",
               bundled ? mp.error : "none in this build");
    } else {
        vdit_model_info mi;
        vdit_model_get_info(bm, &mi);
        int al = mi.spatial_align;
        CHECK(vdit_gen_size(bm, NULL, &gw, &gh) == 0 && gw == mi.width && gh == mi.height,
              "defaults: %dx%d, model %dx%d", gw, gh, mi.width, mi.height);
        CHECK(vdit_gen_size(bm, NULL, NULL, &gh) == VDIT_ERR_INVALID_ARG &&
                  vdit_gen_size(bm, NULL, &gw, NULL) == VDIT_ERR_INVALID_ARG,
              "NULL outputs");
        vdit_gen_params_default(&gp);
        gp.width = 40;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw == 40 && gh == mi.height,
              "width asked: %dx%d", gw, gh);
        gp.width = -2;
        gw = gh = -7;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == VDIT_ERR_INVALID_ARG && gw == -7,
              "negative width");
        gp.width = 9000;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == VDIT_ERR_INVALID_ARG, "width over 8192");
        /* an image: its aspect within the model's area, sides multiples of
         * the model's alignment; a wide image gives a wide frame, a tall one
         * a tall frame */
        vdit_video im = { 200, 100, 1, NULL };
        gp.width = 0;
        gp.image = &im;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw > gh && gw % al == 0 && gh % al == 0
                  && (int64_t)gw * gh <= (int64_t)mi.width * mi.height,
              "2:1 image: %dx%d (align %d, model %dx%d)", gw, gh, al, mi.width, mi.height);
        im.width = 100;
        im.height = 200;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gh > gw && gw % al == 0 && gh % al == 0,
              "1:2 image: %dx%d", gw, gh);
        im.width = im.height = 77;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw == gh && gw % al == 0,
              "square image: %dx%d", gw, gh);
        /* one side asked: the other from the image's aspect; both: as asked */
        im.width = 200;
        im.height = 100;
        gp.width = 50;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw == 50 && gh == 25,
              "width asked with a 2:1 image: %dx%d", gw, gh);
        gp.width = 0;
        gp.height = 30;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw == 60 && gh == 30,
              "height asked with a 2:1 image: %dx%d", gw, gh);
        gp.width = 33;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == 0 && gw == 33 && gh == 30,
              "both asked with an image: %dx%d", gw, gh);
        im.width = 0;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == VDIT_ERR_INVALID_ARG, "image of no size");
        /* an aspect no size of the model's area has */
        im.width = 8000;
        im.height = 1;
        gp.width = gp.height = 0;
        CHECK(vdit_gen_size(bm, &gp, &gw, &gh) == VDIT_ERR_INVALID_ARG, "8000:1 image");
        /* a context runs on its model's device: a CPU model refuses another */
        vdit_ctx *dc = NULL;
        vdit_ctx_params_default(&cp);
        CHECK(cp.device == NULL, "ctx device default NULL (the model's)");
        cp.device = "cuda:1";
        CHECK(vdit_ctx_init(bm, &cp, &dc) == VDIT_ERR_INVALID_ARG && !dc, "cuda context on a "
              "CPU model");
        cp.device = "cpu";
        CHECK(vdit_ctx_init(bm, &cp, &dc) == 0 && dc, "cpu context on a CPU model");
        vdit_ctx_free(&dc);
        cp.device = "auto";
        CHECK(vdit_ctx_init(bm, &cp, &dc) == 0 && dc &&
                  !strstr(vdit_ctx_compute(dc), "cuda"),
              "auto context on a CPU model: %s", dc ? vdit_ctx_compute(dc) : "-");
        vdit_ctx_free(&dc);
        vdit_model_free(&bm);
        /* device cuda loads where a GPU answers, else fails naming why;
         * auto falls back to the CPU */
        vdit_model_params_default(&mp);
        mp.device = "cuda";
        int rc = vdit_model_load(bundled, &mp, &bm);
        CHECK(rc == 0 ? bm != NULL : rc == VDIT_ERR_UNSUPPORTED && !bm && strstr(mp.error, "cuda"),
              "device cuda: %d '%s'", rc, mp.error);
        printf("device cuda: %s\n", rc ? mp.error : "loaded");
        vdit_model_free(&bm);
        mp.device = "auto";
        CHECK(vdit_model_load(bundled, &mp, &bm) == 0 && bm, "device auto: '%s'", mp.error);
        vdit_model_free(&bm);
    }

    /* The engine sets OpenMP's thread count for oneDNN on the calling thread
     * and must put the caller's own back (the self-check runs every kernel,
     * oneDNN's included). */
    omp_set_num_threads(3);
    CHECK(vdit_selfcheck(1, NULL, NULL) == 0, "self-check");
    CHECK(omp_get_max_threads() == 3, "the caller's OpenMP threads became %d",
          omp_get_max_threads());

    printf("%d checks, %d failed\n", checks, failed);
    return failed != 0;
}
