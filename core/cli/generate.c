/* vdit generate | edit | extend | loop | bridge: the generation operations
 * of the public API on files (read and written through videoio.h).
 *
 * Exit status: 0 success, 1 the operation failed (bad file, model error,
 * output disk full), 2 bad usage (unknown option, bad value, missing
 * argument), 130 interrupted by SIGINT (Ctrl-C), 143 stopped by SIGTERM. An
 * interrupted run stops at the next step. The clip is written whole once
 * made, so it leaves no file, never a half-written one; except an edit of a
 * clip longer than one window, whose frames are written as they are made:
 * its file is finished with the frames edited before (the same when it
 * fails). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "expand.h"
#include "videoio.h"
#include "vdit/vdit.h"

enum op { OP_GENERATE, OP_EDIT, OP_EXTEND, OP_LOOP, OP_BRIDGE };

typedef struct opts {
    const char *prompt, *negative, *input, *input2, *output, *model, *expand, *expand_model;
    const char *image, *decoder, *device;
    int width, height, frames, steps, sampler, threads, frames_new, backward, window, quiet;
    int precision, cache, cache_max_skip;
    double fps, guidance, shift, strength, cache_threshold, cache_start, cache_end, guidance_end;
    uint64_t seed;
    int have_seed;
    vdit_lora loras[64]; /* --lora, in the order given; paths in lora_buf */
    int n_loras;
    char *lora_buf[64];
} opts;

static const char *const op_names[] = { "generate", "edit", "extend", "loop", "bridge" };

static void usage(enum op op, FILE *o)
{
    static const char *const what[] = {
        "Text to video (or an image with --frames 1); with --image, image to video.",
        "Video to video by SDEdit: the input is noised to the level --strength selects and\n"
        "denoised under the prompt (0 keeps it, through the VAE; 1 ignores it).",
        "Extends --input by --frames-new frames after its end (or before its start with\n"
        "--backward), window by window; a single image as input makes image-to-video.",
        "A seamless loop: the last frame flows into the first.",
        "The --frames-new frames that connect the end of --input to the start of --input2:\n"
        "a crossfade between the two, noised to --strength and denoised (1: from noise).",
    };
    fprintf(o, "usage: vdit %s [options] --output FILE\n%s\n\n", op_names[op], what[op]);
    fprintf(o, "  --prompt TEXT          what to show (default: empty)\n"
               "  --negative-prompt TEXT what to avoid (default: the model's, Wan's)\n");
    if (op == OP_EDIT || op == OP_EXTEND || op == OP_BRIDGE)
        fprintf(o, "  --input FILE           video or image to start from (y4m, mp4, png...)\n");
    if (op == OP_BRIDGE)
        fprintf(o, "  --input2 FILE          the clip to lead into\n");
    fprintf(o, "  --output FILE          result; the extension picks the format (.y4m .mp4 .png)\n");
    if (op == OP_GENERATE)
        fprintf(o, "  --image FILE           image-to-video: the clip starts from this image (png,\n"
                   "                         jpg, y4m...: its first frame), resized to cover the\n"
                   "                         size and centre-cropped; with no size given the\n"
                   "                         output keeps its aspect at the model's area\n");
    if (op == OP_GENERATE || op == OP_LOOP)
        fprintf(o, "  --width N, --height N  frame size (default: the model's, e.g. 832x480); any size\n"
                   "  --frames N             frame count (default: the model's, 81)%s\n",
                op == OP_LOOP ? "; rounded up to a multiple of 4\n"
                                "                         (not from 8 on for a model with \"loop_turns\": 0)"
                              : "; 1 = image");
    if (op == OP_EXTEND || op == OP_BRIDGE)
        fprintf(o, "  --frames-new N         frames to make (required)\n"
                   "  --frames N             window length (default: the model's%s)\n",
                op == OP_EXTEND ? ", at least 13 once\n"
                                  "                         two latent frames of context are kept"
                                : "");
    if (op == OP_EXTEND)
        fprintf(o, "  --backward             extend before the start instead of after the end\n");
    if (op == OP_EDIT || op == OP_BRIDGE || op == OP_LOOP)
        fprintf(o, "  --strength X           0..1, default %g: the last strength*steps steps run%s\n",
                VDIT_DEFAULT_STRENGTH,
                op == OP_LOOP ? "\n                         (the closing frames of a bridge-back loop, from 8 "
                                "frames on)"
                              : "");
    if (op == OP_EDIT)
        fprintf(o, "  --frames N             window length for long inputs (default: the model's)\n");
    fprintf(o, "  --fps X                output frame rate (default: the input's or the model's)\n"
               "  --steps N              sampling steps (default: the model's; Wan2.1: 50)\n"
               "  --guidance X           classifier-free guidance scale (default: the model's;\n"
               "                         Wan2.1: 5; 1 = off)\n"
               "  --shift X              timestep shift (default: the model's; Wan2.1: 5)\n"
               "  --sampler NAME         unipc (default), dpm++, euler or fewstep (distilled\n"
               "                         models: the model's timestep list, re-noised)\n"
               "  --seed N               noise seed (default: random, printed)\n"
               "  --cache MODE           step caching: off (default), easy (EasyCache) or tea\n"
               "                         (TeaCache-style): steps reuse the DiT's last residual\n"
               "                         while the estimated change stays small (fewer forwards)\n"
               "  --cache-threshold X    > 0, default the mode's: higher skips more\n"
               "  --cache-start X, --cache-end X\n"
               "                         the part of the steps (fractions, default the mode's)\n"
               "                         in which steps may be reused\n"
               "  --cache-max-skip N     steps reused in a row at most (default the mode's)\n"
               "  --guidance-end X       guidance over the first fraction X of the steps only\n"
               "                         (0..1, default 1: all)\n"
               "  --model PATH           model folder or checkpoint (default: the bundled model)\n"
               "  --decoder D            vae (default: the model's VAE), tae (TAEHV, several times\n"
               "                         faster, lower quality: taew2_1 / taew2_2 .safetensors or\n"
               "                         .pth in the model's folder) or the path of a TAEHV file\n"
               "  --lora FILE[:SCALE]    merge a LoRA into the DiT at load, its strength SCALE\n"
               "                         (default 1); repeat for several (docs/lora.md)\n"
               "  --threads N            CPU threads (default: all cores)\n"
               "  --precision P          auto (default: bf16 where the CPU computes it natively,\n"
               "                         else fp32), fp32 (exact) or bf16 (about twice as fast)\n"
               "  --device D             where the model runs: cpu (default), cuda or cuda:N (that\n"
               "                         NVIDIA GPU: the DiT, VAE and text encoder uploaded at\n"
               "                         load and run there) or auto (cuda:0\n"
               "                         where the build has CUDA and a GPU answers, else the CPU)\n"
               "  --expand URL           rewrite the prompt into a detailed caption with a language\n"
               "                         model at this OpenAI-compatible endpoint (e.g.\n"
               "                         http://127.0.0.1:8080, a llama.cpp server); off by default,\n"
               "                         on failure the prompt is used as given\n"
               "  --expand-model NAME    model name sent to that endpoint (default \"default\")\n"
               "  --quiet                no progress output\n"
               "\nExit status: 0 done, 1 failed, 2 bad usage.\n");
}

static int bad(enum op op, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "vdit %s: ", op_names[op]);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see vdit %s --help)\n", op_names[op]);
    return 2;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* Whether s is a device vdit_model_params.device takes: cpu, auto, cuda or
 * cuda:N (N = 0 to 1023), checked here so that a typo is a usage error
 * found before any work; the load says why a device cannot be used. */
static int valid_device(const char *s)
{
    int n;
    if (!strcmp(s, "cpu") || !strcmp(s, "auto") || !strcmp(s, "cuda"))
        return 1;
    return !strncmp(s, "cuda:", 5) && s[5] >= '0' && s[5] <= '9' && !parse_int(s + 5, 0, 1023, &n);
}

/* Returns 0, 2 (usage error, printed) or 3 (--help printed). */
static int parse(enum op op, int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof(*o));
    o->steps = VDIT_DEFAULT_STEPS;
    o->sampler = VDIT_DEFAULT_SAMPLER;
    o->guidance = VDIT_DEFAULT_GUIDANCE;
    o->shift = VDIT_DEFAULT_SHIFT;
    o->strength = VDIT_DEFAULT_STRENGTH;
    o->threads = VDIT_DEFAULT_THREADS;
    o->precision = VDIT_DEFAULT_PRECISION;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(op, stdout);
            return 3;
        }
        if (!strcmp(a, "--backward") && op == OP_EXTEND) {
            o->backward = 1;
            continue;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2))
            return bad(op, "unexpected argument '%s'%s", a, "");
        char name[64];
        const char *val = strchr(a, '=');
        size_t nl = val ? (size_t)(val - a) : strlen(a);
        if (nl >= sizeof(name))
            return bad(op, "unknown option '%s'%s", a, "");
        memcpy(name, a, nl);
        name[nl] = 0;
        if (val)
            val++;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return bad(op, "option '%s' needs a value%s", name, "");
        int ok = 0;
        if (!strcmp(name, "--prompt"))
            o->prompt = val;
        else if (!strcmp(name, "--negative-prompt"))
            o->negative = val;
        else if (!strcmp(name, "--input") && op != OP_GENERATE && op != OP_LOOP)
            o->input = val;
        else if (!strcmp(name, "--image") && op == OP_GENERATE)
            o->image = val;
        else if (!strcmp(name, "--input2") && op == OP_BRIDGE)
            o->input2 = val;
        else if (!strcmp(name, "--output"))
            o->output = val;
        else if (!strcmp(name, "--model"))
            o->model = val;
        else if (!strcmp(name, "--decoder"))
            o->decoder = val;
        else if (!strcmp(name, "--lora")) {
            /* "FILE[:SCALE]" (or several, '|'-separated), after the ones before */
            const int cap = (int)(sizeof(o->loras) / sizeof(o->loras[0]));
            int k = o->n_loras, n = -1;
            if (k < cap && (o->lora_buf[k] = malloc(strlen(val) + 1)))
                n = vdit_lora_parse(val, o->loras + k, cap - k, o->lora_buf[k], strlen(val) + 1);
            if (n > 0)
                o->n_loras += n;
            ok = n > 0 ? 0 : -1;
        } else if (!strcmp(name, "--expand"))
            o->expand = val;
        else if (!strcmp(name, "--expand-model"))
            o->expand_model = val;
        else if (!strcmp(name, "--width") && (op == OP_GENERATE || op == OP_LOOP))
            ok = parse_int(val, 1, 8192, &o->width);
        else if (!strcmp(name, "--height") && (op == OP_GENERATE || op == OP_LOOP))
            ok = parse_int(val, 1, 8192, &o->height);
        else if (!strcmp(name, "--frames"))
            ok = parse_int(val, 1, 100000, &o->frames);
        else if (!strcmp(name, "--frames-new") && (op == OP_EXTEND || op == OP_BRIDGE))
            ok = parse_int(val, 1, 100000, &o->frames_new);
        else if (!strcmp(name, "--steps"))
            ok = parse_int(val, 1, 1000, &o->steps);
        else if (!strcmp(name, "--threads"))
            ok = parse_int(val, 1, 4096, &o->threads);
        else if (!strcmp(name, "--fps"))
            ok = parse_num(val, 0.001, 1000, &o->fps);
        else if (!strcmp(name, "--guidance"))
            ok = parse_num(val, 0, 100, &o->guidance);
        else if (!strcmp(name, "--shift"))
            ok = parse_num(val, 0.001, 100, &o->shift);
        else if (!strcmp(name, "--strength") && (op == OP_EDIT || op == OP_BRIDGE || op == OP_LOOP))
            ok = parse_num(val, 0, 1, &o->strength);
        else if (!strcmp(name, "--sampler")) {
            o->sampler = !strcmp(val, "unipc")                          ? VDIT_SAMPLER_UNIPC
                         : !strcmp(val, "dpm++") || !strcmp(val, "dpmpp") ? VDIT_SAMPLER_DPMPP
                         : !strcmp(val, "euler")                          ? VDIT_SAMPLER_EULER
                         : !strcmp(val, "fewstep")                        ? VDIT_SAMPLER_FEWSTEP
                                                                          : -1;
            ok = o->sampler < 0 ? -1 : 0;
        } else if (!strcmp(name, "--cache")) {
            o->cache = !strcmp(val, "off")    ? VDIT_CACHE_OFF
                       : !strcmp(val, "easy") ? VDIT_CACHE_EASY
                       : !strcmp(val, "tea")  ? VDIT_CACHE_TEA
                                              : -1;
            ok = o->cache < 0 ? -1 : 0;
        } else if (!strcmp(name, "--cache-threshold")) {
            ok = parse_num(val, 1e-9, 1000, &o->cache_threshold);
        } else if (!strcmp(name, "--cache-start")) {
            ok = parse_num(val, 0, 1, &o->cache_start);
        } else if (!strcmp(name, "--cache-end")) {
            ok = parse_num(val, 1e-9, 1, &o->cache_end);
        } else if (!strcmp(name, "--cache-max-skip")) {
            double v = 0;
            ok = parse_num(val, 1, 1000, &v);
            o->cache_max_skip = (int)v;
            ok = ok || v != (double)o->cache_max_skip ? -1 : 0;
        } else if (!strcmp(name, "--guidance-end")) {
            ok = parse_num(val, 1e-9, 1, &o->guidance_end);
        } else if (!strcmp(name, "--precision")) {
            o->precision = !strcmp(val, "auto")   ? VDIT_PRECISION_AUTO
                           : !strcmp(val, "fp32") ? VDIT_PRECISION_FP32
                           : !strcmp(val, "bf16") ? VDIT_PRECISION_BF16
                                                  : -1;
            ok = o->precision < 0 ? -1 : 0;
        } else if (!strcmp(name, "--device")) {
            o->device = val;
            ok = valid_device(val) ? 0 : -1;
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            o->seed = strtoull(val, &end, 0);
            ok = errno || end == val || *end || val[0] == '-' ? -1 : 0;
            o->have_seed = 1;
        } else {
            return bad(op, "unknown option '%s'%s", name, "");
        }
        if (ok)
            return bad(op, "bad value '%s' for %s", val, name);
    }
    if (!o->output)
        return bad(op, "--output is required%s%s", "", "");
    if ((op == OP_EDIT || op == OP_EXTEND || op == OP_BRIDGE) && !o->input)
        return bad(op, "--input is required%s%s", "", "");
    if (op == OP_BRIDGE && !o->input2)
        return bad(op, "--input2 is required%s%s", "", "");
    if ((op == OP_EXTEND || op == OP_BRIDGE) && !o->frames_new)
        return bad(op, "--frames-new is required%s%s", "", "");
    if (op == OP_LOOP && o->frames && o->frames < 4)
        return bad(op, "a loop needs --frames 4 or more%s%s", "", "");
    return 0;
}

/* ---- progress ---- */

static volatile sig_atomic_t interrupted; /* the signal that asked to stop, 0: none */

static void on_signal(int sig)
{
    interrupted = sig;
}

typedef struct prog {
    int tty, quiet, last_stage, last_step;
    int window; /* 1 + windows decoded: long clips, extensions and loops run several */
} prog;

static int progress(void *user, int stage, int step, int total)
{
    prog *p = user;
    if (p->last_stage == VDIT_STAGE_DECODE && stage != VDIT_STAGE_DECODE)
        p->window++; /* the next window (or a loop's closing bridge) starts */
    char name[32];
    if (p->window > 1)
        snprintf(name, sizeof(name), "%s (pass %d)", vdit_stage_name(stage), p->window);
    else
        snprintf(name, sizeof(name), "%s", vdit_stage_name(stage));
    if (!p->quiet) {
        if (p->tty) {
            int width = 30, fill = total > 0 ? step * width / total : width;
            fprintf(stderr, "\r%-19s [", name);
            for (int i = 0; i < width; i++)
                fputc(i < fill ? '#' : ' ', stderr);
            fprintf(stderr, "] %d/%d ", step, total);
            if (step == total)
                fputc('\n', stderr);
            fflush(stderr);
        } else if (stage != p->last_stage || step != p->last_step) {
            fprintf(stderr, "%s %d/%d\n", name, step, total);
        }
    }
    p->last_stage = stage;
    p->last_step = step;
    return interrupted != 0;
}

/* user: NULL or a char[512] keeping the last error, which the caller
 * prints once with its own prefix */
static void log_cb(void *user, int level, const char *msg)
{
    if (level == VDIT_LOG_ERROR) {
        if (user)
            snprintf(user, 512, "%s", msg);
        return;
    }
    fprintf(stderr, "vdit: %s\n", msg);
}

static int read_video(enum op op, const char *path, vdit_video **v, double *fps)
{
    char err[512];
    if (vio_read(path, v, fps, err, sizeof(err))) {
        fprintf(stderr, "vdit %s: %s\n", op_names[op], err);
        return 1;
    }
    return 0;
}

/* Whether the output can be written, checked before any work so that a typo
 * in --output does not cost a whole generation. n_frames: what will be
 * written, 0 if not known yet. Returns 0, 1 (cannot write there) or 2 (bad
 * --output: unknown extension, several frames into one PNG). */
static int check_output(enum op op, const char *path, int n_frames)
{
    char err[512];
    int e = vio_check_output(path, n_frames, err, sizeof(err));
    if (!e)
        return 0;
    fprintf(stderr, "vdit %s: %s\n", op_names[op], err);
    return e == VDIT_ERR_IO ? 1 : 2;
}

/* edit_streaming's frame sink: each edited frame to the file. */
typedef struct edit_out {
    vio_writer *w;
    int written, io;
    char *err;
    size_t errlen;
} edit_out;

static int put_edited(void *user, int index, const uint8_t *rgb)
{
    edit_out *e = user;
    int r = vio_writer_put(e->w, rgb, e->err, e->errlen);
    if (r) {
        e->io = 1;
        return r;
    }
    e->written++;
    return 0;
}

/* An edit of a clip longer than one window whose frames are
 * written as they come out (vdit_edit_frames), so that an interrupted or
 * failed run leaves a finished file of the frames edited so far.
 * *written: frames written; *fw, *fw_total: DiT forwards. Returns 0 or a
 * VDIT_ERR_* code; *io: the failure was the file's (message in err), else
 * the engine's (vdit_ctx_last_error). */
static int edit_streaming(vdit_ctx *ctx, const vdit_gen_params *gp, const vdit_video *in,
                          const char *path, double fps, int *written, int64_t *fw,
                          int64_t *fw_total, int *io, char *err, size_t errlen)
{
    edit_out e = { NULL, 0, 0, err, errlen };
    *written = 0;
    *fw = *fw_total = 0;
    *io = 0;
    int r = vio_writer_open(path, in->width, in->height, in->n_frames, fps, &e.w, err, errlen);
    if (r) {
        *io = 1;
        return r;
    }
    r = vdit_edit_frames(ctx, gp, in, put_edited, &e);
    vdit_stats st;
    if (!vdit_ctx_get_stats(ctx, &st)) {
        *fw = st.forwards;
        *fw_total = st.forwards_total;
    }
    *written = e.written;
    *io = e.io;
    char cerr[512];
    int rc = vio_writer_close(&e.w, r ? cerr : err, r ? sizeof(cerr) : errlen);
    if (!r && rc) {
        *io = 1;
        r = rc;
    }
    return r;
}

static void opts_free(opts *o)
{
    for (size_t i = 0; i < sizeof(o->lora_buf) / sizeof(o->lora_buf[0]); i++)
        free(o->lora_buf[i]);
    memset(o->lora_buf, 0, sizeof(o->lora_buf));
}

static int run(enum op op, int argc, char **argv)
{
    opts o;
    int r = parse(op, argc, argv, &o);
    if (r) {
        opts_free(&o);
        return r == 3 ? 0 : r;
    }
    const char *mpath = o.model ? o.model : vdit_default_model_path();
    if (!mpath) {
        fprintf(stderr, "vdit %s: no bundled model in this build: give --model PATH\n",
                op_names[op]);
        opts_free(&o);
        return 2;
    }
    int ret = 1;
    char *expanded = NULL;
    vdit_model *model = NULL;
    vdit_ctx *ctx = NULL;
    vdit_video *in = NULL, *in2 = NULL, *out = NULL;
    double fps = 0, fps2 = 0;
    if (o.input && read_video(op, o.input, &in, &fps))
        goto done;
    if (o.input2 && read_video(op, o.input2, &in2, &fps2))
        goto done;
    if (o.image && read_video(op, o.image, &in, &fps))
        goto done;
    int n_out = op == OP_GENERATE ? o.frames
                : op == OP_LOOP   ? (o.frames > 4 ? o.frames : 4)
                : op == OP_EDIT   ? in->n_frames
                : op == OP_EXTEND ? in->n_frames + o.frames_new
                                  : o.frames_new;
    if ((ret = check_output(op, o.output, n_out)))
        goto done;
    ret = 1;

    if (o.expand) {
        char err[512];
        if (expand_prompt(o.expand, o.expand_model, o.prompt ? o.prompt : "", 120000, &expanded,
                          err, sizeof(err)))
            fprintf(stderr, "vdit %s: warning: prompt expansion failed (%s); using the prompt "
                            "as given\n", op_names[op], err);
        else if (!o.quiet)
            fprintf(stderr, "vdit %s: expanded prompt: %s\n", op_names[op], expanded);
        if (expanded)
            o.prompt = expanded;
    }

    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.log_cb = log_cb;
    mp.n_threads = o.threads;
    mp.precision = o.precision;
    mp.device = o.device; /* the context's device left NULL: the model's */
    mp.decoder = o.decoder;
    mp.loras = o.loras;
    mp.n_loras = o.n_loras;
    if (vdit_model_load(mpath, &mp, &model)) {
        fprintf(stderr, "vdit %s: cannot load the model: %s\n", op_names[op], mp.error);
        goto done;
    }
    prog pg = { isatty(2), o.quiet, -1, -1, 1 };
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = o.threads;
    cp.precision = o.precision;
    cp.log_cb = log_cb;
    char ctx_err[512] = "";
    cp.log_user = ctx_err;
    cp.progress_cb = progress;
    cp.progress_user = &pg;
    int cerr = vdit_ctx_init(model, &cp, &ctx);
    if (cerr) {
        fprintf(stderr, "vdit %s: cannot make a context: %s\n", op_names[op],
                ctx_err[0] ? ctx_err : vdit_strerror(cerr));
        goto done;
    }
    if (!o.quiet)
        fprintf(stderr, "vdit %s: computing in %s\n", op_names[op], vdit_ctx_compute(ctx));
    vdit_model_info info;
    vdit_model_get_info(model, &info);
    if (op == OP_GENERATE && !o.frames && (ret = check_output(op, o.output, info.n_frames)))
        goto done;
    ret = 1;
    vdit_gen_params gp;
    vdit_gen_params_default(&gp);
    gp.prompt = o.prompt;
    gp.negative_prompt = o.negative;
    gp.width = o.width;
    gp.height = o.height;
    gp.n_frames = o.frames;
    gp.steps = o.steps;
    gp.guidance = (float)o.guidance;
    gp.shift = (float)o.shift;
    gp.sampler = o.sampler;
    gp.strength = (float)o.strength;
    gp.loop = op == OP_LOOP;
    gp.cache = o.cache;
    gp.cache_threshold = (float)o.cache_threshold;
    gp.cache_start = (float)o.cache_start;
    gp.cache_end = (float)o.cache_end;
    gp.cache_max_skip = o.cache_max_skip;
    gp.guidance_end = (float)o.guidance_end;
    if (op == OP_GENERATE)
        gp.image = in;
    if (o.have_seed) {
        gp.seed = o.seed;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        gp.seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
                  ((uint64_t)getpid() << 32);
        gp.seed &= 0xffffffffffffull;
        if (!o.quiet)
            fprintf(stderr, "vdit %s: seed %llu\n", op_names[op], (unsigned long long)gp.seed);
    }
    /* A single image has no frame rate (the reader says 25 for it): video
     * made from one, image-to-video, runs at the model's rate. */
    if (in && (in->n_frames < 2 || op == OP_GENERATE))
        fps = 0;
    double ofps = o.fps > 0 ? o.fps : fps > 0 ? fps : info.fps;
    char err[512];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int win = gp.n_frames > 0 ? gp.n_frames : info.n_frames;
    if (op == OP_EDIT && in->n_frames > (win + 2) / 4 * 4 + 1) {
        /* longer than a window: written as it is made */
        int written = 0, io = 0;
        int64_t fw = 0, fwt = 0;
        r = edit_streaming(ctx, &gp, in, o.output, ofps, &written, &fw, &fwt, &io, err,
                           sizeof(err));
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (r && pg.tty && !o.quiet)
            fputc('\n', stderr);
        if (r == VDIT_ERR_CANCELLED && interrupted) {
            fprintf(stderr, "vdit edit: interrupted (%s): %s holds the %d of %d frames edited "
                    "before\n", interrupted == SIGTERM ? "SIGTERM" : "SIGINT", o.output, written,
                    in->n_frames);
            ret = interrupted == SIGTERM ? 143 : 130;
            goto done;
        }
        if (r) {
            fprintf(stderr, "vdit edit: %s (%s holds %d of %d frames)\n",
                    io ? err : vdit_ctx_last_error(ctx)[0] ? vdit_ctx_last_error(ctx)
                                                           : vdit_strerror(r),
                    o.output, written, in->n_frames);
            goto done;
        }
        if (!o.quiet)
            fprintf(stderr, "vdit edit: %lld of %lld DiT forwards computed%s\n",
                    (long long)fw, (long long)fwt, o.cache ? " (step cache on)" : "");
        if (!o.quiet)
            fprintf(stderr, "vdit edit: wrote %s (%dx%d, %d frames, %.3g fps)\n", o.output,
                    in->width, in->height, written, ofps);
        ret = 0;
        goto done;
    }
    switch (op) {
    case OP_GENERATE:
    case OP_LOOP:
        r = vdit_generate(ctx, &gp, &out);
        break;
    case OP_EDIT:
        r = vdit_edit(ctx, &gp, in, &out);
        break;
    case OP_EXTEND:
        r = vdit_extend(ctx, &gp, in, o.frames_new, o.backward, &out);
        break;
    default:
        r = vdit_bridge(ctx, &gp, in, in2, o.frames_new, &out);
        break;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (r == VDIT_ERR_CANCELLED && interrupted) {
        if (pg.tty && !o.quiet)
            fputc('\n', stderr);
        fprintf(stderr, "vdit %s: interrupted (%s): no output written\n", op_names[op],
                interrupted == SIGTERM ? "SIGTERM" : "SIGINT");
        ret = interrupted == SIGTERM ? 143 : 130;
        goto done;
    }
    if (r) {
        if (pg.tty && !o.quiet)
            fputc('\n', stderr);
        fprintf(stderr, "vdit %s: %s\n", op_names[op],
                vdit_ctx_last_error(ctx)[0] ? vdit_ctx_last_error(ctx) : vdit_strerror(r));
        goto done;
    }
    if (vio_write(o.output, out, ofps, err, sizeof(err))) {
        fprintf(stderr, "vdit %s: %s\n", op_names[op], err);
        goto done;
    }
    vdit_stats st;
    if (!o.quiet && !vdit_ctx_get_stats(ctx, &st))
        fprintf(stderr, "vdit %s: %lld of %lld DiT forwards computed%s\n", op_names[op],
                (long long)st.forwards, (long long)st.forwards_total,
                o.cache ? " (step cache on)" : "");
    if (!o.quiet)
        fprintf(stderr, "vdit %s: wrote %s (%dx%d, %d frame%s, %.3g fps)\n", op_names[op],
                o.output, out->width, out->height, out->n_frames, out->n_frames == 1 ? "" : "s",
                ofps);
    ret = 0;
done:
    free(expanded);
    vdit_video_free(&in);
    vdit_video_free(&in2);
    vdit_video_free(&out);
    vdit_ctx_free(&ctx);
    vdit_model_free(&model);
    opts_free(&o);
    return ret;
}

int cmd_generate(int argc, char **argv)
{
    return run(OP_GENERATE, argc, argv);
}

int cmd_edit(int argc, char **argv)
{
    return run(OP_EDIT, argc, argv);
}

int cmd_extend(int argc, char **argv)
{
    return run(OP_EXTEND, argc, argv);
}

int cmd_loop(int argc, char **argv)
{
    return run(OP_LOOP, argc, argv);
}

int cmd_bridge(int argc, char **argv)
{
    return run(OP_BRIDGE, argc, argv);
}
