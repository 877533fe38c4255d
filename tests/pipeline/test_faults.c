/*
 * Faults a long-running server meets, through the public API (issue 26):
 *
 * - a checkpoint truncated or rewritten in place while the model is loaded
 *   (mapped): the next call fails with VDIT_ERR_IO naming the file instead
 *   of dying of SIGBUS, and a model loaded with no_mmap is not affected;
 *   a file replaced by renaming a new one over it is safe;
 * - the process stays usable: the model loads again and runs.
 *
 * Usage: test_faults TINY_MODEL_DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clips.h"
#include "t.h"
#include "vdit/vdit.h"

static const char *const files[] = {
    "Wan2.1_VAE.safetensors", "diffusion_pytorch_model.safetensors",
    "models_t5_umt5-xxl-enc.safetensors", "vdit.json", "tokenizer/spiece.model",
};

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    int ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof(buf), a)) > 0)
        ok = fwrite(buf, 1, n, b) == n;
    if (a)
        fclose(a);
    if (b && fclose(b))
        ok = 0;
    return ok ? 0 : -1;
}

/* A copy of the tiny model in a fresh folder under dir. */
static int copy_model(const char *src, const char *dst)
{
    char a[4096], b[4096];
    snprintf(b, sizeof(b), "%s/tokenizer", dst);
    if (mkdir(dst, 0755) || mkdir(b, 0755))
        return -1;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(a, sizeof(a), "%s/%s", src, files[i]);
        snprintf(b, sizeof(b), "%s/%s", dst, files[i]);
        if (copy_file(a, b))
            return -1;
    }
    return 0;
}

static void remove_model(const char *dst)
{
    char b[4096];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(b, sizeof(b), "%s/%s", dst, files[i]);
        unlink(b);
    }
    snprintf(b, sizeof(b), "%s/tokenizer", dst);
    rmdir(b);
    rmdir(dst);
}

static vdit_model *load(const char *dir, int no_mmap)
{
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.no_mmap = no_mmap;
    vdit_model *m = NULL;
    int r = vdit_model_load(dir, &mp, &m);
    T_CHECK(r == 0, "load %s%s: %s", dir, no_mmap ? " (no_mmap)" : "", mp.error);
    return m;
}

/* A tiny generation; returns its error code, *out the clip. */
static int gen(vdit_ctx *c, const char *prompt, vdit_video **out)
{
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = prompt;
    p.steps = 2;
    p.seed = 7;
    p.width = 32;
    p.height = 16;
    p.n_frames = 5;
    return vdit_generate(c, &p, out);
}

static void test_changed_files(const char *tiny, const char *tmp)
{
    char dir[4096], dit[4200], t5[4200], repl[4300];
    snprintf(dir, sizeof(dir), "%s/model", tmp);
    T_CHECK(copy_model(tiny, dir) == 0, "copy the model to %s: %s", dir, strerror(errno));
    snprintf(dit, sizeof(dit), "%s/diffusion_pytorch_model.safetensors", dir);
    snprintf(t5, sizeof(t5), "%s/models_t5_umt5-xxl-enc.safetensors", dir);

    vdit_model *m = load(dir, 0), *mr = load(dir, 1);
    if (!m || !mr)
        goto out;
    vdit_ctx *c = clip_ctx1(m), *cr = clip_ctx1(mr);
    vdit_video *ref = NULL, *v = NULL;
    T_CHECK(gen(c, "a cat", &ref) == 0, "generate: %s", vdit_ctx_last_error(c));

    /* replaced by rename: the loaded model keeps the old file, safe */
    snprintf(repl, sizeof(repl), "%s.new", dit);
    T_CHECK(copy_file(dit, repl) == 0 && rename(repl, dit) == 0, "replace by rename");
    T_CHECK(gen(c, "a cat", &v) == 0 && clip_equal(v, ref),
            "a file renamed over the loaded one changes nothing: %s", vdit_ctx_last_error(c));
    vdit_video_free(&v);
    vdit_ctx_free(&c);
    vdit_model_free(&m);

    /* truncated in place under the mapping */
    m = load(dir, 0);
    c = m ? clip_ctx1(m) : NULL;
    if (!c)
        goto out;
    T_CHECK(truncate(dit, 1000) == 0, "truncate %s", dit);
    int r = gen(c, "a dog", &v);
    T_CHECK(r == VDIT_ERR_IO && !v, "a truncated DiT checkpoint fails with IO (%d)", r);
    T_CHECK(strstr(vdit_ctx_last_error(c), "diffusion_pytorch_model.safetensors") &&
                strstr(vdit_ctx_last_error(c), "truncated"),
            "the message names the file and the cause: %s", vdit_ctx_last_error(c));
    /* the same for a text prompt the context has not encoded yet: the text
     * encoder's file is checked before it is read */
    T_CHECK(truncate(t5, 1000) == 0, "truncate %s", t5);
    r = gen(c, "a new prompt", &v);
    T_CHECK(r == VDIT_ERR_IO && strstr(vdit_ctx_last_error(c), "truncated"),
            "truncated text encoder: %s", vdit_ctx_last_error(c));

    /* the model read into memory is not affected */
    T_CHECK(gen(cr, "a cat", &v) == 0 && clip_equal(v, ref),
            "no_mmap: the same clip after the files were truncated: %s",
            vdit_ctx_last_error(cr));
    vdit_video_free(&v);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    vdit_ctx_free(&cr);
    vdit_model_free(&mr);

    /* the process is usable: restore the files and load again */
    remove_model(dir);
    T_CHECK(copy_model(tiny, dir) == 0, "copy again");
    m = load(dir, 0);
    c = m ? clip_ctx1(m) : NULL;
    if (c) {
        T_CHECK(gen(c, "a cat", &v) == 0 && clip_equal(v, ref), "a fresh load runs as before");
        vdit_video_free(&v);

        /* rewritten in place, same size: refused too (weights would mix) */
        struct stat st;
        stat(dit, &st);
        int fd = open(dit, O_WRONLY);
        char z[64] = { 0 };
        T_CHECK(fd >= 0 && pwrite(fd, z, sizeof(z), st.st_size - 64) == 64, "rewrite a tail");
        if (fd >= 0)
            close(fd);
        struct timespec ts[2] = { { 0, UTIME_OMIT }, { st.st_mtim.tv_sec + 5, 0 } };
        utimensat(AT_FDCWD, dit, ts, 0); /* a new mtime even on coarse clocks */
        r = gen(c, "a cat", &v);
        T_CHECK(r == VDIT_ERR_IO && strstr(vdit_ctx_last_error(c), "modified"),
                "rewritten in place: %s", vdit_ctx_last_error(c));
    }
    vdit_ctx_free(&c);
    vdit_model_free(&m);
    vdit_video_free(&ref);
out:
    remove_model(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_faults TINY_MODEL_DIR\n");
        return 2;
    }
    char tmp[] = "/tmp/vdit-faults.XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_changed_files(argv[1], tmp);
    rmdir(tmp);
    T_DONE();
}
