/* tests/integration/test_newcomer.c: what a new user trips over, in the HTTP core under
 * every process: a port already in use fails the start, SIGHUP reopens the access log, a
 * half-closed client gets its answer, the path is decoded and a trailing slash forgiven,
 * OPTIONS, Host is required and checked, HTTP/1.0 keep-alive. Each against a service
 * and through a gateway (`cmesh gateway --route`), with raw sockets where bytes matter. */
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define RECV_MS 5000 /* cap on waiting for an answer; never a timing assertion */

/* ------------------------------------------------------------------------- */
/* helpers                                                                    */

static void start_users(h_proc_t *p, const char *access_log)
{
    h_start(p, "users", "--db", "{dir}/users.db", "--access-log", access_log, NULL);
}

/* A gateway with one --route /users to url. */
static void start_gateway(h_proc_t *gw, const char *url, const char *access_log)
{
    char route[160];
    snprintf(route, sizeof route, "/users=%s", url);
    h_start(gw, "gateway", "--route", route, "--workers", "1", "--access-log", access_log, NULL);
}

/* Starts `$CMESH_BIN args...` (NULL-terminated) with stderr to err_path; returns the pid. */
static pid_t spawn(const char *err_path, const char *arg0, ...)
{
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = arg0;
    va_list ap;
    va_start(ap, arg0);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int o = open("/dev/null", O_WRONLY);
        if (e < 0 || o < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to ms for pid to exit: its exit status (128+signal), or -1 when still running. */
static int wait_exit(pid_t pid, int ms)
{
    int status;
    for (int waited = 0; waited < ms; waited += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10 * 1000);
    }
    return -1;
}

static void kill_wait(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* One request on a fresh connection; reads until the peer closes (ask for it with
 * Connection: close or HTTP/1.0). Caller frees. */
static char *raw(int port, const char *req)
{
    size_t len;
    return h_raw(port, req, strlen(req), RECV_MS, &len);
}

/* The body's length matches the answer's Content-Length. */
static int body_complete(const char *resp)
{
    char cl[32];
    if (h_raw_header(resp, "Content-Length", cl, sizeof cl) < 0)
        return 0;
    return strlen(h_raw_body(resp)) == (size_t)atol(cl);
}

static void create_user(h_proc_t *p, const char *email)
{
    char body[200];
    snprintf(body, sizeof body, "{\"name\":\"Ada Lovelace\",\"email\":\"%s\"}", email);
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_req(p, "POST", "/users", body, hdrs);
    cr_assert_eq(r.status, 201, "POST /users: %ld %s", r.status, r.body);
    h_resp_free(&r);
}

/* ------------------------------------------------------------------------- */
/* 1. a port already in use                                                  */

static void assert_second_refused(const h_proc_t *first, const char *sub, const char *extra,
                                  const char *extra_value)
{
    char listen[64], err_path[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", first->port);
    snprintf(err_path, sizeof err_path, "%s/second-%s.err", first->dir, sub);
    pid_t pid = spawn(err_path, sub, "--listen", listen, extra, extra_value, NULL);
    int rc = wait_exit(pid, 10000);
    if (rc == -1)
        kill_wait(pid);
    char *err = h_read_file(err_path, NULL);
    cr_assert_neq(rc, -1, "a second %s on a port in use kept running: %s", sub, err);
    cr_assert_neq(rc, 0, "a second %s on a port in use exited 0", sub);
    cr_assert_not_null(strstr(err, "address already in use"), "no clear error: %s", err);
    cr_assert_null(strstr(err, "listening on"), "it said it was listening: %s", err);
    free(err);
}

Test(newcomer, second_process_on_a_port_in_use_exits_non_zero_service_and_gateway)
{
    h_proc_t users;
    start_users(&users, "off");
    char db[300];
    snprintf(db, sizeof db, "%s/other.db", users.dir);
    assert_second_refused(&users, "users", "--db", db);
    assert_second_refused(&users, "gateway", "--route", "/users=http://127.0.0.1:1");
    h_resp_t r = h_req(&users, "GET", "/users", NULL, NULL);
    cr_assert_eq(r.status, 200, "the first instance stopped answering");
    h_resp_free(&r);
    cr_assert_eq(h_stop(&users), 0);

    h_proc_t gw;
    start_gateway(&gw, "http://127.0.0.1:1", "off");
    snprintf(db, sizeof db, "%s/other.db", gw.dir);
    assert_second_refused(&gw, "users", "--db", db);
    assert_second_refused(&gw, "gateway", "--route", "/users=http://127.0.0.1:1");
    cr_assert_eq(h_stop(&gw), 0);
}

/* Two started at the same moment on one free port: exactly one serves, the other fails. */
Test(newcomer, two_started_at_once_on_one_port_leave_exactly_one_listening)
{
    char dir[256];
    h_tempdir(dir, sizeof dir);
    for (int round = 0; round < 5; round++) {
        int port = h_free_port();
        char listen[64], err[2][300], db[2][300];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
        pid_t pid[2];
        for (int i = 0; i < 2; i++) {
            snprintf(err[i], sizeof err[i], "%s/race%d-%d.err", dir, round, i);
            snprintf(db[i], sizeof db[i], "%s/race%d-%d.db", dir, round, i);
        }
        for (int i = 0; i < 2; i++)
            pid[i] = spawn(err[i], "users", "--db", db[i], "--listen", listen, "--workers", "2",
                           "--access-log", "off", NULL);
        int rc[2] = {-1, -1}, exited = -1;
        for (int waited = 0; waited < 10000 && exited < 0; waited += 10) {
            for (int i = 0; i < 2 && exited < 0; i++)
                if ((rc[i] = wait_exit(pid[i], 1)) != -1)
                    exited = i;
        }
        int other = 1 - (exited < 0 ? 0 : exited);
        if (exited < 0) {
            kill_wait(pid[0]);
            kill_wait(pid[1]);
            cr_assert_fail("round %d: both kept running on port %d", round, port);
        }
        cr_assert_neq(rc[exited], 0, "round %d: the refused one exited 0", round);
        char *e = h_read_file(err[exited], NULL);
        cr_assert_not_null(strstr(e, "address already in use"), "round %d: %s", round, e);
        free(e);
        cr_assert_eq(wait_exit(pid[other], 300), -1, "round %d: the other one died too", round);
        char url[80];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
        h_resp_t r = {0};
        for (int i = 0; i < 200 && r.status != 200; i++) {
            h_resp_free(&r);
            r = h_http("GET", url, NULL, NULL);
            if (r.status != 200)
                usleep(20 * 1000);
        }
        cr_assert_eq(r.status, 200, "round %d: the survivor does not answer", round);
        h_resp_free(&r);
        kill(pid[other], SIGTERM);
        if (wait_exit(pid[other], 10000) == -1)
            kill_wait(pid[other]);
    }
}

/* ------------------------------------------------------------------------- */
/* 2. SIGHUP reopens the access log                                          */

static void assert_hup_reopens(h_proc_t *p)
{
    char log[300], rotated[300];
    snprintf(log, sizeof log, "%s/access.log", p->dir);
    snprintf(rotated, sizeof rotated, "%s/access.log.1", p->dir);
    char before[64], after[64], q_before[80], q_after[80]; /* marks of this process only */
    snprintf(before, sizeof before, "mark=original%d", (int)p->pid);
    snprintf(after, sizeof after, "mark=rotated%d", (int)p->pid);
    snprintf(q_before, sizeof q_before, "/users?%s", before);
    snprintf(q_after, sizeof q_after, "/users?%s", after);
    h_resp_t r = h_req(p, "GET", q_before, NULL, NULL);
    h_resp_free(&r);
    char *old;
    h_wait_for_text(log, before, 5000, &old); /* lines reach the file within ~100 ms */
    cr_assert_not_null(strstr(old, before), "no access line before rotation");
    free(old);
    cr_assert_eq(rename(log, rotated), 0);
    cr_assert_eq(kill(p->pid, SIGHUP), 0);
    char *now = NULL;
    for (int i = 0; i < 250; i++) {
        h_resp_t a = h_req(p, "GET", q_after, NULL, NULL);
        cr_assert_eq(a.status, 200, "the process stopped answering after SIGHUP: %ld %s", a.status,
                     a.body ? a.body : "");
        h_resp_free(&a);
        free(now);
        now = h_read_file(log, NULL);
        if (strstr(now, after))
            break;
        usleep(20 * 1000);
    }
    cr_assert_not_null(strstr(now, after), "no access line in the new file");
    cr_assert_null(strstr(now, before), "the new file holds old lines");
    free(now);
    char *stderr_text = h_read_file(p->log, NULL);
    cr_assert_not_null(strstr(stderr_text, "access log reopened"), "not logged: %s", stderr_text);
    free(stderr_text);
    cr_assert_eq(h_stop(p), 0, "the process did not drain and exit 0 after SIGHUP");
}

Test(newcomer, sighup_reopens_the_access_log_of_a_service_and_of_the_gateway)
{
    h_proc_t users, gw;
    start_users(&users, "{dir}/access.log");
    start_gateway(&gw, users.url, "{dir}/access.log");
    assert_hup_reopens(&gw);
    char *err = h_read_file(gw.log, NULL);
    cr_assert_not_null(strstr(err, "config reloaded"), "the gateway's reload is gone: %s", err);
    free(err);
    assert_hup_reopens(&users);
}

/* ------------------------------------------------------------------------- */
/* 3. a half-closed client gets its answer                                   */

static void assert_half_close_answered(int port, const char *what)
{
    static const char req[] = "GET /users HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 100; i++) {
        int fd = h_connect(port);
        h_send(fd, req, sizeof req - 1);
        size_t len;
        char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
        cr_assert_eq(h_raw_status(resp), 200, "%s, try %d, whole: %s", what, i, resp);
        cr_assert(body_complete(resp), "%s, try %d: %s", what, i, resp);
        free(resp);
        close(fd);

        fd = h_connect(port);
        h_send(fd, req, sizeof req - 1);
        shutdown(fd, SHUT_WR);
        resp = h_recv_all(fd, RECV_MS, &len); /* the peer closes after the answer */
        cr_assert_eq(h_raw_status(resp), 200, "%s, try %d, half-closed: '%s'", what, i, resp);
        cr_assert(body_complete(resp), "%s, try %d, half-closed: %s", what, i, resp);
        free(resp);
        close(fd);
    }
}

Test(newcomer, half_closed_client_gets_its_whole_answer_from_service_and_gateway)
{
    h_proc_t users, gw;
    start_users(&users, "off");
    create_user(&users, "half@x.org");
    start_gateway(&gw, users.url, "{dir}/access.log");
    assert_half_close_answered(users.port, "service");
    assert_half_close_answered(gw.port, "gateway");
    cr_assert_eq(h_stop(&gw), 0); /* the access log is complete after the drain */
    char path[300];
    snprintf(path, sizeof path, "%s/access.log", gw.dir);
    char *log = h_read_file(path, NULL);
    int lines = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"/users\""))
            continue;
        lines++;
        cr_assert_not_null(strstr(line, "\"status\":200"), "%s", line);
        cr_assert_null(strstr(line, "\"bytes\":0,"), "logged 0 bytes: %s", line);
    }
    cr_assert_eq(lines, 200, "access lines for /users: %d", lines);
    free(log);
    h_stop(&users);
}

/* ------------------------------------------------------------------------- */
/* 4. paths and OPTIONS                                                      */

Test(newcomer, path_is_decoded_and_one_trailing_slash_ignored_at_the_service)
{
    h_proc_t users;
    start_users(&users, "off");
    create_user(&users, "one@x.org");
    create_user(&users, "two@x.org");
    char *plain = raw(users.port, "GET /users/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(plain), 200, "%s", plain);
    const char *same[] = {"/users/%32", "/users/2/", "/users/%32/", "/%75sers/2"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char req[200];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 same[i]);
        char *resp = raw(users.port, req);
        cr_assert_eq(h_raw_status(resp), 200, "%s: %s", same[i], resp);
        cr_assert_str_eq(h_raw_body(resp), h_raw_body(plain), "%s", same[i]);
        free(resp);
    }
    free(plain);
    char *list = raw(users.port, "GET /users/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(list), 200, "%s", list);
    cr_assert_eq(h_raw_body(list)[0], '[', "/users/ is the list: %s", list);
    free(list);
    const char *bad[] = {"/users/%zz", "/users/%4", "/users/a%00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[200];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 bad[i]);
        char *resp = raw(users.port, req);
        cr_assert_eq(h_raw_status(resp), 400, "%s: %s", bad[i], resp);
        cr_assert_not_null(strstr(h_raw_body(resp), "\"error\":"), "%s: %s", bad[i], resp);
        free(resp);
    }
    char *enc = raw(users.port, "GET /users%2F2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(enc), 404, "%%2F made a segment: %s", enc);
    free(enc);
    h_stop(&users);
}

Test(newcomer, options_is_204_with_allow_and_405_lists_head)
{
    h_proc_t users;
    start_users(&users, "off");
    char allow[128];
    char *r = raw(users.port, "OPTIONS /users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 204, "%s", r);
    cr_assert_eq(h_raw_header(r, "Allow", allow, sizeof allow), 0, "%s", r);
    cr_assert_str_eq(allow, "GET, HEAD, POST, OPTIONS");
    cr_assert_str_eq(h_raw_body(r), "");
    free(r);
    r = raw(users.port, "OPTIONS /users/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 204, "%s", r);
    cr_assert_eq(h_raw_header(r, "Allow", allow, sizeof allow), 0, "%s", r);
    cr_assert_not_null(strstr(allow, "HEAD"), "%s", allow);
    cr_assert_not_null(strstr(allow, "OPTIONS"), "%s", allow);
    free(r);
    r = raw(users.port, "PATCH /users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 405, "%s", r);
    cr_assert_eq(h_raw_header(r, "Allow", allow, sizeof allow), 0, "%s", r);
    cr_assert_str_eq(allow, "GET, HEAD, POST, OPTIONS");
    free(r);
    r = raw(users.port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 204, "%s", r);
    cr_assert_eq(h_raw_header(r, "Allow", allow, sizeof allow), 0, "%s", r);
    cr_assert_not_null(strstr(allow, "GET, HEAD, POST"), "%s", allow);
    free(r);
    r = raw(users.port, "OPTIONS /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 404, "%s", r);
    free(r);
    h_stop(&users);
}

Test(newcomer, gateway_answers_options_star_itself)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_gateway(&gw, us_url(s), "off");
    char *r = raw(gw.port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 204, "%s", r);
    char allow[128];
    cr_assert_eq(h_raw_header(r, "Allow", allow, sizeof allow), 0, "%s", r);
    cr_assert_not_null(strstr(allow, "OPTIONS"), "%s", allow);
    free(r);
    cr_assert_eq(us_count(s), 0, "OPTIONS * was forwarded");
    r = raw(gw.port, "GET /users/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(r), 200, "the route still proxies: %s", r);
    free(r);
    cr_assert_eq(us_count(s), 1);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* 5. Host                                                                   */

static const char *const bad_host[] = {
    "GET /users HTTP/1.1\r\nConnection: close\r\n\r\n",
    "GET /users HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    "GET /users HTTP/1.1\r\nHost: a b/c\r\nConnection: close\r\n\r\n",
    "GET /users HTTP/1.1\r\nHost: a/c\r\nConnection: close\r\n\r\n",
    "GET /users HTTP/1.1\r\nHost: x:99999\r\nConnection: close\r\n\r\n",
    "GET /users HTTP/1.1\r\nHost: [zz]:80\r\nConnection: close\r\n\r\n",
};

static void assert_host_checked(int port, const char *what)
{
    for (size_t i = 0; i < sizeof bad_host / sizeof bad_host[0]; i++) {
        char *r = raw(port, bad_host[i]);
        cr_assert_eq(h_raw_status(r), 400, "%s, request %zu: %s", what, i, r);
        cr_assert_not_null(strstr(h_raw_body(r), "Host"), "%s, request %zu: %s", what, i, r);
        free(r);
    }
    const char *good[] = {
        "GET /users HTTP/1.0\r\n\r\n",
        "GET /users HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        "GET /users HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "GET /users HTTP/1.1\r\nHost: api.example-1.org:443\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *r = raw(port, good[i]);
        cr_assert_eq(h_raw_status(r), 200, "%s, good %zu: %s", what, i, r);
        free(r);
    }
}

Test(newcomer, host_missing_repeated_or_invalid_is_400_at_service_and_gateway)
{
    h_proc_t users;
    start_users(&users, "off");
    assert_host_checked(users.port, "service");
    h_stop(&users);

    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_gateway(&gw, us_url(s), "off");
    for (size_t i = 0; i < sizeof bad_host / sizeof bad_host[0]; i++) {
        char *r = raw(gw.port, bad_host[i]);
        cr_assert_eq(h_raw_status(r), 400, "gateway, request %zu: %s", i, r);
        free(r);
    }
    cr_assert_eq(us_count(s), 0, "the gateway forwarded a request with a bad Host");
    cr_assert_eq(us_bytes(s), 0);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* 6. HTTP/1.0 keep-alive                                                    */

static void assert_http10(int port, const char *what)
{
    static const char ka[] = "GET /users HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    int fd = h_connect(port);
    for (int i = 0; i < 2; i++) {
        h_send(fd, ka, sizeof ka - 1);
        size_t len;
        char *r = h_recv_responses(fd, 1, RECV_MS, &len);
        cr_assert_eq(h_raw_status(r), 200, "%s, request %d on one connection: %s", what, i, r);
        char conn[32] = "";
        cr_assert_eq(h_raw_header(r, "Connection", conn, sizeof conn), 0, "%s: %s", what, r);
        cr_assert_eq(strcasecmp(conn, "keep-alive"), 0, "%s: Connection: %s", what, conn);
        cr_assert(body_complete(r), "%s: %s", what, r);
        free(r);
    }
    cr_assert_not(h_peer_closed(fd, 200), "%s: keep-alive connection closed", what);
    close(fd);

    static const char plain[] = "GET /users HTTP/1.0\r\n\r\n";
    fd = h_connect(port);
    h_send(fd, plain, sizeof plain - 1);
    size_t len;
    char *r = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(r), 200, "%s: %s", what, r);
    cr_assert(body_complete(r), "%s: %s", what, r);
    free(r);
    cr_assert(h_peer_closed(fd, RECV_MS), "%s: HTTP/1.0 without keep-alive stayed open", what);
    close(fd);
}

Test(newcomer, http10_keep_alive_is_answered_keep_alive_at_service_and_gateway)
{
    h_proc_t users, gw;
    start_users(&users, "off");
    start_gateway(&gw, users.url, "off");
    assert_http10(users.port, "service");
    assert_http10(gw.port, "gateway");
    h_stop(&gw);
    h_stop(&users);
}
