/* tests/integration/test_lifecycle.c: a `cmesh users` process from start to exit:
 * draining on SIGTERM with requests in flight, the drain timeout, several workers,
 * flag errors and --help, and where the access log goes. */
#include "h_util.h"
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define RECV_MS   5000  /* cap on waiting for an answer or a close; never a timing assertion */
#define EXIT_MS   15000 /* cap on waiting for an exit */
#define POST_HEAD "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
#define USER      "{\"name\":\"Ann\",\"email\":\"ann@example.com\"}" /* 40 bytes */

/* ------------------------------------------------------------------------- */
/* helpers                                                                    */

/* Waits (bounded) until connecting to port is refused: the listener is closed, so the
 * process has begun draining. Returns 1 when refused, 0 when it never was. */
static int wait_listener_closed(int port)
{
    for (int i = 0; i < 250; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        int err = errno;
        close(fd);
        if (rc < 0 && err == ECONNREFUSED)
            return 1;
        usleep(20 * 1000);
    }
    return 0;
}

/* `cmesh users args...` (args NULL-terminated) through h_run_cmesh_argv. */
static int run_cli(const char *const *args, char **out, char **err)
{
    const char *argv[32] = {"users"};
    for (int n = 1; n < 31 && args[n - 1]; n++)
        argv[n] = args[n - 1];
    return h_run_cmesh_argv(out, err, argv);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------------------- */
/* draining                                                                   */

Test(lifecycle, sigterm_lets_a_half_sent_request_finish_then_exits_0)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--drain-timeout", "5s", NULL);
    int fd = h_connect(p.port);
    static const char part1[] = POST_HEAD "Content-Length: 40\r\n\r\n{\"name\":\"Ann\",";
    static const char part2[] = "\"email\":\"ann@example.com\"}";
    h_send(fd, part1, sizeof part1 - 1);
    /* the server must hold the first half before the signal, else this is an idle
     * connection and goes at once: an answer on a later connection shows the loop has
     * passed the moment these bytes (sent earlier) were readable */
    h_resp_t r = h_req(&p, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(kill(p.pid, SIGTERM), 0);
    cr_assert(wait_listener_closed(p.port), "listener still open after SIGTERM");
    h_send(fd, part2, sizeof part2 - 1);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 201, "in-flight request after SIGTERM: '%s'", resp);
    char conn[32];
    cr_assert_eq(h_raw_header(resp, "Connection", conn, sizeof conn), 0, "no Connection: %s", resp);
    cr_assert_str_eq(conn, "close");
    cr_assert(h_peer_closed(fd, RECV_MS), "connection open after the drain answer");
    free(resp);
    close(fd);
    cr_assert_eq(h_wait(&p, EXIT_MS), 0);
    /* the answer was not a lie: the user is there after a restart */
    h_restart(&p, "users", "--db", "{dir}/users.db", NULL);
    r = h_req(&p, "GET", "/users/1", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}

Test(lifecycle, readyz_answers_503_draining_on_an_open_connection_after_sigterm)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--drain-timeout", "5s", NULL);
    int fd = h_connect(p.port);
    static const char part1[] = "GET /readyz HTTP/1.1\r\nHost: x\r\n";
    h_send(fd, part1, sizeof part1 - 1);
    h_resp_t r = h_req(&p, "GET", "/healthz", NULL, NULL); /* see above: part1 was read */
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(kill(p.pid, SIGTERM), 0);
    cr_assert(wait_listener_closed(p.port), "listener still open after SIGTERM");
    h_send(fd, "\r\n", 2);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 503, "readyz while draining: '%s'", resp);
    cr_assert_str_eq(h_raw_body(resp), "{\"status\":\"draining\"}");
    cr_assert(h_peer_closed(fd, RECV_MS), "connection open after the drain answer");
    free(resp);
    close(fd);
    cr_assert_eq(h_wait(&p, EXIT_MS), 0);
}

Test(lifecycle, drain_timeout_bounds_a_connection_stuck_mid_request)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--drain-timeout", "1s", "--request-timeout",
            "1h", NULL);
    int fd = h_connect(p.port);
    static const char part[] = POST_HEAD "Content-Length: 40\r\n\r\n{\"na";
    h_send(fd, part, sizeof part - 1);
    h_resp_t r = h_req(&p, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(kill(p.pid, SIGTERM), 0);
    /* 1 s of drain, well inside the cap: a -1 here means the stuck client kept it alive */
    cr_assert_eq(h_wait(&p, EXIT_MS), 0, "process did not exit 0 after the drain timeout");
    cr_assert(h_peer_closed(fd, RECV_MS), "stuck connection not closed");
    close(fd);
}

Test(lifecycle, two_workers_serve_requests_and_drain)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--workers", "2", NULL);
    for (int i = 0; i < 6; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"U%d\",\"email\":\"u%d@example.com\"}", i, i);
        h_resp_t r = h_req(&p, "POST", "/users", body, NULL); /* a new connection each */
        cr_assert_eq(r.status, 201, "create %d: %ld %s", i, r.status, r.body);
        h_resp_free(&r);
    }
    h_resp_t r = h_req(&p, "GET", "/users", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = h_json(&r);
    cr_assert_eq(json_array_size(j), 6);
    json_decref(j);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}

/* ------------------------------------------------------------------------- */
/* flags                                                                      */

static void bad_flags_exit_2_with_one_line(const char *const *args)
{
    char *out, *err;
    int rc = run_cli(args, &out, &err);
    cr_assert_eq(rc, 2, "exit %d for %s; stderr: %s", rc, args[0], err);
    cr_assert_eq(count_lines(err), 1, "stderr is not one line: '%s'", err);
    cr_assert_gt(strlen(err), 10, "empty error");
    free(out);
    free(err);
}

Test(lifecycle, unknown_flag_exits_2_with_one_line)
{
    bad_flags_exit_2_with_one_line((const char *[]){"--db", "/tmp/x.db", "--bogus", "1", NULL});
    bad_flags_exit_2_with_one_line((const char *[]){"--db", "/tmp/x.db", "--bogus", NULL});
}

Test(lifecycle, bad_workers_exits_2_with_one_line)
{
    bad_flags_exit_2_with_one_line((const char *[]){"--db", "/tmp/x.db", "--workers", "0", NULL});
    bad_flags_exit_2_with_one_line((const char *[]){"--db", "/tmp/x.db", "--workers", "x", NULL});
}

Test(lifecycle, missing_db_exits_2_with_one_line)
{
    bad_flags_exit_2_with_one_line((const char *[]){"--listen", "127.0.0.1:0", NULL});
}

Test(lifecycle, bad_listen_exits_2_with_one_line)
{
    bad_flags_exit_2_with_one_line((const char *[]){"--db", "/tmp/x.db", "--listen", "nope", NULL});
    bad_flags_exit_2_with_one_line(
        (const char *[]){"--db", "/tmp/x.db", "--listen", "127.0.0.1:99999", NULL});
}

Test(lifecycle, help_exits_0_and_mentions_every_flag)
{
    char *out, *err;
    int rc = run_cli((const char *[]){"--help", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "stderr: %s", err);
    static const char *const flags[] = {
        "--listen",          "--db",           "--workers",  "--access-log", "--drain-timeout",
        "--request-timeout", "--idle-timeout", "--max-body", "--max-header", "--max-uri",
        "--max-connections", "--sync",
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert(strstr(out, flags[i]) || strstr(err, flags[i]), "--help does not mention %s",
                  flags[i]);
    free(out);
    free(err);
}

/* ------------------------------------------------------------------------- */
/* access log                                                                 */

Test(lifecycle, access_log_file_has_one_json_line_per_request_with_its_request_id)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "{dir}/access.log", NULL);
    enum { N = 4 };
    char ids[N][80];
    static const char *const methods[N] = {"POST", "GET", "GET", "DELETE"};
    static const char *const paths[N] = {"/users", "/users/1", "/users?limit=5", "/users/9"};
    static const long want[N] = {201, 200, 200, 404};
    for (int i = 0; i < N; i++) {
        h_resp_t r = h_req(&p, methods[i], paths[i], i == 0 ? USER : NULL, NULL);
        cr_assert_eq(r.status, want[i], "%s %s: %ld", methods[i], paths[i], r.status);
        cr_assert_eq(h_header(&r, "X-Request-Id", ids[i], sizeof ids[i]), 0);
        h_resp_free(&r);
    }
    cr_assert_eq(h_stop(&p), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/access.log", p.dir);
    char *log = h_read_required(path);
    int seen[N] = {0}, others = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "access line is not JSON (%s): %s", e.text, line);
        static const char *const keys[] = {"ts",   "level",  "request_id",  "method",
                                           "path", "status", "duration_us", "bytes"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            cr_assert_not_null(json_object_get(j, keys[k]), "no %s in %s", keys[k], line);
        cr_assert(json_is_integer(json_object_get(j, "status")), "%s", line);
        cr_assert(json_is_integer(json_object_get(j, "duration_us")), "%s", line);
        cr_assert(json_is_integer(json_object_get(j, "bytes")), "%s", line);
        const char *rid = json_string_value(json_object_get(j, "request_id"));
        cr_assert_not_null(rid, "%s", line);
        int mine = 0;
        for (int i = 0; i < N; i++) {
            if (strcmp(rid, ids[i]) != 0)
                continue;
            mine = 1;
            seen[i]++;
            cr_assert_str_eq(json_string_value(json_object_get(j, "method")), methods[i]);
            cr_assert_str_eq(json_string_value(json_object_get(j, "path")), paths[i]);
            cr_assert_eq(json_integer_value(json_object_get(j, "status")), want[i]);
        }
        if (!mine) /* h_start's readiness probes are not logged by default */
            others++;
        json_decref(j);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "request %d (%s %s) logged %d times", i, methods[i], paths[i],
                     seen[i]);
    cr_assert_eq(others, 0, "%d lines of other requests (probes?) logged", others);
    free(log);
    /* and nothing of it on stderr */
    char *err = h_read_required(p.log);
    cr_assert_null(strstr(err, "\"request_id\""), "access lines on stderr: %s", err);
    free(err);
}

Test(lifecycle, access_log_off_writes_no_access_lines_to_stderr)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    for (int i = 0; i < 3; i++) {
        h_resp_t r = h_req(&p, "GET", "/users", NULL, NULL);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
    }
    cr_assert_eq(h_stop(&p), 0);
    char *err = h_read_required(p.log);
    cr_assert_not_null(strstr(err, "listening on http://"), "no start line on stderr: %s", err);
    cr_assert_null(strstr(err, "\"request_id\""), "access lines on stderr: %s", err);
    cr_assert_null(strstr(err, "\"/users\""), "access lines on stderr: %s", err);
    free(err);
}

Test(lifecycle, access_log_default_goes_to_stderr)
{
    /* the counterpart of the test above: proves its check can fail */
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", NULL);
    h_resp_t r = h_req(&p, "GET", "/users", NULL, NULL);
    char id[80];
    cr_assert_eq(h_header(&r, "X-Request-Id", id, sizeof id), 0);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
    char *err = h_read_required(p.log);
    cr_assert_not_null(strstr(err, id), "request %s not logged on stderr: %s", id, err);
    free(err);
}
