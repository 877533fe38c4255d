/* `vdit bench tae`: the TAEHV decoder (madebyollin/taehv's taew2_1
 * architecture: widths 256/128/64/64, 16 latent channels) beside the Wan2.1
 * VAE's decoder (its real configuration: dim 96, z 16, [1,2,4,4], 2
 * residual blocks, [F,T,T]), both on random weights, decoding the same
 * latent frames at the same size in the same run. Each decoder runs in its
 * own child process, so each peak RSS is its own; both are prepared for
 * the kernels first (detached: weights held once) and stream frame by
 * frame, so neither the latents nor the video are held: the peak is the
 * decoder's. Prints seconds (wall and the process's CPU time, which other
 * jobs on the machine inflate less), seconds per output frame, frames/s,
 * peak and stream memory, and TAEHV's ratios to the VAE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"
#include "kernels/kernels.h"
#include "vae/taehv.h"
#include "vae/vae.h"

/* ---- random weights, by name as the published files have them ------------------ */

/* <pre>.weight [co, ci, (kd,) k, k] and, with bias, <pre>.bias */
static void conv(bench_wgen *g, const char *pre, int co, int ci, int kd, int k, int bias)
{
    char n[200];
    int64_t sh5[5] = { co, ci, kd, k, k }, sh4[4] = { co, ci, k, k }, b[1] = { co };
    snprintf(n, sizeof(n), "%s.weight", pre);
    bench_wgen_tensor(g, n, 0, kd ? 5 : 4, kd ? sh5 : sh4);
    snprintf(n, sizeof(n), "%s.bias", pre);
    if (bias)
        bench_wgen_tensor(g, n, 1, 1, b);
}

/* taehv.py's TAEHV decoder for z latent channels (patch 1 for 16, 2 for 48),
 * published widths, its state dict's names. */
static vd_ckpt *tae_weights(int z)
{
    static const int nf[4] = { 256, 128, 64, 64 };
    bench_wgen g = { vd_ckpt_new(), 4321, 0, 0 };
    if (!g.ck)
        return NULL;
    char n[160];
    int p = z == 48 ? 2 : 1;
    conv(&g, "decoder.1", nf[0], z, 0, 3, 1);
    for (int l = 0; l < 3; l++) {
        for (int j = 0; j < 3; j++) {
            int i = 3 + 6 * l + j;
            snprintf(n, sizeof(n), "decoder.%d.conv.0", i);
            conv(&g, n, nf[l], 2 * nf[l], 0, 3, 1);
            snprintf(n, sizeof(n), "decoder.%d.conv.2", i);
            conv(&g, n, nf[l], nf[l], 0, 3, 1);
            snprintf(n, sizeof(n), "decoder.%d.conv.4", i);
            conv(&g, n, nf[l], nf[l], 0, 3, 1);
        }
        snprintf(n, sizeof(n), "decoder.%d.conv", 7 + 6 * l);
        conv(&g, n, (l ? 2 : 1) * nf[l], nf[l], 0, 1, 0);
        snprintf(n, sizeof(n), "decoder.%d", 8 + 6 * l);
        conv(&g, n, nf[l + 1], nf[l], 0, 3, 0);
    }
    conv(&g, "decoder.22", 3 * p * p, nf[3], 0, 3, 1);
    if (g.err)
        vd_ckpt_free(&g.ck);
    return g.ck;
}

/* ---- one decoder per child process ------------------------------------------------ */

typedef struct bres {
    int ok, frames;
    double sec, cpu, peak_mib, stream_mib, weights_mib, params_m;
} bres;

typedef struct barg {
    int tae, w, h, tl, threads, isa;
    vk_prec prec;
} barg;

static void run_case(const barg *a, bres *r)
{
    vd_log lg = { 0 };
    vk_ctx *kc = vk_ctx_new_ex(a->threads, a->isa, a->prec, &lg);
    vd_ckpt *ck = a->tae ? tae_weights(16) : bench_vae21_weights(96, 16, NULL);
    vd_vae *v = NULL;
    vd_taehv *t = NULL;
    vd_vae_stream *vs = NULL;
    vd_taehv_stream *ts = NULL;
    int lh = a->h / 8, lw = a->w / 8, z = 16;
    float *lat = NULL, *out = NULL;
    if (!kc || !ck)
        goto fail;
    for (size_t i = 0; i < vd_ckpt_count(ck); i++)
        r->params_m += (double)vt_nelem(vd_ckpt_at(ck, i)) * 1e-6;
    if (a->tae) {
        if (vd_taehv_load(ck, &lg, &t))
            goto fail;
        vd_ckpt_free(&ck);
        r->params_m = (double)vd_taehv_get_config(t)->n_params * 1e-6;
        if (vd_taehv_detach(t, kc, lh, lw) || vd_taehv_stream_new(t, kc, lh, lw, 0, &ts))
            goto fail;
    } else {
        if (vd_vae_load(ck, &lg, &v) ||
            vd_vae_detach_part(v, kc, VD_VAE_ENCODER | VD_VAE_DECODER, a->h, a->w, bench_release_pages,
                               ck))
            goto fail;
        vd_ckpt_free(&ck);
        if (vd_vae_dec_stream_new(v, kc, lh, lw, 0, &vs))
            goto fail;
    }
    size_t nl = (size_t)z * lh * lw;
    lat = vd_malloc(nl * sizeof(float));
    out = vd_malloc((size_t)4 * 3 * a->h * a->w * sizeof(float));
    if (!lat || !out)
        goto fail;
    uint64_t s = 99;
    for (size_t i = 0; i < nl; i++)
        lat[i] = 1.5f * bench_urand(&s);
    double t0 = vd_time(), c0 = bench_cpu_seconds();
    for (int k = 0; k < a->tl; k++) {
        int no = 0;
        int e = a->tae ? vd_taehv_stream_push(ts, lat, out, &no)
                       : vd_vae_dec_stream_push(vs, lat, out, &no);
        if (e)
            goto fail;
        r->frames += no;
        fprintf(stderr, "\r  %s %dx%d: %d/%d latent frames, %.1f s   ",
                a->tae ? "TAEHV" : "Wan-VAE", a->w, a->h, k + 1, a->tl, vd_time() - t0);
    }
    fprintf(stderr, "\n");
    r->sec = vd_time() - t0;
    r->cpu = bench_cpu_seconds() - c0;
    r->peak_mib = bench_peak_rss() / 1048576.0;
    r->stream_mib =
        (double)(a->tae ? vd_taehv_stream_bytes(ts) : vd_vae_stream_bytes(vs)) / 1048576.0;
    r->weights_mib = (double)(a->tae ? 0 : vd_vae_prepared_bytes(v)) / 1048576.0;
    r->ok = 1;
fail:
    if (!r->ok)
        fprintf(stderr, "vdit bench tae: %s\n", lg.msg[0] ? lg.msg : "out of memory");
    vd_free(lat);
    vd_free(out);
    vd_taehv_stream_free(&ts);
    vd_vae_stream_free(&vs);
    vd_taehv_free(&t);
    vd_vae_free(&v);
    vd_ckpt_free(&ck);
    vk_ctx_free(&kc);
}

/* In a child: its own peak RSS, and no OpenMP threads in the parent before a
 * fork (libgomp's threads do not survive one). Zeros when it failed. */
static bres run_child(const barg *a)
{
    bres r;
    memset(&r, 0, sizeof(r));
    int fd[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fd))
        return r;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return r;
    }
    if (pid == 0) {
        close(fd[0]);
        run_case(a, &r);
        ssize_t wr = write(fd[1], &r, sizeof(r));
        _exit(wr == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(fd[1]);
    ssize_t rd = read(fd[0], &r, sizeof(r));
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (rd != (ssize_t)sizeof(r))
        memset(&r, 0, sizeof(r));
    return r;
}

static void usage(void)
{
    printf("usage: vdit bench tae [--size WxH] [--frames N] [--threads N] [--precision P]\n"
           "                      [--isa LEVEL]\n\n"
           "Decodes the same random latents with the TAEHV decoder (madebyollin/taehv, the\n"
           "taew2_1 architecture) and with the Wan2.1 VAE's decoder (real configuration),\n"
           "both on random weights, each in its own process: seconds per frame, frames/s,\n"
           "peak RSS and stream memory, and TAEHV's ratios to the VAE.\n\n"
           "  --size WxH       frame size, multiples of 8 (default 160x96)\n"
           "  --frames N       output frames, 1 + 4k (default 17: 5 latent frames)\n"
           "  --threads N      threads (default all cores)\n"
           "  --precision P    fp32 (default), bf16 or auto\n"
           "  --isa LEVEL      c, avx2, avx512, avx512_bf16 (default the CPU's)\n");
}

int bench_tae(int argc, char **argv)
{
    int w = 160, h = 96, frames = 17, threads = 0, isa = -1, bad = 0;
    vk_prec prec = VK_PREC_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--size") && v) {
            bad |= sscanf(v, "%dx%d", &w, &h) != 2 || w < 8 || h < 8 || w % 8 || h % 8 ||
                   w > 8192 || h > 8192;
            i++;
        } else if (!strcmp(a, "--frames") && v) {
            frames = atoi(v);
            bad |= frames < 1 || (frames - 1) % 4 || frames > 100001;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = bench_parse_threads(v, &bad);
            i++;
        } else if (!strcmp(a, "--precision") && v) {
            bad |= bench_parse_prec(v, &prec) < 0;
            i++;
        } else if (!strcmp(a, "--isa") && v) {
            bad |= bench_parse_isa(v, &isa) < 0;
            i++;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "vdit bench tae: bad option %s%s%s (see --help)\n", a, v ? " " : "",
                    v ? v : "");
            return 2;
        }
    }
    vk_isa li;
    vk_prec lp;
    if (bench_resolve("tae", threads, isa, prec, &li, &lp) < 0)
        return 1;
    barg a = { 1, w, h, 1 + (frames - 1) / 4, threads, (int)li, lp };
    printf("decode of %d latent frames to %d frames of %dx%d, random weights, %s on %s, "
           "%d threads\n",
           a.tl, frames, w, h, vk_prec_name(lp), vk_isa_name(li),
           threads > 0 ? threads : vd_cpu_count());
    bres rt = run_child(&a);
    a.tae = 0;
    bres rv = run_child(&a);
    if (!rt.ok || !rv.ok) {
        fprintf(stderr, "vdit bench tae: a case failed\n");
        return 1;
    }
    printf("%-30s %8s %8s %8s %8s %9s %10s\n", "decoder", "seconds", "CPU s", "s/frame",
           "frames/s", "peak MiB", "stream MiB");
    const bres *rs[2] = { &rt, &rv };
    const char *names[2] = { "TAEHV (taew2_1 arch.)", "Wan2.1 VAE (dim 96)" };
    for (int k = 0; k < 2; k++) {
        char label[64];
        snprintf(label, sizeof(label), "%s %.1f M", names[k], rs[k]->params_m);
        printf("%-30s %8.3f %8.3f %8.4f %8.2f %9.1f %10.1f\n", label, rs[k]->sec, rs[k]->cpu,
               rs[k]->sec / rs[k]->frames, rs[k]->frames / rs[k]->sec, rs[k]->peak_mib,
               rs[k]->stream_mib);
    }
    printf("TAEHV / Wan-VAE: %.3fx the time (%.1fx faster; CPU time %.3fx), %.3fx the peak RSS, "
           "%.3fx the stream memory\n",
           rt.sec / rv.sec, rv.sec / rt.sec, rt.cpu / rv.cpu, rt.peak_mib / rv.peak_mib,
           rt.stream_mib / rv.stream_mib);
    return 0;
}
