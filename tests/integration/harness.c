/* tests/integration/harness.c: process control and clients for integration tests
 * (see harness.h). */
#include "harness.h"

#include "h_pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>

#define MAX_PROCS 32
#define MAX_DIRS  64

static pid_t procs[MAX_PROCS];
static char dirs[MAX_DIRS][256];
static int ndirs;

static void cleanup(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] > 0) {
            kill(procs[i], SIGKILL);
            waitpid(procs[i], NULL, 0);
            procs[i] = 0;
        }
    }
    for (int i = 0; i < ndirs; i++) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%.255s'", dirs[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", dirs[i]);
    }
    ndirs = 0;
}

/* Once per test process: whatever a test leaves (processes, temp dirs) goes at exit,
 * also when an assertion ended the test early. */
static void register_cleanup(void)
{
    static int registered;
    if (!registered) {
        atexit(cleanup);
        curl_global_init(CURL_GLOBAL_ALL);
        registered = 1;
    }
}

static void track(pid_t pid)
{
    register_cleanup();
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] <= 0) {
            procs[i] = pid;
            return;
        }
    }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == pid)
            procs[i] = 0;
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

void h_tempdir(char *out, size_t cap)
{
    register_cleanup();
    snprintf(out, cap, "/tmp/cmesh-it-XXXXXX");
    cr_assert_not_null(mkdtemp(out));
    if (ndirs < MAX_DIRS)
        snprintf(dirs[ndirs++], sizeof dirs[0], "%s", out);
}

static void spawn(h_proc_t *p, const char *sub, va_list ap)
{
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    char *argv[64];
    char listen[64];
    int n = 0;
    argv[n++] = (char *)bin;
    argv[n++] = (char *)sub;
    argv[n++] = "--listen";
    snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
    argv[n++] = listen;
    const char *a;
    static char expanded[32][512];
    int ne = 0;
    int pg = h_pg_on();
    while ((a = va_arg(ap, const char *)) && n < 62) {
        const char *d = strstr(a, "{dir}");
        if (d && ne < 32) {
            snprintf(expanded[ne], sizeof expanded[0], "%.*s%s%s", (int)(d - a), a, p->dir, d + 5);
            a = expanded[ne++];
        }
        /* the same suites on PostgreSQL: the file names a database of its own */
        if (pg && n > 0 && strcmp(argv[n - 1], "--db") == 0 && ne < 32) {
            char path[512];
            snprintf(path, sizeof path, "%s", a);
            h_pg_url_for(path, expanded[ne], sizeof expanded[0]);
            a = expanded[ne++];
        }
        argv[n++] = (char *)a;
    }
    argv[n] = NULL;
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", p->port);
    snprintf(p->log, sizeof p->log, "%s/stderr.log", p->dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, argv);
        _exit(127);
    }
    p->pid = pid;
    track(pid);
    for (int i = 0; i < 200; i++) {
        h_resp_t r = h_req(p, "GET", "/healthz", NULL, NULL);
        long st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            untrack(pid);
            p->pid = 0;
            cr_assert_fail("cmesh %s exited during start; see %s", sub, p->log);
        }
        usleep(50 * 1000);
    }
    cr_assert_fail("cmesh %s did not become healthy; see %s", sub, p->log);
}

void h_start(h_proc_t *p, const char *sub, ...)
{
    p->port = h_free_port();
    h_tempdir(p->dir, sizeof p->dir);
    va_list ap;
    va_start(ap, sub);
    spawn(p, sub, ap);
    va_end(ap);
}

void h_restart(h_proc_t *p, const char *sub, ...)
{
    va_list ap;
    va_start(ap, sub);
    spawn(p, sub, ap);
    va_end(ap);
}

int h_stop(h_proc_t *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            untrack(p->pid);
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(50 * 1000);
    }
    h_kill9(p);
    return -1;
}

void h_kill9(h_proc_t *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    untrack(p->pid);
    p->pid = 0;
}

typedef struct grow {
    char *p;
    size_t len;
} grow_t;

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    grow_t *g = arg;
    size_t add = size * n;
    char *np = realloc(g->p, g->len + add + 1);
    if (!np)
        return 0;
    memcpy(np + g->len, data, add);
    g->p = np;
    g->len += add;
    g->p[g->len] = '\0';
    return add;
}

h_resp_t h_http(const char *method, const char *url, const char *body, const char *const *headers)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_ALL);
        inited = 1;
    }
    h_resp_t r = {0};
    grow_t b = {0}, h = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r.body = b.p ? b.p : strdup("");
    r.body_len = b.len;
    r.headers = h.p ? h.p : strdup("");
    return r;
}

h_resp_t h_req(const h_proc_t *p, const char *method, const char *path, const char *json_body,
               const char *const *headers)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", p->url, path);
    if (json_body && !headers) {
        static const char *const json_ct[] = {"Content-Type: application/json", NULL};
        headers = json_ct;
    }
    return h_http(method, url, json_body, headers);
}

int h_header(const h_resp_t *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *line = r->headers;
    while (line && *line) {
        const char *eol = strstr(line, "\r\n");
        size_t ll = eol ? (size_t)(eol - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(ll - (size_t)(v - line)), v);
            return 0;
        }
        line = eol ? eol + 2 : NULL;
    }
    return -1;
}

json_t *h_json(const h_resp_t *r)
{
    json_error_t e;
    json_t *v = json_loadb(r->body, r->body_len, 0, &e);
    cr_assert_not_null(v, "response body is not JSON (%s): %s", e.text, r->body);
    return v;
}

void h_resp_free(h_resp_t *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

int h_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    return fd;
}

void h_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server may close early on purpose */
        p += n;
        len -= (size_t)n;
    }
}

char *h_recv_all(int fd, int timeout_ms, size_t *len)
{
    grow_t g = {0};
    char buf[16384];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        on_data(buf, 1, (size_t)n, &g);
    }
    *len = g.len;
    return g.p ? g.p : strdup("");
}

char *h_raw(int port, const void *data, size_t len, int timeout_ms, size_t *out_len)
{
    int fd = h_connect(port);
    h_send(fd, data, len);
    char *r = h_recv_all(fd, timeout_ms, out_len);
    close(fd);
    return r;
}

/* ------------------------------------------------------------------------- */
/* added for the http and lifecycle suites                                    */

int h_peer_closed(int fd, int timeout_ms)
{
    char buf[4096];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return 1;
    }
}

int h_wait(h_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            untrack(p->pid);
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(20 * 1000);
    }
    h_kill9(p);
    return -1;
}

/* Length of the first complete response in s[0..len), or 0 when it is not complete. */
static size_t response_len(const char *s, size_t len)
{
    const char *end = memmem(s, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - s) + 4;
    int status = h_raw_status(s);
    if ((status >= 100 && status < 200) || status == 204 || status == 304)
        return head;
    char v[32];
    size_t body = 0;
    char *copy = strndup(s, head);
    if (copy && h_raw_header(copy, "Content-Length", v, sizeof v) == 0)
        body = strtoul(v, NULL, 10);
    free(copy);
    return len - head >= body ? head + body : 0;
}

char *h_recv_responses(int fd, int n, int timeout_ms, size_t *len)
{
    grow_t g = {0};
    char buf[16384];
    for (;;) {
        size_t off = 0;
        int have = 0;
        while (g.p && have < n) {
            size_t l = response_len(g.p + off, g.len - off);
            if (!l)
                break;
            off += l;
            have++;
        }
        if (have >= n)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            break;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            break;
        on_data(buf, 1, (size_t)r, &g);
    }
    *len = g.len;
    return g.p ? g.p : strdup("");
}

int h_raw_status(const char *resp)
{
    int st;
    if (!resp || sscanf(resp, "HTTP/1.%*1[01] %3d", &st) != 1)
        return -1;
    return st;
}

const char *h_raw_body(const char *resp)
{
    const char *end = resp ? strstr(resp, "\r\n\r\n") : NULL;
    return end ? end + 4 : "";
}

int h_raw_header(const char *resp, const char *name, char *out, size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    const char *line = strstr(resp, "\r\n");
    size_t nl = strlen(name);
    while (line && end && line < end) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        size_t ll = (size_t)(eol - line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(eol - v), v);
            return 0;
        }
        line = eol;
    }
    return -1;
}

const char *h_raw_next(const char *resp)
{
    size_t l = resp ? response_len(resp, strlen(resp)) : 0;
    return l && resp[l] ? resp + l : NULL;
}
