/* core/server.c: the HTTP/1.1 server under every cmesh process (see server.h): its flags,
 * the built-in /healthz, /readyz and /metrics, and the workers: one loop, one SO_REUSEPORT
 * listener and the connections of each (conn.c; stream mode in stream.c), the signals,
 * and the graceful drain. Calls the service's handlers through the router. */
#include "core/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/flags.h"
#include "core/json.h"
#include "core/server_int.h"

/* ------------------------------------------------------------------------- */
/* options                                                                    */

void cm_server_opts_default(cm_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 0;
    o->workers = 1;
    o->drain_timeout_ms = 10000;
    o->request_timeout_ms = 10000;
    o->idle_timeout_ms = 60000;
    o->max_header = 16 * 1024;
    o->max_uri = 8 * 1024;
    o->max_body = 1024 * 1024;
    o->max_connections = 10000;
    snprintf(o->access_log, sizeof o->access_log, "stderr");
    o->log_format = CM_LOG_FORMAT_AUTO;
    o->log_probes = 0;
}

/* --listen: host and port of cm_server_opts_t, shown back as HOST:PORT. */
static int listen_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    (void)f;
    cm_server_opts_t *o = field;
    if (cm_parse_hostport(v, o->host, sizeof o->host, &o->port) < 0) {
        snprintf(err, cap, "'%s' is not HOST:PORT or :PORT with a port from 0 to 65535", v);
        return -EINVAL;
    }
    return 0;
}

static void listen_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    (void)f;
    const cm_server_opts_t *o = field;
    int v6 = strchr(o->host, ':') != NULL;
    snprintf(out, cap, "%s%s%s:%d", v6 ? "[" : "", o->host, v6 ? "]" : "", o->port);
}

const cm_flag_type_t cm_server_listen_type = {listen_parse, listen_show, sizeof(cm_server_opts_t),
                                              NULL};

static const cm_flag_choice_t log_formats[] = {
    {"auto", CM_LOG_FORMAT_AUTO}, {"text", CM_LOG_FORMAT_TEXT}, {"json", CM_LOG_FORMAT_JSON}, {0}};
static const cm_flag_choice_t on_off[] = {{"off", 0}, {"on", 1}, {0}};

#define S cm_server_opts_t
const cm_flag_t cm_server_flags[] = {
    {.name = "listen",
     .arg = "HOST:PORT",
     .type = &cm_server_listen_type,
     .offset = 0,
     .size = sizeof(S),
     .help = "address to serve on; port 0 picks a free one (logged at start)"},
    CM_FLAG_INT("workers", "N", S, workers, 1, 64, "event-loop threads sharing the port"),
    CM_FLAG_STR("access-log", "TARGET", S, access_log, 0,
                "where access lines go: off, stderr or a file PATH (appended to)"),
    CM_FLAG_CHOICE("log-format", "auto|text|json", S, log_format, log_formats,
                   "text for people, json (one object a line) for tools; auto is text where the "
                   "lines go to a terminal, json elsewhere"),
    CM_FLAG_CHOICE("log-probes", "on|off", S, log_probes, on_off,
                   "also log GET /healthz and /readyz (health checks, every second per checker)"),
    CM_FLAG_DURATION("drain-timeout", S, drain_timeout_ms, 0,
                     "on SIGTERM, the time in-flight work gets before connections are cut"),
    CM_FLAG_DURATION("request-timeout", S, request_timeout_ms, 1,
                     "a started request must arrive whole within it, else 408"),
    CM_FLAG_DURATION("idle-timeout", S, idle_timeout_ms, 1,
                     "idle keep-alive connections are closed after it"),
    CM_FLAG_SIZE("max-header", S, max_header, 256, "request line and headers, else 431"),
    CM_FLAG_SIZE("max-uri", S, max_uri, 16, "request line, else 414"),
    CM_FLAG_SIZE("max-body", S, max_body, 0, "request body, else 413"),
    CM_FLAG_INT("max-connections", "N", S, max_connections, 1, 1000000,
                "open client connections, all workers together"),
    CM_FLAG_END,
};
#undef S

/* ------------------------------------------------------------------------- */
/* built-in endpoints                                                         */

static server_t *server_of(cm_req_t *r)
{
    return r->conn->w->srv;
}

int cm_server_draining(const cm_req_t *req)
{
    /* a request whose client left has nobody to wait for either */
    return !req->conn || atomic_load(&req->conn->w->srv->draining);
}

uint64_t cm_server_reads(const cm_req_t *req)
{
    return req && req->conn ? req->conn->w->reads : 0;
}

static void handle_healthz(cm_req_t *r)
{
    cm_buf_append_str(&r->res_body, "{\"status\":\"ok\"}");
    cm_res_send(r, 200);
}

static void handle_readyz(cm_req_t *r)
{
    if (atomic_load(&server_of(r)->draining)) {
        cm_buf_append_str(&r->res_body, "{\"status\":\"draining\"}");
        cm_res_send(r, 503);
        return;
    }
    const cm_service_t *svc = server_of(r)->svc;
    char why[512] = "";
    if (svc->ready && svc->ready(svc->config, r->conn->w->state, why, sizeof why) < 0) {
        cm_buf_append_str(&r->res_body, "{\"status\":\"not ready\",\"reason\":");
        cm_json_str(&r->res_body, why, strlen(why));
        cm_buf_append_str(&r->res_body, "}");
        cm_res_send(r, 503);
        return;
    }
    cm_buf_append_str(&r->res_body, "{\"status\":\"ready\"}");
    cm_res_send(r, 200);
}

static void handle_metrics(cm_req_t *r)
{
    const cm_service_t *svc = server_of(r)->svc;
    if (cm_metrics_render(server_of(r)->metrics, &r->res_body) < 0) {
        cm_res_error(r, 500, "out of memory rendering metrics");
        return;
    }
    if (svc->render_metrics)
        svc->render_metrics(svc->config, &r->res_body);
    cm_res_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    cm_res_send(r, 200);
}

static const cm_route_t builtin_routes[] = {
    {CM_GET, "/healthz", handle_healthz},
    {CM_GET, "/readyz", handle_readyz},
    {CM_GET, "/metrics", handle_metrics},
};
#define NBUILTIN ((int)(sizeof builtin_routes / sizeof builtin_routes[0]))

/* ------------------------------------------------------------------------- */
/* workers and draining                                                       */

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Called on every tick while draining: when the last connection is gone, the worker
 * closes its own handles and frees the service state, so uv_run returns. */
static void worker_maybe_stop(worker_t *w)
{
    if (!w->draining || w->nconns > 0 || w->stopped)
        return;
    w->stopped = 1;
    cm_log_stream_flush(w->log);
    close_if_open((uv_handle_t *)&w->tick);
    close_if_open((uv_handle_t *)&w->drain_deadline);
    close_if_open((uv_handle_t *)&w->wake);
    close_if_open((uv_handle_t *)&w->kick_check);
    close_if_open((uv_handle_t *)&w->kick_idle);
    if (w->srv->svc->worker_free)
        w->srv->svc->worker_free(w->state);
    w->state = NULL;
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    cm_log_stream_flush(w->log);
    worker_maybe_stop(w);
}

static void on_drain_deadline(uv_timer_t *t)
{
    worker_t *w = t->data;
    while (w->conns)
        cm__conn_close(w->conns);
    worker_maybe_stop(w);
}

static void on_wake(uv_async_t *a)
{
    worker_t *w = a->data;
    if (w->draining)
        return;
    w->draining = 1;
    close_if_open((uv_handle_t *)&w->listener);
    if (w->admin_on)
        close_if_open((uv_handle_t *)&w->admin);
    uv_timer_start(&w->drain_deadline, on_drain_deadline, w->srv->opts->drain_timeout_ms, 0);
    /* idle connections go now; busy ones after their answers, which say Connection:
     * close because w->draining is set. Not close_pending here: on_read drops input once
     * it is set, so a request half-received at SIGTERM would never be completed. */
    for (cm_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (!c->head && !c->cur && !cm_parser_mid_request(&c->parser))
            cm__conn_close(c);
    }
    worker_maybe_stop(w);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int resolve(const char *host, int port, struct addrinfo **ai)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, ai);
    if (rc != 0) {
        cm_log_msg(CM_LOG_ERROR, "listen: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

static void log_in_use(const char *host, int port)
{
    cm_log_msg(CM_LOG_ERROR,
               "listen: cannot bind %s:%d: address already in use (another process listens "
               "there); stop it or choose another --listen",
               host, port);
}

/* reuseport: the workers' traffic listeners share the port; the admin listener must not,
 * or it would take a share of the traffic port's connections if given the same port. */
static int listen_socket(const char *host, int port, int reuseport, int *fd_out, int *bound_port)
{
    struct addrinfo *ai;
    int rc = resolve(host, port, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = -errno;
        if (rc == -EADDRINUSE)
            log_in_use(host, port);
        else
            cm_log_msg(CM_LOG_ERROR, "listen: cannot bind %s:%d: %s", host, port, strerror(-rc));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

/* SO_REUSEPORT is for our own workers only: with it, a second cmesh (same user) on the
 * same port would bind too and the kernel would split the connections between the two.
 * So before the first worker binds, a probe socket binds the address with SO_REUSEADDR
 * but without SO_REUSEPORT: that bind fails with EADDRINUSE while any other socket
 * listens on the port (with or without SO_REUSEPORT, on this address or a wildcard),
 * yet succeeds past TIME_WAIT leftovers of an earlier run. Returns 0 or -errno (logged). */
static int probe_port_free(const cm_server_opts_t *o, int port)
{
    struct addrinfo *ai;
    int rc = resolve(o->host, port, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    if (rc == -EADDRINUSE)
        log_in_use(o->host, port);
    else if (rc < 0)
        cm_log_msg(CM_LOG_ERROR, "listen: cannot bind %s:%d: %s", o->host, port, strerror(-rc));
    return rc;
}

#define PORT_LOCK_WAIT_MS 10000 /* another cmesh's probe-to-listen window is milliseconds */

/* The probe alone leaves a race: two cmesh starting at once may both probe before
 * either listens, then both bind with SO_REUSEPORT. So the probe and the first listen
 * run under a per-port lock: an abstract-namespace unix socket "cmesh-port-PORT",
 * which has exactly the scope of TCP ports (one network namespace), needs no file and
 * is released by the kernel when its process dies. The second process waits for the
 * lock, then its probe sees the first one's listener. Returns the lock's fd or -errno. */
static int port_lock(int port)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "cmesh-port-%d", port);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    for (int waited = 0;; waited += 10) {
        if (bind(fd, (struct sockaddr *)&sa, len) == 0)
            return fd;
        int rc = -errno;
        if (rc != -EADDRINUSE || waited >= PORT_LOCK_WAIT_MS) {
            close(fd);
            cm_log_msg(CM_LOG_ERROR, "listen: cannot take the start-up lock of port %d: %s", port,
                       strerror(-rc));
            return rc;
        }
        usleep(10 * 1000);
    }
}

/* A unix socket bound at path with mode 0600, so that only the owner (and root) can
 * connect: the file's permissions are the admin API's access control. A socket file
 * nobody listens on (a process that died) is replaced; a live one or any other file is
 * not. */
static int unix_socket(const char *path, int *fd_out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        cm_log_msg(CM_LOG_ERROR, "admin socket %s: path longer than %zu bytes", path,
                   sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (lstat(path, &st) == 0) {
        int probe = S_ISSOCK(st.st_mode) ? socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        int refused = probe >= 0 && !live && errno == ECONNREFUSED;
        if (probe >= 0)
            close(probe);
        if (!refused) {
            cm_log_msg(CM_LOG_ERROR, "admin socket %s: %s", path,
                       live ? "another process is listening on it"
                            : "the path exists and is not a stale socket; not replaced");
            close(fd);
            return -EADDRINUSE;
        }
        unlink(path);
    }
    /* mode at creation, not chmod() after bind: no moment where others could connect */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0) {
        rc = -errno;
        cm_log_msg(CM_LOG_ERROR, "admin socket %s: %s", path, strerror(-rc));
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Worker 0's admin listener (cm_service_t.admin). Returns 0 or -errno, logged. */
static int admin_listen(server_t *s, worker_t *w)
{
    const cm_service_t *svc = s->svc;
    int fd = -1, rc, bound = 0;
    uv_stream_t *l = (uv_stream_t *)&w->admin;
    if (svc->admin_socket) {
        if ((rc = unix_socket(svc->admin_socket, &fd)) < 0)
            return rc;
        uv_pipe_init(&w->loop, &w->admin.pipe, 0);
        rc = uv_pipe_open(&w->admin.pipe, fd);
    } else {
        if ((rc = listen_socket(svc->admin_host, svc->admin_port, 0, &fd, &bound)) < 0)
            return rc;
        uv_tcp_init(&w->loop, &w->admin.tcp);
        rc = uv_tcp_open(&w->admin.tcp, fd);
    }
    w->admin_on = 1;
    l->data = w;
    if (rc < 0 || (rc = uv_listen(l, BACKLOG, cm__on_connection)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "admin listen: %s", uv_strerror(rc));
        return rc;
    }
    int v6 = !svc->admin_socket && strchr(svc->admin_host, ':') != NULL;
    if (svc->admin_socket)
        cm_log_msg(CM_LOG_INFO, "%s: admin API on unix:%s (mode 0600)", svc->name,
                   svc->admin_socket);
    else
        cm_log_msg(CM_LOG_INFO, "%s: admin API on http://%s%s%s:%d", svc->name, v6 ? "[" : "",
                   svc->admin_host, v6 ? "]" : "", bound);
    return 0;
}

/* *lock_fd (the port lock, or -1) is closed once this worker listens. */
static int worker_init(server_t *s, worker_t *w, int index, int port, int *lock_fd)
{
    int rc, bound = 0;
    w->srv = s;
    w->index = index;
    w->listen_fd = -1;
    w->rbuf = malloc(READ_BUF_SIZE);
    if (!w->rbuf)
        return -ENOMEM;
    cm__worker_pools_init(w);
    if (getrandom(w->rid_seed, sizeof w->rid_seed, 0) != sizeof w->rid_seed)
        w->rid_seed[0] = (uint64_t)time(NULL) ^ (uint64_t)getpid(), w->rid_seed[1] = 0x9e3779b9;
    if ((rc = uv_loop_init(&w->loop)) < 0)
        return rc;
    w->loop.data = w; /* detached requests find their worker through their loop */
    if ((rc = cm_log_stream_new(s->log, &w->log)) < 0)
        return rc;
    if ((rc = listen_socket(s->opts->host, port, 1, &w->listen_fd, &bound)) < 0)
        return rc;
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    if ((rc = uv_tcp_open(&w->listener, w->listen_fd)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&w->listener, BACKLOG, cm__on_connection)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "listen: %s", uv_strerror(rc));
        return rc;
    }
    if (*lock_fd >= 0) { /* listening: from now on another cmesh's probe fails */
        close(*lock_fd);
        *lock_fd = -1;
    }
    if (index == 0 && s->svc->admin && (rc = admin_listen(s, w)) < 0)
        return rc;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, LOG_FLUSH_MS, LOG_FLUSH_MS);
    uv_timer_init(&w->loop, &w->drain_deadline);
    w->drain_deadline.data = w;
    uv_check_init(&w->loop, &w->kick_check);
    w->kick_check.data = w;
    uv_idle_init(&w->loop, &w->kick_idle);
    if (s->svc->worker_init &&
        (rc = s->svc->worker_init(&w->loop, s->svc->config, &w->state)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "%s: worker %d failed to start: %s", s->svc->name, index,
                   strerror(-rc));
        return rc;
    }
    return bound;
}

static void on_signal(uv_signal_t *sig, int signum)
{
    server_t *s = sig->data;
    /* the main loop holds just these two: stopping them lets it return */
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sighup);
    if (atomic_exchange(&s->draining, 1))
        return;
    cm_log_msg(CM_LOG_INFO, "%s: %s received, draining (up to %llu ms)", s->svc->name,
               signum == SIGTERM ? "SIGTERM" : "SIGINT",
               (unsigned long long)s->opts->drain_timeout_ms);
    for (int i = 0; i < s->opts->workers; i++)
        uv_async_send(&s->workers[i].wake);
}

/* SIGHUP: every process reopens its access log file (logrotate moved it, then sent
 * the signal), then the service does its own (the gateway reloads its config). */
static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)signum;
    server_t *s = sig->data;
    int rc = cm_log_reopen(s->log);
    if (rc == 0)
        cm_log_msg(CM_LOG_INFO, "%s: SIGHUP received, access log reopened: %s", s->svc->name,
                   s->opts->access_log);
    else if (rc < 0)
        cm_log_msg(CM_LOG_ERROR,
                   "%s: SIGHUP received, cannot reopen access log %s: %s; "
                   "lines go on to the old file",
                   s->svc->name, s->opts->access_log, strerror(-rc));
    else if (!s->svc->on_sighup)
        cm_log_msg(CM_LOG_INFO, "%s: SIGHUP received, access log is %s: nothing to reopen",
                   s->svc->name, s->opts->access_log);
    if (s->svc->on_sighup)
        s->svc->on_sighup(s->svc->config);
}

/* Builds the route table: built-ins first, then the service's. */
static int make_router(const cm_service_t *svc, cm_router_t **out)
{
    int n = NBUILTIN + svc->nroutes;
    cm_route_t *all = malloc(sizeof *all * (size_t)n);
    if (!all)
        return -ENOMEM;
    memcpy(all, builtin_routes, sizeof builtin_routes);
    if (svc->nroutes) /* the gateway has none (routes NULL): all goes to its fallback */
        memcpy(all + NBUILTIN, svc->routes, sizeof *all * (size_t)svc->nroutes);
    int rc = cm_router_new(all, n, out);
    free(all);
    return rc;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    close_if_open(h);
}

static void worker_teardown(worker_t *w)
{
    if (w->state && w->srv->svc->worker_free)
        w->srv->svc->worker_free(w->state);
    w->state = NULL;
    uv_walk(&w->loop, walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    cm__worker_pools_free(w); /* after the loop: closing connections gave theirs back */
    cm_log_stream_free(w->log);
    free(w->rbuf);
}

int cm_server_run(const cm_server_opts_t *o, const cm_service_t *svc)
{
    server_t s = {.opts = o, .svc = svc};
    int rc, started = 0;
    signal(SIGPIPE, SIG_IGN);
    cm_log_set_format((cm_log_format_t)o->log_format);
    if ((rc = make_router(svc, &s.router)) < 0)
        return rc;
    const char **names = malloc(sizeof *names * (size_t)(cm_router_npatterns(s.router) + 1));
    for (int i = 0; names && i < cm_router_npatterns(s.router); i++)
        names[i] = cm_router_pattern(s.router, i);
    rc = names ? cm_metrics_new(svc->name, names, cm_router_npatterns(s.router), &s.metrics)
               : -ENOMEM;
    free(names);
    if (rc < 0)
        goto out;
    if ((rc = cm_log_open(o->access_log, &s.log)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "--access-log %s: %s", o->access_log, strerror(-rc));
        goto out;
    }
    s.workers = calloc((size_t)o->workers, sizeof *s.workers);
    if (!s.workers) {
        rc = -ENOMEM;
        goto out;
    }
    int port = o->port, lock_fd = -1;
    if (port) { /* port 0: the kernel picks a port nobody uses */
        if ((lock_fd = port_lock(port)) < 0) {
            rc = lock_fd;
            goto out;
        }
        if ((rc = probe_port_free(o, port)) < 0) {
            close(lock_fd);
            goto out;
        }
    }
    for (; started < o->workers; started++) {
        rc = worker_init(&s, &s.workers[started], started, port, &lock_fd);
        if (rc < 0) {
            started++;
            if (lock_fd >= 0)
                close(lock_fd);
            goto out;
        }
        port = rc; /* every later worker binds the port the first one got */
    }
    /* the access lines name the instance by the address it really bound (port 0 picks
     * one); set before the worker threads start, read-only after */
    char instance[300];
    int v6 = strchr(o->host, ':') != NULL;
    snprintf(instance, sizeof instance, "%s%s%s:%d", v6 ? "[" : "", o->host, v6 ? "]" : "", port);
    cm_log_conf_t lc = {.format = (cm_log_format_t)o->log_format,
                        .probes = o->log_probes,
                        .service = svc->name,
                        .instance = instance};
    if ((rc = cm_log_configure(s.log, &lc)) < 0)
        goto out;
    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &s.sigterm);
    uv_signal_init(main_loop, &s.sigint);
    s.sigterm.data = s.sigint.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_init(main_loop, &s.sighup);
    s.sighup.data = &s;
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);
    for (int i = 0; i < o->workers; i++)
        uv_thread_create(&s.workers[i].thread, worker_main, &s.workers[i]);
    cm_log_msg(CM_LOG_INFO, "%s: listening on http://%s%s%s:%d (%d worker%s)", svc->name,
               strchr(o->host, ':') ? "[" : "", o->host, strchr(o->host, ':') ? "]" : "", port,
               o->workers, o->workers == 1 ? "" : "s");
    /* the main loop holds only the signal handles: it returns after the first signal */
    uv_run(main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < o->workers; i++)
        uv_thread_join(&s.workers[i].thread);
    uv_close((uv_handle_t *)&s.sigterm, NULL);
    uv_close((uv_handle_t *)&s.sigint, NULL);
    uv_close((uv_handle_t *)&s.sighup, NULL);
    uv_run(main_loop, UV_RUN_DEFAULT);
    cm_log_msg(CM_LOG_INFO, "%s: drained, exiting", svc->name);
    rc = 0;
out:
    for (int i = 0; i < started; i++)
        worker_teardown(&s.workers[i]);
    if (started > 0 && s.workers[0].admin_on && svc->admin_socket)
        unlink(svc->admin_socket); /* ours: unix_socket() never replaces a live one */
    free(s.workers);
    cm_log_close(s.log);
    cm_metrics_free(s.metrics);
    cm_router_free(s.router);
    return rc;
}
