/* tests/integration/test_store.c: what an answer promises about the data when the disk
 * does not cooperate: a full disk under a large group commit (the process is paused with
 * SIGSTOP while pipelined requests queue, then resumed, so one loop iteration holds them
 * all), a read-only database file and a vanished one. Real filesystems (tests/common/
 * mounts.h: a small tmpfs, a read-only bind mount) in a private mount namespace. */
#include "../common/mounts.h"
#include "api_util.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define CONNS      40 /* client connections, all accepted before the pause */
#define CREATES    45 /* pipelined creates per connection: < 64 KiB, one read each */
#define PRECREATED 20 /* users made before the disk fills; connection i deletes user i+1 */
#define FS_SIZE    (8 * 1024 * 1024) /* bytes of the tmpfs */

static char mnt[300], ro[300]; /* mounted here while a test runs ("" otherwise) */

static void unmount_all(void)
{
    if (ro[0])
        mounts_unmount(ro);
    if (mnt[0])
        mounts_unmount(mnt);
    ro[0] = mnt[0] = '\0';
}

/* cppcheck-suppress unknownMacro ; Criterion macro, unknown without its headers */
TestSuite(store, .fini = unmount_all, .timeout = 120);

static void make_dir(char *out, size_t cap, const char *parent, const char *name)
{
    snprintf(out, cap, "%s/%s", parent, name);
    cr_assert_eq(mkdir(out, 0755), 0, "mkdir %s", out);
}

static void skip_unless_mounted(int err)
{
    if (err < 0)
        cr_skip_test("cannot mount here (%s): needs root or user namespaces", strerror(-err));
}

/* A FS_SIZE tmpfs at mnt, in a new temp dir (the test is skipped where nothing can be
 * mounted); the paths of the users database and of a filler file on it. */
static void mount_small_disk(char *db, size_t db_cap, char *filler, size_t filler_cap)
{
    char dir[256];
    h_tempdir(dir, sizeof dir);
    make_dir(mnt, sizeof mnt, dir, "fs");
    int err = mounts_tmpfs(mnt, FS_SIZE);
    if (err < 0)
        mnt[0] = '\0';
    skip_unless_mounted(err);
    snprintf(db, db_cap, "%s/users.db", mnt);
    snprintf(filler, filler_cap, "%s/filler", mnt);
}

/* Long fields and a long key, so a few thousand creates dirty more pages than SQLite's
 * page cache holds and it must spill to the WAL in the middle of a statement. */
static void create_request(char *out, size_t cap, int c, int i)
{
    char name[201], pad[161];
    memset(name, 'n', 200);
    name[200] = '\0';
    memset(pad, 'e', 160);
    pad[160] = '\0';
    char body[600];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"c%d.i%d@%s.example.org\"}", name, c,
             i, pad);
    snprintf(out, cap,
             "POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Idempotency-Key: full-%d-%d-%s\r\nContent-Length: %zu\r\n\r\n%s",
             c, i, pad, strlen(body), body);
}

static void email_of(char *out, size_t cap, int c, int i)
{
    char pad[161];
    memset(pad, 'e', 160);
    pad[160] = '\0';
    snprintf(out, cap, "c%d.i%d@%s.example.org", c, i, pad);
}

/* Every user stored, as an object email -> id (new reference). */
static json_t *stored_users(const h_proc_t *p)
{
    json_t *all = api_snapshot(p, "/users");
    json_t *by_email = json_object();
    size_t i;
    json_t *u;
    json_array_foreach(all, i, u)
    {
        json_object_set_new(by_email, api_str(u, "email"), json_integer(api_int(u, "id")));
    }
    json_decref(all);
    return by_email;
}

static int stored_id(const json_t *by_email, json_int_t id)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)by_email, k, v)
    {
        if (json_integer_value(v) == id)
            return 1;
    }
    return 0;
}

/* The body of a response, parsed (new reference; NULL when it is not JSON). */
static json_t *raw_json(const char *resp)
{
    return json_loads(h_raw_body(resp), JSON_DISABLE_EOF_CHECK, NULL);
}

static void expect_503_retry(const char *resp, const char *what)
{
    char ra[16];
    cr_assert_eq(h_raw_header(resp, "Retry-After", ra, sizeof ra), 0, "%s: 503 without Retry-After",
                 what);
    json_t *j = raw_json(resp);
    cr_assert(json_is_string(json_object_get(j, "error")), "%s: 503 without a JSON error", what);
    json_decref(j);
}

Test(store, full_disk_under_a_large_group_commit_answers_only_what_is_stored)
{
    h_proc_t p, q;
    char db[400], filler[400];
    mount_small_disk(db, sizeof db, filler, sizeof filler);
    h_start(&p, "users", "--db", db, "--workers", "1", "--access-log", "off", NULL);
    /* a second instance on the same file: it must never wait for a lock the first keeps */
    h_start(&q, "users", "--db", db, "--workers", "1", "--access-log", "off", NULL);
    for (int i = 0; i < PRECREATED; i++) {
        char name[32], email[64];
        snprintf(name, sizeof name, "Pre %d", i);
        snprintf(email, sizeof email, "pre%d@full.example.org", i);
        cr_assert_eq(api_create_user(&p, name, email), i + 1);
    }
    int fds[CONNS];
    for (int c = 0; c < CONNS; c++) { /* accepted and served before the pause */
        fds[c] = h_connect(p.port);
        static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        h_send(fds[c], hz, sizeof hz - 1);
        size_t n;
        char *r = h_recv_responses(fds[c], 1, 5000, &n);
        cr_assert_eq(h_raw_status(r), 200);
        free(r);
    }
    cr_assert_gt(mounts_fill(filler), 0);

    /* connection c: its creates, then DELETE and GET of user c+1 (c < PRECREATED), a GET
     * of an id this batch assigns, and the whole list */
    cr_assert_eq(kill(p.pid, SIGSTOP), 0);
    static char buf[CREATES * 1100 + 1024];
    for (int c = 0; c < CONNS; c++) {
        size_t len = 0;
        for (int i = 0; i < CREATES; i++) {
            create_request(buf + len, sizeof buf - len, c, i);
            len += strlen(buf + len);
        }
        if (c < PRECREATED)
            len += (size_t)snprintf(buf + len, sizeof buf - len,
                                    "DELETE /users/%d HTTP/1.1\r\nHost: t\r\n\r\n"
                                    "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n",
                                    c + 1, c + 1);
        len += (size_t)snprintf(buf + len, sizeof buf - len,
                                "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n"
                                "GET /users?limit=1000 HTTP/1.1\r\nHost: t\r\n\r\n",
                                PRECREATED + 1 + c * CREATES);
        h_send(fds[c], buf, len);
    }
    cr_assert_eq(kill(p.pid, SIGCONT), 0);

    char *resp[CONNS];
    for (int c = 0; c < CONNS; c++) {
        int n = CREATES + (c < PRECREATED ? 2 : 0) + 2;
        size_t len;
        resp[c] = h_recv_responses(fds[c], n, 30000, &len);
        close(fds[c]);
    }
    /* the disk has room again; the second instance writes at once (a transaction left
     * open by the first would make it wait out its busy timeout and answer 503) */
    cr_assert_eq(unlink(filler), 0);
    json_int_t qid = api_create_user(&q, "Other instance", "other@full.example.org");
    /* SIGTERM commits whatever the first instance still holds: nothing may be there */
    api_stop_clean(&p);
    json_t *final = stored_users(&q);

    int n201 = 0, n503 = 0;
    for (int c = 0; c < CONNS; c++) {
        const char *r = resp[c];
        for (int i = 0; i < CREATES; i++, r = h_raw_next(r)) {
            cr_assert_not_null(r, "connection %d: answer %d missing", c, i);
            int st = h_raw_status(r);
            char email[300];
            email_of(email, sizeof email, c, i);
            int stored = json_object_get(final, email) != NULL;
            if (st == 201) {
                n201++;
                cr_assert(stored, "create %d/%d answered 201 but not stored", c, i);
            } else {
                cr_assert_eq(st, 503, "create %d/%d: %d (only 201 or 503 tell the truth)", c, i,
                             st);
                expect_503_retry(r, "create");
                n503++;
                cr_assert(!stored, "create %d/%d answered 503 but stored", c, i);
            }
        }
        int deleted = 0;
        if (c < PRECREATED) {
            char email[64];
            snprintf(email, sizeof email, "pre%d@full.example.org", c);
            int stored = json_object_get(final, email) != NULL;
            int st = h_raw_status(r);
            if (st == 200) {
                deleted = 1;
                cr_assert(!stored, "DELETE of user %d answered 200 but the user is there", c + 1);
            } else {
                cr_assert_eq(st, 503, "DELETE of user %d: %d", c + 1, st);
                expect_503_retry(r, "delete");
                cr_assert(stored, "DELETE of user %d answered 503 but the user is gone", c + 1);
            }
            r = h_raw_next(r);
            st = h_raw_status(r);
            cr_assert(st == 200 || st == 404, "GET after DELETE: %d", st);
            if (st == 404)
                cr_assert(!stored, "GET of user %d answered 404 (a delete that never committed)",
                          c + 1);
            r = h_raw_next(r);
        }
        /* a GET of a new id: a 200 shows a user that must be stored */
        int st = h_raw_status(r);
        cr_assert(st == 200 || st == 404, "GET of a new id: %d", st);
        if (st == 200) {
            json_t *u = raw_json(r);
            cr_assert(json_object_get(final, api_str(u, "email")),
                      "GET showed user %lld, which was never stored", (long long)api_int(u, "id"));
            json_decref(u);
        }
        r = h_raw_next(r);
        /* the list: committed data only, so every user in it is stored (or deleted by a
         * DELETE answered 200) */
        cr_assert_eq(h_raw_status(r), 200, "list: %d", h_raw_status(r));
        json_t *list = raw_json(r);
        cr_assert(json_is_array(list), "list is not an array");
        size_t k;
        json_t *u;
        json_array_foreach(list, k, u)
        {
            json_int_t id = api_int(u, "id");
            int was_deleted = id <= PRECREATED && !stored_id(final, id);
            cr_assert(stored_id(final, id) || was_deleted,
                      "a list showed user %lld, which was never stored", (long long)id);
        }
        (void)deleted;
        json_decref(list);
        free(resp[c]);
    }
    cr_assert_gt(n503, 0, "the disk was full: some creates must have failed");
    cr_assert(stored_id(final, qid));
    cr_log_info("full disk: %d creates answered 201, %d answered 503", n201, n503);
    json_decref(final);
    api_stop_clean(&q);
    unmount_all();
}

Test(store, vanished_database_file_refuses_writes_with_503_and_is_not_ready)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    api_create_user(&p, "Before", "before@x.org");
    static const char *const files[] = {"users.db", "users.db-wal", "users.db-shm"};
    for (int i = 0; i < 3; i++) {
        char f[400];
        snprintf(f, sizeof f, "%s/%s", p.dir, files[i]);
        unlink(f);
    }
    /* a 201 now would be a write into an unlinked inode: lost at exit */
    h_resp_t r =
        api_send(&p, "POST", "/users", "{\"name\":\"After\",\"email\":\"after@x.org\"}", NULL);
    api_assert_error(&r, 503, NULL);
    char ra[16];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    h_resp_free(&r);
    r = h_req(&p, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 503, "readyz: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "status"), "not ready");
    cr_assert(strstr(api_str(j, "reason"), "moved or deleted"), "reason: %s", r.body);
    json_decref(j);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(store, read_only_database_file_refuses_writes_with_503_and_is_not_ready)
{
    h_proc_t p, q;
    char data[256], rw[400];
    h_tempdir(data, sizeof data);
    snprintf(rw, sizeof rw, "%s/users.db", data);
    h_start(&p, "users", "--db", rw, "--access-log", "off", NULL);
    api_create_user(&p, "Stored", "stored@x.org");
    /* the first instance keeps the file (and its -wal/-shm) open: the read-only view
     * below sees a live WAL database, as an instance started on it in production would */
    h_tempdir(ro, sizeof ro);
    int err = mounts_bind_ro(data, ro);
    if (err < 0)
        ro[0] = '\0';
    skip_unless_mounted(err);
    char db[400];
    snprintf(db, sizeof db, "%s/users.db", ro);
    h_start(&q, "users", "--db", db, "--access-log", "off", NULL);

    h_resp_t r = h_req(&q, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 503, "readyz: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert(strstr(api_str(j, "reason"), "read-only"), "reason: %s", r.body);
    json_decref(j);
    h_resp_free(&r);
    json_t *before = api_snapshot(&q, "/users");
    r = api_send(&q, "POST", "/users", "{\"name\":\"New\",\"email\":\"new@x.org\"}", NULL);
    api_assert_error(&r, 503, NULL);
    char ra[16];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    h_resp_free(&r);
    api_expect_error(api_send(&q, "PUT", "/users/1", "{\"name\":\"X\"}", NULL), 503, NULL);
    api_expect_error(h_req(&q, "DELETE", "/users/1", NULL, NULL), 503, NULL);
    api_assert_unchanged(&q, "/users", before);
    json_decref(api_get(&q, "/users/1", 200)); /* reads still work */
    api_stop_clean(&q);
    unmount_all();
    api_stop_clean(&p);
}

Test(store, order_is_never_accepted_for_a_user_whose_create_does_not_commit)
{
    h_proc_t u, o;
    char db[400], filler[400];
    mount_small_disk(db, sizeof db, filler, sizeof filler);
    h_start(&u, "users", "--db", db, "--workers", "1", "--access-log", "off", NULL);
    h_start(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--users-timeout", "20s",
            "--access-log", "off", NULL);
    json_int_t uid = api_create_user(&u, "Pre", "pre@full.example.org");
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    h_resp_t r = api_send(&o, "POST", "/orders", body, NULL); /* orders' connection to users */
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    enum { N = 10 };
    int fds[N];
    for (int c = 0; c < N; c++) {
        fds[c] = h_connect(u.port);
        static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        h_send(fds[c], hz, sizeof hz - 1);
        size_t n;
        char *a = h_recv_responses(fds[c], 1, 5000, &n);
        cr_assert_eq(h_raw_status(a), 200);
        free(a);
    }
    cr_assert_gt(mounts_fill(filler), 0);

    /* users pauses with creates queued (the first would get id uid+1); then the order for
     * that id arrives and orders asks users about it, on the connection it already has */
    cr_assert_eq(kill(u.pid, SIGSTOP), 0);
    static char buf[CREATES * 1100];
    for (int c = 0; c < N; c++) {
        size_t len = 0;
        for (int i = 0; i < CREATES; i++) {
            create_request(buf + len, sizeof buf - len, c, i);
            len += strlen(buf + len);
        }
        h_send(fds[c], buf, len);
    }
    int ofd = h_connect(o.port);
    char req[256];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid + 1);
    snprintf(req, sizeof req,
             "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    h_send(ofd, req, strlen(req));
    usleep(300 * 1000); /* for orders to send its check; the asserts below hold either way */
    cr_assert_eq(kill(u.pid, SIGCONT), 0);

    size_t len;
    char *ans = h_recv_responses(ofd, 1, 30000, &len);
    int st = h_raw_status(ans);
    cr_assert(st == 422 || st == 503, "order for a user never stored answered %d: %s", st, ans);
    free(ans);
    close(ofd);
    for (int c = 0; c < N; c++) {
        char *a = h_recv_responses(fds[c], CREATES, 30000, &len);
        free(a);
        close(fds[c]);
    }
    cr_assert_eq(unlink(filler), 0);
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)uid + 1);
    json_decref(api_get(&u, path, 404));
    json_t *orders = api_snapshot(&o, "/orders");
    cr_assert_eq(json_array_size(orders), 1, "an order was stored for a user who never existed");
    json_decref(orders);
    api_stop_clean(&o);
    api_stop_clean(&u);
    unmount_all();
}
