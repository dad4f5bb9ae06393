/* tests/unit/test_db.c: store/db on real SQLite files in a fresh temp directory.
 * Covers migrations, the statement cache, error mapping, locking and durability. */
#include "../common/mounts.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/db.h"

static char dir[64];
static char path[PATH_MAX];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cmesh-test-db-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
}

/* Removes the db, -wal and -shm files, then the directory. */
static void teardown(void)
{
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
TestSuite(db, .init = setup, .fini = teardown, .timeout = 30);

static const cm_migration_t M[] = {
    {"CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
     " email TEXT NOT NULL UNIQUE);",
     NULL},
    {"CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, extra TEXT);", NULL},
    {"CREATE INDEX notes_body ON notes(body);", NULL},
};

static cm_db_t *open_ok(int n)
{
    cm_db_t *db = NULL;
    int rc = cm_db_open(path, CM_DB_SYNC_NORMAL, M, n, &db);
    cr_assert_eq(rc, 0, "cm_db_open: %d", rc);
    cr_assert_not_null(db);
    return db;
}

static int64_t query_int(cm_db_t *db, const char *sql)
{
    cm_stmt_t *st = cm_db_stmt(db, sql);
    cr_assert_not_null(st);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    int64_t v = cm_stmt_int(st, 0);
    cm_stmt_reset(st);
    return v;
}

static const char SQL_VERSION[] = "PRAGMA user_version";
static const char SQL_INSERT[] = "INSERT INTO users(name, email) VALUES (?, ?) RETURNING id";
static const char SQL_COUNT[] = "SELECT count(*) FROM users";
static const char SQL_TABLES[] = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                 " AND name IN ('users', 'notes', 'tags')";

static int insert_user(cm_db_t *db, const char *name, const char *email, int64_t *id)
{
    cm_stmt_t *st = cm_db_stmt(db, SQL_INSERT);
    cr_assert_not_null(st);
    cr_assert_eq(cm_stmt_bind_text(st, 1, name, strlen(name)), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, email, strlen(email)), 0);
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW && id)
        *id = cm_stmt_int(st, 0);
    cm_stmt_reset(st);
    return rc;
}

Test(db, migrations_apply_once_and_record_version)
{
    cm_db_t *db = open_ok(2);
    cr_assert_eq(query_int(db, SQL_VERSION), 2);
    cr_assert_eq(query_int(db, SQL_TABLES), 2);
    cm_db_close(db);

    /* Same list again: the CREATE TABLEs would fail if they ran a second time. */
    db = open_ok(2);
    cr_assert_eq(query_int(db, SQL_VERSION), 2);
    cm_db_close(db);
}

Test(db, open_sets_wal_and_foreign_keys)
{
    cm_db_t *db = open_ok(1);
    cm_stmt_t *st = cm_db_stmt(db, "PRAGMA journal_mode");
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_str_eq(cm_stmt_text(st, 0, NULL), "wal");
    cm_stmt_reset(st);
    cr_assert_eq(query_int(db, "PRAGMA foreign_keys"), 1);
    cr_assert_eq(query_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
    cm_db_close(db);

    db = NULL;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_FULL, M, 1, &db), 0);
    cr_assert_eq(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
    cm_db_close(db);
}

Test(db, reopen_applies_only_new_steps)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(query_int(db, SQL_VERSION), 1);
    int64_t id = 0;
    cr_assert_eq(insert_user(db, "a", "a@x.io", &id), CM_DB_ROW);
    cm_db_close(db);

    db = open_ok(3);
    cr_assert_eq(query_int(db, SQL_VERSION), 3);
    cr_assert_eq(query_int(db, SQL_TABLES), 2);
    cr_assert_eq(query_int(db, SQL_COUNT), 1, "step 1 re-ran and lost the row");
    cm_db_close(db);
}

Test(db, failing_migration_returns_einval_and_leaves_version_unchanged)
{
    cm_db_t *db = open_ok(1);
    cm_db_close(db);

    const cm_migration_t bad[] = {
        M[0],
        {"CREATE TABLE tags(id INTEGER PRIMARY KEY);", NULL},
        {"CREATE TABLE broken(;", NULL},
    };
    db = (cm_db_t *)1;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, bad, 3, &db), -EINVAL);
    cr_assert_null(db);

    db = open_ok(1);
    cr_assert_eq(query_int(db, SQL_VERSION), 1);
    /* Step 2 succeeded on its own but shares the failed transaction. */
    cr_assert_eq(query_int(db, SQL_TABLES), 1, "step 2 was kept without step 3");
    cm_db_close(db);
}

Test(db, open_refuses_a_schema_newer_than_the_binary)
{
    cm_db_t *db = open_ok(3);
    cm_db_close(db);
    db = (cm_db_t *)1;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, M, 2, &db), -EINVAL);
    cr_assert_null(db);
}

Test(db, open_in_missing_directory_returns_eio)
{
    char bad[128];
    snprintf(bad, sizeof bad, "%s/no/such/dir.db", dir);
    cm_db_t *db = (cm_db_t *)1;
    cr_assert_eq(cm_db_open(bad, CM_DB_SYNC_NORMAL, M, 1, &db), -EIO);
    cr_assert_null(db);
}

Test(db, concurrent_first_opens_migrate_once)
{
    enum { N = 6 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            cm_db_t *db = NULL;
            int rc = cm_db_open(path, CM_DB_SYNC_NORMAL, M, 3, &db);
            cm_db_close(db);
            _exit(rc == 0 ? 0 : 10 + (-rc & 0x7f));
        }
    }
    for (int i = 0; i < N; i++) {
        int status = 0;
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_assert(WIFEXITED(status));
        cr_expect_eq(WEXITSTATUS(status), 0, "child %d failed to open", i);
    }
    cm_db_t *db = open_ok(3);
    cr_assert_eq(query_int(db, SQL_VERSION), 3);
    cm_db_close(db);
}

Test(db, insert_returning_gives_the_new_id)
{
    cm_db_t *db = open_ok(1);
    int64_t a = 0, b = 0;
    cr_assert_eq(insert_user(db, "a", "a@x.io", &a), CM_DB_ROW);
    cr_assert_eq(insert_user(db, "b", "b@x.io", &b), CM_DB_ROW);
    cr_assert_eq(a, 1);
    cr_assert_eq(b, 2);
    cr_assert_eq(cm_db_changes(db), 1);
    cm_db_close(db);
}

Test(db, unique_violation_returns_eexist)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(insert_user(db, "b", "a@x.io", NULL), -EEXIST);
    /* The statement is usable again after the failure. */
    cr_assert_eq(insert_user(db, "b", "b@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(query_int(db, SQL_COUNT), 2);
    cm_db_close(db);
}

Test(db, not_null_violation_returns_eexist)
{
    cm_db_t *db = open_ok(1);
    cm_stmt_t *st = cm_db_stmt(db, SQL_INSERT);
    cr_assert_eq(cm_stmt_bind_null(st, 1), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, "a@x.io", 6), 0);
    cr_assert_eq(cm_stmt_step(st), -EEXIST);
    cm_db_close(db);
}

Test(db, second_connection_blocked_by_begin_immediate_gets_ebusy)
{
    cm_db_t *a = open_ok(1);
    cm_db_t *b = open_ok(1);
    cm_db_set_busy_timeout(b, 10);

    cr_assert_eq(cm_db_begin(a), 0);
    cr_assert_eq(cm_db_begin(b), -EBUSY);
    cr_assert_eq(insert_user(b, "b", "b@x.io", NULL), -EBUSY);
    /* Readers still see the last committed state under WAL. */
    cr_assert_eq(query_int(b, SQL_COUNT), 0);

    cm_db_rollback(a);
    cr_assert_eq(cm_db_begin(b), 0);
    cr_assert_eq(insert_user(b, "b", "b@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_commit(b), 0);
    cm_db_close(a);
    cm_db_close(b);
}

Test(db, committed_rows_survive_close_and_reopen)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(insert_user(db, "b", "b@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_commit(db), 0);
    cm_db_close(db);

    db = open_ok(1);
    cr_assert_eq(query_int(db, SQL_COUNT), 2);
    cm_db_close(db);
}

Test(db, rollback_discards_the_transaction)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(insert_user(db, "b", "b@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(query_int(db, SQL_COUNT), 2);
    cm_db_rollback(db);
    cr_assert_eq(query_int(db, SQL_COUNT), 1);
    cm_db_close(db);

    db = open_ok(1);
    cr_assert_eq(query_int(db, SQL_COUNT), 1);
    cm_db_close(db);
}

Test(db, rollback_without_transaction_is_a_no_op)
{
    cm_db_t *db = open_ok(1);
    cm_db_rollback(db);
    cr_assert_eq(cm_db_begin(db), 0);
    cr_assert_eq(cm_db_commit(db), 0);
    cm_db_rollback(db);
    cm_db_close(db);
}

Test(db, commit_succeeds_with_a_returning_row_left_unread)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(cm_db_begin(db), 0);
    cm_stmt_t *st = cm_db_stmt(db, SQL_INSERT);
    cr_assert_eq(cm_stmt_bind_text(st, 1, "a", 1), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, "a@x.io", 6), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_eq(cm_stmt_int(st, 0), 1);
    /* No reset and no step to DONE: commit must still go through. */
    cr_assert_eq(cm_db_commit(db), 0);
    cm_db_close(db);

    db = open_ok(1);
    cr_assert_eq(query_int(db, SQL_COUNT), 1);
    cm_db_close(db);
}

Test(db, cached_statement_is_returned_reset_with_bindings_cleared)
{
    static const char sql[] = "SELECT ?";
    cm_db_t *db = open_ok(1);
    cm_stmt_t *st = cm_db_stmt(db, sql);
    cr_assert_eq(cm_stmt_bind_int(st, 1, 42), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_eq(cm_stmt_int(st, 0), 42);

    /* Left mid-result on purpose. */
    cm_stmt_t *again = cm_db_stmt(db, sql);
    cr_assert_eq(again, st, "the same literal must give the cached statement");
    cr_assert_eq(cm_stmt_step(again), CM_DB_ROW);
    cr_assert(cm_stmt_is_null(again, 0), "binding from the previous use survived");
    cm_db_close(db);
}

Test(db, cached_statement_restarts_an_unfinished_query)
{
    static const char sql[] = "SELECT id FROM users ORDER BY id";
    cm_db_t *db = open_ok(1);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(insert_user(db, "b", "b@x.io", NULL), CM_DB_ROW);
    cm_stmt_t *st = cm_db_stmt(db, sql);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_eq(cm_stmt_int(st, 0), 2);
    st = cm_db_stmt(db, sql);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_eq(cm_stmt_int(st, 0), 1);
    cm_db_close(db);
}

Test(db, many_statements_stay_cached_separately)
{
    /* More than the initial cache size, so the table grows and rehashes. */
    enum { N = 80 };
    static char sql[N][32];
    cm_stmt_t *st[N];
    cm_db_t *db = open_ok(1);
    for (int i = 0; i < N; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
        st[i] = cm_db_stmt(db, sql[i]);
        cr_assert_not_null(st[i]);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(cm_db_stmt(db, sql[i]), st[i]);
        cr_assert_eq(cm_stmt_step(st[i]), CM_DB_ROW);
        cr_assert_eq(cm_stmt_int(st[i], 0), i);
    }
    cm_db_close(db);
}

Test(db, bad_sql_gives_null_statement)
{
    cm_db_t *db = open_ok(1);
    cr_assert_null(cm_db_stmt(db, "SELEC nothing"));
    cr_assert_null(cm_db_stmt(db, "SELECT * FROM no_such_table"));
    cm_db_close(db);
}

Test(db, bind_out_of_range_returns_einval)
{
    cm_db_t *db = open_ok(1);
    cm_stmt_t *st = cm_db_stmt(db, "SELECT ?");
    cr_assert_eq(cm_stmt_bind_int(st, 2, 1), -EINVAL);
    cr_assert_eq(cm_stmt_bind_text(st, 0, "x", 1), -EINVAL);
    cm_db_close(db);
}

Test(db, text_columns_and_nulls_round_trip)
{
    static const char ins[] = "INSERT INTO notes(id, body, extra) VALUES (?, ?, ?)";
    static const char sel[] = "SELECT body, extra FROM notes WHERE id = ?";
    cm_db_t *db = open_ok(2);
    cm_stmt_t *st = cm_db_stmt(db, ins);
    /* Only the first 5 bytes are bound: the length counts, not a NUL. */
    const char *src = "héllo, world";
    cr_assert_eq(cm_stmt_bind_int(st, 1, 7), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, src, 6), 0);
    cr_assert_eq(cm_stmt_bind_null(st, 3), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);
    cr_assert_eq(cm_db_changes(db), 1);

    st = cm_db_stmt(db, sel);
    cr_assert_eq(cm_stmt_bind_int(st, 1, 7), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    size_t len = 99;
    const char *body = cm_stmt_text(st, 0, &len);
    cr_assert_eq(len, 6);
    cr_assert_eq(memcmp(body, "h\xc3\xa9llo", 6), 0);
    cr_assert_eq(body[6], '\0');
    cr_assert_not(cm_stmt_is_null(st, 0));

    len = 99;
    cr_assert_null(cm_stmt_text(st, 1, &len));
    cr_assert_eq(len, 0);
    cr_assert(cm_stmt_is_null(st, 1));
    cr_assert_eq(cm_stmt_int(st, 1), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);

    /* Empty text is not NULL. */
    st = cm_db_stmt(db, ins);
    cr_assert_eq(cm_stmt_bind_int(st, 1, 8), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, "", 0), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);
    st = cm_db_stmt(db, sel);
    cr_assert_eq(cm_stmt_bind_int(st, 1, 8), 0);
    cr_assert_eq(cm_stmt_step(st), CM_DB_ROW);
    cr_assert_not(cm_stmt_is_null(st, 0));
    cr_assert_str_eq(cm_stmt_text(st, 0, &len), "");
    cr_assert(cm_stmt_is_null(st, 1), "unbound parameter must be NULL");
    cm_db_close(db);
}

Test(db, foreign_keys_are_enforced)
{
    const cm_migration_t fk[] = {
        M[0],
        {"CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL"
         " REFERENCES users(id));",
         NULL},
    };
    cm_db_t *db = NULL;
    cr_assert_eq(cm_db_open(path, CM_DB_SYNC_NORMAL, fk, 2, &db), 0);
    cm_stmt_t *st = cm_db_stmt(db, "INSERT INTO orders(user_id) VALUES (?)");
    cr_assert_eq(cm_stmt_bind_int(st, 1, 99), 0);
    cr_assert_eq(cm_stmt_step(st), -EEXIST);
    cm_db_close(db);
}

Test(db, close_null_is_a_no_op)
{
    cm_db_close(NULL);
}

/* ------------------------------------------------------------------------ */
/* Group commit: what a unit's answer may promise                           */
/* ------------------------------------------------------------------------ */

/* The big row's text: far more pages than the 8-page cache below holds, so SQLite has to
 * spill dirty pages to the WAL in the middle of the INSERT. */
#define BIG_ROW (256 * 1024)

static char tmpfs_dir[128];

static void tmpfs_teardown(void)
{
    if (tmpfs_dir[0]) {
        mounts_unmount(tmpfs_dir);
        rmdir(tmpfs_dir);
        tmpfs_dir[0] = '\0';
    }
    teardown();
}

/* A small tmpfs inside the test's directory with the database on it; skips the test
 * when this machine lets it mount nothing. */
static void open_on_tmpfs(cm_db_t **db)
{
    snprintf(tmpfs_dir, sizeof tmpfs_dir, "%s/fs", dir);
    cr_assert_eq(mkdir(tmpfs_dir, 0755), 0);
    int err = mounts_tmpfs(tmpfs_dir, 1024 * 1024);
    if (err < 0)
        cr_skip_test("cannot mount a tmpfs here (%s): needs root or user namespaces",
                     strerror(-err));
    snprintf(path, sizeof path, "%s/t.db", tmpfs_dir);
    *db = open_ok(1);
    cm_stmt_t *st = cm_db_stmt(*db, "PRAGMA cache_size=8"); /* pages */
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);
}

static int insert_big(cm_db_t *db, const char *email)
{
    static char big[BIG_ROW];
    memset(big, 'x', sizeof big);
    cm_stmt_t *st = cm_db_stmt(db, SQL_INSERT);
    cr_assert_not_null(st);
    cr_assert_eq(cm_stmt_bind_text(st, 1, big, sizeof big), 0);
    cr_assert_eq(cm_stmt_bind_text(st, 2, email, strlen(email)), 0);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    return rc;
}

Test(db, group_sqlite_rolled_back_mid_statement_is_lost_and_its_commit_fails,
     .fini = tmpfs_teardown)
{
    cm_db_t *db;
    open_on_tmpfs(&db);
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof filler, "%s/filler", tmpfs_dir);
    cr_assert_gt(mounts_fill(filler), 0);

    /* unit 1 fits in the cache: it is kept in the group, nothing written yet */
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    /* unit 2 spills to the WAL mid-INSERT: the disk is full, SQLite rolls the whole
     * transaction back, unit 1 included */
    cr_assert_eq(cm_db_unit_begin(db), 0);
    int rc = insert_big(db, "big@x.io");
    cr_assert(rc == -ENOSPC || rc == -EIO, "the spill failed with %d", rc);
    cr_assert_eq(cm_db_in_group(db), 0, "SQLite ended the group; it must be seen as lost");
    cr_assert_eq(cm_db_unit_undo(db), -EIO);
    /* a later unit of the same batch must neither join nor start a transaction, and no
     * statement may run in autocommit meanwhile */
    cr_assert_lt(cm_db_unit_begin(db), 0);
    cr_assert_lt(insert_user(db, "c", "c@x.io", NULL), 0);
    /* the group's answers (unit 1's 2xx) must not go out */
    cr_assert_lt(cm_db_group_commit(db), 0);

    /* space again: nothing of the lost group is there, and the next group works */
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(query_int(db, SQL_COUNT), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "d", "d@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);
    cr_assert_eq(query_int(db, SQL_COUNT), 1);
    cm_db_close(db);
}

Test(db, group_whose_last_unit_spills_on_a_full_disk_fails_its_commit, .fini = tmpfs_teardown)
{
    cm_db_t *db;
    open_on_tmpfs(&db);
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof filler, "%s/filler", tmpfs_dir);
    cr_assert_gt(mounts_fill(filler), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_lt(insert_big(db, "big@x.io"), 0);
    cm_db_unit_undo(db);
    /* no unit after it: the commit alone must notice that the group is gone, or unit
     * 1's client hears 201 for a row that was rolled back */
    cr_assert_lt(cm_db_group_commit(db), 0);
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(query_int(db, SQL_COUNT), 0);
    cm_db_close(db);
}

Test(db, group_whose_commit_hits_a_full_disk_stores_nothing_and_ends, .fini = tmpfs_teardown)
{
    cm_db_t *db;
    open_on_tmpfs(&db);
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof filler, "%s/filler", tmpfs_dir);
    cr_assert_gt(mounts_fill(filler), 0);
    cm_stmt_t *st = cm_db_stmt(db, "PRAGMA cache_size=2000");
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);
    for (int i = 0; i < 3; i++) {
        char email[32];
        snprintf(email, sizeof email, "big%d@x.io", i);
        cr_assert_eq(cm_db_unit_begin(db), 0);
        cr_assert_eq(insert_big(db, email), CM_DB_ROW);
        cr_assert_eq(cm_db_unit_end(db), 0);
    }
    cr_assert_lt(cm_db_group_commit(db), 0);
    cr_assert_eq(cm_db_in_group(db), 0, "a failed commit must not leave the transaction open");
    cr_assert_eq(unlink(filler), 0);
    /* another connection can write at once: no lock outlived the group */
    cm_db_t *other = open_ok(1);
    cm_db_set_busy_timeout(other, 0);
    cr_assert_eq(cm_db_begin(other), 0);
    cr_assert_eq(query_int(other, SQL_COUNT), 0);
    cr_assert_eq(cm_db_commit(other), 0);
    cm_db_close(other);
    cm_db_close(db);
}

Test(db, unit_that_cannot_be_undone_loses_the_whole_group)
{
    cm_db_t *db = open_ok(1);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    /* a unit whose savepoint is gone (here: released by hand) cannot be taken back */
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "b", "b@x.io", NULL), CM_DB_ROW);
    cm_stmt_t *st = cm_db_stmt(db, "RELEASE unit");
    cr_assert_eq(cm_stmt_step(st), CM_DB_DONE);
    cr_assert_eq(cm_db_unit_undo(db), -EIO);
    cr_assert_lt(cm_db_group_commit(db), 0);
    cr_assert_eq(query_int(db, SQL_COUNT), 0, "neither unit may be stored");
    cm_db_close(db);
}

Test(db, reader_sees_only_committed_data_while_a_group_is_open)
{
    cm_db_t *db = open_ok(1);
    cm_db_t *rdb = NULL;
    cr_assert_eq(cm_db_open_reader(path, &rdb), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_read_begin(rdb), 0);
    cr_assert_eq(query_int(rdb, SQL_COUNT), 0, "a read saw a write that is not committed");
    cr_assert_eq(cm_db_group_commit(rdb), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);
    cr_assert_eq(cm_db_read_begin(rdb), 0);
    cr_assert_eq(query_int(rdb, SQL_COUNT), 1);
    cr_assert_eq(cm_db_group_commit(rdb), 0);
    /* and it never writes */
    cr_assert_lt(insert_user(rdb, "b", "b@x.io", NULL), 0);
    cm_db_close(rdb);
    cm_db_close(db);
}

Test(db, commit_into_a_deleted_file_is_refused_and_named_as_the_write_problem)
{
    cm_db_t *db = open_ok(1);
    cr_assert_null(cm_db_write_problem(db));
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(insert_user(db, "a", "a@x.io", NULL), CM_DB_ROW);
    cr_assert_eq(cm_db_unit_end(db), 0);
    /* the file vanishes under the open connection: a COMMIT would succeed into an
     * unlinked inode that nobody will ever open again */
    teardown();
    cr_assert_eq(cm_db_group_commit(db), -ESTALE);
    cr_assert_eq(cm_db_in_group(db), 0);
    const char *why = cm_db_write_problem(db);
    cr_assert(why && strstr(why, "moved or deleted"), "write problem: %s", why ? why : "none");
    cm_db_close(db);
}

/* cm_db_next_id on SQLite: AUTOINCREMENT's counter, so an id once stored is never handed
 * out again, even after its row is deleted; a deferred INSERT (cm_stmt_defer) runs at
 * once here and reports its own error. */
Test(db, next_id_never_hands_out_a_stored_id_again)
{
    static const char sql_named[] = "INSERT INTO users(id, name, email) VALUES (?, ?, ?)";
    static const char sql_delete[] = "DELETE FROM users WHERE id = 2";
    cm_db_t *db = open_ok(1);
    int64_t id = 0;
    cr_assert_eq(cm_db_unit_begin(db), 0);
    for (int i = 1; i <= 2; i++) {
        cr_assert_eq(cm_db_next_id(db, "users", &id), 0);
        cr_assert_eq(id, i, "an empty table starts at 1, then counts on in the group");
        cm_stmt_t *st = cm_db_stmt(db, sql_named);
        cm_stmt_bind_int(st, 1, id);
        cm_stmt_bind_text(st, 2, "N", 1);
        cm_stmt_bind_text(st, 3, i == 1 ? "a@x" : "b@x", 3);
        cr_assert_eq(cm_stmt_defer(st), 0);
    }
    cr_assert_eq(cm_db_unit_end(db), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);
    cr_assert_eq(cm_db_unit_begin(db), 0);
    cr_assert_eq(cm_stmt_defer(cm_db_stmt(db, sql_delete)), 0);
    cr_assert_eq(cm_db_next_id(db, "users", &id), 0);
    cr_assert_eq(id, 3, "the deleted row's id is not reused");
    cm_stmt_t *st = cm_db_stmt(db, sql_named);
    cm_stmt_bind_int(st, 1, id);
    cm_stmt_bind_text(st, 2, "N", 1);
    cm_stmt_bind_text(st, 3, "a@x", 3);
    cr_assert_eq(cm_stmt_defer(st), -EEXIST, "run at once: its own error");
    cr_assert_eq(cm_db_unit_undo(db), 0);
    cr_assert_eq(cm_db_group_commit(db), 0);
    cr_assert_eq(query_int(db, SQL_COUNT), 2);
    cm_db_close(db);
}
