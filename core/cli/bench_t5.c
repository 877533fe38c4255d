/* `vdit bench t5`: the umT5-XXL encoder (vocab 256384, dim 4096, dim_attn
 * 4096, ffn 10240, 64 heads, 32 buckets) on random BF16 weights, encoding a
 * 20-token and a 200-token prompt: seconds (best of R after a warm-up call)
 * and peak RSS, then the same in PyTorch (models/bench/bench_t5_torch.py on
 * the project's models/wan/t5.py blocks, fp32) in the same run, the ratio and
 * how far the two outputs are apart.
 *
 * The full model is 11.4 GB in bf16; by default only --layers 2 of the 24
 * blocks are built and timed, and the 24-block figures are the per-block
 * time scaled by 24 (embedding lookup and final norm are microseconds) and
 * the measured peak plus the weights of the missing blocks. --layers 24
 * measures the whole model where memory allows.
 *
 * Weights go to a safetensors file in --dir (default $TMPDIR or /tmp) and are
 * loaded through the ordinary path (mmap, canonicalize, load). The embedding
 * table is written sparse: only the rows of the benchmark's ids hold data,
 * the rest is a hole in the file (zeros), so the file costs ~0.8 GB per two
 * blocks of disk, not 2 GB more. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"
#include "text/text.h"

enum { MAXT = 16 * 24 + 8 };

typedef struct tspec {
    char name[64];
    int ndim;
    int64_t shape[2];
    int kind; /* 0 linear (std 1/sqrt(in)), 1 norm (1 + 0.1u), 2 pos (0.5u), 3 embedding */
    uint64_t off, bytes;
} tspec;

static int nspec(tspec *s, int n, int kind, int64_t a, int64_t b, const char *fmt, long long l)
{
    snprintf(s[n].name, sizeof(s[n].name), fmt, l);
    s[n].ndim = b ? 2 : 1;
    s[n].shape[0] = a;
    s[n].shape[1] = b;
    s[n].kind = kind;
    return n + 1;
}

/* Fills n bf16 values of one tensor kind. */
static void fill(uint16_t *o, size_t n, int kind, float std, uint64_t *st)
{
    for (size_t i = 0; i < n; i += 4) {
        uint64_t r = bench_rng_next(st);
        for (size_t k = 0; k < 4 && i + k < n; k++) {
            float u = (float)((r >> (16 * k)) & 0xffff) * (2.0f / 65535.0f) - 1.0f; /* [-1, 1] */
            float v = kind == 1 ? 1.0f + 0.1f * u : kind == 2 ? 0.5f * u : std * 1.7f * u;
            o[i + k] = vt_f32_to_bf16(v);
        }
    }
}

static int write_weights(const char *path, tspec *s, int ns, const int32_t *rows, int nrows)
{
    /* header */
    char *h = malloc(64 * 1024);
    if (!h)
        return -1;
    int len = snprintf(h, 64 * 1024, "{");
    uint64_t off = 0;
    for (int i = 0; i < ns; i++) {
        uint64_t n = (uint64_t)s[i].shape[0] * (uint64_t)(s[i].ndim == 2 ? s[i].shape[1] : 1);
        s[i].off = off;
        s[i].bytes = 2 * n;
        if (s[i].ndim == 2)
            len += snprintf(h + len, 64 * 1024 - (size_t)len,
                            "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                            i ? "," : "", s[i].name, (long long)s[i].shape[0], (long long)s[i].shape[1],
                            (unsigned long long)off, (unsigned long long)(off + 2 * n));
        else
            len += snprintf(h + len, 64 * 1024 - (size_t)len,
                            "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                            i ? "," : "", s[i].name, (long long)s[i].shape[0], (unsigned long long)off,
                            (unsigned long long)(off + 2 * n));
        off += 2 * n;
    }
    len += snprintf(h + len, 64 * 1024 - (size_t)len, "}");
    while ((8 + len) % 8)
        h[len++] = ' ';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(h);
        return -1;
    }
    uint64_t hl = (uint64_t)len, base = 8 + hl;
    int ok = pwrite(fd, &hl, 8, 0) == 8 && pwrite(fd, h, (size_t)len, 8) == len;
    free(h);
    uint64_t st = 1234;
    size_t cap = 0;
    uint16_t *buf = NULL;
    for (int i = 0; ok && i < ns; i++) {
        if (s[i].kind == 3) { /* embedding: only the rows used, the rest a hole */
            int64_t D = s[i].shape[1];
            uint16_t *row = malloc((size_t)D * 2);
            ok = row != NULL;
            for (int r = 0; ok && r < nrows; r++) {
                uint64_t rs = 99 + (uint64_t)rows[r];
                fill(row, (size_t)D, 2, 0, &rs);
                for (int64_t k = 0; k < D; k++) /* N(0,1)-ish rows */
                    row[k] = vt_f32_to_bf16(vt_bf16_to_f32(row[k]) * 3.4f);
                ok = pwrite(fd, row, (size_t)D * 2, (off_t)(base + s[i].off + (uint64_t)rows[r] * (uint64_t)D * 2)) ==
                     (ssize_t)(D * 2);
            }
            free(row);
            continue;
        }
        size_t n = (size_t)(s[i].bytes / 2);
        if (n > cap) {
            free(buf);
            buf = malloc(n * 2);
            cap = n;
            if (!buf)
                ok = 0;
        }
        if (!ok)
            break;
        fill(buf, n, s[i].kind, s[i].ndim == 2 ? 1.0f / sqrtf((float)s[i].shape[1]) : 0, &st);
        ok = pwrite(fd, buf, n * 2, (off_t)(base + s[i].off)) == (ssize_t)(n * 2);
    }
    free(buf);
    /* the file ends where the last tensor ends, even if that is a hole */
    if (ok)
        ok = ftruncate(fd, (off_t)(base + off)) == 0;
    return close(fd) == 0 && ok ? 0 : -1;
}

static void usage(void)
{
    printf("usage: vdit bench t5 [--threads N] [--layers L] [--reps R] [--no-torch]\n"
           "                     [--torch-script PATH] [--dir DIR] [--keep]\n"
           "umT5-XXL encoder (dim 4096, ffn 10240, 64 heads, vocab 256384) on random bf16\n"
           "weights: a 20-token and a 200-token prompt, seconds (best of R, default 2, after a\n"
           "warm-up) and peak RSS; L of the 24 blocks are built (default 2) and the 24-block\n"
           "figures scaled from them. Then the same in PyTorch (fp32) unless --no-torch.\n");
}

int bench_t5(int argc, char **argv)
{
    const int64_t V = 256384, D = 4096, A = 4096, F = 10240, H = 64, NB = 32, FULL = 24;
    int64_t layers = 2;
    int threads = 0, reps = 2, torch = 1, keep = 0;
    const char *script = "models/bench/bench_t5_torch.py";
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--threads") && v) {
            int bad = 0;
            threads = bench_parse_threads(v, &bad), i++;
            if (bad) {
                fprintf(stderr, "vdit bench t5: bad --threads '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--layers") && v) {
            layers = atoi(v), i++;
        } else if (!strcmp(a, "--reps") && v) {
            reps = atoi(v), i++;
        } else if (!strcmp(a, "--no-torch")) {
            torch = 0;
        } else if (!strcmp(a, "--torch-script") && v) {
            script = v, i++;
        } else if (!strcmp(a, "--dir") && v) {
            dir = v, i++;
        } else if (!strcmp(a, "--keep")) {
            keep = 1;
        } else {
            fprintf(stderr, "vdit bench t5: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (threads <= 0)
        threads = vd_cpu_count();
    if (layers < 1 || layers > FULL || reps < 1) {
        fprintf(stderr, "vdit bench t5: --layers must be 1..24, --reps >= 1\n");
        return 2;
    }
    const int lens[2] = { 20, 200 };
    int32_t ids[2][200];
    uint64_t st = 7;
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < lens[p] - 1; i++)
            ids[p][i] = 2 + (int32_t)(bench_rng_next(&st) % (uint64_t)(V - 2));
        ids[p][lens[p] - 1] = 1; /* eos */
    }
    tspec *sp = calloc(MAXT, sizeof(*sp));
    if (!sp)
        return 1;
    int ns = 0;
    ns = nspec(sp, ns, 3, V, D, "token_embedding.weight", 0);
    for (long long l = 0; l < layers; l++) {
        ns = nspec(sp, ns, 1, D, 0, "blocks.%lld.norm1.weight", l);
        ns = nspec(sp, ns, 0, A, D, "blocks.%lld.attn.q.weight", l);
        ns = nspec(sp, ns, 0, A, D, "blocks.%lld.attn.k.weight", l);
        ns = nspec(sp, ns, 0, A, D, "blocks.%lld.attn.v.weight", l);
        ns = nspec(sp, ns, 0, D, A, "blocks.%lld.attn.o.weight", l);
        ns = nspec(sp, ns, 1, D, 0, "blocks.%lld.norm2.weight", l);
        ns = nspec(sp, ns, 0, F, D, "blocks.%lld.ffn.gate.0.weight", l);
        ns = nspec(sp, ns, 0, F, D, "blocks.%lld.ffn.fc1.weight", l);
        ns = nspec(sp, ns, 0, D, F, "blocks.%lld.ffn.fc2.weight", l);
        ns = nspec(sp, ns, 2, NB, H, "blocks.%lld.pos_embedding.embedding.weight", l);
    }
    ns = nspec(sp, ns, 1, D, 0, "norm.weight", 0);
    int32_t rows[220];
    int nrows = 0;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < lens[p]; i++)
            rows[nrows++] = ids[p][i];

    const double layer_bytes = 2.0 * (double)(4 * D * A + 3 * D * F);
    const double flop_tok_layer = 2.0 * (double)(4 * D * A + 3 * D * F);
    printf("t5 bench: umT5-XXL dims (vocab %lld, dim %lld, ffn %lld, %lld heads), %lld of %lld "
           "blocks built, bf16 weights, %d threads\n",
           (long long)V, (long long)D, (long long)F, (long long)H, (long long)layers,
           (long long)FULL, threads);
    char wpath[1024], idpath[1024], opref[1024];
    snprintf(wpath, sizeof(wpath), "%s/vdit_bench_t5_l%lld.safetensors", dir, (long long)layers);
    double t0 = vd_time();
    if (write_weights(wpath, sp, ns, rows, nrows)) {
        fprintf(stderr, "vdit bench t5: cannot write %s\n", wpath);
        free(sp);
        return 1;
    }
    printf("weights: %s (%.2f GB of data, written in %.1f s; embedding rows sparse)\n", wpath,
           (layer_bytes * (double)layers) / 1e9, vd_time() - t0);
    free(sp);

    vd_log lg = { 0 };
    vd_ckpt *ck = NULL;
    vd_t5 *t5 = NULL;
    vk_ctx *kc = NULL;
    float *out[2] = { NULL, NULL };
    double sec[2] = { 0, 0 }, rss[2] = { 0, 0 }, cpu[2] = { 0, 0 };
    int rc = 0;
    t0 = vd_time();
    if (vd_ckpt_open(wpath, &lg, &ck) || vd_t5_canonicalize(ck, &lg) || vd_t5_load(ck, &lg, &t5) ||
        !(kc = vk_ctx_new(threads, 0, &lg))) {
        fprintf(stderr, "vdit bench t5: %s\n", lg.msg);
        rc = 1;
        goto done;
    }
    printf("vdit load %.2f s\n", vd_time() - t0);
    for (int p = 0; p < 2 && !rc; p++) {
        out[p] = vd_malloc((size_t)(lens[p] * D) * sizeof(float));
        sec[p] = 1e30;
        for (int r = 0; r <= reps && out[p]; r++) {
            t0 = vd_time();
            double c0 = bench_cpu_seconds();
            if (vd_t5_encode(t5, kc, ids[p], lens[p], lens[p], out[p])) {
                fprintf(stderr, "vdit bench t5: %s\n", lg.msg);
                rc = 1;
                break;
            }
            double dt = vd_time() - t0;
            if (r && dt < sec[p]) {
                sec[p] = dt;
                cpu[p] = bench_cpu_seconds() - c0;
            }
        }
        rss[p] = bench_peak_rss();
        double full = sec[p] * (double)FULL / (double)layers;
        printf("vdit  %3d tokens: %.3f s (%.3f CPU s) for %lld blocks (%.1f GFLOP/s) -> %.2f s for 24 "
               "blocks; peak RSS %.0f MiB (24 blocks: ~%.0f MiB)\n",
               lens[p], sec[p], cpu[p], (long long)layers,
               flop_tok_layer * lens[p] * (double)layers / sec[p] / 1e9, full, rss[p] / 1048576.0,
               (rss[p] + layer_bytes * (double)(FULL - layers)) / 1048576.0);
        fflush(stdout);
    }
    if (!rc && torch) {
        snprintf(idpath, sizeof(idpath), "%s/vdit_bench_t5_ids.txt", dir);
        snprintf(opref, sizeof(opref), "%s/vdit_bench_t5_torch_", dir);
        FILE *f = fopen(idpath, "w");
        for (int p = 0; f && p < 2; p++) {
            for (int i = 0; i < lens[p]; i++)
                fprintf(f, i ? " %d" : "%d", ids[p][i]);
            fputc('\n', f);
        }
        if (!f || fclose(f)) {
            fprintf(stderr, "vdit bench t5: cannot write %s\n", idpath);
            rc = 1;
            goto done;
        }
        char cmd[4096];
        snprintf(cmd, sizeof(cmd),
                 "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 '%s' --weights '%s' "
                 "--ids '%s' --out '%s' --threads %d --reps %d",
                 threads, threads, script, wpath, idpath, opref, threads, reps);
        printf("  %s\n", cmd);
        fflush(stdout);
        FILE *pp = popen(cmd, "r");
        double tsec[2] = { -1, -1 }, trss[2] = { 0, 0 }, tcpu[2] = { 0, 0 };
        char line[512];
        while (pp && fgets(line, sizeof(line), pp)) {
            int n;
            double v;
            fputs("  | ", stdout);
            fputs(line, stdout);
            fflush(stdout);
            for (int p = 0; p < 2; p++) {
                if (sscanf(line, "torch_seconds %d %lf", &n, &v) == 2 && n == lens[p])
                    tsec[p] = v;
                if (sscanf(line, "torch_cpu_seconds %d %lf", &n, &v) == 2 && n == lens[p])
                    tcpu[p] = v;
                if (sscanf(line, "torch_peak_rss_mb %d %lf", &n, &v) == 2 && n == lens[p])
                    trss[p] = v;
            }
        }
        if (!pp || pclose(pp) || tsec[0] < 0 || tsec[1] < 0) {
            fprintf(stderr, "vdit bench t5: the PyTorch run failed (run from the source tree or "
                            "give --torch-script; --no-torch skips it)\n");
            rc = 1;
            goto done;
        }
        for (int p = 0; p < 2; p++) {
            char op[1100];
            snprintf(op, sizeof(op), "%s%d.f32", opref, lens[p]);
            float *to = vd_malloc((size_t)(lens[p] * D) * sizeof(float));
            FILE *fo = fopen(op, "rb");
            double m = -1, mb = 0;
            if (to && fo && fread(to, 4, (size_t)(lens[p] * D), fo) == (size_t)(lens[p] * D)) {
                m = 0;
                for (int64_t i = 0; i < lens[p] * D; i++) {
                    m = fmax(m, fabs((double)to[i] - out[p][i]));
                    mb = fmax(mb, fabs((double)to[i]));
                }
            }
            if (fo)
                fclose(fo);
            vd_free(to);
            if (!keep)
                remove(op);
            printf("torch %3d tokens: %.3f s (%.3f CPU s) for %lld blocks -> %.2f s for 24 blocks; "
                   "peak RSS %.0f MiB (24 blocks fp32: ~%.0f MiB)\n",
                   lens[p], tsec[p], tcpu[p], (long long)layers, tsec[p] * FULL / (double)layers, trss[p],
                   trss[p] + 2 * layer_bytes * (double)(FULL - layers) / 1048576.0);
            printf("ratio %3d tokens: torch / vdit = %.2fx wall, %.2fx CPU time; outputs max_abs "
                   "%.2e (rel %.2e)\n",
                   lens[p], tsec[p] / sec[p], cpu[p] > 0 ? tcpu[p] / cpu[p] : 0, m, mb > 0 ? m / mb : m);
        }
        if (!keep)
            remove(idpath);
    }
done:
    vd_free(out[0]);
    vd_free(out[1]);
    vk_ctx_free(&kc);
    vd_t5_free(&t5);
    vd_ckpt_free(&ck);
    if (!keep)
        remove(wpath);
    return rc;
}
