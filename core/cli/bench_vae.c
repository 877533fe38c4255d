/* `vdit bench vae`: a Wan VAE at its real configuration on random weights
 * (--model): the Wan2.1 VAE (dim 96, z 16, dim_mult [1,2,4,4], 2 residual
 * blocks, temporal downsampling [F,T,T]; 8x8 spatial, 4x temporal) or the
 * Wan2.2 VAE of TI2V-5B (dim 160, decoder dim 256, z 48, the same lists,
 * frames patchified 2x2; 16x16 spatial, 4x temporal). The latent geometry
 * (channels, spatial and temporal factors) is the loaded model's. Encode
 * and decode frames per second (and seconds per frame) and peak resident
 * memory per case; every case runs in its own child process so that each
 * peak RSS is that case's own. The model is detached from its checkpoint
 * (vd_vae_detach), so the weights are held once. Frames stream through
 * vd_vae_*_stream (the one-shot calls are loops over the same machinery),
 * so neither the input video nor the output is held: the peak is the
 * engine's. GFLOP/s counts the products the kernels are asked for (a table
 * wrapping the context's), against the peak measured for the level and
 * precision in use (--precision, --isa; vk_peak_gflops).
 *
 * --torch runs the same network (the project's models/wan/vae.py or
 * vae22.py, the official chunked evaluation, models/bench/bench_vae_torch.py;
 * its own random weights) in the PyTorch baselines with the same threads, one
 * process per case and baseline (--torch-rows picks some): PyTorch 2 bf16
 * and fp32 from scripts/bench-venv.sh's venv, Debian's torch 1.13 fp32; each
 * with vdit's time at the same precision over theirs (vdit runs the case at
 * the other precision too when a row needs it), as `vdit bench dit --torch`
 * does.
 *
 * --device cuda[:N] runs the cases on a CUDA device instead (CUDA builds):
 * each child opens the device, uploads both nets (vd_vae_upload, bf16 unless
 * --precision fp32; the 1x1 ends stay on the host), runs a short warm-up
 * stream (kernel loading, not timed), then streams the frames as above, each
 * output back on the host; seconds, frames/s and the peak device memory of
 * the context (weights, caches, buffers, cuBLASLt's workspace). With --torch,
 * one row: PyTorch on the same device and precision (bench_vae_torch.py
 * --device), vdit's time over its. The parent never touches the device (a
 * CUDA context does not survive fork). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"
#include "kernels/kernels.h"
#include "vae/vae.h"
#if VK_HAVE_CUDA
#include "kernels/cuda/vkc.h"
#endif

/* The model of --model: 0 Wan2.1, 1 Wan2.2 (set once, before any child). */
static int vae_model;

static vd_ckpt *make_model(size_t *bytes)
{
    return vae_model ? bench_vae22_weights(160, 256, 48, bytes) : bench_vae21_weights(96, 16, bytes);
}

/* ---- flops of the products, counted on the way to the kernels ------------------- */

/* Convolutions and attention as the model asks for them: the work really
 * done (the taps of zero frames the engine skips are not counted). One
 * context on one thread per process (each case runs in its own child). */
static const vk_funcs *cnt_real;
static vk_funcs cnt_tab;
static double cnt_flops;

static void cnt_conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                     int h, int w, float *y)
{
    double od = (d + g->pd0 + g->pd1 - cv->kd) / g->sd + 1;
    double oh = (h + g->ph0 + g->ph1 - cv->kh) / g->sh + 1;
    double ow = (w + g->pw0 + g->pw1 - cv->kw) / g->sw + 1;
    cnt_flops += 2.0 * cv->c_out * cv->c_in * cv->kd * cv->kh * cv->kw * od * oh * ow;
    cnt_real->conv(c, cv, g, x, d, h, w, y);
}

static void cnt_conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                         const float *x, int h, int w, float *y)
{
    double oh = (h + g->ph0 + g->ph1 - cv->kh) / g->sh + 1;
    double ow = (w + g->pw0 + g->pw1 - cv->kw) / g->sw + 1;
    cnt_flops += 2.0 * cv->c_out * cv->c_in * cv->kh * cv->kw * oh * ow;
    cnt_real->conv_tap(c, cv, g, k, flags, x, h, w, y);
}

static void cnt_attention(vk_ctx *c, const float *q, int64_t ldq, const float *k, int64_t ldk,
                          const float *v, int64_t ldv, float *o, int64_t ldo, int64_t heads,
                          int64_t hd, int64_t lq, int64_t lk, int64_t kv_valid, float scale,
                          const float *bias)
{
    cnt_flops += 4.0 * (double)lq * (double)kv_valid * (double)hd * (double)heads;
    cnt_real->attention(c, q, ldq, k, ldk, v, ldv, o, ldo, heads, hd, lq, lk, kv_valid, scale,
                        bias);
}

static void count_flops(vk_ctx *kc)
{
    cnt_real = kc->f;
    cnt_tab = *kc->f;
    cnt_tab.conv = cnt_conv;
    cnt_tab.conv_tap = cnt_conv_tap;
    cnt_tab.attention = cnt_attention;
    kc->f = &cnt_tab;
}

/* ---- one case in a child process ------------------------------------------------ */

typedef struct bres {
    double sec, fps, peak_mib, stream_mib, out_max, gflop;
    int frames_out, ok;
    double dev_mib, dev_w_mib; /* --device: peak device memory, the weights' part */
} bres;

/* Level and precision of every case (bench_vae resolves them). */
static vk_isa case_isa;
static vk_prec case_prec;
/* --device: the device ("cuda", "cuda:N"; NULL: the CPU) and the precision
 * the nets run in there (bf16 or fp32); case_isa and case_prec are the
 * host's, for the 1x1 ends. */
static const char *case_device;
static vk_prec dev_prec;

/* Opens case_device into kc (owned by it from then on) and uploads v in
 * dev_prec, the ends detached for kc. 0, or VDIT_ERR_* said in lg. */
static int upload(vd_vae *v, vk_ctx *kc, vd_ckpt *ck, vd_log *lg)
{
    vk_device dev;
    int e = vk_device_parse(case_device, &dev, lg);
    if (!e)
        e = vk_device_open(&dev, &kc->cuda, lg);
    if (!e)
        e = vd_vae_upload(v, kc->cuda, dev_prec, kc, bench_release_pages, ck, lg);
    kc->cuda_bf16 = dev_prec == VK_PREC_BF16;
    return e;
}

/* The device loads its kernels on first use: a stream of the case's size
 * pushed frame 0 and the first chunk (encode: 5 frames; decode: 2 latent
 * frames) and freed, before the timed one.
 * 0, or VDIT_ERR_* said in kc's log. */
static int warm_up(const vd_vae *v, vk_ctx *kc, int enc, int h, int w, int tile, int n_push)
{
    const vd_vae_config *vc = vd_vae_get_config(v);
    int z = vc->z_dim, hl = h / vc->s_factor, wl = w / vc->s_factor;
    size_t nin = enc ? (size_t)3 * h * w : (size_t)z * hl * wl;
    size_t nout = enc ? (size_t)z * hl * wl : (size_t)vc->t_factor * 3 * h * w;
    vd_vae_stream *s = NULL;
    float *in = vd_malloc(nin * sizeof(float)), *out = vd_malloc(nout * sizeof(float));
    int e = !in || !out ? VDIT_ERR_NOMEM
            : enc       ? vd_vae_enc_stream_new(v, kc, h, w, tile, &s)
                        : vd_vae_dec_stream_new(v, kc, hl, wl, tile, &s);
    uint64_t rs = 7;
    for (size_t i = 0; !e && i < nin; i++)
        in[i] = bench_urand(&rs);
    for (int k = 0; !e && k < n_push && k < (enc ? 5 : 2); k++) {
        int no = 0;
        e = enc ? vd_vae_enc_stream_push(s, in, out, &no) : vd_vae_dec_stream_push(s, in, out, &no);
    }
    vd_vae_stream_free(&s);
    vd_free(in);
    vd_free(out);
    return e;
}

/* enc: push t frames of W x H; else push 1 + (t-1)/4 latent frames. */
static bres run_case(int enc, int w, int h, int t, int threads, int tile)
{
    bres r = { 0 };
    vd_log lg = { 0 };
    size_t wb = 0;
    vd_ckpt *ck = make_model(&wb);
    vd_vae *v = NULL;
    vk_ctx *kc = vk_ctx_new_ex(threads, (int)case_isa, case_prec, &lg);
    vd_vae_stream *s = NULL;
    float *in = NULL, *out = NULL;
    /* prepared for this case's frame size: the weights layout oneDNN picks can
     * depend on it (docs/vae.md, Memory) */
    if (!ck || !kc || vd_vae_load(ck, &lg, &v) ||
        (case_device ? upload(v, kc, ck, &lg)
                     : vd_vae_detach_part(v, kc, VD_VAE_ENCODER | VD_VAE_DECODER, h, w,
                                          bench_release_pages, ck))) {
        fprintf(stderr, "vdit bench vae: %s\n", lg.msg[0] ? lg.msg : "out of memory");
        goto done;
    }
    /* the model keeps its own prepared weights: the checkpoint goes */
    vd_ckpt_free(&ck);
    /* the model's latent geometry */
    const vd_vae_config *vc = vd_vae_get_config(v);
    int z = vc->z_dim, sf = vc->s_factor, tf = vc->t_factor, hl = h / sf, wl = w / sf;
    int n_push = enc ? t : 1 + (t - 1) / tf;
    if (case_device && warm_up(v, kc, enc, h, w, tile, n_push)) {
        fprintf(stderr, "vdit bench vae: warm-up: %s\n", lg.msg);
        goto done;
    }
    int e = enc ? vd_vae_enc_stream_new(v, kc, h, w, tile, &s)
                : vd_vae_dec_stream_new(v, kc, hl, wl, tile, &s);
    if (e) {
        fprintf(stderr, "vdit bench vae: %s\n", lg.msg);
        goto done;
    }
    size_t nin = enc ? (size_t)3 * h * w : (size_t)z * hl * wl;
    size_t nout = enc ? (size_t)z * hl * wl : (size_t)tf * 3 * h * w;
    in = vd_malloc(nin * sizeof(float));
    out = vd_malloc(nout * sizeof(float));
    if (!in || !out)
        goto done;
    uint64_t rs = 99;
    for (size_t i = 0; i < nin; i++)
        in[i] = enc ? 0.9f * bench_urand(&rs) : 1.5f * bench_urand(&rs);
    if (!case_device) /* on a device the products do not go through kc->f */
        count_flops(kc);
    cnt_flops = 0;
    double t0 = vd_time();
    for (int k = 0; k < n_push; k++) {
        int no = 0;
        e = enc ? vd_vae_enc_stream_push(s, in, out, &no) : vd_vae_dec_stream_push(s, in, out, &no);
        if (e && case_device)
            fprintf(stderr, "\nvdit bench vae: %s\n", lg.msg);
        if (e)
            goto done;
        r.frames_out += no;
        fprintf(stderr, "\r  %s %dx%d: %d/%d %s, %.1f s   ", enc ? "encode" : "decode", w, h,
                k + 1, n_push, enc ? "frames" : "latent frames", vd_time() - t0);
    }
    fprintf(stderr, "\n");
    r.sec = vd_time() - t0;
    r.gflop = cnt_flops * 1e-9;
    r.fps = (enc ? t : r.frames_out) / r.sec;
    r.peak_mib = bench_peak_rss() / 1048576.0;
    r.stream_mib = (double)vd_vae_stream_bytes(s) / 1048576.0;
#if VK_HAVE_CUDA
    /* the model's weights were uploaded through kc's own device context,
     * so its peak is the sum of theirs and the stream's */
    if (kc->cuda)
        r.dev_mib = (double)vkc_mem_peak(kc->cuda) / 1048576.0;
#endif
    r.dev_w_mib = (double)vd_vae_device_bytes(v) / 1048576.0;
    r.ok = 1;
done:
    vd_free(in);
    vd_free(out);
    vd_vae_stream_free(&s);
    vd_vae_free(&v);
    vk_ctx_free(&kc);
    vd_ckpt_free(&ck);
    return r;
}

/* Runs fn(arg, out) in a child process and copies its out (n bytes) back;
 * zeros when the child failed. Every case and the peak run in children: the
 * parent must not start OpenMP threads before it forks (libgomp's threads do
 * not survive a fork, and the child's first parallel region would wait for
 * them forever), and each case's peak RSS is then its own. */
static void in_child(void (*fn)(const void *arg, void *out), const void *arg, void *out, size_t n)
{
    int fd[2];
    memset(out, 0, n);
    fflush(stdout);
    if (pipe(fd))
        return;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        fn(arg, out);
        ssize_t wr = write(fd[1], out, n);
        _exit(wr == (ssize_t)n ? 0 : 1);
    }
    close(fd[1]);
    ssize_t rd = read(fd[0], out, n);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (rd != (ssize_t)n)
        memset(out, 0, n);
}

typedef struct case_arg {
    int enc, w, h, t, threads, tile;
    vk_prec prec;
} case_arg;

static void case_fn(const void *arg, void *out)
{
    const case_arg *a = arg;
    case_prec = a->prec;
    *(bres *)out = run_case(a->enc, a->w, a->h, a->t, a->threads, a->tile);
}

static bres run_child(int enc, int w, int h, int t, int threads, int tile, vk_prec prec)
{
    case_arg a = { enc, w, h, t, threads, tile, prec };
    bres r;
    in_child(case_fn, &a, &r, sizeof(r));
    return r;
}

/* The measured peak of the case's level at precision prec. */
typedef struct bpeak {
    double gflops;
    char how[240];
} bpeak;

static void peak_fn(const void *arg, void *out)
{
    const int *a = arg; /* threads, precision */
    bpeak *r = out;
    r->gflops = vk_peak_gflops(case_isa, (vk_prec)a[1], a[0], NULL, r->how, sizeof(r->how));
}

static bpeak peak_child(int threads, vk_prec prec)
{
    int a[2] = { threads, (int)prec };
    bpeak r;
    in_child(peak_fn, a, &r, sizeof(r));
    return r;
}

/* --device: whether the device opens, in a child (the parent must not make a
 * CUDA context: it would not survive the fork of the next case). */
typedef struct bdev {
    int ok;
    char name[128], msg[512];
} bdev;

static void dev_fn(const void *arg, void *out)
{
    bdev *r = out;
    vd_log lg = { 0 };
    vk_device dev;
    void *vc = NULL;
    (void)arg;
    if (vk_device_parse(case_device, &dev, &lg) || vk_device_open(&dev, &vc, &lg)) {
        snprintf(r->msg, sizeof(r->msg), "%s", lg.msg);
        return;
    }
    snprintf(r->name, sizeof(r->name), "%s", vk_device_describe(vc));
    vk_device_close(&vc);
    r->ok = 1;
}

/* One PyTorch baseline of --torch (as in bench_dit.c): how it runs, then
 * what it measured for the current case. */
typedef struct trow {
    const char *name; /* until it ran: "PyTorch 2 bf16", ... */
    int bf16;         /* compared with vdit's bf16 run (else fp32) */
    int debian;       /* Debian's torch, /usr/bin/python3 */
    const char *py;   /* the interpreter; NULL: skipped, why says why */
    const char *why;
    bres r;           /* this case */
    char ver[64];
    int s_ok, s_vp;   /* the summary's case: vdit's precision (0 fp32, 1 bf16) */
    double s_sec, s_mib, s_vsec, s_vmib; /* theirs and vdit's seconds and peak MiB */
} trow;


static void trow_label(const trow *r, int mm, char *buf, size_t n)
{
    char v[64];
    if (!r->ver[0])
        snprintf(buf, n, "%s", r->name);
    else
        snprintf(buf, n, "PyTorch %s %s%s%s%s", bench_short_ver(r->ver, mm, v, sizeof(v)),
                 r->bf16 ? "bf16" : "fp32", r->debian ? " (Debian)" : "",
                 case_device ? " on " : "", case_device ? case_device : "");
}

/* PyTorch: prints "torch_version V", "torch_seconds S", "torch_frames_out N"
 * and "torch_peak_mib M" (--device: the device's peak,
 * torch.cuda.max_memory_allocated). */
static bres run_torch(trow *tr, const char *script, int enc, int w, int h, int t, int threads)
{
    bres r = { 0 };
    char cmd[2048];
    int nc = snprintf(cmd, sizeof(cmd),
                      "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d '%s' '%s' --mode %s "
                      "--width %d --height %d --frames %d --threads %d --dtype %s --model %s",
                      threads, threads, tr->py, script, enc ? "encode" : "decode", w, h, t,
                      threads, tr->bf16 ? "bf16" : "fp32", vae_model ? "wan22" : "wan21");
    if (case_device && nc > 0 && (size_t)nc < sizeof(cmd))
        snprintf(cmd + nc, sizeof(cmd) - (size_t)nc, " --device %s", case_device);
    printf("  %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p)
        return r;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof(line), p)) {
        got += sscanf(line, "torch_seconds %lf", &r.sec) == 1;
        got += sscanf(line, "torch_peak_mib %lf", &r.peak_mib) == 1;
        got += sscanf(line, "torch_frames_out %d", &r.frames_out) == 1;
        sscanf(line, "torch_version %63s", tr->ver);
    }
    if (pclose(p) == 0 && got == 3 && r.sec > 0) {
        r.ok = 1;
        r.fps = (enc ? t : r.frames_out) / r.sec;
    }
    return r;
}



static void usage(void)
{
    printf("usage: vdit bench vae [--model wan21|wan22] [--threads N]\n"
           "                      [--case WxHxT[:enc|dec]]... [--tile PX]\n"
           "                      [--precision fp32|bf16|auto] [--isa LEVEL]\n"
           "                      [--torch] [--torch-rows LIST] [--torch-script PATH]\n"
           "                      [--python PATH] [--no-venv] [--quick]\n"
           "                      [--device cuda|cuda:N]\n"
           "--model wan21 (default): the Wan2.1 VAE (dim 96, z 16, dim_mult [1,2,4,4], 2 res\n"
           "blocks, temporal [F,T,T]; 8x8 spatial, 4x temporal); wan22: the Wan2.2 VAE of\n"
           "TI2V-5B (dim 160, decoder dim 256, z 48, the same lists, frames patchified 2x2;\n"
           "16x16 spatial, 4x temporal; frame sides multiples of 16). Random weights; the\n"
           "latent geometry is the loaded model's. For each case: encode and/or decode\n"
           "seconds, frames/s and s/frame, peak RSS\n"
           "(each case in its own process; frames stream, the video is never held),\n"
           "GFLOP/s of the convolutions and attention and %% of the peak measured for the\n"
           "level and precision in use; a summary line for the last decode case.\n"
           "--precision: default auto (bf16 where native); --isa c|avx2|avx512|avx512_bf16:\n"
           "default the CPU's level.\n"
           "Default cases: 320x192x17, 832x480x17, 832x480x161:dec (wan22: 320x192x17,\n"
           "1280x704x5:dec). --quick: 320x192x5 only.\n"
           "--tae: the TAEHV decoder beside this decoder instead (vdit bench tae, its\n"
           "options).\n"
           "--torch: the same network in PyTorch (models/bench/bench_vae_torch.py, the\n"
           "project's models/wan/vae.py or vae22.py, official chunked path), same threads,\n"
           "one row per baseline: PyTorch 2 bf16 and fp32 (scripts/bench-venv.sh's venv; it\n"
           "is created when missing, about 2.7 GB from PyPI), Debian's torch 1.13 fp32\n"
           "(/usr/bin/python3, if it imports torch); each with vdit's time at the same\n"
           "precision over theirs (vdit runs the other precision too when a row needs it);\n"
           "a summary line per baseline. --torch-rows: some of torch-bf16,torch-fp32,debian\n"
           "(comma-separated; default all). --python PATH: that interpreter for the PyTorch 2\n"
           "rows; --no-venv: never create the venv (rows without an interpreter are skipped).\n"
           "--device cuda[:N]: the cases on that GPU (CUDA builds): both nets uploaded\n"
           "(vd_vae_upload; bf16 unless --precision fp32, exact fp32 without TF32), the 1x1\n"
           "ends on the host; a warm-up stream (encode 5 frames, decode 2 latent frames),\n"
           "then seconds to the last output frame back on the host, frames/s, peak device\n"
           "memory; default case 832x480x81:dec. With --torch one row: PyTorch on the same\n"
           "device and precision (bench_vae_torch.py --device), its peak device memory,\n"
           "vdit's time over its.\n"
           "A device that cannot be opened: the reason, exit status 1.\n");
}

typedef struct bcase {
    int w, h, t, enc, dec;
} bcase;

int bench_vae(int argc, char **argv)
{
    int threads = 0, torch = 0, tile = 0, nc = 0, bad = 0, isa_opt = -1;
    vk_prec prec_opt = VK_PREC_AUTO;
    bcase cs[16];
    const char *script = "models/bench/bench_vae_torch.py", *python = NULL, *rows_opt = NULL;
    const char *device = NULL;
    int no_venv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) {
            vae_model = !strcmp(v, "wan22") || !strcmp(v, "wan2.2");
            bad |= !vae_model && strcmp(v, "wan21") && strcmp(v, "wan2.1");
            i++;
        } else if (!strcmp(a, "--torch-rows") && v) {
            rows_opt = v;
            torch = 1;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = bench_parse_threads(v, &bad);
            i++;
        } else if (!strcmp(a, "--tile") && v) {
            tile = atoi(v);
            i++;
        } else if (!strcmp(a, "--precision") && v) {
            bad |= bench_parse_prec(v, &prec_opt) != 0;
            i++;
        } else if (!strcmp(a, "--isa") && v) {
            bad |= bench_parse_isa(v, &isa_opt) != 0;
            i++;
        } else if (!strcmp(a, "--torch")) {
            torch = 1;
        } else if (!strcmp(a, "--torch-script") && v) {
            script = v;
            torch = 1;
            i++;
        } else if (!strcmp(a, "--python") && v) {
            python = v;
            torch = 1;
            i++;
        } else if (!strcmp(a, "--no-venv")) {
            no_venv = 1;
        } else if (!strcmp(a, "--device") && v) {
            device = v;
            i++;
        } else if (!strcmp(a, "--quick")) {
            cs[0] = (bcase){ 320, 192, 5, 1, 1 };
            nc = 1;
        } else if (!strcmp(a, "--case") && v && nc < 16) {
            bcase c = { 0, 0, 0, 1, 1 };
            char m[8] = "";
            if (sscanf(v, "%dx%dx%d:%7s", &c.w, &c.h, &c.t, m) < 3 || c.w <= 0 || c.h <= 0 ||
                c.t <= 0)
                bad = 1;
            if (!strcmp(m, "enc"))
                c.dec = 0;
            else if (!strcmp(m, "dec"))
                c.enc = 0;
            cs[nc++] = c;
            i++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else {
            bad = 1;
        }
    }
    /* frame sides: multiples of the model's spatial factor */
    int sfac = vae_model ? 16 : 8;
    for (int i = 0; i < nc; i++)
        if (cs[i].w % sfac || cs[i].h % sfac) {
            fprintf(stderr, "vdit bench vae: %dx%d: sides must be multiples of %d\n", cs[i].w,
                    cs[i].h, sfac);
            bad = 1;
        }
    if (bad || tile < 0) {
        fprintf(stderr, "vdit bench vae: bad arguments (see --help)\n");
        return 2;
    }
    if (device) {
        vk_device pd;
        vd_log dl = { 0 };
        if (vk_device_parse(device, &pd, &dl) || !pd.cuda || pd.is_auto) {
            fprintf(stderr, "vdit bench vae: --device takes cuda or cuda:N\n");
            return 2;
        }
        if (!vk_have_cuda()) {
            fprintf(stderr, "vdit bench vae: --device %s: this build has no CUDA backend\n",
                    device);
            return 1;
        }
        /* the device computes bf16 natively: --precision auto means bf16 there */
        dev_prec = prec_opt == VK_PREC_F32 ? VK_PREC_F32 : VK_PREC_BF16;
        case_device = device;
        if (!nc) { /* the decode of a Wan2.1 video: 81 frames of 832x480 */
            cs[0] = (bcase){ 832, 480, 81, 0, 1 };
            nc = 1;
        }
    }
    if (!nc && vae_model) {
        cs[0] = (bcase){ 320, 192, 17, 1, 1 };
        cs[1] = (bcase){ 1280, 704, 5, 0, 1 };
        nc = 2;
    } else if (!nc) {
        cs[0] = (bcase){ 320, 192, 17, 1, 1 };
        cs[1] = (bcase){ 832, 480, 17, 1, 1 };
        cs[2] = (bcase){ 832, 480, 161, 0, 1 };
        nc = 3;
    }
    if (threads <= 0)
        threads = vd_cpu_count();
    /* --device: the host's precision is for the 1x1 ends, at its best */
    if (bench_resolve("vae", threads, isa_opt, device ? VK_PREC_AUTO : prec_opt, &case_isa,
                      &case_prec))
        return 2;
    const char *pn = vk_prec_name(device ? dev_prec : case_prec);
    /* bf16 convolutions are chosen inside the backend by the context's
     * precision, which exists only where bf16 is native */
    int conv_f32 = case_prec == VK_PREC_BF16 && !vk_isa_native_bf16(case_isa);
    bdev dv = { 0 };
    if (device) { /* before anything is printed: whether the device opens */
        in_child(dev_fn, NULL, &dv, sizeof(dv));
        if (!dv.ok) {
            fprintf(stderr, "vdit bench vae: %s\n",
                    dv.msg[0] ? dv.msg : "the device could not be opened (its probe failed)");
            return 1;
        }
    }
    bpeak pk = { 0 };
    if (!device)
        pk = peak_child(threads, case_prec);
    double peak = pk.gflops > 0 ? pk.gflops : 1e-9;
    const char *how = pk.gflops > 0 ? pk.how : "not measured";
    size_t wb = 0;
    vd_ckpt *ck = make_model(&wb);
    vd_vae *vm = NULL;
    vd_log lg0 = { 0 };
    if (!ck || vd_vae_load(ck, &lg0, &vm)) {
        fprintf(stderr, "vdit bench vae: %s\n", lg0.msg[0] ? lg0.msg : "out of memory");
        vd_ckpt_free(&ck);
        return 1;
    }
    const vd_vae_config *vc = vd_vae_get_config(vm);
    printf("%s VAE, random weights (%.1f M parameters, fp32; dim %d, decoder dim %d, z %d, %dx%d "
           "spatial, %dx temporal, patch %d), %d threads%s\n",
           vae_model ? "Wan2.2" : "Wan2.1", (double)wb / 4e6, vc->dim, vc->dec_dim, vc->z_dim,
           vc->s_factor, vc->s_factor, vc->t_factor, vc->patch, threads, tile ? ", tiled" : "");
    vd_vae_free(&vm);
    vd_ckpt_free(&ck);
    if (tile)
        printf("tile %d px\n", tile);
    if (device)
        printf("device %s: %s; precision %s (%s); the 1x1 ends on the host (level %s, precision "
               "%s)\n", device, dv.name, pn,
               dev_prec == VK_PREC_BF16 ? "bf16 products, fp32 accumulation" : "fp32, no TF32",
               vk_isa_name(case_isa), vk_prec_name(case_prec));
    else
        printf("level %s, precision %s%s; %s peak %.1f GFLOP/s (%s)\n", vk_isa_name(case_isa), pn,
               conv_f32 ? " (convolutions in fp32)" : "", pn, peak, how);
    /* --torch: the baselines and their interpreters; vdit's other precision
     * (0 fp32, 1 bf16) when a row needs it and the CPU has it */
    trow rows[3] = {
        { .name = "PyTorch 2 bf16", .bf16 = 1 },
        { .name = "PyTorch 2 fp32" },
        { .name = "PyTorch (Debian) fp32", .debian = 1 },
    };
    static const char *const row_keys[3] = { "torch-bf16", "torch-fp32", "debian" };
    int pi = (device ? dev_prec : case_prec) == VK_PREC_BF16, other = 0;
    vk_prec oprec = pi ? VK_PREC_F32 : VK_PREC_BF16;
    double peak2 = 1e-9;
    char vpy[1100] = "", why[1400] = "";
    if (torch && device) { /* one row: PyTorch 2 on the same device, at vdit's precision */
        char root[1024];
        bench_src_root(script, root, sizeof(root));
        if (access(script, R_OK))
            snprintf(why, sizeof(why), "no %s (run from the source tree or give --torch-script)",
                     script);
        else
            bench_torch_python(root, python, !no_venv, vpy, sizeof(vpy), why, sizeof(why));
        rows[0] = (trow){ .name = "PyTorch on the device", .bf16 = pi, .py = *vpy ? vpy : NULL,
                          .why = why };
        if (!rows[0].py)
            printf("PyTorch on %s: skipped: %s\n", device, why);
    } else if (torch) {
        char root[1024];
        bench_src_root(script, root, sizeof(root));
        if (access(script, R_OK)) {
            snprintf(why, sizeof(why), "no %s (run from the source tree or give --torch-script)",
                     script);
        } else {
            bench_torch_python(root, python, !no_venv, vpy, sizeof(vpy), why, sizeof(why));
            if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0)
                rows[2].py = "/usr/bin/python3";
            else
                rows[2].why = "/usr/bin/python3 cannot import torch (Debian: apt-get install "
                              "python3-torch)";
        }
        for (int j = 0; j < 2; j++)
            rows[j].py = *vpy ? vpy : NULL, rows[j].why = why;
        if (!rows[2].why)
            rows[2].why = why;
        for (int j = 0; j < 3; j++) {
            if (rows_opt && !strstr(rows_opt, row_keys[j]))
                rows[j].py = NULL, rows[j].why = "not in --torch-rows";
            if (!rows[j].py)
                printf("%s: skipped: %s\n", rows[j].name, rows[j].why);
            other |= rows[j].py && rows[j].bf16 != pi;
        }
        other &= pi || vk_isa_native_bf16(case_isa);
        if (other) {
            bpeak p2 = peak_child(threads, oprec);
            peak2 = p2.gflops > 0 ? p2.gflops : 1e-9;
            printf("vdit in %s too (for the %s rows): %s peak %.1f GFLOP/s (%s)\n",
                   vk_prec_name(oprec), vk_prec_name(oprec), vk_prec_name(oprec), peak2,
                   p2.gflops > 0 ? p2.how : "not measured");
        }
    }
    if (device)
        printf("%-10s %-4s %-4s %6s %8s %8s %8s %10s %10s %10s %10s\n", "size", "op", "prec",
               "frames", "seconds", "frames/s", "s/frame", "device MiB", "weight MiB",
               "stream MiB", "RSS MiB");
    else
        printf("%-10s %-4s %-4s %6s %8s %8s %8s %8s %6s %10s %10s\n", "size", "op", "prec",
               "frames", "seconds", "frames/s", "s/frame", "GFLOP/s", "% peak", "peak MiB",
               "stream MiB");
    int fails = 0;
    bres last = { 0 };
    int last_enc = 0, last_w = 0, last_h = 0;
    for (int i = 0; i < nc; i++)
        for (int e = 1; e >= 0; e--) {
            if ((e && !cs[i].enc) || (!e && !cs[i].dec))
                continue;
            /* v[0] fp32, v[1] bf16: vdit's runs of this case */
            bres v[2] = { { 0 } };
            v[pi] = run_child(e, cs[i].w, cs[i].h, cs[i].t, threads, tile, case_prec);
            bres r = v[pi];
            if (other && r.ok)
                v[!pi] = run_child(e, cs[i].w, cs[i].h, cs[i].t, threads, tile, oprec);
            for (int j = 0; j < 3; j++)
                if (rows[j].py && r.ok)
                    rows[j].r = run_torch(&rows[j], script, e, cs[i].w, cs[i].h, cs[i].t,
                                          threads);
            char sz[32];
            snprintf(sz, sizeof(sz), "%dx%d", cs[i].w, cs[i].h);
            if (!r.ok) {
                printf("%-10s %-4s %-4s %6d FAILED\n", sz, e ? "enc" : "dec", pn, cs[i].t);
                fails++;
                continue;
            }
            for (int k = 0; k < 2; k++) {
                int q = k ? !pi : pi;
                const bres *b = &v[q];
                double pk_q = q == pi ? peak : peak2;
                if (k && !b->ok) {
                    if (other)
                        printf("%-10s %-4s %-4s %6d FAILED\n", sz, e ? "enc" : "dec",
                               vk_prec_name(oprec), cs[i].t);
                    continue;
                }
                if (device)
                    printf("%-10s %-4s %-4s %6d %8.3f %8.2f %8.4f %10.0f %10.0f %10.0f %10.0f\n",
                           sz, e ? "enc" : "dec", q ? "bf16" : "fp32",
                           e ? cs[i].t : b->frames_out, b->sec, b->fps, 1.0 / b->fps, b->dev_mib,
                           b->dev_w_mib, b->stream_mib, b->peak_mib);
                else
                    printf("%-10s %-4s %-4s %6d %8.2f %8.3f %8.2f %8.1f %5.0f%% %10.0f %10.0f\n",
                           sz, e ? "enc" : "dec", q ? "bf16" : "fp32",
                           e ? cs[i].t : b->frames_out, b->sec, b->fps, 1.0 / b->fps,
                           b->gflop / b->sec, 100 * b->gflop / b->sec / pk_q, b->peak_mib,
                           b->stream_mib);
            }
            int is_last = !e || !last.ok || last_enc;
            if (is_last) {
                last = r;
                last_enc = e;
                last_w = cs[i].w;
                last_h = cs[i].h;
                if (e)
                    last.frames_out = cs[i].t;
            }
            for (int j = 0; j < 3; j++) {
                trow *tr = &rows[j];
                if (!tr->py)
                    continue;
                /* vdit at the row's precision, else at its own */
                int vp = v[tr->bf16].ok ? tr->bf16 : pi;
                char lab[128];
                trow_label(tr, 0, lab, sizeof(lab));
                if (tr->r.ok && device) {
                    printf("  %-30s %8.3f s (%.4f s/frame) %10.0f MiB of device memory; vdit %s "
                           "%.3f s: %.2fx the time, %.2fx the peak device memory\n", lab,
                           tr->r.sec, 1.0 / tr->r.fps, tr->r.peak_mib, vp ? "bf16" : "fp32",
                           v[vp].sec, v[vp].sec / tr->r.sec, v[vp].dev_mib / tr->r.peak_mib);
                } else if (tr->r.ok) {
                    printf("  %-30s %8.2f s (%.2f s/frame) %10.0f MiB; vdit %s %.2f s: %.2fx the "
                           "time, %.2fx the peak RSS\n", lab, tr->r.sec, 1.0 / tr->r.fps,
                           tr->r.peak_mib, vp ? "bf16" : "fp32", v[vp].sec,
                           v[vp].sec / tr->r.sec, v[vp].peak_mib / tr->r.peak_mib);
                } else {
                    printf("  %-30s failed (see above)\n", lab);
                    fails++;
                }
                if (is_last) {
                    tr->s_ok = tr->r.ok, tr->s_vp = vp;
                    tr->s_sec = tr->r.sec, tr->s_mib = tr->r.peak_mib;
                    tr->s_vsec = v[vp].sec, tr->s_vmib = device ? v[vp].dev_mib : v[vp].peak_mib;
                }
            }
            fflush(stdout);
        }
    if (device)
        printf("frames: input frames (encode) / output frames (decode); seconds: from the first\n"
               "frame pushed to the last output frame back on the host, after a short warm-up\n"
               "stream (kernel loading); device MiB: peak device memory of vdit's allocations\n"
               "(weights, caches, buffers, cuBLASLt's workspace); weight MiB: the nets' weights\n"
               "on the device; stream MiB: caches + working buffers of the stream; RSS MiB: the\n"
               "process's peak RSS; baseline (--torch): PyTorch on the same device and precision\n"
               "(peak: torch.cuda.max_memory_allocated), vdit's seconds and peak device memory\n"
               "over its.\n");
    else
        printf("frames: input frames (encode) / output frames (decode); peak MiB: the "
               "process's\n"
               "peak RSS (prepared weights, caches, buffers; the model is detached from its\n"
               "checkpoint); stream MiB: caches + working buffers allocated by the stream (a\n"
               "cache's second frame becomes resident when written: 1-frame runs stay below);\n"
               "baselines (--torch): vdit's seconds and peak RSS at the row's precision over\n"
               "theirs.\n");
    if (last.ok && device)
        printf("vae %s%s %s on %s (%s): %.3f s (%dx%d, %d frames, %.4f s/frame, %.1f frames/s, "
               "peak device memory %.0f MiB, weights %.0f MiB)\n",
               vae_model ? "(Wan2.2) " : "", last_enc ? "encode" : "decode", pn, device, dv.name,
               last.sec, last_w, last_h, last.frames_out, last.sec / last.frames_out,
               last.frames_out / last.sec, last.dev_mib, last.dev_w_mib);
    else if (last.ok)
        printf("vae %s%s %s: %.2f s (%dx%d, %d frames, %.2f s/frame, peak RSS %.0f MiB), %.0f%% "
               "of the %s peak %.0f GFLOP/s (%s)%s\n",
               vae_model ? "(Wan2.2) " : "", last_enc ? "encode" : "decode", pn, last.sec, last_w,
               last_h, last.frames_out, last.sec / last.frames_out, last.peak_mib,
               100 * last.gflop / last.sec / peak, pn, peak, vk_isa_name(case_isa),
               conv_f32 ? " (convolutions in fp32)" : "");
    /* one line per baseline, for the summary's case */
    for (int j = 0; last.ok && j < 3; j++) {
        const trow *tr = &rows[j];
        if (!tr->s_ok)
            continue;
        char lab[128];
        trow_label(tr, 1, lab, sizeof(lab));
        printf("vs %s: vdit %s%s %s %.2fx the time (%.2fx the peak %s)\n", lab,
               tr->s_vp ? "bf16" : "fp32",
               tr->s_vp != tr->bf16 ? (tr->bf16 ? " (no vdit bf16 run)" : " (no vdit fp32 run)")
                                    : "",
               last_enc ? "encode" : "decode", tr->s_vsec / tr->s_sec, tr->s_vmib / tr->s_mib,
               device ? "device memory" : "RSS");
    }
    return fails ? 1 : 0;
}
