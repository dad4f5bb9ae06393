/* tests/integration/scripted_upstream.c: the recording upstream of scripted_upstream.h. One
 * accept thread, one thread per connection (blocking I/O with short polls, so a stop is
 * seen within POLL_MS). Requests are parsed just enough to frame them: Content-Length or
 * chunked; bodies are streamed through a checksum, never held whole. */
#include "scripted_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define POLL_MS      100           /* how often blocked threads look at the stop flag */
#define HEAD_MAX     (64 * 1024)   /* a longer head is recorded raw and the peer closed */
#define BODY_KEEP    (64 * 1024)   /* body bytes kept per request for assertions */
#define RAW_KEEP     (1024 * 1024) /* raw bytes kept per scripted upstream (all are counted) */
#define READ_CHUNK   (256 * 1024)
#define MAX_CONNS    1024 /* connection threads per scripted upstream; more are closed at once */
#define MAX_REQUESTS 8192 /* recorded requests per scripted upstream; more are counted only */
#define STREAM_CHUNK (64 * 1024)
#define DEFAULT_BODY "{\"port\":%d}"

struct us_scripted {
    int listen_fd;
    int port;
    char url[64];
    int stop_pipe[2]; /* written once by us_stop: wakes every poll */
    volatile int stopping;
    pthread_t acceptor;
    pthread_mutex_t mu; /* guards everything below */
    pthread_t conns[MAX_CONNS];
    int nconns;
    us_reply_t reply;  /* strings owned (strdup) */
    char *path_prefix; /* requests whose target starts with it get path_reply */
    us_reply_t path_reply;
    us_request_t *reqs;
    int nreqs;
    int nreqs_total;
    uint64_t bytes;
    char *raw; /* RAW_KEEP + 1 */
    size_t raw_len;
};

typedef struct conn {
    us_scripted_t *s;
    int fd;
    char *buf; /* unconsumed input is buf[off, len) */
    size_t off, len, cap;
    int record; /* 0 while inside a health check */
    us_request_t req;
    size_t body_kept;
} conn_t;

/* ------------------------------------------------------------------------- */
/* checksum, pattern, head parsing                                            */

uint64_t us_checksum(uint64_t sum, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        sum ^= p[i];
        sum *= 1099511628211ULL;
    }
    return sum;
}

void us_pattern(uint64_t offset, void *buf, size_t len)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        uint64_t x = offset + i;
        p[i] = (unsigned char)((x % 251) ^ (x >> 16));
    }
}

int us_head_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), used = 0;
    int found = 0;
    if (cap)
        out[0] = '\0';
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol || eol == line)
            break;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (cap > used) {
                int n =
                    snprintf(out + used, cap - used, "%s%.*s", found ? ", " : "", (int)(e - v), v);
                used += n > 0 ? (size_t)n : 0;
                if (used >= cap)
                    used = cap - 1;
            }
            found++;
        }
        line = eol;
    }
    return found;
}

static int is_health_check(const char *head)
{
    return strncmp(head, "GET /readyz ", 12) == 0 || strncmp(head, "GET /healthz ", 13) == 0;
}

/* ------------------------------------------------------------------------- */
/* recording (under the scripted upstream's mutex)                                         */

static void record_raw(us_scripted_t *s, const char *p, size_t n)
{
    pthread_mutex_lock(&s->mu);
    s->bytes += n;
    size_t keep = RAW_KEEP - s->raw_len < n ? RAW_KEEP - s->raw_len : n;
    memcpy(s->raw + s->raw_len, p, keep);
    s->raw_len += keep;
    s->raw[s->raw_len] = '\0';
    pthread_mutex_unlock(&s->mu);
}

/* Takes ownership of req's strings. */
static void record_request(us_scripted_t *s, us_request_t *req)
{
    pthread_mutex_lock(&s->mu);
    s->nreqs_total++;
    if (s->nreqs < MAX_REQUESTS) {
        s->reqs[s->nreqs++] = *req;
    } else {
        free(req->head);
        free(req->body);
    }
    pthread_mutex_unlock(&s->mu);
    memset(req, 0, sizeof *req);
}

/* ------------------------------------------------------------------------- */
/* connection input                                                           */

/* Reads more input; returns bytes read, 0 on EOF/error, -1 when the scripted upstream stops. */
static ssize_t read_more(conn_t *c)
{
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < READ_CHUNK / 2) {
        size_t ncap = c->cap ? c->cap * 2 : READ_CHUNK;
        char *nb = realloc(c->buf, ncap + 1);
        if (!nb)
            return 0;
        c->buf = nb;
        c->cap = ncap;
    }
    for (;;) {
        if (c->s->stopping)
            return -1;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, POLL_MS);
        if (pr < 0 && errno != EINTR)
            return 0;
        if (pr <= 0)
            continue;
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return 0;
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return n;
    }
}

/* Takes n buffered bytes as consumed; when in_body they are body bytes of c->req. */
static void consume(conn_t *c, size_t n, int in_body)
{
    const char *p = c->buf + c->off;
    if (c->record)
        record_raw(c->s, p, n);
    if (in_body) {
        c->req.body_len += n;
        c->req.body_sum = us_checksum(c->req.body_sum, p, n);
        size_t keep = BODY_KEEP - c->body_kept < n ? BODY_KEEP - c->body_kept : n;
        memcpy(c->req.body + c->body_kept, p, keep);
        c->body_kept += keep;
        c->req.body[c->body_kept] = '\0';
    }
    c->off += n;
}

/* Consumes n body bytes, reading as needed. Returns 0, or -1 when the peer went away. */
static int consume_body(conn_t *c, uint64_t n)
{
    while (n > 0) {
        if (c->off == c->len && read_more(c) <= 0)
            return -1;
        size_t have = c->len - c->off;
        size_t take = have < n ? have : (size_t)n;
        consume(c, take, 1);
        n -= take;
    }
    return 0;
}

/* Makes buf[off..] hold a whole CRLF-terminated line; returns its length with the CRLF,
 * or 0 when the peer went away or the line is absurdly long. */
static size_t need_line(conn_t *c)
{
    for (;;) {
        const char *start = c->buf ? c->buf + c->off : NULL;
        const char *eol = start ? memmem(start, c->len - c->off, "\r\n", 2) : NULL;
        if (eol)
            return (size_t)(eol - start) + 2;
        if (c->len - c->off > HEAD_MAX || read_more(c) <= 0)
            return 0;
    }
}

static int read_chunked_body(conn_t *c)
{
    for (;;) {
        size_t ll = need_line(c);
        if (!ll)
            return -1;
        char *end;
        unsigned long long size = strtoull(c->buf + c->off, &end, 16);
        if (end == c->buf + c->off)
            return -1;
        consume(c, ll, 0);
        if (size == 0)
            break;
        if (consume_body(c, size) < 0)
            return -1;
        ll = need_line(c);
        if (ll != 2)
            return -1;
        consume(c, ll, 0);
    }
    for (;;) { /* trailers, through the empty line */
        size_t ll = need_line(c);
        if (!ll)
            return -1;
        consume(c, ll, 0);
        if (ll == 2)
            return 0;
    }
}

/* Reads one whole request into c->req. Returns 0, or -1 when the connection is done. */
static int read_request(conn_t *c)
{
    const char *end;
    while (!(end = c->buf && c->len > c->off
                       ? memmem(c->buf + c->off, c->len - c->off, "\r\n\r\n", 4)
                       : NULL)) {
        if (c->len - c->off > HEAD_MAX || read_more(c) <= 0)
            return -1;
    }
    size_t head_len = (size_t)(end - (c->buf + c->off)) + 4;
    memset(&c->req, 0, sizeof c->req);
    c->req.head = strndup(c->buf + c->off, head_len);
    c->req.body = calloc(1, BODY_KEEP + 1);
    c->req.body_sum = US_CHECKSUM_INIT;
    c->body_kept = 0;
    cr_assert(c->req.head && c->req.body);
    c->record = !is_health_check(c->req.head);
    consume(c, head_len, 0);
    char v[64];
    char te[256];
    if (us_head_header(c->req.head, "Transfer-Encoding", te, sizeof te) &&
        strcasestr(te, "chunked"))
        return read_chunked_body(c);
    if (us_head_header(c->req.head, "Content-Length", v, sizeof v))
        return consume_body(c, strtoull(v, NULL, 10));
    return 0;
}

/* ------------------------------------------------------------------------- */
/* connection output                                                          */

static int send_all(conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        if (c->s->stopping)
            return -1;
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        if (poll(&pfd, 1, POLL_MS) <= 0)
            continue;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sleeps ms unless the scripted upstream stops first; returns -1 when it stopped. */
static int delay(us_scripted_t *s, int ms)
{
    struct pollfd pfd = {.fd = s->stop_pipe[0], .events = POLLIN};
    if (ms > 0)
        poll(&pfd, 1, ms);
    return s->stopping ? -1 : 0;
}

static int send_stream(conn_t *c, uint64_t size)
{
    char *chunk = malloc(STREAM_CHUNK);
    cr_assert_not_null(chunk);
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0;) {
        size_t n = size - off < STREAM_CHUNK ? (size_t)(size - off) : STREAM_CHUNK;
        us_pattern(off, chunk, n);
        rc = send_all(c, chunk, n);
        off += n;
    }
    free(chunk);
    return rc;
}

/* Answers the request just read per the scripted upstream's reply; returns 1 to keep the
 * connection, 0 to close it. */
static int answer(conn_t *c, int head_only, const char *line)
{
    us_scripted_t *s = c->s;
    if (!c->record) {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        return send_all(c, ok, head_only ? sizeof ok - 3 : sizeof ok - 1) == 0;
    }
    pthread_mutex_lock(&s->mu);
    us_reply_t r = s->reply;
    const char *sp = line ? strchr(line, ' ') : NULL; /* the request line's target */
    if (s->path_prefix && sp && strncmp(sp + 1, s->path_prefix, strlen(s->path_prefix)) == 0)
        r = s->path_reply;
    char *headers = strdup(r.headers ? r.headers : "");
    char *body = r.body ? strdup(r.body) : NULL;
    pthread_mutex_unlock(&s->mu);
    char def[64];
    if (!body) {
        snprintf(def, sizeof def, DEFAULT_BODY, s->port);
        body = strdup(def);
    }
    int keep = 0;
    if (delay(s, r.delay_ms) == 0 && r.status > 0) {
        uint64_t blen = r.stream_size ? r.stream_size : strlen(body);
        char head[8192];
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d Scripted upstream\r\nContent-Length: %llu\r\n%s%s\r\n", r.status,
                 (unsigned long long)blen, r.body ? "" : "Content-Type: application/json\r\n",
                 headers);
        int rc = send_all(c, head, strlen(head));
        if (rc == 0 && !head_only)
            rc = r.stream_size ? send_stream(c, r.stream_size) : send_all(c, body, strlen(body));
        keep = rc == 0 && !strcasestr(headers, "Connection: close");
    }
    free(headers);
    free(body);
    return keep;
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    for (;;) {
        if (read_request(c) < 0)
            break;
        int head_only = strncmp(c->req.head, "HEAD ", 5) == 0;
        char conn_hdr[128];
        int close_after = us_head_header(c->req.head, "Connection", conn_hdr, sizeof conn_hdr) &&
                          strcasestr(conn_hdr, "close");
        char line[256]; /* the request line, for the per-path reply: recording takes c->req */
        snprintf(line, sizeof line, "%s", c->req.head);
        if (c->record)
            record_request(c->s, &c->req);
        else {
            free(c->req.head);
            free(c->req.body);
            memset(&c->req, 0, sizeof c->req);
        }
        if (!answer(c, head_only, line) || close_after)
            break;
    }
    /* bytes of a request the scripted upstream could not frame still count as received */
    c->record = c->req.head ? c->record : 1;
    if (c->len > c->off && c->record)
        record_raw(c->s, c->buf + c->off, c->len - c->off);
    free(c->req.head);
    free(c->req.body);
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    free(c->buf);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    us_scripted_t *s = arg;
    while (!s->stopping) {
        struct pollfd pfd[2] = {{.fd = s->listen_fd, .events = POLLIN},
                                {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(pfd, 2, POLL_MS) <= 0 || !(pfd[0].revents & POLLIN))
            continue;
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        /* the head and the body go out in two sends: without this, Nagle holds the body
         * for the gateway's delayed ACK (40 ms), which would swamp any latency a test sets */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        cr_assert_not_null(c);
        c->s = s;
        c->fd = fd;
        c->record = 1;
        pthread_mutex_lock(&s->mu);
        int ok =
            s->nconns < MAX_CONNS && pthread_create(&s->conns[s->nconns], NULL, conn_main, c) == 0;
        if (ok)
            s->nconns++;
        pthread_mutex_unlock(&s->mu);
        if (!ok) {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* public                                                                     */

us_scripted_t *us_start(void)
{
    us_scripted_t *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->reqs = calloc(MAX_REQUESTS, sizeof *s->reqs);
    s->raw = calloc(1, RAW_KEEP + 1);
    cr_assert(s->reqs && s->raw);
    pthread_mutex_init(&s->mu, NULL);
    s->reply.status = 200;
    cr_assert(pipe2(s->stop_pipe, O_CLOEXEC) == 0);
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) == 0, "scripted bind: %s",
              strerror(errno));
    cr_assert(listen(s->listen_fd, 128) == 0);
    socklen_t l = sizeof a;
    getsockname(s->listen_fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    cr_assert(pthread_create(&s->acceptor, NULL, accept_main, s) == 0);
    return s;
}

static void free_reply_strings(us_reply_t *r)
{
    free((char *)r->headers);
    free((char *)r->body);
    r->headers = r->body = NULL;
}

void us_stop(us_scripted_t *s)
{
    if (!s)
        return;
    s->stopping = 1;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        fprintf(stderr, "scripted_upstream: stop pipe: %s\n", strerror(errno));
    pthread_join(s->acceptor, NULL);
    close(s->listen_fd);
    for (int i = 0; i < s->nconns; i++)
        pthread_join(s->conns[i], NULL);
    us_clear(s);
    free_reply_strings(&s->reply);
    free_reply_strings(&s->path_reply);
    free(s->path_prefix);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->mu);
    free(s->reqs);
    free(s->raw);
    free(s);
}

int us_port(const us_scripted_t *s)
{
    return s->port;
}

const char *us_url(const us_scripted_t *s)
{
    return s->url;
}

void us_set_path_reply(us_scripted_t *s, const char *prefix, const us_reply_t *r)
{
    pthread_mutex_lock(&s->mu);
    free(s->path_prefix);
    free_reply_strings(&s->path_reply);
    s->path_prefix = strdup(prefix);
    s->path_reply = *r;
    s->path_reply.headers = r->headers ? strdup(r->headers) : NULL;
    s->path_reply.body = r->body ? strdup(r->body) : NULL;
    pthread_mutex_unlock(&s->mu);
}

void us_set_reply(us_scripted_t *s, const us_reply_t *r)
{
    pthread_mutex_lock(&s->mu);
    free_reply_strings(&s->reply);
    s->reply = *r;
    s->reply.headers = r->headers ? strdup(r->headers) : NULL;
    s->reply.body = r->body ? strdup(r->body) : NULL;
    pthread_mutex_unlock(&s->mu);
}

int us_count(us_scripted_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nreqs_total;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t us_bytes(us_scripted_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->bytes;
    pthread_mutex_unlock(&s->mu);
    return n;
}

char *us_raw(us_scripted_t *s, size_t *len)
{
    pthread_mutex_lock(&s->mu);
    char *copy = malloc(s->raw_len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, s->raw, s->raw_len + 1);
    *len = s->raw_len;
    pthread_mutex_unlock(&s->mu);
    return copy;
}

int us_request(us_scripted_t *s, int i, us_request_t *out)
{
    int rc = -1;
    pthread_mutex_lock(&s->mu);
    if (i >= 0 && i < s->nreqs) {
        *out = s->reqs[i];
        out->head = strdup(s->reqs[i].head);
        out->body = strdup(s->reqs[i].body);
        rc = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void us_request_free(us_request_t *r)
{
    free(r->head);
    free(r->body);
    r->head = r->body = NULL;
}

void us_clear(us_scripted_t *s)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nreqs; i++)
        us_request_free(&s->reqs[i]);
    s->nreqs = s->nreqs_total = 0;
    s->bytes = 0;
    s->raw_len = 0;
    s->raw[0] = '\0';
    pthread_mutex_unlock(&s->mu);
}
