/* tests/integration/test_gwadmin.c: the gateway's admin API. It is served only on a
 * listener of its own (--admin-listen HOST:PORT or unix:PATH, or admin: in the config),
 * never on the traffic port, where /_cmesh/ is routed like any path (a loopback client
 * there may be anyone's client behind a TLS terminator or sidecar). With auth on, every
 * admin request needs scope cmesh:admin; every change is logged with who made it and the
 * old and new upstreams. Route names as it sees them: a route from --route is named after
 * its prefix without slashes ("/users" -> users, "/api/v1" -> api-v1, "/" -> root). */
#include "gwadmin_util.h"
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

static const char *str_of(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* The prefix of the route listed under name, or NULL when no route has that name. */
static const char *listed_prefix(json_t *routes, const char *name)
{
    size_t i;
    json_t *rt;
    json_array_foreach(routes, i, rt)
    {
        if (strcmp(str_of(rt, "name"), name) == 0)
            return str_of(rt, "prefix");
    }
    return NULL;
}

static void get_from(const h_proc_t *gw, const char *path, int n)
{
    for (int i = 0; i < n; i++) {
        h_resp_t r = h_req(gw, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        h_resp_free(&r);
    }
}

Test(gwadmin, flag_routes_are_named_without_slashes_and_replaced_by_that_name)
{
    us_scripted_t *a = us_start(), *b = us_start(), *c = us_start();
    char users[128], api[128], root[128], api2[128];
    snprintf(users, sizeof users, "/users=%s", us_url(a));
    snprintf(api, sizeof api, "/api/v1=%s", us_url(c));
    snprintf(api2, sizeof api2, "/api-v1=%s", us_url(c));
    snprintf(root, sizeof root, "/=%s", us_url(c));
    h_proc_t gw, adm;
    char admin[64];
    adm_prepare(&adm, admin, sizeof admin);
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--route", users, "--route",
            api, "--route", api2, "--route", root, "--admin-listen", admin, NULL);

    h_resp_t r = h_req(&adm, "GET", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /_cmesh/routes: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    json_t *routes = json_object_get(j, "routes");
    cr_assert(json_is_array(routes), "no routes array: %s", json_dumps(j, 0));
    const struct {
        const char *name, *prefix;
    } want[] = {{"users", "/users"}, {"api-v1", "/api/v1"}, {"api-v1-2", "/api-v1"}, {"root", "/"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *p = listed_prefix(routes, want[i].name);
        cr_assert_not_null(p, "no route named %s in %s", want[i].name, json_dumps(j, 0));
        cr_assert_str_eq(p, want[i].prefix, "route %s", want[i].name);
    }
    cr_assert_null(listed_prefix(routes, "/users"), "a route is still named /users");
    json_decref(j);

    get_from(&gw, "/users/1", 2);
    cr_assert_eq(us_count(a), 2);
    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    r = h_req(&adm, "PUT", "/_cmesh/routes/users/upstreams", body, hdrs);
    cr_assert_eq(r.status, 200, "PUT /_cmesh/routes/users/upstreams: %ld %s", r.status, r.body);
    j = h_json(&r);
    cr_assert_str_eq(str_of(j, "route"), "users");
    json_decref(j);
    h_resp_free(&r);
    get_from(&gw, "/users/1", 3);
    cr_assert_eq(us_count(a), 2, "the replaced instance still got requests");
    cr_assert_eq(us_count(b), 3, "the new instance got %d of 3", us_count(b));

    r = h_req(&adm, "PUT", "/_cmesh/routes/api-v1/upstreams", body, hdrs);
    cr_assert_eq(r.status, 200, "PUT api-v1: %ld %s", r.status, r.body);
    h_resp_free(&r);

    cr_assert_eq(h_stop(&gw), 0);
    us_stop(a);
    us_stop(b);
    us_stop(c);
}

/* ------------------------------------------------------------------------- */
/* helpers                                                                    */

/* Runs a shell command line (bounded by `timeout`), returning its output (caller frees)
 * and exit status. */
static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    char *data = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&data, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        fwrite(buf, 1, n, m);
    fclose(m);
    int rc = pclose(p);
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return data;
}

#define HS_SECRET "an-admin-test-secret-of-at-least-32-bytes"

static h_resp_t as(const h_proc_t *p, const char *method, const char *path, const char *body,
                   const char *tok)
{
    char auth[4200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok ? tok : "");
    const char *hdrs[] = {"Content-Type: application/json", tok ? auth : NULL, NULL};
    return h_req(p, method, path, body, hdrs);
}

/* The URLs of route name's upstreams as the admin API lists them, "a,b" (caller frees). */
static char *listed_urls(const h_proc_t *adm, const char *name, const char *tok)
{
    h_resp_t r = as(adm, "GET", "/_cmesh/routes", NULL, tok);
    cr_assert_eq(r.status, 200, "GET /_cmesh/routes on the admin listener: %ld %s", r.status,
                 r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    size_t i, k;
    json_t *rt, *u;
    char out[1024] = "";
    json_array_foreach(json_object_get(j, "routes"), i, rt)
    {
        if (strcmp(str_of(rt, "name"), name) != 0)
            continue;
        json_array_foreach(json_object_get(rt, "upstreams"), k, u)
        {
            size_t l = strlen(out);
            snprintf(out + l, sizeof out - l, "%s%s", k ? "," : "", str_of(u, "url"));
        }
    }
    json_decref(j);
    return strdup(out);
}

/* One HTTP/1.1 request over the unix socket at path; the raw answer (caller frees). */
static char *unix_request(const char *path, const char *req)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect %s: %s", path,
                 strerror(errno));
    h_send(fd, req, strlen(req));
    size_t n;
    char *resp = h_recv_all(fd, 5000, &n);
    close(fd);
    return resp;
}

/* ------------------------------------------------------------------------- */
/* (a) the traffic port never serves it                                       */

Test(gwadmin, traffic_port_never_serves_the_admin_api_and_routes_it_like_any_path)
{
    us_scripted_t *a = us_start(), *b = us_start();
    char users[128], root[128], admin[64];
    snprintf(users, sizeof users, "/users=%s", us_url(a));
    snprintf(root, sizeof root, "/=%s", us_url(a));
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));

    /* no admin listener, no route for /_cmesh: 404 from the router, nothing changes */
    h_proc_t gw;
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--route", users, NULL);
    h_resp_t r = h_req(&gw, "GET", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 404, "GET /_cmesh/routes on the traffic port: %ld %s", r.status, r.body);
    cr_assert_null(strstr(r.body, "\"routes\""), "the admin API answered: %s", r.body);
    h_resp_free(&r);
    r = h_req(&gw, "PUT", "/_cmesh/routes/users/upstreams", body, hdrs);
    cr_assert_eq(r.status, 404, "PUT on the traffic port: %ld %s", r.status, r.body);
    h_resp_free(&r);
    get_from(&gw, "/users/1", 2);
    cr_assert_eq(us_count(a), 2, "the PUT on the traffic port moved the traffic");
    cr_assert_eq(us_count(b), 0);
    cr_assert_eq(h_stop(&gw), 0);

    /* with an admin listener and a "/" route: /_cmesh/ is proxied like any path */
    h_proc_t adm;
    adm_prepare(&adm, admin, sizeof admin);
    us_clear(a);
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--route", root,
            "--admin-listen", admin, NULL);
    r = h_req(&gw, "PUT", "/_cmesh/routes/root/upstreams", body, hdrs);
    cr_assert_eq(r.status, 200, "PUT proxied to the upstream: %ld %s", r.status, r.body);
    cr_assert_null(strstr(r.body, "\"route\""), "the admin API answered: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(us_count(a), 1, "PUT /_cmesh/... on the traffic port was not proxied");
    char *urls = listed_urls(&adm, "root", NULL);
    cr_assert_str_eq(urls, us_url(a), "the traffic port's PUT changed the upstreams");
    free(urls);
    cr_assert_eq(h_stop(&gw), 0);
    us_stop(a);
    us_stop(b);
}

Test(gwadmin, the_admin_listener_serves_only_the_admin_api)
{
    us_scripted_t *a = us_start();
    char users[128], admin[64];
    snprintf(users, sizeof users, "/users=%s", us_url(a));
    h_proc_t gw, adm;
    adm_prepare(&adm, admin, sizeof admin);
    h_start(&gw, "gateway", "--workers", "2", "--access-log", "off", "--route", users,
            "--admin-listen", admin, NULL);
    h_resp_t r = h_req(&adm, "GET", "/users/1", NULL, NULL); /* not proxied from here */
    cr_assert_eq(r.status, 404, "GET /users/1 on the admin listener: %ld %s", r.status, r.body);
    h_resp_free(&r);
    cr_assert_eq(us_count(a), 0, "the admin listener proxied a request");
    r = h_req(&adm, "DELETE", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 405, "DELETE /_cmesh/routes: %ld %s", r.status, r.body);
    h_resp_free(&r);
    char *urls = listed_urls(&adm, "users", NULL);
    cr_assert_str_eq(urls, us_url(a));
    free(urls);
    cr_assert_eq(h_stop(&gw), 0);
    us_stop(a);
}

/* ------------------------------------------------------------------------- */
/* where it may listen                                                        */

Test(gwadmin, a_non_loopback_admin_address_without_auth_is_refused_at_start)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 10 '%s' gateway --listen 127.0.0.1:%d --route /u=http://127.0.0.1:9 "
             "--admin-listen 0.0.0.0:%d 2>&1",
             getenv("CMESH_BIN"), h_free_port(), h_free_port());
    int st;
    char *out = run(cmd, &st);
    cr_assert_eq(st, 2, "exit %d, output: %s", st, out);
    cr_assert(strstr(out, "not a loopback address"), "no reason given: %s", out);
    free(out);
}

/* ------------------------------------------------------------------------- */
/* (c) with auth: the scope on every request, changes logged with the subject */

Test(gwadmin, with_auth_every_admin_request_needs_cmesh_admin_and_changes_are_logged)
{
    char dir[256], key[300], cfg[300], yaml[1024];
    h_tempdir(dir, sizeof dir);
    snprintf(key, sizeof key, "%s/gw.key", dir);
    FILE *f = fopen(key, "w");
    cr_assert_not_null(f);
    fputs(HS_SECRET "\n", f);
    fclose(f);
    us_scripted_t *a = us_start(), *b = us_start();
    h_proc_t gw, adm;
    char admin[64];
    adm_prepare(&adm, admin, sizeof admin);
    snprintf(cfg, sizeof cfg, "%s/gw.yaml", dir);
    snprintf(yaml, sizeof yaml,
             "admin:\n  listen: %s\n"
             "auth:\n  key_file: %s\n  issuer: cmesh\n  audience: cmesh-gateway\n"
             "routes:\n  - name: users\n    prefix: /users\n    upstreams: [%s]\n"
             "    health: off\n",
             admin, key, us_url(a));
    f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--config", cfg, NULL);
    char *user = h_token("mallory", "users:read users:write", "--auth-key", key, NULL);
    char *root = h_token("ops-alice", "cmesh:admin", "--auth-key", key, NULL);
    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));

    h_resp_t r = as(&adm, "GET", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 401, "GET without a token: %ld %s", r.status, r.body);
    h_resp_free(&r);
    r = as(&adm, "GET", "/_cmesh/routes", NULL, user);
    cr_assert_eq(r.status, 403, "GET without the scope: %ld %s", r.status, r.body);
    char v[256];
    cr_assert_eq(h_header(&r, "WWW-Authenticate", v, sizeof v), 0);
    cr_assert(strstr(v, "insufficient_scope") && strstr(v, "cmesh:admin"), "%s", v);
    h_resp_free(&r);
    r = as(&adm, "PUT", "/_cmesh/routes/users/upstreams", body, user);
    cr_assert_eq(r.status, 403, "PUT without the scope: %ld %s", r.status, r.body);
    h_resp_free(&r);
    char *urls = listed_urls(&adm, "users", root);
    cr_assert_str_eq(urls, us_url(a), "a refused PUT changed the upstreams");
    free(urls);
    char spaced[4200]; /* RFC 9110 11.4: 1*SP after the scheme, any case */
    snprintf(spaced, sizeof spaced, "Authorization: bearer  %s", root);
    r = h_req(&adm, "GET", "/_cmesh/routes", NULL, (const char *const[]){spaced, NULL});
    cr_assert_eq(r.status, 200, "GET with 'bearer  TOKEN': %ld %s", r.status, r.body);
    h_resp_free(&r);

    r = as(&adm, "PUT", "/_cmesh/routes/users/upstreams", body, root);
    cr_assert_eq(r.status, 200, "PUT with cmesh:admin: %ld %s", r.status, r.body);
    h_resp_free(&r);
    urls = listed_urls(&adm, "users", root);
    cr_assert_str_eq(urls, us_url(b));
    free(urls);

    char *log = h_read_file(gw.log, NULL), want[512];
    snprintf(want, sizeof want, "[%s] -> [%s]", us_url(a), us_url(b));
    const char *line = strstr(log, "upstreams replaced by token subject ops-alice");
    cr_assert_not_null(line, "the change is not logged with its subject:\n%s", log);
    cr_assert(strstr(line, want), "the change does not say old -> new (%s):\n%s", want, log);
    cr_assert_null(strstr(log, "mallory"), "a refused request was logged as a change:\n%s", log);
    free(log);
    free(user);
    free(root);
    cr_assert_eq(h_stop(&gw), 0);
    us_stop(a);
    us_stop(b);
}

Test(gwadmin, failed_admin_auth_is_rate_limited)
{
    char dir[256], key[300], yaml[512], cfg[300], admin[64];
    h_tempdir(dir, sizeof dir);
    snprintf(key, sizeof key, "%s/gw.key", dir);
    FILE *f = fopen(key, "w");
    cr_assert_not_null(f);
    fputs(HS_SECRET "\n", f);
    fclose(f);
    snprintf(cfg, sizeof cfg, "%s/gw.yaml", dir);
    snprintf(yaml, sizeof yaml,
             "auth:\n  key_file: %s\n  issuer: cmesh\n  audience: cmesh-gateway\n"
             "routes:\n  - prefix: /u\n    upstreams: [http://127.0.0.1:9]\n    health: off\n",
             key);
    f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    h_proc_t gw, adm;
    adm_prepare(&adm, admin, sizeof admin);
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--config", cfg,
            "--admin-listen", admin, NULL);
    int limited = 0;
    for (int i = 0; i < 200 && !limited; i++) { /* a guesser, as fast as it can */
        h_resp_t r = as(&adm, "GET", "/_cmesh/routes", NULL, "not.a.token");
        cr_assert(r.status == 401 || r.status == 429, "guess %d: %ld %s", i, r.status, r.body);
        limited = r.status == 429;
        if (limited) {
            char v[32];
            cr_assert_eq(h_header(&r, "Retry-After", v, sizeof v), 0, "429 without Retry-After");
        }
        h_resp_free(&r);
    }
    cr_assert(limited, "200 failed admin logins in a row were never limited");
    cr_assert_eq(h_stop(&gw), 0);
}

/* ------------------------------------------------------------------------- */
/* (d) the unix socket                                                        */

Test(gwadmin, unix_socket_is_mode_0600_serves_the_api_logs_the_peer_uid_and_goes_at_exit)
{
    us_scripted_t *a = us_start(), *b = us_start();
    char users[128];
    snprintf(users, sizeof users, "/users=%s", us_url(a));
    h_proc_t gw;
    h_start(&gw, "gateway", "--workers", "2", "--access-log", "off", "--route", users,
            "--admin-listen", "unix:{dir}/admin.sock", NULL);
    char sock[400];
    snprintf(sock, sizeof sock, "%s/admin.sock", gw.dir);
    struct stat st;
    cr_assert_eq(lstat(sock, &st), 0, "no socket at %s", sock);
    cr_assert(S_ISSOCK(st.st_mode), "%s is not a socket", sock);
    cr_assert_eq(st.st_mode & 07777, 0600, "socket mode %o, not 0600", st.st_mode & 07777);

    char *resp = unix_request(sock, "GET /_cmesh/routes HTTP/1.1\r\nHost: admin\r\n"
                                    "Connection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(resp), 200, "GET over the socket: %s", resp);
    cr_assert(strstr(h_raw_body(resp), us_url(a)), "routes not listed: %s", resp);
    free(resp);
    char req[512], body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));
    snprintf(req, sizeof req,
             "PUT /_cmesh/routes/users/upstreams HTTP/1.1\r\nHost: admin\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
             "\r\n%s",
             strlen(body), body);
    resp = unix_request(sock, req);
    cr_assert_eq(h_raw_status(resp), 200, "PUT over the socket: %s", resp);
    free(resp);
    get_from(&gw, "/users/1", 2);
    cr_assert_eq(us_count(b), 2, "the new upstream got %d of 2", us_count(b));

    char *log = h_read_file(gw.log, NULL), want[128];
    snprintf(want, sizeof want, "upstreams replaced by unix socket peer uid %u", getuid());
    cr_assert(strstr(log, want), "no '%s' in the log:\n%s", want, log);
    free(log);
    cr_assert_eq(h_stop(&gw), 0);
    cr_assert_neq(lstat(sock, &st), 0, "the socket is left behind after exit");
    us_stop(a);
    us_stop(b);
}

Test(gwadmin, config_admin_socket_is_relative_to_the_file_and_a_stale_one_is_replaced)
{
    char dir[256], cfg[300], sock[300], yaml[512];
    h_tempdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/gw.yaml", dir);
    snprintf(sock, sizeof sock, "%s/admin.sock", dir);
    /* a socket file left by a process that died (nobody listens on it) */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(sock), sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock));
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    snprintf(yaml, sizeof yaml,
             "admin: { socket: admin.sock }\n"
             "routes:\n  - prefix: /u\n    upstreams: [http://127.0.0.1:9]\n    health: off\n");
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    h_proc_t gw;
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--config", cfg, NULL);
    struct stat st;
    cr_assert_eq(lstat(sock, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "socket mode %o", st.st_mode & 07777);
    char *resp = unix_request(sock, "GET /_cmesh/routes HTTP/1.1\r\nHost: a\r\n"
                                    "Connection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(resp), 200, "%s", resp);
    free(resp);
    /* a second gateway does not take over a live socket */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 10 '%s' gateway --listen 127.0.0.1:%d --config '%s' 2>&1",
             getenv("CMESH_BIN"), h_free_port(), cfg);
    int rc;
    char *out = run(cmd, &rc);
    cr_assert_neq(rc, 0, "a second gateway started on the live socket: %s", out);
    cr_assert(strstr(out, "another process is listening"), "%s", out);
    free(out);
    resp =
        unix_request(sock, "GET /_cmesh/routes HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    cr_assert_eq(h_raw_status(resp), 200, "the first gateway lost its socket: %s", resp);
    free(resp);
    cr_assert_eq(h_stop(&gw), 0);
}

Test(gwadmin, a_reload_cannot_move_the_admin_listener_and_says_so)
{
    char dir[256], cfg[300], yaml[512], tmp[320], a1[64], a2[64];
    h_proc_t gw, adm, moved;
    adm_prepare(&adm, a1, sizeof a1);
    adm_prepare(&moved, a2, sizeof a2);
    h_tempdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/gw.yaml", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", cfg);
    static const char routes[] =
        "routes:\n  - prefix: /u\n    upstreams: [http://127.0.0.1:9]\n    health: off\n";
    snprintf(yaml, sizeof yaml, "admin: { listen: %s }\n%s", a1, routes);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--config", cfg, NULL);
    snprintf(yaml, sizeof yaml, "admin: { listen: %s }\n%s", a2, routes);
    f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    cr_assert_eq(rename(tmp, cfg), 0);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    char *log;
    h_wait_for_text(gw.log, "config reloaded", 4000, &log); /* up to 4 s for the reload */
    cr_assert(strstr(log, "admin changed from"), "no warning about the admin change:\n%s", log);
    free(log);
    char *urls = listed_urls(&adm, "u", NULL);
    cr_assert_str_eq(urls, "http://127.0.0.1:9", "the admin API left its listener");
    free(urls);
    cr_assert_eq(h_stop(&gw), 0);
}
