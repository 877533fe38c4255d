/* The whole pipeline with the model on a CUDA device, the device emulated
 * (vkc_emul.c: host memory, reference kernels), through the public API: the
 * bundled model loaded with device "cuda" (the DiT's blocks, the VAE's nets
 * and the text encoder's layers uploaded by the library's own loader),
 * contexts opening the device, text to video and an SDEdit (the VAE's
 * encoder too) on the device, against the same calls on the CPU in fp32:
 * fp32 on the device within a uint8 level of the CPU (summation order only),
 * bf16 within the bf16 bound of the pipeline (docs/precision.md). This test
 * links its own copies of device.c and the device paths built with the
 * backend on, so it checks the wiring a GPU run relies on (loader, contexts,
 * stage order, uploads and downloads) on any machine.
 *
 * usage: test_model_emul MODEL_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/vkc.h"
#include "t.h"
#include "vdit/vdit.h"

typedef struct clips {
    vdit_video *gen, *edit;
    char compute[256];
} clips;

static int run(const char *dir, const char *device, int precision, clips *o)
{
    memset(o, 0, sizeof(*o));
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.device = device;
    mp.precision = precision;
    mp.n_threads = 2;
    vdit_model *m = NULL;
    int r = vdit_model_load(dir, &mp, &m);
    T_CHECK(r == 0, "%s: load: %s", device, mp.error);
    if (r)
        return r;
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 2;
    cp.precision = precision;
    vdit_ctx *c = NULL;
    r = vdit_ctx_init(m, &cp, &c);
    T_CHECK(r == 0, "%s: context: %d", device, r);
    if (!r) {
        snprintf(o->compute, sizeof(o->compute), "%s", vdit_ctx_compute(c));
        vdit_gen_params gp;
        vdit_gen_params_default(&gp);
        gp.prompt = "a red ball bouncing on a wooden floor";
        gp.steps = 4;
        gp.seed = 7;
        r = vdit_generate(c, &gp, &o->gen);
        T_CHECK(r == 0, "%s: generate: %s", device, vdit_ctx_last_error(c));
        if (!r) {
            gp.strength = 0.5f;
            gp.prompt = "a blue ball";
            r = vdit_edit(c, &gp, o->gen, &o->edit);
            T_CHECK(r == 0, "%s: edit: %s", device, vdit_ctx_last_error(c));
        }
    }
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    return r;
}

/* mean and max |a - b| in uint8 levels */
static void cmp(const char *what, const vdit_video *a, const vdit_video *b, double mean_tol,
                int max_tol)
{
    T_CHECK(a && b && a->width == b->width && a->height == b->height &&
                a->n_frames == b->n_frames,
            "%s: clips of different shapes", what);
    if (!a || !b || a->width != b->width || a->height != b->height || a->n_frames != b->n_frames)
        return;
    size_t n = (size_t)a->width * a->height * a->n_frames * 3;
    double sum = 0;
    int mx = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        sum += d;
        mx = d > mx ? d : mx;
    }
    printf("%-34s mean %.3f max %d levels (tol %.2f, %d) %s\n", what, sum / n, mx, mean_tol,
           max_tol, sum / n <= mean_tol && mx <= max_tol ? "OK" : "FAIL");
    T_CHECK(sum / n <= mean_tol && mx <= max_tol, "%s: mean %.3f max %d", what, sum / n, mx);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    clips cpu, d32, d16;
    if (run(argv[1], "cpu", VDIT_PRECISION_FP32, &cpu))
        return 1;
    run(argv[1], "cuda", VDIT_PRECISION_FP32, &d32);
    run(argv[1], "cuda", VDIT_PRECISION_BF16, &d16);
    printf("cpu: %s\ncuda fp32: %s\ncuda bf16: %s\n", cpu.compute, d32.compute, d16.compute);
    T_CHECK(strstr(d32.compute, "fp32 on cuda:0 (emulated device)") != NULL,
            "the context computes on the device: %s", d32.compute);
    T_CHECK(strstr(d16.compute, "bf16 on cuda:0 (emulated device)") != NULL,
            "the context computes on the device in bf16: %s", d16.compute);
    cmp("fp32 on the device, generate", d32.gen, cpu.gen, 0.05, 1);
    cmp("fp32 on the device, edit", d32.edit, cpu.edit, 0.05, 1);
    /* bf16: as the CPU's own bf16 clip against its fp32 (pipeline_api: 0.6) */
    cmp("bf16 on the device, generate", d16.gen, cpu.gen, 1.0, 32);
    cmp("bf16 on the device, edit", d16.edit, cpu.edit, 1.0, 32);
    clips *all[] = { &cpu, &d32, &d16 };
    for (int i = 0; i < 3; i++) {
        vdit_video_free(&all[i]->gen);
        vdit_video_free(&all[i]->edit);
    }
    T_DONE();
}
