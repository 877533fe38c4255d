/* The public C API as a program using the installed library sees it: linked
 * against the shared libvdit with only vdit/vdit.h. Covers what the core
 * itself provides (version, errors, stages, parameter defaults, clips); the
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
