/* tests/unit/test_outbox.c: service/outbox on a real SQLite file inside the group commit's
 * units: ids gap-free when a unit is taken back, in commit order across two connections
 * (two instances) on one file, the page's JSON, and pruning that keeps the newest. */
#include "service/outbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/buf.h"
#include "store/db.h"

static char dir[64], path[128];
static const cm_migration_t migs[] = {{CM_OUTBOX_MIGRATION, NULL}};

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cmesh-test-outbox-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
}

static void teardown(void)
{
    char p[200];
    static const char *const ext[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Adds an event; returns the newest id after it. */
static int64_t add(cm_db_t *db, const char *type)
{
    int64_t id = 0;
    cr_assert_eq(cm_outbox_add(db, type, "{\"id\":1}", 8), 0);
    cr_assert_eq(cm_outbox_head(db, &id), 0);
    return id;
}

TestSuite(outbox, .init = setup, .fini = teardown);

Test(outbox, a_unit_taken_back_leaves_no_gap)
{
    cm_db_t *db;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, migs, 1, &db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(add(db, "a"), 1);
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(add(db, "refused"), 2);
    cr_assert_eq(cm_db_unit_undo(db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(add(db, "b"), 2, "the undone unit's id is handed out again");
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);

    cm_buf_t out = {0};
    int64_t last;
    int n;
    cr_assert_eq(cm_outbox_page(db, 0, 10, &out, &last, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(last, 2);
    cr_assert(strstr(out.data, "\"id\":1,\"type\":\"a\"") &&
                  strstr(out.data, "\"id\":2,\"type\":\"b\""),
              "%.*s", (int)out.len, out.data);
    cr_assert_null(strstr(out.data, "refused"));
    cm_buf_free(&out);
    cm_db_close(db);
}

Test(outbox, two_connections_on_one_file_get_ids_in_commit_order)
{
    cm_db_t *a, *b;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, migs, 1, &a), 0);
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, migs, 1, &b), 0);
    cm_db_set_busy_timeout(b, 0);
    cr_assert_eq(cm_db_unit_begin(a), 0);
    cr_assert_eq(add(a, "a1"), 1);
    cr_assert_eq(cm_db_unit_end(a), 0);
    /* b cannot open a group while a's holds the write lock: no interleaved ids */
    cr_assert_eq(cm_db_unit_begin(b), -EBUSY);
    cr_assert_eq(cm_db_group_commit(a), 0);
    cr_assert_eq(cm_db_unit_begin(b), 0);
    cr_assert_eq(add(b, "b1"), 2);
    cr_assert_eq(cm_db_unit_end(b), 0);
    cr_assert_eq(cm_db_group_commit(b), 0);
    int64_t head;
    cr_assert_eq(cm_outbox_head(a, &head), 0);
    cr_assert_eq(head, 2);
    cm_db_close(a);
    cm_db_close(b);
}

Test(outbox, pruning_is_bounded_and_keeps_the_newest)
{
    cm_db_t *db;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, migs, 1, &db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    for (int i = 0; i < 5; i++)
        add(db, "e");
    /* a cutoff in the future: everything is old; at most 2 per call, never the newest */
    cr_assert_eq(cm_outbox_prune(db, "9999-12-31T23:59:59.999Z", 2), 2);
    cr_assert_eq(cm_outbox_prune(db, "9999-12-31T23:59:59.999Z", 10), 2);
    cr_assert_eq(cm_outbox_prune(db, "9999-12-31T23:59:59.999Z", 10), 0);
    /* a cutoff in the past: nothing is old */
    cr_assert_eq(add(db, "next"), 6, "ids go on after the kept newest");
    cr_assert_eq(cm_outbox_prune(db, "2000-01-01T00:00:00.000Z", 10), 0);
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);
    cm_buf_t out = {0};
    int64_t last;
    int n;
    cr_assert_eq(cm_outbox_page(db, 0, 10, &out, &last, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(last, 6);
    cm_buf_free(&out);
    cm_db_close(db);
}
