/*
 * Wan's prompt cleaning (wan/modules/tokenizers.py, clean='whitespace'):
 *
 *     text = ftfy.fix_text(text)                    -- not done here
 *     text = html.unescape(html.unescape(text))
 *     text = text.strip()
 *     text = re.sub(r'\s+', ' ', text).strip()
 *
 * html.unescape is reproduced with the same table (generated from Python's
 * html.entities.html5) and the same rules: numeric references with the
 * cp1252 and invalid-code-point fix-ups, named references with or without
 * ';' by longest known prefix. Whitespace is what Python's str.isspace
 * accepts.
 */
#include <stdio.h>
#include <string.h>

#include "text.h"

#include "html_entities.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void put_cp(sbuf *b, uint32_t c)
{
    char o[4];
    size_t n;
    if (c < 0x80) {
        o[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        o[0] = (char)(0xf0 | c >> 18);
        o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[3] = (char)(0x80 | (c & 0x3f));
        n = 4;
    }
    put(b, o, n);
}

/* Decodes one UTF-8 character; an invalid byte counts as one character
 * (code point 0xFFFFFFFF, never whitespace nor special). */
static size_t dec(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!l || l > n) {
        *cp = 0xffffffffu;
        return 1;
    }
    uint32_t v = l == 1 ? c : l == 2 ? (c & 0x1fu) : l == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t i = 1; i < l; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xffffffffu;
            return 1;
        }
        v = v << 6 | (s[i] & 0x3fu);
    }
    *cp = v;
    return l;
}

/* Python's str.isspace. */
static int py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

static const html_entity *find_entity(const char *name, size_t n)
{
    size_t lo = 0, hi = VD_ARRAY_SIZE(k_html_entities);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *e = k_html_entities[mid].name;
        size_t el = strlen(e);
        int c = memcmp(e, name, VD_MIN(el, n));
        if (!c)
            c = el < n ? -1 : el > n ? 1 : 0;
        if (!c)
            return &k_html_entities[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void numeric_ref(sbuf *o, uint64_t num)
{
    for (size_t i = 0; i < VD_ARRAY_SIZE(k_html_charref_fix); i++)
        if (k_html_charref_fix[i].cp == num) {
            put_cp(o, k_html_charref_fix[i].to);
            return;
        }
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) {
        put_cp(o, 0xfffd);
        return;
    }
    if (html_codepoint_dropped((uint32_t)num))
        return;
    put_cp(o, (uint32_t)num);
}

/* One html.unescape pass: &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) */
static void unescape(const char *in, size_t n, sbuf *o)
{
    const uint8_t *s = (const uint8_t *)in;
    size_t i = 0;
    while (i < n) {
        if (s[i] != '&') {
            size_t j = i;
            while (j < n && s[j] != '&')
                j++;
            put(o, in + i, j - i);
            i = j;
            continue;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '#') {
            int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
            size_t k = j + 1 + (size_t)hex, d0 = k;
            uint64_t num = 0;
            while (k < n && (hex ? ((s[k] >= '0' && s[k] <= '9') || ((s[k] | 0x20) >= 'a' &&
                                                                    (s[k] | 0x20) <= 'f'))
                                 : (s[k] >= '0' && s[k] <= '9'))) {
                uint64_t d = s[k] <= '9' ? (uint64_t)(s[k] - '0') : (uint64_t)((s[k] | 0x20) - 'a' + 10);
                num = num * (hex ? 16 : 10) + d;
                if (num > 0x110000)
                    num = 0x110000; /* anything above U+10FFFF behaves alike */
                k++;
            }
            if (k == d0) { /* "&#" without digits: not a reference */
                put(o, "&", 1);
                i++;
                continue;
            }
            if (k < n && s[k] == ';')
                k++;
            numeric_ref(o, num);
            i = k;
            continue;
        }
        /* named: up to 32 characters not in "\t\n\f <&#;", then an optional ';' */
        size_t k = j, nch = 0;
        while (k < n && nch < 32) {
            uint32_t cp;
            if (s[k] == '\t' || s[k] == '\n' || s[k] == '\f' || s[k] == ' ' || s[k] == '<' ||
                s[k] == '&' || s[k] == '#' || s[k] == ';')
                break;
            k += dec(s + k, n - k, &cp);
            nch++;
        }
        if (!nch) {
            put(o, "&", 1);
            i++;
            continue;
        }
        if (k < n && s[k] == ';')
            k++;
        /* s[j..k) is the candidate: the whole of it, else its longest known
         * prefix of at least 2 characters (shorter by whole characters) */
        const html_entity *e = find_entity(in + j, k - j);
        if (e) {
            put(o, e->text, strlen(e->text));
            i = k;
            continue;
        }
        size_t cut[34], nc = 0;
        for (size_t p = j; p < k;) {
            uint32_t cp;
            p += dec(s + p, k - p, &cp);
            cut[nc++] = p - j; /* byte length of the first nc characters */
        }
        int done = 0;
        for (size_t x = nc - 1; x >= 2 && x < nc; x--) {
            e = find_entity(in + j, cut[x - 1]);
            if (e) {
                put(o, e->text, strlen(e->text));
                put(o, in + j + cut[x - 1], k - j - cut[x - 1]);
                done = 1;
                break;
            }
        }
        if (!done)
            put(o, in + i, k - i);
        i = k;
    }
}

char *vd_tok_clean_prompt(const char *text)
{
    if (!text)
        return NULL;
    sbuf a = { 0 }, b = { 0 }, c = { 0 };
    put(&a, "", 0);
    unescape(text, strlen(text), &a);
    put(&b, "", 0);
    if (!a.oom)
        unescape(a.p, a.len, &b);
    put(&c, "", 0);
    if (!b.oom) {
        /* collapse whitespace runs into one space, drop them at both ends */
        const uint8_t *s = (const uint8_t *)b.p;
        size_t i = 0, n = b.len;
        int pending = 0;
        while (i < n) {
            uint32_t cp;
            size_t l = dec(s + i, n - i, &cp);
            if (py_space(cp)) {
                pending = c.len > 0;
            } else {
                if (pending)
                    put(&c, " ", 1);
                pending = 0;
                put(&c, b.p + i, l);
            }
            i += l;
        }
    }
    free(a.p);
    free(b.p);
    if (a.oom || b.oom || c.oom) {
        free(c.p);
        return NULL;
    }
    return c.p;
}
