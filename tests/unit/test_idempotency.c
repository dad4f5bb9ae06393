/* tests/unit/test_idempotency.c: store/idempotency against a real SQLite file.
 * Lookup/store inside a transaction, fingerprint mismatch, and the fingerprint itself. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/db.h"
#include "store/idempotency.h"

static char dir[64];
static char path[PATH_MAX];
static cm_db_t *db;

static const cm_migration_t M[] = {{CM_IDEM_MIGRATION, NULL}, {CM_IDEM_MIGRATION_SCOPE, NULL}};

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cmesh-test-idem-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, M, 2, &db), 0);
}

static void teardown(void)
{
    cm_db_close(db);
    db = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_MAX + 256];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* cppcheck-suppress unknownMacro ; Criterion macro, unknown without its headers */
TestSuite(idempotency, .init = setup, .fini = teardown, .timeout = 30);

static const char BODY[] = "{\"name\":\"Ada\",\"email\":\"ada@x.io\"}";
static const char RESP[] = "{\"id\":1,\"name\":\"Ada\"}";

Test(idempotency, unknown_key_is_not_found)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cm_idem_response_t r = {.status = 7};
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k1", 2, fp, &r), -ENOENT);
    cr_assert_eq(r.status, 0);
    cr_assert_null(r.body);
    cm_db_rollback(db);
}

Test(idempotency, stored_response_is_replayed_for_the_same_request)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp, 201, "/users/1", RESP, strlen(RESP)), 0);
    cr_assert_eq(cm_db_commit(db), 0);

    cm_idem_response_t r;
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k1", 2, fp, &r), 0);
    cm_db_rollback(db);
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(r.location, "/users/1");
    cr_assert_eq(r.body_len, strlen(RESP));
    cr_assert_str_eq(r.body, RESP);
    cm_idem_response_free(&r);
    cr_assert_null(r.body);
    cm_idem_response_free(&r); /* already empty: harmless */
    cm_idem_response_free(NULL);
}

Test(idempotency, missing_location_comes_back_null)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/orders", "{}", 2, fp);
    cr_assert_eq(cm_idem_store(db, "", 0, "k", 1, fp, 422, NULL, "{\"error\":\"x\"}", 13), 0);
    cm_idem_response_t r;
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k", 1, fp, &r), 0);
    cr_assert_eq(r.status, 422);
    cr_assert_null(r.location);
    cr_assert_str_eq(r.body, "{\"error\":\"x\"}");
    cm_idem_response_free(&r);
}

Test(idempotency, same_key_with_different_request_is_eexist)
{
    char fp1[65], fp2[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp1);
    cm_idem_fingerprint("POST", "/users", "{}", 2, fp2);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp1, 201, "/users/1", RESP, strlen(RESP)), 0);
    cm_idem_response_t r = {0};
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k1", 2, fp2, &r), -EEXIST);
    cr_assert_null(r.body);
    cr_assert_null(r.location);
}

Test(idempotency, storing_a_key_twice_is_eexist)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp, 201, NULL, RESP, strlen(RESP)), 0);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp, 201, NULL, RESP, strlen(RESP)), -EEXIST);
}

Test(idempotency, same_key_of_two_clients_is_two_records)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cr_assert_eq(cm_idem_store(db, "sub:a", 5, "k1", 2, fp, 201, "/users/1", RESP, strlen(RESP)),
                 0);
    cm_idem_response_t r = {0};
    /* another client, the anonymous one included, does not see it */
    cr_assert_eq(cm_idem_lookup(db, "sub:b", 5, "k1", 2, fp, &r), -ENOENT);
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k1", 2, fp, &r), -ENOENT);
    cr_assert_eq(cm_idem_store(db, "sub:b", 5, "k1", 2, fp, 201, "/users/2", RESP, strlen(RESP)),
                 0);
    cr_assert_eq(cm_idem_lookup(db, "sub:a", 5, "k1", 2, fp, &r), 0);
    cr_assert_str_eq(r.location, "/users/1");
    cm_idem_response_free(&r);
    cr_assert_eq(cm_idem_lookup(db, "sub:b", 5, "k1", 2, fp, &r), 0);
    cr_assert_str_eq(r.location, "/users/2");
    cm_idem_response_free(&r);
}

Test(idempotency, key_length_is_honoured_not_nul)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    /* "abcdef" with length 3 is the key "abc". */
    cr_assert_eq(cm_idem_store(db, "", 0, "abcdef", 3, fp, 201, NULL, RESP, strlen(RESP)), 0);
    cm_idem_response_t r;
    cr_assert_eq(cm_idem_lookup(db, "", 0, "abc", 3, fp, &r), 0);
    cm_idem_response_free(&r);
    cr_assert_eq(cm_idem_lookup(db, "", 0, "abcdef", 6, fp, &r), -ENOENT);
}

Test(idempotency, rolled_back_store_leaves_no_record)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp, 201, "/users/1", RESP, strlen(RESP)), 0);
    cm_db_rollback(db);
    cm_idem_response_t r;
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k1", 2, fp, &r), -ENOENT);
}

Test(idempotency, record_has_rfc3339_created_at)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cr_assert_eq(cm_idem_store(db, "", 0, "k1", 2, fp, 201, NULL, RESP, strlen(RESP)), 0);
    cm_stmt_t *st = cm_db_stmt(db, "SELECT created_at FROM idempotency_keys WHERE key = 'k1'");
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    size_t len = 0;
    const char *ts = cm_stmt_text(st, 0, &len);
    cr_assert_eq(len, 24, "created_at %s", ts);
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[23], 'Z');
    cm_stmt_reset(st);
}

Test(idempotency, empty_key_or_fingerprint_is_einval)
{
    char fp[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), fp);
    cm_idem_response_t r;
    cr_assert_eq(cm_idem_store(db, "", 0, "", 0, fp, 201, NULL, "", 0), -EINVAL);
    cr_assert_eq(cm_idem_store(db, "", 0, "k", 1, "", 201, NULL, "", 0), -EINVAL);
    cr_assert_eq(cm_idem_lookup(db, "", 0, "k", 1, "", &r), -EINVAL);
}

Test(idempotency, fingerprint_is_stable_lowercase_sha256_hex)
{
    char a[65], b[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), a);
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), b);
    cr_assert_str_eq(a, b);
    cr_assert_eq(strlen(a), CM_IDEM_FINGERPRINT_LEN);
    cr_assert_eq(strspn(a, "0123456789abcdef"), 64);
    /* Fixed vector: sha256("GET\0/\0") computed independently with sha256sum. */
    cm_idem_fingerprint("GET", "/", NULL, 0, a);
    cr_assert_str_eq(a, "19fb856f52074c83ad846d55cca99520ef8e16fc483079093cc491a6ddc3dae2");
}

Test(idempotency, fingerprint_differs_when_body_method_or_path_differs)
{
    char base[65], other[65];
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY), base);
    cm_idem_fingerprint("POST", "/users", BODY, strlen(BODY) - 1, other);
    cr_assert_str_neq(base, other);
    cm_idem_fingerprint("PUT", "/users", BODY, strlen(BODY), other);
    cr_assert_str_neq(base, other);
    cm_idem_fingerprint("POST", "/orders", BODY, strlen(BODY), other);
    cr_assert_str_neq(base, other);
    /* The separators keep the boundaries: moving a byte across them changes it. */
    cm_idem_fingerprint("POS", "T/users", BODY, strlen(BODY), other);
    cr_assert_str_neq(base, other);
}
