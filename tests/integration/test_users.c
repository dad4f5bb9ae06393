/* tests/integration/test_users.c: the users REST API over real HTTP against a real
 * `cmesh users` process: item shape, validation (each refusal stores nothing), paging,
 * conditional requests and Idempotency-Key, also across two instances sharing a db. */
#include "api_util.h"
#include "h_util.h"
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

static void start_users(h_proc_t *p)
{
    h_start(p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
}

/* A JSON body {"name":name,"email":email}; caller frees. */
static char *user_body(const char *name, const char *email)
{
    json_t *o = json_pack("{s:s, s:s}", "name", name, "email", email);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* n copies of the UTF-8 sequence ch; caller frees. */
static char *repeat(const char *ch, int n)
{
    size_t l = strlen(ch);
    char *s = malloc(l * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + l * (size_t)i, ch, l);
    s[l * (size_t)n] = '\0';
    return s;
}

/* n copies of c in one of a few rotating static buffers (n < 100), for building
 * several long strings in one expression. */
static const char *repeat_buf(char c, int n)
{
    static char bufs[8][100];
    static int next;
    char *b = bufs[next++ % 8];
    memset(b, c, (size_t)n);
    b[n] = '\0';
    return b;
}

/* POSTs body and asserts the error; then asserts /users did not change. */
static void post_refused(const h_proc_t *p, const char *body, long status, const char *field)
{
    json_t *before = api_snapshot(p, "/users");
    h_resp_t r = api_send(p, "POST", "/users", body, NULL);
    cr_assert_eq(r.status, status, "POST /users %s: expected %ld, got %ld %s", body, status,
                 r.status, r.body);
    api_expect_error(r, status, field);
    api_assert_unchanged(p, "/users", before);
}

/* PUTs body to path and asserts the error; then asserts /users did not change. */
static void put_refused(const h_proc_t *p, const char *path, const char *body, long status,
                        const char *field)
{
    json_t *before = api_snapshot(p, "/users");
    h_resp_t r = api_send(p, "PUT", path, body, NULL);
    cr_assert_eq(r.status, status, "PUT %s %s: expected %ld, got %ld %s", path, body, status,
                 r.status, r.body);
    api_expect_error(r, status, field);
    api_assert_unchanged(p, "/users", before);
}

/* GET /users/{id}'s ETag. */
static void etag_of(const h_proc_t *p, json_int_t id, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(&r, "ETag", out, cap), 0, "no ETag on GET %s", path);
    h_resp_free(&r);
}

/* ------------------------------------------------------------------------- */
/* create, read, update, delete                                               */

Test(users, create_returns_201_with_location_etag_and_item_shape)
{
    h_proc_t p;
    start_users(&p);
    h_resp_t r =
        api_send(&p, "POST", "/users", "{\"name\":\"Ada Lovelace\",\"email\":\"ada@x.org\"}", NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert(json_is_object(j));
    cr_assert_eq(json_object_size(j), 5, "item has extra or missing keys: %s", r.body);
    json_int_t id = api_int(j, "id");
    cr_assert_gt(id, 0);
    cr_assert_str_eq(api_str(j, "name"), "Ada Lovelace");
    cr_assert_str_eq(api_str(j, "email"), "ada@x.org");
    cr_assert(api_is_timestamp(api_str(j, "createdAt")), "createdAt %s", api_str(j, "createdAt"));
    cr_assert(api_is_timestamp(api_str(j, "updatedAt")), "updatedAt %s", api_str(j, "updatedAt"));

    char loc[128], want[64], etag[64], ct[64];
    snprintf(want, sizeof want, "/users/%lld", (long long)id);
    cr_assert_eq(h_header(&r, "Location", loc, sizeof loc), 0, "no Location");
    cr_assert_str_eq(loc, want);
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0, "no ETag");
    cr_assert(api_is_etag(etag), "ETag %s is not \"<16 lowercase hex>\"", etag);
    cr_assert_eq(h_header(&r, "Content-Type", ct, sizeof ct), 0);
    cr_assert(strncmp(ct, "application/json", 16) == 0, "Content-Type %s", ct);

    /* the Location serves the same item with the same ETag */
    h_resp_t g = h_req(&p, "GET", loc, NULL, NULL);
    cr_assert_eq(g.status, 200);
    json_t *gj = h_json(&g);
    cr_assert(json_equal(j, gj), "GET %s differs: %s vs %s", loc, g.body, r.body);
    char etag2[64];
    cr_assert_eq(h_header(&g, "ETag", etag2, sizeof etag2), 0);
    cr_assert_str_eq(etag2, etag);
    json_decref(gj);
    h_resp_free(&g);
    json_decref(j);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(users, list_is_an_array_in_ascending_id_order)
{
    h_proc_t p;
    start_users(&p);
    json_t *empty = api_get(&p, "/users", 200);
    cr_assert(json_is_array(empty) && json_array_size(empty) == 0, "fresh list not []");
    json_decref(empty);
    json_int_t a = api_create_user(&p, "A", "a@x.org");
    json_int_t b = api_create_user(&p, "B", "b@x.org");
    json_int_t c = api_create_user(&p, "C", "c@x.org");
    json_t *l = api_get(&p, "/users", 200);
    cr_assert(json_is_array(l));
    cr_assert_eq(json_array_size(l), 3);
    cr_assert_eq(api_int(json_array_get(l, 0), "id"), a);
    cr_assert_eq(api_int(json_array_get(l, 1), "id"), b);
    cr_assert_eq(api_int(json_array_get(l, 2), "id"), c);
    cr_assert_str_eq(api_str(json_array_get(l, 1), "email"), "b@x.org");
    json_decref(l);
    api_stop_clean(&p);
}

Test(users, get_returns_the_item_with_etag)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "Grace", "grace@x.org");
    char path[64], etag[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    h_resp_t r = h_req(&p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0);
    cr_assert(api_is_etag(etag), "%s", etag);
    json_t *j = h_json(&r);
    cr_assert_eq(api_int(j, "id"), id);
    cr_assert_str_eq(api_str(j, "name"), "Grace");
    cr_assert_str_eq(api_str(j, "email"), "grace@x.org");
    json_decref(j);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(users, get_missing_returns_404_user_not_found)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    h_resp_t r = h_req(&p, "GET", "/users/999", NULL, NULL);
    cr_assert_eq(r.status, 404);
    json_t *j = h_json(&r);
    json_t *want = json_pack("{s:s}", "error", "User not found");
    cr_assert(json_equal(j, want), "404 body is %s", r.body);
    json_decref(want);
    json_decref(j);
    h_resp_free(&r);
    api_stop_clean(&p);
}

/* Many GETs due at once (pipelined on several connections, every connection's bytes sent
 * before any answer is read): on PostgreSQL their statements share batches on the
 * worker's read connections, and each answer must still be its own request's. */
Test(users, gets_due_together_each_answer_their_own_user)
{
    h_proc_t p;
    start_users(&p);
    enum { USERS = 10, CONNS = 6, PER = 2 * USERS + 1 };
    json_int_t ids[USERS];
    for (int i = 0; i < USERS; i++) {
        char name[16], email[32];
        snprintf(name, sizeof name, "U%d", i);
        snprintf(email, sizeof email, "u%d@x.org", i);
        ids[i] = api_create_user(&p, name, email);
    }
    /* connection c asks for user (c + k) % USERS at step k, and once for a missing one */
    int fds[CONNS];
    for (int c = 0; c < CONNS; c++) {
        char req[PER * 96];
        size_t n = 0;
        for (int k = 0; k < PER; k++) {
            long long id = k == USERS ? 999999 : (long long)ids[(c + k) % USERS];
            n += (size_t)snprintf(req + n, sizeof req - n,
                                  "GET /users/%lld HTTP/1.1\r\nHost: x\r\n\r\n", id);
        }
        fds[c] = h_connect(p.port);
        h_send(fds[c], req, n);
    }
    for (int c = 0; c < CONNS; c++) {
        size_t len;
        char *resp = h_recv_responses(fds[c], PER, 10000, &len);
        const char *r = resp;
        for (int k = 0; k < PER; k++, r = h_raw_next(r)) {
            cr_assert_not_null(r, "connection %d: answer %d of %d missing", c, k + 1, PER);
            if (k == USERS) {
                cr_assert_eq(h_raw_status(r), 404, "connection %d: the missing user", c);
                continue;
            }
            int i = (c + k) % USERS;
            cr_assert_eq(h_raw_status(r), 200, "connection %d, answer %d", c, k);
            char cl[16] = "";
            h_raw_header(r, "Content-Length", cl, sizeof cl);
            json_error_t err;
            json_t *j = json_loadb(h_raw_body(r), (size_t)atoi(cl), 0, &err);
            cr_assert_not_null(j, "connection %d, answer %d: %s", c, k, err.text);
            char name[16];
            snprintf(name, sizeof name, "U%d", i);
            cr_assert_eq(api_int(j, "id"), ids[i], "connection %d, answer %d is its own", c, k);
            cr_assert_str_eq(api_str(j, "name"), name);
            json_decref(j);
        }
        free(resp);
        close(fds[c]);
    }
    api_stop_clean(&p);
}

Test(users, non_numeric_id_returns_404)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    static const char *const paths[] = {"/users/abc", "/users/1x",
                                        "/users/-1",  "/users/0",
                                        "/users/1.0", "/users/99999999999999999999999"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        api_expect_error(h_req(&p, "GET", paths[i], NULL, NULL), 404, NULL);
        json_t *before = api_snapshot(&p, "/users");
        api_expect_error(api_send(&p, "PUT", paths[i], "{\"name\":\"Z\"}", NULL), 404, NULL);
        api_expect_error(h_req(&p, "DELETE", paths[i], NULL, NULL), 404, NULL);
        api_assert_unchanged(&p, "/users", before);
    }
    api_stop_clean(&p);
}

Test(users, put_changes_only_the_fields_sent)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "Old Name", "old@x.org");
    json_int_t other = api_create_user(&p, "Other", "other@x.org");
    char path[64], opath[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    snprintf(opath, sizeof opath, "/users/%lld", (long long)other);
    json_t *orig = api_get(&p, path, 200);
    json_t *other_before = api_get(&p, opath, 200);

    h_resp_t r = api_send(&p, "PUT", path, "{\"name\":\"New Name\"}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char etag[64];
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0, "no ETag on PUT");
    json_t *j = h_json(&r);
    cr_assert_eq(api_int(j, "id"), id);
    cr_assert_str_eq(api_str(j, "name"), "New Name");
    cr_assert_str_eq(api_str(j, "email"), "old@x.org");
    cr_assert_str_eq(api_str(j, "createdAt"), api_str(orig, "createdAt"));
    cr_assert(strcmp(api_str(j, "updatedAt"), api_str(orig, "updatedAt")) >= 0);
    json_t *g = api_get(&p, path, 200);
    cr_assert(json_equal(g, j), "GET after PUT differs from the PUT answer");
    char etag2[64];
    etag_of(&p, id, etag2, sizeof etag2);
    cr_assert_str_eq(etag2, etag, "PUT's ETag is not the item's ETag");
    json_decref(g);
    json_decref(j);
    h_resp_free(&r);

    r = api_send(&p, "PUT", path, "{\"email\":\"new@x.org\"}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    j = h_json(&r);
    cr_assert_str_eq(api_str(j, "name"), "New Name");
    cr_assert_str_eq(api_str(j, "email"), "new@x.org");
    cr_assert_str_eq(api_str(j, "createdAt"), api_str(orig, "createdAt"));
    json_decref(j);
    h_resp_free(&r);

    /* an empty object changes nothing it could name */
    r = api_send(&p, "PUT", path, "{}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    j = h_json(&r);
    cr_assert_str_eq(api_str(j, "name"), "New Name");
    cr_assert_str_eq(api_str(j, "email"), "new@x.org");
    json_decref(j);
    h_resp_free(&r);

    json_t *other_after = api_get(&p, opath, 200);
    cr_assert(json_equal(other_before, other_after), "PUT touched another user");
    json_decref(other_before);
    json_decref(other_after);
    json_decref(orig);
    api_stop_clean(&p);
}

Test(users, delete_answers_user_deleted_then_404)
{
    h_proc_t p;
    start_users(&p);
    json_int_t keep = api_create_user(&p, "Keep", "keep@x.org");
    json_int_t id = api_create_user(&p, "Gone", "gone@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    h_resp_t r = h_req(&p, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    json_t *want = json_pack("{s:s}", "message", "User deleted");
    cr_assert(json_equal(j, want), "DELETE body is %s", r.body);
    json_decref(want);
    json_decref(j);
    h_resp_free(&r);

    json_t *g = api_get(&p, path, 404);
    want = json_pack("{s:s}", "error", "User not found");
    cr_assert(json_equal(g, want));
    json_decref(want);
    json_decref(g);
    json_t *l = api_snapshot(&p, "/users");
    cr_assert_eq(json_array_size(l), 1);
    cr_assert_eq(api_int(json_array_get(l, 0), "id"), keep);
    json_decref(l);
    /* the email is free again */
    api_create_user(&p, "Again", "gone@x.org");
    api_stop_clean(&p);
}

Test(users, delete_missing_returns_404_and_changes_nothing)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id + 1);
    json_t *before = api_snapshot(&p, "/users");
    h_resp_t r = h_req(&p, "DELETE", path, NULL, NULL);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "error"), "User not found");
    json_decref(j);
    api_expect_error(r, 404, NULL);
    api_assert_unchanged(&p, "/users", before);
    /* deleting twice: the second is a 404 */
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    h_resp_t d = h_req(&p, "DELETE", path, NULL, NULL);
    cr_assert_eq(d.status, 200);
    h_resp_free(&d);
    api_expect_error(h_req(&p, "DELETE", path, NULL, NULL), 404, NULL);
    api_stop_clean(&p);
}

Test(users, ids_are_never_reused_after_delete_even_across_restart)
{
    h_proc_t p;
    start_users(&p);
    json_int_t a = api_create_user(&p, "A", "a@x.org");
    json_int_t b = api_create_user(&p, "B", "b@x.org");
    cr_assert_gt(b, a);
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)b);
    h_resp_t d = h_req(&p, "DELETE", path, NULL, NULL);
    cr_assert_eq(d.status, 200);
    h_resp_free(&d);
    json_int_t c = api_create_user(&p, "C", "c@x.org");
    cr_assert_gt(c, b, "id %lld reused after deleting %lld", (long long)c, (long long)b);

    snprintf(path, sizeof path, "/users/%lld", (long long)c);
    d = h_req(&p, "DELETE", path, NULL, NULL);
    cr_assert_eq(d.status, 200);
    h_resp_free(&d);
    cr_assert_eq(h_stop(&p), 0);
    h_restart(&p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t e = api_create_user(&p, "E", "e@x.org");
    cr_assert_gt(e, c, "id %lld reused after restart (highest ever %lld)", (long long)e,
                 (long long)c);
    api_stop_clean(&p);
}

/* ------------------------------------------------------------------------- */
/* refused bodies                                                             */

Test(users, malformed_json_returns_400)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    static const char *const bodies[] = {
        "{\"name\":",
        "not json",
        "",
        "{\"name\":\"B\",\"email\":\"b@x.org\"} trailing",
        "{\"name\":\"B\",\"email\":\"b@x.org\",}",
        "{'name':'B','email':'b@x.org'}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        post_refused(&p, bodies[i], 400, NULL);
    put_refused(&p, "/users/1", "{\"name\":", 400, NULL);
    api_stop_clean(&p);
}

Test(users, body_that_is_not_an_object_returns_400)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    static const char *const bodies[] = {
        "[]", "[{\"name\":\"B\",\"email\":\"b@x.org\"}]", "\"B\"", "42", "null", "true",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        post_refused(&p, bodies[i], 400, NULL);
        put_refused(&p, "/users/1", bodies[i], 400, NULL);
    }
    api_stop_clean(&p);
}

Test(users, missing_name_or_email_returns_422_naming_it)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    post_refused(&p, "{\"email\":\"b@x.org\"}", 422, "name");
    post_refused(&p, "{\"name\":\"B\"}", 422, "email");
    post_refused(&p, "{}", 422, NULL);
    api_stop_clean(&p);
}

Test(users, name_must_be_1_to_200_characters)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);

    post_refused(&p, "{\"name\":\"\",\"email\":\"b@x.org\"}", 422, "name");
    put_refused(&p, path, "{\"name\":\"\"}", 422, "name");

    char *n201 = repeat("x", 201);
    char *body = user_body(n201, "b@x.org");
    post_refused(&p, body, 422, "name");
    free(body);
    json_t *o = json_pack("{s:s}", "name", n201);
    body = json_dumps(o, JSON_COMPACT);
    put_refused(&p, path, body, 422, "name");
    free(body);
    json_decref(o);
    free(n201);

    char *n200 = repeat("x", 200);
    json_int_t ok = api_create_user(&p, n200, "b@x.org");
    snprintf(path, sizeof path, "/users/%lld", (long long)ok);
    json_t *g = api_get(&p, path, 200);
    cr_assert_str_eq(api_str(g, "name"), n200);
    json_decref(g);
    free(n200);
    api_stop_clean(&p);
}

Test(users, name_length_counts_utf8_characters_not_bytes)
{
    h_proc_t p;
    start_users(&p);
    /* 200 two-byte and 200 three-byte characters: 400 and 600 bytes, 200 characters */
    char *e200 = repeat("\xc3\xa9", 200);
    char *eu200 = repeat("\xe2\x82\xac", 200);
    json_int_t a = api_create_user(&p, e200, "e@x.org");
    json_int_t b = api_create_user(&p, eu200, "eu@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)a);
    json_t *g = api_get(&p, path, 200);
    cr_assert_str_eq(api_str(g, "name"), e200, "multi-byte name not stored as sent");
    json_decref(g);
    snprintf(path, sizeof path, "/users/%lld", (long long)b);
    g = api_get(&p, path, 200);
    cr_assert_str_eq(api_str(g, "name"), eu200);
    json_decref(g);
    free(e200);
    free(eu200);

    char *e201 = repeat("\xc3\xa9", 201);
    char *body = user_body(e201, "f@x.org");
    post_refused(&p, body, 422, "name");
    free(body);
    free(e201);
    char *emoji201 = repeat("\xf0\x9f\x98\x80", 201);
    body = user_body(emoji201, "g@x.org");
    post_refused(&p, body, 422, "name");
    free(body);
    free(emoji201);
    api_stop_clean(&p);
}

Test(users, name_that_is_not_a_string_returns_422)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    static const char *const values[] = {"42", "null", "[]", "{}", "true", "[\"B\"]"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":%s,\"email\":\"b@x.org\"}", values[i]);
        post_refused(&p, body, 422, "name");
        snprintf(body, sizeof body, "{\"name\":%s}", values[i]);
        put_refused(&p, path, body, 422, "name");
    }
    api_stop_clean(&p);
}

Test(users, invalid_emails_return_422)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    char long_local[300];
    memset(long_local, 'a', 250);
    snprintf(long_local + 250, sizeof long_local - 250, "@x.org"); /* 256 chars */
    const char *const bad[] = {
        "",          "plain",    "@x.org",   "a@",     "a@x",  "a b@x.org", "a@@x.org",
        "a@b@x.org", "a@x.org ", " a@x.org", "a@.org", "a@x.", "a@x org",   long_local,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *body = user_body("B", bad[i]);
        post_refused(&p, body, 422, "email");
        free(body);
        json_t *o = json_pack("{s:s}", "email", bad[i]);
        body = json_dumps(o, JSON_COMPACT);
        put_refused(&p, path, body, 422, "email");
        free(body);
        json_decref(o);
    }
    static const char *const not_strings[] = {"42", "null", "[]", "{}", "false"};
    for (size_t i = 0; i < sizeof not_strings / sizeof not_strings[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"B\",\"email\":%s}", not_strings[i]);
        post_refused(&p, body, 422, "email");
    }
    api_stop_clean(&p);
}

Test(users, email_of_254_characters_is_accepted_and_255_refused)
{
    h_proc_t p;
    start_users(&p);
    /* local part 64 + "@" + a domain of 189 in DNS-sized labels (60.60.63.org): 254 */
    char email[300];
    snprintf(email, sizeof email, "%s@%s.%s.%s.org", repeat_buf('l', 64), repeat_buf('a', 60),
             repeat_buf('b', 60), repeat_buf('c', 63));
    cr_assert_eq(strlen(email), 254);
    json_int_t id = api_create_user(&p, "Long", email);
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    json_t *g = api_get(&p, path, 200);
    cr_assert_str_eq(api_str(g, "email"), email);
    json_decref(g);
    /* one more character: 60.61.63.org */
    snprintf(email, sizeof email, "%s@%s.%s.%s.org", repeat_buf('l', 64), repeat_buf('a', 60),
             repeat_buf('b', 61), repeat_buf('c', 63));
    cr_assert_eq(strlen(email), 255);
    char *body = user_body("Longer", email);
    post_refused(&p, body, 422, "email");
    free(body);
    api_stop_clean(&p);
}

Test(users, unknown_field_returns_422_naming_the_key)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    post_refused(&p, "{\"name\":\"B\",\"email\":\"b@x.org\",\"age\":3}", 422, "age");
    post_refused(&p, "{\"name\":\"B\",\"email\":\"b@x.org\",\"createdAt\":\"x\"}", 422,
                 "createdAt");
    put_refused(&p, path, "{\"nickname\":\"Z\"}", 422, "nickname");
    put_refused(&p, path, "{\"name\":\"Z\",\"Name\":\"Y\"}", 422, "Name");
    api_stop_clean(&p);
}

Test(users, id_in_body_returns_422_field_id)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64], body[128];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    post_refused(&p, "{\"id\":77,\"name\":\"B\",\"email\":\"b@x.org\"}", 422, "id");
    snprintf(body, sizeof body, "{\"id\":%lld,\"name\":\"Z\"}", (long long)id);
    put_refused(&p, path, body, 422, "id");
    put_refused(&p, path, "{\"id\":12345}", 422, "id");
    api_stop_clean(&p);
}

Test(users, duplicate_email_returns_409_also_case_insensitive_and_on_put)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    json_int_t b = api_create_user(&p, "B", "b@x.org");
    post_refused(&p, "{\"name\":\"A2\",\"email\":\"a@x.org\"}", 409, "email");
    post_refused(&p, "{\"name\":\"A3\",\"email\":\"A@X.ORG\"}", 409, "email");
    post_refused(&p, "{\"name\":\"A4\",\"email\":\"a@X.org\"}", 409, "email");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)b);
    put_refused(&p, path, "{\"email\":\"a@x.org\"}", 409, "email");
    put_refused(&p, path, "{\"name\":\"B2\",\"email\":\"A@x.Org\"}", 409, "email");
    /* a user may keep its own address */
    h_resp_t r = api_send(&p, "PUT", path, "{\"email\":\"b@x.org\",\"name\":\"B3\"}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(users, wrong_or_missing_content_type_returns_415)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    static const char body[] = "{\"name\":\"B\",\"email\":\"b@x.org\"}";
    /* "Content-Type:" with no value makes libcurl send none at all */
    static const char *const cts[] = {"Content-Type: text/plain", "Content-Type:",
                                      "Content-Type: application/x-www-form-urlencoded",
                                      "Content-Type: application/jsonp", "Content-Type: text/json"};
    for (size_t i = 0; i < sizeof cts / sizeof cts[0]; i++) {
        const char *hdrs[] = {cts[i], NULL};
        json_t *before = api_snapshot(&p, "/users");
        api_expect_error(h_req(&p, "POST", "/users", body, hdrs), 415, NULL);
        api_expect_error(h_req(&p, "PUT", path, "{\"name\":\"Z\"}", hdrs), 415, NULL);
        api_assert_unchanged(&p, "/users", before);
    }
    /* parameters after the media type are fine */
    const char *hdrs[] = {"Content-Type: application/json; charset=utf-8", NULL};
    h_resp_t r = h_req(&p, "POST", "/users", body, hdrs);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    api_stop_clean(&p);
}

/* ------------------------------------------------------------------------- */
/* paging                                                                     */

/* Walks /users from first_path following Link rel="next"; appends every id to ids
 * (capacity cap) and returns how many; asserts the Link format and that only the last page
 * lacks a Link and every page but the last is full. */
static int walk(const h_proc_t *p, const char *first_path, int limit, json_int_t *ids, int cap)
{
    char path[256];
    snprintf(path, sizeof path, "%s", first_path);
    int n = 0;
    for (int page = 0; page < 1000; page++) {
        h_resp_t r = h_req(p, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        json_t *arr = h_json(&r);
        cr_assert(json_is_array(arr), "page is not an array: %s", r.body);
        cr_assert_leq(json_array_size(arr), (size_t)limit);
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it)
        {
            cr_assert_lt(n, cap);
            ids[n++] = api_int(it, "id");
        }
        cr_assert(page == 0 || json_array_size(arr) > 0,
                  "a next Link led to an empty page: the previous page was the last");
        char link[256];
        int has = h_header(&r, "Link", link, sizeof link) == 0;
        if (!has) {
            json_decref(arr);
            h_resp_free(&r);
            return n;
        }
        cr_assert_eq(json_array_size(arr), (size_t)limit, "a page with a next Link is not full");
        char want[256];
        snprintf(want, sizeof want, "</users?limit=%d&after=%lld>; rel=\"next\"", limit,
                 (long long)ids[n - 1]);
        cr_assert_str_eq(link, want);
        snprintf(path, sizeof path, "%.*s", (int)(strchr(link, '>') - link - 1), link + 1);
        json_decref(arr);
        h_resp_free(&r);
    }
    cr_assert_fail("paging did not end");
    return n;
}

Test(users, paging_follows_link_next_until_the_last_page_and_yields_every_id_once)
{
    h_proc_t p;
    start_users(&p);
    json_int_t made[7];
    for (int i = 0; i < 7; i++) {
        char name[16], email[32];
        snprintf(name, sizeof name, "U%d", i);
        snprintf(email, sizeof email, "u%d@x.org", i);
        made[i] = api_create_user(&p, name, email);
    }
    /* a hole in the middle must not disturb paging */
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)made[3]);
    h_resp_t d = h_req(&p, "DELETE", path, NULL, NULL);
    cr_assert_eq(d.status, 200);
    h_resp_free(&d);
    json_int_t want[6] = {made[0], made[1], made[2], made[4], made[5], made[6]};

    static const int limits[] = {1, 2, 3, 4, 6, 7, 1000};
    for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
        json_int_t got[16];
        char first[64];
        snprintf(first, sizeof first, "/users?limit=%d", limits[l]);
        int n = walk(&p, first, limits[l], got, 16);
        cr_assert_eq(n, 6, "limit %d walked %d ids", limits[l], n);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(got[i], want[i], "limit %d: id %d is %lld, want %lld", limits[l], i,
                         (long long)got[i], (long long)want[i]);
    }

    /* after= starts past that id, even when the id itself is gone */
    json_int_t got[16];
    char first[64];
    snprintf(first, sizeof first, "/users?limit=2&after=%lld", (long long)made[2]);
    int n = walk(&p, first, 2, got, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(got[0], made[4]);
    snprintf(first, sizeof first, "/users?after=%lld", (long long)made[6]);
    json_t *empty = api_get(&p, first, 200);
    cr_assert(json_is_array(empty) && json_array_size(empty) == 0);
    json_decref(empty);
    api_stop_clean(&p);
}

Test(users, default_limit_is_100_with_a_next_link)
{
    h_proc_t p;
    start_users(&p);
    for (int i = 0; i < 101; i++) {
        char email[32];
        snprintf(email, sizeof email, "u%d@x.org", i);
        api_create_user(&p, "U", email);
    }
    h_resp_t r = h_req(&p, "GET", "/users", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *arr = h_json(&r);
    cr_assert_eq(json_array_size(arr), 100);
    char link[128], want[128];
    cr_assert_eq(h_header(&r, "Link", link, sizeof link), 0, "no Link with 101 users");
    snprintf(want, sizeof want, "</users?limit=100&after=%lld>; rel=\"next\"",
             (long long)api_int(json_array_get(arr, 99), "id"));
    cr_assert_str_eq(link, want);
    json_decref(arr);
    h_resp_free(&r);
    json_int_t ids[128];
    cr_assert_eq(walk(&p, "/users", 100, ids, 128), 101);
    api_stop_clean(&p);
}

Test(users, bad_limit_or_after_returns_422_naming_it)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "A", "a@x.org");
    json_t *before = api_snapshot(&p, "/users");
    static const char *const limits[] = {"0", "1001", "abc", "-1", "", "1.5", "10x", "1e2"};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/users?limit=%s", limits[i]);
        api_expect_error(h_req(&p, "GET", path, NULL, NULL), 422, "limit");
    }
    static const char *const afters[] = {"abc", "-1", "", "1.5", "2x"};
    for (size_t i = 0; i < sizeof afters / sizeof afters[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/users?after=%s", afters[i]);
        api_expect_error(h_req(&p, "GET", path, NULL, NULL), 422, "after");
    }
    api_assert_unchanged(&p, "/users", before);
    /* the bounds themselves are fine */
    json_t *l = api_get(&p, "/users?limit=1000", 200);
    json_decref(l);
    l = api_get(&p, "/users?limit=1&after=0", 200);
    cr_assert_eq(json_array_size(l), 1);
    json_decref(l);
    api_stop_clean(&p);
}

/* ------------------------------------------------------------------------- */
/* conditional requests                                                       */

Test(users, if_none_match_with_current_etag_returns_304_with_empty_body)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64], etag[64], inm[96];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    etag_of(&p, id, etag, sizeof etag);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *hdrs[] = {inm, NULL};
    h_resp_t r = h_req(&p, "GET", path, NULL, hdrs);
    cr_assert_eq(r.status, 304, "%ld %s", r.status, r.body);
    cr_assert_eq(r.body_len, 0, "304 has a body: %s", r.body);
    char e2[64];
    cr_assert_eq(h_header(&r, "ETag", e2, sizeof e2), 0, "304 without ETag");
    cr_assert_str_eq(e2, etag);
    h_resp_free(&r);

    const char *other[] = {"If-None-Match: \"0000000000000000\"", NULL};
    r = h_req(&p, "GET", path, NULL, other);
    cr_assert_eq(r.status, 200);
    cr_assert_gt(r.body_len, 0);
    h_resp_free(&r);

    /* after a change the old ETag no longer matches */
    h_resp_t u = api_send(&p, "PUT", path, "{\"name\":\"B\"}", NULL);
    cr_assert_eq(u.status, 200);
    h_resp_free(&u);
    r = h_req(&p, "GET", path, NULL, hdrs);
    cr_assert_eq(r.status, 200, "stale ETag still answered %ld", r.status);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(users, if_match_mismatch_on_put_and_delete_returns_412_and_changes_nothing)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    static const char *const stale = "If-Match: \"0123456789abcdef\"";
    json_t *before = api_snapshot(&p, "/users");
    api_expect_error(api_send(&p, "PUT", path, "{\"name\":\"B\"}", stale, NULL), 412, NULL);
    api_assert_unchanged(&p, "/users", before);
    before = api_snapshot(&p, "/users");
    const char *hdrs[] = {stale, NULL};
    api_expect_error(h_req(&p, "DELETE", path, NULL, hdrs), 412, NULL);
    api_assert_unchanged(&p, "/users", before);

    /* an ETag that was current before an update is stale after it */
    char old[64], im[96];
    etag_of(&p, id, old, sizeof old);
    h_resp_t u = api_send(&p, "PUT", path, "{\"name\":\"C\"}", NULL);
    cr_assert_eq(u.status, 200);
    h_resp_free(&u);
    snprintf(im, sizeof im, "If-Match: %s", old);
    before = api_snapshot(&p, "/users");
    api_expect_error(api_send(&p, "PUT", path, "{\"name\":\"D\"}", im, NULL), 412, NULL);
    const char *oh[] = {im, NULL};
    api_expect_error(h_req(&p, "DELETE", path, NULL, oh), 412, NULL);
    api_assert_unchanged(&p, "/users", before);
    api_stop_clean(&p);
}

Test(users, if_match_with_current_etag_allows_put_and_delete)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64], etag[64], im[96];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    etag_of(&p, id, etag, sizeof etag);
    snprintf(im, sizeof im, "If-Match: %s", etag);
    h_resp_t r = api_send(&p, "PUT", path, "{\"name\":\"B\"}", im, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char next[64];
    cr_assert_eq(h_header(&r, "ETag", next, sizeof next), 0);
    cr_assert_str_neq(next, etag, "ETag did not change with the item");
    h_resp_free(&r);
    json_t *g = api_get(&p, path, 200);
    cr_assert_str_eq(api_str(g, "name"), "B");
    json_decref(g);

    snprintf(im, sizeof im, "If-Match: %s", next);
    const char *hdrs[] = {im, NULL};
    r = h_req(&p, "DELETE", path, NULL, hdrs);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    json_t *gone = api_get(&p, path, 404);
    json_decref(gone);
    api_stop_clean(&p);
}

/* ------------------------------------------------------------------------- */
/* Idempotency-Key                                                            */

Test(users, idempotency_key_repeat_replays_the_first_answer_and_creates_once)
{
    h_proc_t p;
    start_users(&p);
    api_create_user(&p, "Before", "before@x.org");
    static const char body[] = "{\"name\":\"Idem\",\"email\":\"idem@x.org\"}";
    static const char *const key = "Idempotency-Key: create-idem-1";
    h_resp_t a = api_send(&p, "POST", "/users", body, key, NULL);
    cr_assert_eq(a.status, 201, "%ld %s", a.status, a.body);
    char la[128], lb[128], rep[32];
    cr_assert_eq(h_header(&a, "Location", la, sizeof la), 0);
    cr_assert_neq(h_header(&a, "Idempotent-Replayed", rep, sizeof rep), 0,
                  "first answer claims to be a replay");
    json_t *before = api_snapshot(&p, "/users");

    for (int i = 0; i < 2; i++) {
        h_resp_t b = api_send(&p, "POST", "/users", body, key, NULL);
        cr_assert_eq(b.status, a.status);
        cr_assert_str_eq(b.body, a.body, "replayed body differs");
        cr_assert_eq(h_header(&b, "Location", lb, sizeof lb), 0, "replay without Location");
        cr_assert_str_eq(lb, la);
        cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0,
                     "no Idempotent-Replayed header");
        cr_assert_str_eq(rep, "true");
        h_resp_free(&b);
    }
    api_assert_unchanged(&p, "/users", before);
    json_t *l = api_snapshot(&p, "/users");
    cr_assert_eq(json_array_size(l), 2, "the list grew by more than one");
    json_decref(l);
    h_resp_free(&a);

    /* another key is another create (which here collides on the email) */
    api_expect_error(api_send(&p, "POST", "/users", body, "Idempotency-Key: create-idem-2", NULL),
                     409, "email");
    api_stop_clean(&p);
}

Test(users, idempotency_key_reused_with_a_different_body_returns_422)
{
    h_proc_t p;
    start_users(&p);
    static const char *const key = "Idempotency-Key: k-diff";
    h_resp_t a =
        api_send(&p, "POST", "/users", "{\"name\":\"A\",\"email\":\"a@x.org\"}", key, NULL);
    cr_assert_eq(a.status, 201);
    h_resp_free(&a);
    json_t *before = api_snapshot(&p, "/users");
    api_expect_error(
        api_send(&p, "POST", "/users", "{\"name\":\"B\",\"email\":\"b@x.org\"}", key, NULL), 422,
        "Idempotency-Key");
    api_assert_unchanged(&p, "/users", before);
    api_stop_clean(&p);
}

Test(users, idempotency_key_used_on_one_instance_replays_on_another_sharing_the_db)
{
    h_proc_t a, b;
    start_users(&a);
    char db[512];
    snprintf(db, sizeof db, "%s/users.db", a.dir);
    h_start(&b, "users", "--db", db, "--access-log", "off", NULL);
    static const char body[] = "{\"name\":\"Shared\",\"email\":\"shared@x.org\"}";
    static const char *const key = "Idempotency-Key: shared-key-1";
    h_resp_t ra = api_send(&a, "POST", "/users", body, key, NULL);
    cr_assert_eq(ra.status, 201, "%ld %s", ra.status, ra.body);
    h_resp_t rb = api_send(&b, "POST", "/users", body, key, NULL);
    cr_assert_eq(rb.status, 201, "%ld %s", rb.status, rb.body);
    cr_assert_str_eq(rb.body, ra.body);
    char la[128], lb[128], rep[32];
    cr_assert_eq(h_header(&ra, "Location", la, sizeof la), 0);
    cr_assert_eq(h_header(&rb, "Location", lb, sizeof lb), 0);
    cr_assert_str_eq(lb, la);
    cr_assert_eq(h_header(&rb, "Idempotent-Replayed", rep, sizeof rep), 0,
                 "instance B did not replay A's answer");
    cr_assert_str_eq(rep, "true");
    json_t *l = api_snapshot(&b, "/users");
    cr_assert_eq(json_array_size(l), 1);
    json_decref(l);
    /* and a different body under that key is refused on B too */
    json_t *before = api_snapshot(&a, "/users");
    api_expect_error(
        api_send(&b, "POST", "/users", "{\"name\":\"X\",\"email\":\"x@x.org\"}", key, NULL), 422,
        "Idempotency-Key");
    api_assert_unchanged(&a, "/users", before);
    h_resp_free(&ra);
    h_resp_free(&rb);
    api_stop_clean(&b);
    api_stop_clean(&a);
}

/* One client of the race below: waits at the barrier, then sends the same keyed create. */
typedef struct racer {
    const h_proc_t *p;
    pthread_barrier_t *go;
    h_resp_t r;
} racer_t;

static void *race(void *arg)
{
    racer_t *x = arg;
    pthread_barrier_wait(x->go);
    x->r = api_send(x->p, "POST", "/users", "{\"name\":\"Race\",\"email\":\"race@x.org\"}",
                    "Idempotency-Key: race-key", NULL);
    return NULL;
}

Test(users, concurrent_repeats_of_one_idempotency_key_on_two_instances_create_once)
{
    h_proc_t a, b;
    start_users(&a);
    char db[512];
    snprintf(db, sizeof db, "%s/users.db", a.dir);
    h_start(&b, "users", "--db", db, "--workers", "2", "--access-log", "off", NULL);
    enum { N = 8 };
    racer_t x[N];
    pthread_t th[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        x[i] = (racer_t){.p = i % 2 ? &b : &a, .go = &go};
        cr_assert_eq(pthread_create(&th[i], NULL, race, &x[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    int fresh = 0;
    char first_loc[128] = "";
    for (int i = 0; i < N; i++) {
        char loc[128], rep[16];
        cr_assert_eq(x[i].r.status, 201, "racer %d: %ld %s", i, x[i].r.status, x[i].r.body);
        cr_assert_eq(h_header(&x[i].r, "Location", loc, sizeof loc), 0);
        if (!first_loc[0])
            snprintf(first_loc, sizeof first_loc, "%s", loc);
        cr_assert_str_eq(loc, first_loc, "racers got different users");
        cr_assert_str_eq(x[i].r.body, x[0].r.body);
        if (h_header(&x[i].r, "Idempotent-Replayed", rep, sizeof rep) != 0)
            fresh++;
    }
    for (int i = 0; i < N; i++)
        h_resp_free(&x[i].r);
    cr_assert_eq(fresh, 1, "%d answers were not marked as replays", fresh);
    json_t *l = api_snapshot(&a, "/users");
    cr_assert_eq(json_array_size(l), 1);
    json_decref(l);
    api_stop_clean(&b);
    api_stop_clean(&a);
}

typedef struct creator {
    const h_proc_t *p;
    pthread_barrier_t *go;
    char body[96];
    h_resp_t r;
} creator_t;

static void *create_at_once(void *arg)
{
    creator_t *x = arg;
    pthread_barrier_wait(x->go);
    x->r = api_send(x->p, "POST", "/users", x->body, NULL);
    return NULL;
}

/* Creates sent together land in one write group; some take an e-mail another one in the
 * same group takes too. On PostgreSQL the group's INSERTs are not waited for one by one,
 * so the duplicate fails the whole group, which runs again one statement at a time
 * (store/db.h): each create still gets its own answer. Per e-mail one 201 and one 409;
 * each 201 says what GET says, byte for byte (the answer is built without the INSERT
 * returning the row); one event each; nothing else stored. */
Test(users, creates_sent_together_with_taken_emails_each_get_their_own_answer)
{
    h_proc_t p;
    start_users(&p);
    enum { N = 16, ROUNDS = 3 };
    int created = 0;
    for (int round = 0; round < ROUNDS; round++) {
        creator_t x[N];
        pthread_t th[N];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, N);
        for (int i = 0; i < N; i++) {
            x[i] = (creator_t){.p = &p, .go = &go};
            snprintf(x[i].body, sizeof x[i].body, "{\"name\":\"T %d\",\"email\":\"t%d.%d@x.org\"}",
                     i, round, i / 2);
            cr_assert_eq(pthread_create(&th[i], NULL, create_at_once, &x[i]), 0);
        }
        for (int i = 0; i < N; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < N; i += 2) {
            h_resp_t *won = x[i].r.status == 201 ? &x[i].r : &x[i + 1].r;
            h_resp_t *lost = won == &x[i].r ? &x[i + 1].r : &x[i].r;
            cr_assert_eq(won->status, 201, "round %d pair %d: %ld %s", round, i, won->status,
                         won->body);
            api_assert_error(lost, 409, "email");
            char loc[128], etag[64], getag[64];
            cr_assert_eq(h_header(won, "Location", loc, sizeof loc), 0);
            cr_assert_eq(h_header(won, "ETag", etag, sizeof etag), 0);
            h_resp_t g = h_req(&p, "GET", loc, NULL, NULL);
            cr_assert_eq(g.status, 200);
            cr_assert_str_eq(g.body, won->body, "the 201's body is the stored row");
            cr_assert_eq(h_header(&g, "ETag", getag, sizeof getag), 0);
            cr_assert_str_eq(getag, etag);
            h_resp_free(&g);
            created++;
        }
        for (int i = 0; i < N; i++)
            h_resp_free(&x[i].r);
    }
    json_t *l = api_all_items(&p, "/users");
    cr_assert_eq(json_array_size(l), (size_t)created, "only the 201s were stored");
    json_decref(l);
    json_t *ev = api_all_events(&p);
    cr_assert_eq(json_array_size(ev), (size_t)created, "one user.created each");
    json_decref(ev);
    api_stop_clean(&p);
}

/* ------------------------------------------------------------------------- */
/* preconditions, idempotent updates and deletes, no-op updates               */

/* PUT path body with the extra header; returns the response. */
static h_resp_t put_with(const h_proc_t *p, const char *path, const char *body, const char *hdr)
{
    return api_send(p, "PUT", path, body, hdr, NULL);
}

Test(users, if_match_with_a_weak_etag_never_matches_412)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64], etag[64], weak[96];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    etag_of(&p, id, etag, sizeof etag);
    /* RFC 9110 13.1.1: If-Match uses the strong comparison; W/ of the current tag fails */
    snprintf(weak, sizeof weak, "If-Match: W/%s", etag);
    json_t *before = api_snapshot(&p, "/users");
    api_expect_error(put_with(&p, path, "{\"name\":\"B\"}", weak), 412, NULL);
    const char *wh[] = {weak, NULL};
    api_expect_error(h_req(&p, "DELETE", path, NULL, wh), 412, NULL);
    api_assert_unchanged(&p, "/users", before);
    /* the weak tag among others, with the strong one listed too: that one matches */
    char both[200];
    snprintf(both, sizeof both, "If-Match: W/%s, %s", etag, etag);
    h_resp_t r = put_with(&p, path, "{\"name\":\"B\"}", both);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    api_stop_clean(&p);
}

Test(users, if_none_match_star_or_the_current_etag_on_put_and_delete_is_412)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64], etag[64], inm[96];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    etag_of(&p, id, etag, sizeof etag);
    snprintf(inm, sizeof inm, "If-None-Match: W/%s", etag); /* weak comparison here */
    static const char *const star = "If-None-Match: *";
    json_t *before = api_snapshot(&p, "/users");
    /* RFC 9110 13.1.2: the resource exists, so "*" fails for a method other than GET */
    api_expect_error(put_with(&p, path, "{\"name\":\"B\"}", star), 412, NULL);
    api_expect_error(put_with(&p, path, "{\"name\":\"B\"}", inm), 412, NULL);
    const char *sh[] = {star, NULL}, *ih[] = {inm, NULL};
    api_expect_error(h_req(&p, "DELETE", path, NULL, sh), 412, NULL);
    api_expect_error(h_req(&p, "DELETE", path, NULL, ih), 412, NULL);
    api_assert_unchanged(&p, "/users", before);
    /* another tag does not stop it; a missing user is still 404 */
    h_resp_t r = put_with(&p, path, "{\"name\":\"B\"}", "If-None-Match: \"0123456789abcdef\"");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    api_expect_error(put_with(&p, "/users/999", "{\"name\":\"B\"}", star), 404, NULL);
    api_stop_clean(&p);
}

Test(users, idempotency_key_replays_a_delete_and_refuses_a_put_with_another_body)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "a@x.org");
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);

    static const char *const pk = "Idempotency-Key: put-1";
    h_resp_t a = put_with(&p, path, "{\"name\":\"B\"}", pk);
    cr_assert_eq(a.status, 200, "%ld %s", a.status, a.body);
    h_resp_t b = put_with(&p, path, "{\"name\":\"B\"}", pk);
    cr_assert_eq(b.status, 200, "%ld %s", b.status, b.body);
    cr_assert_str_eq(b.body, a.body, "a replay carries the first answer");
    char rep[16], e1[64], e2[64];
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0, "not a replay");
    cr_assert_eq(h_header(&a, "ETag", e1, sizeof e1), 0);
    cr_assert_eq(h_header(&b, "ETag", e2, sizeof e2), 0);
    cr_assert_str_eq(e1, e2);
    h_resp_free(&a);
    h_resp_free(&b);
    /* the same key with another body is not applied */
    json_t *before = api_snapshot(&p, "/users");
    api_expect_error(put_with(&p, path, "{\"name\":\"C\"}", pk), 422, "Idempotency-Key");
    api_assert_unchanged(&p, "/users", before);

    static const char *const dk = "Idempotency-Key: delete-1";
    const char *dh[] = {dk, NULL};
    a = h_req(&p, "DELETE", path, NULL, dh);
    cr_assert_eq(a.status, 200, "%ld %s", a.status, a.body);
    /* the retry of a delete that happened hears that it happened, not 404 */
    b = h_req(&p, "DELETE", path, NULL, dh);
    cr_assert_eq(b.status, 200, "retried DELETE: %ld %s", b.status, b.body);
    cr_assert_str_eq(b.body, a.body);
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0, "not a replay");
    cr_assert_neq(h_header(&b, "ETag", e2, sizeof e2), 0, "a delete's replay has no ETag");
    h_resp_free(&a);
    h_resp_free(&b);
    json_decref(api_get(&p, path, 404));
    api_stop_clean(&p);
}

/* "Authorization: Bearer <JWT for sub>" as the gateway forwards it after verifying it
 * (the service does not verify; "sig" stands for the signature). */
static void bearer_for(const char *sub, int iat, char *out, size_t cap)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[128], h[64], pl[200];
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"iat\":%d}", sub, iat);
    h_b64url(header, strlen(header), h);
    h_b64url(payload, strlen(payload), pl);
    snprintf(out, cap, "Authorization: Bearer %s.%s.c2ln", h, pl);
}

Test(users, idempotency_keys_are_scoped_to_the_token_subject)
{
    h_proc_t p;
    start_users(&p);
    char alice[400], alice2[400], bob[400];
    bearer_for("alice", 1, alice, sizeof alice);
    bearer_for("alice", 2, alice2, sizeof alice2); /* a refreshed token, same subject */
    bearer_for("bob", 1, bob, sizeof bob);
    static const char *const key = "Idempotency-Key: same-key";
    static const char body[] = "{\"name\":\"Shared\",\"email\":\"a@x.org\"}";

    h_resp_t a = api_send(&p, "POST", "/users", body, key, alice, NULL);
    cr_assert_eq(a.status, 201, "%ld %s", a.status, a.body);
    /* bob's request with alice's key is his own: never alice's answer (here: his create
     * meets alice's email, 409, instead of a replay of her 201) */
    h_resp_t b = api_send(&p, "POST", "/users", body, key, bob, NULL);
    char rep[16];
    cr_assert_neq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0,
                  "bob got alice's answer: %s", b.body);
    api_assert_error(&b, 409, "email");
    h_resp_free(&b);
    /* and his own key with his own body creates his user */
    b = api_send(&p, "POST", "/users", "{\"name\":\"Bob\",\"email\":\"b@x.org\"}",
                 "Idempotency-Key: same-key", bob, NULL);
    cr_assert_eq(b.status, 201, "%ld %s", b.status, b.body);
    h_resp_free(&b);
    /* a client without a token is another client again */
    b = api_send(&p, "POST", "/users", body, key, NULL);
    cr_assert_neq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0);
    h_resp_free(&b);
    /* alice's retry, even with a refreshed token, replays her answer */
    b = api_send(&p, "POST", "/users", body, key, alice2, NULL);
    cr_assert_eq(b.status, 201, "%ld %s", b.status, b.body);
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0, "not replayed");
    cr_assert_str_eq(b.body, a.body);
    h_resp_free(&a);
    h_resp_free(&b);
    json_t *all = api_snapshot(&p, "/users");
    cr_assert_eq(json_array_size(all), 2, "alice's and bob's users, nothing else");
    json_decref(all);
    api_stop_clean(&p);
}

Test(users, no_op_put_keeps_updated_at_and_etag)
{
    h_proc_t p;
    start_users(&p);
    json_int_t id = api_create_user(&p, "A", "Ada@x.org");
    char path[64], etag[64], im[96];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    etag_of(&p, id, etag, sizeof etag);
    json_t *before = api_get(&p, path, 200);
    snprintf(im, sizeof im, "If-Match: %s", etag);
    static const char *const bodies[] = {"{}", "{\"name\":\"A\"}",
                                         "{\"name\":\"A\",\"email\":\"Ada@x.org\"}"};
    for (int i = 0; i < 3; i++) {
        usleep(3000); /* past the millisecond a new updatedAt would show */
        h_resp_t r = put_with(&p, path, bodies[i], im); /* the old ETag still holds */
        cr_assert_eq(r.status, 200, "PUT %s: %ld %s", bodies[i], r.status, r.body);
        char now[64];
        cr_assert_eq(h_header(&r, "ETag", now, sizeof now), 0);
        cr_assert_str_eq(now, etag, "a no-op PUT %s changed the ETag", bodies[i]);
        json_t *j = h_json(&r);
        cr_assert(json_equal(j, before), "a no-op PUT %s changed the user: %s", bodies[i], r.body);
        json_decref(j);
        h_resp_free(&r);
    }
    /* a change of case in the email is a change */
    usleep(3000);
    h_resp_t r = put_with(&p, path, "{\"email\":\"ada@x.org\"}", im);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "email"), "ada@x.org");
    cr_assert_str_neq(api_str(j, "updatedAt"), api_str(before, "updatedAt"));
    json_decref(j);
    h_resp_free(&r);
    json_decref(before);
    api_stop_clean(&p);
}
