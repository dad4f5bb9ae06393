/* tests/integration/test_pgdoubt.c: a write group's COMMIT whose answer is lost (store/db.h's
 * in-doubt commit), injected for real. A proxy thread sits between the users service (TCP,
 * sslmode=disable) and the test's PostgreSQL server (its unix socket) and reads just enough
 * of the frontend protocol (a startup message without a type byte, then a type byte and an
 * int32 length) to see the Bind carrying the test's e-mail, then the COMMIT (a simple Query,
 * or a Parse in a pipeline) on that connection: it cuts both sockets after forwarding that
 * COMMIT, with the rest of its pipeline up to the Sync (the server commits,
 * cmesh never hears it: 201, stored), or before (nothing stored: 503 + Retry-After), or
 * after and refuses every connection after it (nobody can tell: 500, "unknown").
 * Runs only on the PostgreSQL run (registered as it_pg_test_pgdoubt only). */
#include "api_util.h"
#include "h_pg.h"
#include "harness.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define MAX_PAIRS 32

enum { CUT_NONE, CUT_AFTER, CUT_BEFORE };

typedef struct pair {
    int c, s; /* cmesh's side, the server's side; -1 when closed */
    int startup;
    int armed;   /* the needle went by: the next COMMIT is the one to cut */
    int at_sync; /* CUT_AFTER of a COMMIT in a pipeline: cut after its Sync */
    unsigned char *buf;
    size_t len, cap;
} pair_t;

typedef struct proxy {
    int lfd, port;
    int wake[2];
    char upstream[256];
    char needle[96];
    atomic_int mode;   /* CUT_*: reset to CUT_NONE by the cut */
    atomic_int refuse; /* new connections are closed at once (after the cut too) */
    atomic_int cuts;   /* COMMITs cut */
    int refuse_at_cut; /* the cut sets refuse */
    pair_t pairs[MAX_PAIRS];
    pthread_t th;
} proxy_t;

static int send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void pair_close(pair_t *pr)
{
    if (pr->c >= 0)
        close(pr->c);
    if (pr->s >= 0)
        close(pr->s);
    pr->c = pr->s = -1;
    free(pr->buf);
    pr->buf = NULL;
    pr->len = pr->cap = 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Forwards every whole message cmesh sent; returns -1 when the pair was closed. */
static int relay_client(proxy_t *x, pair_t *pr)
{
    for (;;) {
        size_t head = pr->startup ? 4 : 5;
        if (pr->len < head)
            return 0;
        uint32_t len = be32(pr->buf + head - 4);
        size_t total = head - 4 + len;
        if (len < 4 || len > (64u << 20))
            return pair_close(pr), -1;
        if (pr->len < total)
            return 0;
        int cut = 0;
        if (pr->startup) {
            uint32_t code = total >= 8 ? be32(pr->buf + 4) : 0;
            /* an SSL or GSS encryption request is followed by the real startup message */
            pr->startup = code == 80877103u || code == 80877104u;
        } else {
            unsigned char type = pr->buf[0];
            int mode = atomic_load(&x->mode);
            if (mode != CUT_NONE && type == 'B' &&
                memmem(pr->buf, total, x->needle, strlen(x->needle)))
                pr->armed = 1;
            /* a simple Query, or a Parse in a pipeline: then the COMMIT runs once its
             * Execute arrives, so "after" means after the pipeline's Sync */
            int commit = pr->armed && mode != CUT_NONE && (type == 'Q' || type == 'P') &&
                         memmem(pr->buf, total, "COMMIT", 6);
            if (commit && type == 'P' && mode == CUT_AFTER)
                pr->at_sync = 1;
            else if (commit || (pr->at_sync && type == 'S'))
                cut = mode;
        }
        if (cut != CUT_BEFORE && send_all(pr->s, pr->buf, total) < 0)
            return pair_close(pr), -1;
        if (cut) {
            atomic_store(&x->mode, CUT_NONE);
            if (x->refuse_at_cut)
                atomic_store(&x->refuse, 1);
            atomic_fetch_add(&x->cuts, 1);
            pair_close(pr); /* before the server's answer can reach cmesh */
            return -1;
        }
        memmove(pr->buf, pr->buf + total, pr->len - total);
        pr->len -= total;
    }
}

static void accept_one(proxy_t *x)
{
    int c = accept(x->lfd, NULL, NULL);
    if (c < 0)
        return;
    if (atomic_load(&x->refuse)) {
        close(c);
        return;
    }
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%.100s", x->upstream);
    pair_t *pr = NULL;
    for (int i = 0; i < MAX_PAIRS && !pr; i++)
        if (x->pairs[i].c < 0)
            pr = &x->pairs[i];
    if (s < 0 || !pr || connect(s, (struct sockaddr *)&un, sizeof un) < 0) {
        close(c);
        if (s >= 0)
            close(s);
        return;
    }
    *pr = (pair_t){.c = c, .s = s, .startup = 1};
}

static void *proxy_run(void *arg)
{
    proxy_t *x = arg;
    for (;;) {
        struct pollfd p[2 + 2 * MAX_PAIRS];
        int n = 0;
        p[n++] = (struct pollfd){x->wake[0], POLLIN, 0};
        p[n++] = (struct pollfd){x->lfd, POLLIN, 0};
        for (int i = 0; i < MAX_PAIRS; i++) {
            p[n++] = (struct pollfd){x->pairs[i].c, POLLIN, 0}; /* -1: ignored by poll */
            p[n++] = (struct pollfd){x->pairs[i].s, POLLIN, 0};
        }
        if (poll(p, (nfds_t)n, 1000) < 0)
            continue;
        if (p[0].revents)
            break;
        if (p[1].revents & POLLIN)
            accept_one(x);
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair_t *pr = &x->pairs[i];
            if (pr->c >= 0 && p[2 + 2 * i].revents) {
                if (pr->len + 65536 > pr->cap) {
                    pr->cap = pr->len + 65536;
                    pr->buf = realloc(pr->buf, pr->cap);
                }
                ssize_t r = recv(pr->c, pr->buf + pr->len, pr->cap - pr->len, 0);
                if (r <= 0) {
                    pair_close(pr);
                    continue;
                }
                pr->len += (size_t)r;
                if (relay_client(x, pr) < 0)
                    continue;
            }
            if (pr->s >= 0 && p[3 + 2 * i].revents) {
                char b[65536];
                ssize_t r = recv(pr->s, b, sizeof b, 0);
                if (r <= 0 || send_all(pr->c, b, (size_t)r) < 0)
                    pair_close(pr);
            }
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        pair_close(&x->pairs[i]);
    return NULL;
}

static void proxy_start(proxy_t *x)
{
    memset(x, 0, sizeof *x);
    for (int i = 0; i < MAX_PAIRS; i++)
        x->pairs[i].c = x->pairs[i].s = -1;
    snprintf(x->upstream, sizeof x->upstream, "%s/.s.PGSQL.5432", getenv("CMESH_TEST_PG"));
    x->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(x->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    cr_assert_eq(bind(x->lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(x->lfd, 16), 0);
    cr_assert_eq(getsockname(x->lfd, (struct sockaddr *)&a, &al), 0);
    x->port = ntohs(a.sin_port);
    cr_assert_eq(pipe(x->wake), 0);
    cr_assert_eq(pthread_create(&x->th, NULL, proxy_run, x), 0);
}

static void proxy_stop(proxy_t *x)
{
    cr_assert_eq(write(x->wake[1], "x", 1), 1);
    pthread_join(x->th, NULL);
    close(x->wake[0]);
    close(x->wake[1]);
    close(x->lfd);
}

typedef struct doubt {
    proxy_t proxy;
    h_proc_t users;
    char dbname[64];
} doubt_t;

/* A fresh database; users reaches it through the proxy only. */
static void doubt_start(doubt_t *d)
{
    if (!h_pg_on())
        cr_skip_test("needs the PostgreSQL test server (it_pg_test_pgdoubt)");
    static int seq;
    char path[64], url[512];
    snprintf(path, sizeof path, "pgdoubt-%d-%d", (int)getpid(), ++seq); /* names a database */
    h_pg_url_for(path, url, sizeof url); /* creates it: postgresql://cmesh@/NAME?host=... */
    const char *name = strstr(url, "@/") + 2;
    snprintf(d->dbname, sizeof d->dbname, "%.*s", (int)strcspn(name, "?"), name);
    proxy_start(&d->proxy);
    char arg[256];
    snprintf(arg, sizeof arg,
             "--db=postgresql://cmesh@127.0.0.1:%d/%s?sslmode=disable&gssencmode=disable",
             d->proxy.port, d->dbname);
    h_start(&d->users, "users", arg, "--workers", "1", "--access-log", "off", NULL);
}

static void doubt_stop(doubt_t *d)
{
    h_stop(&d->users);
    proxy_stop(&d->proxy);
}

/* Rows with that e-mail, asked of the server directly (not through the proxy). */
static long stored(const doubt_t *d, const char *email)
{
    char conn[512];
    snprintf(conn, sizeof conn, "host=%s user=cmesh dbname=%s connect_timeout=10",
             getenv("CMESH_TEST_PG"), d->dbname);
    PGconn *c = PQconnectdb(conn);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    const char *v[1] = {email};
    PGresult *r =
        PQexecParams(c, "SELECT count(*) FROM users WHERE email = $1", 1, NULL, v, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

static void create_body(const char *email, char *body, size_t cap, char *key, size_t kcap)
{
    snprintf(body, cap, "{\"name\":\"In Doubt\",\"email\":\"%s\"}", email);
    snprintf(key, kcap, "Idempotency-Key: key-%s", email); /* one key per user */
}

static h_resp_t create(doubt_t *d, const char *email)
{
    char body[192], key[160];
    create_body(email, body, sizeof body, key, sizeof key);
    return api_send(&d->users, "POST", "/users", body, key, NULL);
}

/* The same request on a raw socket: the answer takes the whole in-doubt bound (5 s) and
 * more, near the harness's curl timeout. Returns the status; the body in body. */
static int create_raw(doubt_t *d, const char *email, char *out, size_t cap)
{
    char body[192], key[160], req[512];
    create_body(email, body, sizeof body, key, sizeof key);
    int n = snprintf(req, sizeof req,
                     "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "%s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     key, strlen(body), body);
    size_t len = 0;
    char *resp = h_raw(d->users.port, req, (size_t)n, 30000, &len);
    cr_assert(resp && len, "no answer within 30 s");
    int status = h_raw_status(resp);
    snprintf(out, cap, "%s", h_raw_body(resp) ? h_raw_body(resp) : "");
    free(resp);
    return status;
}

/* The write goes through while nothing is armed: the proxy relays faithfully. */
static void assert_relays(doubt_t *d)
{
    h_resp_t r = create(d, "before@pg.example.org");
    cr_assert_eq(r.status, 201, "through the proxy: %ld %s", r.status, r.body);
    h_resp_free(&r);
}

TestSuite(pgdoubt, .timeout = 120);

Test(pgdoubt, commit_answer_lost_after_the_server_committed_is_201_and_stored)
{
    doubt_t d;
    doubt_start(&d);
    assert_relays(&d);
    const char *email = "cut.after@pg.example.org";
    snprintf(d.proxy.needle, sizeof d.proxy.needle, "%s", email);
    atomic_store(&d.proxy.mode, CUT_AFTER);
    h_resp_t r = create(&d, email);
    cr_assert_eq(atomic_load(&d.proxy.cuts), 1, "the proxy never saw the group's COMMIT");
    cr_assert_eq(stored(&d, email), 1, "the COMMIT reached the server: the user is stored");
    /* before the fix: 503 "nothing was stored" for a user that was stored */
    cr_assert_eq(r.status, 201, "a committed write whose COMMIT answer was lost: %ld %s", r.status,
                 r.body);
    json_t *j = h_json(&r);
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    h_resp_free(&r);
    /* a read on a new connection sees it */
    char path[48];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    r = h_req(&d.users, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    cr_assert(strstr(r.body, email), "%s", r.body);
    h_resp_free(&r);
    doubt_stop(&d);
}

Test(pgdoubt, connection_cut_before_the_commit_is_503_and_nothing_stored)
{
    doubt_t d;
    doubt_start(&d);
    assert_relays(&d);
    const char *email = "cut.before@pg.example.org";
    snprintf(d.proxy.needle, sizeof d.proxy.needle, "%s", email);
    atomic_store(&d.proxy.mode, CUT_BEFORE);
    h_resp_t r = create(&d, email);
    cr_assert_eq(atomic_load(&d.proxy.cuts), 1, "the proxy never saw the group's COMMIT");
    api_assert_error(&r, 503, NULL);
    char retry[16];
    cr_assert_eq(h_header(&r, "Retry-After", retry, sizeof retry), 0, "503 without Retry-After");
    h_resp_free(&r);
    cr_assert_eq(stored(&d, email), 0, "a 503 said nothing was stored");
    /* and the service goes on: the retry with the same key creates it once */
    r = create(&d, email);
    cr_assert_eq(r.status, 201, "the retry: %ld %s", r.status, r.body);
    h_resp_free(&r);
    cr_assert_eq(stored(&d, email), 1);
    doubt_stop(&d);
}

Test(pgdoubt, commit_answer_lost_and_server_unreachable_is_500_outcome_unknown)
{
    doubt_t d;
    doubt_start(&d);
    assert_relays(&d);
    const char *email = "cut.unknown@pg.example.org";
    snprintf(d.proxy.needle, sizeof d.proxy.needle, "%s", email);
    d.proxy.refuse_at_cut = 1; /* set before arming: the proxy thread reads it at the cut */
    atomic_store(&d.proxy.mode, CUT_AFTER);
    char body[1024];
    int status = create_raw(&d, email, body, sizeof body); /* asked for 5 s, then given up */
    cr_assert_eq(atomic_load(&d.proxy.cuts), 1, "the proxy never saw the group's COMMIT");
    cr_assert_eq(status, 500, "an outcome nobody could learn: %d %s", status, body);
    json_t *j = json_loads(body, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    cr_assert(e && strstr(e, "unknown") && strstr(e, "Idempotency-Key"),
              "the answer must say the outcome is unknown and how to retry: %s", body);
    json_decref(j);
    atomic_store(&d.proxy.refuse, 0);
    h_resp_t r;
    /* it was committed: the retry with the same key replays the 201, creating nothing */
    for (int i = 0; i < 100; i++) {
        r = create(&d, email);
        if (r.status != 503)
            break;
        h_resp_free(&r);
        usleep(100 * 1000);
    }
    cr_assert_eq(r.status, 201, "the retry with the same key: %ld %s", r.status, r.body);
    h_resp_free(&r);
    cr_assert_eq(stored(&d, email), 1);
    doubt_stop(&d);
}
