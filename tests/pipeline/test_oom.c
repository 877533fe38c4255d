/*
 * Out of memory at every allocation site of a model load and of a window
 * (issue 26), in the spirit of SQLite's malloc tests.
 *
 * This program replaces malloc and its kin (glibc lets a program interpose
 * them; libvdit's calls, and libc's on its behalf such as strdup or fopen,
 * come here). An allocation belongs to libvdit when the first frame of its
 * call stack outside this program and libc is in libvdit.so; its site is the
 * first three libvdit return addresses (so the callers of vd_malloc are told
 * apart). oneDNN's and OpenMP's own allocations are left alone.
 *
 * 1. A clean run of the scenario (load the tiny model, make a context,
 *    generate a 5-frame clip, edit a window of it as a stream, free
 *    everything) records every libvdit allocation site.
 * 2. For each site, the scenario runs again with the first allocation from
 *    that site failing. Each run must end with either success (and the same
 *    frames: the failure was absorbed) or an error code with a message from
 *    the library, never a crash; and once everything is freed, no memory
 *    allocated by libvdit may be left (leak check by pointer).
 * 3. A last clean run gives the first run's frames: the process is usable.
 *
 * Usage: test_oom TINY_MODEL_DIR. Not for sanitizer builds (they replace
 * malloc themselves).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clips.h"
#include "t.h"
#include "vdit/vdit.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

/* ---- the interposer ------------------------------------------------------ */

typedef struct range {
    uintptr_t lo, hi;
} range;

static range r_vdit, r_libc, r_self;
static atomic_int armed;          /* 0: pass through */
static atomic_int recording;      /* record sites */
static uint64_t fail_site;        /* the site to fail once (armed) */
static atomic_int failed;         /* the injected failure happened */
static __thread int in_hook;

enum { MAX_SITES = 8192, LIVE_CAP = 1 << 20 };
static uint64_t sites[MAX_SITES];
static uintptr_t site_pc[MAX_SITES][3]; /* its libvdit return addresses (offsets) */
static int n_sites;
static __thread uintptr_t cur_pc[3];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *live;           /* open addressing set of libvdit pointers */
static long n_live;

static int in_range(const range *r, uintptr_t a)
{
    return a >= r->lo && a < r->hi;
}

/* The site of the allocation being made, 0 if it is not libvdit's. */
static uint64_t site_of(void)
{
    void *bt[24];
    int n = backtrace(bt, 24);
    uint64_t h = 1469598103934665603ull;
    int found = 0, first = 1;
    memset(cur_pc, 0, sizeof(cur_pc));
    for (int i = 0; i < n && found < 3; i++) {
        uintptr_t a = (uintptr_t)bt[i];
        if (in_range(&r_self, a) || in_range(&r_libc, a))
            continue;
        if (!in_range(&r_vdit, a)) {
            if (first)
                return 0; /* oneDNN, OpenMP, ...: not ours */
            break;
        }
        first = 0;
        h = (h ^ (a - r_vdit.lo)) * 1099511628211ull;
        cur_pc[found++] = a - r_vdit.lo;
    }
    return found ? h | 1 : 0;
}

static void live_add(void *p)
{
    uintptr_t k = (uintptr_t)p;
    size_t i = (k >> 4) & (LIVE_CAP - 1);
    while (live[i] && live[i] != 1)
        i = (i + 1) & (LIVE_CAP - 1);
    live[i] = k;
    n_live++;
}

static void live_del(void *p)
{
    uintptr_t k = (uintptr_t)p;
    for (size_t i = (k >> 4) & (LIVE_CAP - 1), n = 0; live[i] && n < LIVE_CAP;
         i = (i + 1) & (LIVE_CAP - 1), n++)
        if (live[i] == k) {
            live[i] = 1; /* tombstone */
            n_live--;
            return;
        }
}

/* Before an allocation: 1 if it must fail; *ours says whether to track it. */
static int before(int *ours)
{
    *ours = 0;
    if (in_hook || !atomic_load(&armed))
        return 0;
    in_hook = 1;
    uint64_t s = site_of();
    int fail = 0;
    if (s) {
        *ours = 1;
        pthread_mutex_lock(&lock);
        if (atomic_load(&recording)) {
            int known = 0;
            for (int i = 0; i < n_sites && !known; i++)
                known = sites[i] == s;
            if (!known && n_sites < MAX_SITES) {
                memcpy(site_pc[n_sites], cur_pc, sizeof(cur_pc));
                sites[n_sites++] = s;
            }
        } else if (s == fail_site && !atomic_load(&failed)) {
            atomic_store(&failed, 1);
            fail = 1;
            errno = ENOMEM; /* as malloc does */
        }
        pthread_mutex_unlock(&lock);
    }
    in_hook = 0;
    return fail;
}

static void track(void *p, int ours)
{
    if (!p || !ours)
        return;
    pthread_mutex_lock(&lock);
    live_add(p);
    pthread_mutex_unlock(&lock);
}

static void untrack(void *p)
{
    if (!p || !live)
        return;
    pthread_mutex_lock(&lock);
    live_del(p);
    pthread_mutex_unlock(&lock);
}

void *malloc(size_t n)
{
    int ours;
    if (before(&ours))
        return NULL;
    void *p = __libc_malloc(n);
    track(p, ours);
    return p;
}

void *calloc(size_t a, size_t b)
{
    int ours;
    if (before(&ours))
        return NULL;
    void *p = __libc_calloc(a, b);
    track(p, ours);
    return p;
}

void *realloc(void *q, size_t n)
{
    int ours;
    if (before(&ours))
        return NULL;
    void *p = __libc_realloc(q, n);
    if (p || !n)
        untrack(q);
    track(p, ours);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    int ours;
    if (before(&ours))
        return 12; /* ENOMEM */
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12;
    track(p, ours);
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    int ours;
    if (before(&ours))
        return NULL;
    void *p = __libc_memalign(align, n);
    track(p, ours);
    return p;
}

void *memalign(size_t align, size_t n);
void *memalign(size_t align, size_t n)
{
    return aligned_alloc(align, n);
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

/* ---- object ranges ------------------------------------------------------- */

typedef struct find {
    uintptr_t addr;
    range r;
} find;

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    find *f = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (f->addr >= lo && f->addr < hi) {
            /* the object's whole extent: every PT_LOAD segment */
            f->r.lo = UINTPTR_MAX;
            f->r.hi = 0;
            for (int j = 0; j < info->dlpi_phnum; j++) {
                const ElfW(Phdr) *q = &info->dlpi_phdr[j];
                if (q->p_type != PT_LOAD)
                    continue;
                uintptr_t a = info->dlpi_addr + q->p_vaddr, b = a + q->p_memsz;
                f->r.lo = a < f->r.lo ? a : f->r.lo;
                f->r.hi = b > f->r.hi ? b : f->r.hi;
            }
            return 1;
        }
    }
    return 0;
}

static range object_of(const void *addr)
{
    find f = { (uintptr_t)addr, { 0, 0 } };
    dl_iterate_phdr(find_cb, &f);
    return f.r;
}

/* ---- the scenario -------------------------------------------------------- */

typedef struct result {
    int err;          /* 0 or the first error */
    char msg[512];    /* the library's message for it */
    const char *stage;
    vdit_video *gen;  /* the generated clip */
    vdit_video *edit; /* the stream's output */
    uint16_t *edit16; /* the 16-bit stream's output (kept frames, fades) */
} result;

static const char *model_dir;

static void scenario(result *res)
{
    memset(res, 0, sizeof(*res));
    vdit_model_params mp;
    vdit_model_params_default(&mp);
    mp.n_threads = 1;
    mp.precision = VDIT_PRECISION_FP32;
    vdit_model *m = NULL;
    vdit_ctx *c = NULL;
    vdit_stream *s = NULL;
    int r = vdit_model_load(model_dir, &mp, &m);
    if (r) {
        res->err = r;
        snprintf(res->msg, sizeof(res->msg), "%s", mp.error);
        return;
    }
    vdit_ctx_params cp;
    vdit_ctx_params_default(&cp);
    cp.n_threads = 1;
    cp.precision = VDIT_PRECISION_FP32;
    if ((r = vdit_ctx_init(m, &cp, &c))) {
        res->err = r;
        snprintf(res->msg, sizeof(res->msg), "ctx_init: %s", vdit_strerror(r));
        goto done;
    }
    vdit_gen_params p;
    vdit_gen_params_default(&p);
    p.prompt = "a red ball";
    p.steps = 2;
    p.seed = 3;
    p.width = 32;
    p.height = 16;
    p.n_frames = 5;
    res->stage = "generate";
    if ((r = vdit_generate(c, &p, &res->gen)))
        goto fail;
    res->stage = "stream";
    vdit_stream_params sp;
    vdit_stream_params_default(&sp);
    sp.gen = p;
    sp.gen.strength = 0.5f;
    sp.window = 5;
    if ((r = vdit_stream_open(c, &sp, 32, 16, &s)))
        goto fail;
    if (!(res->edit = vdit_video_new(32, 16, 5))) {
        res->err = VDIT_ERR_NOMEM;
        snprintf(res->msg, sizeof(res->msg), "vdit_video_new returned NULL");
        goto done;
    }
    size_t fsz = 32 * 16 * 3;
    for (int i = 0; i < 5 && !r; i++) {
        vdit_frame f = { 32, 16, res->gen->rgb + fsz * i, 32 * 3, i, NULL };
        r = vdit_stream_send(s, &f);
    }
    if (!r)
        r = vdit_stream_drain(s);
    for (int got = 0; got < 5 && !r;) {
        vdit_frame o;
        if (!(r = vdit_stream_receive(s, &o)))
            memcpy(res->edit->rgb + fsz * got++, o.rgb, fsz);
    }
    vdit_stream_close(&s);
    if (r)
        goto fail;

    /* a 16-bit stream of 9 frames, the first two and last two kept, fades */
    res->stage = "stream16";
    sp.format = VDIT_PIXFMT_RGB48;
    sp.fade = 2;
    if ((r = vdit_stream_open(c, &sp, 32, 16, &s)))
        goto fail;
    enum { N16 = 9 };
    uint16_t *in16 = __libc_malloc(fsz * 2 * N16);
    res->edit16 = __libc_malloc(fsz * 2 * N16);
    if (!in16 || !res->edit16) {
        __libc_free(in16);
        res->err = VDIT_ERR_NOMEM;
        snprintf(res->msg, sizeof(res->msg), "vdit_video_new returned NULL");
        goto done;
    }
    for (size_t k = 0; k < fsz * N16; k++)
        in16[k] = (uint16_t)(res->gen->rgb[k % (fsz * 5)] * 257 + (k & 255));
    int sent = 0, got = 0;
    while (got < N16 && (!r || r == VDIT_ERR_AGAIN)) {
        if (sent < N16) {
            vdit_frame f = { 32, 16, (const uint8_t *)(in16 + fsz * sent), 32 * 6, sent, NULL };
            r = vdit_stream_send_flags(s, &f, sent < 2 || sent > 6 ? VDIT_FRAME_KEEP : 0);
            if (!r) {
                if (++sent == N16)
                    r = vdit_stream_drain(s);
                continue;
            }
            if (r != VDIT_ERR_AGAIN)
                break;
        }
        vdit_frame o;
        r = vdit_stream_receive(s, &o);
        if (!r)
            memcpy(res->edit16 + fsz * got++, o.rgb, fsz * 2);
    }
    __libc_free(in16);
    if (r == VDIT_ERR_AGAIN || r == VDIT_ERR_EOF)
        r = got == N16 ? 0 : VDIT_ERR_INTERNAL;
fail:
    if (r) {
        res->err = r;
        snprintf(res->msg, sizeof(res->msg), "%s", vdit_ctx_last_error(c));
    }
done:
    vdit_stream_close(&s);
    vdit_ctx_free(&c);
    vdit_model_free(&m);
}

/* Largest difference between two clips of the same shape (256 if not). */
static int maxdiff(const vdit_video *a, const vdit_video *b)
{
    if (!a || !b || a->n_frames != b->n_frames)
        return 256;
    int m = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3 * a->n_frames; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* "libvdit.so+0x..." for each return address of site i: addr2line -f -e
 * libvdit.so.0 gives the functions and lines. */
static const char *where(int i)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "libvdit+0x%lx 0x%lx 0x%lx", (unsigned long)site_pc[i][0],
             (unsigned long)site_pc[i][1], (unsigned long)site_pc[i][2]);
    return buf;
}

/* Largest difference between two 16-bit stream outputs, in 16-bit codes. */
static int maxdiff16(const uint16_t *a, const uint16_t *b)
{
    if (!a || !b)
        return 65536;
    int m = 0;
    for (size_t i = 0; i < 32 * 16 * 3 * 9; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void clear(result *r)
{
    __libc_free(r->edit16);
    r->edit16 = NULL;
    vdit_video_free(&r->gen);
    vdit_video_free(&r->edit);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_oom TINY_MODEL_DIR\n");
        return 2;
    }
    model_dir = argv[1];
    void *warm[1];
    backtrace(warm, 1); /* loads the unwinder (it allocates) before arming */
    r_vdit = object_of((const void *)vdit_version);
    r_libc = object_of((const void *)strdup);
    r_self = object_of((const void *)scenario);
    live = __libc_calloc(LIVE_CAP, sizeof(*live));
    if (!live || r_vdit.lo == r_self.lo) {
        fprintf(stderr, "test_oom needs libvdit as a shared library\n");
        return 77;
    }

    result ref, res;
    atomic_store(&recording, 1);
    atomic_store(&armed, 1);
    scenario(&ref);
    atomic_store(&armed, 0);
    atomic_store(&recording, 0);
    T_CHECK(ref.err == 0, "clean run: %s", ref.msg);
    long base_live = n_live; /* what the results hold */
    int n = n_sites;
    printf("# %d libvdit allocation sites in a load and a window\n", n);

    int n_ok = 0, n_err = 0, no_msg = 0, leaks = 0, differ = 0, not_hit = 0, other = 0;
    for (int i = 0; i < n; i++) {
        long before_live = n_live;
        fail_site = sites[i];
        atomic_store(&failed, 0);
        atomic_store(&armed, 1);
        scenario(&res);
        atomic_store(&armed, 0);
        not_hit += !atomic_load(&failed);
        if (res.err) {
            n_err++;
            /* out of memory, said so (the scenario's own vdit_video_new
             * failing has no library message) */
            if (res.err != VDIT_ERR_NOMEM ||
                (!strstr(res.msg, "memory") && strcmp(res.msg, "vdit_video_new returned NULL"))) {
                other++;
                printf("# site %d (%s): error %d in %s: %s\n", i, where(i), res.err,
                       res.stage ? res.stage : "load", res.msg);
            }
            if (!res.msg[0]) {
                no_msg++;
                printf("# site %d (%s): error %d (%s) without a message in %s\n", i, where(i),
                       res.err, vdit_strerror(res.err), res.stage ? res.stage : "load");
            }
        } else {
            n_ok++;
            /* a kernel whose scratch memory failed falls back to the
             * reference kernel: the same arithmetic in another order */
            int d = maxdiff(res.gen, ref.gen), e = maxdiff(res.edit, ref.edit),
                e16 = maxdiff16(res.edit16, ref.edit16);
            if (d || e || e16)
                printf("# site %d (%s): absorbed, frames within %d / %d / %d (16-bit) of the "
                       "clean run's\n", i, where(i), d, e, e16);
            if (d > 2 || e > 2 || e16 > 2 * 257) {
                differ++;
                printf("# site %d: that is too far\n", i);
            }
        }
        clear(&res);
        if (n_live != before_live) {
            leaks++;
            printf("# site %d (%s): %ld allocations left after everything was freed (%s)\n", i,
                   where(i), n_live - before_live, res.msg);
        }
    }
    printf("# %d sites failed: %d runs ended in an error, %d absorbed the failure, %d sites "
           "not reached again\n", n, n_err, n_ok, not_hit);
    T_CHECK(n > 50, "the scenario allocates at many sites (%d)", n);
    T_CHECK(no_msg == 0, "every error has a message (%d without)", no_msg);
    T_CHECK(other == 0, "every error is VDIT_ERR_NOMEM and says so (%d others)", other);
    T_CHECK(leaks == 0, "no allocation leaked after a failure (%d runs leaked)", leaks);
    T_CHECK(differ == 0, "an absorbed failure changes the frames by 2 codes at most (%d differ "
            "more)", differ);

    scenario(&res);
    T_CHECK(res.err == 0 && clip_equal(res.gen, ref.gen) && clip_equal(res.edit, ref.edit) &&
                maxdiff16(res.edit16, ref.edit16) == 0,
            "after all that, a clean run gives the same frames: %s", res.msg);
    clear(&res);
    clear(&ref);
    T_CHECK(n_live <= base_live, "nothing left at the end");
    T_DONE();
}
