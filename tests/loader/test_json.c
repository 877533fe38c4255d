/* vj_parse on valid and invalid documents: structure, escapes, surrogate
 * pairs, nesting limits, number edge cases, and that no input crashes. */
#include "json.h"
#include "t.h"

static vj_val *parse(const char *s, char *err)
{
    return vj_parse(s, strlen(s), err, 128);
}

static void expect_bad(const char *doc, const char *why)
{
    char err[128] = "";
    vj_val *v = parse(doc, err);
    T_CHECK(!v, "accepted bad JSON (%s): %s", why, doc);
    T_CHECK(strstr(err, "JSON:") != NULL, "no message for %s: '%s'", why, err);
    vj_free(v);
}

static void test_values(void)
{
    char err[128];
    vj_val *v = parse(" {\"a\": [1, -2, 3.5, 1e3, true, false, null, \"x\"], \"b\": {}, \"c\": []} ", err);
    T_CHECK(v && v->type == VJ_OBJ && v->len == 3, "object: %s", v ? "" : err);
    if (!v)
        return;
    const vj_val *a = vj_get(v, "a");
    T_CHECK(a && a->type == VJ_ARR && a->len == 8, "array");
    T_CHECK(a->kids[0].is_int && a->kids[0].i == 1, "1");
    T_CHECK(a->kids[1].is_int && a->kids[1].i == -2, "-2");
    T_CHECK(!a->kids[2].is_int && a->kids[2].num == 3.5, "3.5");
    T_CHECK(!a->kids[3].is_int && a->kids[3].num == 1000 && vj_int(&a->kids[3], -1) == 1000, "1e3");
    T_CHECK(a->kids[4].type == VJ_BOOL && vj_bool(&a->kids[4], 0) == 1, "true");
    T_CHECK(a->kids[5].type == VJ_BOOL && vj_bool(&a->kids[5], 1) == 0, "false");
    T_CHECK(a->kids[6].type == VJ_NULL, "null");
    T_CHECK(!strcmp(vj_str(&a->kids[7], ""), "x"), "string");
    T_CHECK(vj_get(v, "b")->type == VJ_OBJ && vj_get(v, "b")->len == 0, "empty object");
    T_CHECK(vj_get(v, "c")->type == VJ_ARR && vj_get(v, "c")->len == 0, "empty array");
    T_CHECK(vj_get(v, "zz") == NULL && vj_get(NULL, "a") == NULL, "missing key");
    T_CHECK(vj_num(NULL, 2.5) == 2.5 && vj_int(vj_get(v, "b"), 7) == 7, "defaults");
    vj_free(v);

    /* duplicate keys: first wins */
    v = parse("{\"k\":1,\"k\":2}", err);
    T_CHECK(v && vj_int(vj_get(v, "k"), 0) == 1, "duplicate key");
    vj_free(v);
    /* scalars as roots */
    v = parse("42", err);
    T_CHECK(v && v->type == VJ_NUM && v->i == 42, "scalar root");
    vj_free(v);
}

static void test_strings(void)
{
    char err[128];
    vj_val *v = parse("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u4e2d\", \"\\ud83d\\ude00\","
                      "\"\\ud800x\", \"\\udc00\", \"nul\\u0000in\", \"\xc3\xa9 raw\"]", err);
    T_CHECK(v && v->len == 7, "strings: %s", v ? "" : err);
    if (!v)
        return;
    T_CHECK(!strcmp(v->kids[0].str, "a\"b\\c/d\b\f\n\r\t"), "simple escapes");
    T_CHECK(!strcmp(v->kids[1].str, "\xc3\xa9\xe4\xb8\xad"), "BMP escapes: %s", v->kids[1].str);
    T_CHECK(!strcmp(v->kids[2].str, "\xf0\x9f\x98\x80"), "surrogate pair");
    T_CHECK(!strcmp(v->kids[3].str, "\xef\xbf\xbdx"), "lone high surrogate -> U+FFFD");
    T_CHECK(!strcmp(v->kids[4].str, "\xef\xbf\xbd"), "lone low surrogate -> U+FFFD");
    T_CHECK(v->kids[5].len == 6 && !memcmp(v->kids[5].str, "nul\0in", 6), "NUL kept with length");
    T_CHECK(!strcmp(v->kids[6].str, "\xc3\xa9 raw"), "raw UTF-8");
    vj_free(v);
    /* keys with escapes */
    v = parse("{\"a\\u0062\": 1}", err);
    T_CHECK(v && vj_get(v, "ab"), "escaped key");
    vj_free(v);
}

static void test_numbers(void)
{
    char err[128];
    vj_val *v = parse("[9223372036854775807, -9223372036854775808, 9223372036854775808, "
                      "123456789012345678901234567890, 1e400, -1e-400, 0, -0, 0.0e0]", err);
    T_CHECK(v && v->len == 9, "numbers: %s", v ? "" : err);
    if (!v)
        return;
    T_CHECK(v->kids[0].is_int && v->kids[0].i == INT64_MAX, "INT64_MAX");
    T_CHECK(v->kids[1].is_int && v->kids[1].i == INT64_MIN, "INT64_MIN");
    T_CHECK(!v->kids[2].is_int && v->kids[2].num > 9.2e18, "2^63 is not an int64");
    T_CHECK(!v->kids[3].is_int && v->kids[3].num > 1.2e29, "huge integer as double");
    T_CHECK(isinf(v->kids[4].num), "1e400 overflows to inf");
    T_CHECK(v->kids[5].num == 0, "underflow to 0");
    T_CHECK(vj_int(&v->kids[3], -7) == -7, "vj_int refuses a huge value");
    T_CHECK(v->kids[6].is_int && v->kids[7].is_int && !v->kids[8].is_int, "zeros");
    vj_free(v);
    /* a literal longer than the on-stack buffer */
    char big[400];
    memset(big, '7', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    v = parse(big, err);
    T_CHECK(v && !v->is_int && v->num > 1e300, "400-digit number");
    vj_free(v);
}

static void test_nesting(void)
{
    char err[128];
    char *s = malloc(2 * 200 + 1);
    for (int depth = 100; depth <= 200; depth += 100) {
        for (int i = 0; i < depth; i++) {
            s[i] = '[';
            s[2 * depth - 1 - i] = ']';
        }
        s[2 * depth] = 0;
        vj_val *v = parse(s, err);
        if (depth <= 128)
            T_CHECK(v != NULL, "depth %d accepted: %s", depth, err);
        else
            T_CHECK(!v && strstr(err, "deep"), "depth %d rejected: %s", depth, err);
        vj_free(v);
    }
    free(s);
    /* very deep input must not overflow the stack */
    size_t n = 1000000;
    char *deep = malloc(n + 1);
    memset(deep, '{', n);
    deep[n] = 0;
    vj_val *v = parse(deep, err);
    T_CHECK(!v, "a million '{' rejected");
    vj_free(v);
    memset(deep, '[', n);
    v = parse(deep, err);
    T_CHECK(!v, "a million '[' rejected");
    vj_free(v);
    free(deep);
}

static void test_invalid(void)
{
    const char *bad[][2] = {
        { "", "empty" }, { "   ", "blank" }, { "{", "open object" }, { "[1,", "open array" },
        { "[1,]", "trailing comma" }, { "{\"a\":1,}", "trailing comma in object" },
        { "{\"a\" 1}", "missing colon" }, { "{a:1}", "bare key" }, { "{1:1}", "number key" },
        { "[01]", "leading zero" }, { "[1.]", "no fraction digits" }, { "[.5]", "no integer part" },
        { "[1e]", "no exponent digits" }, { "[-]", "lone minus" }, { "[+1]", "plus sign" },
        { "[tru]", "short literal" }, { "[nul]", "short null" }, { "[True]", "capital literal" },
        { "\"abc", "unterminated string" }, { "\"a\\", "escape at end" }, { "\"\\x\"", "bad escape" },
        { "\"\\u12\"", "short \\u" }, { "\"\\u12g4\"", "bad hex" },
        { "\"\\ud800\\u0041\"", "high surrogate then non-low" }, { "\"tab\there\"", "raw control char" },
        { "[1] [2]", "two documents" }, { "[1] x", "trailing garbage" }, { "[NaN]", "NaN" },
        { "[Infinity]", "Infinity" }, { "{\"a\":1 \"b\":2}", "missing comma" }, { "]", "stray close" },
        { "[\"a\"}", "mismatched close" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(bad[i][0], bad[i][1]);
    /* embedded NUL and bytes beyond len are never read */
    char err[128];
    vj_val *v = vj_parse("[1]\0garbage", 11, err, sizeof(err));
    T_CHECK(!v, "NUL then garbage rejected");
    v = vj_parse("[123]", 3, err, sizeof(err));
    T_CHECK(!v, "length honoured");
    v = vj_parse("[12]", 4, NULL, 0);
    T_CHECK(v && v->kids[0].i == 12, "no error buffer needed");
    vj_free(v);
}

/* Truncating a valid document at every length must fail cleanly (and the
 * sanitizer build checks it never reads past the end). */
static void test_prefixes(void)
{
    const char *doc = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"s\":\"\\ud83d\\ude00\\n\",\"n\":-1.5e-3,\"l\":[true,false,null]}";
    size_t n = strlen(doc);
    char err[128];
    for (size_t k = 0; k < n; k++) {
        char *cp = malloc(k ? k : 1);
        memcpy(cp, doc, k);
        vj_val *v = vj_parse(cp, k, err, sizeof(err));
        T_CHECK(!v, "prefix of %zu bytes accepted", k);
        vj_free(v);
        free(cp);
    }
    vj_val *v = vj_parse(doc, n, err, sizeof(err));
    T_CHECK(v != NULL, "whole document: %s", err);
    vj_free(v);
}

int main(void)
{
    test_values();
    test_strings();
    test_numbers();
    test_nesting();
    test_invalid();
    test_prefixes();
    T_DONE();
}
