/* Prompt expansion client against a local one-shot HTTP server: the request
 * carries the prompt, the caption is read from choices[0].message.content
 * (plain and chunked bodies), and failures (HTTP error, bad JSON, nothing
 * listening, bad URL) are reported, never crash. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "expand.h"
#include "t.h"

typedef struct server {
    int fd, port;
    const char *reply;
    char request[8192];
} server;

static void *serve(void *arg)
{
    server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t n = 0;
    /* read the headers and the announced body */
    for (;;) {
        ssize_t r = recv(c, s->request + n, sizeof(s->request) - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->request[n] = 0;
        char *h = strstr(s->request, "\r\n\r\n");
        char *cl = strstr(s->request, "Content-Length: ");
        if (h && cl && n >= (size_t)(h + 4 - s->request) + (size_t)atoi(cl + 16))
            break;
    }
    send(c, s->reply, strlen(s->reply), 0);
    close(c);
    return NULL;
}

static int start(server *s, const char *reply, pthread_t *th)
{
    memset(s->request, 0, sizeof(s->request));
    s->reply = reply;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) || listen(s->fd, 1))
        return -1;
    socklen_t l = sizeof(a);
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    return pthread_create(th, NULL, serve, s);
}

static int ask(const char *reply, const char *path, char **out, char *err, server *s)
{
    pthread_t th;
    if (start(s, reply, &th))
        return -2;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    int r = expand_prompt(url, "tiny", "a \"red\" fox\n", 5000, out, err, 256);
    pthread_join(th, NULL);
    close(s->fd);
    return r;
}

int main(void)
{
    server s;
    char err[256];
    char *out = NULL;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 95\r\n\r\n"
                     "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                     "\" A fox, in snow.\\n\"}}]}";
    T_CHECK(ask(ok, "", &out, err, &s) == 0 && out && !strcmp(out, "A fox, in snow."),
            "plain answer: %s / %s", out ? out : "(null)", err);
    T_CHECK(strstr(s.request, "POST /v1/chat/completions HTTP/1.1") != NULL, "default path");
    T_CHECK(strstr(s.request, "\"content\":\"a \\\"red\\\" fox\\n\"") != NULL,
            "prompt escaped in the request: %s", s.request);
    T_CHECK(strstr(s.request, "\"model\":\"tiny\"") != NULL, "model named");
    free(out);
    out = NULL;

    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "f\r\n{\"choices\":[{\"m\r\n"
                          "1e\r\nessage\":{\"content\":\"Snow.\"}}]}\r\n0\r\n\r\n";
    T_CHECK(ask(chunked, "/v1", &out, err, &s) == 0 && out && !strcmp(out, "Snow."),
            "chunked answer: %s", err);
    T_CHECK(strstr(s.request, "POST /v1/chat/completions ") != NULL, "/v1 completed");
    free(out);
    out = NULL;

    const char *e500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";
    T_CHECK(ask(e500, "/x", &out, err, &s) == -1 && !out && strstr(err, "500"), "HTTP 500: %s",
            err);
    const char *bad = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{\"a\":";
    T_CHECK(ask(bad, "", &out, err, &s) == -1 && !out && strstr(err, "JSON"), "bad JSON: %s",
            err);
    const char *nochoice = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    T_CHECK(ask(nochoice, "", &out, err, &s) == -1 && strstr(err, "choices"), "no choices: %s",
            err);

    /* nothing listening: a port that was just closed */
    T_CHECK(expand_prompt("http://127.0.0.1:1/", NULL, "x", 2000, &out, err, sizeof(err)) == -1 &&
                !out,
            "refused: %s", err);
    T_CHECK(expand_prompt("https://example.com/", NULL, "x", 2000, &out, err, sizeof(err)) == -1 &&
                strstr(err, "http://"),
            "https refused with a clear message: %s", err);
    T_CHECK(expand_prompt("http://:80", NULL, "x", 2000, &out, err, sizeof(err)) == -1,
            "empty host");
    T_DONE();
}
