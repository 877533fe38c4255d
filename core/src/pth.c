/* PyTorch checkpoints (torch.save's zip format) without Python.
 *
 * A .pth file is a zip archive of STORED entries: <prefix>/data.pkl, a
 * pickle describing the object tree, and <prefix>/data/<key>, one raw
 * storage per key. Pickle is a program for a stack machine that may call
 * any Python callable, so it is never "run" here: a small machine accepts
 * only the opcodes torch.save emits for state dicts and only the globals
 * needed to rebuild tensors (an allow-list). Everything else is rejected
 * with an error naming the opcode or the global. The result is a tree of
 * dicts whose tensors are registered in the set with '.'-joined names.
 *
 * Every offset and length read from the file is checked against the mapped
 * bytes before use; all pickle values live in one arena freed at the end. */
#include "ckpt.h"

#include <stdio.h>

#define PTH_MAX_ENTRIES (1u << 20)
#define PTH_MAX_MEMO (1u << 22)
#define PTH_MAX_STACK (1u << 20)
#define PTH_MAX_DEPTH 64

/* ---- zip (stored entries only) ---------------------------------------- */

typedef struct zentry {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    uint64_t offset; /* of the data, validated inside the file */
    uint64_t size;
} zentry;

typedef struct zip {
    zentry *e;
    size_t n;
} zip;

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* Reads the central directory. Only method 0 (stored) entries with equal
 * compressed and uncompressed sizes are accepted; zip64 sizes and offsets
 * are taken from the zip64 extra field when the 32-bit fields are full. */
static int zip_open(zip *z, const uint8_t *b, size_t len, const char *label, vd_log *lg)
{
    memset(z, 0, sizeof(*z));
    if (len < 22)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: not a zip archive (too short)", label);
    /* end of central directory: last record with the signature, within the
     * last 64 KiB + 22 bytes (its comment is at most 65535 bytes) */
    size_t eocd = SIZE_MAX;
    size_t lo = len > 65535 + 22 ? len - 65535 - 22 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (rd32(b + i) == 0x06054b50u && i + 22 + rd16(b + i + 20) == len) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "%s: zip end-of-directory record not found (truncated file?)", label);
    uint64_t n_ent = rd16(b + eocd + 10);
    uint64_t cd_size = rd32(b + eocd + 12);
    uint64_t cd_off = rd32(b + eocd + 16);
    if (n_ent == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        /* zip64: locator just before the EOCD points at the zip64 record */
        if (eocd < 20 || rd32(b + eocd - 20) != 0x07064b50u)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip64 locator missing", label);
        uint64_t z64 = rd64(b + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || rd32(b + z64) != 0x06064b50u)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: bad zip64 end-of-directory record", label);
        n_ent = rd64(b + z64 + 32);
        cd_size = rd64(b + z64 + 40);
        cd_off = rd64(b + z64 + 48);
    }
    if (cd_off > len || cd_size > len - cd_off)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip central directory outside the file", label);
    /* each entry takes at least 46 bytes: bounds the allocation */
    if (n_ent > PTH_MAX_ENTRIES || n_ent > cd_size / 46 + 1)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip claims %llu entries", label,
                      (unsigned long long)n_ent);
    z->e = calloc(n_ent ? n_ent : 1, sizeof(*z->e));
    if (!z->e)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    const uint8_t *cd = b + cd_off;
    uint64_t pos = 0;
    for (uint64_t k = 0; k < n_ent; k++) {
        if (cd_size - pos < 46 || rd32(cd + pos) != 0x02014b50u)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip directory entry %llu is damaged", label,
                          (unsigned long long)k);
        const uint8_t *h = cd + pos;
        uint16_t flags = rd16(h + 8), method = rd16(h + 10);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24);
        size_t nl = rd16(h + 28), xl = rd16(h + 30), cl = rd16(h + 32);
        uint64_t loc = rd32(h + 42);
        if (cd_size - pos - 46 < (uint64_t)nl + xl + cl)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip directory entry %llu is damaged", label,
                          (unsigned long long)k);
        const char *name = (const char *)h + 46;
        const uint8_t *x = h + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if (xe - x - 4 < sz)
                break;
            if (id == 1) { /* zip64 extended information, fields in order */
                const uint8_t *f = x + 4, *fe = x + 4 + sz;
                if (usize == 0xffffffffu && fe - f >= 8) { usize = rd64(f); f += 8; }
                if (csize == 0xffffffffu && fe - f >= 8) { csize = rd64(f); f += 8; }
                if (loc == 0xffffffffu && fe - f >= 8) { loc = rd64(f); f += 8; }
            }
            x += 4 + sz;
        }
        pos += 46 + nl + xl + cl;
        if (method != 0 || (flags & 1))
            return vd_err(lg, VDIT_ERR_UNSUPPORTED,
                          "%s: zip entry '%.*s' is compressed or encrypted (method %u); torch.save "
                          "stores entries uncompressed",
                          label, (int)VD_MIN(nl, 200), name, method);
        if (csize != usize)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip entry '%.*s' has inconsistent sizes", label,
                          (int)VD_MIN(nl, 200), name);
        if (loc > len || len - loc < 30 || rd32(b + loc) != 0x04034b50u)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: zip entry '%.*s': local header outside the "
                          "file or damaged (truncated file?)",
                          label, (int)VD_MIN(nl, 200), name);
        uint64_t data = loc + 30 + rd16(b + loc + 26) + (uint64_t)rd16(b + loc + 28);
        if (data > len || usize > len - data)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: zip entry '%.*s' (%llu bytes) runs past the end of the file "
                          "(truncated?)",
                          label, (int)VD_MIN(nl, 200), name, (unsigned long long)usize);
        z->e[z->n].name = name;
        z->e[z->n].name_len = nl;
        z->e[z->n].offset = data;
        z->e[z->n].size = usize;
        z->n++;
    }
    return 0;
}

static const zentry *zip_find(const zip *z, const char *prefix, size_t pl, const char *suffix)
{
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < z->n; i++) {
        const zentry *e = &z->e[i];
        if (e->name_len == pl + sl && !memcmp(e->name, prefix, pl)
            && !memcmp(e->name + pl, suffix, sl))
            return e;
    }
    return NULL;
}

/* ---- pickle values ------------------------------------------------------ */

typedef enum pk_type {
    PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT, PK_GLOBAL,
    PK_STORAGE, PK_TENSOR, PK_MARK
} pk_type;

/* The only callables and classes the machine knows. */
typedef enum pk_global {
    G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_TENSOR_V3, G_REBUILD_PARAMETER, G_STORAGE,
    G_DTYPE
} pk_global;

typedef struct pk_val pk_val;
struct pk_val {
    pk_type type;
    int64_t i;     /* INT, BOOL; GLOBAL: pk_global */
    double f;      /* FLOAT */
    int dtype;     /* GLOBAL storage/dtype classes, STORAGE, TENSOR: vt_dtype; -1: an
                    * untyped storage (bytes, numel counts bytes) */
    const char *s; /* STR (NUL-terminated copy in the arena), STORAGE: key */
    size_t n;      /* STR bytes; TUPLE/LIST/DICT items (DICT: 2 per pair) */
    size_t cap;
    pk_val **v;    /* TUPLE/LIST/DICT items */
    /* STORAGE */
    int64_t numel;
    /* TENSOR */
    pk_val *storage;
    int64_t offset;
    int ndim;
    int64_t shape[VT_MAX_DIMS], stride[VT_MAX_DIMS];
};

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    max_align_t data[];
} arena_blk;

typedef struct pk {
    const uint8_t *p;
    size_t len, pos;
    const char *label;
    vd_log *lg;
    arena_blk *blocks;
    pk_val **stack;
    size_t sp, scap;
    pk_val **memo;
    size_t memo_cap;
    pk_val mark, none, true_v, false_v;
} pk;

static void *arena_alloc(pk *m, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_blk *b = m->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = VD_MAX(n, (size_t)64 << 10);
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = m->blocks;
        m->blocks = b;
    }
    void *r = (char *)b->data + b->used;
    b->used += n;
    return r;
}

static pk_val *new_val(pk *m, pk_type t)
{
    pk_val *v = arena_alloc(m, sizeof(*v));
    if (v) {
        memset(v, 0, sizeof(*v));
        v->type = t;
    }
    return v;
}

static int perr(pk *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(pk *m, const char *fmt, ...)
{
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return vd_err(m->lg, VDIT_ERR_FORMAT, "%s: data.pkl: %s", m->label, buf);
}

static int nomem(pk *m)
{
    return vd_err(m->lg, VDIT_ERR_NOMEM, "%s: out of memory while reading data.pkl", m->label);
}

static int push(pk *m, pk_val *v)
{
    if (!v)
        return nomem(m);
    if (m->sp == m->scap) {
        if (m->scap >= PTH_MAX_STACK)
            return perr(m, "pickle stack too deep");
        size_t nc = m->scap ? m->scap * 2 : 64;
        pk_val **s = realloc(m->stack, nc * sizeof(*s));
        if (!s)
            return nomem(m);
        m->stack = s;
        m->scap = nc;
    }
    m->stack[m->sp++] = v;
    return 0;
}

static pk_val *pop(pk *m)
{
    if (!m->sp || m->stack[m->sp - 1] == &m->mark) {
        perr(m, "stack underflow at byte %zu", m->pos);
        return NULL;
    }
    return m->stack[--m->sp];
}

/* Index just above the topmost MARK (and removes nothing), or SIZE_MAX. */
static size_t find_mark(pk *m)
{
    for (size_t i = m->sp; i-- > 0;)
        if (m->stack[i] == &m->mark)
            return i;
    perr(m, "no MARK on the stack at byte %zu", m->pos);
    return SIZE_MAX;
}

static int need(pk *m, size_t n)
{
    if (m->len - m->pos < n)
        return perr(m, "truncated pickle (needs %zu bytes at byte %zu)", n, m->pos);
    return 0;
}

static int append_items(pk *m, pk_val *c, pk_val **items, size_t n)
{
    if (n == 0) /* APPENDS/SETITEMS right after MARK: c->v may still be NULL */
        return 0;
    if (c->n + n > c->cap) {
        size_t nc = VD_MAX(c->cap * 2, c->n + n);
        nc = VD_MAX(nc, (size_t)8);
        pk_val **v = arena_alloc(m, nc * sizeof(*v));
        if (!v)
            return nomem(m);
        if (c->n)
            memcpy(v, c->v, c->n * sizeof(*v));
        c->v = v;
        c->cap = nc;
    }
    memcpy(c->v + c->n, items, n * sizeof(*items));
    c->n += n;
    return 0;
}

static pk_val *make_tuple(pk *m, pk_val **items, size_t n)
{
    pk_val *t = new_val(m, PK_TUPLE);
    if (!t || (n && append_items(m, t, items, n)))
        return NULL;
    return t;
}

static pk_val *make_str(pk *m, const uint8_t *s, size_t n)
{
    pk_val *v = new_val(m, PK_STR);
    char *c = v ? arena_alloc(m, n + 1) : NULL;
    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = 0;
    v->s = c;
    v->n = n;
    return v;
}

static const struct {
    const char *module, *name;
    pk_global g;
    int dtype;
} allowed[] = {
    { "collections", "OrderedDict", G_ORDERED_DICT, -1 },
    { "torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, -1 },
    /* torch >= 2.3 pickles tensors of the newer dtypes (fp8, uint16..64)
     * as (UntypedStorage, ..., dtype) */
    { "torch._utils", "_rebuild_tensor_v3", G_REBUILD_TENSOR_V3, -1 },
    { "torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, -1 },
    { "torch.storage", "UntypedStorage", G_STORAGE, -1 },
    { "torch", "UntypedStorage", G_STORAGE, -1 },
    { "torch", "FloatStorage", G_STORAGE, VT_F32 },
    { "torch", "HalfStorage", G_STORAGE, VT_F16 },
    { "torch", "BFloat16Storage", G_STORAGE, VT_BF16 },
    { "torch", "DoubleStorage", G_STORAGE, VT_F64 },
    { "torch", "LongStorage", G_STORAGE, VT_I64 },
    { "torch", "IntStorage", G_STORAGE, VT_I32 },
    { "torch", "ShortStorage", G_STORAGE, VT_I16 },
    { "torch", "CharStorage", G_STORAGE, VT_I8 },
    { "torch", "ByteStorage", G_STORAGE, VT_U8 },
    { "torch", "BoolStorage", G_STORAGE, VT_BOOL },
    /* torch >= 2.1 names fp8 storages after their dtype */
    { "torch", "Float8_e4m3fnStorage", G_STORAGE, VT_F8_E4M3 },
    { "torch", "Float8_e5m2Storage", G_STORAGE, VT_F8_E5M2 },
    { "torch", "float32", G_DTYPE, VT_F32 },
    { "torch", "float16", G_DTYPE, VT_F16 },
    { "torch", "bfloat16", G_DTYPE, VT_BF16 },
    { "torch", "float64", G_DTYPE, VT_F64 },
    { "torch", "int64", G_DTYPE, VT_I64 },
    { "torch", "int32", G_DTYPE, VT_I32 },
    { "torch", "int16", G_DTYPE, VT_I16 },
    { "torch", "int8", G_DTYPE, VT_I8 },
    { "torch", "uint8", G_DTYPE, VT_U8 },
    { "torch", "bool", G_DTYPE, VT_BOOL },
    { "torch", "float8_e4m3fn", G_DTYPE, VT_F8_E4M3 },
    { "torch", "float8_e5m2", G_DTYPE, VT_F8_E5M2 },
};

/* GLOBAL: "module\nname\n" */
static int op_global(pk *m)
{
    const uint8_t *s = m->p + m->pos, *end = m->p + m->len;
    const uint8_t *nl1 = memchr(s, '\n', (size_t)(end - s));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2)
        return perr(m, "truncated GLOBAL at byte %zu", m->pos);
    size_t ml = (size_t)(nl1 - s), nl = (size_t)(nl2 - nl1 - 1);
    m->pos = (size_t)(nl2 + 1 - m->p);
    for (size_t i = 0; i < VD_ARRAY_SIZE(allowed); i++) {
        if (strlen(allowed[i].module) == ml && !memcmp(allowed[i].module, s, ml)
            && strlen(allowed[i].name) == nl && !memcmp(allowed[i].name, nl1 + 1, nl)) {
            pk_val *v = new_val(m, PK_GLOBAL);
            if (v) {
                v->i = allowed[i].g;
                v->dtype = allowed[i].dtype;
            }
            return push(m, v);
        }
    }
    /* print only printable bytes of the offending name */
    char shown[160];
    size_t o = 0;
    for (const uint8_t *q = s; q < nl2 && o + 1 < sizeof(shown); q++)
        shown[o++] = q == nl1 ? '.' : (*q >= 0x20 && *q < 0x7f ? (char)*q : '?');
    shown[o] = 0;
    return vd_err(m->lg, VDIT_ERR_UNSUPPORTED,
                  "%s: data.pkl: global '%s' is not allowed (only tensor rebuilding is; "
                  "nothing in the checkpoint is executed)",
                  m->label, shown);
}

static int get_int(const pk_val *v, int64_t *out)
{
    if (!v || (v->type != PK_INT && v->type != PK_BOOL))
        return -1;
    *out = v->i;
    return 0;
}

/* ('storage', storage_type, key, location, numel) */
static int op_persid(pk *m)
{
    pk_val *t = pop(m);
    if (!t)
        return VDIT_ERR_FORMAT;
    if (t->type != PK_TUPLE || t->n != 5 || t->v[0]->type != PK_STR || strcmp(t->v[0]->s, "storage")
        || t->v[1]->type != PK_GLOBAL || t->v[1]->i != G_STORAGE || t->v[2]->type != PK_STR
        || t->v[4]->type != PK_INT || t->v[4]->i < 0)
        return perr(m, "unsupported persistent id at byte %zu (only ('storage', type, key, "
                       "location, numel) is)", m->pos);
    pk_val *s = new_val(m, PK_STORAGE);
    if (!s)
        return nomem(m);
    s->dtype = t->v[1]->dtype;
    s->s = t->v[2]->s;
    s->numel = t->v[4]->i;
    return push(m, s);
}

static int int_tuple(const pk_val *v, int64_t *out, int *n)
{
    if (!v || v->type != PK_TUPLE || v->n > VT_MAX_DIMS)
        return -1;
    for (size_t i = 0; i < v->n; i++)
        if (get_int(v->v[i], &out[i]))
            return -1;
    *n = (int)v->n;
    return 0;
}

static int op_reduce(pk *m)
{
    pk_val *args = pop(m), *fn = args ? pop(m) : NULL;
    if (!fn)
        return VDIT_ERR_FORMAT;
    if (fn->type != PK_GLOBAL || args->type != PK_TUPLE)
        return perr(m, "REDUCE at byte %zu calls something that is not an allowed global",
                    m->pos);
    switch ((pk_global)fn->i) {
    case G_ORDERED_DICT:
        if (args->n)
            return perr(m, "OrderedDict with arguments at byte %zu", m->pos);
        return push(m, new_val(m, PK_DICT));
    case G_REBUILD_TENSOR_V2:
    case G_REBUILD_TENSOR_V3: {
        /* v2: (storage, storage_offset, size, stride, requires_grad,
         *      backward_hooks[, metadata]): the storage's class is the dtype;
         * v3: (untyped storage, ..., backward_hooks, dtype[, metadata]) */
        int v3 = fn->i == G_REBUILD_TENSOR_V3;
        const char *which = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
        pk_val *t = new_val(m, PK_TENSOR);
        if (!t)
            return nomem(m);
        int ns = 0, nt = 0;
        if (args->n < (v3 ? 7u : 4u) || args->v[0]->type != PK_STORAGE
            || get_int(args->v[1], &t->offset) || int_tuple(args->v[2], t->shape, &ns)
            || int_tuple(args->v[3], t->stride, &nt) || ns != nt
            || (v3 && (args->v[6]->type != PK_GLOBAL || args->v[6]->i != G_DTYPE)))
            return perr(m, "bad %s arguments at byte %zu (or more than %d dimensions)", which,
                        m->pos, VT_MAX_DIMS);
        t->storage = args->v[0];
        t->dtype = v3 ? args->v[6]->dtype : t->storage->dtype;
        if (t->dtype < 0)
            return perr(m, "%s at byte %zu: an untyped storage without a dtype", which, m->pos);
        t->ndim = ns;
        return push(m, t);
    }
    case G_REBUILD_PARAMETER:
        /* (data, requires_grad, backward_hooks): the parameter is its data */
        if (args->n < 1 || args->v[0]->type != PK_TENSOR)
            return perr(m, "bad _rebuild_parameter arguments at byte %zu", m->pos);
        return push(m, args->v[0]);
    default:
        return perr(m, "REDUCE at byte %zu calls a class that cannot be called here", m->pos);
    }
}

static const char *op_name(uint8_t op)
{
    switch (op) {
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'F': return "FLOAT";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 'P': return "PERSID";
    case 'p': return "PUT";
    case 'g': return "GET";
    case 'l': return "LIST";
    case 'd': return "DICT";
    case '2': return "DUP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 0x8b: return "LONG4";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown";
    }
}

static int memo_put(pk *m, uint64_t idx)
{
    if (!m->sp || m->stack[m->sp - 1] == &m->mark)
        return perr(m, "PUT with an empty stack at byte %zu", m->pos);
    if (idx >= PTH_MAX_MEMO)
        return perr(m, "memo index %llu too large", (unsigned long long)idx);
    if (idx >= m->memo_cap) {
        size_t nc = VD_MAX(m->memo_cap * 2, (size_t)idx + 1);
        nc = VD_MAX(nc, (size_t)64);
        pk_val **mm = realloc(m->memo, nc * sizeof(*mm));
        if (!mm)
            return nomem(m);
        memset(mm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof(*mm));
        m->memo = mm;
        m->memo_cap = nc;
    }
    m->memo[idx] = m->stack[m->sp - 1];
    return 0;
}

static int memo_get(pk *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return perr(m, "GET of unset memo entry %llu at byte %zu", (unsigned long long)idx, m->pos);
    return push(m, m->memo[idx]);
}

/* Runs the restricted machine; *root receives the value left by STOP. */
static int run(pk *m, pk_val **root)
{
    size_t n_memoized = 0;
    for (;;) {
        if (need(m, 1))
            return VDIT_ERR_FORMAT;
        size_t at = m->pos;
        uint8_t op = m->p[m->pos++];
        int r = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(m, 1))
                return VDIT_ERR_FORMAT;
            if (m->p[m->pos] > 5)
                return perr(m, "pickle protocol %d", m->p[m->pos]);
            m->pos++;
            break;
        case 0x95: /* FRAME: a length hint only */
            if (need(m, 8))
                return VDIT_ERR_FORMAT;
            m->pos += 8;
            break;
        case '.': { /* STOP */
            pk_val *v = pop(m);
            if (!v)
                return VDIT_ERR_FORMAT;
            *root = v;
            return 0;
        }
        case '(': r = push(m, &m->mark); break;
        case 'N': r = push(m, &m->none); break;
        case 0x88: r = push(m, &m->true_v); break;
        case 0x89: r = push(m, &m->false_v); break;
        case '}': r = push(m, new_val(m, PK_DICT)); break;
        case ']': r = push(m, new_val(m, PK_LIST)); break;
        case ')': r = push(m, new_val(m, PK_TUPLE)); break;
        case 'K': case 'M': case 'J': {
            size_t n = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            if (need(m, n))
                return VDIT_ERR_FORMAT;
            const uint8_t *q = m->p + m->pos;
            int64_t v = op == 'K' ? q[0] : op == 'M' ? rd16(q) : (int64_t)(int32_t)rd32(q);
            m->pos += n;
            pk_val *x = new_val(m, PK_INT);
            if (x)
                x->i = v;
            r = push(m, x);
            break;
        }
        case 0x8a: { /* LONG1: little-endian two's complement, n bytes */
            if (need(m, 1))
                return VDIT_ERR_FORMAT;
            size_t n = m->p[m->pos++];
            if (n > 8)
                return perr(m, "integer of %zu bytes at byte %zu", n, at);
            if (need(m, n))
                return VDIT_ERR_FORMAT;
            uint64_t u = 0;
            for (size_t i = 0; i < n; i++)
                u |= (uint64_t)m->p[m->pos + i] << (8 * i);
            if (n && n < 8 && (m->p[m->pos + n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
            m->pos += n;
            pk_val *x = new_val(m, PK_INT);
            if (x)
                memcpy(&x->i, &u, 8);
            r = push(m, x);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if (need(m, 8))
                return VDIT_ERR_FORMAT;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | m->p[m->pos + i];
            m->pos += 8;
            pk_val *x = new_val(m, PK_FLOAT);
            if (x)
                memcpy(&x->f, &u, 8);
            r = push(m, x);
            break;
        }
        case 'X': case 0x8c: { /* BINUNICODE, SHORT_BINUNICODE */
            size_t hn = op == 'X' ? 4 : 1;
            if (need(m, hn))
                return VDIT_ERR_FORMAT;
            size_t n = op == 'X' ? rd32(m->p + m->pos) : m->p[m->pos];
            m->pos += hn;
            if (need(m, n))
                return VDIT_ERR_FORMAT;
            r = push(m, make_str(m, m->p + m->pos, n));
            m->pos += n;
            break;
        }
        case 'c': r = op_global(m); break;
        case 'Q': r = op_persid(m); break;
        case 'R': r = op_reduce(m); break;
        case 't': case 'e': case 'u': { /* TUPLE, APPENDS, SETITEMS */
            size_t mk = find_mark(m);
            if (mk == SIZE_MAX)
                return VDIT_ERR_FORMAT;
            pk_val **items = m->stack + mk + 1;
            size_t n = m->sp - mk - 1;
            if (op == 't') {
                pk_val *t = make_tuple(m, items, n);
                m->sp = mk;
                r = push(m, t);
                break;
            }
            if (mk == 0)
                return perr(m, "%s without a target at byte %zu", op == 'e' ? "APPENDS" : "SETITEMS", at);
            pk_val *c = m->stack[mk - 1];
            if (op == 'e' ? c->type != PK_LIST : c->type != PK_DICT || (n & 1))
                return perr(m, "%s on a wrong target at byte %zu", op == 'e' ? "APPENDS" : "SETITEMS", at);
            r = append_items(m, c, items, n);
            m->sp = mk;
            break;
        }
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            size_t n = (size_t)(op - 0x84);
            if (m->sp < n)
                return perr(m, "stack underflow at byte %zu", at);
            for (size_t i = m->sp - n; i < m->sp; i++)
                if (m->stack[i] == &m->mark)
                    return perr(m, "MARK inside TUPLE%zu at byte %zu", n, at);
            pk_val *t = make_tuple(m, m->stack + m->sp - n, n);
            m->sp -= n;
            r = push(m, t);
            break;
        }
        case 'a': case 's': { /* APPEND, SETITEM */
            size_t n = op == 'a' ? 1 : 2;
            if (m->sp < n + 1)
                return perr(m, "stack underflow at byte %zu", at);
            for (size_t i = m->sp - n - 1; i < m->sp; i++)
                if (m->stack[i] == &m->mark)
                    return perr(m, "MARK under %s at byte %zu", op == 'a' ? "APPEND" : "SETITEM", at);
            pk_val *c = m->stack[m->sp - n - 1];
            if (c->type != (op == 'a' ? PK_LIST : PK_DICT))
                return perr(m, "%s on a wrong target at byte %zu", op == 'a' ? "APPEND" : "SETITEM", at);
            r = append_items(m, c, m->stack + m->sp - n, n);
            m->sp -= n;
            break;
        }
        case 'b': { /* BUILD: only the attribute dict of a dict (_metadata) */
            pk_val *state = pop(m);
            if (!state)
                return VDIT_ERR_FORMAT;
            if (!m->sp || m->stack[m->sp - 1]->type != PK_DICT
                || (state->type != PK_DICT && state->type != PK_NONE))
                return perr(m, "BUILD at byte %zu on something other than a dict", at);
            break; /* the state (module metadata) carries no tensors */
        }
        case 'q': case 'r': { /* BINPUT, LONG_BINPUT */
            size_t n = op == 'q' ? 1 : 4;
            if (need(m, n))
                return VDIT_ERR_FORMAT;
            uint64_t idx = op == 'q' ? m->p[m->pos] : rd32(m->p + m->pos);
            m->pos += n;
            r = memo_put(m, idx);
            break;
        }
        case 0x94: /* MEMOIZE */
            r = memo_put(m, n_memoized++);
            break;
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            size_t n = op == 'h' ? 1 : 4;
            if (need(m, n))
                return VDIT_ERR_FORMAT;
            uint64_t idx = op == 'h' ? m->p[m->pos] : rd32(m->p + m->pos);
            m->pos += n;
            r = memo_get(m, idx);
            break;
        }
        default:
            return perr(m, "opcode 0x%02x (%s) at byte %zu is not allowed in a checkpoint", op,
                        op_name(op), at);
        }
        if (r)
            return r;
    }
}

/* ---- tensors ------------------------------------------------------------ */

typedef struct build {
    vd_ckpt *c;
    const uint8_t *buf;
    const zip *z;
    const char *prefix;
    size_t pl;
    const char *label;
    vd_log *lg;
    /* A pickle can reference one dict or tensor many times (memo), so a tiny
     * file could make the walk below exponential or copy one strided tensor
     * endlessly: both are bounded by what an honest file of this size holds. */
    size_t steps_left;
    uint64_t copy_left;
} build;

static int add_tensor(build *b, const char *name, const pk_val *t)
{
    const pk_val *s = t->storage;
    size_t esz = vt_dtype_size((vt_dtype)t->dtype);
    /* an untyped storage counts bytes; the tensor reads it as its dtype */
    int64_t snumel = s->dtype < 0 ? s->numel / (int64_t)esz : s->numel;
    char key[256];
    if (strlen(s->s) > 200 || strchr(s->s, '/'))
        return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': bad storage key", b->label, name);
    snprintf(key, sizeof(key), "data/%s", s->s);
    const zentry *e = zip_find(b->z, b->prefix, b->pl, key);
    if (!e)
        return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': storage '%s' is not in the archive",
                      b->label, name, s->s);
    uint64_t sbytes;
    if (__builtin_mul_overflow((uint64_t)snumel, (uint64_t)esz, &sbytes) || sbytes > e->size)
        return vd_err(b->lg, VDIT_ERR_FORMAT,
                      "%s: tensor '%s': storage '%s' holds %llu bytes, %lld %s elements need more",
                      b->label, name, s->s, (unsigned long long)e->size, (long long)snumel,
                      vt_dtype_name((vt_dtype)t->dtype));
    /* every element index offset + sum(i_d * stride_d) must stay in the storage */
    int64_t nel = 1;
    uint64_t last = (uint64_t)t->offset;
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = t->ndim; d-- > 0;) {
        if (t->shape[d] < 0 || t->stride[d] < 0)
            return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': negative size or stride",
                          b->label, name);
        if (__builtin_mul_overflow(nel, t->shape[d], &nel))
            return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': size overflows", b->label, name);
        if (t->shape[d] != 1 && t->stride[d] != expect)
            contiguous = 0;
        if (__builtin_mul_overflow(expect, t->shape[d], &expect))
            expect = INT64_MAX;
    }
    if (t->offset < 0)
        return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': negative storage offset", b->label,
                      name);
    if (nel) {
        for (int d = 0; d < t->ndim; d++) {
            uint64_t span;
            if (__builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d], &span)
                || __builtin_add_overflow(last, span, &last))
                return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor '%s': strides overflow",
                              b->label, name);
        }
        if (last >= (uint64_t)snumel)
            return vd_err(b->lg, VDIT_ERR_FORMAT,
                          "%s: tensor '%s': offset %lld with its sizes and strides reaches element "
                          "%llu of storage '%s' (%lld elements)",
                          b->label, name, (long long)t->offset, (unsigned long long)last, s->s,
                          (long long)snumel);
    }
    const uint8_t *base = b->buf + e->offset;
    /* an empty tensor reads nothing: its offset is not checked, so not used */
    const uint8_t *p = nel ? base + (size_t)t->offset * esz : base;
    void *owned = NULL;
    if (nel && (!contiguous || (uintptr_t)p % esz)) {
        /* gather into a contiguous copy (strided views, odd alignment) */
        uint64_t cb;
        if (__builtin_mul_overflow((uint64_t)nel, (uint64_t)esz, &cb) || cb > b->copy_left)
            return vd_err(b->lg, VDIT_ERR_FORMAT,
                          "%s: tensor '%s': strided copies would exceed the file's size", b->label,
                          name);
        b->copy_left -= cb;
        uint8_t *o = vd_malloc((size_t)nel * esz);
        if (!o)
            return vd_err(b->lg, VDIT_ERR_NOMEM, "%s: tensor '%s': out of memory", b->label, name);
        int64_t idx[VT_MAX_DIMS] = { 0 };
        for (int64_t k = 0; k < nel; k++) {
            int64_t off = t->offset;
            for (int d = 0; d < t->ndim; d++)
                off += idx[d] * t->stride[d];
            memcpy(o + (size_t)k * esz, base + (size_t)off * esz, esz);
            for (int d = t->ndim; d-- > 0;) {
                if (++idx[d] < t->shape[d])
                    break;
                idx[d] = 0;
            }
        }
        owned = o;
        p = o;
    }
    return vd_ckpt_add(b->c, name, (vt_dtype)t->dtype, t->ndim, t->shape, p, owned, b->label,
                       b->lg);
}

/* Registers every tensor under `v` (a dict; nested dicts give '.'-joined
 * names). Values that are neither tensors nor dicts (epoch numbers,
 * strings, lists, optimizer settings) are skipped. */
static int walk(build *b, const pk_val *v, char *name, size_t nl, int depth)
{
    if (depth > PTH_MAX_DEPTH)
        return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: dictionaries nested too deeply", b->label);
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const pk_val *k = v->v[i], *x = v->v[i + 1];
        if (x->type != PK_TENSOR && x->type != PK_DICT)
            continue;
        if (!b->steps_left--)
            return vd_err(b->lg, VDIT_ERR_FORMAT,
                          "%s: the dictionaries reference each other too often", b->label);
        char kb[32];
        const char *ks;
        size_t kl;
        if (k->type == PK_STR) {
            ks = k->s;
            kl = strlen(k->s);
        } else if (k->type == PK_INT) {
            snprintf(kb, sizeof(kb), "%lld", (long long)k->i);
            ks = kb;
            kl = strlen(kb);
        } else {
            return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: a dictionary key under '%s' is not a string",
                          b->label, nl ? name : "(root)");
        }
        size_t need_len = nl + (nl ? 1 : 0) + kl;
        if (need_len >= 1024)
            return vd_err(b->lg, VDIT_ERR_FORMAT, "%s: tensor name under '%.100s' too long",
                          b->label, name);
        size_t o = nl;
        if (nl)
            name[o++] = '.';
        memcpy(name + o, ks, kl);
        name[o + kl] = 0;
        int r = x->type == PK_TENSOR ? add_tensor(b, name, x) : walk(b, x, name, o + kl, depth + 1);
        name[nl] = 0;
        if (r)
            return r;
    }
    return 0;
}

int vd_ckpt_add_pth_mem(vd_ckpt *c, const uint8_t *buf, size_t len, const char *label, vd_log *lg)
{
    zip z;
    pk m;
    memset(&m, 0, sizeof(m));
    size_t n0 = vd_ckpt_count(c);
    int ret = zip_open(&z, buf, len, label, lg);
    if (ret)
        goto done;
    /* the archive's one "<prefix>/data.pkl" names the prefix of the rest */
    const zentry *pkl = NULL;
    for (size_t i = 0; i < z.n; i++) {
        const zentry *e = &z.e[i];
        if (e->name_len >= 8 && !memcmp(e->name + e->name_len - 8, "data.pkl", 8)
            && (e->name_len == 8 || e->name[e->name_len - 9] == '/')) {
            if (pkl) {
                ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: several data.pkl entries", label);
                goto done;
            }
            pkl = e;
        }
    }
    if (!pkl) {
        ret = vd_err(lg, VDIT_ERR_FORMAT,
                     "%s: no data.pkl in the zip archive: not a PyTorch checkpoint", label);
        goto done;
    }
    size_t pl = pkl->name_len - 8;
    const zentry *bo = zip_find(&z, pkl->name, pl, "byteorder");
    if (bo && !(bo->size == 6 && !memcmp(buf + bo->offset, "little", 6))) {
        ret = vd_err(lg, VDIT_ERR_UNSUPPORTED, "%s: big-endian checkpoint", label);
        goto done;
    }
    m.p = buf + pkl->offset;
    m.len = (size_t)pkl->size;
    m.label = label;
    m.lg = lg;
    m.mark.type = PK_MARK;
    m.none.type = PK_NONE;
    m.true_v.type = PK_BOOL;
    m.true_v.i = 1;
    m.false_v.type = PK_BOOL;
    pk_val *root = NULL;
    ret = run(&m, &root);
    if (ret)
        goto done;
    if (root->type == PK_TENSOR) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: holds a single tensor, not a state dict", label);
        goto done;
    }
    if (root->type != PK_DICT) {
        ret = vd_err(lg, VDIT_ERR_FORMAT, "%s: the pickled object is not a dictionary of tensors",
                     label);
        goto done;
    }
    build b = { c, buf, &z, pkl->name, pl, label, lg, m.len + 64, 2 * (uint64_t)len + (64 << 20) };
    char name[1024];
    name[0] = 0;
    ret = walk(&b, root, name, 0, 0);
done:
    if (ret)
        vd_ckpt_truncate(c, n0);
    while (m.blocks) {
        arena_blk *n = m.blocks->next;
        free(m.blocks);
        m.blocks = n;
    }
    free(m.stack);
    free(m.memo);
    free(z.e);
    return ret;
}

int vd_ckpt_add_pth(vd_ckpt *c, const char *path, vd_log *lg)
{
    if (!c || !path)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_ckpt_add_pth: no set or path");
    const void *data;
    size_t len;
    int ret = vd_ckpt_map_file(c, path, lg, &data, &len);
    return ret ? ret : vd_ckpt_add_pth_mem(c, data, len, path, lg);
}
