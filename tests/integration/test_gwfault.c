/* tests/integration/test_gwfault.c: the gateway's fault tolerance with real processes and
 * real sockets: instances killed with SIGKILL under load, slow and failing instances,
 * resets, retry budget, circuit breaking, SIGHUP reloads and run-time upstream swaps.
 * Upstreams are real `cmesh users` instances or a small scripted upstream HTTP upstream running in
 * threads of this process (it counts what it receives, can be slow, fail or reset). Every wait is
 * bounded; the assertions are on counts and statuses, never on timings. */
#include "api_util.h"
#include "gwadmin_util.h"
#include "h_util.h"
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>

/* ------------------------------------------------------------------------- */
/* scripted upstream: one acceptor thread, one thread per connection               */

#define SCRIPTED_MAX_CONNS                                                                         \
    512                        /* connections per scripted upstream over a test; more are refused  \
                                */
#define SCRIPTED_BUF     65536 /* one request head + body must fit */
#define SCRIPTED_POLL_MS 50    /* how often idle threads look at the stop flag */

typedef struct scripted {
    int fd;
    int port;
    char url[64];
    atomic_int status;   /* status answered to every non-health request */
    atomic_int delay_ms; /* wait before answering a non-health request */
    atomic_int reset;    /* 1: read the request, then close with RST, no answer */
    atomic_int requests; /* non-health requests received (head and body read) */
    atomic_int stop;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_t threads[SCRIPTED_MAX_CONNS];
    int nthreads;
} scripted_t;

typedef struct scripted_conn {
    scripted_t *s;
    int fd;
} scripted_conn_t;

/* Length of a complete request at the start of buf, 0 when more bytes are needed. */
static size_t scripted_request_len(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    size_t body = 0;
    for (const char *l = strstr(buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            body = strtoul(l + 17, NULL, 10);
    }
    return len - head >= body ? head + body : 0;
}

static int scripted_is_health(const char *req)
{
    const char *path = strchr(req, ' ');
    return path && (strncmp(path + 1, "/readyz", 7) == 0 || strncmp(path + 1, "/healthz", 8) == 0);
}

/* Sleeps ms in short slices so that scripted_stop never waits for a long delay. */
static void scripted_sleep(scripted_t *s, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&s->stop); slept += 10)
        usleep(10 * 1000);
}

static void scripted_answer(scripted_t *s, int fd, int status)
{
    char body[96], resp[512];
    int bl = snprintf(body, sizeof body, "{\"scripted\":%d,\"status\":%d}", s->port, status);
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 %d Scripted upstream\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      status, bl, body);
    const char *p = resp;
    size_t left = (size_t)rl;
    while (left) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the gateway gave up on this try: fine */
        p += n;
        left -= (size_t)n;
    }
}

static void *scripted_conn_main(void *arg)
{
    scripted_conn_t c = *(scripted_conn_t *)arg;
    free(arg);
    scripted_t *s = c.s;
    char *buf = malloc(SCRIPTED_BUF + 1);
    size_t len = 0;
    while (buf && !atomic_load(&s->stop)) {
        size_t rl = scripted_request_len(buf, len);
        if (!rl) {
            struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
            if (poll(&pfd, 1, SCRIPTED_POLL_MS) == 0)
                continue;
            ssize_t n = len < SCRIPTED_BUF ? recv(c.fd, buf + len, SCRIPTED_BUF - len, 0) : -1;
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            continue;
        }
        if (scripted_is_health(buf)) {
            scripted_answer(s, c.fd, 200);
        } else {
            atomic_fetch_add(&s->requests, 1);
            if (atomic_load(&s->reset)) {
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                break;
            }
            scripted_sleep(s, atomic_load(&s->delay_ms));
            scripted_answer(s, c.fd, atomic_load(&s->status));
        }
        memmove(buf, buf + rl, len - rl);
        len -= rl;
        buf[len] = '\0';
    }
    free(buf);
    close(c.fd);
    return NULL;
}

static void scripted_spawn_conn(scripted_t *s, int fd)
{
    pthread_mutex_lock(&s->mu);
    scripted_conn_t *c = malloc(sizeof *c);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (c && s->nthreads < SCRIPTED_MAX_CONNS) {
        c->s = s;
        c->fd = fd;
        if (pthread_create(&s->threads[s->nthreads], &attr, scripted_conn_main, c) == 0) {
            s->nthreads++;
            c = NULL;
            fd = -1;
        }
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_unlock(&s->mu);
    free(c);
    if (fd >= 0)
        close(fd);
}

static void *scripted_accept_main(void *arg)
{
    scripted_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, SCRIPTED_POLL_MS) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd >= 0)
            scripted_spawn_conn(s, fd);
    }
    return NULL;
}

/* Starts a scripted upstream on a free loopback port answering `status` after `delay_ms`. */
static scripted_t *scripted_start(int status, int delay_ms)
{
    scripted_t *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0, "scripted bind: %s",
                 strerror(errno));
    cr_assert_eq(listen(s->fd, 128), 0);
    socklen_t l = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    atomic_store(&s->status, status);
    atomic_store(&s->delay_ms, delay_ms);
    pthread_mutex_init(&s->mu, NULL);
    cr_assert_eq(pthread_create(&s->acceptor, NULL, scripted_accept_main, s), 0);
    return s;
}

static int scripted_count(scripted_t *s)
{
    return atomic_load(&s->requests);
}

static void scripted_stop(scripted_t *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->acceptor, NULL);
    close(s->fd);
    pthread_mutex_lock(&s->mu);
    int n = s->nthreads;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------------------- */
/* gateway, config file and admin API                                          */

static char cfg_path[300]; /* the running gateway's config file */
static h_proc_t g_admin;   /* its admin API (a listener of its own) */

/* Writes yaml to a fresh config file and starts the gateway on it. */
static void gw_start(h_proc_t *gw, const char *yaml, const char *workers)
{
    char dir[256];
    h_tempdir(dir, sizeof dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/gw.yaml", dir);
    h_write_text(cfg_path, yaml);
    char admin[64];
    adm_prepare(&g_admin, admin, sizeof admin);
    h_start(gw, "gateway", "--config", cfg_path, "--access-log", "off", "--workers", workers,
            "--admin-listen", admin, NULL);
}

/* Rewrites the running gateway's config and sends SIGHUP. */
static void gw_reload(h_proc_t *gw, const char *yaml)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", cfg_path);
    h_write_text(tmp, yaml);
    cr_assert_eq(rename(tmp, cfg_path), 0);
    cr_assert_eq(kill(gw->pid, SIGHUP), 0);
}

static int gw_alive(const h_proc_t *gw)
{
    return gw->pid > 0 && waitpid(gw->pid, NULL, WNOHANG) == 0;
}

/* GET /_cmesh/routes, the route named name (new reference), or NULL. */
static json_t *admin_route(const h_proc_t *gw, const char *name)
{
    (void)gw;
    h_resp_t r = h_req(&g_admin, "GET", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /_cmesh/routes: %ld %s", r.status, r.body);
    json_t *all = h_json(&r);
    h_resp_free(&r);
    json_t *routes = json_object_get(all, "routes");
    cr_assert(json_is_array(routes), "no routes array in /_cmesh/routes");
    json_t *found = NULL;
    size_t i;
    json_t *rt;
    json_array_foreach(routes, i, rt)
    {
        const char *n = json_string_value(json_object_get(rt, "name"));
        if (n && strcmp(n, name) == 0)
            found = json_incref(rt);
    }
    json_decref(all);
    return found;
}

/* A boolean field of one upstream of a route: 1, 0, or -1 when not listed. */
static int admin_flag(const h_proc_t *gw, const char *route, const char *url, const char *field)
{
    json_t *rt = admin_route(gw, route);
    cr_assert_not_null(rt, "route %s not in /_cmesh/routes", route);
    int v = -1;
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(rt, "upstreams"), i, u)
    {
        const char *uu = json_string_value(json_object_get(u, "url"));
        if (uu && strcmp(uu, url) == 0) {
            json_t *f = json_object_get(u, field);
            cr_assert(json_is_boolean(f), "upstream %s has no boolean \"%s\"", url, field);
            v = json_is_true(f);
        }
    }
    json_decref(rt);
    return v;
}

/* How many upstreams of route have field true. */
static int admin_count(const h_proc_t *gw, const char *route, const char *field)
{
    json_t *rt = admin_route(gw, route);
    cr_assert_not_null(rt, "route %s not in /_cmesh/routes", route);
    int n = 0;
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(rt, "upstreams"), i, u) n +=
        json_is_true(json_object_get(u, field));
    json_decref(rt);
    return n;
}

/* Polls until the flag has the wanted value; returns 1, or 0 after timeout_ms. */
static int admin_wait_flag(const h_proc_t *gw, const char *route, const char *url,
                           const char *field, int want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if (admin_flag(gw, route, url, field) == want)
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

/* Polls until the route shows this balancer and this many upstreams. */
static int admin_wait_shape(const h_proc_t *gw, const char *route, const char *balancer,
                            size_t nupstreams, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        json_t *rt = admin_route(gw, route);
        const char *b = rt ? json_string_value(json_object_get(rt, "balancer")) : NULL;
        int ok = b && strcmp(b, balancer) == 0 &&
                 json_array_size(json_object_get(rt, "upstreams")) == nupstreams;
        json_decref(rt);
        if (ok)
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

/* Sum of the samples of a metric family in p's GET /metrics whose line contains filter
 * (every label set when filter is NULL). */
static double metric_sum_where(const h_proc_t *p, const char *name, const char *filter)
{
    h_resp_t r = h_req(p, "GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /metrics: %ld", r.status);
    double sum = 0;
    size_t nl = strlen(name);
    for (char *line = r.body; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        if (strncmp(line, name, nl) == 0 && (line[nl] == '{' || line[nl] == ' ') &&
            (!filter || strstr(line, filter))) {
            /* the value follows the last '}': label values may hold braces ("/users/{id}") */
            const char *v = line[nl] == '{' ? strrchr(line, '}') : line + nl;
            if (v)
                sum += strtod(v + (line[nl] == '{'), NULL);
        }
        line = eol ? eol + 1 : NULL;
    }
    h_resp_free(&r);
    return sum;
}

static double metric_sum(const h_proc_t *p, const char *name)
{
    return metric_sum_where(p, name, NULL);
}

/* ------------------------------------------------------------------------- */
/* client load: threads with one keep-alive curl handle each                   */

#define LOAD_THREADS 4
#define LOAD_MAX     50000 /* requests per thread at most: bounds a test that hangs */

typedef struct load {
    const char *base;  /* gateway URL */
    const char *path;  /* GET path, or "/users" for POST mode */
    int post;          /* 1: POST /users with a unique email and Idempotency-Key */
    const char *tag;   /* makes emails and keys unique per test */
    int t;             /* thread number */
    atomic_int *stop;  /* set by the test to end the load */
    atomic_int *okays; /* shared count of 2xx answers */
    int ok, bad, transport;
    atomic_int done; /* the thread left its loop */
    long first_bad;
    char first_bad_body[256];
    char body[256]; /* start of the current answer's body */
    size_t body_len;
    char first_err[CURL_ERROR_SIZE];
    unsigned char acked[LOAD_MAX]; /* POST mode: 1 when request i got 201 */
} load_t;

static size_t keep_body(char *data, size_t size, size_t n, void *arg)
{
    load_t *l = arg;
    size_t add = size * n, room = sizeof l->body - 1 - l->body_len;
    if (add < room)
        room = add;
    memcpy(l->body + l->body_len, data, room);
    l->body_len += room;
    l->body[l->body_len] = '\0';
    return add;
}

static void load_email(const char *tag, int t, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s.t%d.n%d@gw.example.org", tag, t, i);
}

/* No asserts here: Criterion's asserts belong to the test's own thread. */
static void *load_main(void *arg)
{
    load_t *l = arg;
    CURL *c = curl_easy_init();
    char url[512], errbuf[CURL_ERROR_SIZE];
    snprintf(url, sizeof url, "%s%s", l->base, l->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, l);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    for (int i = 0; i < LOAD_MAX && !atomic_load(l->stop); i++) {
        char body[200], key[120], email[100];
        struct curl_slist *hl = NULL;
        if (l->post) {
            load_email(l->tag, l->t, i, email, sizeof email);
            snprintf(body, sizeof body, "{\"name\":\"Load %d-%d\",\"email\":\"%s\"}", l->t, i,
                     email);
            snprintf(key, sizeof key, "Idempotency-Key: %s-%d-%d", l->tag, l->t, i);
            hl = curl_slist_append(hl, "Content-Type: application/json");
            hl = curl_slist_append(hl, key);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        }
        errbuf[0] = '\0';
        l->body_len = 0;
        l->body[0] = '\0';
        CURLcode rc = curl_easy_perform(c);
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        curl_slist_free_all(hl);
        if (rc != CURLE_OK) {
            if (!l->transport++)
                snprintf(l->first_err, sizeof l->first_err, "%.64s: %.180s", curl_easy_strerror(rc),
                         errbuf);
        } else if (st >= 200 && st < 300) {
            l->ok++;
            l->acked[i] = l->post && st == 201;
            atomic_fetch_add(l->okays, 1);
        } else if (!l->bad++) {
            l->first_bad = st;
            snprintf(l->first_bad_body, sizeof l->first_bad_body, "%s", l->body);
        }
    }
    curl_easy_cleanup(c);
    atomic_store(&l->done, 1);
    return NULL;
}

typedef struct load_set {
    load_t l[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    atomic_int stop;
    atomic_int okays;
} load_set_t;

static load_set_t *load_start(const h_proc_t *gw, const char *path, int post, const char *tag)
{
    load_set_t *ls = calloc(1, sizeof *ls); /* large (acked arrays): not on the stack */
    cr_assert_not_null(ls);
    for (int t = 0; t < LOAD_THREADS; t++) {
        load_t *l = &ls->l[t];
        l->base = gw->url;
        l->path = path;
        l->post = post;
        l->tag = tag;
        l->t = t;
        l->stop = &ls->stop;
        l->okays = &ls->okays;
        cr_assert_eq(pthread_create(&ls->th[t], NULL, load_main, l), 0);
    }
    return ls;
}

/* Waits until `more` further 2xx answers came (at most timeout_ms); returns 1 if so. */
static int load_wait_okays(load_set_t *ls, int more, int timeout_ms)
{
    int target = atomic_load(&ls->okays) + more;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (atomic_load(&ls->okays) >= target)
            return 1;
        int running = 0;
        for (int t = 0; t < LOAD_THREADS; t++)
            running += !atomic_load(&ls->l[t].done);
        if (!running)
            return 0; /* every thread reached LOAD_MAX */
        usleep(10 * 1000);
    }
    return 0;
}

/* Stops the load and asserts no client saw anything but 2xx; returns the 2xx count. */
static int load_stop_no_errors(load_set_t *ls, const char *what)
{
    atomic_store(&ls->stop, 1);
    for (int t = 0; t < LOAD_THREADS; t++)
        pthread_join(ls->th[t], NULL);
    int ok = 0, bad = 0, transport = 0;
    for (int t = 0; t < LOAD_THREADS; t++) {
        load_t *l = &ls->l[t];
        ok += l->ok;
        bad += l->bad;
        transport += l->transport;
        if (l->bad)
            cr_log_error("%s: thread %d first non-2xx: %ld %s", what, t, l->first_bad,
                         l->first_bad_body);
        if (l->transport)
            cr_log_error("%s: thread %d first transport error: %s", what, t, l->first_err);
    }
    cr_log_info("%s: %d ok, %d non-2xx, %d transport errors", what, ok, bad, transport);
    cr_assert_eq(bad, 0, "%s: %d non-2xx answers (of %d)", what, bad, ok + bad + transport);
    cr_assert_eq(transport, 0, "%s: %d transport errors (of %d)", what, transport,
                 ok + bad + transport);
    return ok;
}

/* ------------------------------------------------------------------------- */
/* users instances                                                             */

/* Starts n users instances sharing one SQLite file (the first one's dir). */
static void users_start(h_proc_t *u, int n, char *db, size_t db_cap)
{
    h_start(&u[0], "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    snprintf(db, db_cap, "%s/users.db", u[0].dir);
    for (int i = 1; i < n; i++)
        h_start(&u[i], "users", "--db", db, "--access-log", "off", NULL);
}

/* Walks all of /users on p into a fresh array (new reference), following Link rel=next. */
static json_t *all_users(const h_proc_t *p)
{
    json_t *all = json_array();
    char path[256] = "/users?limit=1000";
    for (int page = 0; page < 1000; page++) {
        h_resp_t r = h_req(p, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        json_t *arr = h_json(&r);
        cr_assert(json_is_array(arr));
        json_array_extend(all, arr);
        json_decref(arr);
        char link[256];
        int more = h_header(&r, "Link", link, sizeof link) == 0;
        h_resp_free(&r);
        if (!more)
            return all;
        snprintf(path, sizeof path, "%.*s", (int)(strchr(link, '>') - link - 1), link + 1);
    }
    cr_assert_fail("paging did not end");
    return all;
}

/* A route over the given upstream URLs (NULL-terminated) with a common policy block. */
static void route_yaml(char *out, size_t cap, const char *name, const char *prefix,
                       const char *policy, ...)
{
    size_t n =
        (size_t)snprintf(out, cap, "  - name: %s\n    prefix: %s\n    upstreams:\n", name, prefix);
    va_list ap;
    va_start(ap, policy);
    const char *u;
    while ((u = va_arg(ap, const char *)) && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "      - %s\n", u);
    va_end(ap);
    if (n < cap)
        snprintf(out + n, cap - n, "%s", policy);
}

/* Sends n sequential GETs; counts statuses into counts[status] (statuses < 600). */
static void get_n(const h_proc_t *gw, const char *path, int n, int *counts)
{
    for (int i = 0; i < n; i++) {
        h_resp_t r = h_req(gw, "GET", path, NULL, NULL);
        cr_assert(r.status > 0 && r.status < 600, "GET %s: transport error", path);
        counts[r.status]++;
        h_resp_free(&r);
    }
}

/* ------------------------------------------------------------------------- */
/* (1), (2) an instance killed with SIGKILL under load                         */

/* Fails fast on connect refusals and passes health checks on a short interval, so a
 * dead instance is found both passively and actively. */
#define KILL_POLICY                                                                                \
    "    balancer: round_robin\n"                                                                  \
    "    retries: { attempts: 3, backoff: 5ms, backoff_max: 50ms }\n"                              \
    "    health: { path: /readyz, interval: 200ms, timeout: 200ms, rise: 2, fall: 2 }\n"           \
    "    outlier: { failures: 3, base_ejection: 30s }\n"

Test(gwfault, get_load_survives_sigkill_of_one_instance)
{
    h_proc_t u[2], gw;
    char db[300], route[1024], yaml[1200];
    users_start(u, 2, db, sizeof db);
    json_int_t id = api_create_user(&u[0], "Reader", "reader@gw.example.org");
    route_yaml(route, sizeof route, "users", "/users", KILL_POLICY, u[0].url, u[1].url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "2");

    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    load_set_t *ls = load_start(&gw, path, 0, "get");
    cr_assert(load_wait_okays(ls, 200, 10000), "no load before the kill");
    usleep(800 * 1000);
    h_kill9(&u[1]);
    usleep(1500 * 1000);
    int after_kill = load_wait_okays(ls, 200, 10000);
    load_stop_no_errors(ls, "GET during SIGKILL");
    cr_assert(after_kill, "the gateway did not keep serving after the kill");
    free(ls);
    cr_assert(admin_wait_flag(&gw, "users", u[1].url, "healthy", 0, 10000),
              "the killed instance is still shown healthy after 10 s");
    api_stop_clean(&gw);
    api_stop_clean(&u[0]);
}

Test(gwfault, idempotent_post_load_survives_sigkill_without_duplicates)
{
    h_proc_t u[2], gw;
    char db[300], route[1024], yaml[1200];
    users_start(u, 2, db, sizeof db);
    route_yaml(route, sizeof route, "users", "/users", KILL_POLICY, u[0].url, u[1].url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "2");

    load_set_t *ls = load_start(&gw, "/users", 1, "post");
    cr_assert(load_wait_okays(ls, 100, 10000), "no load before the kill");
    usleep(800 * 1000);
    h_kill9(&u[1]);
    usleep(1500 * 1000);
    int after_kill = load_wait_okays(ls, 100, 10000);
    int created = load_stop_no_errors(ls, "POST with Idempotency-Key during SIGKILL");
    cr_assert(after_kill, "the gateway did not keep serving after the kill");

    /* every 201 is exactly one row, under the email the client sent */
    json_t *all = all_users(&u[0]);
    cr_assert_eq((int)json_array_size(all), created, "%zu rows stored for %d creates answered 201",
                 json_array_size(all), created);
    json_t *emails = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(all, i, row)
    {
        const char *e = api_str(row, "email");
        cr_assert_null(json_object_get(emails, e), "email %s stored twice", e);
        json_object_set_new(emails, e, json_true());
    }
    for (int t = 0; t < LOAD_THREADS; t++) {
        for (int n = 0; n < LOAD_MAX; n++) {
            if (!ls->l[t].acked[n])
                continue;
            char email[100];
            load_email("post", t, n, email, sizeof email);
            cr_assert_not_null(json_object_get(emails, email), "acknowledged %s is not stored",
                               email);
        }
    }
    json_decref(emails);
    json_decref(all);
    free(ls);
    api_stop_clean(&gw);
    api_stop_clean(&u[0]);
}

/* ------------------------------------------------------------------------- */
/* (3) a slow instance                                                         */

#define SLOW_POLICY                                                                                \
    "    timeouts: { connect: 1s, try: 300ms, total: 2s }\n"                                       \
    "    retries: { attempts: 1 }\n"                                                               \
    "    health: off\n"                                                                            \
    "    outlier: { failures: 1000 }\n"

Test(gwfault, slow_instance_times_out_with_504_and_fast_one_serves)
{
    scripted_t *slow = scripted_start(200, 2000), *fast = scripted_start(200, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "s", "/s", "    balancer: round_robin\n" SLOW_POLICY, slow->url,
               fast->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int n504 = 0, n200 = 0;
    for (int i = 0; i < 10; i++) {
        h_resp_t r = h_req(&gw, "GET", "/s/item", NULL, NULL);
        if (r.status == 504) {
            api_assert_error(&r, 504, NULL);
            n504++;
        } else {
            cr_assert_eq(r.status, 200, "GET /s/item: %ld %s", r.status, r.body);
            char want[32];
            snprintf(want, sizeof want, "\"scripted\":%d", fast->port);
            cr_assert_not_null(strstr(r.body, want), "200 not from the fast one: %s", r.body);
            n200++;
        }
        h_resp_free(&r);
    }
    cr_assert_eq(n504, scripted_count(slow), "%d 504s for %d requests at the slow one", n504,
                 scripted_count(slow));
    cr_assert_eq(n200, scripted_count(fast), "%d 200s for %d requests at the fast one", n200,
                 scripted_count(fast));
    cr_assert_geq(n504, 3, "round robin sent the slow one only %d of 10", n504);
    cr_assert_geq(n200, 3, "round robin sent the fast one only %d of 10", n200);
    api_stop_clean(&gw);
    scripted_stop(slow);
    scripted_stop(fast);
}

Test(gwfault, peak_ewma_sends_a_slow_instance_less_than_round_robin)
{
    /* slow but inside the try timeout: every request succeeds, only latency differs */
    scripted_t *slow = scripted_start(200, 100), *fast = scripted_start(200, 0);
    char rr[1024], ewma[1024], yaml[2400];
    h_proc_t gw;
    route_yaml(rr, sizeof rr, "rr", "/rr",
               "    balancer: round_robin\n    retries: { attempts: 1 }\n    health: off\n",
               slow->url, fast->url, NULL);
    route_yaml(ewma, sizeof ewma, "ewma", "/ewma",
               "    balancer: peak_ewma\n    retries: { attempts: 1 }\n    health: off\n",
               slow->url, fast->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s%s", rr, ewma);
    gw_start(&gw, yaml, "1");

    int counts[600] = {0};
    int before = scripted_count(slow);
    get_n(&gw, "/rr/x", 40, counts);
    int rr_slow = scripted_count(slow) - before;
    before = scripted_count(slow);
    get_n(&gw, "/ewma/x", 40, counts);
    int ewma_slow = scripted_count(slow) - before;
    cr_assert_eq(counts[200], 80, "only %d of 80 requests got 200", counts[200]);
    cr_log_info("slow instance share of 40: round_robin %d, peak_ewma %d", rr_slow, ewma_slow);
    cr_assert_geq(rr_slow, 15, "round robin sent the slow one %d of 40", rr_slow);
    cr_assert_lt(ewma_slow * 2, rr_slow, "peak_ewma sent the slow one %d of 40, round robin %d",
                 ewma_slow, rr_slow);
    api_stop_clean(&gw);
    scripted_stop(slow);
    scripted_stop(fast);
}

/* ------------------------------------------------------------------------- */
/* (4) outlier ejection and panic                                              */

Test(gwfault, failing_instance_is_ejected_after_consecutive_failures)
{
    scripted_t *bad = scripted_start(500, 0), *good = scripted_start(200, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "two", "/two",
               "    balancer: round_robin\n    retries: { attempts: 1 }\n    health: off\n"
               "    outlier: { failures: 3, base_ejection: 60s }\n",
               bad->url, good->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int counts[600] = {0};
    get_n(&gw, "/two/x", 20, counts);
    int bad_seen = scripted_count(bad);
    cr_assert_eq(counts[500], bad_seen, "%d 500s for %d requests at the failing one", counts[500],
                 bad_seen);
    cr_assert_geq(bad_seen, 3, "the failing one got %d requests, fewer than failures", bad_seen);
    cr_assert_leq(bad_seen, 4, "the failing one got %d requests: not ejected after 3", bad_seen);
    cr_assert_eq(admin_flag(&gw, "two", bad->url, "ejected"), 1, "failing one not shown ejected");
    cr_assert_eq(admin_flag(&gw, "two", good->url, "ejected"), 0, "healthy one shown ejected");

    memset(counts, 0, sizeof counts);
    get_n(&gw, "/two/x", 20, counts);
    cr_assert_eq(counts[200], 20, "after the ejection only %d of 20 got 200", counts[200]);
    cr_assert_eq(scripted_count(bad), bad_seen, "an ejected instance still got requests");
    cr_assert_geq(metric_sum(&gw, "cmesh_gateway_upstream_ejections_total"), 1);
    api_stop_clean(&gw);
    scripted_stop(bad);
    scripted_stop(good);
}

Test(gwfault, single_instance_route_is_never_ejected)
{
    scripted_t *bad = scripted_start(500, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "one", "/one",
               "    retries: { attempts: 1 }\n    health: off\n"
               "    outlier: { failures: 2, base_ejection: 60s }\n",
               bad->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int counts[600] = {0};
    get_n(&gw, "/one/x", 10, counts);
    cr_assert_eq(counts[500], 10, "only %d of 10 answered by the instance (503: %d, 502: %d)",
                 counts[500], counts[503], counts[502]);
    cr_assert_eq(scripted_count(bad), 10);
    cr_assert_eq(admin_flag(&gw, "one", bad->url, "ejected"), 0, "the only instance was ejected");
    api_stop_clean(&gw);
    scripted_stop(bad);
}

Test(gwfault, two_instance_route_ejects_at_most_one)
{
    scripted_t *a = scripted_start(500, 0), *b = scripted_start(500, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "two", "/two",
               "    balancer: round_robin\n    retries: { attempts: 1 }\n    health: off\n"
               "    outlier: { failures: 2, base_ejection: 60s, max_ejected: 50% }\n",
               a->url, b->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int counts[600] = {0};
    get_n(&gw, "/two/x", 20, counts);
    cr_assert_eq(counts[500], 20, "only %d of 20 reached an instance (503: %d, 502: %d)",
                 counts[500], counts[503], counts[502]);
    cr_assert_eq(scripted_count(a) + scripted_count(b), 20);
    int ejected = admin_count(&gw, "two", "ejected");
    cr_assert_leq(ejected, 1, "%d of 2 instances ejected with max_ejected 50%%", ejected);
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
}

Test(gwfault, panic_routes_across_all_instances_when_all_fail)
{
    scripted_t *a = scripted_start(500, 0), *b = scripted_start(500, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "p", "/p",
               "    balancer: round_robin\n    retries: { attempts: 1 }\n    health: off\n"
               "    outlier: { failures: 2, base_ejection: 60s, max_ejected: 100%, "
               "panic_below: 50% }\n",
               a->url, b->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int counts[600] = {0};
    get_n(&gw, "/p/x", 20, counts);
    cr_assert_eq(counts[500], 20, "only %d of 20 reached an instance (503: %d, 502: %d)",
                 counts[500], counts[503], counts[502]);
    cr_assert_eq(scripted_count(a) + scripted_count(b), 20);
    cr_assert_gt(scripted_count(a), 0, "panic mode never used instance a");
    cr_assert_gt(scripted_count(b), 0, "panic mode never used instance b");
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
}

/* GETs path n times (all must answer 200); returns how many of them reached s. */
static int share_of(const h_proc_t *gw, const char *path, int n, scripted_t *s)
{
    int before = scripted_count(s), counts[600] = {0};
    get_n(gw, path, n, counts);
    cr_assert_eq(counts[200], n, "%d of %d GETs answered 200", counts[200], n);
    return scripted_count(s) - before;
}

/* slow_start is long (10 min) so the test stays at the ramp's floor, a tenth of the
 * weight, however slowly it runs: with weighted round robin against a full-weight peer
 * that is one request in eleven. */
Test(gwfault, slow_start_ramps_up_a_returning_and_an_added_instance)
{
    scripted_t *a = scripted_start(200, 0), *b = scripted_start(200, 0),
               *c = scripted_start(200, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "w", "/w",
               "    balancer: weighted_round_robin\n    retries: { attempts: 1 }\n"
               "    health: off\n    slow_start: 10m\n"
               "    outlier: { failures: 2, base_ejection: 300ms }\n",
               a->url, b->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int got = share_of(&gw, "/w/x", 40, a);
    cr_assert(got >= 18 && got <= 22, "equal weights, yet a got %d of 40", got);

    atomic_store(&a->status, 500); /* a fails twice and is ejected for 300 ms */
    int counts[600] = {0};
    get_n(&gw, "/w/x", 10, counts);
    cr_assert_eq(counts[500], 2, "%d failures reached the client, not 2", counts[500]);
    cr_assert_eq(admin_flag(&gw, "w", a->url, "ejected"), 1, "a not ejected");
    atomic_store(&a->status, 200);
    cr_assert(admin_wait_flag(&gw, "w", a->url, "ejected", 0, 5000), "a never came back");

    got = share_of(&gw, "/w/x", 44, a);
    cr_assert(got >= 1 && got <= 8, "a returning instance got %d of 44: no ramp", got);

    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\":[\"%s\",\"%s\",\"%s\"]}", a->url, b->url, c->url);
    h_resp_t r = api_send(&g_admin, "PUT", "/_cmesh/routes/w/upstreams", body, NULL);
    cr_assert(r.status >= 200 && r.status < 300, "PUT upstreams: %ld %s", r.status, r.body);
    h_resp_free(&r);
    got = share_of(&gw, "/w/x", 48, c);
    cr_assert(got >= 1 && got <= 9, "an added instance got %d of 48: no ramp", got);
    json_t *doc = admin_route(&gw, "w"), *up; /* the admin API shows the ramp */
    size_t i;
    json_array_foreach(json_object_get(doc, "upstreams"), i, up)
    {
        const char *url = json_string_value(json_object_get(up, "url"));
        double f = json_number_value(json_object_get(up, "slow_start"));
        if (strcmp(url, b->url) == 0)
            cr_assert_float_eq(f, 1.0, 1e-9, "b is not ramping, yet shows %.2f", f);
        else
            cr_assert_lt(f, 0.5, "%s shows slow_start %.2f", url, f);
    }
    json_decref(doc);
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
    scripted_stop(c);
}

/* ------------------------------------------------------------------------- */
/* (5) active health checks                                                    */

Test(gwfault, health_checks_mark_a_killed_instance_down_and_a_restarted_one_up)
{
    h_proc_t u[2], gw;
    char db[300], route[1024], yaml[1200];
    users_start(u, 2, db, sizeof db);
    route_yaml(route, sizeof route, "users", "/users",
               "    health: { path: /readyz, interval: 100ms, timeout: 100ms, rise: 2, fall: 2 }\n",
               u[0].url, u[1].url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    cr_assert(admin_wait_flag(&gw, "users", u[1].url, "healthy", 1, 10000),
              "instance never shown healthy");
    h_kill9(&u[1]);
    cr_assert(admin_wait_flag(&gw, "users", u[1].url, "healthy", 0, 10000),
              "killed instance still shown healthy after 10 s");
    cr_assert_eq(admin_flag(&gw, "users", u[0].url, "healthy"), 1, "live instance shown down");
    h_restart(&u[1], "users", "--db", db, "--access-log", "off", NULL);
    cr_assert(admin_wait_flag(&gw, "users", u[1].url, "healthy", 1, 10000),
              "restarted instance not healthy again after 10 s");

    int counts[600] = {0};
    get_n(&gw, "/users?limit=1", 10, counts);
    cr_assert_eq(counts[200], 10);
    api_stop_clean(&gw);
    api_stop_clean(&u[0]);
    api_stop_clean(&u[1]);
}

/* ------------------------------------------------------------------------- */
/* (6) what is retried after a reset or a connect failure                      */

#define RESET_POLICY                                                                               \
    "    balancer: round_robin\n"                                                                  \
    "    retries: { attempts: 3, backoff: 1ms, backoff_max: 5ms, min_per_second: 100 }\n"          \
    "    health: off\n"                                                                            \
    "    outlier: { failures: 1000 }\n"

static int reset_try(const h_proc_t *gw, scripted_t *a, scripted_t *b, const char *method,
                     const char *key)
{
    int before = scripted_count(a) + scripted_count(b);
    h_resp_t r =
        key ? api_send(gw, method, "/r/x", "{\"n\":1}", key, NULL)
            : api_send(gw, method, "/r/x", strcmp(method, "GET") ? "{\"n\":1}" : NULL, NULL);
    api_assert_error(&r, 502, NULL);
    h_resp_free(&r);
    return scripted_count(a) + scripted_count(b) - before;
}

Test(gwfault, post_without_key_is_not_retried_after_a_reset)
{
    scripted_t *a = scripted_start(200, 0), *b = scripted_start(200, 0);
    atomic_store(&a->reset, 1);
    atomic_store(&b->reset, 1);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "r", "/r", RESET_POLICY, a->url, b->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    int tries = reset_try(&gw, a, b, "POST", NULL);
    cr_assert_eq(tries, 1, "POST without Idempotency-Key reached upstreams %d times", tries);
    tries = reset_try(&gw, a, b, "POST", "Idempotency-Key: reset-1");
    cr_assert_eq(tries, 3, "POST with Idempotency-Key tried %d times, attempts 3", tries);
    tries = reset_try(&gw, a, b, "GET", NULL);
    cr_assert_eq(tries, 3, "GET tried %d times, attempts 3", tries);
    cr_assert_geq(metric_sum(&gw, "cmesh_gateway_retries_total"), 4);
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
}

Test(gwfault, post_without_key_is_retried_after_a_connect_failure)
{
    h_proc_t u, gw;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    char dead[64], route[1024], yaml[1200];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", h_free_port());
    route_yaml(route, sizeof route, "users", "/users", RESET_POLICY, dead, u.url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    for (int i = 0; i < 6; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"C %d\",\"email\":\"c%d@gw.example.org\"}", i, i);
        h_resp_t r = api_send(&gw, "POST", "/users", body, NULL);
        cr_assert_eq(r.status, 201, "POST %d: %ld %s", i, r.status, r.body);
        h_resp_free(&r);
    }
    json_t *all = all_users(&u);
    cr_assert_eq(json_array_size(all), 6, "%zu rows for 6 creates", json_array_size(all));
    json_decref(all);
    cr_assert_geq(metric_sum(&gw, "cmesh_gateway_retries_total"), 1);
    api_stop_clean(&gw);
    api_stop_clean(&u);
}

/* ------------------------------------------------------------------------- */
/* (7) retry budget, (8) circuit breaking                                      */

Test(gwfault, retry_budget_bounds_retries_when_every_instance_answers_503)
{
    scripted_t *a = scripted_start(503, 0), *b = scripted_start(503, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "b", "/b",
               "    balancer: round_robin\n"
               "    retries: { attempts: 5, backoff: 0ms, backoff_max: 0ms, budget: 20%, "
               "min_per_second: 0 }\n"
               "    health: off\n    outlier: { failures: 1000 }\n",
               a->url, b->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    enum { N = 50 };
    int counts[600] = {0};
    get_n(&gw, "/b/x", N, counts);
    int upstream = scripted_count(a) + scripted_count(b);
    cr_log_info("%d client requests, %d upstream requests", N, upstream);
    cr_assert_eq(counts[503], N, "only %d of %d answered 503", counts[503], N);
    cr_assert_geq(upstream, N);
    cr_assert_leq(upstream, N + N / 2, "%d upstream requests for %d: retries not bounded", upstream,
                  N);
    cr_assert_gt(metric_sum(&gw, "cmesh_gateway_retry_budget_exhausted_total"), 0);
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
}

typedef struct one_get {
    const char *url;
    pthread_barrier_t *go;
    long status;
    char retry_after[32];
} one_get_t;

static void *one_get_main(void *arg)
{
    one_get_t *g = arg;
    pthread_barrier_wait(g->go);
    h_resp_t r = h_http("GET", g->url, NULL, NULL);
    g->status = r.status;
    if (h_header(&r, "Retry-After", g->retry_after, sizeof g->retry_after) != 0)
        g->retry_after[0] = '\0';
    h_resp_free(&r);
    return NULL;
}

Test(gwfault, circuit_breaker_answers_503_with_retry_after_past_max_requests)
{
    scripted_t *slow = scripted_start(200, 1000);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "c", "/c",
               "    retries: { attempts: 1 }\n    health: off\n"
               "    outlier: { failures: 1000 }\n    limits: { max_requests: 1 }\n",
               slow->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "1");

    enum { N = 5 };
    char url[128];
    snprintf(url, sizeof url, "%s/c/x", gw.url);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    one_get_t g[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        g[i] = (one_get_t){.url = url, .go = &go};
        cr_assert_eq(pthread_create(&th[i], NULL, one_get_main, &g[i]), 0);
    }
    int n200 = 0, n503 = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (g[i].status == 200)
            n200++;
        else if (g[i].status == 503 && g[i].retry_after[0])
            n503++;
        else
            cr_assert_fail("request %d: %ld (Retry-After '%s')", i, g[i].status, g[i].retry_after);
    }
    pthread_barrier_destroy(&go);
    cr_assert_geq(n200, 1, "nothing got through the breaker");
    cr_assert_geq(n503, 1, "max_requests 1 with %d concurrent requests: no 503", N);
    cr_assert_eq(scripted_count(slow), n200, "the upstream saw %d requests for %d 200s",
                 scripted_count(slow), n200);
    api_stop_clean(&gw);
    scripted_stop(slow);
}

/* ------------------------------------------------------------------------- */
/* (9) SIGHUP reload under load, (10) upstream set replaced under load         */

static void users_yaml(char *out, size_t cap, const char *balancer, const h_proc_t *u, int n)
{
    char policy[256];
    snprintf(policy, sizeof policy, "    balancer: %s\n    health: { interval: 200ms }\n",
             balancer);
    route_yaml(out, cap, "users", "/users", policy, u[0].url, u[1].url, n > 2 ? u[2].url : NULL,
               NULL);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "routes:\n%s", out);
    snprintf(out, cap, "%s", tmp);
}

/* One GET on an open keep-alive connection; returns the status or -1. */
static int raw_get(int fd, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: gw\r\n\r\n", path);
    h_send(fd, req, (size_t)n);
    size_t len;
    char *resp = h_recv_responses(fd, 1, 5000, &len);
    int st = h_raw_status(resp);
    free(resp);
    return st;
}

Test(gwfault, sighup_reload_under_load_loses_nothing_and_bad_config_keeps_old)
{
    h_proc_t u[3], gw;
    char db[300], yaml[1200];
    users_start(u, 3, db, sizeof db);
    json_int_t id = api_create_user(&u[0], "Reader", "reload@gw.example.org");
    users_yaml(yaml, sizeof yaml, "round_robin", u, 2);
    gw_start(&gw, yaml, "2");
    cr_assert(admin_wait_shape(&gw, "users", "round_robin", 2, 5000));

    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    int fd = h_connect(gw.port);
    cr_assert_eq(raw_get(fd, path), 200, "keep-alive GET before the reloads");

    load_set_t *ls = load_start(&gw, path, 0, "hup");
    cr_assert(load_wait_okays(ls, 100, 10000), "no load before the reloads");
    static const char *const balancers[] = {"round_robin", "least_request", "peak_ewma"};
    for (int i = 0; i < 3; i++) {
        users_yaml(yaml, sizeof yaml, balancers[i], u, 3);
        gw_reload(&gw, yaml);
        cr_assert(admin_wait_shape(&gw, "users", balancers[i], 3, 5000),
                  "reload %d (%s, 3 upstreams) not applied after 5 s", i + 1, balancers[i]);
        cr_assert(load_wait_okays(ls, 100, 10000), "load stalled after reload %d", i + 1);
    }
    cr_assert_eq(raw_get(fd, path), 200, "keep-alive connection opened before the reloads");
    /* an added instance may wait for its first health checks before it takes traffic */
    cr_assert(admin_wait_flag(&gw, "users", u[2].url, "healthy", 1, 10000),
              "the instance added by the reload never became healthy");
    cr_assert(load_wait_okays(ls, 300, 10000), "load stalled after the reloads");
    cr_assert_gt(metric_sum_where(&u[2], "cmesh_http_requests_total", "/users/{id}"), 0,
                 "the instance added by the reload got no requests");

    h_write_text(cfg_path, "routes:\n  - prefix: /users\n    upstreams: [http://127.0.0.1:1\n");
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    cr_assert(h_wait_for_text(gw.log, "gw.yaml", 5000, NULL), "the refused reload was not logged");
    cr_assert(load_wait_okays(ls, 100, 10000), "load stalled after the bad reload");
    load_stop_no_errors(ls, "GET during SIGHUP reloads");
    free(ls);
    cr_assert(gw_alive(&gw), "the gateway died on a bad config");
    cr_assert(admin_wait_shape(&gw, "users", "peak_ewma", 3, 0), "bad config replaced the old");
    cr_assert_eq(raw_get(fd, path), 200, "keep-alive connection after the bad reload");
    close(fd);
    api_stop_clean(&gw);
    for (int i = 0; i < 3; i++)
        api_stop_clean(&u[i]);
}

Test(gwfault, upstream_set_replaced_under_load_loses_nothing)
{
    scripted_t *a = scripted_start(200, 0), *b = scripted_start(200, 0);
    char route[1024], yaml[1200];
    h_proc_t gw;
    route_yaml(route, sizeof route, "s", "/s", "    balancer: round_robin\n", a->url, NULL);
    snprintf(yaml, sizeof yaml, "routes:\n%s", route);
    gw_start(&gw, yaml, "2");

    load_set_t *ls = load_start(&gw, "/s/x", 0, "swap");
    cr_assert(load_wait_okays(ls, 200, 10000), "no load before the swap");
    char body[128];
    snprintf(body, sizeof body, "{\"upstreams\":[\"%s\"]}", b->url);
    h_resp_t r = api_send(&g_admin, "PUT", "/_cmesh/routes/s/upstreams", body, NULL);
    cr_assert(r.status >= 200 && r.status < 300, "PUT upstreams: %ld %s", r.status, r.body);
    h_resp_free(&r);
    cr_assert(load_wait_okays(ls, 200, 10000), "load stalled after the swap");
    load_stop_no_errors(ls, "GET during an upstream swap");
    free(ls);
    cr_assert_gt(scripted_count(b), 0, "the new instance got nothing");

    cr_assert_eq(admin_flag(&gw, "s", a->url, "healthy"), -1, "old instance still listed");
    cr_assert_neq(admin_flag(&gw, "s", b->url, "healthy"), -1, "new instance not listed");
    int a_before = scripted_count(a), b_before = scripted_count(b);
    int counts[600] = {0};
    get_n(&gw, "/s/x", 30, counts);
    cr_assert_eq(counts[200], 30);
    cr_assert_eq(scripted_count(a), a_before, "the replaced instance still gets traffic");
    cr_assert_eq(scripted_count(b) - b_before, 30);
    api_stop_clean(&gw);
    scripted_stop(a);
    scripted_stop(b);
}
