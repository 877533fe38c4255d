/* oneDNN backend: linear (matmul with fused bias + activation), gemm
 * (dnnl_sgemm) and convolution. The only file that includes dnnl.h.
 *
 * Primitives are built once per shape and kept in the vk_ctx's state (a
 * small cache, evicting the oldest). Convolution weights are reordered into
 * the layout a primitive wants when the layer is detached at load and kept
 * in the layer's prep; primitives are then asked for that layout.
 * Anything oneDNN refuses falls back to the reference kernel, so results are
 * always produced. Threads: oneDNN's OpenMP regions use the calling thread's
 * omp_get_max_threads(), which we set to vk_ctx->n_threads for each call
 * and restore after it (a per-thread setting, no process-wide state; see the
 * entry points at the end). */
#include <dnnl.h>
#include <omp.h>
#include <pthread.h>

#include "../impl.h"
#include "onednn.h"

#define CACHE_SIZE 512 /* the VAE alone has ~200 (layers x row bands x accumulate or not) */
#define KEY_LEN 16

typedef struct prim {
    int used;
    int64_t key[KEY_LEN];
    uint64_t stamp;
    dnnl_primitive_t p;
    /* convolution: chosen layouts and reorders to and from plain */
    dnnl_memory_desc_t src_md, wei_md, dst_md, src_plain, dst_plain;
    dnnl_primitive_t src_re, dst_re;
} prim;

typedef struct dnnl_state {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    uint64_t clock;
    int warned;
    prim cache[CACHE_SIZE];
} dnnl_state;

static void prim_clear(prim *e)
{
    if (e->p)
        dnnl_primitive_destroy(e->p);
    if (e->src_re)
        dnnl_primitive_destroy(e->src_re);
    if (e->dst_re)
        dnnl_primitive_destroy(e->dst_re);
    memset(e, 0, sizeof(*e));
}

void vk_dnnl_free(void *p)
{
    dnnl_state *s = p;
    if (!s)
        return;
    for (int i = 0; i < CACHE_SIZE; i++)
        prim_clear(&s->cache[i]);
    if (s->strm)
        dnnl_stream_destroy(s->strm);
    if (s->eng)
        dnnl_engine_destroy(s->eng);
    vd_free(s);
}

/* The context's oneDNN state, made on first use. Also sets this thread's
 * OpenMP thread count: oneDNN sizes its work partitioning when a primitive
 * is created, and a primitive must run with the count it was made for. */
/* VDIT_CPU below the CPU's level caps oneDNN too, so that a benchmark or test
 * at a lower level measures what such a CPU would run. Process-wide, as the
 * variable is, and set before the first primitive (oneDNN reads it once). */
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void cap_isa(void)
{
    static const dnnl_cpu_isa_t cap[VK_ISA_COUNT] = {
        dnnl_cpu_isa_sse41, dnnl_cpu_isa_avx2, dnnl_cpu_isa_avx512_core,
        dnnl_cpu_isa_avx512_core_bf16,
    };
    vk_isa d = vk_isa_default();
    if (d < vk_isa_cpu())
        dnnl_set_max_cpu_isa(cap[d]);
}

static dnnl_state *state(vk_ctx *c)
{
    omp_set_num_threads(c->n_threads);
    if (c->be_state)
        return c->be_state;
    pthread_once(&isa_once, cap_isa);
    dnnl_state *s = vd_calloc(sizeof(*s));
    if (!s)
        return NULL;
    if (dnnl_engine_create(&s->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->strm, s->eng, dnnl_stream_default_flags) != dnnl_success) {
        vk_dnnl_free(s);
        return NULL;
    }
    c->be_state = s;
    return s;
}

static prim *lookup(dnnl_state *s, const int64_t *key)
{
    for (int i = 0; i < CACHE_SIZE; i++)
        if (s->cache[i].used && !memcmp(s->cache[i].key, key, sizeof(s->cache[i].key))) {
            s->cache[i].stamp = ++s->clock;
            return &s->cache[i];
        }
    return NULL;
}

/* A free slot, evicting the least recently used primitive. */
static prim *slot(dnnl_state *s, const int64_t *key)
{
    prim *e = &s->cache[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (!s->cache[i].used) {
            e = &s->cache[i];
            break;
        }
        if (s->cache[i].stamp < e->stamp)
            e = &s->cache[i];
    }
    prim_clear(e);
    memcpy(e->key, key, sizeof(e->key));
    e->stamp = ++s->clock;
    return e;
}

static void warn_fallback(vk_ctx *c, dnnl_state *s, const char *what)
{
    if (s && s->warned)
        return;
    if (s)
        s->warned = 1;
    vd_logf(c->log, VDIT_LOG_WARNING, "oneDNN refused %s; using the reference kernel", what);
}

static dnnl_status_t exec(dnnl_state *s, vk_ctx *c, dnnl_primitive_t p, int n, const int *args,
                          const dnnl_memory_desc_t *const *mds, void *const *ptrs)
{
    dnnl_exec_arg_t a[8];
    dnnl_status_t st = dnnl_success;
    int made = 0;
    for (int i = 0; i < n && st == dnnl_success; i++, made++) {
        a[i].arg = args[i];
        st = dnnl_memory_create(&a[i].memory, mds[i], s->eng, ptrs[i]);
        if (st != dnnl_success)
            break;
    }
    if (st == dnnl_success) {
        omp_set_num_threads(c->n_threads);
        st = dnnl_primitive_execute(p, s->strm, n, a);
        if (st == dnnl_success)
            st = dnnl_stream_wait(s->strm);
    }
    for (int i = 0; i < made && i < n; i++)
        if (a[i].memory)
            dnnl_memory_destroy(a[i].memory);
    return st;
}

static dnnl_primitive_t make_prim(const void *desc, const_dnnl_primitive_attr_t attr,
                                  dnnl_engine_t eng, dnnl_primitive_desc_t *pd_out)
{
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, desc, attr, eng, NULL) != dnnl_success)
        return NULL;
    dnnl_primitive_t p = NULL;
    if (dnnl_primitive_create(&p, pd) != dnnl_success)
        p = NULL;
    if (pd_out && p)
        *pd_out = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    return p;
}

static dnnl_alg_kind_t act_alg(vk_act act, float *alpha)
{
    *alpha = 0.0f;
    switch (act) {
    case VK_ACT_GELU_TANH:
        return dnnl_eltwise_gelu_tanh;
    case VK_ACT_GELU_ERF:
        return dnnl_eltwise_gelu_erf;
    case VK_ACT_SILU:
        *alpha = 1.0f; /* swish(x) = x * sigmoid(alpha x) */
        return dnnl_eltwise_swish;
    case VK_ACT_RELU:
        return dnnl_eltwise_relu;
    default:
        return dnnl_alg_kind_undef;
    }
}

/* Matmul y[m, n] (row stride ldy) = act(x[m, k] w[n, k]ᵀ + b), w plain, x
 * and w both f32 or both bf16 (bf16: fp32 accumulation and output). */
/* A linear layer's plain weights, W [n_out, n_in], read as K x N. */
static int wei_plain_md(dnnl_memory_desc_t *md, int64_t k, int64_t n, dnnl_data_type_t dt)
{
    dnnl_dims_t wd = { k, n }, ws = { 1, k };
    return dnnl_memory_desc_init_by_strides(md, 2, wd, dt, ws) == dnnl_success ? 0 : -1;
}

/* packed: the weights in that layout (a prepared bf16 layer's), else plain */
static prim *matmul_prim(dnnl_state *s, int64_t m, int64_t k, int64_t n, int64_t ldy, int bias,
                         vk_act act, int bf16, const dnnl_memory_desc_t *packed, int ybf)
{
    int64_t key[KEY_LEN] = { 1, m, k, n, ldy, bias, act, bf16, packed != NULL, ybf };
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    prim *e = lookup(s, key);
    if (e)
        return e;
    dnnl_memory_desc_t src, wei, dst, bmd;
    dnnl_dims_t sd = { m, k }, dd = { m, n }, bd = { 1, n };
    dnnl_dims_t ss = { k, 1 }, ds = { ldy, 1 }, bs = { n, 1 };
    if (packed)
        wei = *packed;
    if (dnnl_memory_desc_init_by_strides(&src, 2, sd, dt, ss) ||
        (!packed && wei_plain_md(&wei, k, n, dt)) ||
        dnnl_memory_desc_init_by_strides(&dst, 2, dd, ybf ? dnnl_bf16 : dnnl_f32, ds) ||
        dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dnnl_f32, bs))
        return NULL;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &src, &wei, bias ? &bmd : NULL, &dst))
        return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    float alpha;
    dnnl_alg_kind_t alg = act_alg(act, &alpha);
    if (alg != dnnl_alg_kind_undef) {
        if (dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&po) ||
            dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, 0.0f) ||
            dnnl_primitive_attr_set_post_ops(attr, po)) {
            if (po)
                dnnl_post_ops_destroy(po);
            if (attr)
                dnnl_primitive_attr_destroy(attr);
            return NULL;
        }
    }
    dnnl_primitive_t p = make_prim(&md, attr, s->eng, NULL);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (!p)
        return NULL;
    e = slot(s, key);
    e->used = 1;
    e->p = p;
    e->src_md = src;
    e->wei_md = wei;
    e->dst_md = dst;
    e->src_plain = bmd; /* the bias descriptor */
    return e;
}

static int run_matmul(dnnl_state *s, vk_ctx *c, prim *e, const void *x, const void *w,
                      const float *b, float *y)
{
    int args[4] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS };
    const dnnl_memory_desc_t *mds[4] = { &e->src_md, &e->wei_md, &e->dst_md, &e->src_plain };
    void *ptrs[4] = { (void *)x, (void *)w, y, (void *)b };
    return exec(s, c, e->p, b ? 4 : 3, args, mds, ptrs) == dnnl_success ? 0 : -1;
}

/* Rows of W converted (widened to f32, or to bf16) per call. oneDNN's GEMM packs its B operand
 * anyway, so the chunk needs no cache residency; what matters is a wide N
 * per matmul (narrow chunks cost 10-20% at K = 8960) and few thread
 * synchronisations. 32 MiB chunks measured within noise of f32 weights at
 * the DiT shapes (vdit bench kernels prints the ratio). */
#define CHUNK_M 2048 /* rows per product on a converted chunk of weights */

static int64_t chunk_rows(int64_t n_in, int64_t n_out)
{
    int64_t r = (32 << 20) / (n_in * 4);
    r = r < 256 ? 256 : r;
    r = (r + 15) / 16 * 16;
    return r > n_out ? n_out : r;
}

/* Owned aligned f32 copy when the stored f32 weights are misaligned; the
 * bf16 form once vk_linear_prepare asked for bf16, and (stored fp32 only,
 * so that no memory is added) a packed fp32 form once it asked for fp32.
 * Packed: in the blocked layout oneDNN's matmul reads (*_md), which it would
 * otherwise make from plain weights on every call: measured 4-5% of a
 * DiT-sized product in bf16 and in fp32. Plain [n_out, n_in] where the
 * matmul wants no other layout (wb_packed 0). */
typedef struct linear_prep {
    float *w;
    uint16_t *wb;
    int wb_packed;
    dnnl_memory_desc_t wb_md;
    float *wf;
    dnnl_memory_desc_t wf_md;
} linear_prep;

static void linear_prep_free(void *p)
{
    linear_prep *lp = p;
    if (lp) {
        vd_free(lp->w);
        vd_free(lp->wb);
        vd_free(lp->wf);
    }
    vd_free(lp);
}

/* Packing many layers at load: one engine, and per distinct shape and type
 * one query of the layout and one reorder primitive (making them JITs code:
 * tens of milliseconds each, seconds for a DiT's 360 layers otherwise). */
#define PACK_SHAPES 16

typedef struct packer {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    uint16_t *scratch; /* plain bf16 of converted weights, reused */
    size_t scratch_n;
    int n;
    struct packer_e {
        int64_t k, n;
        dnnl_data_type_t dt;
        int plain; /* the matmul reads plain weights: no copy */
        dnnl_memory_desc_t want, plain_md;
        dnnl_primitive_t re;
    } e[PACK_SHAPES];
} packer;

static void packer_free(packer *p)
{
    vd_free(p->scratch);
    for (int i = 0; i < p->n; i++)
        if (p->e[i].re)
            dnnl_primitive_destroy(p->e[i].re);
    if (p->strm)
        dnnl_stream_destroy(p->strm);
    if (p->eng)
        dnnl_engine_destroy(p->eng);
    memset(p, 0, sizeof(*p));
}

/* The entry of shape k x n and type dt, made on first use; NULL when oneDNN
 * refuses (the layer stays plain). */
static struct packer_e *pack_entry(packer *p, int64_t k, int64_t n, dnnl_data_type_t dt)
{
    for (int i = 0; i < p->n; i++)
        if (p->e[i].k == k && p->e[i].n == n && p->e[i].dt == dt)
            return &p->e[i];
    if (!p->eng) {
        pthread_once(&isa_once, cap_isa); /* the layout of the level contexts run at */
        if (dnnl_engine_create(&p->eng, dnnl_cpu, 0) != dnnl_success ||
            dnnl_stream_create(&p->strm, p->eng, dnnl_stream_default_flags) != dnnl_success)
            return NULL;
    }
    if (p->n == PACK_SHAPES)
        return NULL;
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t sd = { 256, k }, dd = { 256, n }, wd = { k, n };
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t re = NULL;
    int ok = !dnnl_memory_desc_init_by_tag(&src, 2, sd, dt, dnnl_ab) &&
             !dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab) &&
             !dnnl_memory_desc_init_by_tag(&wei, 2, wd, dt, dnnl_format_tag_any) &&
             !wei_plain_md(&p->e[p->n].plain_md, k, n, dt) &&
             !dnnl_matmul_desc_init(&md, &src, &wei, NULL, &dst) &&
             dnnl_primitive_desc_create(&pd, &md, NULL, p->eng, NULL) == dnnl_success;
    const dnnl_memory_desc_t *want = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)
                                        : NULL;
    int plain = want && dnnl_memory_desc_equal(want, &p->e[p->n].plain_md);
    if (want && !plain)
        ok = dnnl_reorder_primitive_desc_create(&rpd, &p->e[p->n].plain_md, p->eng, want, p->eng,
                                                NULL) == dnnl_success &&
             dnnl_primitive_create(&re, rpd) == dnnl_success;
    if (want && ok) {
        p->e[p->n].k = k;
        p->e[p->n].n = n;
        p->e[p->n].dt = dt;
        p->e[p->n].plain = plain;
        p->e[p->n].want = *want;
        p->e[p->n].re = re;
        re = NULL;
    }
    if (re)
        dnnl_primitive_destroy(re);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return want && ok ? &p->e[p->n++] : NULL;
}

/* Reorders plain weights (type dt) into the layout the matmul asks for (the
 * same for every row count: checked at 1..27280 rows on avx512_core and
 * avx512_core_bf16). NULL when oneDNN wants the plain layout or refuses any
 * step; else the owned packed copy and its descriptor in *md. */
static void *pack_weights(packer *p, const vk_linear *l, const void *plain_w, dnnl_data_type_t dt,
                          int n_threads, dnnl_memory_desc_t *md_out)
{
    struct packer_e *e = pack_entry(p, l->n_in, l->n_out, dt);
    if (!e || e->plain)
        return NULL;
    size_t bytes = dnnl_memory_desc_get_size(&e->want);
    void *packed = bytes ? vd_malloc(bytes) : NULL;
    dnnl_memory_t from = NULL, to = NULL;
    if (!packed)
        return NULL;
    int caller = omp_get_max_threads();
    omp_set_num_threads(n_threads > 0 ? n_threads : 1);
    int ok = dnnl_memory_create(&from, &e->plain_md, p->eng, (void *)plain_w) == dnnl_success &&
             dnnl_memory_create(&to, &e->want, p->eng, packed) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t a[2] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
        ok = dnnl_primitive_execute(e->re, p->strm, 2, a) == dnnl_success &&
             dnnl_stream_wait(p->strm) == dnnl_success;
    }
    omp_set_num_threads(caller);
    if (from)
        dnnl_memory_destroy(from);
    if (to)
        dnnl_memory_destroy(to);
    if (!ok) {
        vd_free(packed);
        return NULL;
    }
    *md_out = e->want;
    return packed;
}

static linear_prep *prep_of(vk_linear *l)
{
    if (!l->prep) {
        if (!(l->prep = vd_calloc(sizeof(linear_prep))))
            return NULL;
        l->prep_free = linear_prep_free;
    }
    return l->prep;
}

/* fp32: stored fp32 weights packed (none added for 16-bit ones, which are
 * widened per call). A layer oneDNN keeps plain gets no copy. */
static int prepare_f32(packer *pk, vk_linear *l, int n_threads)
{
    linear_prep *lp = l->prep;
    if (l->wtype != VT_F32 || (lp && lp->wf))
        return 0;
    const float *plain = lp && lp->w ? lp->w : l->w;
    dnnl_memory_desc_t md;
    float *wf = pack_weights(pk, l, plain, dnnl_f32, n_threads, &md);
    if (!wf)
        return 0; /* plain serves */
    if (!(lp = prep_of(l))) {
        vd_free(wf);
        return VDIT_ERR_NOMEM;
    }
    lp->wf = wf;
    lp->wf_md = md;
    return 0;
}

/* The layer's weights as plain bf16: stored bf16 at an even address in
 * place, else converted into the packer's scratch (reused across layers: a
 * fresh buffer per layer would fault in its pages every time). NULL: no
 * memory. */
static const uint16_t *plain_bf16(packer *pk, const vk_linear *l, int n_threads)
{
    const linear_prep *lp = l->prep;
    const uint8_t *src = lp && lp->w ? (const uint8_t *)lp->w : l->w;
    vt_dtype t = lp && lp->w ? VT_F32 : l->wtype;
    if (t == VT_BF16 && !((uintptr_t)src & 1))
        return (const uint16_t *)src;
    size_t n = (size_t)(l->n_out * l->n_in);
    if (pk->scratch_n < n) {
        vd_free(pk->scratch);
        pk->scratch_n = 0;
        if (!(pk->scratch = vd_malloc(n * 2)))
            return NULL;
        pk->scratch_n = n;
    }
    uint16_t *wb = pk->scratch;
    /* the conversions of the default level's bf16 table, on n_threads */
    vk_ctx tc = { .n_threads = n_threads > 0 ? n_threads : 1,
                  .f = vk_funcs_for(vk_isa_default(), VK_PREC_BF16) };
    if (t == VT_BF16) {
        memcpy(wb, src, n * 2);
    } else if (t == VT_F32 && !((uintptr_t)src & 3)) {
        tc.f->to_bf16(&tc, wb, (const float *)src, n);
    } else {
        /* 16-bit or misaligned: through fp32, 1 MiB at a time */
        size_t chunk = (size_t)1 << 18, es = vt_dtype_size(t);
        float *buf = vd_malloc(chunk * sizeof(float));
        if (!buf)
            return NULL;
        for (size_t i = 0; i < n; i += chunk) {
            size_t k = n - i < chunk ? n - i : chunk;
            tc.f->widen(&tc, buf, src + i * es, t, k);
            tc.f->to_bf16(&tc, wb + i, buf, k);
        }
        vd_free(buf);
    }
    return wb;
}

static int prepare_one(packer *pk, vk_linear *l, vk_prec prec, int n_threads)
{
    if (prec == VK_PREC_F32)
        return prepare_f32(pk, l, n_threads);
    if (prec != VK_PREC_BF16)
        return 0;
    linear_prep *lp = l->prep;
    if (lp && lp->wb)
        return 0;
    const uint16_t *plain = plain_bf16(pk, l, n_threads);
    if (!plain)
        return VDIT_ERR_NOMEM;
    dnnl_memory_desc_t md;
    uint16_t *packed = pack_weights(pk, l, plain, dnnl_bf16, n_threads, &md);
    if (!packed && plain == l->w)
        return 0; /* stored bf16 the matmul reads as it is: used in place */
    if (!(lp = prep_of(l))) {
        vd_free(packed);
        return VDIT_ERR_NOMEM;
    }
    if (packed) {
        lp->wb = packed;
        lp->wb_md = md;
        lp->wb_packed = 1;
        return 0;
    }
    size_t n = (size_t)(l->n_out * l->n_in);
    if (!(lp->wb = vd_malloc(n * 2)))
        return VDIT_ERR_NOMEM;
    memcpy(lp->wb, plain, n * 2);
    return 0;
}

int vk_dnnl_linear_prepare(vk_linear *const *ls, int n, vk_prec prec, int n_threads,
                           void (*done)(void *user, const vk_linear *l), void *user)
{
    packer pk = { 0 };
    int ret = 0;
    for (int i = 0; i < n && !ret; i++)
        if (!(ret = prepare_one(&pk, ls[i], prec, n_threads)) && done)
            done(user, ls[i]);
    packer_free(&pk);
    return ret;
}

int vk_dnnl_linear_prep(vk_linear *l)
{
    if (l->wtype != VT_F32 || !((uintptr_t)l->w & 3))
        return 0;
    linear_prep *lp = vd_calloc(sizeof(*lp));
    size_t n = (size_t)(l->n_out * l->n_in);
    if (!lp || !(lp->w = vd_malloc(n * 4))) {
        vd_free(lp);
        return VDIT_ERR_NOMEM;
    }
    memcpy(lp->w, l->w, n * 4);
    l->prep = lp;
    l->prep_free = linear_prep_free;
    return 0;
}

/* The layer's weights as the matmul reads them whole (fp32: the packed copy,
 * the aligned copy or the stored ones; bf16: the prep's copy or stored bf16
 * at an even address), *packed set when in a blocked layout; NULL when they
 * are converted per call in chunks of rows (chunk_rows). */
static const void *whole_weights(const vk_linear *l, int bf16, const dnnl_memory_desc_t **packed)
{
    const linear_prep *lp = l->prep;
    *packed = NULL;
    if (!bf16) {
        if (lp && lp->wf) {
            *packed = &lp->wf_md;
            return lp->wf;
        }
        return l->wtype == VT_F32 ? (lp && lp->w ? lp->w : l->w) : NULL;
    }
    if (lp && lp->wb) {
        *packed = lp->wb_packed ? &lp->wb_md : NULL;
        return lp->wb;
    }
    return l->wtype == VT_BF16 && !((uintptr_t)l->w & 1) ? l->w : NULL;
}

/* Scratch bytes for the converted chunk of a layer without whole weights;
 * bf16 from 16-bit weights goes through an fp32 one. */
static size_t chunk_bytes(const vk_linear *l, int bf16, size_t *wchunk)
{
    const dnnl_memory_desc_t *packed;
    if (whole_weights(l, bf16, &packed)) {
        *wchunk = 0;
        return 0;
    }
    int64_t rows = chunk_rows(l->n_in, l->n_out);
    *wchunk = ((size_t)(rows * l->n_in) * (bf16 ? 2 : 4) + 63) / 64 * 64;
    return *wchunk + (bf16 && l->wtype != VT_F32 ? (size_t)(rows * l->n_in) * 4 : 0);
}

/* y (fp32, or bf16 with ybf) = act(xin Wᵀ + b), xin already of the
 * operands' type; wmem: chunk_bytes of scratch. 0, or -1 when oneDNN
 * refused. */
static int linear_core(vk_ctx *c, dnnl_state *s, const vk_linear *l, const void *xin, int64_t m,
                       void *y, int ybf, vk_act act, int bf16, uint8_t *wmem)
{
    int64_t ni = l->n_in, no = l->n_out;
    int bias = l->bias != NULL;
    size_t ys = ybf ? 2 : 4, xs = bf16 ? 2 : 4, wchunk;
    const dnnl_memory_desc_t *packed;
    const void *whole = whole_weights(l, bf16, &packed);
    if (whole) {
        prim *e = matmul_prim(s, m, ni, no, no, bias, act, bf16, packed, ybf);
        return !e || run_matmul(s, c, e, xin, whole, l->bias, y) ? -1 : 0;
    }
    chunk_bytes(l, bf16, &wchunk);
    const linear_prep *lp = l->prep;
    const float *wf32 = l->wtype == VT_F32 ? (lp && lp->w ? lp->w : l->w) : NULL;
    int64_t rows = chunk_rows(ni, no);
    void *wc = wmem;
    for (int64_t n0 = 0; n0 < no; n0 += rows) {
        int64_t nr = VD_MIN(rows, no - n0);
        size_t n = (size_t)(nr * ni);
        const uint8_t *src = (const uint8_t *)l->w + (size_t)(n0 * ni) * vt_dtype_size(l->wtype);
        if (!bf16) {
            c->f->widen(c, wc, src, l->wtype, n);
        } else if (wf32) {
            c->f->to_bf16(c, wc, wf32 + n0 * ni, n);
        } else { /* f16, or bf16 at an odd address */
            float *tmp = (float *)((uint8_t *)wc + wchunk);
            c->f->widen(c, tmp, src, l->wtype, n);
            c->f->to_bf16(c, wc, tmp, n);
        }
        /* many rows (guidance's branches batched) go through in blocks of at
         * most CHUNK_M: one conversion of the chunk for all of them, each
         * product the size a single branch has (measured: a 2400-row product
         * on a converted chunk is slower than two 1200-row ones) */
        int64_t nb = (m + CHUNK_M - 1) / CHUNK_M, mb = (m + nb - 1) / nb;
        for (int64_t m0 = 0; m0 < m; m0 += mb) {
            int64_t mr = VD_MIN(mb, m - m0);
            prim *e = matmul_prim(s, mr, ni, nr, no, bias, act, bf16, NULL, ybf);
            const uint8_t *xr = (const uint8_t *)xin + (size_t)(m0 * ni) * xs;
            uint8_t *yr = (uint8_t *)y + (size_t)(m0 * no + n0) * ys;
            if (!e || run_matmul(s, c, e, xr, wc, bias ? l->bias + n0 : NULL, (float *)yr))
                return -1;
        }
    }
    return 0;
}

/* Scratch for x in the operands' type (bf16) and the largest weight chunk
 * of the layers; NULL with *fail set when there is no memory. */
static uint8_t *linear_scratch(vk_ctx *c, const vk_linear *const *ls, int n, int64_t m,
                               int64_t ni, int bf16, size_t *xbytes, int *fail)
{
    size_t wbytes = 0, wchunk;
    for (int i = 0; i < n; i++) {
        size_t b = chunk_bytes(ls[i], bf16, &wchunk);
        wbytes = b > wbytes ? b : wbytes;
    }
    *xbytes = bf16 ? ((size_t)(m * ni) * 2 + 63) / 64 * 64 : 0;
    *fail = 0;
    if (!(*xbytes + wbytes))
        return NULL;
    uint8_t *mem = vk_scratch(c, *xbytes + wbytes);
    *fail = !mem;
    return mem;
}

/* ys[i] = act(x Wᵢᵀ + bᵢ) for layers of the same input width, fp32 or
 * (bf16 set) bf16 operands, fp32 outputs. In bf16, x is converted once per
 * call (m x n_in, small next to the products) for all the layers. */
static void linear_n_run(vk_ctx *c, const vk_linear *const *ls, int n, const float *x, int64_t m,
                         float *const *ys, vk_act act, int bf16)
{
    if (m <= 0 || n <= 0)
        return;
    dnnl_state *s = state(c);
    int64_t ni = ls[0]->n_in;
    size_t xbytes;
    int fail;
    uint8_t *mem = s ? linear_scratch(c, ls, n, m, ni, bf16, &xbytes, &fail) : NULL;
    if (!s || fail)
        goto fallback;
    const void *xin = x;
    if (bf16) {
        c->f->to_bf16(c, (uint16_t *)mem, x, (size_t)(m * ni));
        xin = mem;
    }
    uint8_t *wmem = mem ? mem + xbytes : NULL;
    for (int i = 0; i < n; i++)
        if (linear_core(c, s, ls[i], xin, m, ys[i], 0, act, bf16, wmem))
            goto fallback; /* recomputes everything: correct, slow, warned */
    return;
fallback:
    warn_fallback(c, s, bf16 ? "a bf16 linear layer" : "a linear layer");
    for (int i = 0; i < n; i++)
        vk_ref_linear(c, ls[i], x, m, ys[i], act);
}

static void linear_run(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                       vk_act act, int bf16)
{
    linear_n_run(c, &l, 1, x, m, &y, act, bf16);
}

/* bf16 feed-forward: y = act(x W0ᵀ + b0) W2ᵀ + b2 with the hidden layer
 * written by the first product in bf16 (activation applied in fp32 before
 * the rounding the second product's operand gets anyway), into the
 * caller's fp32 hidden area: half the memory traffic of an fp32 hidden
 * layer and no conversion pass over it. */
static void ffn_run_bf16(vk_ctx *c, const vk_linear *l0, const vk_linear *l2, vk_act act,
                         const float *x, int64_t m, float *hidden, float *y)
{
    if (m <= 0)
        return;
    dnnl_state *s = state(c);
    const vk_linear *ls[2] = { l0, l2 };
    size_t xbytes;
    int fail;
    uint8_t *mem = s ? linear_scratch(c, ls, 2, m, l0->n_in, 1, &xbytes, &fail) : NULL;
    if (!s || fail)
        goto fallback;
    c->f->to_bf16(c, (uint16_t *)mem, x, (size_t)(m * l0->n_in));
    if (linear_core(c, s, l0, mem, m, hidden, 1, act, 1, mem + xbytes) ||
        linear_core(c, s, l2, hidden, m, y, 0, VK_ACT_NONE, 1, mem + xbytes))
        goto fallback;
    return;
fallback:
    warn_fallback(c, s, "a bf16 feed-forward");
    vk_ref_linear(c, l0, x, m, hidden, act);
    vk_ref_linear(c, l2, hidden, m, y, VK_ACT_NONE);
}

static void gemm_run(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *cm, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) { /* nothing to multiply: C = beta C (beta 0 never reads C) */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                cm[i * ldc + j] = beta != 0.0f ? beta * cm[i * ldc + j] : 0.0f;
        return;
    }
    omp_set_num_threads(c->n_threads);
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc) !=
        dnnl_success) {
        warn_fallback(c, c->be_state, "a gemm");
        vk_ref_gemm(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
    }
}

/* ---- convolution ----
 * A layer's prepared forms are made by vk_conv_detach while the model is
 * loaded, and only read after it: any number of contexts run the layer at
 * once, with no lock and nothing made behind the model's back. A run that
 * wants a form the layer does not keep (a layer never detached, a precision
 * it was not prepared for, a primitive refusing the kept layout) makes it
 * for that call, in memory of its own. */

typedef struct conv_prep {
    float *plain; /* owned plain f32 [c_out, c_in * kd * kh * kw] (cv->w points at it) */
    float *taps;  /* owned f32 [kd][c_out][c_in * kh * kw] of such a layer when kd > 1 */
    /* conv_tap: every tap as a 2D weight in layout tmd[i], tap k at k * tsz[i];
     * [0] f32 (the exact form plain weights are remade from), [1] bf16 */
    int nt;
    dnnl_memory_desc_t tmd[2];
    uint8_t *tdata[2];
    size_t tsz[2];
} conv_prep;

static void conv_prep_free(void *p)
{
    conv_prep *cp = p;
    if (!cp)
        return;
    for (int i = 0; i < cp->nt; i++)
        vd_free(cp->tdata[i]);
    vd_free(cp->plain);
    vd_free(cp->taps);
    vd_free(cp);
}

int vk_dnnl_conv_prep(vk_conv *cv)
{
    conv_prep *cp = vd_calloc(sizeof(*cp));
    if (!cp)
        return VDIT_ERR_NOMEM;
    cv->prep = cp;
    cv->prep_free = conv_prep_free;
    return 0;
}

static size_t conv_count(const vk_conv *cv)
{
    return (size_t)cv->c_out * cv->c_in * cv->kd * cv->kh * cv->kw;
}

static float *remake_plain(const vk_conv *cv);

/* Plain f32 [c_out, c_in * kd * kh * kw]: the stored or kept weights when
 * they are aligned f32, else made into *tmp (the caller frees). NULL: out of
 * memory. */
static const float *plain_weights(const vk_conv *cv, float **tmp)
{
    *tmp = NULL;
    if (cv->w && cv->wtype == VT_F32 && !((uintptr_t)cv->w & 3))
        return cv->w;
    if (!cv->w)
        return *tmp = remake_plain(cv);
    float *p = vd_malloc(conv_count(cv) * 4);
    if (p)
        vk_weights_to_f32(p, cv->w, cv->wtype, conv_count(cv));
    return *tmp = p;
}

/* [c_out][c_in][kd][khw] -> [kd][c_out][c_in][khw] */
static void to_taps(float *t, const float *pl, const vk_conv *cv)
{
    size_t khw = (size_t)cv->kh * cv->kw, co = (size_t)cv->c_out, ci = (size_t)cv->c_in;
    size_t kd = (size_t)cv->kd;
    for (size_t o = 0; o < co; o++)
        for (size_t i = 0; i < ci; i++)
            for (size_t a = 0; a < kd; a++)
                memcpy(t + ((a * co + o) * ci + i) * khw, pl + ((o * ci + i) * kd + a) * khw,
                       khw * sizeof(float));
}

/* f32 [kd][c_out][c_in * kh * kw]: tap k is a plain 2D weight. The kept
 * copy, the plain weights when kd = 1, else made into *tmp (the caller
 * frees). */
static const float *plain_taps(const vk_conv *cv, float **tmp)
{
    conv_prep *cp = cv->prep;
    *tmp = NULL;
    if (cv->kd == 1)
        return plain_weights(cv, tmp);
    if (cp->taps)
        return cp->taps;
    float *pt = NULL;
    const float *pl = plain_weights(cv, &pt);
    float *t = pl ? vd_malloc(conv_count(cv) * 4) : NULL;
    if (t)
        to_taps(t, pl, cv);
    vd_free(pt);
    return *tmp = t;
}

static dnnl_primitive_t make_reorder(dnnl_state *s, const dnnl_memory_desc_t *a,
                                     const dnnl_memory_desc_t *b)
{
    dnnl_primitive_desc_t rpd;
    if (dnnl_reorder_primitive_desc_create(&rpd, a, s->eng, b, s->eng, NULL))
        return NULL;
    dnnl_primitive_t r = NULL;
    if (dnnl_primitive_create(&r, rpd))
        r = NULL;
    dnnl_primitive_desc_destroy(rpd);
    return r;
}


/* The layer's weights in layout md for one call, in *tmp (the caller
 * frees): reordered from plain (md_plain). */
static const float *conv_weights(dnnl_state *s, vk_ctx *c, const vk_conv *cv,
                                 const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *md_plain,
                                 float **tmp)
{
    float *pt = NULL;
    const float *pl = plain_weights(cv, &pt);
    float *out = pl ? vd_malloc(dnnl_memory_desc_get_size(md) + 64) : NULL;
    dnnl_primitive_t r = out ? make_reorder(s, md_plain, md) : NULL;
    int ok = 0;
    if (r) {
        int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
        const dnnl_memory_desc_t *mds[2] = { md_plain, md };
        void *ptrs[2] = { (void *)pl, out };
        ok = exec(s, c, r, 2, args, mds, ptrs) == dnnl_success;
        dnnl_primitive_destroy(r);
    }
    vd_free(pt);
    if (!ok) {
        vd_free(out);
        return NULL;
    }
    return *tmp = out;
}


/* A direct forward convolution primitive for these descriptors, stored in a
 * new cache slot under key with the layouts it chose and the plain layouts the
 * caller's buffers have (reorders are the caller's). NULL if oneDNN refuses. */
static prim *conv_slot(dnnl_state *s, const int64_t *key, const dnnl_memory_desc_t *src,
                       const dnnl_memory_desc_t *wei, const dnnl_memory_desc_t *bias,
                       const dnnl_memory_desc_t *dst, const int64_t *str, const int64_t *pl,
                       const int64_t *pr, const dnnl_memory_desc_t *src_pl,
                       const dnnl_memory_desc_t *dst_pl)
{
    dnnl_convolution_desc_t cd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                           src, wei, bias, dst, str, pl, pr))
        return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = make_prim(&cd, NULL, s->eng, &pd);
    if (!p)
        return NULL;
    prim *e = slot(s, key);
    e->p = p;
    e->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    e->wei_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    e->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_primitive_desc_destroy(pd);
    e->src_plain = *src_pl;
    e->dst_plain = *dst_pl;
    return e;
}
static prim *conv_prim(dnnl_state *s, const vk_conv *cv, const vk_conv_geom *g, int d, int h, int w,
                       int od, int oh, int ow)
{
    int is2d = cv->kd == 1 && d == 1 && od == 1;
    int64_t key[KEY_LEN] = { 2,         (int64_t)cv->c_in << 32 | cv->c_out,
                             cv->kd,    cv->kh,
                             cv->kw,    d,
                             h,         w,
                             g->sd,     g->sh,
                             g->sw,     (int64_t)g->pd0 << 32 | g->pd1,
                             (int64_t)g->ph0 << 32 | g->ph1,
                             (int64_t)g->pw0 << 32 | g->pw1,
                             cv->bias != NULL };
    prim *e = lookup(s, key);
    if (e)
        return e;
    dnnl_memory_desc_t src, wei, dst, bmd, src_pl, dst_pl;
    int nd = is2d ? 4 : 5;
    dnnl_dims_t sdm, wdm, ddm, bdm = { cv->c_out }, str, pl, pr;
    if (is2d) {
        int64_t a[4] = { 1, cv->c_in, h, w }, b[4] = { cv->c_out, cv->c_in, cv->kh, cv->kw },
                cc[4] = { 1, cv->c_out, oh, ow };
        memcpy(sdm, a, sizeof(a));
        memcpy(wdm, b, sizeof(b));
        memcpy(ddm, cc, sizeof(cc));
        str[0] = g->sh, str[1] = g->sw;
        pl[0] = g->ph0, pl[1] = g->pw0;
        pr[0] = g->ph1, pr[1] = g->pw1;
    } else {
        int64_t a[5] = { 1, cv->c_in, d, h, w },
                b[5] = { cv->c_out, cv->c_in, cv->kd, cv->kh, cv->kw },
                cc[5] = { 1, cv->c_out, od, oh, ow };
        memcpy(sdm, a, sizeof(a));
        memcpy(wdm, b, sizeof(b));
        memcpy(ddm, cc, sizeof(cc));
        str[0] = g->sd, str[1] = g->sh, str[2] = g->sw;
        pl[0] = g->pd0, pl[1] = g->ph0, pl[2] = g->pw0;
        pr[0] = g->pd1, pr[1] = g->ph1, pr[2] = g->pw1;
    }
    dnnl_format_tag_t plain = is2d ? dnnl_nchw : dnnl_ncdhw;
    if (dnnl_memory_desc_init_by_tag(&src, nd, sdm, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wei, nd, wdm, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dst, nd, ddm, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&bmd, 1, bdm, dnnl_f32, dnnl_x) ||
        dnnl_memory_desc_init_by_tag(&src_pl, nd, sdm, dnnl_f32, plain) ||
        dnnl_memory_desc_init_by_tag(&dst_pl, nd, ddm, dnnl_f32, plain))
        return NULL;
    e = conv_slot(s, key, &src, &wei, cv->bias ? &bmd : NULL, &dst, str, pl, pr, &src_pl, &dst_pl);
    if (!e)
        return NULL;
    int ok = 1;
    if (!dnnl_memory_desc_equal(&e->src_md, &src_pl))
        ok = (e->src_re = make_reorder(s, &src_pl, &e->src_md)) != NULL;
    if (ok && !dnnl_memory_desc_equal(&e->dst_md, &dst_pl))
        ok = (e->dst_re = make_reorder(s, &e->dst_md, &dst_pl)) != NULL;
    if (!ok) {
        prim_clear(e);
        return NULL;
    }
    e->used = 1;
    return e;
}

/* A 1x1x1 convolution without stride or padding is y[co, S] = W[co, ci] x[ci, S]:
 * one GEMM on the plain layout beats a blocked convolution that needs its
 * input and output reordered (memory-bound at these arithmetic intensities). */
static int conv_1x1(vk_ctx *c, const vk_conv *cv, const float *x, int64_t sp, float *y)
{
    float *tmp = NULL;
    const float *w = cv->prep ? plain_weights(cv, &tmp) : NULL;
    if (!w)
        return -1;
    omp_set_num_threads(c->n_threads);
    dnnl_status_t st =
        dnnl_sgemm('N', 'N', cv->c_out, sp, cv->c_in, 1.0f, w, cv->c_in, x, sp, 0.0f, y, sp);
    vd_free(tmp);
    if (st != dnnl_success)
        return -1;
    if (cv->bias) {
        const float *b = cv->bias;
#pragma omp parallel for num_threads(c->n_threads) schedule(static)
        for (int o = 0; o < cv->c_out; o++)
            for (int64_t i = 0; i < sp; i++)
                y[o * sp + i] += b[o];
    }
    return 0;
}

static void conv_run(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                     int h, int w, float *y)
{
    int od = (d + g->pd0 + g->pd1 - cv->kd) / g->sd + 1;
    int oh = (h + g->ph0 + g->ph1 - cv->kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - cv->kw) / g->sw + 1;
    if (od <= 0 || oh <= 0 || ow <= 0)
        return;
    float *wtmp = NULL; /* weights in an uncached layout, made for this call */
    dnnl_state *s = state(c);
    if (!s || !cv->prep)
        goto fallback;
    prim *e = conv_prim(s, cv, g, d, h, w, od, oh, ow);
    if (!e)
        goto fallback;
    int is2d = e->src_md.ndims == 4;
    dnnl_memory_desc_t wpl;
    dnnl_dims_t wdm;
    if (is2d) {
        int64_t b[4] = { cv->c_out, cv->c_in, cv->kh, cv->kw };
        memcpy(wdm, b, sizeof(b));
    } else {
        int64_t b[5] = { cv->c_out, cv->c_in, cv->kd, cv->kh, cv->kw };
        memcpy(wdm, b, sizeof(b));
    }
    if (dnnl_memory_desc_init_by_tag(&wpl, is2d ? 4 : 5, wdm, dnnl_f32,
                                     is2d ? dnnl_oihw : dnnl_oidhw))
        goto fallback;
    const float *wr = conv_weights(s, c, cv, &e->wei_md, &wpl, &wtmp);
    if (!wr)
        goto fallback;
    size_t ssz = e->src_re ? (dnnl_memory_desc_get_size(&e->src_md) + 63) / 64 * 64 : 0;
    size_t dsz = e->dst_re ? (dnnl_memory_desc_get_size(&e->dst_md) + 63) / 64 * 64 : 0;
    uint8_t *tmp = ssz + dsz ? vk_scratch(c, ssz + dsz) : NULL;
    if (ssz + dsz && !tmp)
        goto fallback;
    void *xs = e->src_re ? (void *)tmp : (void *)x;
    void *yd = e->dst_re ? (void *)(tmp + ssz) : (void *)y;
    if (e->src_re) {
        int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
        const dnnl_memory_desc_t *mds[2] = { &e->src_plain, &e->src_md };
        void *ptrs[2] = { (void *)x, xs };
        if (exec(s, c, e->src_re, 2, args, mds, ptrs))
            goto fallback;
    }
    {
        int args[4] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS };
        dnnl_memory_desc_t bmd;
        dnnl_dims_t bd = { cv->c_out };
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
        const dnnl_memory_desc_t *mds[4] = { &e->src_md, &e->wei_md, &e->dst_md, &bmd };
        void *ptrs[4] = { xs, (void *)wr, yd, cv->bias };
        if (exec(s, c, e->p, cv->bias ? 4 : 3, args, mds, ptrs))
            goto fallback;
    }
    if (e->dst_re) {
        int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
        const dnnl_memory_desc_t *mds[2] = { &e->dst_md, &e->dst_plain };
        void *ptrs[2] = { yd, y };
        if (exec(s, c, e->dst_re, 2, args, mds, ptrs))
            goto fallback;
    }
    vd_free(wtmp);
    return;
fallback:
    vd_free(wtmp);
    warn_fallback(c, s, "a convolution");
    vk_ref_conv(c, cv, g, x, d, h, w, y);
}

/* ---- convolution taps: one frame, one temporal tap, in row bands ---- */

/* Makes taps [k0, k1) of the layer in layout md at out (tap t at
 * (t - k0) * sz): from the stored weights (aligned f32 read in place, a tap
 * being a strided view; other types widened one tap at a time, so there is
 * no full-size temporary), or else from the kept f32 layout. */
static int make_taps(dnnl_state *s, vk_ctx *c, const vk_conv *cv, const dnnl_memory_desc_t *md,
                     int k0, int k1, size_t sz, uint8_t *out)
{
    conv_prep *cp = cv->prep;
    size_t khw = (size_t)cv->kh * cv->kw, kd = (size_t)cv->kd, coi = (size_t)cv->c_out * cv->c_in;
    int direct = cv->w && cv->wtype == VT_F32 && !((uintptr_t)cv->w & 3);
    dnnl_memory_desc_t smd;
    const dnnl_memory_desc_t *from_md = &smd;
    float *pl = NULL;
    if (cv->w) {
        dnnl_dims_t dims = { cv->c_out, cv->c_in, cv->kh, cv->kw };
        dnnl_dims_t str = { (int64_t)(cv->c_in * (direct ? kd : 1) * khw),
                            (int64_t)((direct ? kd : 1) * khw), cv->kw, 1 };
        if (dnnl_memory_desc_init_by_strides(&smd, 4, dims, dnnl_f32, str) ||
            (!direct && !(pl = vd_malloc(coi * khw * 4))))
            return -1;
    } else if (cp->nt) {
        from_md = &cp->tmd[0];
    } else {
        return -1;
    }
    dnnl_primitive_t r = make_reorder(s, from_md, md);
    int ok = r != NULL;
    size_t es = cv->w ? vt_dtype_size(cv->wtype) : 0;
    for (size_t t = (size_t)k0; ok && t < (size_t)k1; t++) {
        void *from;
        if (!cv->w) {
            from = cp->tdata[0] + t * cp->tsz[0];
        } else if (direct) {
            from = (float *)cv->w + t * khw;
        } else {
            for (size_t oi = 0; oi < coi; oi++)
                vk_weights_to_f32(pl + oi * khw,
                                  (const uint8_t *)cv->w + (oi * kd + t) * khw * es, cv->wtype,
                                  khw);
            from = pl;
        }
        int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
        const dnnl_memory_desc_t *mds[2] = { from_md, md };
        void *ptrs[2] = { from, out + (t - (size_t)k0) * sz };
        ok = exec(s, c, r, 2, args, mds, ptrs) == dnnl_success;
    }
    if (r)
        dnnl_primitive_destroy(r);
    vd_free(pl);
    return ok ? 0 : -1;
}

/* Tap k of the layer in layout md: a kept layout, else made for this call
 * into *tmp (the caller frees). NULL: out of memory or oneDNN refused. */
static const float *tap_weights(dnnl_state *s, vk_ctx *c, const vk_conv *cv,
                                const dnnl_memory_desc_t *md, int k, float **tmp)
{
    conv_prep *cp = cv->prep;
    for (int i = 0; i < cp->nt; i++)
        if (dnnl_memory_desc_equal(&cp->tmd[i], md))
            return (const float *)(cp->tdata[i] + (size_t)k * cp->tsz[i]);
    size_t sz = (dnnl_memory_desc_get_size(md) + 63) / 64 * 64;
    uint8_t *out = vd_malloc(sz);
    if (!out || make_taps(s, c, cv, md, k, k + 1, sz, out)) {
        vd_free(out);
        return NULL;
    }
    *tmp = (float *)out;
    return (const float *)out;
}

/* A digest of a layout, for primitive cache keys. */
static int64_t md_digest(const dnnl_memory_desc_t *md)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(v)                                                                                   \
    do {                                                                                         \
        h ^= (uint64_t)(v);                                                                      \
        h *= 1099511628211ull;                                                                   \
    } while (0)
    MIX(md->ndims);
    MIX(md->data_type);
    MIX(md->format_kind);
    for (int i = 0; i < md->ndims; i++) {
        MIX(md->dims[i]);
        MIX(md->padded_dims[i]);
        MIX(md->format_desc.blocking.strides[i]);
    }
    MIX(md->format_desc.blocking.inner_nblks);
    for (int i = 0; i < md->format_desc.blocking.inner_nblks; i++) {
        MIX(md->format_desc.blocking.inner_blks[i]);
        MIX(md->format_desc.blocking.inner_idxs[i]);
    }
#undef MIX
    return (int64_t)(h >> 1);
}

/* Reorder a -> b that adds into b (sum post-op). */
static dnnl_primitive_t make_reorder_sum(dnnl_state *s, const dnnl_memory_desc_t *a,
                                         const dnnl_memory_desc_t *b)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    if (!dnnl_primitive_attr_create(&attr) && !dnnl_post_ops_create(&po) &&
        !dnnl_post_ops_append_sum(po, 1.0f) && !dnnl_primitive_attr_set_post_ops(attr, po) &&
        !dnnl_reorder_primitive_desc_create(&rpd, a, s->eng, b, s->eng, attr) &&
        dnnl_primitive_create(&r, rpd))
        r = NULL;
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return r;
}

/* A row band of a 2D convolution: input rows [a0, a0 + hin) of an
 * [c_in, h, w] frame with pt / pb zero rows added -> `rows` rows of an
 * [c_out, oh, ow] frame (added to it when acc). Band input and output are
 * reordered between the plain frames and the primitive's layouts, so the
 * blocked copies are one band each. */
static prim *band_prim(dnnl_state *s, const vk_conv *cv, const vk_conv_geom *g, int bias, int acc,
                       int hin, int pt, int pb, int h, int w, int rows, int oh, int ow, int bf16,
                       const dnnl_memory_desc_t *wfix)
{
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    int64_t ci = cv->c_in, co = cv->c_out;
    int64_t key[KEY_LEN] = { 3,
                             ci << 32 | co,
                             (int64_t)cv->kh << 32 | cv->kw,
                             hin,
                             (int64_t)pt << 32 | pb,
                             h,
                             w,
                             (int64_t)g->sh << 32 | g->sw,
                             (int64_t)g->pw0 << 32 | g->pw1,
                             rows,
                             oh,
                             ow,
                             bf16 << 2 | bias << 1 | acc,
                             wfix ? md_digest(wfix) : 0 };
    prim *e = lookup(s, key);
    if (e)
        return e;
    dnnl_memory_desc_t src, wei, dst, bmd, src_pl, dst_pl;
    dnnl_dims_t sdm = { 1, ci, hin, w }, wdm = { co, ci, cv->kh, cv->kw },
                ddm = { 1, co, rows, ow },
                bdm = { co };
    dnnl_dims_t sst = { ci * h * w, (int64_t)h * w, w, 1 },
                dst_st = { co * oh * ow, (int64_t)oh * ow, ow, 1 };
    dnnl_dims_t str = { g->sh, g->sw }, pl = { pt, g->pw0 }, pr = { pb, g->pw1 };
    /* bf16: the band is converted while it is reordered into the blocked
     * layout, so bf16 costs no extra pass; output and accumulation stay f32 */
    if (dnnl_memory_desc_init_by_tag(&src, 4, sdm, dt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wei, 4, wdm, dt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dst, 4, ddm, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&bmd, 1, bdm, dnnl_f32, dnnl_x) ||
        dnnl_memory_desc_init_by_strides(&src_pl, 4, sdm, dnnl_f32, sst) ||
        dnnl_memory_desc_init_by_strides(&dst_pl, 4, ddm, dnnl_f32, dst_st))
        return NULL;
    /* the layer's kept layout when it has one (its weights are then read in
     * place), else oneDNN's choice for the shape */
    e = wfix ? conv_slot(s, key, &src, wfix, bias ? &bmd : NULL, &dst, str, pl, pr, &src_pl,
                         &dst_pl)
             : NULL;
    if (!e)
        e = conv_slot(s, key, &src, &wei, bias ? &bmd : NULL, &dst, str, pl, pr, &src_pl,
                      &dst_pl);
    if (!e)
        return NULL;
    e->src_re = make_reorder(s, &src_pl, &e->src_md);
    e->dst_re = acc ? make_reorder_sum(s, &e->dst_md, &dst_pl)
                    : make_reorder(s, &e->dst_md, &dst_pl);
    if (!e->src_re || !e->dst_re) {
        prim_clear(e);
        return NULL;
    }
    e->used = 1;
    return e;
}

static void conv_tap_run(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                         const float *x, int h, int w, float *y)
{
    int oh = (h + g->ph0 + g->ph1 - cv->kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - cv->kw) / g->sw + 1;
    if (oh <= 0 || ow <= 0 || k < 0 || k >= cv->kd)
        return;
    int acc = (flags & VK_CONV_ACC) != 0, bias = (flags & VK_CONV_BIAS) && cv->bias;
    int r0 = 0, co = cv->c_out, ci = cv->c_in, bf16 = c->prec == VK_PREC_BF16;
    float *wtmp = NULL; /* weights in a layout the layer does not keep, made for this call */
    dnnl_memory_desc_t wtmp_md;
    dnnl_state *s = state(c);
    if (!s || !cv->prep)
        goto fallback;
    const conv_prep *cp = cv->prep;
    const dnnl_memory_desc_t *wfix = cp->nt > bf16 ? &cp->tmd[bf16] : NULL;
    size_t per_row =
        VD_MAX((size_t)ci * (size_t)w * (size_t)g->sh, (size_t)co * (size_t)ow) * sizeof(float);
    size_t budget = c->band_bytes ? c->band_bytes : ((size_t)8 << 20);
    int rows = (int)VD_MAX((size_t)1, VD_MIN((size_t)oh, budget / per_row));
    int nb = (oh + rows - 1) / rows;
    rows = (oh + nb - 1) / nb;
    for (r0 = 0; r0 < oh; r0 += rows) {
        int r1 = VD_MIN(oh, r0 + rows);
        int i0 = r0 * g->sh - g->ph0, i1 = (r1 - 1) * g->sh - g->ph0 + cv->kh;
        int pt = i0 < 0 ? -i0 : 0, pb = i1 > h ? i1 - h : 0;
        int a0 = i0 + pt, hin = i1 - pb - a0;
        if (hin <= 0)
            goto fallback; /* a band of padding only: not a VAE shape */
        prim *e = band_prim(s, cv, g, bias, acc, hin, pt, pb, h, w, r1 - r0, oh, ow, bf16, wfix);
        if (!e)
            goto fallback;
        const float *wr = wtmp;
        if (!wtmp || !dnnl_memory_desc_equal(&wtmp_md, &e->wei_md)) {
            vd_free(wtmp);
            wtmp = NULL;
            if (!(wr = tap_weights(s, c, cv, &e->wei_md, k, &wtmp)))
                goto fallback;
            wtmp_md = e->wei_md;
        }
        size_t ssz = (dnnl_memory_desc_get_size(&e->src_md) + 63) / 64 * 64;
        size_t dsz = (dnnl_memory_desc_get_size(&e->dst_md) + 63) / 64 * 64;
        uint8_t *tmp = vk_scratch(c, ssz + dsz);
        if (!tmp)
            goto fallback;
        {
            int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
            const dnnl_memory_desc_t *mds[2] = { &e->src_plain, &e->src_md };
            void *ptrs[2] = { (void *)(x + (size_t)a0 * w), tmp };
            if (exec(s, c, e->src_re, 2, args, mds, ptrs))
                goto fallback;
        }
        {
            int args[4] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS };
            dnnl_memory_desc_t bmd;
            dnnl_dims_t bd = { co };
            dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
            const dnnl_memory_desc_t *mds[4] = { &e->src_md, &e->wei_md, &e->dst_md, &bmd };
            void *ptrs[4] = { tmp, (void *)wr, tmp + ssz, cv->bias };
            if (exec(s, c, e->p, bias ? 4 : 3, args, mds, ptrs))
                goto fallback;
        }
        {
            /* the output band's rows are written only here: a failure before
             * this point leaves them for the fallback */
            int args[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
            const dnnl_memory_desc_t *mds[2] = { &e->dst_md, &e->dst_plain };
            void *ptrs[2] = { tmp + ssz, y + (size_t)r0 * ow };
            if (exec(s, c, e->dst_re, 2, args, mds, ptrs))
                goto fallback;
        }
    }
    vd_free(wtmp);
    return;
fallback:
    vd_free(wtmp);
    warn_fallback(c, s, "a convolution tap");
    vk_ref_conv_tap_rows(cv, g, k, flags, x, h, w, y, r0, oh);
}

/* A 1x1 tap without stride or padding: y[co, S] (+)= W_k[co, ci] x[ci, S], one
 * GEMM on the plain layout (a blocked convolution would reorder input and
 * output for little arithmetic). */
static void conv_tap_1x1_run(vk_ctx *c, const vk_conv *cv, int k, int flags, const float *x,
                             int h, int w, float *y)
{
    int co = cv->c_out, ci = cv->c_in, acc = (flags & VK_CONV_ACC) != 0;
    int bias = (flags & VK_CONV_BIAS) && cv->bias;
    float *tmp = NULL;
    const float *wt = cv->prep ? plain_taps(cv, &tmp) : NULL;
    int64_t sp = (int64_t)h * w;
    if (!wt)
        goto fallback;
    omp_set_num_threads(c->n_threads);
    dnnl_status_t st = dnnl_sgemm('N', 'N', co, sp, ci, 1.0f, wt + (size_t)k * co * ci, ci, x, sp,
                                  acc ? 1.0f : 0.0f, y, sp);
    vd_free(tmp);
    if (st != dnnl_success)
        goto fallback;
    if (bias) {
        const float *b = cv->bias;
#pragma omp parallel for num_threads(c->n_threads) schedule(static)
        for (int o = 0; o < co; o++)
            for (int64_t i = 0; i < sp; i++)
                y[o * sp + i] += b[o];
    }
    return;
fallback:
    warn_fallback(c, c->be_state, "a 1x1 convolution tap");
    vk_ref_conv_tap_rows(cv, &(vk_conv_geom){ 1, 1, 1, 0, 0, 0, 0, 0, 0 }, k, flags, x, h, w, y, 0,
                         h);
}

static void conv_1x1_run(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x,
                         int d, int h, int w, float *y)
{
    if (conv_1x1(c, cv, x, (int64_t)d * h * w, y)) {
        warn_fallback(c, c->be_state, "a 1x1 convolution");
        vk_ref_conv(c, cv, g, x, d, h, w, y);
    }
}

size_t vk_dnnl_conv_bytes(const vk_conv *cv)
{
    const conv_prep *cp = cv->prep;
    size_t n = (cp->plain ? 4 : 0) * conv_count(cv) + (cp->taps ? 4 : 0) * conv_count(cv);
    for (int i = 0; i < cp->nt; i++)
        n += cp->tsz[i] * (size_t)cv->kd;
    return n;
}

const float *vk_dnnl_conv_plain(const vk_conv *cv, float **tmp)
{
    *tmp = NULL;
    return cv->prep ? plain_weights(cv, tmp) : NULL;
}

const float *vk_dnnl_conv_plain_taps(const vk_conv *cv, float **tmp)
{
    *tmp = NULL;
    return cv->prep ? plain_taps(cv, tmp) : NULL;
}

/* ---- detaching a layer from its stored weights ---- */

/* Plain f32 [c_out, c_in, kd, kh, kw] remade from the kept taps (layout
 * tmd[0]) of a detached layer, on a private engine (no vk_ctx at hand). */
static float *remake_plain(const vk_conv *cv)
{
    conv_prep *cp = cv->prep;
    if (!cp->nt)
        return NULL;
    size_t n = (size_t)cv->c_out * cv->c_in * cv->kd * cv->kh * cv->kw;
    float *pl = vd_malloc(n * 4);
    dnnl_engine_t eng = NULL;
    dnnl_stream_t strm = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_desc_t dst;
    dnnl_dims_t dims = { cv->c_out, cv->c_in, cv->kh, cv->kw };
    dnnl_dims_t str = { (int64_t)cv->c_in * cv->kd * cv->kh * cv->kw,
                        (int64_t)cv->kd * cv->kh * cv->kw, cv->kw, 1 };
    int ok = pl && !dnnl_engine_create(&eng, dnnl_cpu, 0) &&
             !dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) &&
             !dnnl_memory_desc_init_by_strides(&dst, 4, dims, dnnl_f32, str) &&
             !dnnl_reorder_primitive_desc_create(&rpd, &cp->tmd[0], eng, &dst, eng, NULL) &&
             !dnnl_primitive_create(&r, rpd);
    for (int t = 0; ok && t < cv->kd; t++) {
        dnnl_memory_t a = NULL, b = NULL;
        void *from = (uint8_t *)cp->tdata[0] + (size_t)t * cp->tsz[0];
        ok = !dnnl_memory_create(&a, &cp->tmd[0], eng, from) &&
             !dnnl_memory_create(&b, &dst, eng, pl + (size_t)t * cv->kh * cv->kw);
        dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, a }, { DNNL_ARG_TO, b } };
        ok = ok && !dnnl_primitive_execute(r, strm, 2, args) && !dnnl_stream_wait(strm);
        if (a)
            dnnl_memory_destroy(a);
        if (b)
            dnnl_memory_destroy(b);
    }
    if (r)
        dnnl_primitive_destroy(r);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (strm)
        dnnl_stream_destroy(strm);
    if (eng)
        dnnl_engine_destroy(eng);
    if (!ok) {
        vd_free(pl);
        return NULL;
    }
    return pl;
}

static int conv_detach_run(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w)
{
    conv_prep *cp = cv->prep;
    if (!cp)
        return VDIT_ERR_INVALID_ARG;
    if (!cv->w)
        return 0; /* already detached */
    int oh = (h + g->ph0 + g->ph1 - cv->kh) / g->sh + 1;
    int ow = (w + g->pw0 + g->pw1 - cv->kw) / g->sw + 1;
    int plain = (cv->kh == 1 && cv->kw == 1) || cv->c_out <= 4 || oh <= 0 || ow <= 0;
    dnnl_state *s = plain || !c ? NULL : state(c);
    if (!plain && s) {
        /* the layout conv_tap's first row band of an h x w frame picks: in
         * fp32 first, the exact form plain weights are remade from
         * (remake_plain reads layout 0), then for a bf16 context its own,
         * while the stored weights are at hand */
        size_t per_row = VD_MAX((size_t)cv->c_in * (size_t)w * (size_t)g->sh,
                                (size_t)cv->c_out * (size_t)ow) * sizeof(float);
        size_t budget = c->band_bytes ? c->band_bytes : ((size_t)8 << 20);
        int rows = (int)VD_MAX((size_t)1, VD_MIN((size_t)oh, budget / per_row));
        int i1 = (rows - 1) * g->sh - g->ph0 + cv->kh;
        int pt = g->ph0, pb = i1 > h ? i1 - h : 0, ok = 1;
        for (int b = 0; ok && b <= (c->prec == VK_PREC_BF16); b++) {
            prim *e = band_prim(s, cv, g, cv->bias != NULL, 0, i1 - pb, pt, pb, h, w, rows, oh,
                                ow, b, NULL);
            size_t sz = e ? (dnnl_memory_desc_get_size(&e->wei_md) + 63) / 64 * 64 : 0;
            uint8_t *out = e ? vd_malloc(sz * (size_t)cv->kd) : NULL;
            ok = out && !make_taps(s, c, cv, &e->wei_md, 0, cv->kd, sz, out);
            if (ok) {
                cp->tmd[cp->nt] = e->wei_md;
                cp->tsz[cp->nt] = sz;
                cp->tdata[cp->nt++] = out;
            } else {
                vd_free(out);
            }
        }
        if (ok) {
            cv->w = NULL;
            return 0;
        }
        while (cp->nt > 0)
            vd_free(cp->tdata[--cp->nt]);
    }
    /* plain fp32 kernels (1x1, few outputs), the reference, or oneDNN
     * refused: an owned plain copy replaces the stored weights (and the
     * per-tap copy beside it when there are several taps) */
    size_t n = conv_count(cv);
    float *p = vd_malloc(n * 4), *t = cv->kd > 1 ? vd_malloc(n * 4) : NULL;
    if (!p || (cv->kd > 1 && !t)) {
        vd_free(p);
        vd_free(t);
        return VDIT_ERR_NOMEM;
    }
    vk_weights_to_f32(p, cv->w, cv->wtype, n);
    if (t)
        to_taps(t, p, cv);
    cp->plain = p;
    cp->taps = t;
    cv->w = p;
    cv->wtype = VT_F32;
    return 0;
}

/* ---- entry points ----
 * Each sets the calling thread's OpenMP thread count for oneDNN (state())
 * and puts the caller's own back afterwards: omp_set_num_threads is a
 * setting of the thread, and an application's thread (FFmpeg's, GStreamer's)
 * must not come back from vdit with a different one. */
#define WITH_CALLER_THREADS(call)                                                                \
    do {                                                                                         \
        int caller_threads_ = omp_get_max_threads();                                             \
        call;                                                                                    \
        omp_set_num_threads(caller_threads_);                                                    \
    } while (0)

void vk_dnnl_linear(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y, vk_act act)
{
    WITH_CALLER_THREADS(linear_run(c, l, x, m, y, act, 0));
}

void vk_dnnl_linear_bf16(vk_ctx *c, const vk_linear *l, const float *x, int64_t m, float *y,
                         vk_act act)
{
    WITH_CALLER_THREADS(linear_run(c, l, x, m, y, act, 1));
}

void vk_dnnl_linear_n_bf16(vk_ctx *c, const vk_linear *const *ls, int n, const float *x,
                           int64_t m, float *const *ys)
{
    WITH_CALLER_THREADS(linear_n_run(c, ls, n, x, m, ys, VK_ACT_NONE, 1));
}

void vk_dnnl_ffn_bf16(vk_ctx *c, const vk_linear *l0, const vk_linear *l2, vk_act act,
                      const float *x, int64_t m, float *hidden, float *y)
{
    WITH_CALLER_THREADS(ffn_run_bf16(c, l0, l2, act, x, m, hidden, y));
}

void vk_dnnl_gemm(vk_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                  int64_t ldc)
{
    WITH_CALLER_THREADS(gemm_run(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc));
}

void vk_dnnl_conv(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d, int h,
                  int w, float *y)
{
    WITH_CALLER_THREADS(conv_run(c, cv, g, x, d, h, w, y));
}

void vk_dnnl_conv_tap(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, int k, int flags,
                      const float *x, int h, int w, float *y)
{
    WITH_CALLER_THREADS(conv_tap_run(c, cv, g, k, flags, x, h, w, y));
}

void vk_dnnl_conv_1x1(vk_ctx *c, const vk_conv *cv, const vk_conv_geom *g, const float *x, int d,
                      int h, int w, float *y)
{
    WITH_CALLER_THREADS(conv_1x1_run(c, cv, g, x, d, h, w, y));
}

void vk_dnnl_conv_tap_1x1(vk_ctx *c, const vk_conv *cv, int k, int flags, const float *x, int h,
                          int w, float *y)
{
    WITH_CALLER_THREADS(conv_tap_1x1_run(c, cv, k, flags, x, h, w, y));
}

int vk_dnnl_conv_detach(vk_ctx *c, vk_conv *cv, const vk_conv_geom *g, int h, int w)
{
    int ret;
    WITH_CALLER_THREADS(ret = conv_detach_run(c, cv, g, h, w));
    return ret;
}
