#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdit/vdit.h"

#define VJ_MAX_DEPTH 128

typedef struct parser {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
    int failed;
} parser;

static void fail(parser *p, const char *what)
{
    if (!p->failed && p->err && p->errlen)
        snprintf(p->err, p->errlen, "JSON: %s at byte %zu", what, p->pos);
    p->failed = 1;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            p->pos++;
        else
            break;
    }
}

static void free_val(vj_val *v)
{
    if (v->type == VJ_STR) {
        free(v->str);
    } else if (v->type == VJ_ARR || v->type == VJ_OBJ) {
        for (size_t i = 0; i < v->len; i++) {
            free_val(&v->kids[i]);
            if (v->keys)
                free(v->keys[i]);
        }
        free(v->kids);
        free(v->keys);
        free(v->key_lens);
    }
    memset(v, 0, sizeof(*v));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + i]);
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

/* p->pos at the opening quote. Decoded string never exceeds raw length. */
static char *parse_string(parser *p, size_t *out_len)
{
    p->pos++; /* quote */
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->s[end] != '"') {
        if (p->s[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len) {
        fail(p, "unterminated string");
        return NULL;
    }
    char *o = malloc(end - start + 1);
    if (!o) {
        fail(p, "out of memory");
        return NULL;
    }
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            fail(p, "control character in string");
            goto bad;
        }
        if (c != '\\') {
            o[n++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        char e = p->s[p->pos++];
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (read_hex4(p, &cp) || p->pos > end) {
                fail(p, "bad \\u escape");
                goto bad;
            }
            if (cp >= 0xd800 && cp < 0xdc00) {
                unsigned lo;
                if (p->pos + 6 <= end && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                    p->pos += 2;
                    if (read_hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                        fail(p, "bad surrogate pair");
                        goto bad;
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else {
                    cp = 0xfffd; /* lone high surrogate */
                }
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                cp = 0xfffd;
            }
            /* \uXXXX is 6 raw bytes, its UTF-8 at most 3 (4 for a 12-byte pair) */
            n += put_utf8(o + n, cp);
            break;
        }
        default:
            fail(p, "bad escape");
            goto bad;
        }
    }
    o[n] = 0;
    p->pos = end + 1;
    *out_len = n;
    return o;
bad:
    free(o);
    return NULL;
}

static int parse_value(parser *p, vj_val *v, int depth);

static int push_kid(parser *p, vj_val *v, size_t *cap, int with_keys)
{
    if (v->len < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    vj_val *k = realloc(v->kids, nc * sizeof(*k));
    if (!k) { fail(p, "out of memory"); return -1; }
    v->kids = k;
    if (with_keys) {
        char **ks = realloc(v->keys, nc * sizeof(*ks));
        if (!ks) { fail(p, "out of memory"); return -1; }
        v->keys = ks;
        size_t *kl = realloc(v->key_lens, nc * sizeof(*kl));
        if (!kl) { fail(p, "out of memory"); return -1; }
        v->key_lens = kl;
    }
    *cap = nc;
    return 0;
}

static int parse_number(parser *p, vj_val *v)
{
    size_t st = p->pos;
    int is_int = 1;
    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
        fail(p, "bad number");
        return -1;
    }
    if (p->s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        is_int = 0;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
            fail(p, "bad number");
            return -1;
        }
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        is_int = 0;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
            fail(p, "bad number");
            return -1;
        }
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    size_t n = p->pos - st;
    char buf[64];
    if (n >= sizeof(buf)) {
        /* very long literal: parse a truncated-free copy */
        char *tmp = malloc(n + 1);
        if (!tmp) { fail(p, "out of memory"); return -1; }
        memcpy(tmp, p->s + st, n);
        tmp[n] = 0;
        v->num = strtod(tmp, NULL);
        free(tmp);
        is_int = 0;
    } else {
        memcpy(buf, p->s + st, n);
        buf[n] = 0;
        v->num = strtod(buf, NULL);
        if (is_int) {
            /* exact int64 with overflow check */
            const char *q = buf;
            int neg = 0;
            if (*q == '-') { neg = 1; q++; }
            uint64_t acc = 0;
            for (; *q; q++) {
                uint64_t d = (uint64_t)(*q - '0');
                if (acc > (UINT64_MAX - d) / 10) { is_int = 0; break; }
                acc = acc * 10 + d;
            }
            if (is_int) {
                if (!neg && acc > (uint64_t)INT64_MAX) is_int = 0;
                else if (neg && acc > (uint64_t)INT64_MAX + 1) is_int = 0;
                else v->i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
            }
        }
    }
    v->type = VJ_NUM;
    v->is_int = is_int;
    return 0;
}

static int match_lit(parser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n)) {
        fail(p, "unexpected token");
        return -1;
    }
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, vj_val *v, int depth)
{
    memset(v, 0, sizeof(*v));
    if (depth > VJ_MAX_DEPTH) {
        fail(p, "nesting too deep");
        return -1;
    }
    skip_ws(p);
    if (p->pos >= p->len) {
        fail(p, "unexpected end");
        return -1;
    }
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        int obj = c == '{';
        v->type = obj ? VJ_OBJ : VJ_ARR;
        size_t cap = 0;
        p->pos++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == (obj ? '}' : ']')) {
            p->pos++;
            return 0;
        }
        for (;;) {
            if (push_kid(p, v, &cap, obj))
                return -1;
            if (obj) {
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != '"') {
                    fail(p, "expected key");
                    return -1;
                }
                size_t kl;
                char *k = parse_string(p, &kl);
                if (!k)
                    return -1;
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') {
                    free(k);
                    fail(p, "expected ':'");
                    return -1;
                }
                p->pos++;
                v->keys[v->len] = k;
                v->key_lens[v->len] = kl;
            }
            int r = parse_value(p, &v->kids[v->len], depth + 1);
            v->len++; /* count it even on failure so free_val releases it */
            if (r)
                return -1;
            skip_ws(p);
            if (p->pos >= p->len) {
                fail(p, "unexpected end");
                return -1;
            }
            if (p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->s[p->pos] == (obj ? '}' : ']')) {
                p->pos++;
                return 0;
            }
            fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            return -1;
        }
    }
    if (c == '"') {
        v->str = parse_string(p, &v->len);
        if (!v->str)
            return -1;
        v->type = VJ_STR;
        return 0;
    }
    if (c == 't') { v->type = VJ_BOOL; v->num = 1; return match_lit(p, "true"); }
    if (c == 'f') { v->type = VJ_BOOL; return match_lit(p, "false"); }
    if (c == 'n') { v->type = VJ_NULL; return match_lit(p, "null"); }
    return parse_number(p, v);
}

int vj_error_code(const char *err)
{
    return err && strstr(err, "out of memory") ? VDIT_ERR_NOMEM : VDIT_ERR_FORMAT;
}

vj_val *vj_parse(const char *s, size_t len, char *err, size_t errlen)
{
    parser p = { s, len, 0, err, errlen, 0 };
    vj_val *root = calloc(1, sizeof(*root));
    if (!root) {
        if (err && errlen) snprintf(err, errlen, "JSON: out of memory");
        return NULL;
    }
    if (parse_value(&p, root, 0) == 0) {
        skip_ws(&p);
        if (p.pos != p.len)
            fail(&p, "trailing characters");
    }
    if (p.failed) {
        vj_free(root);
        return NULL;
    }
    return root;
}

void vj_free(vj_val *root)
{
    if (!root)
        return;
    free_val(root);
    free(root);
}

const vj_val *vj_get(const vj_val *obj, const char *key)
{
    if (!obj || obj->type != VJ_OBJ)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->key_lens[i] == kl && !memcmp(obj->keys[i], key, kl))
            return &obj->kids[i];
    return NULL;
}

double vj_num(const vj_val *v, double def)
{
    return v && (v->type == VJ_NUM || v->type == VJ_BOOL) ? v->num : def;
}

int64_t vj_int(const vj_val *v, int64_t def)
{
    if (!v || v->type != VJ_NUM)
        return def;
    if (v->is_int)
        return v->i;
    if (v->num == floor(v->num) && fabs(v->num) < 9.0e15)
        return (int64_t)v->num;
    return def;
}

const char *vj_str(const vj_val *v, const char *def)
{
    return v && v->type == VJ_STR ? v->str : def;
}

int vj_bool(const vj_val *v, int def)
{
    return v && v->type == VJ_BOOL ? (int)v->num : def;
}
