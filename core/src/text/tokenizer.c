/*
 * SentencePiece unigram tokenizer (the kind umT5's spiece.model is).
 *
 * The aim is byte-for-byte the ids SentencePiece (0.1.9x, the optimised
 * unigram encoder) produces, so every step mirrors its behaviour:
 *
 *  1. Normalisation, one "prefix" at a time: user-defined symbols first
 *     (longest match, copied verbatim), then the precompiled charsmap (a
 *     Darts double-array trie whose values index NUL-terminated replacement
 *     strings; longest match), else one UTF-8 character (a malformed byte
 *     becomes U+FFFD and consumes one byte). Leading whitespace is dropped,
 *     runs of spaces collapse, trailing "▁" are dropped
 *     (remove_extra_whitespaces), a dummy "▁" goes in front
 *     (add_dummy_prefix) and spaces become U+2581 (escape_whitespaces).
 *  2. Viterbi over the normalised bytes. Scores are accumulated exactly as
 *     SentencePiece does (float storage, the candidate sum in double, unknown
 *     characters as float), because ties and near-ties decide ids.
 *     User-defined pieces score len*max_score - 0.1 so they always win.
 *  3. Unknown pieces become their UTF-8 bytes (<0xNN> pieces) with byte
 *     fallback; without it, a run of unknowns is one <unk>.
 *
 * The model file is parsed here (protobuf, a handful of fields) or, for the
 * HF tokenizer.json form, mapped onto the same settings.
 */
#define _GNU_SOURCE /* qsort_r */
#include <float.h>
#include <stdio.h>
#include <string.h>

#include "../json.h"
#include "text.h"

enum {
    PT_NORMAL = 1,
    PT_UNKNOWN = 2,
    PT_CONTROL = 3,
    PT_USER = 4,
    PT_UNUSED = 5,
    PT_BYTE = 6,
};

/* A byte trie with the children of each node contiguous and sorted. */
typedef struct trie {
    int32_t *value;   /* [n_nodes] piece id or -1 */
    uint32_t *first;  /* [n_nodes] first edge */
    uint16_t *n_kids; /* [n_nodes] */
    uint8_t *label;   /* [n_edges] */
    uint32_t *child;  /* [n_edges] */
    size_t n_nodes;
} trie;

typedef struct piece {
    uint32_t off, len; /* in vd_tok.strs */
    float score;
    uint8_t type;
} piece;

struct vd_tok {
    int n;
    piece *p;
    char *strs;
    int unk_id, eos_id, pad_id;
    int byte_fallback;
    int32_t byte_id[256];
    float min_score, max_score;
    trie pieces; /* NORMAL, USER_DEFINED, UNUSED */
    trie user;   /* USER_DEFINED only (normaliser prefix matcher) */
    /* normaliser */
    int add_dummy_prefix, remove_ws, escape_ws, ws_suffix;
    uint32_t *da; /* double array units (copied, aligned) */
    size_t n_da;
    char *nstr;   /* replacement strings blob */
    size_t nstr_len;
};

/* ---- small helpers ------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_put(buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static inline const char *pstr(const vd_tok *t, int id)
{
    return t->strs + t->p[id].off;
}

/* Lead-byte length as SentencePiece's OneCharLen (no validation). */
static inline size_t one_char_len(uint8_t c)
{
    static const uint8_t l[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return l[c >> 4];
}

static inline int is_trail(uint8_t c)
{
    return (c & 0xc0) == 0x80;
}

static inline int valid_cp(uint32_t c)
{
    return c < 0xd800 || (c >= 0xe000 && c <= 0x10ffff);
}

/* SentencePiece's DecodeUTF8 + IsValidDecodeUTF8: 1 if a valid character of
 * *mb bytes starts at s (U+FFFD written literally counts as valid). */
static int utf8_valid(const uint8_t *s, size_t n, size_t *mb)
{
    *mb = 1;
    if (s[0] < 0x80)
        return 1;
    if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
        uint32_t c = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
        if (is_trail(s[1]) && c >= 0x80 && valid_cp(c)) {
            *mb = 2;
            return 1;
        }
    } else if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
        uint32_t c = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) |
                     (s[2] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && c >= 0x800 && valid_cp(c)) {
            *mb = 3;
            return 1;
        }
    } else if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
        uint32_t c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
                     ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && c >= 0x10000 &&
            valid_cp(c)) {
            *mb = 4;
            return 1;
        }
    }
    return 0;
}

/* ---- trie ----------------------------------------------------------------- */

static void trie_free(trie *t)
{
    free(t->value);
    free(t->first);
    free(t->n_kids);
    free(t->label);
    free(t->child);
    memset(t, 0, sizeof(*t));
}

static int cmp_piece(const void *a, const void *b, void *ctx)
{
    const vd_tok *t = ctx;
    const piece *x = &t->p[*(const int32_t *)a], *y = &t->p[*(const int32_t *)b];
    size_t n = VD_MIN(x->len, y->len);
    int c = memcmp(t->strs + x->off, t->strs + y->off, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1;
}

/* Builds a trie over pieces ids[0..n) (sorted by cmp_piece, no duplicates).
 * First a first-child/next-sibling tree (sorted insertion means a matching
 * child is always the last one added), then a breadth-first layout so every
 * node's children are contiguous. Iterative: piece length is not bounded. */
static int trie_build(trie *tr, const vd_tok *t, const int32_t *ids, size_t n)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += t->p[ids[i]].len;
    int32_t *val = malloc(total * sizeof(int32_t));
    uint32_t *fc = malloc(total * sizeof(uint32_t)), *ns = malloc(total * sizeof(uint32_t)),
             *lc = malloc(total * sizeof(uint32_t)), *order = malloc(total * sizeof(uint32_t)),
             *newidx = malloc(total * sizeof(uint32_t));
    uint8_t *lab = malloc(total);
    int rc = -1;
    memset(tr, 0, sizeof(*tr));
    if (!val || !fc || !ns || !lc || !order || !newidx || !lab)
        goto done;
    size_t nn = 1;
    val[0] = -1;
    fc[0] = ns[0] = lc[0] = UINT32_MAX;
    lab[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = (const uint8_t *)pstr(t, ids[i]);
        uint32_t node = 0;
        for (uint32_t k = 0; k < t->p[ids[i]].len; k++) {
            uint32_t c = lc[node];
            if (c != UINT32_MAX && lab[c] == s[k]) {
                node = c;
                continue;
            }
            uint32_t m = (uint32_t)nn++;
            val[m] = -1;
            fc[m] = ns[m] = lc[m] = UINT32_MAX;
            lab[m] = s[k];
            if (c == UINT32_MAX)
                fc[node] = m;
            else
                ns[c] = m;
            lc[node] = m;
            node = m;
        }
        val[node] = ids[i];
    }
    /* breadth-first order */
    size_t head = 0, tail = 0;
    order[tail++] = 0;
    while (head < tail) {
        uint32_t v = order[head++];
        for (uint32_t c = fc[v]; c != UINT32_MAX; c = ns[c])
            order[tail++] = c;
    }
    for (size_t i = 0; i < nn; i++)
        newidx[order[i]] = (uint32_t)i;
    tr->n_nodes = nn;
    tr->value = malloc(nn * sizeof(int32_t));
    tr->first = malloc(nn * sizeof(uint32_t));
    tr->n_kids = malloc(nn * sizeof(uint16_t));
    tr->label = malloc(nn);
    tr->child = malloc(nn * sizeof(uint32_t));
    if (!tr->value || !tr->first || !tr->n_kids || !tr->label || !tr->child)
        goto done;
    size_t ne = 0;
    for (size_t i = 0; i < nn; i++) {
        uint32_t v = order[i];
        tr->value[i] = val[v];
        tr->first[i] = (uint32_t)ne;
        uint16_t k = 0;
        for (uint32_t c = fc[v]; c != UINT32_MAX; c = ns[c], k++) {
            tr->label[ne] = lab[c];
            tr->child[ne++] = newidx[c];
        }
        tr->n_kids[i] = k;
    }
    rc = 0;
done:
    free(val);
    free(fc);
    free(ns);
    free(lc);
    free(order);
    free(newidx);
    free(lab);
    if (rc)
        trie_free(tr);
    return rc;
}

/* Child of node along byte c, or -1. */
static inline int64_t trie_step(const trie *tr, uint32_t node, uint8_t c)
{
    uint32_t lo = tr->first[node], hi = lo + tr->n_kids[node];
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (tr->label[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < tr->first[node] + tr->n_kids[node] && tr->label[lo] == c)
        return tr->child[lo];
    return -1;
}

/* Length of the longest key that is a prefix of s, 0 if none. */
static size_t trie_longest(const trie *tr, const uint8_t *s, size_t n)
{
    if (!tr->n_nodes)
        return 0;
    size_t best = 0;
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t c = trie_step(tr, node, s[i]);
        if (c < 0)
            break;
        node = (uint32_t)c;
        if (tr->value[node] >= 0)
            best = i + 1;
    }
    return best;
}

/* ---- normaliser ------------------------------------------------------------ */

/* Darts-clone double-array unit accessors. */
static inline int da_has_leaf(uint32_t u)
{
    return (u >> 8) & 1;
}
static inline uint32_t da_value(uint32_t u)
{
    return u & 0x7fffffffu;
}
static inline uint32_t da_label(uint32_t u)
{
    return u & (0x80000000u | 0xffu);
}
static inline uint32_t da_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

/* Longest charsmap rule that is a prefix of s: returns its length (0 if
 * none) and the replacement's offset in the strings blob. Every index is
 * checked against the array: a corrupt map ends the search instead of
 * reading out of bounds. */
static size_t da_longest(const vd_tok *t, const uint8_t *s, size_t n, uint32_t *value)
{
    size_t best = 0;
    uint32_t id = 0;
    if (!t->n_da)
        return 0;
    id ^= da_offset(t->da[0]);
    for (size_t i = 0; i < n; i++) {
        id ^= s[i];
        if (id >= t->n_da)
            break;
        uint32_t u = t->da[id];
        if (da_label(u) != s[i])
            break;
        id ^= da_offset(u);
        if (da_has_leaf(u)) {
            if (id >= t->n_da)
                break;
            best = i + 1;
            *value = da_value(t->da[id]);
        }
    }
    return best;
}

/* One normalisation step: the normalised text of the longest prefix rule
 * at s (into *out, *out_len) and the number of input bytes it consumes. */
static size_t norm_prefix(const vd_tok *t, const uint8_t *s, size_t n, const char **out,
                          size_t *out_len)
{
    size_t m = trie_longest(&t->user, s, n);
    if (m) {
        *out = (const char *)s;
        *out_len = m;
        return m;
    }
    uint32_t v = 0;
    m = da_longest(t, s, n, &v);
    if (m) {
        if (v < t->nstr_len) {
            *out = t->nstr + v;
            *out_len = strnlen(t->nstr + v, t->nstr_len - v);
        } else {
            *out = "";
            *out_len = 0;
        }
        return m;
    }
    size_t mb;
    if (!utf8_valid(s, n, &mb)) {
        *out = "\xef\xbf\xbd";
        *out_len = 3;
        return 1;
    }
    *out = (const char *)s;
    *out_len = mb;
    return mb;
}

static const char k_ws[] = "\xe2\x96\x81"; /* U+2581 */

static int add_ws(const vd_tok *t, buf *o)
{
    return t->escape_ws ? buf_put(o, k_ws, 3) : buf_put(o, " ", 1);
}

static int normalize(const vd_tok *t, const uint8_t *s, size_t n, buf *o)
{
    const char *p;
    size_t pl;
    o->len = 0;
    if (n == 0)
        return 0;
    if (t->remove_ws) {
        while (n) {
            size_t c = norm_prefix(t, s, n, &p, &pl);
            if (!(pl == 1 && p[0] == ' '))
                break;
            s += c;
            n -= c;
        }
    }
    if (!n)
        return 0;
    if (!t->ws_suffix && t->add_dummy_prefix && add_ws(t, o))
        return -1;
    int prev_space = t->remove_ws;
    while (n) {
        size_t c = norm_prefix(t, s, n, &p, &pl);
        while (prev_space && pl && p[0] == ' ') {
            p++;
            pl--;
        }
        if (pl) {
            for (size_t k = 0; k < pl; k++) {
                int r = (t->escape_ws && p[k] == ' ') ? buf_put(o, k_ws, 3) : buf_put(o, p + k, 1);
                if (r)
                    return -1;
            }
            prev_space = p[pl - 1] == ' ';
        }
        s += c;
        n -= c;
        if (!t->remove_ws)
            prev_space = 0;
    }
    if (t->remove_ws) {
        const char *sp = t->escape_ws ? k_ws : " ";
        size_t sl = t->escape_ws ? 3 : 1;
        while (o->len >= sl && !memcmp(o->p + o->len - sl, sp, sl))
            o->len -= sl;
    }
    if (t->ws_suffix && t->add_dummy_prefix && add_ws(t, o))
        return -1;
    return 0;
}

/* ---- Viterbi -------------------------------------------------------------- */

typedef struct vnode {
    int32_t id;
    int32_t start; /* -1: not reached */
    float score;
} vnode;

typedef struct idbuf {
    int32_t *ids;
    int max, count;
} idbuf;

static inline void id_put(idbuf *b, int32_t id)
{
    if (b->count < b->max)
        b->ids[b->count] = id;
    if (b->count < INT32_MAX)
        b->count++;
}

static int viterbi(const vd_tok *t, const uint8_t *s, size_t n, idbuf *out)
{
    if (!n)
        return 0;
    if (n >= INT32_MAX)
        return VDIT_ERR_INVALID_ARG;
    vnode *best = malloc((n + 1) * sizeof(vnode));
    int32_t *path = malloc((n + 1) * sizeof(int32_t));
    if (!best || !path) {
        free(best);
        free(path);
        return VDIT_ERR_NOMEM;
    }
    for (size_t i = 0; i <= n; i++)
        best[i] = (vnode){ -1, -1, 0.0f };
    const float unk_score = t->min_score - 10.0f;
    size_t start = 0;
    while (start < n) {
        const float here = best[start].score;
        size_t mb = VD_MIN(one_char_len(s[start]), n - start);
        int single = 0;
        uint32_t node = 0;
        for (size_t k = start; k < n && t->pieces.n_nodes;) {
            int64_t c = trie_step(&t->pieces, node, s[k]);
            if (c < 0)
                break;
            node = (uint32_t)c;
            k++;
            int32_t id = t->pieces.value[node];
            if (id < 0 || t->p[id].type == PT_UNUSED)
                continue;
            size_t len = k - start;
            /* SentencePiece: `auto score = user ? len * max_score - 0.1 : score`
             * is a double; the candidate is compared and then stored as float. */
            double sc;
            if (t->p[id].type == PT_USER) {
                volatile float prod = (float)len * t->max_score;
                sc = (double)prod - 0.1;
            } else {
                sc = (double)t->p[id].score;
            }
            double cand = sc + (double)here;
            vnode *tg = &best[k];
            if (tg->start == -1 || cand > (double)tg->score) {
                tg->score = (float)cand;
                tg->start = (int32_t)start;
                tg->id = id;
            }
            if (len == mb)
                single = 1;
        }
        if (!single) {
            vnode *tg = &best[start + mb];
            float cand = unk_score + here;
            if (tg->start == -1 || cand > tg->score) {
                tg->score = cand;
                tg->start = (int32_t)start;
                tg->id = t->unk_id;
            }
        }
        start += mb;
    }
    /* backtrack: path holds the end positions of the chosen pieces, reversed */
    int np = 0;
    size_t end = n;
    while (end > 0) {
        if (best[end].start < 0 || (size_t)best[end].start >= end) {
            free(best);
            free(path);
            return VDIT_ERR_INTERNAL;
        }
        path[np++] = (int32_t)end;
        end = (size_t)best[end].start;
    }
    int prev_unk = 0;
    for (int i = np - 1; i >= 0; i--) {
        const vnode *v = &best[path[i]];
        int is_unk = v->id == t->unk_id;
        if (is_unk && t->byte_fallback) {
            for (int32_t b = v->start; b < path[i]; b++)
                id_put(out, t->byte_id[s[b]]);
        } else if (!(is_unk && prev_unk)) {
            id_put(out, v->id);
        }
        prev_unk = is_unk;
    }
    free(best);
    free(path);
    return 0;
}

/* ---- public: encode ----------------------------------------------------- */

int vd_tok_encode(const vd_tok *t, const char *text, size_t len, int32_t *ids, int max)
{
    if (!t || (!text && len) || max < 0 || (max > 0 && !ids))
        return VDIT_ERR_INVALID_ARG;
    buf nb = { 0 };
    idbuf ob = { ids, max, 0 };
    int rc = normalize(t, (const uint8_t *)text, len, &nb);
    if (rc) {
        free(nb.p);
        return VDIT_ERR_NOMEM;
    }
    rc = viterbi(t, (const uint8_t *)nb.p, nb.len, &ob);
    free(nb.p);
    if (rc)
        return rc;
    if (t->eos_id >= 0)
        id_put(&ob, t->eos_id);
    if (ob.count == INT32_MAX)
        return VDIT_ERR_INVALID_ARG;
    return ob.count;
}

int vd_tok_encode_padded(const vd_tok *t, const char *prompt, int text_len, int32_t *ids)
{
    return vd_tok_encode_padded_n(t, prompt, text_len, ids, NULL);
}

int vd_tok_encode_padded_n(const vd_tok *t, const char *prompt, int text_len, int32_t *ids,
                           int *n_tokens)
{
    if (!t || !prompt || text_len < 1 || !ids)
        return VDIT_ERR_INVALID_ARG;
    char *clean = vd_tok_clean_prompt(prompt);
    if (!clean)
        return VDIT_ERR_NOMEM;
    int n = vd_tok_encode(t, clean, strlen(clean), ids, text_len);
    free(clean);
    if (n < 0)
        return n;
    if (n_tokens)
        *n_tokens = n;
    if (n > text_len) {
        /* truncate the text, keep the end-of-sequence id last (HF's rule) */
        n = text_len;
        if (t->eos_id >= 0)
            ids[n - 1] = t->eos_id;
    }
    int32_t pad = t->pad_id >= 0 ? t->pad_id : 0;
    for (int i = n; i < text_len; i++)
        ids[i] = pad;
    return n;
}

uint64_t vd_tok_hash_ids(const int32_t *ids, int64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the little-endian ids */
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xff;
            h *= 1099511628211ull;
        }
    }
    return h ^ (uint64_t)n;
}

int vd_tok_eos_id(const vd_tok *t)
{
    return t ? t->eos_id : -1;
}

int vd_tok_pad_id(const vd_tok *t)
{
    return t ? t->pad_id : -1;
}

int vd_tok_vocab_size(const vd_tok *t)
{
    return t ? t->n : 0;
}

void vd_tok_free(vd_tok **tp)
{
    if (!tp || !*tp)
        return;
    vd_tok *t = *tp;
    free(t->p);
    free(t->strs);
    trie_free(&t->pieces);
    trie_free(&t->user);
    free(t->da);
    free(t->nstr);
    free(t);
    *tp = NULL;
}

/* ---- model setup shared by both file forms --------------------------------- */

typedef struct tok_spec {
    int model_type; /* 1 unigram */
    int byte_fallback, ws_suffix;
    int add_dummy_prefix, remove_ws, escape_ws;
    const uint8_t *charsmap;
    size_t charsmap_len;
    const char *eos_piece, *pad_piece, *unk_piece;
    size_t eos_len, pad_len, unk_len;
} tok_spec;

static int find_reserved_or_piece(const vd_tok *t, const char *s, size_t n)
{
    /* PieceToId: reserved (CONTROL/UNKNOWN/BYTE) first, then the others */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < t->n; i++) {
            int reserved = t->p[i].type == PT_CONTROL || t->p[i].type == PT_UNKNOWN ||
                           t->p[i].type == PT_BYTE;
            if (reserved == (pass == 0) && t->p[i].len == n && !memcmp(pstr(t, i), s, n))
                return i;
        }
    return -1;
}

static int byte_of_piece(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    const char *a = strchr(hex, s[3]), *b = strchr(hex, s[4]);
    if (!s[3] || !s[4] || !a || !b)
        return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

/* Validates the pieces as SentencePiece's InitializePieces does, builds the
 * tries, the byte table and the normaliser. */
static int tok_setup(vd_tok *t, const tok_spec *sp, const char *label, vd_log *lg)
{
    if (sp->model_type != 1)
        return vd_err(lg, VDIT_ERR_UNSUPPORTED,
                      "%s: SentencePiece model type %d is not unigram (only unigram is supported)",
                      label, sp->model_type);
    if (t->n <= 0)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: no pieces", label);
    t->byte_fallback = sp->byte_fallback;
    t->ws_suffix = sp->ws_suffix;
    t->add_dummy_prefix = sp->add_dummy_prefix;
    t->remove_ws = sp->remove_ws;
    t->escape_ws = sp->escape_ws;
    t->unk_id = -1;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    t->min_score = FLT_MAX;
    t->max_score = FLT_MIN; /* sic: SentencePiece starts from FLT_MIN */
    for (int i = 0; i < t->n; i++) {
        const piece *p = &t->p[i];
        if (!p->len)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: piece %d is empty", label, i);
        if (p->type < PT_NORMAL || p->type > PT_BYTE)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: piece %d has unknown type %d", label, i,
                          p->type);
        if (p->type == PT_UNKNOWN) {
            if (t->unk_id >= 0)
                return vd_err(lg, VDIT_ERR_FORMAT, "%s: more than one unknown piece", label);
            t->unk_id = i;
        }
        if (p->type == PT_BYTE) {
            if (!t->byte_fallback)
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "%s: byte piece %d found although byte_fallback is off", label, i);
            int b = byte_of_piece(pstr(t, i), p->len);
            if (b < 0)
                return vd_err(lg, VDIT_ERR_FORMAT, "%s: byte piece %d is not <0xNN>", label, i);
            t->byte_id[b] = i;
        }
        if (p->type == PT_NORMAL) {
            t->min_score = VD_MIN(t->min_score, p->score);
            t->max_score = VD_MAX(t->max_score, p->score);
        }
    }
    if (t->unk_id < 0)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: no unknown piece", label);
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return vd_err(lg, VDIT_ERR_FORMAT,
                              "%s: byte_fallback is on but piece <0x%02X> is missing", label, b);

    /* tries; duplicates within a group are an error as in SentencePiece */
    int32_t *ids = malloc((size_t)t->n * sizeof(int32_t));
    if (!ids)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
    int rc = 0;
    for (int g = 0; g < 3 && !rc; g++) {
        size_t m = 0;
        for (int i = 0; i < t->n; i++) {
            int ty = t->p[i].type;
            int normal = ty == PT_NORMAL || ty == PT_USER || ty == PT_UNUSED;
            if ((g == 0 && normal) || (g == 1 && ty == PT_USER) || (g == 2 && !normal))
                ids[m++] = i;
        }
        qsort_r(ids, m, sizeof(int32_t), cmp_piece, t);
        for (size_t i = 1; i < m; i++)
            if (t->p[ids[i]].len == t->p[ids[i - 1]].len &&
                !memcmp(pstr(t, ids[i]), pstr(t, ids[i - 1]), t->p[ids[i]].len)) {
                rc = vd_err(lg, VDIT_ERR_FORMAT, "%s: piece %d is defined twice", label, ids[i]);
                break;
            }
        if (rc || g == 2 || (g == 1 && !m))
            continue;
        if (trie_build(g == 0 ? &t->pieces : &t->user, t, ids, m))
            rc = vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
    }
    free(ids);
    if (rc)
        return rc;

    /* special ids: as SentencePiece's eos_id()/pad_id(), the piece must be CONTROL */
    int e = find_reserved_or_piece(t, sp->eos_piece, sp->eos_len);
    t->eos_id = (e >= 0 && t->p[e].type == PT_CONTROL) ? e : -1;
    e = find_reserved_or_piece(t, sp->pad_piece, sp->pad_len);
    t->pad_id = (e >= 0 && t->p[e].type == PT_CONTROL) ? e : -1;

    /* charsmap: <u32 trie bytes><double array><NUL-separated replacements> */
    if (sp->charsmap_len) {
        const uint8_t *c = sp->charsmap;
        if (sp->charsmap_len <= 4)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: precompiled_charsmap too short", label);
        uint32_t tsz = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 |
                       (uint32_t)c[3] << 24;
        if ((size_t)tsz >= sp->charsmap_len - 4 + 1 || tsz >= sp->charsmap_len)
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: precompiled_charsmap trie size exceeds the blob", label);
        t->n_da = tsz / 4;
        t->nstr_len = sp->charsmap_len - 4 - tsz;
        t->da = malloc(VD_MAX(t->n_da, 1) * 4);
        t->nstr = malloc(t->nstr_len + 1);
        if (!t->da || !t->nstr)
            return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
        for (size_t i = 0; i < t->n_da; i++) {
            const uint8_t *u = c + 4 + 4 * i;
            t->da[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                       (uint32_t)u[3] << 24;
        }
        memcpy(t->nstr, c + 4 + tsz, t->nstr_len);
        t->nstr[t->nstr_len] = 0;
    }
    return 0;
}

/* ---- protobuf (spiece.model) ----------------------------------------------- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int s = 0; s < 64; s += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads one field header and its payload. For wire type 2 (bytes, message)
 * *sub is the payload; for 0 *v the varint; for 5 / 1 *v the raw bits. */
static int pb_field(pb *r, uint32_t *num, int *wt, uint64_t *v, pb *sub)
{
    uint64_t key;
    if (pb_varint(r, &key))
        return -1;
    *num = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    if (*num == 0 || key >> 32)
        return -1;
    switch (*wt) {
    case 0:
        return pb_varint(r, v);
    case 1:
    case 5: {
        size_t n = *wt == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return -1;
        *v = 0;
        for (size_t i = 0; i < n; i++)
            *v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 0;
    }
    case 2: {
        uint64_t n;
        if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p))
            return -1;
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return 0;
    }
    default:
        return -1; /* groups (3, 4) are not used by sentencepiece_model.proto */
    }
}

#define PB_EXPECT(want)                                                                       \
    do {                                                                                      \
        if (wt != (want))                                                                     \
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: field %u of %s has wire type %d", label,  \
                          num, what, wt);                                                     \
    } while (0)

static int pb_trainer(pb r, tok_spec *sp, const char *label, vd_log *lg)
{
    const char *what = "trainer_spec";
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb s = { 0 };
        if (pb_field(&r, &num, &wt, &v, &s))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: truncated or malformed trainer_spec", label);
        switch (num) {
        case 3:
            PB_EXPECT(0);
            sp->model_type = (int)v;
            break;
        case 24:
            PB_EXPECT(0);
            sp->ws_suffix = v != 0;
            break;
        case 35:
            PB_EXPECT(0);
            sp->byte_fallback = v != 0;
            break;
        case 45:
        case 47:
        case 48:
            PB_EXPECT(2);
            if (num == 45) {
                sp->unk_piece = (const char *)s.p;
                sp->unk_len = (size_t)(s.end - s.p);
            } else if (num == 47) {
                sp->eos_piece = (const char *)s.p;
                sp->eos_len = (size_t)(s.end - s.p);
            } else {
                sp->pad_piece = (const char *)s.p;
                sp->pad_len = (size_t)(s.end - s.p);
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

static int pb_normalizer(pb r, tok_spec *sp, const char *label, vd_log *lg)
{
    const char *what = "normalizer_spec";
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb s = { 0 };
        if (pb_field(&r, &num, &wt, &v, &s))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: truncated or malformed normalizer_spec",
                          label);
        switch (num) {
        case 2:
            PB_EXPECT(2);
            sp->charsmap = s.p;
            sp->charsmap_len = (size_t)(s.end - s.p);
            break;
        case 3:
            PB_EXPECT(0);
            sp->add_dummy_prefix = v != 0;
            break;
        case 4:
            PB_EXPECT(0);
            sp->remove_ws = v != 0;
            break;
        case 5:
            PB_EXPECT(0);
            sp->escape_ws = v != 0;
            break;
        default:
            break;
        }
    }
    return 0;
}

static void spec_defaults(tok_spec *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->model_type = 1;
    sp->add_dummy_prefix = sp->remove_ws = sp->escape_ws = 1;
    sp->eos_piece = "</s>";
    sp->eos_len = 4;
    sp->pad_piece = "<pad>";
    sp->pad_len = 5;
    sp->unk_piece = "<unk>";
    sp->unk_len = 5;
}

static int load_proto(vd_tok *t, const uint8_t *b, size_t len, const char *label, vd_log *lg)
{
    tok_spec sp;
    spec_defaults(&sp);
    /* pass 1: count pieces and their bytes; parse the specs */
    size_t n = 0, bytes = 0;
    pb r = { b, b + len };
    const char *what = "ModelProto";
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb s = { 0 };
        if (pb_field(&r, &num, &wt, &v, &s))
            return vd_err(lg, VDIT_ERR_FORMAT,
                          "%s: not a SentencePiece model (malformed protobuf at byte %zu)", label,
                          (size_t)(r.p - b));
        int rc = 0;
        if (num == 1) {
            PB_EXPECT(2);
            n++;
            bytes += (size_t)(s.end - s.p) + 1;
        } else if (num == 2) {
            PB_EXPECT(2);
            rc = pb_trainer(s, &sp, label, lg);
        } else if (num == 3) {
            PB_EXPECT(2);
            rc = pb_normalizer(s, &sp, label, lg);
        }
        if (rc)
            return rc;
    }
    if (n == 0 || n > INT32_MAX / 2)
        return vd_err(lg, VDIT_ERR_FORMAT, "%s: not a SentencePiece model (no pieces)", label);
    t->p = calloc(n, sizeof(piece));
    t->strs = malloc(bytes + 1);
    if (!t->p || !t->strs)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
    /* pass 2: the pieces */
    r = (pb){ b, b + len };
    size_t off = 0;
    while (r.p < r.end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb s = { 0 };
        pb_field(&r, &num, &wt, &v, &s); /* validated in pass 1 */
        if (num != 1)
            continue;
        piece *p = &t->p[t->n];
        p->type = PT_NORMAL;
        p->off = (uint32_t)off;
        what = "SentencePiece";
        while (s.p < s.end) {
            uint32_t f;
            pb q = { 0 };
            if (pb_field(&s, &f, &wt, &v, &q))
                return vd_err(lg, VDIT_ERR_FORMAT, "%s: malformed piece %d", label, t->n);
            num = f;
            if (f == 1) {
                PB_EXPECT(2);
                size_t l = (size_t)(q.end - q.p);
                if (l > UINT32_MAX || off + l + 1 > bytes + 1 || off + l > UINT32_MAX)
                    return vd_err(lg, VDIT_ERR_FORMAT, "%s: piece %d too long", label, t->n);
                /* a repeated field 1 replaces the earlier value (protobuf semantics) */
                p->off = (uint32_t)off;
                memcpy(t->strs + off, q.p, l);
                t->strs[off + l] = 0;
                p->len = (uint32_t)l;
                off += l + 1;
            } else if (f == 2) {
                PB_EXPECT(5);
                uint32_t u = (uint32_t)v;
                memcpy(&p->score, &u, 4);
            } else if (f == 3) {
                PB_EXPECT(0);
                p->type = v <= 255 ? (uint8_t)v : 0;
            }
        }
        t->n++;
    }
    return tok_setup(t, &sp, label, lg);
}

/* ---- tokenizer.json (HF Unigram) ------------------------------------------- */

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with optional padding; returns bytes or -1. */
static long b64_decode(const char *s, size_t n, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* Walks the normalizer tree: Precompiled (charsmap), Replace of " {2,}"
 * (SentencePiece's remove_extra_whitespaces as HF converts it), Sequence. */
static int json_normalizer(const vj_val *nv, tok_spec *sp, uint8_t **cmap, int depth,
                           const char *label, vd_log *lg)
{
    if (!nv || nv->type != VJ_OBJ || depth > 8)
        return 0;
    const char *type = vj_str(vj_get(nv, "type"), "");
    if (!strcmp(type, "Sequence")) {
        const vj_val *a = vj_get(nv, "normalizers");
        if (a && a->type == VJ_ARR)
            for (size_t i = 0; i < a->len; i++) {
                int rc = json_normalizer(&a->kids[i], sp, cmap, depth + 1, label, lg);
                if (rc)
                    return rc;
            }
        return 0;
    }
    if (!strcmp(type, "Precompiled")) {
        const vj_val *c = vj_get(nv, "precompiled_charsmap");
        if (!c || c->type != VJ_STR)
            return 0;
        free(*cmap);
        *cmap = malloc(c->len / 4 * 3 + 4);
        if (!*cmap)
            return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
        long n = b64_decode(c->str, c->len, *cmap);
        if (n < 0)
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: precompiled_charsmap is not base64", label);
        sp->charsmap = *cmap;
        sp->charsmap_len = (size_t)n;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const char *re = vj_str(vj_get(vj_get(nv, "pattern"), "Regex"), NULL);
        if (re && !strcmp(re, " {2,}"))
            sp->remove_ws = 1;
        return 0;
    }
    if (!strcmp(type, "Strip") || !strcmp(type, "NFKC") || !strcmp(type, "Prepend"))
        return vd_err(lg, VDIT_ERR_UNSUPPORTED,
                      "%s: normalizer '%s' is not one SentencePiece models convert to", label,
                      type);
    return 0;
}

static int load_json(vd_tok *t, const uint8_t *b, size_t len, const char *label, vd_log *lg)
{
    char err[128];
    vj_val *root = vj_parse((const char *)b, len, err, sizeof(err));
    if (!root)
        return vd_err(lg, vj_error_code(err), "%s: %s", label, err);
    tok_spec sp;
    spec_defaults(&sp);
    sp.remove_ws = 0;
    sp.add_dummy_prefix = 0;
    uint8_t *cmap = NULL;
    int rc = 0;
    const vj_val *model = vj_get(root, "model");
    const vj_val *vocab = vj_get(model, "vocab");
    if (strcmp(vj_str(vj_get(model, "type"), ""), "Unigram") || !vocab || vocab->type != VJ_ARR) {
        rc = vd_err(lg, VDIT_ERR_UNSUPPORTED,
                    "%s: tokenizer.json without a Unigram model (only SentencePiece unigram "
                    "tokenizers are supported)",
                    label);
        goto done;
    }
    if (!vocab->len || vocab->len > INT32_MAX / 2) {
        rc = vd_err(lg, VDIT_ERR_FORMAT, "%s: empty vocab", label);
        goto done;
    }
    int64_t unk = vj_int(vj_get(model, "unk_id"), -1);
    sp.byte_fallback = vj_bool(vj_get(model, "byte_fallback"), 0);
    size_t bytes = 1;
    for (size_t i = 0; i < vocab->len; i++) {
        const vj_val *e = &vocab->kids[i];
        if (e->type != VJ_ARR || e->len != 2 || e->kids[0].type != VJ_STR ||
            e->kids[1].type != VJ_NUM) {
            rc = vd_err(lg, VDIT_ERR_FORMAT, "%s: vocab entry %zu is not [piece, score]", label, i);
            goto done;
        }
        bytes += e->kids[0].len + 1;
    }
    t->p = calloc(vocab->len, sizeof(piece));
    t->strs = malloc(bytes);
    if (!t->p || !t->strs || bytes > UINT32_MAX) {
        rc = vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    size_t off = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        const vj_val *e = &vocab->kids[i];
        piece *p = &t->p[i];
        p->off = (uint32_t)off;
        p->len = (uint32_t)e->kids[0].len;
        memcpy(t->strs + off, e->kids[0].str, p->len);
        t->strs[off + p->len] = 0;
        off += p->len + 1;
        p->score = (float)e->kids[1].num;
        p->type = PT_NORMAL;
        if ((int64_t)i == unk)
            p->type = PT_UNKNOWN;
        else if (sp.byte_fallback && byte_of_piece(t->strs + p->off, p->len) >= 0)
            p->type = PT_BYTE;
    }
    t->n = (int)vocab->len;
    /* special added tokens are SentencePiece's control pieces */
    const vj_val *added = vj_get(root, "added_tokens");
    if (added && added->type == VJ_ARR)
        for (size_t i = 0; i < added->len; i++) {
            int64_t id = vj_int(vj_get(&added->kids[i], "id"), -1);
            if (id >= 0 && id < t->n && (int64_t)unk != id &&
                vj_bool(vj_get(&added->kids[i], "special"), 0))
                t->p[id].type = PT_CONTROL;
        }
    rc = json_normalizer(vj_get(root, "normalizer"), &sp, &cmap, 0, label, lg);
    if (rc)
        goto done;
    /* Metaspace: the "▁" escaping and the dummy prefix */
    const vj_val *pre = vj_get(root, "pre_tokenizer");
    if (pre && !strcmp(vj_str(vj_get(pre, "type"), ""), "Sequence")) {
        const vj_val *a = vj_get(pre, "pretokenizers");
        pre = NULL;
        for (size_t i = 0; a && a->type == VJ_ARR && i < a->len; i++) {
            const char *ty = vj_str(vj_get(&a->kids[i], "type"), "");
            if (!strcmp(ty, "Metaspace"))
                pre = &a->kids[i];
            /* splitting on whitespace drops leading/trailing runs and
             * collapses the others: remove_extra_whitespaces */
            if (!strcmp(ty, "WhitespaceSplit"))
                sp.remove_ws = 1;
        }
    }
    if (pre && !strcmp(vj_str(vj_get(pre, "type"), ""), "Metaspace")) {
        sp.escape_ws = 1;
        const char *scheme = vj_str(vj_get(pre, "prepend_scheme"), NULL);
        if (scheme)
            sp.add_dummy_prefix = strcmp(scheme, "never") != 0;
        else
            sp.add_dummy_prefix = vj_bool(vj_get(pre, "add_prefix_space"), 1);
    } else {
        sp.escape_ws = 0;
    }
    if (unk < 0 || unk >= t->n) {
        rc = vd_err(lg, VDIT_ERR_FORMAT, "%s: model.unk_id missing or out of range", label);
        goto done;
    }
    rc = tok_setup(t, &sp, label, lg);
done:
    free(cmap);
    vj_free(root);
    return rc;
}

/* ---- loading ---------------------------------------------------------------- */

int vd_tok_load_mem(const uint8_t *b, size_t len, const char *label, vd_log *lg, vd_tok **out)
{
    if (!out || (!b && len))
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_tok_load_mem: bad arguments");
    *out = NULL;
    if (!label)
        label = "tokenizer";
    vd_tok *t = calloc(1, sizeof(*t));
    if (!t)
        return vd_err(lg, VDIT_ERR_NOMEM, "%s: out of memory", label);
    /* tokenizer.json starts with '{' (after whitespace); a ModelProto starts
     * with field 1 (0x0a) */
    size_t i = 0;
    while (i < len && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t'))
        i++;
    int rc = (i < len && b[i] == '{') ? load_json(t, b, len, label, lg)
                                      : load_proto(t, b, len, label, lg);
    if (rc) {
        vd_tok_free(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int vd_tok_load(const char *path, vd_log *lg, vd_tok **out)
{
    if (!path || !out)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_tok_load: bad arguments");
    char *data;
    size_t len;
    int rc = vd_read_file(lg, path, &data, &len);
    if (rc)
        return rc;
    rc = vd_tok_load_mem((const uint8_t *)data, len, path, lg, out);
    free(data);
    return rc;
}
