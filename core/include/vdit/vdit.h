/*
 * vdit — video diffusion transformer engine (Wan2.1 family), public C API.
 *
 * Two objects, as in whisper.cpp / llama.cpp:
 *   vdit_model  read-only weights (memory-mapped checkpoints); may be shared
 *               by any number of contexts, in any threads, once loaded.
 *   vdit_ctx    per-run state (scratch memory, thread count, callbacks, the
 *               last error). One context is used by one thread at a time;
 *               separate contexts may run concurrently.
 *
 * Usage:
 *
 *     vdit_model_params mp;
 *     vdit_model_params_default(&mp);
 *     vdit_model *model = NULL;
 *     int err = vdit_model_load("/path/to/Wan2.1-T2V-1.3B", &mp, &model);
 *     if (err < 0) { fprintf(stderr, "%s\n", mp.error); ... }
 *
 *     vdit_ctx_params cp;
 *     vdit_ctx_params_default(&cp);
 *     cp.n_threads = 2;
 *     vdit_ctx *ctx = NULL;
 *     err = vdit_ctx_init(model, &cp, &ctx);
 *     ...                        // generation / edit calls, see below
 *     vdit_ctx_free(&ctx);
 *     vdit_model_free(&model);
 *
 * Return values: every function returning int returns 0 (VDIT_OK) on success
 * or a negative VDIT_ERR_* code. After a failure on a context,
 * vdit_ctx_last_error() gives a human-readable message naming the problem
 * (file, tensor, option...). There is no global mutable state.
 */
#ifndef VDIT_VDIT_H
#define VDIT_VDIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define VDIT_API __declspec(dllexport)
#elif defined(__GNUC__)
#define VDIT_API __attribute__((visibility("default")))
#else
#define VDIT_API
#endif

#define VDIT_VERSION_MAJOR 0
#define VDIT_VERSION_MINOR 1
#define VDIT_VERSION_PATCH 0

/* Version of the library at run time, "MAJOR.MINOR.PATCH". Static string. */
VDIT_API const char *vdit_version(void);

/* ---- errors ------------------------------------------------------------ */

enum vdit_error {
    VDIT_OK = 0,
    VDIT_ERR_INVALID_ARG = -1,  /* a bad argument or option value */
    VDIT_ERR_NOMEM = -2,        /* allocation failed */
    VDIT_ERR_IO = -3,           /* a file could not be opened, read or mapped */
    VDIT_ERR_FORMAT = -4,       /* a file is malformed (checkpoint, tokenizer...) */
    VDIT_ERR_UNSUPPORTED = -5,  /* valid input this build cannot handle */
    VDIT_ERR_CANCELLED = -6,    /* the progress callback asked to stop */
    VDIT_ERR_AGAIN = -7,        /* streaming: send more input / output not ready */
    VDIT_ERR_EOF = -8,          /* streaming: drained, nothing more will come */
    VDIT_ERR_INTERNAL = -9,     /* a bug: please report */
    VDIT_ERR_MISSING = -10,     /* a required tensor or file is absent */
    VDIT_ERR_COUNT = 11
};

/* Short static description of an error code ("invalid argument", ...). */
VDIT_API const char *vdit_strerror(int err);

/* ---- logging and progress ---------------------------------------------- */

enum vdit_log_level {
    VDIT_LOG_ERROR = 0,
    VDIT_LOG_WARNING = 1,
    VDIT_LOG_INFO = 2,
    VDIT_LOG_VERBOSE = 3,
    VDIT_LOG_DEBUG = 4,
    VDIT_LOG_COUNT
};

/* Receives one complete message (no trailing newline). Called from the thread
 * that called into vdit. */
typedef void (*vdit_log_fn)(void *user, int level, const char *msg);

enum vdit_stage {
    VDIT_STAGE_LOAD = 0,
    VDIT_STAGE_ENCODE_TEXT = 1,
    VDIT_STAGE_ENCODE_VIDEO = 2,
    VDIT_STAGE_DENOISE = 3,
    VDIT_STAGE_DECODE = 4,
    VDIT_STAGE_COUNT
};

/* Static name of a stage ("denoise", ...). */
VDIT_API const char *vdit_stage_name(int stage);

/* Called at the start of each stage (step 0) and after each unit of work
 * (step i of total). Return non-zero to cancel: the running call then returns
 * VDIT_ERR_CANCELLED at the next step boundary. Called from the calling thread. */
typedef int (*vdit_progress_fn)(void *user, int stage, int step, int total);

/* ---- model ------------------------------------------------------------- */

typedef struct vdit_model vdit_model;

/* Arithmetic of the products (linear layers, attention). fp32 is exact
 * against the official code's fp32 results; bf16 rounds the operands to
 * bfloat16 and accumulates in fp32, about twice as fast where the CPU has
 * bf16 instructions (AVX512_BF16), with results a few 1e-3 off fp32
 * (docs/precision.md). */
enum vdit_precision {
    VDIT_PRECISION_AUTO = 0, /* bf16 where the CPU computes it natively, else fp32 */
    VDIT_PRECISION_FP32 = 1,
    VDIT_PRECISION_BF16 = 2, /* refused (VDIT_ERR_UNSUPPORTED) on a CPU without bf16 */
};

/* A LoRA (low-rank adaptation) file merged into the DiT's weights at load.
 * Layouts read (safetensors or PyTorch .pth/.pt; docs/lora.md): kohya /
 * ComfyUI "lora_unet_blocks_0_self_attn_q.lora_down.weight" with ".alpha";
 * "diffusion_model." (or other) prefixed original names with lora_down /
 * lora_up and ".alpha", and the full deltas ".diff" (weights), ".diff_b"
 * (biases) and ".diff_m" (block modulation) some distillation LoRAs carry;
 * diffusers / PEFT "lora_A" / "lora_B" under original or diffusers names
 * ("transformer.blocks.0.attn1.to_q.lora_A.weight"). Each weight it names
 * becomes W + scale * (alpha / rank) * (up @ down) (alpha: the rank when
 * absent), computed in fp64 and rounded to fp32; a delta adds scale * diff.
 * A 16-bit weight is rounded back to its type after the last LoRA, an fp8
 * one kept as bf16 (docs/lora.md). A file whose keys name no tensor of the
 * DiT, or whose shapes are another model's, makes the load fail with
 * VDIT_ERR_FORMAT and a message saying so. */
typedef struct vdit_lora {
    const char *path;       /* the file */
    float scale;            /* strength; 1 is the file's own, 0 leaves the weights as they are */
} vdit_lora;

/* Parses a LoRA list as the vdit command, the FFmpeg filters and the
 * GStreamer elements take it: entries "FILE[:SCALE]" separated by '|' (SCALE
 * a number, default 1; a path whose last ':' is not followed by a number is
 * taken whole). Fills out[0..n) with paths copied into buf (buf_size bytes,
 * owned by the caller, which must outlive out). Returns n (0 for NULL or
 * ""), or VDIT_ERR_INVALID_ARG (an empty entry, a scale that is not finite,
 * more than max entries, buf too small). */
VDIT_API int vdit_lora_parse(const char *spec, vdit_lora *out, int max, char *buf,
                             size_t buf_size);

typedef struct vdit_model_params {
    vdit_log_fn log_cb;     /* default NULL: messages go nowhere */
    void *log_user;         /* default NULL */
    int log_level;          /* default VDIT_LOG_WARNING: most verbose level passed on */
    int n_threads;          /* threads for the work loading does (widening fp8
                               weights to BF16); default 0 (VDIT_DEFAULT_THREADS):
                               all cores; 0..4096. Generation uses the context's
                               n_threads. The loaded model does not depend on it */
    int precision;          /* enum vdit_precision the model's contexts will use;
                               default VDIT_DEFAULT_PRECISION (auto). The DiT's
                               weights are prepared at load in the layout the
                               matrix products read: where it means bf16, a bf16
                               copy (2 bytes per weight; the stored pages are
                               handed back); fp32: a packed copy of fp32 weights
                               (16-bit ones are widened per step). Contexts of any
                               precision work on a CPU model */
    char error[256];        /* out: message of the last failure of vdit_model_load */
    int no_mmap;            /* 1: read the checkpoint files into memory instead of
                               mapping them, so nothing done to the files on disk
                               while the model is loaded can reach it (costs their
                               size in memory). Default 0: mapped; a mapped file
                               truncated or rewritten in place after load makes the
                               next call fail with VDIT_ERR_IO naming it (replace a
                               model in use by renaming a new file over it: safe) */
    const vdit_lora *loras; /* LoRAs merged into the DiT's weights at load, in
                               this order (see vdit_lora); default NULL. The array
                               and its paths are read during vdit_model_load only */
    int n_loras;            /* entries in loras; default 0 (none); 0..64 */
    const char *decoder;    /* the decoder of latents into frames, loaded with the
                               model: NULL or "vae" (default): the model's VAE;
                               "tae": TAEHV (madebyollin/taehv, several times faster
                               in a fraction of the memory, lower quality) from the
                               model's folder, taew2_1.safetensors / .pth for Wan2.1,
                               taew2_2.* for Wan2.2 TI2V-5B; anything else: the path
                               of a TAEHV file. The VAE's encoder still encodes
                               (edits, image-to-video). Read during the call only;
                               a missing, corrupt or mismatched file fails the load
                               naming it */
    const char *device;     /* where the weights live and the model runs:
                               NULL or "cpu" (default); "cuda" or "cuda:N": that
                               NVIDIA GPU (the DiT's blocks, the VAE and the text
                               encoder's layers uploaded at load, in bf16, or
                               fp32 with precision fp32; small ends stay on the
                               CPU: docs/cuda.md);
                               "auto": cuda:0 where the build has CUDA and a
                               device answers, else the CPU. A device that cannot
                               be used fails the load naming why (no CUDA in this
                               build, no such device, no driver) */
    uint8_t reserved[24];
} vdit_model_params;

VDIT_API void vdit_model_params_default(vdit_model_params *p);

/* Loads a model from `path`: a folder (the bundled model, an official Wan2.1
 * release folder, a diffusers folder) or a single checkpoint file. The
 * weights are memory-mapped (unless p->no_mmap) and stay in their stored
 * precision; those the LoRAs of p->loras change are merged copies in memory.
 * On success *out owns the model (free with vdit_model_free). On failure
 * *out is NULL and p->error names the file and tensor at fault. */
VDIT_API int vdit_model_load(const char *path, vdit_model_params *p, vdit_model **out);

/* Frees the model and sets *m to NULL. NULL-safe. All contexts made from it
 * must have been freed first. */
VDIT_API void vdit_model_free(vdit_model **m);

/* What a loaded model is and the defaults it brings (from vdit.json for the
 * bundled layout, Wan2.1's published defaults otherwise). */
typedef struct vdit_model_info {
    int width, height;   /* native frame size */
    int n_frames;        /* native clip length (1 + 4k) */
    float fps;           /* native frame rate */
    int steps;           /* default sampling steps */
    float guidance;      /* default guidance scale */
    float shift;         /* default timestep shift */
    int sampler;         /* default enum vdit_sampler */
    int text_len;        /* text tokens the DiT attends to */
    int64_t dim, n_layers, n_heads; /* DiT size */
    int spatial_align;   /* width/height granularity the model needs (pixels) */
    /* The few-step recipe of a distilled model (vdit.json "timesteps",
     * "warp"; docs/sampling.md, "Few-step models"): n_timesteps listed
     * timesteps, 0 when the folder gives none. VDIT_SAMPLER_FEWSTEP uses
     * them when the steps asked are the model's (or 0); other step counts,
     * and models with no list, get the evenly spaced list 1000 - 1000k/N. */
    int n_timesteps;
    int16_t timesteps[16]; /* 1..1000, decreasing */
    uint8_t timesteps_warped; /* 1: looked up in the shifted table (Self-Forcing,
                                 lightx2v), 0: as given (CausVid) */
    uint8_t causal;      /* 1: a causal model (vdit.json "causal": true:
                            Self-Forcing and its kin), trained for chunk-by-chunk
                            generation with a KV cache, which vdit does not run
                            yet: generation returns VDIT_ERR_UNSUPPORTED */
    uint8_t reserved[26];
} vdit_model_info;

/* Fills *out. Returns 0 or VDIT_ERR_INVALID_ARG. */
VDIT_API int vdit_model_get_info(const vdit_model *m, vdit_model_info *out);

/* The model's family, a short name ("wan2.1", "wan2.2-ti2v"), and one line
 * describing it; "" for NULL. Static strings. */
VDIT_API const char *vdit_model_family(const vdit_model *m);
VDIT_API const char *vdit_model_family_title(const vdit_model *m);

/* ---- context ----------------------------------------------------------- */

typedef struct vdit_ctx vdit_ctx;


typedef struct vdit_ctx_params {
    int n_threads;               /* default 0: all cores */
    vdit_log_fn log_cb;          /* default NULL */
    void *log_user;              /* default NULL */
    int log_level;               /* default VDIT_LOG_WARNING */
    vdit_progress_fn progress_cb;/* default NULL */
    void *progress_user;         /* default NULL */
    int precision;               /* enum vdit_precision, default VDIT_DEFAULT_PRECISION */
    const char *device;          /* NULL or "auto" (default): the model's device
                                    (vdit_model_params.device); else it must name
                                    that device ("cpu", "cuda", "cuda:N"): a context
                                    runs where its model's weights are */
    uint8_t reserved[48];
} vdit_ctx_params;

VDIT_API void vdit_ctx_params_default(vdit_ctx_params *p);

/* Makes a context on a loaded model (which must outlive it). */
VDIT_API int vdit_ctx_init(vdit_model *model, const vdit_ctx_params *p, vdit_ctx **out);

/* Frees the context and sets *c to NULL. NULL-safe. */
VDIT_API void vdit_ctx_free(vdit_ctx **c);

/* How the context computes, e.g. "bf16 on avx512_bf16, 2 threads" (the CPU
 * level in use: c, avx2, avx512, avx512_bf16; VDIT_CPU=LEVEL in the
 * environment lowers it for the process). Static per context. */
VDIT_API const char *vdit_ctx_compute(const vdit_ctx *c);

/* Message of the last failed call on this context ("" if none). Valid until
 * the next call on the context. */
VDIT_API const char *vdit_ctx_last_error(const vdit_ctx *c);

/* What the last operation on c did (counts over all its windows). */
typedef struct vdit_stats {
    int64_t forwards;       /* DiT forwards computed (one per guidance branch) */
    int64_t forwards_total; /* forwards the steps run would take uncached */
    uint8_t reserved[64];
} vdit_stats;

/* Fills *out for the last operation (zeros before the first). Returns 0 or
 * VDIT_ERR_INVALID_ARG. */
VDIT_API int vdit_ctx_get_stats(const vdit_ctx *c, vdit_stats *out);

/* Asks a running call on this context to stop at its next step boundary
 * (it then returns VDIT_ERR_CANCELLED). Safe to call from any thread. The
 * flag clears when the next call on the context starts. */
VDIT_API void vdit_ctx_cancel(vdit_ctx *c);

/* Path of the bundled default model (a folder), or NULL if this build has
 * none. Static string. */
VDIT_API const char *vdit_default_model_path(void);

/* ---- video ------------------------------------------------------------- */

/* A clip of 8-bit RGB frames, packed (R, G, B per pixel), rows of width*3
 * bytes, frames one after another. Clips the library makes have at least 64
 * readable bytes after the last pixel (SIMD converters such as swscale's may
 * read that far past a frame's end). */
typedef struct vdit_video {
    int width, height, n_frames;
    uint8_t *rgb;                /* n_frames * height * width * 3 bytes */
} vdit_video;

/* A zeroed clip, or NULL if out of memory / sizes invalid. */
VDIT_API vdit_video *vdit_video_new(int width, int height, int n_frames);
VDIT_API void vdit_video_free(vdit_video **v);

/* ---- generation and editing --------------------------------------------- */

enum vdit_sampler {
    VDIT_SAMPLER_UNIPC = 0, /* Wan's default */
    VDIT_SAMPLER_DPMPP = 1, /* DPM++ 2M */
    VDIT_SAMPLER_EULER = 2,
    VDIT_SAMPLER_FEWSTEP = 3, /* distilled models (CausVid, Self-Forcing,
                                 lightx2v): x0 predicted at each listed
                                 timestep, re-noised to the next with fresh
                                 noise from the seed; the model's list
                                 (vdit_model_info.timesteps) */
    VDIT_SAMPLER_COUNT
};

/* Step caching (docs/sampling.md, "Step caching"): a step may reuse the
 * residual the DiT's blocks added at the last step computed, per guidance
 * branch, while an estimate of how much their output would have changed
 * since stays under a threshold. Fewer DiT forwards, a small change to the
 * result. */
enum vdit_cache {
    VDIT_CACHE_OFF = 0,  /* every step computed */
    VDIT_CACHE_EASY = 1, /* EasyCache: the output's change estimated from the
                            input's, at the rate measured between computed steps */
    VDIT_CACHE_TEA = 2,  /* TeaCache-style: the relative change of the first
                            block's timestep-modulated input */
    VDIT_CACHE_COUNT
};

/* The defaults vdit_gen_params_default(), vdit_stream_params_default() and
 * vdit_ctx_params_default() set, defined once here so that the vdit command
 * and the FFmpeg and GStreamer adapters offer the same ones. Plain constant
 * expressions: usable in static initialisers (an AVOption table, a GParamSpec).
 * "Auto" values stand for the model's own default (its vdit.json, else
 * Wan2.1's published values). */
#define VDIT_DEFAULT_STRENGTH 0.6    /* SDEdit strength: edit, streaming edit, the
                                        crossfade of a bridge or a loop's close */
#define VDIT_DEFAULT_STEPS 0         /* auto: the model's (Wan: 50) */
#define VDIT_DEFAULT_GUIDANCE (-1.0) /* auto: the model's (Wan: 5.0) */
#define VDIT_DEFAULT_SHIFT (-1.0)    /* auto: the model's (Wan t2v: 5.0) */
#define VDIT_DEFAULT_SAMPLER (-1)    /* auto: the model's (UniPC for Wan) */
#define VDIT_DEFAULT_SEED 0
#define VDIT_DEFAULT_WINDOW 0        /* streaming: the model's native length */
#define VDIT_DEFAULT_OVERLAP 0       /* streaming: automatic (one latent frame) */
#define VDIT_DEFAULT_THREADS 0       /* all cores */
#define VDIT_DEFAULT_PRECISION VDIT_PRECISION_AUTO
#define VDIT_DEFAULT_CACHE VDIT_CACHE_OFF
#define VDIT_DEFAULT_CACHE_THRESHOLD 0.0 /* auto: the mode's (docs/sampling.md) */

/* Parameters of one generation or edit. Strings are borrowed: they must stay
 * valid during the call only. Defaults are those vdit_gen_params_default()
 * sets; "the model's" means the model folder's vdit.json, else Wan2.1's
 * published values (832x480, 81 frames, 50 steps, guidance 5, shift 5,
 * UniPC). See docs/operations.md and docs/sampling.md. */
typedef struct vdit_gen_params {
    const char *prompt;          /* default NULL (= empty prompt) */
    const char *negative_prompt; /* default NULL: the model's default negative prompt
                                    (Wan's); "" = an empty negative prompt */
    int width, height;           /* default 0: the model's native size. Any size from
                                    1 to 8192 works: the model runs at the next
                                    multiples of 16 and the result is centre-cropped */
    int n_frames;                /* default 0: the model's native length; 1 = an image.
                                    Counts that are not 1 + 4k run as the next 1 + 4k
                                    and are trimmed. generate: longer clips than the
                                    model's length are made window by window.
                                    edit / extend / bridge: the window length */
    int steps;                   /* default 0: the model's default (Wan: 50); max 1000 */
    float guidance;              /* default -1: the model's default (Wan: 5.0);
                                    0..100, 1 = no classifier-free guidance (one DiT
                                    call per step instead of two) */
    float shift;                 /* default -1: the model's default (Wan t2v: 5.0); (0, 100] */
    int sampler;                 /* enum vdit_sampler; default -1: the model's default
                                    (UniPC for Wan; VDIT_SAMPLER_FEWSTEP, steps and no
                                    guidance for a folder that lists timesteps) */
    uint64_t seed;               /* default 0. Same seed, inputs, parameters and thread
                                    count: bit-identical output (docs/sampling.md) */
    float strength;              /* SDEdit strength in [0, 1], default
                                    VDIT_DEFAULT_STRENGTH, 0.6 (edit,
                                    streaming, and the crossfade a bridge or a loop's
                                    closing frames start from): int(strength * steps)
                                    steps run; with VDIT_SAMPLER_FEWSTEP, the steps
                                    from the first listed timestep at or below
                                    1000 * strength */
    int loop;                    /* generate: 1 = seamless loop; default 0. n_frames is
                                    rounded up to a multiple of 4. 8 frames or more: the
                                    plain clip of n_frames + 1 from its second frame, its
                                    last 4 frames made again to lead back into its start,
                                    then re-encoded after its last frame and decoded so
                                    (a model's vdit.json "loop_turns": 0 leaves that out
                                    and the length as asked); fewer: a circular timeline */
    int cache;                   /* enum vdit_cache, default VDIT_CACHE_OFF */
    float cache_threshold;       /* > 0; default 0: the mode's (docs/sampling.md) */
    float cache_start, cache_end; /* the part of the steps run in which steps may be
                                    reused, as fractions, 0 <= start < end <= 1;
                                    default 0, 0: the mode's */
    int cache_max_skip;          /* steps reused in a row at most, 1..1000; default 0:
                                    the mode's */
    float guidance_end;          /* guidance over the first fraction of the steps run
                                    only, (0, 1]; the rest run the prompt alone, one
                                    DiT call per step. Default 0: all steps */
    const vdit_video *image;     /* generate: image-to-video from this clip's first
                                    frame (default NULL: text to video). It becomes
                                    the first frame: resized to cover the output and
                                    centre-cropped (Lanczos). With no width/height
                                    asked the output keeps the image's aspect within
                                    the model's default area (Wan2.2 TI2V: 1280x704
                                    pixels, sides multiples of 32); vdit_gen_size()
                                    tells that size before generating */
    uint8_t reserved[32];
} vdit_gen_params;

VDIT_API void vdit_gen_params_default(vdit_gen_params *p);

/* The frame size vdit_generate(c, p, ...) on a context of model m makes,
 * worked out without generating anything, for a caller that must announce
 * its output size first (a filter configuring its output link, an element
 * negotiating caps): p->width x p->height where given, the model's native
 * size where not; with p->image, the size described at vdit_gen_params.image
 * (no size asked: the image's aspect within the model's default area; one
 * side asked: the other from the image's aspect). Only the image's width and
 * height are read, its pixels may be NULL. p may be NULL (the defaults).
 * Reads m only: safe from any thread.
 * Returns 0 with *width and *height set, or VDIT_ERR_INVALID_ARG (m, width
 * or height NULL; a negative width, height or n_frames; an image size out of
 * 1..8192; no size in the image's aspect fits the model's area; a result out
 * of 1..8192), *width and *height then untouched; vdit_generate() with the
 * same p says why in vdit_ctx_last_error(). */
VDIT_API int vdit_gen_size(const vdit_model *m, const vdit_gen_params *p, int *width,
                           int *height);

/* All operations below: c is busy for the call (one call at a time per
 * context); p may be NULL (defaults). On success *out is a new clip owned by
 * the caller (vdit_video_free); on failure *out is NULL and
 * vdit_ctx_last_error(c) says why. Inputs are only read.
 * Returns 0, VDIT_ERR_INVALID_ARG (a size, count or parameter out of range,
 * NULL where a value is needed), VDIT_ERR_NOMEM, VDIT_ERR_CANCELLED (progress
 * callback or vdit_ctx_cancel), or a model error code. */

/* Text to video (n_frames > 1) or image (n_frames == 1); p->loop makes the
 * clip loop seamlessly (its last frame leads into its first). */
VDIT_API int vdit_generate(vdit_ctx *c, const vdit_gen_params *p, vdit_video **out);

/* Video to video by SDEdit: the input's latent is noised to the level
 * p->strength selects (diffusers' definition: the last int(strength*steps)
 * steps of the schedule run, from x = (1 - sigma) x0 + sigma noise; 0
 * returns the input through the VAE, 1 ignores it), then denoised under
 * p->prompt. Output has the input's size and length. An input longer than
 * one window (p->n_frames, default the model's length) is edited window by
 * window as the streaming edit does. */
VDIT_API int vdit_edit(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in,
                       vdit_video **out);

/* vdit_edit with every frame handed to sink as soon as it is edited, in
 * order (index 0, 1, ...; rgb: width * height * 3 bytes, valid during the
 * call), instead of a clip: memory does not grow with the length of a
 * clip longer than one window, and a caller writing the frames as they
 * come keeps the ones edited before a failure or a cancel. A nonzero return
 * from sink stops the edit and is returned. */
typedef int (*vdit_frame_sink)(void *user, int index, const uint8_t *rgb);
VDIT_API int vdit_edit_frames(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in,
                              vdit_frame_sink sink, void *user);

/* Extends `in` by n_new frames after its end (backward = 0) or before its
 * start (backward = 1), window by window (p->n_frames frames per window,
 * default the model's length), so any length works; each window continues
 * from the frames already made, held fixed in latent space. With a
 * one-frame input this is image-to-video. The output is the input frames,
 * unchanged, plus the n_new new ones (in->n_frames + n_new frames). */
VDIT_API int vdit_extend(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *in, int n_new,
                         int backward, vdit_video **out);

/* Generates n_mid frames connecting the end of a to the start of b (same
 * size); the output is those n_mid frames only. They start as a crossfade
 * from a's last frame to b's first, noised to p->strength (1: from noise). */
VDIT_API int vdit_bridge(vdit_ctx *c, const vdit_gen_params *p, const vdit_video *a,
                         const vdit_video *b, int n_mid, vdit_video **out);

/* ---- streaming edit ------------------------------------------------------ */

/* Pixel formats of the frames a stream takes and gives (its params' format).
 * Deeper video (10-, 12-bit) goes in as RGB48 so that it reaches the model
 * and comes back without rounding to 8 bits. */
enum vdit_pixel_format {
    VDIT_PIXFMT_RGB24 = 0, /* packed R, G, B, 8 bits each (3 bytes a pixel) */
    VDIT_PIXFMT_RGB48 = 1, /* packed R, G, B, 16 bits each (uint16_t in host byte
                              order, 6 bytes a pixel), 0..65535: n-bit video
                              scaled to 16 bits, as FFmpeg's rgb48 and GStreamer's
                              16-bit RGB formats carry it */
    VDIT_PIXFMT_COUNT
};

/* Bytes per pixel of a pixel format, 0 if unknown. */
VDIT_API int vdit_pixel_format_bytes(int format);

/* Flags of vdit_stream_send_flags. */
enum vdit_frame_flags {
    VDIT_FRAME_KEEP = 1, /* the frame is outside the range to edit: it comes back
                            with its pixels as they went in. A window made only of
                            kept frames is not edited at all (no model work); a
                            window with any frame to edit is edited whole (kept
                            frames included, so the edit stays consistent in
                            time), and the edited frames next to kept ones fade
                            from and back to the input over `fade` frames */
};

/* Frames move through a stream as packed RGB (8 or 16 bits a sample, the
 * stream's format) with a caller tag (pts, user) that comes back unchanged
 * with the edited frame. Frames come out in the order they went in, one out
 * for each in.
 *
 * Windows: the first window (and the first after a flush) takes `window`
 * frames (rounded up to 1 + 4k) and is edited by SDEdit. Each later window
 * takes window - C new frames and continues from the last C frames output
 * (C = overlap rounded up to 4j - 3, default 1), which are held fixed while
 * its frames are edited, so no seam shows between windows. Memory is one
 * window of input and output plus C frames, whatever the stream's length.
 *
 * Typical loop (single thread):
 *     for each input frame:
 *         while (vdit_stream_send(s, &f) == VDIT_ERR_AGAIN)
 *             while (vdit_stream_receive(s, &o) == 0) emit(&o);
 *         (optionally receive and emit here too)
 *     vdit_stream_drain(s);
 *     while (vdit_stream_receive(s, &o) == 0) emit(&o);   // ends with VDIT_ERR_EOF */
typedef struct vdit_frame {
    int width, height;
    const uint8_t *rgb;   /* pixels in the stream's format (uint16_t samples for
                             RGB48, 2-byte aligned). send: the caller's (copied);
                             receive: owned by the stream, valid until the next
                             call on the stream */
    ptrdiff_t stride;     /* bytes per row (>= width * vdit_pixel_format_bytes) */
    int64_t pts;          /* passed through */
    void *user;           /* passed through */
} vdit_frame;

typedef struct vdit_stream_params {
    vdit_gen_params gen; /* prompt, strength (default VDIT_DEFAULT_STRENGTH), steps,
                            seed... (strings are copied at open) */
    int window;          /* frames per window, default 0: the model's native length;
                            rounded up to 1 + 4k, at least 5 */
    int overlap;         /* frames of the previous output each window continues
                            from, default 0: automatic (one frame = one latent frame);
                            rounded up to 4j - 3 and at most about half a window */
    int format;          /* enum vdit_pixel_format of every frame sent and received;
                            default VDIT_PIXFMT_RGB24 */
    int fade;            /* frames over which edited frames fade from and back to
                            the input next to frames sent with VDIT_FRAME_KEEP;
                            default 0: a hard cut. With fade > 0 the last `fade`
                            edited frames of a window wait for the next `fade`
                            frames to be sent (or the drain): the latency grows by
                            fade. At most window - overlap; larger is clamped */
    uint8_t reserved[56];
} vdit_stream_params;

VDIT_API void vdit_stream_params_default(vdit_stream_params *p);

typedef struct vdit_stream vdit_stream;

/* Opens a streaming edit of width x height frames on context c (which must
 * outlive it and is busy while a send/receive runs). p may be NULL. *out is
 * owned by the caller (vdit_stream_close). Returns 0, VDIT_ERR_INVALID_ARG or
 * VDIT_ERR_NOMEM. */
VDIT_API int vdit_stream_open(vdit_ctx *c, const vdit_stream_params *p, int width, int height,
                              vdit_stream **out);

/* Queues one frame (its pixels are copied). Returns 0; VDIT_ERR_AGAIN when a
 * window is complete and must be processed by vdit_stream_receive first (the
 * frame was not taken: send it again); VDIT_ERR_INVALID_ARG if its size differs
 * from the stream's or the stream was drained. */
VDIT_API int vdit_stream_send(vdit_stream *s, const vdit_frame *in);

/* vdit_stream_send with flags (enum vdit_frame_flags); flags 0 is
 * vdit_stream_send. Unknown flags: VDIT_ERR_INVALID_ARG. */
VDIT_API int vdit_stream_send_flags(vdit_stream *s, const vdit_frame *in, unsigned flags);

/* Ends the input: the partial last window will be processed by the next
 * receives. Sending again needs a flush. */
VDIT_API int vdit_stream_drain(vdit_stream *s);

/* Gets the next edited frame. Processes a window when one is complete (this is
 * where the work happens, in the calling thread). Returns 0; VDIT_ERR_AGAIN
 * when more input is needed; VDIT_ERR_EOF once drained and everything was
 * received; or an error code from the pipeline (VDIT_ERR_CANCELLED...): the
 * window stays queued, so the next receive tries it again and a flush drops
 * it. */
VDIT_API int vdit_stream_receive(vdit_stream *s, vdit_frame *out);

/* New prompt (NULL: keep; copied) and strength (< 0: keep; <= 1), applied from
 * the next window that starts processing. */
VDIT_API int vdit_stream_update(vdit_stream *s, const char *prompt, float strength);

/* Drops queued input and pending output (flush/seek); the next frame starts a
 * new, unconditioned window. Also clears a drain. */
VDIT_API void vdit_stream_flush(vdit_stream *s);

/* Number of frames the stream holds back before output starts (latency):
 * the first window's length, plus fade. */
VDIT_API int vdit_stream_latency(const vdit_stream *s);

/* Frees the stream and sets *s to NULL. NULL-safe. */
VDIT_API void vdit_stream_close(vdit_stream **s);

/* Runs the engine's self-check: every kernel against its reference on random
 * data. Needs no model. Returns 0 when all agree; logs through cb. */
VDIT_API int vdit_selfcheck(int n_threads, vdit_log_fn cb, void *user);

#ifdef __cplusplus
}
#endif
#endif /* VDIT_VDIT_H */
