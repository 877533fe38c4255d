/*
 * LoRA files merged into the DiT's weights at load (docs/lora.md).
 *
 * A LoRA file is a set of tensors whose names say which layer of the model
 * they change and how. Every trainer names them its own way; what differs
 * is (1) the suffix: lora_down/lora_up (kohya, ComfyUI, the lightx2v and
 * CausVid files) or lora_A/lora_B (diffusers, PEFT), ".alpha" (a scalar;
 * absent = the rank), and the full deltas ".diff" (a weight), ".diff_b" (a
 * bias), ".diff_m" (a block's modulation) the distillation LoRAs carry; (2)
 * the module name: the original Wan names ("blocks.0.self_attn.q"),
 * diffusers' ("blocks.0.attn1.to_q") or either with '.' turned into '_'
 * (kohya's "lora_unet_blocks_0_self_attn_q"); (3) a prefix before it
 * ("diffusion_model.", "transformer.", "base_model.model.", LongLive's
 * "generator_lora.base_model.model." inside its .pt).
 *
 * So a name is not mapped by a table of layouts but looked up against the
 * DiT's own tensors: the suffix is cut off, then the longest tail of what
 * is left (at a '.' boundary) that names a module of the DiT under the
 * original or the diffusers names is taken, the rest being the prefix; names
 * without dots are looked up whole after one of kohya's prefixes
 * ("lora_unet_"...) in a sorted table of the DiT's module names with '_' for
 * '.' (a tail could be another model's module). All tensors of a file
 * must share one prefix; a file holding LoRAs for several models (LongLive's
 * generator_lora and critic_lora) merges the generator's.
 *
 * Merge: W' = W + scale * (alpha / rank) * (up @ down) per weight, and
 * W' = W + scale * diff for a delta, in this order of operations: the
 * product up @ down accumulated in fp64 over the rank in order (each term
 * is exact in fp64: two fp32 values multiply without rounding), multiplied
 * by c = scale * (alpha / rank) (fp64), added to W (fp64) and rounded once
 * to fp32. numpy computes the same sequence bit for bit (make_lora.py), so
 * the merge is exact against it, where a fp32 matmul's summation order
 * (BLAS blocking, FMA) is unspecified. Several LoRAs touching one weight
 * apply one after the other in the order given, each rounding to fp32. A
 * weight stored in 16 bits is then rounded once (to nearest even) back to
 * its type, as ComfyUI and diffusers' fuse_lora do, so the model takes the
 * memory it takes without LoRA; an fp8 weight is widened to bf16 with its
 * scale first (what the loader does with it) and stays bf16.
 *
 * Everything is checked before anything is merged: a file whose names match
 * nothing, or whose shapes are another model's, fails naming it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dit.h"

enum { K_DOWN, K_UP, K_ALPHA, K_DIFF, K_DIFF_B, K_DIFF_M, K_COUNT };
enum { ST_DOWNUP = 1, ST_AB = 2 };                  /* pair naming styles */
enum { N_ORIG = 1, N_DIFFUSERS = 2, N_UNDERSCORE = 4 }; /* module naming */

static const struct {
    const char *suffix;
    int kind, style;
} suffixes[] = {
    { ".lora_down.weight", K_DOWN, ST_DOWNUP },
    { ".lora_up.weight", K_UP, ST_DOWNUP },
    { ".lora_A.weight", K_DOWN, ST_AB },
    { ".lora_B.weight", K_UP, ST_AB },
    { ".lora_A.default.weight", K_DOWN, ST_AB },
    { ".lora_B.default.weight", K_UP, ST_AB },
    { ".lora.down.weight", K_DOWN, ST_DOWNUP },
    { ".lora.up.weight", K_UP, ST_DOWNUP },
    { ".lora_linear_layer.down.weight", K_DOWN, ST_DOWNUP },
    { ".lora_linear_layer.up.weight", K_UP, ST_DOWNUP },
    { ".alpha", K_ALPHA, 0 },
    { ".diff", K_DIFF, 0 },
    { ".diff_b", K_DIFF_B, 0 },
    { ".lora_B.bias", K_DIFF_B, 0 }, /* diffusers' name for a diff_b */
    { ".diff_m", K_DIFF_M, 0 },
};

/* What an item changes: a weight through a low-rank pair, a weight or
 * parameter by a delta, a bias by a delta. */
enum { C_PAIR, C_DIFF, C_DIFF_B };

#define NAME_MAX_LEN 320

typedef struct item {
    char base[NAME_MAX_LEN];   /* the key without its suffix, as in the file */
    int cls;                   /* C_* */
    const vt_tensor *t[K_COUNT];
    char target[NAME_MAX_LEN]; /* the DiT tensor it changes */
    size_t prefix_len;         /* chars of base before the module name */
    int naming;                /* N_* it was found under */
    int matched;
} item;

typedef struct lfile {
    const char *path;
    float scale;
    vd_ckpt *ck;
    item *it;
    size_t n_it;
    int styles, namings, kinds; /* ST_*, N_*, 1 << K_* seen */
    size_t n_unknown;           /* tensors with no LoRA suffix */
    size_t n_unmatched;         /* items naming no tensor of the DiT */
    const char *first_unmatched;
    int64_t rank_lo, rank_hi;
    char prefix[NAME_MAX_LEN];
} lfile;

/* The DiT's module names with '_' for '.', sorted, for kohya's names. */
typedef struct us_entry {
    char *us;   /* underscored name */
    char *mod;  /* original module (or parameter) name */
} us_entry;

typedef struct us_table {
    us_entry *e;
    size_t n;
} us_table;

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t l = strlen(suf);
    return n >= l && !memcmp(s + n - l, suf, l);
}

/* "x.weight" / "x.bias" -> "x"; anything else (a parameter) unchanged. */
static void module_of(const char *name, char *out, size_t sz)
{
    size_t n = strlen(name);
    if (ends_with(name, n, ".weight"))
        n -= 7;
    else if (ends_with(name, n, ".bias"))
        n -= 5;
    snprintf(out, sz, "%.*s", (int)n, name);
}

static char *underscored(const char *s)
{
    char *u = strdup(s);
    for (char *p = u; p && *p; p++)
        if (*p == '.')
            *p = '_';
    return u;
}

static int us_cmp(const void *a, const void *b)
{
    return strcmp(((const us_entry *)a)->us, ((const us_entry *)b)->us);
}

static void us_free(us_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].us);
        free(t->e[i].mod);
    }
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

static int us_build(const vd_ckpt *ck, us_table *t, vd_log *lg)
{
    size_t n = vd_ckpt_count(ck);
    t->e = calloc(2 * n + 1, sizeof(*t->e));
    t->n = 0;
    if (!t->e)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    char mod[NAME_MAX_LEN], dn[NAME_MAX_LEN], dmod[NAME_MAX_LEN];
    for (size_t i = 0; i < n; i++) {
        const char *name = vd_ckpt_at(ck, i)->name;
        module_of(name, mod, sizeof(mod));
        const char *forms[2] = { mod, NULL };
        if (vd_dit_key_to_diffusers(name, dn, sizeof(dn))) {
            module_of(dn, dmod, sizeof(dmod));
            forms[1] = dmod;
        }
        for (int f = 0; f < 2 && forms[f]; f++) {
            us_entry *e = &t->e[t->n];
            e->us = underscored(forms[f]);
            e->mod = strdup(mod);
            if (!e->us || !e->mod) {
                free(e->us);
                free(e->mod);
                us_free(t);
                return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
            }
            t->n++;
        }
    }
    qsort(t->e, t->n, sizeof(*t->e), us_cmp);
    return 0;
}

/* The DiT tensor that module `mod` (original or diffusers name) and class
 * `cls` change; 1 and *naming set when there is one. */
static int lookup(const vd_ckpt *ck, const char *mod, int cls, char *target, int *naming)
{
    char nm[NAME_MAX_LEN + 16], cn[NAME_MAX_LEN + 16];
    for (int pass = 0; pass < 2; pass++) {
        /* a delta may name a parameter itself (blocks.N.modulation) */
        for (int param = 0; param < (cls == C_DIFF ? 2 : 1); param++) {
            snprintf(nm, sizeof(nm), "%s%s", mod,
                     param ? "" : cls == C_DIFF_B ? ".bias" : ".weight");
            const char *name = nm;
            if (pass == 1) {
                if (!vd_dit_key_from_diffusers(nm, cn, sizeof(cn)))
                    continue;
                name = cn;
            }
            if (strlen(name) < NAME_MAX_LEN && vd_ckpt_find(ck, name)) {
                snprintf(target, NAME_MAX_LEN, "%s", name);
                *naming = pass ? N_DIFFUSERS : N_ORIG;
                return 1;
            }
        }
    }
    return 0;
}

/* Finds what item `it` changes: the longest tail of its base that names a
 * module of the DiT. */
static int resolve(const vd_ckpt *ck, const us_table *us, item *it, int *naming)
{
    const char *b = it->base;
    for (size_t s = 0; b[s];) {
        if (lookup(ck, b + s, it->cls, it->target, naming)) {
            it->prefix_len = s;
            return 1;
        }
        const char *dot = strchr(b + s, '.');
        if (!dot)
            break;
        s = (size_t)(dot - b) + 1;
    }
    /* kohya's names: no dots, one of these prefixes, then the whole module
     * name (a tail of it could be another model's: SD's
     * "..._transformer_blocks_0_attn1_to_q") */
    static const char *const us_prefixes[] = { "lora_unet_", "lora_transformer_", "lycoris_",
                                               "diffusion_model_", "transformer_", "" };
    if (strchr(b, '.'))
        return 0;
    for (size_t k = 0; k < VD_ARRAY_SIZE(us_prefixes); k++) {
        size_t pl = strlen(us_prefixes[k]);
        if (strncmp(b, us_prefixes[k], pl))
            continue;
        us_entry key = { .us = (char *)(uintptr_t)(b + pl) };
        const us_entry *e = bsearch(&key, us->e, us->n, sizeof(*us->e), us_cmp);
        if (e && lookup(ck, e->mod, it->cls, it->target, naming)) {
            *naming = N_UNDERSCORE;
            it->prefix_len = pl;
            return 1;
        }
    }
    return 0;
}

static void shape_str(const vt_tensor *t, char *out, size_t sz)
{
    size_t o = (size_t)snprintf(out, sz, "[");
    for (int i = 0; i < t->ndim && o < sz; i++)
        o += (size_t)snprintf(out + o, sz - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < sz)
        snprintf(out + o, sz - o, "]");
}

static int64_t tail_elems(const vt_tensor *t, int from)
{
    int64_t n = 1;
    for (int i = from; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* Groups a file's tensors into items (one per module and class). */
static int collect(lfile *f, vd_log *lg)
{
    size_t n = vd_ckpt_count(f->ck);
    f->it = calloc(n ? n : 1, sizeof(*f->it));
    if (!f->it)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const vt_tensor *t = vd_ckpt_at(f->ck, i);
        size_t nl = strlen(t->name);
        int s = -1;
        for (size_t k = 0; k < VD_ARRAY_SIZE(suffixes) && s < 0; k++)
            if (ends_with(t->name, nl, suffixes[k].suffix))
                s = (int)k;
        if (s < 0) {
            if (!f->n_unknown++)
                f->first_unmatched = t->name;
            continue;
        }
        int kind = suffixes[s].kind;
        f->styles |= suffixes[s].style;
        f->kinds |= 1 << kind;
        size_t bl = nl - strlen(suffixes[s].suffix);
        char base[NAME_MAX_LEN];
        if (bl + 16 >= sizeof(base))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor name '%.80s...' too long", f->path,
                          t->name);
        /* a block's modulation delta: "<block>.diff_m" */
        snprintf(base, sizeof(base), "%.*s%s", (int)bl, t->name,
                 kind == K_DIFF_M ? (memchr(t->name, '.', bl) ? ".modulation" : "_modulation") : "");
        int cls = kind == K_DIFF_B ? C_DIFF_B : kind == K_DIFF || kind == K_DIFF_M ? C_DIFF : C_PAIR;
        if (kind == K_DIFF_M)
            kind = K_DIFF;
        item *it = NULL;
        for (size_t j = f->n_it; j-- > 0 && !it;)
            if (f->it[j].cls == cls && !strcmp(f->it[j].base, base))
                it = &f->it[j];
        if (!it) {
            it = &f->it[f->n_it++];
            snprintf(it->base, sizeof(it->base), "%s", base);
            it->cls = cls;
        }
        if (it->t[kind])
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same entry",
                          f->path, it->t[kind]->name, t->name);
        if (!vd_tensor_is_float(t))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: tensor '%s' is %s, not a float type", f->path,
                          t->name, vt_dtype_name(t->dtype));
        it->t[kind] = t;
    }
    return 0;
}

/* "lora_down/lora_up + alpha + diff, original names under 'diffusion_model.'" */
static void describe(const lfile *f, char *out, size_t sz)
{
    size_t o = 0;
#define PUT(...) (o < sz ? (o += (size_t)snprintf(out + o, sz - o, __VA_ARGS__)) : o)
    if (f->styles & ST_DOWNUP)
        PUT("lora_down/lora_up");
    if (f->styles & ST_AB)
        PUT("%slora_A/lora_B", f->styles & ST_DOWNUP ? " and " : "");
    if (f->kinds & (1 << K_ALPHA))
        PUT(" + alpha");
    const char *d[] = { "diff", "diff_b", "diff_m" };
    int dk[] = { K_DIFF, K_DIFF_B, K_DIFF_M }, nd = 0;
    for (int i = 0; i < 3; i++)
        if (f->kinds & (1 << dk[i]))
            PUT("%s%s", nd++ ? "/" : (f->styles ? " + " : ""), d[i]);
    if (!f->styles && !nd)
        PUT("no LoRA tensors");
    if (f->namings) {
        PUT(", %s%s%s names", f->namings & N_ORIG ? "original" : "",
            (f->namings & N_ORIG) && (f->namings & (N_DIFFUSERS | N_UNDERSCORE)) ? "/" : "",
            f->namings & N_DIFFUSERS ? "diffusers" : f->namings & N_UNDERSCORE ? "kohya" : "");
        if (f->prefix[0])
            PUT(" under '%s'", f->prefix);
    }
    if (f->rank_hi > 0) {
        if (f->rank_lo == f->rank_hi)
            PUT(", rank %lld", (long long)f->rank_hi);
        else
            PUT(", rank %lld..%lld", (long long)f->rank_lo, (long long)f->rank_hi);
    }
#undef PUT
}

/* Other architectures' LoRAs, told by a name they all carry. */
static const char *foreign_hint(const lfile *f)
{
    static const struct {
        const char *part, *what;
    } hints[] = {
        { "double_blocks", "Flux or HunyuanVideo" },
        { "single_blocks", "Flux or HunyuanVideo" },
        { "single_transformer_blocks", "Flux" },
        { "transformer_blocks", "a DiT with transformer_blocks (Flux, SD3, CogVideoX, LTX-Video...)" },
        { "input_blocks", "a Stable Diffusion UNet" },
        { "down_blocks", "a Stable Diffusion UNet" },
        { "lora_te", "a text encoder" },
        { "text_model", "a text encoder" },
        { "layers", "a language model or text encoder" },
    };
    for (size_t i = 0; i < VD_ARRAY_SIZE(hints); i++)
        for (size_t j = 0; j < vd_ckpt_count(f->ck); j++)
            if (strstr(vd_ckpt_at(f->ck, j)->name, hints[i].part))
                return hints[i].what;
    return NULL;
}

/* Resolves the items, keeps one prefix, checks every shape. */
static int check(const vd_ckpt *dit, const us_table *us, lfile *f, vd_log *lg)
{
    size_t n_match = 0;
    for (size_t i = 0; i < f->n_it; i++) {
        item *it = &f->it[i];
        /* an alpha alone changes nothing: left out like a name that matches nothing */
        if (it->cls == C_PAIR && !it->t[K_DOWN] && !it->t[K_UP])
            continue;
        if (resolve(dit, us, it, &it->naming)) {
            it->matched = 1;
            n_match++;
        }
    }
    if (!f->styles && !(f->kinds & ~(1 << K_ALPHA)))
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "LoRA %s: not a LoRA file: none of its %zu tensors is a lora_down/lora_up, "
                      "lora_A/lora_B or diff entry (e.g. '%.60s')",
                      f->path, vd_ckpt_count(f->ck),
                      vd_ckpt_count(f->ck) ? vd_ckpt_at(f->ck, 0)->name : "");
    if (!n_match) {
        char lay[160];
        describe(f, lay, sizeof(lay));
        const char *hint = foreign_hint(f);
        const char *first = vd_ckpt_count(f->ck) ? vd_ckpt_at(f->ck, 0)->name : "";
        const char *names = !strncmp(first, "lora_unet_", 10) || !strncmp(first, "lora_te", 7) ||
                                    !strncmp(first, "lycoris_", 8)
                                ? " in kohya's naming"
                            : strstr(first, "diffusion_model.") ? " in ComfyUI's naming"
                            : strstr(first, "transformer.") || strstr(first, "base_model.")
                                ? " in diffusers/PEFT's naming"
                                : "";
        return vd_err(lg, VDIT_ERR_FORMAT,
                      "LoRA %s: no key names a tensor of this Wan DiT (%zu tensors, %s%s; e.g. "
                      "'%.60s'): a LoRA for %s",
                      f->path, vd_ckpt_count(f->ck), lay, names, first,
                      hint ? hint : "another architecture");
    }
    /* one prefix; a file with several models' LoRAs merges the generator's */
    const item *p0 = NULL, *pgen = NULL;
    int several = 0;
    for (size_t i = 0; i < f->n_it; i++) {
        const item *it = &f->it[i];
        if (!it->matched)
            continue;
        if (!p0)
            p0 = it;
        else if (it->prefix_len != p0->prefix_len ||
                 memcmp(it->base, p0->base, it->prefix_len))
            several = 1;
        if (!pgen && !strncmp(it->base, "generator", 9))
            pgen = it;
    }
    const item *keep = p0;
    if (several) {
        if (!pgen) {
            const item *other = NULL;
            for (size_t i = 0; i < f->n_it && !other; i++)
                if (f->it[i].matched && (f->it[i].prefix_len != p0->prefix_len ||
                                         memcmp(f->it[i].base, p0->base, p0->prefix_len)))
                    other = &f->it[i];
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "LoRA %s: tensors under several prefixes ('%.*s', '%.*s'): LoRAs for "
                          "more than one model in one file",
                          f->path, (int)p0->prefix_len, p0->base, (int)other->prefix_len,
                          other->base);
        }
        keep = pgen;
    }
    snprintf(f->prefix, sizeof(f->prefix), "%.*s", (int)keep->prefix_len, keep->base);
    size_t dropped = 0;
    for (size_t i = 0; i < f->n_it; i++) {
        item *it = &f->it[i];
        if (it->matched && (it->prefix_len != keep->prefix_len ||
                            memcmp(it->base, keep->base, keep->prefix_len))) {
            it->matched = 0;
            dropped++;
        }
    }
    if (dropped)
        vd_logf(lg, VDIT_LOG_INFO, "LoRA %s: %zu entries under other prefixes than '%s' left out",
                f->path, dropped, f->prefix);
    for (size_t i = 0; i < f->n_it; i++) {
        item *it = &f->it[i];
        if (!it->matched) {
            if (!f->n_unmatched++ && !f->first_unmatched)
                f->first_unmatched = it->base;
            continue;
        }
        f->namings |= it->naming;
        for (size_t j = 0; j < i; j++)
            if (f->it[j].matched && !strcmp(f->it[j].target, it->target))
                return vd_err(lg, VDIT_ERR_FORMAT, "LoRA %s: '%s' and '%s' both change '%s'",
                              f->path, f->it[j].base, it->base, it->target);
        const vt_tensor *w = vd_ckpt_find(dit, it->target);
        char ws[96], ts[96], us_[96];
        shape_str(w, ws, sizeof(ws));
        if (w->dtype != VT_F32 && w->dtype != VT_F16 && w->dtype != VT_BF16 &&
            w->dtype != VT_F8_E4M3 && w->dtype != VT_F8_E5M2)
            return vd_err(lg, VDIT_ERR_UNSUPPORTED, "LoRA %s: the DiT's '%s' is %s: cannot merge",
                          f->path, it->target, vt_dtype_name(w->dtype));
        if (it->cls != C_PAIR) {
            const vt_tensor *d = it->t[it->cls == C_DIFF_B ? K_DIFF_B : K_DIFF];
            shape_str(d, ts, sizeof(ts));
            if (vt_nelem(d) != vt_nelem(w) || (d->ndim && w->ndim && d->shape[d->ndim - 1] !=
                                                                     w->shape[w->ndim - 1]))
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "LoRA %s: '%s' is %s but the DiT's '%s' is %s: a LoRA for another "
                              "model (size or architecture)",
                              f->path, d->name, ts, it->target, ws);
            continue;
        }
        const vt_tensor *dn = it->t[K_DOWN], *up = it->t[K_UP], *al = it->t[K_ALPHA];
        if (!dn || !up)
            return vd_err(lg, VDIT_ERR_FORMAT, "LoRA %s: '%s' has %s but no %s", f->path,
                          it->base, dn ? "a down (A) matrix" : "an up (B) matrix",
                          dn ? "up (B) matrix" : "down (A) matrix");
        shape_str(dn, ts, sizeof(ts));
        shape_str(up, us_, sizeof(us_));
        int64_t rank = dn->ndim >= 2 ? dn->shape[0] : 0;
        if (dn->ndim < 2 || up->ndim < 2 || rank < 1 || up->shape[1] != rank ||
            tail_elems(up, 2) != 1)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "LoRA %s: '%s': down %s and up %s do not make a low-rank pair", f->path,
                          it->base, ts, us_);
        if (w->ndim < 2 || up->shape[0] != w->shape[0] || tail_elems(dn, 1) != tail_elems(w, 1))
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "LoRA %s: '%s' (up %s, down %s) is for another shape than the DiT's "
                          "'%s' %s: a LoRA for another model (size or architecture)",
                          f->path, it->base, us_, ts, it->target, ws);
        if (al && vt_nelem(al) != 1)
            return vd_err(lg, VDIT_ERR_FORMAT, "LoRA %s: alpha '%s' has %lld values (one expected)",
                          f->path, al->name, (long long)vt_nelem(al));
        if (!f->rank_hi || rank < f->rank_lo)
            f->rank_lo = rank;
        if (rank > f->rank_hi)
            f->rank_hi = rank;
    }
    return 0;
}

/* Tiles of the product: LR rows x LJ columns of fp64 sums (8 KB, in L1)
 * while the LJ-column strip of down (r x LJ, in L2) serves every row. The
 * order of the sum over the rank is the same in every tiling. */
#define LR 4
#define LJ 256

/* w [rows, cols] += c * (up [rows, r] @ down [r, cols]), fp64 as above;
 * dn is down widened to fp64. */
static int merge_pair(float *w, int64_t rows, int64_t cols, const float *up, const double *dn,
                      int64_t r, double c, int n_threads)
{
    int nt = n_threads > 1 && (double)rows * (double)cols * (double)r >= (double)(1 << 20)
                 ? n_threads
                 : 1;
    (void)nt;
    const int64_t n_jt = (cols + LJ - 1) / LJ, n_it = (rows + LR - 1) / LR;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static) collapse(2)
#endif
    for (int64_t jt = 0; jt < n_jt; jt++) {
        for (int64_t it = 0; it < n_it; it++) {
            double acc[LR][LJ];
            const int64_t j0 = jt * LJ, nj = VD_MIN(LJ, cols - j0);
            const int64_t i0 = it * LR, ni = VD_MIN(LR, rows - i0);
            for (int64_t a = 0; a < LR; a++)
                for (int64_t j = 0; j < LJ; j++)
                    acc[a][j] = 0;
            for (int64_t k = 0; k < r; k++) {
                double u[LR];
                for (int64_t a = 0; a < LR; a++)
                    u[a] = a < ni ? up[(i0 + a) * r + k] : 0;
                const double *d = dn + k * cols + j0;
                for (int64_t j = 0; j < nj; j++) {
                    const double dj = d[j];
                    /* exact products: fused or not, the same sums */
                    acc[0][j] += u[0] * dj;
                    acc[1][j] += u[1] * dj;
                    acc[2][j] += u[2] * dj;
                    acc[3][j] += u[3] * dj;
                }
            }
            for (int64_t a = 0; a < ni; a++) {
                /* c * sum is rounded before it is added, as numpy does: a
                 * loop of its own, so no compiler fuses the two into one
                 * multiply-add */
                for (int64_t j = 0; j < nj; j++)
                    acc[a][j] *= c;
                float *wr = w + (i0 + a) * cols + j0;
                for (int64_t j = 0; j < nj; j++)
                    wr[j] = (float)((double)wr[j] + acc[a][j]);
            }
        }
    }
    return 0;
}

static int merge_item(const lfile *f, const item *it, float *w, const vt_tensor *wt, int n_threads,
                      vd_log *lg)
{
    if (it->cls != C_PAIR) {
        const vt_tensor *dt = it->t[it->cls == C_DIFF_B ? K_DIFF_B : K_DIFF];
        float *d = vd_tensor_f32(dt);
        if (!d)
            return vd_err(lg, VDIT_ERR_NOMEM, "LoRA %s: out of memory", f->path);
        int64_t n = vt_nelem(dt);
        for (int64_t j = 0; j < n; j++)
            w[j] = (float)((double)w[j] + (double)f->scale * (double)d[j]);
        vd_free(d);
        return 0;
    }
    const vt_tensor *dn = it->t[K_DOWN], *up = it->t[K_UP], *al = it->t[K_ALPHA];
    int64_t r = dn->shape[0];
    double alpha = (double)r;
    if (al) {
        float *a = vd_tensor_f32(al);
        if (!a)
            return vd_err(lg, VDIT_ERR_NOMEM, "LoRA %s: out of memory", f->path);
        alpha = a[0];
        vd_free(a);
    }
    float *u = vd_tensor_f32(up), *d = vd_tensor_f32(dn);
    int64_t nd = vt_nelem(dn);
    double *d64 = d ? vd_malloc((size_t)nd * sizeof(double)) : NULL;
    for (int64_t j = 0; d64 && j < nd; j++)
        d64[j] = d[j];
    int ret = u && d64 ? merge_pair(w, wt->shape[0], tail_elems(wt, 1), u, d64, r,
                                    (double)f->scale * (alpha / (double)r), n_threads)
                       : VDIT_ERR_NOMEM;
    vd_free(u);
    vd_free(d);
    vd_free(d64);
    if (ret)
        return vd_err(lg, ret, "LoRA %s: out of memory merging '%s'", f->path, it->target);
    return 0;
}

/* Merges every file's items that change `target` into an owned copy that
 * replaces it in ck. */
static int merge_target(vd_ckpt *ck, const char *target, const lfile *fs, int n, int n_threads,
                        vd_log *lg)
{
    const vt_tensor *w = vd_ckpt_find(ck, target);
    vt_tensor wide;
    vd_owned tmp = { 0 };
    const vt_tensor *src = w;
    int ret = vd_ckpt_widen_f8(ck, lg, target, &tmp, &src, &wide);
    if (ret)
        return ret;
    float *w32 = vd_tensor_f32(src);
    vd_owned_free(&tmp);
    if (!w32)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for the LoRA-merged '%s'", target);
    for (int k = 0; k < n && !ret; k++)
        for (size_t i = 0; i < fs[k].n_it && !ret; i++)
            if (fs[k].it[i].matched && !strcmp(fs[k].it[i].target, target))
                ret = merge_item(&fs[k], &fs[k].it[i], w32, w, n_threads, lg);
    if (ret) {
        vd_free(w32);
        return ret;
    }
    if (w->dtype == VT_F32)
        return vd_ckpt_replace(ck, target, VT_F32, w32, w32, lg);
    int64_t ne = vt_nelem(w);
    uint16_t *h = vd_malloc((size_t)(ne ? ne : 1) * 2);
    if (!h) {
        vd_free(w32);
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory for the LoRA-merged '%s'", target);
    }
    vt_dtype dt = w->dtype == VT_F16 ? VT_F16 : VT_BF16;
    for (int64_t j = 0; j < ne; j++)
        h[j] = dt == VT_F16 ? vt_f32_to_f16(w32[j]) : vt_f32_to_bf16(w32[j]);
    vd_free(w32);
    return vd_ckpt_replace(ck, target, dt, h, h, lg);
}

/* Checks every set of fs (path, scale and ck filled) against ck, then
 * merges them. */
static int merge_sets(vd_ckpt *ck, lfile *fs, int n, int n_threads, vd_log *lg)
{
    us_table us = { 0 };
    char **targets = NULL;
    size_t n_targets = 0;
    int ret = us_build(ck, &us, lg);
    if (ret)
        goto done;
    /* check every file before changing anything */
    for (int k = 0; k < n; k++) {
        lfile *f = &fs[k];
        if ((ret = collect(f, lg)) || (ret = check(ck, &us, f, lg)))
            goto done;
        char lay[200];
        describe(f, lay, sizeof(lay));
        size_t n_match = 0;
        for (size_t i = 0; i < f->n_it; i++)
            n_match += f->it[i].matched;
        vd_logf(lg, VDIT_LOG_INFO, "LoRA %s (scale %g): %s; %zu tensors changed", f->path,
                (double)f->scale, lay, n_match);
        if (f->n_unmatched || f->n_unknown)
            vd_logf(lg, VDIT_LOG_WARNING,
                    "LoRA %s: %zu entries name nothing in this DiT and are left out (first: '%s')",
                    f->path, f->n_unmatched + f->n_unknown, f->first_unmatched);
    }
    /* the tensors to change, in the DiT's order */
    targets = calloc(vd_ckpt_count(ck) + 1, sizeof(*targets));
    if (!targets) {
        ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t t = 0; t < vd_ckpt_count(ck); t++) {
        const char *name = vd_ckpt_at(ck, t)->name;
        int used = 0;
        for (int k = 0; k < n && !used; k++)
            for (size_t i = 0; i < fs[k].n_it && !used; i++)
                used = fs[k].scale != 0 && fs[k].it[i].matched &&
                       !strcmp(fs[k].it[i].target, name);
        if (used && !(targets[n_targets++] = strdup(name))) {
            ret = vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    /* a scale of 0 changes nothing: such files were only checked */
    for (int k = 0; k < n; k++)
        if (fs[k].scale == 0)
            for (size_t i = 0; i < fs[k].n_it; i++)
                fs[k].it[i].matched = 0;
    double t0 = vd_time();
    for (size_t t = 0; t < n_targets && !ret; t++)
        ret = merge_target(ck, targets[t], fs, n, n_threads, lg);
    if (!ret && n_targets)
        vd_logf(lg, VDIT_LOG_INFO, "LoRA: %zu weights merged in %.2f s", n_targets,
                vd_time() - t0);
done:
    for (size_t t = 0; targets && t < n_targets; t++)
        free(targets[t]);
    free(targets);
    us_free(&us);
    for (int k = 0; k < n; k++) {
        free(fs[k].it);
        fs[k].it = NULL;
        fs[k].n_it = 0;
    }
    return ret;
}

int vd_dit_merge_loras(vd_ckpt *ck, const vdit_lora *loras, int n, int n_threads, vd_log *lg)
{
    if (n <= 0)
        return 0;
    if (!ck || !loras)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_merge_loras: no checkpoint or LoRA list");
    lfile *fs = calloc((size_t)n, sizeof(*fs));
    if (!fs)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    int ret = 0;
    for (int k = 0; k < n && !ret; k++) {
        lfile *f = &fs[k];
        f->path = loras[k].path;
        f->scale = loras[k].scale;
        if (!f->path || !isfinite(f->scale)) {
            ret = vd_err(lg, VDIT_ERR_INVALID_ARG, "LoRA %d: %s", k,
                         f->path ? "the scale is not a finite number" : "no path");
        } else if ((ret = vd_ckpt_open(f->path, lg, &f->ck))) {
            char m[sizeof(lg->msg)];
            snprintf(m, sizeof(m), "%s", lg ? lg->msg : "");
            ret = vd_err(lg, ret, "LoRA: %s", m);
        }
    }
    if (!ret)
        ret = merge_sets(ck, fs, n, n_threads, lg);
    for (int k = 0; k < n; k++)
        vd_ckpt_free(&fs[k].ck);
    free(fs);
    return ret;
}

int vd_dit_merge_lora_sets(vd_ckpt *ck, vd_ckpt *const *sets, const char *const *labels,
                           const float *scales, int n, int n_threads, vd_log *lg)
{
    if (n <= 0)
        return 0;
    if (!ck || !sets || !labels || !scales)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_merge_lora_sets: missing argument");
    lfile *fs = calloc((size_t)n, sizeof(*fs));
    if (!fs)
        return vd_err(lg, VDIT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        fs[k].path = labels[k];
        fs[k].scale = isfinite(scales[k]) ? scales[k] : 0;
        fs[k].ck = sets[k];
    }
    int ret = merge_sets(ck, fs, n, n_threads, lg);
    free(fs);
    return ret;
}

int vd_lora_describe(const vd_ckpt *c, char *out, size_t outsz)
{
    lfile f = { .path = vd_ckpt_label(c), .ck = (vd_ckpt *)(uintptr_t)c };
    out[0] = 0;
    if (collect(&f, NULL) || !(f.styles || (f.kinds & ~(1 << K_ALPHA)))) {
        free(f.it);
        return 0;
    }
    /* without a DiT: the names' style from their words, the prefix before
     * the first "blocks", the width from a self-attention pair */
    int64_t dim = 0, n_blocks = 0;
    const char *pfx_of = NULL;
    size_t pfx_len = 0;
    for (size_t i = 0; i < f.n_it; i++) {
        const item *it = &f.it[i];
        const char *b = it->base, *bl = strstr(b, "blocks");
        if (strstr(b, "attn1") || strstr(b, "to_q") || strstr(b, "proj_out") ||
            strstr(b, "condition_embedder") || strstr(b, "ffn_net") || strstr(b, "ffn.net"))
            f.namings |= N_DIFFUSERS;
        else if (strstr(b, "self_attn") || strstr(b, "cross_attn") || strstr(b, "ffn"))
            f.namings |= strchr(b, '.') ? N_ORIG : N_UNDERSCORE;
        if (bl && !pfx_of) {
            pfx_of = b;
            pfx_len = (size_t)(bl - b);
        }
        if (bl) {
            int64_t k = strtoll(bl + 7, NULL, 10);
            if (k + 1 > n_blocks && k < 100000)
                n_blocks = k + 1;
        }
        if (it->t[K_UP] && it->t[K_DOWN] && it->t[K_DOWN]->ndim >= 2) {
            int64_t r = it->t[K_DOWN]->shape[0];
            if (!f.rank_hi || r < f.rank_lo)
                f.rank_lo = r;
            if (r > f.rank_hi)
                f.rank_hi = r;
            if (!dim && (strstr(b, "self_attn") || strstr(b, "attn1")) && it->t[K_UP]->ndim >= 1)
                dim = it->t[K_UP]->shape[0];
        }
    }
    if (pfx_of)
        snprintf(f.prefix, sizeof(f.prefix), "%.*s", (int)pfx_len, pfx_of);
    char lay[200];
    describe(&f, lay, sizeof(lay));
    size_t o = (size_t)snprintf(out, outsz, "%s; %zu entries", lay, f.n_it);
    if (n_blocks && o < outsz)
        o += (size_t)snprintf(out + o, outsz - o, " over %lld blocks", (long long)n_blocks);
    if (dim && o < outsz)
        o += (size_t)snprintf(out + o, outsz - o, ", for a DiT of width %lld%s", (long long)dim,
                              dim == 1536   ? " (Wan2.1 1.3B)"
                              : dim == 5120 ? " (Wan 14B)"
                              : dim == 3072 ? " (Wan2.2 TI2V-5B)"
                                            : "");
    if (f.n_unknown && o < outsz)
        snprintf(out + o, outsz - o, "; %zu other tensors (first '%s')", f.n_unknown,
                 f.first_unmatched);
    free(f.it);
    return 1;
}

/* The list syntax of the vdit command, the FFmpeg option and the GStreamer
 * property (vdit.h); here, beside the reader, so the fuzz build has it. */
int vdit_lora_parse(const char *spec, vdit_lora *out, int max, char *buf, size_t buf_size)
{
    if (!spec || !*spec)
        return 0;
    if (!out || !buf || strlen(spec) + 1 > buf_size)
        return VDIT_ERR_INVALID_ARG;
    memcpy(buf, spec, strlen(spec) + 1);
    int n = 0;
    for (char *e = buf;;) {
        char *bar = strchr(e, '|');
        if (bar)
            *bar = 0;
        if (!*e || n >= max)
            return VDIT_ERR_INVALID_ARG;
        float scale = 1.0f;
        char *colon = strrchr(e, ':');
        if (colon && colon[1]) {
            char *end;
            double v = strtod(colon + 1, &end);
            if (!*end) {
                /* finite as the float it is stored in (1e55 is a finite
                 * double and an infinite float) */
                if (!isfinite(v) || !isfinite((float)v) || colon == e)
                    return VDIT_ERR_INVALID_ARG;
                scale = (float)v;
                *colon = 0;
            }
        }
        out[n].path = e;
        out[n].scale = scale;
        n++;
        if (!bar)
            return n;
        e = bar + 1;
    }
}
