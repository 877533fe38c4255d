/* Prompt expansion: a short prompt is rewritten into a detailed caption by a
 * language model behind an OpenAI-compatible chat endpoint the user names
 * (for example a local llama.cpp server). Plain HTTP/1.1 over a socket: the
 * endpoint is expected on the local machine or network (no TLS). */
#include "expand.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "json.h"

static const char system_prompt[] =
    "You turn a short idea for a video into one detailed caption for a text-to-video model. "
    "Describe the main subject and its appearance, what moves and how, the setting, the "
    "lighting and colours, the camera's framing and motion, and the visual style, in one "
    "paragraph of plain English of about 60 to 100 words. Keep every element of the idea and "
    "invent nothing that contradicts it. Answer with the caption only.";

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Appends s as a JSON string literal. */
static int put_json_str(char **buf, size_t *len, size_t *cap, const char *s)
{
    for (size_t i = 0;; i++) {
        if (*len + 8 > *cap) {
            size_t nc = *cap * 2 + 64;
            char *nb = realloc(*buf, nc);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = nc;
        }
        if (i == 0) {
            (*buf)[(*len)++] = '"';
        }
        unsigned char ch = (unsigned char)s[i];
        if (!ch)
            break;
        if (ch == '"' || ch == '\\') {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = (char)ch;
        } else if (ch == '\n' || ch == '\t' || ch == '\r') {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = ch == '\n' ? 'n' : ch == '\t' ? 't' : 'r';
        } else if (ch < 0x20) {
            *len += (size_t)snprintf(*buf + *len, 8, "\\u%04x", ch);
        } else {
            (*buf)[(*len)++] = (char)ch;
        }
    }
    (*buf)[(*len)++] = '"';
    (*buf)[*len] = 0;
    return 0;
}

static char *make_body(const char *model, const char *prompt)
{
    size_t len = 0, cap = 256;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    len += (size_t)snprintf(b, cap, "{\"model\":");
    if (put_json_str(&b, &len, &cap, model ? model : "default"))
        goto fail;
    static const char mid1[] = ",\"temperature\":0,\"max_tokens\":400,\"stream\":false,"
                               "\"messages\":[{\"role\":\"system\",\"content\":";
    static const char mid2[] = "},{\"role\":\"user\",\"content\":";
    static const char end[] = "}]}";
    const char *parts[3] = { mid1, mid2, end };
    const char *strs[2] = { system_prompt, prompt };
    for (int i = 0; i < 3; i++) {
        size_t pl = strlen(parts[i]);
        if (len + pl + 1 > cap) {
            cap = len + pl + 256;
            char *nb = realloc(b, cap);
            if (!nb)
                goto fail;
            b = nb;
        }
        memcpy(b + len, parts[i], pl + 1);
        len += pl;
        if (i < 2 && put_json_str(&b, &len, &cap, strs[i]))
            goto fail;
    }
    return b;
fail:
    free(b);
    return NULL;
}

/* http://host[:port][/path]; an empty path or "/" means
 * /v1/chat/completions, a path ending in /v1 gets /chat/completions. */
static int parse_url(const char *url, char *host, size_t hl, char *port, size_t pl, char *path,
                     size_t pathl)
{
    if (strncmp(url, "http://", 7))
        return -1;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', hlen);
    size_t name_len = colon ? (size_t)(colon - h) : hlen;
    if (!name_len || name_len >= hl)
        return -1;
    memcpy(host, h, name_len);
    host[name_len] = 0;
    if (colon) {
        size_t n = hlen - name_len - 1;
        if (!n || n >= pl)
            return -1;
        memcpy(port, colon + 1, n);
        port[n] = 0;
    } else {
        snprintf(port, pl, "80");
    }
    const char *p = slash ? slash : "/";
    size_t plen = strlen(p);
    if (!strcmp(p, "/"))
        snprintf(path, pathl, "/v1/chat/completions");
    else if (plen >= 3 && !strcmp(p + plen - 3, "/v1"))
        snprintf(path, pathl, "%s/chat/completions", p);
    else if (plen < pathl)
        memcpy(path, p, plen + 1);
    else
        return -1;
    return 0;
}

/* Decodes a chunked body in place; returns its length or -1. */
static long unchunk(char *b, size_t len)
{
    size_t r = 0, w = 0;
    for (;;) {
        char *end;
        if (r >= len)
            return -1;
        unsigned long n = strtoul(b + r, &end, 16);
        char *crlf = strstr(b + r, "\r\n");
        if (!crlf || end == b + r)
            return -1;
        r = (size_t)(crlf - b) + 2;
        if (!n)
            break;
        if (n > len - r)
            return -1;
        memmove(b + w, b + r, n);
        w += n;
        r += n + 2;
    }
    b[w] = 0;
    return (long)w;
}

int expand_prompt(const char *url, const char *model, const char *prompt, int timeout_ms,
                  char **out, char *err, size_t errlen)
{
    char host[256], port[16], path[1024];
    *out = NULL;
    if (!url || parse_url(url, host, sizeof(host), port, sizeof(port), path, sizeof(path)))
        return fail(err, errlen, "endpoint '%s' is not an http://host[:port][/path] URL",
                    url ? url : "");
    char *body = make_body(model, prompt ? prompt : "");
    if (!body)
        return fail(err, errlen, "out of memory");
    size_t blen = strlen(body);
    size_t qcap = blen + 1024 + strlen(path) + strlen(host);
    char *req = malloc(qcap);
    if (!req) {
        free(body);
        return fail(err, errlen, "out of memory");
    }
    int qlen = snprintf(req, qcap,
                        "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                        "Accept: application/json\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        path, host, port, blen, body);
    free(body);

    int ret = -1, fd = -1;
    char *resp = NULL;
    struct addrinfo hints = { 0 }, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai) {
        fail(err, errlen, "%s: %s", host, gai_strerror(gai));
        goto done;
    }
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (!connect(fd, a->ai_addr, a->ai_addrlen))
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        fail(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(errno));
        goto done;
    }
    for (int sent = 0; sent < qlen;) {
        ssize_t n = send(fd, req + sent, (size_t)(qlen - sent), MSG_NOSIGNAL);
        if (n <= 0) {
            fail(err, errlen, "sending to %s:%s: %s", host, port, strerror(errno));
            goto done;
        }
        sent += (int)n;
    }
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4097 > cap) {
            cap = cap * 2 + 8192;
            if (cap > (16u << 20)) {
                fail(err, errlen, "%s: response too large", url);
                goto done;
            }
            char *nr = realloc(resp, cap);
            if (!nr) {
                fail(err, errlen, "out of memory");
                goto done;
            }
            resp = nr;
        }
        ssize_t n = recv(fd, resp + len, 4096, 0);
        if (n < 0) {
            fail(err, errlen, "reading from %s:%s: %s", host, port,
                 errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (!resp) {
        fail(err, errlen, "%s: empty response", url);
        goto done;
    }
    resp[len] = 0;
    int status = 0;
    if (sscanf(resp, "HTTP/%*d.%*d %d", &status) != 1) {
        fail(err, errlen, "%s: not an HTTP response", url);
        goto done;
    }
    char *hend = strstr(resp, "\r\n\r\n");
    if (!hend) {
        fail(err, errlen, "%s: truncated HTTP response", url);
        goto done;
    }
    *hend = 0;
    char *bodyp = hend + 4;
    size_t bl = len - (size_t)(bodyp - resp);
    for (char *h = resp; *h; h++)
        if (*h >= 'A' && *h <= 'Z')
            *h = (char)(*h - 'A' + 'a');
    if (strstr(resp, "transfer-encoding: chunked")) {
        long u = unchunk(bodyp, bl);
        if (u < 0) {
            fail(err, errlen, "%s: malformed chunked body", url);
            goto done;
        }
        bl = (size_t)u;
    }
    if (status != 200) {
        fail(err, errlen, "%s answered HTTP %d: %.200s", url, status, bodyp);
        goto done;
    }
    char jerr[128];
    vj_val *root = vj_parse(bodyp, bl, jerr, sizeof(jerr));
    if (!root) {
        fail(err, errlen, "%s: bad JSON (%s)", url, jerr);
        goto done;
    }
    const vj_val *choices = vj_get(root, "choices");
    const vj_val *c0 = choices && choices->type == VJ_ARR && choices->len ? &choices->kids[0]
                                                                         : NULL;
    const char *text = vj_str(vj_get(vj_get(c0, "message"), "content"), NULL);
    if (!text) {
        fail(err, errlen, "%s: no choices[0].message.content in the answer", url);
        vj_free(root);
        goto done;
    }
    while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r' || *text == '"')
        text++;
    size_t tl = strlen(text);
    while (tl && (text[tl - 1] == ' ' || text[tl - 1] == '\n' || text[tl - 1] == '\t' ||
                  text[tl - 1] == '\r' || text[tl - 1] == '"'))
        tl--;
    if (!tl) {
        fail(err, errlen, "%s: the model answered an empty caption", url);
        vj_free(root);
        goto done;
    }
    *out = malloc(tl + 1);
    if (*out) {
        memcpy(*out, text, tl);
        (*out)[tl] = 0;
        ret = 0;
    } else {
        fail(err, errlen, "out of memory");
    }
    vj_free(root);
done:
    if (ai)
        freeaddrinfo(ai);
    if (fd >= 0)
        close(fd);
    free(req);
    free(resp);
    return ret;
}
