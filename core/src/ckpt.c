/* Checkpoint sets: safetensors parsing and validation, shards, renaming.
 * Everything read from a file is checked before it is used. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

/* Headers of real checkpoints are well under 10 MB; safetensors itself caps
 * them at 100 MB. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct entry {
    vt_tensor t;
    char *name;
    int file; /* index into files[] */
} entry;

typedef struct keep {
    void *mem;
    void (*free_fn)(void *);
} keep;

struct vd_ckpt {
    entry *e;
    size_t n, cap;
    /* open-addressing hash: index+1 into e, 0 = empty */
    uint32_t *hash;
    size_t hcap;
    char **files;
    size_t n_files;
    keep *keeps;
    size_t n_keeps;
    char *label;
    int n_threads; /* for the set's own conversions (vd_ckpt_widen_f8); 0 = 1 */
    int flags;     /* VD_CKPT_* */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int rehash(vd_ckpt *c, size_t want)
{
    size_t cap = 64;
    while (cap < want * 2)
        cap *= 2;
    uint32_t *h = calloc(cap, sizeof(*h));
    if (!h)
        return -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t j = hash_str(c->e[i].name) & (cap - 1);
        while (h[j])
            j = (j + 1) & (cap - 1);
        h[j] = (uint32_t)(i + 1);
    }
    free(c->hash);
    c->hash = h;
    c->hcap = cap;
    return 0;
}

vd_ckpt *vd_ckpt_new(void)
{
    return calloc(1, sizeof(vd_ckpt));
}

void vd_ckpt_set_threads(vd_ckpt *c, int n_threads)
{
    if (c)
        c->n_threads = n_threads > 0 ? n_threads : 1;
}

void vd_ckpt_free(vd_ckpt **pc)
{
    vd_ckpt *c = pc ? *pc : NULL;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].name);
    free(c->e);
    free(c->hash);
    for (size_t i = 0; i < c->n_files; i++)
        free(c->files[i]);
    free(c->files);
    for (size_t i = c->n_keeps; i-- > 0;)
        if (c->keeps[i].free_fn)
            c->keeps[i].free_fn(c->keeps[i].mem);
    free(c->keeps);
    free(c->label);
    free(c);
    *pc = NULL;
}

int vd_ckpt_keep(vd_ckpt *c, void *mem, void (*free_fn)(void *))
{
    keep *k = realloc(c->keeps, (c->n_keeps + 1) * sizeof(*k));
    if (!k) {
        if (free_fn)
            free_fn(mem);
        return VDIT_ERR_NOMEM;
    }
    c->keeps = k;
    c->keeps[c->n_keeps].mem = mem;
    c->keeps[c->n_keeps].free_fn = free_fn;
    c->n_keeps++;
    return 0;
}

static int add_file_label(vd_ckpt *c, const char *file)
{
    for (size_t i = 0; i < c->n_files; i++)
        if (!strcmp(c->files[i], file))
            return (int)i;
    char **f = realloc(c->files, (c->n_files + 1) * sizeof(*f));
    if (!f)
        return -1;
    c->files = f;
    c->files[c->n_files] = strdup(file ? file : "?");
    if (!c->files[c->n_files])
        return -1;
    return (int)c->n_files++;
}

const vt_tensor *vd_ckpt_find(const vd_ckpt *c, const char *name)
{
    if (!c || !c->hcap)
        return NULL;
    size_t j = hash_str(name) & (c->hcap - 1);
    while (c->hash[j]) {
        const entry *e = &c->e[c->hash[j] - 1];
        if (!strcmp(e->name, name))
            return &e->t;
        j = (j + 1) & (c->hcap - 1);
    }
    return NULL;
}

static void fix_name_ptrs(vd_ckpt *c)
{
    for (size_t i = 0; i < c->n; i++)
        c->e[i].t.name = c->e[i].name;
}

void vd_ckpt_truncate(vd_ckpt *c, size_t n)
{
    if (!c || n >= c->n)
        return;
    for (size_t i = n; i < c->n; i++)
        free(c->e[i].name);
    c->n = n;
    /* Open addressing cannot delete single slots, so rebuild; if a new
     * table cannot be allocated, rebuild the old (large enough) one in place. */
    if (rehash(c, VD_MAX(c->n, (size_t)16))) {
        memset(c->hash, 0, c->hcap * sizeof(*c->hash));
        for (size_t i = 0; i < c->n; i++) {
            size_t j = hash_str(c->e[i].name) & (c->hcap - 1);
            while (c->hash[j])
                j = (j + 1) & (c->hcap - 1);
            c->hash[j] = (uint32_t)(i + 1);
        }
    }
}

int vd_ckpt_add(vd_ckpt *c, const char *name, vt_dtype dtype, int ndim, const int64_t *shape,
                const void *data, void *owned, const char *file, vd_log *lg)
{
    if (owned && vd_ckpt_keep(c, owned, vd_free))
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    if (ndim < 0 || ndim > VT_MAX_DIMS)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)",
                      file, name, ndim, VT_MAX_DIMS);
    if (vd_ckpt_find(c, name))
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' appears twice", file, name);
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        entry *e = realloc(c->e, nc * sizeof(*e));
        if (!e)
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        c->e = e;
        c->cap = nc;
        fix_name_ptrs(c);
    }
    int fi = add_file_label(c, file);
    entry *e = &c->e[c->n];
    memset(e, 0, sizeof(*e));
    e->name = strdup(name);
    if (fi < 0 || !e->name) {
        free(e->name);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    e->file = fi;
    e->t.dtype = dtype;
    e->t.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->t.shape[i] = shape[i];
    e->t.data = data;
    e->t.name = e->name;
    c->n++;
    if (c->n * 2 > c->hcap) {
        if (rehash(c, c->n * 2)) {
            c->n--;
            free(e->name);
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        }
    } else {
        size_t j = hash_str(name) & (c->hcap - 1);
        while (c->hash[j])
            j = (j + 1) & (c->hcap - 1);
        c->hash[j] = (uint32_t)c->n;
    }
    return 0;
}

int vd_ckpt_replace(vd_ckpt *c, const char *name, vt_dtype dtype, const void *data, void *owned,
                    vd_log *lg)
{
    vt_tensor *t = (vt_tensor *)vd_ckpt_find(c, name);
    if (!t) {
        vd_free(owned);
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no tensor '%s'", vd_ckpt_label(c), name);
    }
    if (owned && vd_ckpt_keep(c, owned, vd_free))
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    t->dtype = dtype;
    t->data = data;
    return 0;
}

/* ---- safetensors ------------------------------------------------------- */

typedef struct range {
    uint64_t begin, end;
    const char *name;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

int vd_ckpt_add_safetensors_mem(vd_ckpt *c, const uint8_t *buf, size_t len, const char *label,
                                vd_log *lg)
{
    if (len < 8)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, too short)",
                      label, len);
    size_t n0 = vd_ckpt_count(c);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > len - 8)
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "%s: not a safetensors file or truncated (header length %llu, file %zu bytes)",
                      label, (unsigned long long)hlen, len);
    if (buf[8] != '{')
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: safetensors header does not start with '{'", label);
    char jerr[128];
    vj_val *root = vj_parse((const char *)buf + 8, (size_t)hlen, jerr, sizeof(jerr));
    if (!root) {
        /* The format allows trailing spaces as padding; vj_parse accepts
         * whitespace, so a failure here is a real error. */
        return vj_error_code(jerr) == VDIT_ERR_NOMEM
                   ? vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory reading the header", label)
                   : vd_err(lg, VDIT_ERR_FORMAT, "%s: bad safetensors header: %s", label, jerr);
    }
    int ret = 0;
    range *ranges = NULL;
    size_t n_ranges = 0;
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    if (root->type != VJ_OBJ) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: safetensors header is not a JSON object", label);
        goto done;
    }
    ranges = calloc(root->len ? root->len : 1, sizeof(*ranges));
    if (!ranges) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < root->len; i++) {
        const char *name = root->keys[i];
        const vj_val *v = &root->kids[i];
        if (strlen(name) != root->key_lens[i]) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor name with a NUL byte", label);
            goto done;
        }
        if (!strcmp(name, "__metadata__")) {
            if (v->type != VJ_OBJ) {
                ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: __metadata__ is not an object", label);
                goto done;
            }
            continue;
        }
        if (v->type != VJ_OBJ) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': entry is not an object", label, name);
            goto done;
        }
        const vj_val *jd = vj_get(v, "dtype"), *js = vj_get(v, "shape"),
                     *jo = vj_get(v, "data_offsets");
        if (!jd || jd->type != VJ_STR || !js || js->type != VJ_ARR || !jo || jo->type != VJ_ARR
            || jo->len != 2) {
            ret = vd_err(lg, VDIT_ERR_FORMAT,
                         "%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]",
                         label, name);
            goto done;
        }
        int dt = vt_dtype_from_name(jd->str);
        if (dt < 0) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", label, name,
                         jd->str);
            goto done;
        }
        if (js->len > VT_MAX_DIMS) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", label,
                         name, js->len, VT_MAX_DIMS);
            goto done;
        }
        int64_t shape[VT_MAX_DIMS];
        uint64_t nbytes = vt_dtype_size((vt_dtype)dt);
        for (size_t k = 0; k < js->len; k++) {
            const vj_val *d = &js->kids[k];
            if (d->type != VJ_NUM || !d->is_int || d->i < 0) {
                ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': bad shape entry", label, name);
                goto done;
            }
            shape[k] = d->i;
            if (d->i && nbytes > UINT64_MAX / (uint64_t)d->i) {
                ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': shape overflows", label, name);
                goto done;
            }
            nbytes *= (uint64_t)d->i;
        }
        const vj_val *b = &jo->kids[0], *e = &jo->kids[1];
        if (b->type != VJ_NUM || !b->is_int || e->type != VJ_NUM || !e->is_int || b->i < 0
            || e->i < b->i) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", label, name);
            goto done;
        }
        uint64_t begin = (uint64_t)b->i, end = (uint64_t)e->i;
        if (end > data_len) {
            ret = vd_err(lg, VDIT_ERR_FORMAT,
                         "%s: tensor '%s': data [%llu, %llu) runs past the end of the file "
                         "(%llu data bytes): truncated?",
                         label, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_len);
            goto done;
        }
        if (end - begin != nbytes) {
            ret = vd_err(lg, VDIT_ERR_FORMAT,
                         "%s: tensor '%s': %s shape needs %llu bytes but data_offsets span %llu",
                         label, name, vt_dtype_name((vt_dtype)dt), (unsigned long long)nbytes,
                         (unsigned long long)(end - begin));
            goto done;
        }
        if (end > begin) { /* empty tensors occupy nothing and may share an offset */
            ranges[n_ranges].begin = begin;
            ranges[n_ranges].end = end;
            ranges[n_ranges].name = name;
            n_ranges++;
        }

        const uint8_t *p = data + begin;
        void *owned = NULL;
        size_t esz = vt_dtype_size((vt_dtype)dt);
        if (nbytes && ((uintptr_t)p % esz)) {
            /* misaligned: keep an aligned copy so kernels may load directly */
            owned = vd_malloc((size_t)nbytes);
            if (!owned) {
                ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(owned, p, (size_t)nbytes);
            p = owned;
        }
        ret = vd_ckpt_add(c, name, (vt_dtype)dt, (int)js->len, shape, p, owned, label, lg);
        if (ret)
            goto done;
    }
    qsort(ranges, n_ranges, sizeof(*ranges), cmp_range);
    for (size_t i = 1; i < n_ranges; i++) {
        if (ranges[i].begin < ranges[i - 1].end) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", label,
                         ranges[i - 1].name, ranges[i].name);
            goto done;
        }
    }
done:
    if (ret)
        vd_ckpt_truncate(c, n0);
    free(ranges);
    vj_free(root);
    return ret;
}

/* A file's bytes: mapped (the file stays open, so that vd_ckpt_check can
 * see it change under the mapping) or read into memory (VD_CKPT_READ). */
typedef struct mapping {
    void *addr;
    size_t len;
    int fd;               /* mapped: the open file, else -1 */
    int mapped;
    struct timespec mtime; /* when mapped */
    char *path;
} mapping;

static void unmap(void *p)
{
    mapping *m = p;
    if (m->mapped && m->addr && m->len)
        munmap(m->addr, m->len);
    else if (!m->mapped)
        free(m->addr);
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    free(m);
}

/* Reads the whole of fd (n bytes) into memory. */
static int read_all(int fd, size_t n, void **out)
{
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return VDIT_ERR_NOMEM;
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return VDIT_ERR_IO;
        }
        got += (size_t)r;
    }
    *out = buf;
    return 0;
}

int vd_ckpt_map_file(vd_ckpt *c, const char *path, vd_log *lg, const void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vd_err(lg, errno == ENOENT   ? VDIT_ERR_MISSING
                          : errno == ENOMEM ? VDIT_ERR_NOMEM
                                            : VDIT_ERR_IO,
                      "%s: cannot open: %s",
                      path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return vd_err(lg, VDIT_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    mapping *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        free(m);
        close(fd);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    m->fd = -1;
    m->mtime = st.st_mtim;
    if (c->flags & VD_CKPT_READ) {
        int e = read_all(fd, n, &m->addr);
        close(fd);
        if (e) {
            unmap(m);
            return e == VDIT_ERR_NOMEM ? vd_err(lg, e, "out of memory reading %s (%zu bytes)",
                                                path, n)
                                       : vd_err(lg, e, "%s: cannot read: %s", path,
                                                strerror(errno ? errno : EIO));
        }
        m->len = n;
    } else {
        if (n) {
            m->addr = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m->addr == MAP_FAILED) {
                m->addr = NULL;
                unmap(m);
                close(fd);
                return vd_err(lg, VDIT_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
            }
            m->len = n;
        }
        m->mapped = 1;
        m->fd = fd;
    }
    if (vd_ckpt_keep(c, m, unmap))
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    *data = m->addr;
    *len = n;
    return 0;
}

int vd_ckpt_check(const vd_ckpt *c, vd_log *lg)
{
    for (size_t i = 0; c && i < c->n_keeps; i++) {
        const mapping *m = c->keeps[i].mem;
        if (c->keeps[i].free_fn != unmap || !m->mapped)
            continue;
        struct stat st;
        if (fstat(m->fd, &st))
            return vd_err(lg, VDIT_ERR_IO, "%s: cannot check the file: %s", m->path,
                          strerror(errno));
        if ((size_t)st.st_size < m->len)
            return vd_err(lg, VDIT_ERR_IO,
                          "%s was truncated on disk after the model was loaded (%zu -> %lld "
                          "bytes): its weights cannot be read any more; load the model again "
                          "(to replace a model in use, write the new file elsewhere and rename "
                          "it over the old one)",
                          m->path, m->len, (long long)st.st_size);
        if ((size_t)st.st_size != m->len || st.st_mtim.tv_sec != m->mtime.tv_sec ||
            st.st_mtim.tv_nsec != m->mtime.tv_nsec)
            return vd_err(lg, VDIT_ERR_IO,
                          "%s was modified on disk after the model was loaded: its weights "
                          "would mix old and new; load the model again (to replace a model in "
                          "use, write the new file elsewhere and rename it over the old one)",
                          m->path);
    }
    return 0;
}

size_t vd_ckpt_release(const vd_ckpt *c, const void *data)
{
    if (!c || !data)
        return 0;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)data, e = a;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].t.data == data) {
            uintptr_t te = a + (uintptr_t)vt_nelem(&c->e[i].t) * vt_dtype_size(c->e[i].t.dtype);
            e = te > e ? te : e;
        }
    /* whole pages only: a page shared with a neighbouring tensor or the
     * header stays */
    a = (a + pg - 1) / pg * pg;
    e = e / pg * pg;
    if (e <= a)
        return 0;
    for (size_t i = 0; i < c->n_keeps; i++) {
        const mapping *m = c->keeps[i].mem;
        if (c->keeps[i].free_fn != unmap || !m->mapped || !m->len || a < (uintptr_t)m->addr ||
            e > (uintptr_t)m->addr + m->len)
            continue;
        /* a private read-only file mapping never written: dropped pages are
         * read again from the file if touched, so every tensor stays valid
         * (another model may still use this set) */
        return madvise((void *)a, e - a, MADV_DONTNEED) ? 0 : (size_t)(e - a);
    }
    return 0;
}

int vd_ckpt_add_safetensors(vd_ckpt *c, const char *path, vd_log *lg)
{
    const void *data;
    size_t len;
    int ret = vd_ckpt_map_file(c, path, lg, &data, &len);
    return ret ? ret : vd_ckpt_add_safetensors_mem(c, data, len, path, lg);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return strdup(".");
    size_t n = (size_t)(s - path);
    char *d = malloc(n + 2);
    if (!d)
        return NULL;
    if (n == 0) {
        strcpy(d, "/");
        return d;
    }
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static int open_index(vd_ckpt *c, const char *path, vd_log *lg)
{
    char *txt;
    size_t len;
    int ret = vd_read_file(lg, path, &txt, &len);
    if (ret)
        return ret;
    char jerr[128];
    vj_val *root = vj_parse(txt, len, jerr, sizeof(jerr));
    free(txt);
    if (!root)
        return vd_err(lg, vj_error_code(jerr), "%s: %s", path, jerr);
    const vj_val *wm = vj_get(root, "weight_map");
    char *dir = dir_of(path);
    char **shards = NULL;
    size_t n_shards = 0;
    if (!wm || wm->type != VJ_OBJ) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: no \"weight_map\" object", path);
        goto done;
    }
    if (!dir) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    shards = calloc(wm->len ? wm->len : 1, sizeof(*shards));
    if (!shards) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < wm->len; i++) {
        const char *f = vj_str(&wm->kids[i], NULL);
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..")) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' maps to a bad file name", path,
                         wm->keys[i]);
            goto done;
        }
        size_t k;
        for (k = 0; k < n_shards; k++)
            if (!strcmp(shards[k], f))
                break;
        if (k == n_shards)
            shards[n_shards++] = (char *)f;
    }
    for (size_t k = 0; k < n_shards; k++) {
        char *p = join_path(dir, shards[k]);
        if (!p) {
            ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
            goto done;
        }
        ret = vd_ckpt_add_safetensors(c, p, lg);
        free(p);
        if (ret) {
            if (lg && ret != VDIT_ERR_NOMEM) {
                /* name the index and one tensor that needs the shard */
                const char *who = "?";
                for (size_t i = 0; i < wm->len; i++)
                    if (!strcmp(wm->kids[i].str, shards[k])) {
                        who = wm->keys[i];
                        break;
                    }
                char inner[sizeof(lg->msg)];
                memcpy(inner, lg->msg, sizeof(inner));
                vd_err(lg, ret, "%s: shard '%s' (holding tensor '%s'): %s", path, shards[k], who,
                       inner);
            }
            goto done;
        }
    }
    for (size_t i = 0; i < wm->len; i++) {
        const vt_tensor *t = vd_ckpt_find(c, wm->keys[i]);
        const char *want = wm->kids[i].str;
        if (!t) {
            ret = vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%s' is listed for shard '%s' but absent there",
                         path, wm->keys[i], want);
            goto done;
        }
        const char *got = vd_ckpt_file(c, t), *base = strrchr(got, '/');
        base = base ? base + 1 : got;
        if (strcmp(base, want)) {
            ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' is listed for shard '%s' but found in '%s'",
                         path, wm->keys[i], want, got);
            goto done;
        }
    }
done:
    free(shards);
    free(dir);
    vj_free(root);
    return ret;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_pth_name(const char *n)
{
    return ends_with(n, ".pth") || ends_with(n, ".pt") || ends_with(n, ".bin")
           || ends_with(n, ".ckpt");
}

/* A folder: its one *.safetensors.index.json, else every *.safetensors file,
 * else (no safetensors at all) every PyTorch checkpoint (*.pth, *.pt, *.bin). */
static int open_dir(vd_ckpt *c, const char *path, vd_log *lg)
{
    DIR *d = opendir(path);
    if (!d)
        return vd_err(lg, VDIT_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, n_index = 0, n_st = 0;
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int idx = ends_with(de->d_name, ".safetensors.index.json");
        int st = ends_with(de->d_name, ".safetensors");
        if (!idx && !st && !is_pth_name(de->d_name))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn) {
            ret = VDIT_ERR_NOMEM;
            break;
        }
        names = nn;
        names[n] = strdup(de->d_name);
        if (!names[n]) {
            ret = VDIT_ERR_NOMEM;
            break;
        }
        n++;
        n_index += idx;
        n_st += st;
    }
    closedir(d);
    if (ret) {
        ret = vd_err(lg, ret, "out of memory");
        goto done;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    if (n == 0) {
        ret = vd_err(lg, VDIT_ERR_MISSING, "%s: no .safetensors or .pth file in this folder", path);
    } else if (n_index > 1) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: several *.safetensors.index.json files; name one", path);
    } else {
        for (size_t i = 0; i < n && !ret; i++) {
            int idx = ends_with(names[i], ".safetensors.index.json");
            int st = ends_with(names[i], ".safetensors");
            if (n_index ? !idx : n_st ? !st : !is_pth_name(names[i]))
                continue;
            char *p = join_path(path, names[i]);
            if (!p) {
                ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
                break;
            }
            ret = idx ? open_index(c, p, lg) : st ? vd_ckpt_add_safetensors(c, p, lg)
                                                  : vd_ckpt_add_pth(c, p, lg);
            free(p);
        }
    }
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return ret;
}

/* Zip archives (what torch.save writes) start with a local file header. */
static int is_zip_file(const char *path)
{
    unsigned char m[4] = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t r = fread(m, 1, 4, f);
    fclose(f);
    return r == 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4;
}

int vd_ckpt_open(const char *path, vd_log *lg, vd_ckpt **out)
{
    return vd_ckpt_open_ex(path, 0, lg, out);
}

int vd_ckpt_open_ex(const char *path, int flags, vd_log *lg, vd_ckpt **out)
{
    *out = NULL;
    struct stat st;
    if (!path || stat(path, &st))
        return vd_err(lg, VDIT_ERR_MISSING, "%s: no such file or folder", path ? path : "(null)");
    vd_ckpt *c = vd_ckpt_new();
    if (!c || !(c->label = strdup(path))) {
        vd_ckpt_free(&c);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    c->flags = flags;
    int ret;
    if (S_ISDIR(st.st_mode))
        ret = open_dir(c, path, lg);
    else if (ends_with(path, ".json"))
        ret = open_index(c, path, lg);
    else if (is_zip_file(path))
        ret = vd_ckpt_add_pth(c, path, lg);
    else if (is_pth_name(path))
        ret = vd_err(lg, VDIT_ERR_UNSUPPORTED,
                     "%s: not a zip archive: only PyTorch checkpoints saved with the zip format "
                     "(torch >= 1.6 default) are read; re-save it or convert it to safetensors",
                     path);
    else
        ret = vd_ckpt_add_safetensors(c, path, lg);
    if (ret) {
        vd_ckpt_free(&c);
        return ret;
    }
    *out = c;
    return 0;
}

size_t vd_ckpt_count(const vd_ckpt *c)
{
    return c ? c->n : 0;
}

const vt_tensor *vd_ckpt_at(const vd_ckpt *c, size_t i)
{
    return c && i < c->n ? &c->e[i].t : NULL;
}

const char *vd_ckpt_file(const vd_ckpt *c, const vt_tensor *t)
{
    if (!c || !t || !c->n || t < &c->e[0].t || t >= &c->e[c->n].t)
        return vd_ckpt_label(c);
    const entry *e = (const entry *)((const char *)t - offsetof(entry, t));
    return c->files[e->file];
}

const char *vd_ckpt_label(const vd_ckpt *c)
{
    if (!c)
        return "?";
    if (c->label)
        return c->label;
    return c->n_files ? c->files[0] : "checkpoint";
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++) {
        if (shape[i] < 0)
            o += (size_t)snprintf(buf + o, n - o, "%s*", i ? ", " : "");
        else
            o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static int get_checked(const vd_ckpt *c, vd_log *lg, const char *name, int ndim,
                       const int64_t *shape, const vt_tensor **out, int allow_f8);

int vd_ckpt_get(const vd_ckpt *c, vd_log *lg, const char *name, int ndim, const int64_t *shape,
                const vt_tensor **out)
{
    return get_checked(c, lg, name, ndim, shape, out, 0);
}

int vd_ckpt_get_f8(const vd_ckpt *c, vd_log *lg, const char *name, int ndim, const int64_t *shape,
                   const vt_tensor **out)
{
    return get_checked(c, lg, name, ndim, shape, out, 1);
}

static int get_checked(const vd_ckpt *c, vd_log *lg, const char *name, int ndim,
                       const int64_t *shape, const vt_tensor **out, int allow_f8)
{
    *out = NULL;
    const vt_tensor *t = vd_ckpt_find(c, name);
    if (!t)
        return vd_err(lg, VDIT_ERR_MISSING, "%s: tensor '%s' is missing", vd_ckpt_label(c), name);
    int f8 = t->dtype == VT_F8_E4M3 || t->dtype == VT_F8_E5M2;
    if (!(allow_f8 && f8) && t->dtype != VT_F32 && t->dtype != VT_F16 && t->dtype != VT_BF16
        && t->dtype != VT_F64)
        return vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, expected F32, F16 or BF16",
                      vd_ckpt_file(c, t), name, vt_dtype_name(t->dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++)
        if (shape[i] >= 0 && shape[i] != t->shape[i])
            ok = 0;
    if (!ok) {
        char a[128], b[128];
        shape_str(a, sizeof(a), t->ndim, t->shape);
        if (shape)
            shape_str(b, sizeof(b), ndim, shape);
        else
            snprintf(b, sizeof(b), "%d dimensions", ndim);
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
                      vd_ckpt_file(c, t), name, a, b);
    }
    *out = t;
    return 0;
}

int vd_ckpt_getf(const vd_ckpt *c, vd_log *lg, const vt_tensor **out, int ndim, int64_t d0,
                 int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    int64_t shape[4] = { d0, d1, d2, d3 };
    if (ndim > 4) {
        int64_t any[VT_MAX_DIMS];
        for (int i = 0; i < VT_MAX_DIMS; i++)
            any[i] = i < 4 ? shape[i] : -1;
        return vd_ckpt_get(c, lg, name, ndim, any, out);
    }
    return vd_ckpt_get(c, lg, name, ndim, shape, out);
}

/* ---- renaming ---------------------------------------------------------- */

#define MAX_CAPS 8

static int match(const char *s, const char *p, const char **cap_s, size_t *cap_n, int nc)
{
    for (;;) {
        if (*p == 0)
            return *s == 0 ? nc + 1 : 0; /* returns captures + 1 */
        if (*p == '#') {
            if (*s < '0' || *s > '9' || nc >= MAX_CAPS)
                return 0;
            const char *e = s;
            while (*e >= '0' && *e <= '9')
                e++;
            cap_s[nc] = s;
            cap_n[nc] = (size_t)(e - s);
            s = e;
            p++;
            nc++;
            continue;
        }
        if (*p == '*') {
            if (nc >= MAX_CAPS)
                return 0;
            /* shortest match first */
            for (const char *e = s;; e++) {
                cap_s[nc] = s;
                cap_n[nc] = (size_t)(e - s);
                int r = match(e, p + 1, cap_s, cap_n, nc + 1);
                if (r)
                    return r;
                if (!*e)
                    return 0;
            }
        }
        if (*s != *p)
            return 0;
        s++;
        p++;
    }
}

int vd_key_rewrite(const char *name, const char *from, const char *to, char *out, size_t outsz)
{
    const char *cs[MAX_CAPS];
    size_t cn[MAX_CAPS];
    int r = match(name, from, cs, cn, 0);
    if (!r)
        return 0;
    int ncap = r - 1, k = 0;
    size_t o = 0;
    for (const char *q = to; *q; q++) {
        if ((*q == '#' || *q == '*') && k < ncap) {
            if (o + cn[k] >= outsz)
                return 0;
            memcpy(out + o, cs[k], cn[k]);
            o += cn[k];
            k++;
        } else {
            if (o + 1 >= outsz)
                return 0;
            out[o++] = *q;
        }
    }
    out[o] = 0;
    return 1;
}

/* Replaces every name by newnames[i] (taking ownership of the array's
 * strings in every case). Collisions are detected before anything changes,
 * so on error the set keeps its old names and stays usable. */
static int rename_all(vd_ckpt *c, char **newnames, vd_log *lg)
{
    size_t cap = 64;
    while (cap < c->n * 2)
        cap *= 2;
    uint32_t *h = calloc(cap, sizeof(*h));
    if (!h) {
        for (size_t i = 0; i < c->n; i++)
            free(newnames[i]);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->n; i++) {
        size_t j = hash_str(newnames[i]) & (cap - 1);
        while (h[j]) {
            size_t o = h[j] - 1;
            if (!strcmp(newnames[o], newnames[i])) {
                int ret = vd_err(lg, VDIT_ERR_FORMAT,
                                 "%s: tensors '%s' and '%s' both map onto the name '%s'",
                                 vd_ckpt_label(c), c->e[o].name, c->e[i].name, newnames[i]);
                for (size_t k = 0; k < c->n; k++)
                    free(newnames[k]);
                free(h);
                return ret;
            }
            j = (j + 1) & (cap - 1);
        }
        h[j] = (uint32_t)(i + 1);
    }
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].name);
        c->e[i].name = newnames[i];
        c->e[i].t.name = newnames[i];
    }
    free(c->hash);
    c->hash = h;
    c->hcap = cap;
    return 0;
}

int vd_ckpt_rename(vd_ckpt *c, const vd_keyrule *rules, size_t n_rules, vd_log *lg)
{
    char **nn = calloc(c->n ? c->n : 1, sizeof(*nn));
    if (!nn)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    char buf[512];
    for (size_t i = 0; i < c->n; i++) {
        const char *src = c->e[i].name;
        for (size_t r = 0; r < n_rules; r++) {
            if (vd_key_rewrite(c->e[i].name, rules[r].from, rules[r].to, buf, sizeof(buf))) {
                src = buf;
                break;
            }
        }
        nn[i] = strdup(src);
        if (!nn[i]) {
            for (size_t k = 0; k < i; k++)
                free(nn[k]);
            free(nn);
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        }
    }
    int ret = rename_all(c, nn, lg);
    free(nn);
    return ret;
}

int vd_ckpt_strip_prefix(vd_ckpt *c, const char *prefix, vd_log *lg)
{
    size_t pl = strlen(prefix);
    char **nn = calloc(c->n ? c->n : 1, sizeof(*nn));
    if (!nn)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->n; i++) {
        const char *s = c->e[i].name;
        if (!strncmp(s, prefix, pl))
            s += pl;
        nn[i] = strdup(s);
        if (!nn[i]) {
            for (size_t k = 0; k < i; k++)
                free(nn[k]);
            free(nn);
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        }
    }
    int ret = rename_all(c, nn, lg);
    free(nn);
    return ret;
}

/* Whether name holds seg as whole components (at its start or after a '.'). */
static const char *find_segment(const char *name, const char *seg)
{
    for (const char *p = strstr(name, seg); p; p = strstr(p + 1, seg))
        if (p == name || p[-1] == '.')
            return p;
    return NULL;
}

int vd_ckpt_drop_segments(vd_ckpt *c, const char *const *segs, size_t n_segs, vd_log *lg,
                          int *dropped)
{
    int any = 0;
    for (size_t i = 0; i < c->n && !any; i++)
        for (size_t k = 0; k < n_segs && !any; k++)
            any = find_segment(c->e[i].name, segs[k]) != NULL;
    if (dropped)
        *dropped = any;
    if (!any)
        return 0;
    char **nn = calloc(c->n, sizeof(*nn));
    if (!nn)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->n; i++) {
        char *s = strdup(c->e[i].name);
        if (!s) {
            for (size_t k = 0; k < i; k++)
                free(nn[k]);
            free(nn);
            return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        }
        for (size_t k = 0; k < n_segs; k++) {
            size_t l = strlen(segs[k]);
            char *p;
            while ((p = (char *)find_segment(s, segs[k])))
                memmove(p, p + l, strlen(p + l) + 1);
        }
        nn[i] = s;
    }
    int ret = rename_all(c, nn, lg);
    free(nn);
    return ret;
}

size_t vd_ckpt_count_prefix(const vd_ckpt *c, const char *prefix)
{
    size_t pl = strlen(prefix), k = 0;
    for (size_t i = 0; c && i < c->n; i++)
        k += !strncmp(c->e[i].name, prefix, pl);
    return k;
}

static int f8_to_bf16(const vd_ckpt *ck, vd_log *lg, const char *name, const vt_tensor *raw,
                      uint16_t **out)
{
    *out = NULL;
    if (raw->dtype != VT_F8_E4M3 && raw->dtype != VT_F8_E5M2)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "%s: tensor '%s' is %s, not fp8", vd_ckpt_label(ck),
                      name, vt_dtype_name(raw->dtype));
    char sn[512];
    size_t nl = strlen(name);
    const vt_tensor *sc = NULL;
    if (nl > 7 && nl < 400 && !strcmp(name + nl - 7, ".weight")) {
        snprintf(sn, sizeof(sn), "%.*s.scale_weight", (int)(nl - 7), name);
        sc = vd_ckpt_find(ck, sn);
        if (!sc) {
            snprintf(sn, sizeof(sn), "%s_scale", name);
            sc = vd_ckpt_find(ck, sn);
        }
    }
    int64_t n = vt_nelem(raw);
    int64_t rows = raw->ndim ? raw->shape[0] : 1, cols = rows ? n / rows : 0;
    float *s = NULL;
    int64_t ns = 0;
    if (sc) {
        ns = vt_nelem(sc);
        if (ns != 1 && ns != rows)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: scale '%s' has %lld values for %lld rows (per-tensor or per-row "
                          "scales only)",
                          vd_ckpt_label(ck), sn, (long long)ns, (long long)rows);
        s = vd_tensor_f32(sc);
        if (!s && vd_tensor_is_float(sc))
            return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory for scale '%s'",
                          vd_ckpt_label(ck), sn);
        if (!s)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: scale '%s' is not a float tensor",
                          vd_ckpt_label(ck), sn);
    }
    uint16_t *bf = vd_malloc((size_t)n * 2 + 1);
    if (!bf) {
        vd_free(s);
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory", vd_ckpt_label(ck), name);
    }
    const uint8_t *src = raw->data;
    const int e4 = raw->dtype == VT_F8_E4M3;
    /* the 256 values once (a 5B model has 4.6 G fp8 weights: decoding each
     * one with ldexpf took minutes) */
    float lut[256];
    for (int b = 0; b < 256; b++)
        lut[b] = e4 ? vt_f8e4m3_to_f32((uint8_t)b) : vt_f8e5m2_to_f32((uint8_t)b);
    /* Rows are independent: the result does not depend on the thread count. */
    const int nt = ck && ck->n_threads > 1 ? ck->n_threads : 1;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1 && n >= (1 << 16)) schedule(static)
#endif
    for (int64_t r = 0; r < rows; r++) {
        float f = s ? s[ns == 1 ? 0 : r] : 1.0f;
        for (int64_t c = 0; c < cols; c++)
            bf[r * cols + c] = vt_f32_to_bf16(lut[src[r * cols + c]] * f);
    }
    vd_free(s);
    *out = bf;
    return 0;
}

int vd_ckpt_widen_f8(const vd_ckpt *ck, vd_log *lg, const char *name, vd_owned *owned,
                     const vt_tensor **w, vt_tensor *tmp)
{
    if ((*w)->dtype != VT_F8_E4M3 && (*w)->dtype != VT_F8_E5M2)
        return 0;
    uint16_t *bf;
    int ret = f8_to_bf16(ck, lg, name, *w, &bf);
    if (ret)
        return ret;
    if (!vd_owned_add(owned, bf))
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", name);
    *tmp = **w;
    tmp->dtype = VT_BF16;
    tmp->data = bf;
    *w = tmp;
    return 0;
}

int vd_tensor_is_float(const vt_tensor *t)
{
    const uint8_t zero[16] = { 0 };
    float f;
    return !vt_to_f32(&f, zero, t->dtype, 1);
}

float *vd_tensor_f32(const vt_tensor *t)
{
    int64_t n = vt_nelem(t);
    float *f = vd_malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!f)
        return NULL;
    if (vt_to_f32(f, t->data, t->dtype, (size_t)n)) {
        vd_free(f);
        return NULL;
    }
    return f;
}
