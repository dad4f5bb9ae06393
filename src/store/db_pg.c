/* store/db_pg.c: the PostgreSQL backend of store/db.h (libpq), through db_int.h's table.
 *
 * One cm_db_t is one libpq connection. Statements are prepared once per connection
 * (`?` rewritten to `$n`), cached by the address of their SQL literal, and prepared
 * again after a reconnect. Parameters and results go as text.
 *
 * Round trips: commands go out in libpq's pipeline mode. A statement whose rows the caller
 * reads is one round trip (one write, one sync) that also carries what is due before it:
 * the write group's BEGIN, advisory lock and xid, the RELEASE of the unit before and the
 * SAVEPOINT of this one, a read group's BEGIN, its prepare on first use, and every
 * statement deferred since (cm_stmt_defer: queued, not waited for). The write group's
 * COMMIT goes the same way, behind what is still queued. So a group of users creates is
 * two round trips: BEGIN, the lock and the first id (cm_db_next_id), then every unit's
 * INSERTs with the COMMIT. An error of a command sent ahead is mapped as it would have
 * been had it run alone (the server skips the rest of the pipeline). A read group's
 * COMMIT is sent without waiting; whatever talks to the server next reads its answer
 * first.
 *
 * Transactions keep the store's contract (ARCHITECTURE.md):
 * - the write group is one transaction, units are savepoints; BEGIN also takes a
 *   transaction-scoped advisory lock on the service's schema key, so write groups of
 *   every instance run one at a time as SQLite's BEGIN IMMEDIATE does, and the
 *   handlers' read-check-write sequences (If-Match, Idempotency-Key, order status)
 *   cannot race another instance;
 * - a statement that fails outside a savepoint aborts PostgreSQL's transaction, and a
 *   lost connection ends it: either makes the group lost (every held answer 503);
 * - an optimistic group (cm_db_optimistic) has no savepoints and does not wait for its
 *   deferred statements: a failure in it (a statement's, a deferred one's, a unit taken
 *   back after it wrote) loses it, and its commit says -EAGAIN (nothing stored), for
 *   the caller to run its units again the plain way;
 * - COMMIT is checked by its command tag (an aborted transaction "commits" as ROLLBACK);
 *   when the connection breaks with the COMMIT sent, the server is asked on a new
 *   connection what became of the transaction (its id is learnt with the lock), for up
 *   to PG_DOUBT_MS: committed, aborted, or the outcome is unknown (-ETIMEDOUT);
 * - a read group is BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY: one committed
 *   snapshot for all reads of a loop iteration, as on SQLite.
 * A lost connection is reopened on a later call, no sooner than a jittered, bounded
 * backoff (50 ms doubling to 2 s); until then every call fails with -EIO (503).
 *
 * The calls block their thread: on a worker they run on its store threads (service/
 * batch.c), never on its loop, whose reads go through the replay connections at the end
 * of this file (store/pgasync.h). Every wait is bounded (an in-doubt COMMIT is asked
 * about for PG_DOUBT_MS): a reconnect runs without blocking (at most 50 ms of it per call,
 * given up after 2 s), TCP keepalives and tcp_user_timeout for a dead network,
 * lock_timeout 5 s, statement_timeout 10 s (503). */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "store/db.h"
#include "store/db_int.h"
#include "store/pgasync.h"

#define PG_CONNECT_TIMEOUT_MS 2000 /* ms: a connect (the whole handshake) given up after */
#define PG_CONNECT_WAIT_MS    50   /* ms: the most one call waits for a reconnect's handshake */
#define PG_LOCK_TIMEOUT_MS    5000 /* ms: like SQLite's busy timeout, then -EBUSY */
/* ms: the longest a worker's loop waits for one statement (then 503); with the TCP
 * keepalives and user timeout below, also how long a dead network can hold it */
#define PG_STATEMENT_TIMEOUT_MS 10000
#define PG_BACKOFF_MIN_MS       50
#define PG_BACKOFF_MAX_MS       2000
#define PG_PROBE_MS             500 /* ms between /readyz round trips on an idle connection */
/* ms: how long a COMMIT whose answer was lost is asked after (pg_xact_status) before
 * its outcome is reported unknown. The worker waits meanwhile, so its held answers wait
 * this long plus one statement: 5 s keeps them under the 10 s clients commonly give up
 * after (the test harness's curl, and the statement timeout). */
#define PG_DOUBT_MS      5000
#define PG_DOUBT_POLL_MS 50 /* ms between asks while the old backend still runs it */

typedef struct pg_db pg_db_t;

typedef struct pg_param {
    char *buf; /* NUL-terminated text, owned */
    size_t cap;
    int null;
} pg_param_t;

typedef struct pg_stmt {
    cm_stmt_t base; /* first: the backend table */
    pg_db_t *db;
    const char *sql; /* the key: the caller's literal, compared by address */
    char *text;      /* sql with `?` as `$n` */
    char name[24];
    unsigned gen; /* the connection generation it is prepared on; 0: none */
    int nparams;
    pg_param_t *params;
    const char **values; /* handed to PQexecPrepared */
    PGresult *res;
    int borrowed;   /* res is a replay's (store/pgasync.h), not this statement's to clear */
    int writes;     /* not a SELECT: taking its unit back needs a savepoint */
    int row, nrows; /* the current row; nrows of res */
} pg_stmt_t;

typedef enum { TX_NONE, TX_READ, TX_WRITE, TX_LOST } tx_state_t;

/* What a command queued in the pipeline is, for how its answer is read. */
typedef enum {
    AH_DUE,     /* transaction control due before a statement (BEGIN, RELEASE, SAVEPOINT) */
    AH_LOCK,    /* the write lock, which also returns the transaction's id */
    AH_PREPARE, /* a statement's prepare, on its first use on this connection */
    AH_DEFER,   /* a deferred statement (cm_stmt_defer): nobody waits for it */
    AH_STMT,    /* the statement whose rows the caller steps through */
    AH_COMMIT,  /* the write group's COMMIT */
} ahead_kind_t;

/* A table's ids in the open write group (cm_db_next_id): the first is the identity's next
 * value, the rest are counted here, and the sequence is set to the last with the COMMIT. */
typedef struct pg_ids {
    const char *table; /* the caller's literal, compared by address; NULL: a free entry */
    int64_t first, last;
    int taken; /* in this group */
} pg_ids_t;

#define PG_ID_TABLES 4

typedef struct ahead {
    ahead_kind_t kind;
    const char *sql; /* without st: the command */
    struct pg_stmt *st;
} ahead_t;

struct pg_db {
    cm_db_t base;       /* first: the backend table */
    PGconn *conn;       /* NULL while disconnected */
    PGconn *connecting; /* a connect on its way (non-blocking), or NULL */
    PostgresPollingStatusType polling;
    uint64_t connect_by; /* ms, monotonic: the connect on its way is given up then */
    char *target;
    int reader;
    cm_db_sync_t sync;
    int64_t lock_key; /* the write groups' advisory lock: the service's schema */
    unsigned gen;     /* bumped at every connect: prepared statements belong to one */
    unsigned nextname;
    pg_stmt_t **stmts;
    size_t nstmts, cap;
    tx_state_t tx;
    int in_unit;
    int release_pending; /* a unit ended: its RELEASE goes with the next command */
    /* Commands sent ahead with the next statement (one round trip, pipeline mode): */
    int pend_open;      /* the write group's BEGIN and lock */
    int pend_savepoint; /* the unit's SAVEPOINT */
    int pend_read;      /* the read group's BEGIN */
    int async_commit;   /* a read group's COMMIT sent, its answer not read yet */
    ahead_t *ahead;     /* commands queued in the pipeline, their answers not read yet */
    int nahead, ahead_cap;
    int optimistic; /* cm_db_optimistic */
    int retry;      /* an optimistic group failed: its commit says -EAGAIN */
    int unit_sp;    /* the unit has a savepoint (or will, with its first statement) */
    int unit_ran;   /* a statement of the unit was sent */
    int unit_wrote; /* one that is not a SELECT changed rows, or may have (deferred) */
    pg_ids_t ids[PG_ID_TABLES];
    char lock_sql[160]; /* the write lock's SELECT, which also returns the two below */
    char started[48];   /* the server's start, learnt at BEGIN; "" unknown */
    char xid[32];       /* the write group's transaction id, learnt at BEGIN; "" unknown */
    int changes;
    int lock_timeout_ms;
    uint64_t retry_at; /* ms, monotonic: no connect before */
    unsigned backoff_ms;
    uint64_t probed_at;
    uint32_t rnd;
    int replay_db;       /* a replay database (store/pgasync.h): no connection of its own */
    cm_replay_t *replay; /* the replay its statements read, during a run */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* Connection: connect, loss, backoff                                       */
/* ------------------------------------------------------------------------ */

/* libpq's messages span lines (and end with one): one log line each, tabs as spaces. */
static const char *one_line(const char *msg, char *buf, size_t cap)
{
    size_t n = 0;
    for (const char *p = msg ? msg : ""; *p && n + 1 < cap; p++) {
        char c = *p == '\n' || *p == '\t' ? ' ' : *p;
        if (c == ' ' && (n == 0 || buf[n - 1] == ' '))
            continue;
        buf[n++] = c;
    }
    while (n && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    return buf;
}

static void note_loss(pg_db_t *db, const char *why)
{
    if (db->conn) {
        char line[512];
        cm_log_msg(CM_LOG_ERROR, "db: postgres connection lost: %s; reconnecting with backoff",
                   one_line(why, line, sizeof line));
        PQfinish(db->conn);
        db->conn = NULL;
    }
    if (db->tx == TX_WRITE)
        db->tx = TX_LOST;
    else if (db->tx == TX_READ)
        db->tx = TX_NONE;
    db->in_unit = 0;
    db->release_pending = 0;
    db->pend_open = db->pend_savepoint = db->pend_read = 0;
    db->async_commit = 0; /* its answer went with the connection: a read has nothing to lose */
    db->nahead = 0;       /* so did what was queued: the group it was in is lost */
}

static void schedule_retry(pg_db_t *db)
{
    unsigned b = db->backoff_ms ? db->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
    if (b > PG_BACKOFF_MAX_MS)
        b = PG_BACKOFF_MAX_MS;
    db->backoff_ms = b;
    db->rnd = db->rnd * 1103515245u + 12345u;
    /* half fixed, half jitter: instances that lost the server together spread out */
    db->retry_at = now_ms() + b / 2 + (db->rnd >> 8) % (b / 2 + 1);
}

static int exec_cmd(pg_db_t *db, const char *sql);
static int resolve_in_doubt(pg_db_t *db);
static void settle(pg_db_t *db);
static int flush_ahead(pg_db_t *db);
static void lose_group(pg_db_t *db);

static int session_setup(pg_db_t *db)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SET lock_timeout = %d; SET statement_timeout = %d%s",
             db->lock_timeout_ms, PG_STATEMENT_TIMEOUT_MS,
             db->reader ? "; SET default_transaction_read_only = on" : "");
    int rc = exec_cmd(db, sql);
    /* --sync full: a 2xx survives the server's power loss, whatever the server's default */
    if (rc == 0 && !db->reader && db->sync == CM_DB_SYNC_FULL)
        rc = exec_cmd(db, "SET synchronous_commit = on");
    return rc;
}

/* The server's notices (a WARNING before an immediate shutdown): one log line each,
 * not libpq's default stderr text. */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    char line[512];
    cm_log_msg(CM_LOG_WARN, "db: postgres says: %s", one_line(msg, line, sizeof line));
}

static void connect_failed(pg_db_t *db, int quiet, const char *why)
{
    char line[512];
    if (!quiet)
        cm_log_msg(CM_LOG_ERROR, "db: cannot connect to postgres: %s",
                   one_line(why, line, sizeof line));
    PQfinish(db->connecting);
    db->connecting = NULL;
    schedule_retry(db);
}

/* Starts a non-blocking connect (PQconnectStartParams): 0, or -EIO (logged unless quiet,
 * the backoff scheduled). */
static int connect_start(pg_db_t *db, int quiet, uint64_t now)
{
    const char *keys[] = {"application_name",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          NULL};
    const char *vals[] = {"cmesh", "5", "2", "3", "10000", db->target, NULL};
    db->connecting = PQconnectStartParams(keys, vals, 1);
    if (!db->connecting || PQstatus(db->connecting) == CONNECTION_BAD) {
        connect_failed(db, quiet,
                       db->connecting ? PQerrorMessage(db->connecting) : "out of memory");
        return -EIO;
    }
    db->polling = PGRES_POLLING_WRITING; /* as if PQconnectPoll had said so */
    db->connect_by = now + PG_CONNECT_TIMEOUT_MS;
    return 0;
}

/* 0 with a connection, or -EIO while the server is away (logged unless quiet). A new
 * connection is made without blocking (PQconnectStart/PQconnectPoll), waiting at most
 * wait_ms in this call: a handshake that takes longer goes on at the next call, which
 * answers -EIO (503) meanwhile, so a server that is slow to reach stalls the worker's loop
 * for wait_ms at a time, not for a whole connect timeout. (Host names are resolved by
 * libpq synchronously: give an address or a socket directory for a loop that never waits
 * on DNS.) */
static int ensure_conn(pg_db_t *db, int quiet, int wait_ms)
{
    if (db->conn)
        return 0;
    uint64_t now = now_ms();
    if (!db->connecting) {
        if (now < db->retry_at)
            return -EIO;
        if (connect_start(db, quiet, now) < 0)
            return -EIO;
    }
    uint64_t until = now + (uint64_t)wait_ms;
    while (db->polling != PGRES_POLLING_OK) {
        if (db->polling == PGRES_POLLING_FAILED) {
            connect_failed(db, quiet, PQerrorMessage(db->connecting));
            return -EIO;
        }
        now = now_ms();
        if (now >= db->connect_by) {
            connect_failed(db, quiet, "timed out");
            return -EIO;
        }
        struct pollfd p = {PQsocket(db->connecting),
                           db->polling == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int left = now < until ? (int)(until - now) : 0;
        int r = poll(&p, 1, left);
        if (r < 0 && errno != EINTR) {
            connect_failed(db, quiet, strerror(errno));
            return -EIO;
        }
        if (r == 0)
            return -EIO; /* still on its way: the next call goes on with it */
        if (r > 0)
            db->polling = PQconnectPoll(db->connecting);
    }
    PGconn *c = db->connecting;
    db->connecting = NULL;
    PQsetNoticeProcessor(c, on_notice, NULL);
    db->conn = c; /* tx stays as it is: a lost group is lost until group_commit says so */
    db->gen++;
    if (session_setup(db) < 0) {
        note_loss(db, "session setup failed");
        schedule_retry(db);
        return -EIO;
    }
    if (db->backoff_ms)
        cm_log_msg(CM_LOG_INFO, "db: postgres connection open again");
    db->backoff_ms = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Results: errors to -errno                                                */
/* ------------------------------------------------------------------------ */

/* Maps a result that is not OK. Constraint failures and lock timeouts are outcomes the
 * caller handles (409, 503), so only the rest is logged. A dead connection, or a server
 * going down (class 08, 57P0x), drops the connection: the group it held is lost. */
static int map_result(pg_db_t *db, PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        state = "";
    /* no SQLSTATE: libpq's own error (the server closed the socket before libpq marked the
     * connection bad): the connection cannot be trusted either */
    if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD || !*state ||
        strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
        note_loss(db, db->conn ? PQerrorMessage(db->conn) : "no connection");
        return -EIO;
    }
    if (strncmp(state, "23", 2) == 0)
        return -EEXIST;
    /* lock or statement timeout, serialization failure, deadlock: busy, retry */
    if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0)
        return -EBUSY;
    char line[512];
    const char *msg = one_line(PQresultErrorMessage(res), line, sizeof line);
    if (strcmp(state, "53100") == 0) {
        cm_log_msg(CM_LOG_ERROR, "db: %s failed: %s; free disk space", what, msg);
        return -ENOSPC;
    }
    if (strcmp(state, "25006") == 0) {
        cm_log_msg(CM_LOG_ERROR, "db: %s failed: %s", what, msg);
        return -EROFS;
    }
    cm_log_msg(CM_LOG_ERROR, "db: %s failed: [%s] %s", what, state, msg);
    return -EIO;
}

/* After a failed statement: outside a savepoint PostgreSQL aborted the write group (it
 * can only roll back now), a read group is ended so the next read opens a new one. */
static void after_error(pg_db_t *db)
{
    if (!db->conn)
        return;
    if (db->tx == TX_WRITE && (!db->in_unit || !db->unit_sp)) {
        if (db->in_unit) /* optimistic: no savepoint to go back to; the group runs again */
            db->retry = 1;
        else
            cm_log_msg(CM_LOG_ERROR,
                       "db: a statement failed outside a unit: the write group is lost");
        PQclear(PQexec(db->conn, "ROLLBACK"));
        db->tx = TX_LOST;
    } else if (db->tx == TX_READ) {
        PQclear(PQexec(db->conn, "ROLLBACK"));
        db->tx = TX_NONE;
    }
}

/* Runs SQL without parameters (transaction control, session settings; several
 * statements in one round trip). When val is not NULL, the last column of the first
 * row any statement returned is copied there ("" if none). The first error counts:
 * PostgreSQL skips the statements after it. */
static int exec_multi(pg_db_t *db, const char *sql, char *val, size_t cap)
{
    if (val)
        *val = '\0';
    settle(db);
    if (!db->conn)
        return -EIO;
    if (!PQsendQuery(db->conn, sql))
        return map_result(db, NULL, sql);
    int rc = 0;
    PGresult *res;
    while (db->conn && (res = PQgetResult(db->conn))) {
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_TUPLES_OK && val && !*val && PQntuples(res) > 0 && PQnfields(res) > 0)
            snprintf(val, cap, "%s", PQgetvalue(res, 0, PQnfields(res) - 1));
        else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY && rc == 0)
            rc = map_result(db, res, sql); /* may drop the connection: the loop ends */
        PQclear(res);
    }
    return rc;
}

static int exec_cmd(pg_db_t *db, const char *sql)
{
    return exec_multi(db, sql, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Open: migrations under the advisory lock                                 */
/* ------------------------------------------------------------------------ */

/* FNV-1a of the first migration: the same schema (one service) gets the same lock in
 * every instance, another service's database on the same server another one. */
static int64_t schema_key(const cm_migration_t *m, int n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    const char *s = n > 0 ? m[0].sql : "cmesh";
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return (int64_t)(h >> 1);
}

static int migrate(pg_db_t *db, const cm_migration_t *m, int n)
{
    char lock[192];
    /* a long migration (an index on a big table) may take its time, and an instance
     * starting beside the one that runs it waits for it: no timeouts here */
    snprintf(lock, sizeof lock,
             "BEGIN; SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0;"
             " SELECT pg_advisory_xact_lock(%" PRId64 ")",
             db->lock_key);
    int rc = exec_cmd(db, lock);
    if (rc < 0)
        return rc;
    /* under the lock: the instance that waited sees the version the first one wrote */
    rc = exec_cmd(db, "CREATE TABLE IF NOT EXISTS cmesh_schema(version INTEGER NOT NULL);"
                      " INSERT INTO cmesh_schema SELECT 0 WHERE NOT EXISTS"
                      " (SELECT 1 FROM cmesh_schema)");
    int version = 0;
    if (rc == 0) {
        PGresult *res = PQexec(db->conn, "SELECT version FROM cmesh_schema");
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            version = atoi(PQgetvalue(res, 0, 0));
        else
            rc = map_result(db, res, "reading the schema version");
        PQclear(res);
    }
    if (rc == 0 && version > n) {
        cm_log_msg(CM_LOG_ERROR,
                   "db: postgres schema version %d is newer than this binary's %d; upgrade cmesh",
                   version, n);
        rc = -EINVAL;
    }
    for (int i = version; rc == 0 && i < n; i++) {
        PGresult *res = PQexec(db->conn, m[i].pg ? m[i].pg : m[i].sql);
        char line[512];
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            cm_log_msg(CM_LOG_ERROR,
                       "db: postgres migration %d failed: %s; nothing of versions %d-%d applied",
                       i + 1, one_line(PQresultErrorMessage(res), line, sizeof line), version + 1,
                       n);
            rc = -EINVAL;
        }
        PQclear(res);
    }
    if (rc == 0 && version < n) {
        char sql[64];
        snprintf(sql, sizeof sql, "UPDATE cmesh_schema SET version = %d", n);
        rc = exec_cmd(db, sql);
    }
    if (rc == 0)
        return exec_cmd(db, "COMMIT");
    if (db->conn)
        PQclear(PQexec(db->conn, "ROLLBACK"));
    return rc;
}

static pg_db_t *db_new(const char *target, int reader)
{
    pg_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->base.ops = &cm_db_pg_ops;
    db->reader = reader;
    db->lock_timeout_ms = PG_LOCK_TIMEOUT_MS;
    db->rnd = (uint32_t)now_ms() ^ (uint32_t)(uintptr_t)db;
    if (!(db->target = strdup(target))) {
        free(db);
        return NULL;
    }
    return db;
}

static void pg_close(cm_db_t *h);

static int pg_open(const char *target, cm_db_sync_t sync, const cm_migration_t *m, int n,
                   cm_db_t **out)
{
    *out = NULL;
    if (n < 0 || (n > 0 && !m))
        return -EINVAL;
    pg_db_t *db = db_new(target, 0);
    if (!db)
        return -ENOMEM;
    db->sync = sync;
    db->lock_key = schema_key(m, n);
    snprintf(db->lock_sql, sizeof db->lock_sql,
             "SELECT pg_advisory_xact_lock(%" PRId64 "), pg_postmaster_start_time()::text,"
             " pg_current_xact_id()::text",
             db->lock_key);
    int rc = ensure_conn(db, 0, PG_CONNECT_TIMEOUT_MS); /* at start: wait for it */
    if (rc == 0)
        rc = migrate(db, m, n);
    if (rc < 0) {
        pg_close(&db->base);
        return rc;
    }
    *out = &db->base;
    return 0;
}

static int pg_open_reader(const char *target, cm_db_t **out)
{
    *out = NULL;
    pg_db_t *db = db_new(target, 1);
    if (!db)
        return -ENOMEM;
    int rc = ensure_conn(db, 0, PG_CONNECT_TIMEOUT_MS);
    if (rc < 0) {
        pg_close(&db->base);
        return rc;
    }
    *out = &db->base;
    return 0;
}

static void stmt_free(pg_stmt_t *st)
{
    if (!st->borrowed)
        PQclear(st->res);
    for (int i = 0; i < st->nparams; i++)
        free(st->params[i].buf);
    free(st->params);
    free(st->values);
    free(st->text);
    free(st);
}

static void pg_close(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    for (size_t i = 0; i < db->nstmts; i++)
        stmt_free(db->stmts[i]);
    free(db->stmts);
    free(db->ahead);
    if (db->conn)
        PQfinish(db->conn);
    PQfinish(db->connecting);
    free(db->target);
    free(db);
}

/* Not ready while the server cannot be reached: a round trip on an idle connection
 * (at most every PG_PROBE_MS), a connect try (within the backoff) without one. */
static const char *pg_write_problem(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->conn && db->tx == TX_NONE && now_ms() - db->probed_at >= PG_PROBE_MS) {
        db->probed_at = now_ms();
        exec_cmd(db, "");
    }
    if (ensure_conn(db, 1, PG_CONNECT_WAIT_MS) < 0)
        return "the database server is unreachable";
    return NULL;
}

static void pg_set_busy_timeout(cm_db_t *h, int ms)
{
    pg_db_t *db = (pg_db_t *)h;
    db->lock_timeout_ms = ms < 0 ? 0 : ms;
    char sql[64];
    /* lock_timeout 0 waits for ever; the nearest "fail at once" is 1 ms */
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", ms <= 0 ? 1 : ms);
    if (db->conn)
        exec_cmd(db, sql);
}

/* ------------------------------------------------------------------------ */
/* Statements                                                               */
/* ------------------------------------------------------------------------ */

/* `?` → `$n`, outside quoted strings and identifiers; returns the count in *n. */
static char *rewrite(const char *sql, int *n)
{
    size_t len = strlen(sql);
    char *out = malloc(len * 4 + 1); /* "?" → "$999" at most */
    if (!out)
        return NULL;
    char *o = out;
    char quote = 0;
    *n = 0;
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '?') {
            o += sprintf(o, "$%d", ++*n);
            continue;
        }
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

static pg_stmt_t *stmt_new(pg_db_t *db, const char *sql)
{
    pg_stmt_t *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->base.ops = &cm_db_pg_ops;
    st->db = db;
    st->sql = sql;
    st->row = -1;
    st->writes = strncasecmp(sql + strspn(sql, " \n"), "SELECT", 6) != 0;
    snprintf(st->name, sizeof st->name, "cm%u", ++db->nextname);
    if (!(st->text = rewrite(sql, &st->nparams)))
        goto fail;
    if (st->nparams) {
        st->params = calloc((size_t)st->nparams, sizeof *st->params);
        st->values = calloc((size_t)st->nparams, sizeof *st->values);
        if (!st->params || !st->values)
            goto fail;
    }
    return st;
fail:
    stmt_free(st);
    return NULL;
}

static void stmt_reset(pg_stmt_t *st)
{
    if (!st->borrowed)
        PQclear(st->res);
    st->borrowed = 0;
    st->res = NULL;
    st->row = -1;
    st->nrows = 0;
}

static cm_stmt_t *pg_stmt(cm_db_t *h, const char *sql)
{
    pg_db_t *db = (pg_db_t *)h;
    pg_stmt_t *st = NULL;
    /* services use fewer than 32 statements: a scan of pointers beats hashing here */
    for (size_t i = 0; i < db->nstmts; i++)
        if (db->stmts[i]->sql == sql) {
            st = db->stmts[i];
            break;
        }
    if (!st) {
        if (db->nstmts == db->cap) {
            size_t cap = db->cap ? db->cap * 2 : 32;
            pg_stmt_t **s = realloc(db->stmts, cap * sizeof *s);
            if (!s)
                return NULL;
            db->stmts = s;
            db->cap = cap;
        }
        if (!(st = stmt_new(db, sql))) {
            cm_log_msg(CM_LOG_ERROR, "db: out of memory caching a statement");
            return NULL;
        }
        db->stmts[db->nstmts++] = st;
    }
    stmt_reset(st);
    for (int i = 0; i < st->nparams; i++)
        st->params[i].null = 1;
    return &st->base;
}

static int set_param(pg_stmt_t *st, int idx, const char *s, size_t len)
{
    if (idx < 1 || idx > st->nparams)
        return -EINVAL;
    pg_param_t *p = &st->params[idx - 1];
    if (len + 1 > p->cap) {
        size_t cap = len + 1 < 32 ? 32 : len + 1;
        char *b = realloc(p->buf, cap);
        if (!b)
            return -ENOMEM;
        p->buf = b;
        p->cap = cap;
    }
    if (len)
        memcpy(p->buf, s, len);
    p->buf[len] = '\0';
    p->null = 0;
    return 0;
}

static int pg_bind_int(cm_stmt_t *h, int idx, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    return set_param((pg_stmt_t *)h, idx, num, (size_t)n);
}

static int pg_bind_text(cm_stmt_t *h, int idx, const char *s, size_t len)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    if (!s) {
        if (idx < 1 || idx > st->nparams)
            return -EINVAL;
        st->params[idx - 1].null = 1;
        return 0;
    }
    /* text parameters end at their NUL, and PostgreSQL's text holds none */
    if (memchr(s, '\0', len))
        return -EINVAL;
    return set_param(st, idx, s, len);
}

static int pg_bind_null(cm_stmt_t *h, int idx)
{
    return pg_bind_text(h, idx, NULL, 0);
}

static const char READ_BEGIN[] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/* The next result of the pipeline, NULL when the connection broke (then, with no result
 * left to come, reading on would wait for ever). Each command's results end with a NULL,
 * read here too; a sync has none. */
static PGresult *next_result(pg_db_t *db, int sync)
{
    if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD)
        return NULL;
    PGresult *r = PQgetResult(db->conn);
    if (!r || sync)
        return r;
    PGresult *extra;
    while ((extra = PQgetResult(db->conn))) /* none for our single statements */
        PQclear(extra);
    return r;
}

/* Reads the answer of a read group's COMMIT sent ahead (pg_commit), if one is due.
 * A read-only transaction has nothing to lose: a failure is only logged (a lost
 * connection is noticed here). */
static void read_async(pg_db_t *db)
{
    if (!db->async_commit || !db->conn)
        return;
    db->async_commit = 0;
    PGresult *r = next_result(db, 0);
    PGresult *sync = r ? next_result(db, 1) : NULL;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK || !sync)
        map_result(db, r, "COMMIT of a read group");
    PQclear(r);
    PQclear(sync);
}

/* Before any other command: what was queued or sent ahead answered, out of pipeline
 * mode. */
static void settle(pg_db_t *db)
{
    if (db->nahead) {
        flush_ahead(db); /* a failure there is the group's */
        return;
    }
    if (!db->async_commit || !db->conn)
        return;
    read_async(db);
    if (db->conn && !PQexitPipelineMode(db->conn))
        note_loss(db, PQerrorMessage(db->conn));
}

/* ------------------------------------------------------------------------ */
/* The pipeline: commands sent ahead, answered in order                     */
/* ------------------------------------------------------------------------ */

/* Queues one command in the pipeline (pipeline mode; libpq writes it with the next sync,
 * or sooner when its buffer fills), to be answered in order by answer_ahead. A command
 * that cannot be queued costs the connection: what was queued before it is gone too. */
static int send_ahead(pg_db_t *db, ahead_kind_t kind, const char *sql, pg_stmt_t *st)
{
    if (db->nahead == db->ahead_cap) {
        int cap = db->ahead_cap ? db->ahead_cap * 2 : 16;
        ahead_t *a = realloc(db->ahead, sizeof *a * (size_t)cap);
        if (!a) {
            note_loss(db, "out of memory queueing a command");
            return -EIO;
        }
        db->ahead = a;
        db->ahead_cap = cap;
    }
    PGconn *c = db->conn;
    int ok = PQenterPipelineMode(c); /* 1 when in it already */
    if (ok && kind == AH_PREPARE) {
        ok = PQsendPrepare(c, st->name, st->text, st->nparams, NULL);
    } else if (ok && st) {
        for (int i = 0; i < st->nparams; i++)
            st->values[i] = st->params[i].null ? NULL : st->params[i].buf;
        ok = PQsendQueryPrepared(c, st->name, st->nparams, st->values, NULL, NULL, 0);
    } else if (ok) {
        ok = PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    }
    if (!ok) {
        note_loss(db, PQerrorMessage(c));
        return -EIO;
    }
    if (kind == AH_PREPARE)
        st->gen = db->gen; /* taken back if its answer is an error */
    db->ahead[db->nahead++] = (ahead_t){.kind = kind, .sql = sql, .st = st};
    return 0;
}

/* Queues st, prepared first on its first use on this connection. */
static int send_stmt(pg_db_t *db, pg_stmt_t *st, ahead_kind_t kind)
{
    if (db->in_unit) {
        db->unit_ran = 1;
        if (kind == AH_DEFER) /* how many rows it changed is not known: assume some */
            db->unit_wrote |= st->writes;
    }
    if (st->gen != db->gen && send_ahead(db, AH_PREPARE, NULL, st) < 0)
        return -EIO;
    return send_ahead(db, kind, NULL, st);
}

/* Queues what is due before the next command: a read group's BEGIN, the write group's
 * BEGIN and lock, the RELEASE of the unit before, the SAVEPOINT of this one. */
static int send_due(pg_db_t *db)
{
    int rc = 0;
    if (db->pend_read)
        rc = send_ahead(db, AH_DUE, READ_BEGIN, NULL);
    if (rc == 0 && db->pend_open && (rc = send_ahead(db, AH_DUE, "BEGIN", NULL)) == 0)
        rc = send_ahead(db, AH_LOCK, db->lock_sql, NULL);
    if (rc == 0 && db->release_pending)
        rc = send_ahead(db, AH_DUE, "RELEASE unit", NULL);
    if (rc == 0 && db->pend_savepoint)
        rc = send_ahead(db, AH_DUE, "SAVEPOINT unit", NULL);
    db->pend_read = db->pend_open = db->release_pending = db->pend_savepoint = 0;
    return rc;
}

/* Reads the answers of everything queued, in order, then the sync the caller sent after
 * them, and leaves pipeline mode. The last command's result goes to *last when last is
 * not NULL and nothing failed. Returns 0, -EIO when the connection broke (it is down), or
 * the first failure's error, mapped (the server skipped what followed it). A failure is
 * answered as the command would have been had it run alone: the caller's statement's
 * error ends a read group, or an optimistic write group (after_error); one of BEGIN, the
 * lock, RELEASE or SAVEPOINT ends the group; a deferred statement's loses the write group
 * (-EIO; optimistic, its commit then says -EAGAIN); the COMMIT's is the caller's. */
static int answer_ahead(pg_db_t *db, PGresult **last)
{
    int n = db->nahead, rc = 0, at = -1, lost = 0;
    db->nahead = 0;
    read_async(db); /* a read group's COMMIT, sent before these: its answer comes first */
    for (int i = 0; i < n && !lost; i++) {
        const ahead_t *a = &db->ahead[i];
        PGresult *r = next_result(db, 0);
        ExecStatusType s = PQresultStatus(r);
        if (!r) {
            lost = 1;
        } else if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            if (a->kind == AH_LOCK && PQntuples(r) == 1) {
                snprintf(db->started, sizeof db->started, "%s", PQgetvalue(r, 0, 1));
                snprintf(db->xid, sizeof db->xid, "%s", PQgetvalue(r, 0, 2));
            }
            if (i == n - 1 && last && at < 0) {
                *last = r;
                r = NULL;
            }
        } else {
            if (a->kind == AH_PREPARE)
                a->st->gen = 0; /* failed, or skipped after a failure: not prepared */
            if (at < 0) {
                at = i;
                char what[160];
                snprintf(what, sizeof what, a->st ? "postgres: \"%.100s\"" : "%s",
                         a->st ? a->st->sql : a->sql);
                rc = map_result(db, r, what); /* may drop the connection */
                lost = !db->conn;
            }
        }
        PQclear(r);
    }
    PGresult *sync = lost ? NULL : next_result(db, 1);
    if (!sync || !db->conn || !PQexitPipelineMode(db->conn)) {
        note_loss(db, db->conn ? PQerrorMessage(db->conn) : "no connection");
        rc = -EIO;
    }
    PQclear(sync);
    if (rc < 0 && last) {
        PQclear(*last);
        *last = NULL;
    }
    if (at < 0 || !db->conn)
        return rc;
    ahead_kind_t k = db->ahead[at].kind;
    if (k == AH_PREPARE && at + 1 < n)
        k = db->ahead[at + 1].kind; /* a prepare's failure is its statement's */
    if (k == AH_STMT) {
        after_error(db);
    } else if (k == AH_DEFER) {
        /* optimistic: the group runs again the plain way, so the unit meets its own error
         * (a duplicate key is a client's 409); only logged when it cannot */
        if (!db->optimistic)
            cm_log_msg(CM_LOG_ERROR,
                       "db: a deferred statement failed (%s): the write group is lost",
                       strerror(-rc));
        db->retry = db->optimistic;
        lose_group(db);
        rc = -EIO;
    } else if (k != AH_COMMIT) {
        if (db->tx == TX_READ) /* its BEGIN: the next read opens a new group */
            after_error(db);
        else if (db->tx == TX_WRITE) /* BEGIN, the lock (timed out: -EBUSY), RELEASE, */
            lose_group(db);          /* SAVEPOINT: the group cannot go on, none of it kept */
    }
    return rc;
}

/* Answers what was queued now: a sync and a round trip of their own. */
static int flush_ahead(pg_db_t *db)
{
    if (!db->nahead)
        return 0;
    if (!PQpipelineSync(db->conn)) {
        note_loss(db, PQerrorMessage(db->conn));
        return -EIO;
    }
    return answer_ahead(db, NULL);
}

/* One round trip: what was queued (deferred statements, and what is due before the
 * statement: BEGIN, the write lock, RELEASE, SAVEPOINT), the statement's prepare on
 * first use on this connection, the statement, a sync. Returns the step's result, or
 * -EAGAIN when the connection was found dead and nothing of ours was in it but the group
 * this pipeline opened: the caller may send it again on a new connection. */
static int run_pipeline(pg_db_t *db, pg_stmt_t *st)
{
    int opens_group = !db->nahead && (db->pend_open || db->pend_read);
    int was_open = db->pend_open, was_read = db->pend_read, was_sp = db->pend_savepoint;
    int rc = send_due(db);
    if (rc == 0)
        rc = send_stmt(db, st, AH_STMT);
    if (rc == 0 && !PQpipelineSync(db->conn)) {
        note_loss(db, PQerrorMessage(db->conn));
        rc = -EIO;
    }
    PGresult *res = NULL;
    if (rc == 0)
        rc = answer_ahead(db, &res);
    if (rc == 0) {
        const char *n = PQcmdTuples(res);
        db->changes = n && *n ? atoi(n) : 0;
        if (db->in_unit && st->writes && db->changes > 0)
            db->unit_wrote = 1; /* a DELETE that found nothing leaves nothing to take back */
        st->res = res;
        st->nrows = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
        st->row = 0;
        rc = st->nrows > 0 ? CM_DB_ROW : CM_DB_DONE;
    }
    /* the connection was found closed, or the server dropped it (57P01, 08xxx), before
     * the group this pipeline opens began: nothing of it ran, so it is sent again */
    if (rc < 0 && !db->conn && opens_group)
        rc = -EAGAIN;
    if (rc == -EAGAIN) { /* sent again on a new connection: the group as it was before */
        db->pend_open = was_open;
        db->pend_read = was_read;
        db->pend_savepoint = was_sp;
        db->tx = was_open ? TX_WRITE : TX_READ;
        db->in_unit = was_open;
    }
    return rc;
}

static int replay_step(pg_db_t *db, pg_stmt_t *st);

static int pg_step(cm_stmt_t *h)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    pg_db_t *db = st->db;
    if (st->res) {
        if (++st->row < st->nrows)
            return CM_DB_ROW;
        return CM_DB_DONE;
    }
    if (db->replay_db)
        return replay_step(db, st);
    /* a lost group's statements would run in autocommit, each its own transaction */
    for (int attempt = 0; db->tx != TX_LOST; attempt++) {
        /* the first statement of a group opened here found the connection dead (the
         * server restarted while it sat idle): nothing of ours was in flight, so one new
         * connection is tried at once */
        if (ensure_conn(db, 0, PG_CONNECT_WAIT_MS) < 0 || attempt == 2)
            break;
        int rc = run_pipeline(db, st);
        if (rc != -EAGAIN)
            return rc;
    }
    /* the group this statement was to open is not open: nothing of it may run later */
    if (db->tx == TX_WRITE || db->pend_open)
        db->tx = TX_LOST;
    else if (db->tx == TX_READ)
        db->tx = TX_NONE;
    db->pend_open = db->pend_read = db->pend_savepoint = db->release_pending = 0;
    db->in_unit = 0;
    return -EIO;
}

/* Bounds what a unit queues unanswered (a delete may cancel many orders, each with its
 * event): their answers are small, but the server must not block writing them while we
 * still write. */
#define AHEAD_MAX 128

/* store/db.h's cm_stmt_defer: inside a write unit, queued for the next round trip. */
static int pg_defer(cm_stmt_t *h)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    pg_db_t *db = st->db;
    /* a group's first command runs now: the pipeline that opens a group may be sent again
     * on a new connection (run_pipeline) only while nothing else of it is queued */
    if (!db->optimistic || db->replay_db || db->tx != TX_WRITE || !db->in_unit || db->pend_open ||
        !db->conn || db->async_commit)
        return cm_stmt_run_now(h);
    int rc = send_due(db);
    if (rc == 0)
        rc = send_stmt(db, st, AH_DEFER);
    stmt_reset(st);
    if (rc == 0 && db->nahead >= AHEAD_MAX)
        rc = flush_ahead(db);
    return rc < 0 ? -EIO : 0; /* the connection went: the group is lost */
}

static int has_row(const pg_stmt_t *st, int col)
{
    return st->res && st->row >= 0 && st->row < st->nrows && col >= 0 && col < PQnfields(st->res);
}

static int pg_col_is_null(cm_stmt_t *h, int col)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    return !has_row(st, col) || PQgetisnull(st->res, st->row, col);
}

static int64_t pg_col_int(cm_stmt_t *h, int col)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    if (pg_col_is_null(h, col))
        return 0;
    return strtoll(PQgetvalue(st->res, st->row, col), NULL, 10);
}

static const char *pg_col_text(cm_stmt_t *h, int col, size_t *len)
{
    pg_stmt_t *st = (pg_stmt_t *)h;
    if (pg_col_is_null(h, col)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)PQgetlength(st->res, st->row, col);
    return PQgetvalue(st->res, st->row, col);
}

static void pg_reset(cm_stmt_t *h)
{
    stmt_reset((pg_stmt_t *)h);
}

/* ------------------------------------------------------------------------ */
/* Transactions and groups                                                  */
/* ------------------------------------------------------------------------ */

/* BEGIN and the write lock in one round trip, which also learns the transaction's id:
 * the question to ask if its COMMIT's answer is lost. For cm_db_begin (a group's BEGIN
 * goes with its first statement instead). A connection found dead at BEGIN (the server
 * restarted while it sat idle) had nothing of ours in flight: one new connection is
 * tried at once. */
static int open_write(pg_db_t *db)
{
    if (db->tx == TX_LOST)
        return -EIO;
    if (ensure_conn(db, 0, PG_CONNECT_WAIT_MS) < 0)
        return -EIO;
    char sql[192];
    db->started[0] = '\0'; /* unknown here: a doubt after a restart is not resolved */
    snprintf(sql, sizeof sql, "BEGIN; %s", db->lock_sql);
    int rc = exec_multi(db, sql, db->xid, sizeof db->xid);
    if (rc < 0 && !db->conn && ensure_conn(db, 0, PG_CONNECT_WAIT_MS) == 0)
        rc = exec_multi(db, sql, db->xid, sizeof db->xid);
    if (rc == 0) {
        db->tx = TX_WRITE;
    } else if (db->conn) {
        PQclear(PQexec(db->conn, "ROLLBACK")); /* the lock timed out: BEGIN is open */
    }
    return rc;
}

static int pg_begin(cm_db_t *h)
{
    return open_write((pg_db_t *)h);
}

int cm_db_pg_xact_outcome(const char *status, int restarted)
{
    if (!status)
        return -ETIMEDOUT; /* too old, or not yet assigned: nobody can tell */
    /* After a crash the server may hand out again an id it had given a transaction that
     * never reached its WAL (one that cannot have committed): a "committed" may then be
     * another's. The rest is ours: the old server's backends are gone, so ours is not
     * in progress, and an id in the future was never logged. */
    if (strcmp(status, "committed") == 0)
        return restarted ? -ETIMEDOUT : 0;
    if (strcmp(status, "aborted") == 0)
        return -EIO;
    if (strcmp(status, "in progress") == 0 || strcmp(status, "future") == 0)
        return restarted ? -EIO : -EINPROGRESS;
    return -ETIMEDOUT;
}

/* The COMMIT of the write group went out and the connection broke before its answer
 * came back: PostgreSQL may have committed it, so "nothing was stored" could be a lie.
 * Asks the server, on new connections, what became of the group's transaction, until
 * it says or PG_DOUBT_MS passed (the worker waits: the answers it holds depend on it).
 * Returns 0 (committed), -EIO (aborted: nothing stored) or -ETIMEDOUT (unknown). */
static int resolve_in_doubt(pg_db_t *db)
{
    if (!db->xid[0]) {
        cm_log_msg(CM_LOG_ERROR, "db: postgres connection lost during COMMIT of a write group "
                                 "whose transaction id is unknown: its outcome is unknown");
        return -ETIMEDOUT;
    }
    cm_log_msg(CM_LOG_WARN,
               "db: postgres connection lost during COMMIT of transaction %s; asking whether "
               "it committed",
               db->xid);
    uint64_t until = now_ms() + PG_DOUBT_MS;
    int rc = -ETIMEDOUT;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= until)
            break;
        unsigned wait = PG_DOUBT_POLL_MS;
        if (db->conn || now >= db->retry_at) {
            int left = (int)(until - now);
            if (ensure_conn(db, 1, left < PG_CONNECT_TIMEOUT_MS ? left : PG_CONNECT_TIMEOUT_MS) ==
                0) {
                /* the start first: the status query fails for an id in the future */
                char started[48];
                int restarted = exec_multi(db, "SELECT pg_postmaster_start_time()::text", started,
                                           sizeof started) < 0 ||
                                !db->started[0] || strcmp(started, db->started) != 0;
                const char *v[1] = {db->xid};
                PGresult *res = db->conn ? PQexecParams(db->conn, "SELECT pg_xact_status($1::xid8)",
                                                        1, NULL, v, NULL, NULL, 0)
                                         : NULL;
                const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
                if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                    rc = cm_db_pg_xact_outcome(
                        PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0), restarted);
                } else if (state && strcmp(state, "22023") == 0) {
                    rc = cm_db_pg_xact_outcome("future", restarted); /* never logged */
                } else {
                    map_result(db, res, "asking a transaction's outcome");
                    rc = -EINPROGRESS; /* no answer: ask again */
                }
                PQclear(res);
                if (rc != -EINPROGRESS)
                    break;
            }
        } else if (db->retry_at - now > wait) {
            wait = (unsigned)(db->retry_at - now);
        }
        now = now_ms();
        if (now + wait > until)
            wait = now < until ? (unsigned)(until - now) : 0;
        poll(NULL, 0, (int)wait);
        rc = -ETIMEDOUT;
    }
    cm_log_msg(rc == 0 ? CM_LOG_INFO : CM_LOG_ERROR, "db: transaction %s %s", db->xid,
               rc == 0      ? "had committed: its answers stand"
               : rc == -EIO ? "had been rolled back: nothing of it was stored"
                            : "did not say whether it committed: its outcome is unknown");
    return rc;
}

static const char sql_nextval[] = "SELECT nextval(pg_get_serial_sequence(?, 'id'))";
static const char sql_setval[] = "SELECT setval(pg_get_serial_sequence(?, 'id'), ?)";

static int pg_next_id(cm_db_t *h, const char *table, int64_t *id)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx != TX_WRITE || !db->in_unit)
        return -EIO; /* outside a unit, or the group is lost */
    pg_ids_t *e = NULL;
    for (int i = 0; i < PG_ID_TABLES && !e; i++)
        if (db->ids[i].table == table || !db->ids[i].table)
            e = &db->ids[i];
    if (!e) {
        cm_log_msg(CM_LOG_ERROR, "db: ids of more than %d tables (a bug)", PG_ID_TABLES);
        return -EINVAL;
    }
    if (e->table == table && e->taken) {
        *id = ++e->last; /* under the write lock: nobody else takes one meanwhile */
        return 0;
    }
    cm_stmt_t *st = pg_stmt(h, sql_nextval);
    if (!st)
        return -EIO;
    pg_bind_text(st, 1, table, strlen(table));
    int rc = pg_step(st);
    if (rc == CM_DB_ROW && !pg_col_is_null(st, 0)) {
        *e = (pg_ids_t){.table = table, .first = pg_col_int(st, 0), .taken = 1};
        e->last = e->first;
        *id = e->first;
        rc = 0;
    } else if (rc >= 0) {
        rc = -EIO;
    }
    pg_reset(st);
    return rc;
}

/* With the COMMIT: each sequence set past the ids the group counted by itself. */
static int queue_setvals(pg_db_t *db)
{
    int rc = 0;
    for (int i = 0; i < PG_ID_TABLES; i++) {
        pg_ids_t *e = &db->ids[i];
        if (rc == 0 && e->taken && e->last > e->first) {
            cm_stmt_t *st = pg_stmt(&db->base, sql_setval);
            if (!st) {
                rc = -EIO;
            } else {
                pg_bind_text(st, 1, e->table, strlen(e->table));
                pg_bind_int(st, 2, e->last);
                rc = send_stmt(db, (pg_stmt_t *)st, AH_DEFER);
                pg_reset(st);
            }
        }
        e->taken = 0;
    }
    return rc;
}

/* The write group's COMMIT behind what was queued (deferred statements, the last
 * RELEASE): one round trip for them all. A failure before it skips it (not committed);
 * a connection lost once it was queued leaves the outcome to resolve_in_doubt. */
static int commit_queued(pg_db_t *db)
{
    db->in_unit = 0;
    db->pend_savepoint = 0;
    /* tried: some of the COMMIT may have gone out even when queueing it failed */
    int tried = send_due(db) == 0;
    int queued = tried && send_ahead(db, AH_COMMIT, "COMMIT", NULL) == 0;
    int rc = -EIO;
    PGresult *res = NULL;
    if (queued && PQpipelineSync(db->conn))
        rc = answer_ahead(db, &res);
    else if (db->conn)
        note_loss(db, PQerrorMessage(db->conn));
    if (rc == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0)
        rc = -EIO; /* PostgreSQL answers ROLLBACK for a transaction it had aborted */
    PQclear(res);
    if (rc < 0 && !db->conn && tried) /* the server may have committed */
        rc = resolve_in_doubt(db);
    if (rc < 0 && rc != -ETIMEDOUT)
        cm_log_msg(CM_LOG_ERROR, "db: postgres did not commit the write group");
    db->tx = TX_NONE;
    db->xid[0] = '\0';
    return rc;
}

static int pg_commit(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    tx_state_t tx = db->tx;
    if (tx == TX_WRITE && db->conn && !db->pend_open && queue_setvals(db) < 0)
        tx = db->tx; /* the connection went: the group is lost */
    if (tx == TX_WRITE && db->nahead && db->conn)
        return commit_queued(db);
    settle(db);
    db->in_unit = 0;
    db->pend_savepoint = 0;
    if (tx == TX_NONE)
        return 0;
    if (tx != TX_WRITE)
        db->release_pending = 0;
    if ((tx == TX_WRITE && db->pend_open) || (tx == TX_READ && db->pend_read)) {
        db->pend_open = db->pend_read = db->release_pending = 0; /* nothing was sent */
        db->tx = TX_NONE;
        return 0;
    }
    if (tx == TX_READ && db->conn) {
        /* sent without waiting for its answer: the next command reads it first */
        db->tx = TX_NONE;
        if (PQenterPipelineMode(db->conn) &&
            PQsendQueryParams(db->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
            PQpipelineSync(db->conn))
            db->async_commit = 1;
        else
            note_loss(db, PQerrorMessage(db->conn));
        return 0;
    }
    if (tx == TX_LOST || !db->conn) {
        db->tx = TX_NONE;
        return -EIO;
    }
    if (PQtransactionStatus(db->conn) == PQTRANS_INERROR) {
        PQclear(PQexec(db->conn, "ROLLBACK"));
        db->tx = TX_NONE;
        return -EIO;
    }
    /* a failed RELEASE stops the string there: no COMMIT runs, and the error says so */
    PGresult *res = PQexec(db->conn, db->release_pending ? "RELEASE unit; COMMIT" : "COMMIT");
    db->release_pending = 0;
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = map_result(db, res, "COMMIT");
        /* the connection broke with the COMMIT sent: the server may have committed */
        if (!db->conn && tx == TX_WRITE)
            rc = resolve_in_doubt(db);
    } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        rc = -EIO; /* PostgreSQL answers ROLLBACK for a transaction it had aborted */
    }
    PQclear(res);
    if (rc < 0 && rc != -ETIMEDOUT && tx == TX_WRITE)
        cm_log_msg(CM_LOG_ERROR, "db: postgres did not commit the write group");
    db->tx = TX_NONE;
    db->xid[0] = '\0';
    return rc;
}

static void pg_rollback(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    settle(db);
    if (db->conn && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        PQclear(PQexec(db->conn, "ROLLBACK"));
    db->tx = TX_NONE;
    db->in_unit = 0;
    db->release_pending = 0;
    db->pend_open = db->pend_read = db->pend_savepoint = 0;
}

static int pg_in_group(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    return db->tx == TX_READ || db->tx == TX_WRITE;
}

static int pg_read_begin(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx != TX_NONE)
        return db->tx == TX_LOST ? -EIO : 0;
    /* the server away: say so now (no round trip while connected) */
    if (ensure_conn(db, 0, PG_CONNECT_WAIT_MS) < 0)
        return -EIO;
    db->tx = TX_READ;
    db->pend_read = 1; /* BEGIN goes with the first read */
    return 0;
}

/* The group cannot be trusted any more: end it here, and fail it at the commit. */
static void lose_group(pg_db_t *db)
{
    pg_rollback(&db->base);
    db->tx = TX_LOST;
}

static int pg_unit_begin(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx == TX_READ) {
        int rc = pg_commit(h);
        if (rc < 0)
            return rc;
    }
    if (db->tx == TX_NONE) {
        if (ensure_conn(db, 0, PG_CONNECT_WAIT_MS) < 0)
            return -EIO; /* the server away: say so now (no round trip while connected) */
        /* BEGIN, the lock and the SAVEPOINT go with the unit's first statement */
        db->tx = TX_WRITE;
        db->pend_open = 1;
        db->xid[0] = db->started[0] = '\0';
        db->retry = 0;
        for (int i = 0; i < PG_ID_TABLES; i++)
            db->ids[i].taken = 0;
    } else if (db->tx != TX_WRITE) {
        return -EIO; /* lost: stays lost until the batch hears it */
    }
    /* with the unit's first statement, after the RELEASE of the unit before it, if due;
     * a failure there loses the group as it would here */
    db->unit_sp = !db->optimistic;
    db->pend_savepoint = db->unit_sp;
    db->unit_ran = db->unit_wrote = 0;
    db->in_unit = 1;
    return 0;
}

static int pg_unit_undo(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx != TX_WRITE)
        return -EIO;
    if (!db->in_unit)
        return 0;
    if (!db->unit_ran) { /* no statement ran: nothing to take back */
        db->pend_savepoint = 0;
        db->in_unit = 0;
        return 0;
    }
    /* what the unit deferred must answer first: its failure loses the group */
    if (flush_ahead(db) < 0)
        return -EIO;
    if (!db->unit_sp) {
        if (!db->unit_wrote && db->conn && PQtransactionStatus(db->conn) == PQTRANS_INTRANS) {
            db->in_unit = 0; /* it only read: nothing to take back */
            return 0;
        }
        db->retry = 1; /* optimistic: no savepoint to go back to; the group runs again */
        lose_group(db);
        return -EIO;
    }
    /* ROLLBACK TO also clears an error the unit's statement left (the transaction
     * goes on); RELEASE then drops the savepoint */
    if (exec_cmd(db, "ROLLBACK TO unit; RELEASE unit") == 0) {
        db->in_unit = 0;
        return 0;
    }
    if (db->tx == TX_WRITE)
        lose_group(db); /* the unit's writes might stay in the group: none of it may commit */
    return -EIO;
}

static int pg_unit_end(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx != TX_WRITE)
        return -EIO;
    if (!db->unit_ran) { /* no statement ran: the unit has nothing to keep */
        db->pend_savepoint = 0;
        db->in_unit = 0;
        return 0;
    }
    if (!db->conn || PQtransactionStatus(db->conn) == PQTRANS_INERROR) {
        pg_unit_undo(h); /* a statement of the unit failed: keep nothing of it */
        return -EIO;
    }
    /* RELEASE cannot fail in a transaction that is not in error, but on a lost
     * connection, which loses the whole group: so it waits for the next command
     * (SAVEPOINT, COMMIT) and shares its round trip */
    db->in_unit = 0;
    db->release_pending = db->unit_sp;
    return 0;
}

static int pg_group_commit(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    if (db->tx == TX_NONE)
        return 0;
    int rc = pg_commit(h);
    if (rc < 0)
        pg_rollback(h);
    if (db->retry && rc == -EIO) /* nothing of it stored: its units may run again */
        rc = -EAGAIN;
    db->retry = 0;
    return rc;
}

static void pg_optimistic(cm_db_t *h, int on)
{
    ((pg_db_t *)h)->optimistic = on;
}

static int pg_changes(cm_db_t *h)
{
    return ((pg_db_t *)h)->changes;
}

const cm_db_ops_t cm_db_pg_ops = {
    .open = pg_open,
    .open_reader = pg_open_reader,
    .close = pg_close,
    .write_problem = pg_write_problem,
    .set_busy_timeout = pg_set_busy_timeout,
    .stmt = pg_stmt,
    .bind_int = pg_bind_int,
    .bind_text = pg_bind_text,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .defer = pg_defer,
    .col_int = pg_col_int,
    .col_text = pg_col_text,
    .col_is_null = pg_col_is_null,
    .reset = pg_reset,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .unit_begin = pg_unit_begin,
    .read_begin = pg_read_begin,
    .unit_end = pg_unit_end,
    .unit_undo = pg_unit_undo,
    .group_commit = pg_group_commit,
    .in_group = pg_in_group,
    .optimistic = pg_optimistic,
    .next_id = pg_next_id,
    .changes = pg_changes,
};

/* ------------------------------------------------------------------------ */
/* Reads by replay, on asynchronous connections (store/pgasync.h)           */
/* ------------------------------------------------------------------------ */

typedef struct replay_item {
    const char *sql; /* the statement's literal: a run must ask for the same */
    PGresult *res;   /* its result, or NULL with err */
    int err;
} replay_item_t;

struct cm_replay {
    replay_item_t *items;
    int n, cap;
    int next;   /* the run's next statement */
    int wanted; /* the run stopped at a statement without a result */
    int failed; /* a result could not be kept (out of memory): every run fails with it */
    const char *want_sql;
    int nparams;
    char **vals; /* the wanted statement's parameters as text (NULL: SQL NULL) */
};

static void want_clear(cm_replay_t *rp)
{
    for (int i = 0; i < rp->nparams; i++)
        free(rp->vals[i]);
    free(rp->vals);
    rp->vals = NULL;
    rp->nparams = 0;
    rp->want_sql = NULL;
}

static void replay_add(cm_replay_t *rp, PGresult *res, int err)
{
    if (rp->n == rp->cap) {
        int cap = rp->cap ? rp->cap * 2 : 4;
        replay_item_t *it = realloc(rp->items, sizeof *it * (size_t)cap);
        if (!it) {
            PQclear(res);
            rp->failed = -ENOMEM;
            return;
        }
        rp->items = it;
        rp->cap = cap;
    }
    rp->items[rp->n++] = (replay_item_t){rp->want_sql, res, err};
    want_clear(rp);
}

int cm_replay_db_open(cm_db_t **out)
{
    pg_db_t *db = db_new("", 1);
    if (!db)
        return -ENOMEM;
    db->replay_db = 1;
    db->retry_at = UINT64_MAX; /* it never connects */
    *out = &db->base;
    return 0;
}

cm_replay_t *cm_replay_new(void)
{
    return calloc(1, sizeof(cm_replay_t));
}

void cm_replay_free(cm_replay_t *rp)
{
    if (!rp)
        return;
    for (int i = 0; i < rp->n; i++)
        PQclear(rp->items[i].res);
    free(rp->items);
    want_clear(rp);
    free(rp);
}

void cm_replay_begin(cm_db_t *h, cm_replay_t *rp)
{
    pg_db_t *db = (pg_db_t *)h;
    db->replay = rp;
    rp->next = 0;
    rp->wanted = 0;
}

int cm_replay_end(cm_db_t *h)
{
    pg_db_t *db = (pg_db_t *)h;
    cm_replay_t *rp = db->replay;
    db->replay = NULL;
    /* its statements let go of the results they borrowed */
    for (size_t i = 0; i < db->nstmts; i++)
        if (db->stmts[i]->borrowed)
            stmt_reset(db->stmts[i]);
    return rp && rp->wanted;
}

void cm_replay_fail(cm_replay_t *rp, int err)
{
    replay_add(rp, NULL, err);
}

/* A statement of a run: the next result, or the run stops here (the wanted statement). */
static int replay_step(pg_db_t *db, pg_stmt_t *st)
{
    cm_replay_t *rp = db->replay;
    if (!rp)
        return -EIO; /* outside a run: a bug */
    if (rp->failed)
        return rp->failed;
    if (rp->wanted)
        return -EAGAIN; /* past the statement the run stopped at */
    int i = rp->next++;
    if (i < rp->n) {
        replay_item_t *it = &rp->items[i];
        if (it->sql != st->sql) {
            cm_log_msg(CM_LOG_ERROR, "db: a replayed read asked for another statement (a bug)");
            return -EIO;
        }
        if (!it->res)
            return it->err;
        st->res = it->res;
        st->borrowed = 1;
        st->nrows = PQresultStatus(it->res) == PGRES_TUPLES_OK ? PQntuples(it->res) : 0;
        st->row = 0;
        return st->nrows > 0 ? CM_DB_ROW : CM_DB_DONE;
    }
    rp->want_sql = st->sql;
    if (st->nparams && !(rp->vals = calloc((size_t)st->nparams, sizeof *rp->vals)))
        return -ENOMEM;
    rp->nparams = st->nparams;
    for (int p = 0; p < st->nparams; p++)
        if (!st->params[p].null && !(rp->vals[p] = strdup(st->params[p].buf))) {
            want_clear(rp);
            return -ENOMEM;
        }
    rp->wanted = 1;
    return -EAGAIN;
}

/* Where a statement in flight is: what its next result is. */
typedef enum {
    AS_PREPARE,      /* its prepare's results (first use on the connection) */
    AS_PREPARE_SYNC, /* the Sync of the prepare's own batch */
    AS_EXEC,         /* its execution's results */
} astage_t;

/* A statement in flight on an asynchronous connection. */
typedef struct aitem {
    cm_replay_t *rp;  /* the replay whose wanted statement it is (its parameters) */
    void *arg;        /* the caller's, handed back by cm_pgasync_done */
    pg_stmt_t *st;    /* the statement, in the connection's cache */
    uint64_t sent_ms; /* first sent: a statement sent again keeps it (its deadline) */
    astage_t stage;
    int synced;  /* the last of its batch: the batch's Sync result comes after its own */
    int skipped; /* the server skipped it (an earlier statement of its batch failed) */
    PGresult *res;
    int err;
} aitem_t;

struct cm_pgasync {
    pg_db_t *db;              /* its connection, its prepared statements, its backoff */
    cm_pgasync_state_t state; /* DOWN, CONNECTING or IDLE (BUSY: IDLE with items in flight) */
    aitem_t *q;               /* in flight, a ring in the order their results come */
    int qcap, qhead, qn;
    void **done; /* finished, not taken: a ring of their args */
    int dcap, dhead, dn;
    int unsynced; /* statements sent since the last Sync (cm_pgasync_flush ends the batch) */
    int syncs;    /* Syncs sent whose result has not come */
    int at_sync;  /* the next result is a batch's Sync */
    int setup_err;
    int flushing; /* output libpq could not write yet */
};

int cm_pgasync_open(const char *target, cm_pgasync_t **out)
{
    cm_pgasync_t *c = calloc(1, sizeof *c);
    if (!c || !(c->db = db_new(target, 1))) {
        free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void cm_pgasync_close(cm_pgasync_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->qn; i++)
        PQclear(c->q[(c->qhead + i) % c->qcap].res);
    free(c->q);
    free(c->done);
    pg_close(&c->db->base);
    free(c);
}

cm_pgasync_state_t cm_pgasync_state(const cm_pgasync_t *c)
{
    return c->state == CM_PGASYNC_IDLE && c->qn ? CM_PGASYNC_BUSY : c->state;
}

int cm_pgasync_inflight(const cm_pgasync_t *c)
{
    return c->qn;
}

uint64_t cm_pgasync_oldest(const cm_pgasync_t *c)
{
    uint64_t t = 0; /* a statement sent again is behind younger ones: look at them all */
    for (int i = 0; i < c->qn; i++) {
        uint64_t s = c->q[(c->qhead + i) % c->qcap].sent_ms;
        if (i == 0 || s < t)
            t = s;
    }
    return t;
}

int cm_pgasync_fd(const cm_pgasync_t *c)
{
    if (c->db->conn)
        return PQsocket(c->db->conn);
    if (c->db->connecting)
        return PQsocket(c->db->connecting);
    return -1;
}

int cm_pgasync_events(const cm_pgasync_t *c)
{
    if (c->db->conn)
        return CM_PGASYNC_IN | (c->flushing ? CM_PGASYNC_OUT : 0);
    if (c->db->connecting)
        return c->db->polling == PGRES_POLLING_READING ? CM_PGASYNC_IN : CM_PGASYNC_OUT;
    return 0;
}

int cm_pgasync_start(cm_pgasync_t *c, uint64_t now, uint64_t *retry_in_ms)
{
    if (c->state != CM_PGASYNC_DOWN)
        return 0;
    if (now < c->db->retry_at) {
        *retry_in_ms = c->db->retry_at - now;
        return -EAGAIN;
    }
    if (connect_start(c->db, 0, now) < 0)
        return -EIO;
    c->state = CM_PGASYNC_CONNECTING;
    return 0;
}

/* A ring of elements of size sz that holds more than need: ring itself, or a bigger copy
 * of its used elements in order from 0 (ring freed, *cap and *head updated), or NULL
 * when out of memory (ring kept). */
static void *ring_room(void *ring, int *cap, int *head, int used, int need, size_t sz)
{
    if (need < *cap)
        return ring;
    int ncap = *cap ? *cap * 2 : 8;
    char *r = malloc(sz * (size_t)ncap);
    if (!r)
        return NULL;
    for (int i = 0; i < used; i++)
        memcpy(r + sz * (size_t)i, (char *)ring + sz * (size_t)((*head + i) % *cap), sz);
    free(ring);
    *cap = ncap;
    *head = 0;
    return r;
}

/* The statement finished: its result (or error) goes to its replay, its arg to the done
 * ring (which always has room: it holds at most what was in flight). */
static void async_finish(cm_pgasync_t *c, aitem_t *it)
{
    replay_add(it->rp, it->err ? NULL : it->res, it->err);
    if (it->err)
        PQclear(it->res);
    c->done[(c->dhead + c->dn++) % c->dcap] = it->arg;
}

void *cm_pgasync_done(cm_pgasync_t *c)
{
    if (!c->dn)
        return NULL;
    void *arg = c->done[c->dhead];
    c->dhead = (c->dhead + 1) % c->dcap;
    c->dn--;
    return arg;
}

/* The connection broke (or is given up): down, with the backoff; every statement in
 * flight finishes with err. */
static void async_lost(cm_pgasync_t *c, const char *why, int err)
{
    pg_db_t *db = c->db;
    note_loss(db, why);
    if (db->connecting) {
        PQfinish(db->connecting);
        db->connecting = NULL;
    }
    schedule_retry(db);
    c->state = CM_PGASYNC_DOWN;
    c->flushing = 0;
    c->unsynced = c->syncs = c->at_sync = 0;
    while (c->qn) {
        aitem_t *it = &c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qn--;
        PQclear(it->res);
        it->res = NULL;
        it->err = err;
        async_finish(c, it);
    }
}

static int async_flush(cm_pgasync_t *c)
{
    int r = PQflush(c->db->conn);
    c->flushing = r == 1;
    return r < 0 ? -EIO : 0;
}

/* Ends the batch so far with a Sync (PQpipelineSync also writes what it can). */
static int sync_batch(cm_pgasync_t *c)
{
    if (!PQpipelineSync(c->db->conn))
        return -EIO;
    c->q[(c->qhead + c->qn - 1) % c->qcap].synced = 1;
    c->syncs++;
    c->unsynced = 0;
    return async_flush(c);
}

/* Puts a statement in flight at the end of the current batch; a first use of the
 * statement on this connection is prepared in a batch of its own first. -ENOMEM (nothing
 * sent), or -EIO (the connection must be given up). */
static int async_queue(cm_pgasync_t *c, cm_replay_t *rp, void *arg, uint64_t sent_ms)
{
    pg_db_t *db = c->db;
    pg_stmt_t *st = (pg_stmt_t *)pg_stmt(&db->base, rp->want_sql);
    if (!st)
        return -ENOMEM;
    for (int i = 0; i < st->nparams && i < rp->nparams; i++) {
        int rc = rp->vals[i] ? set_param(st, i + 1, rp->vals[i], strlen(rp->vals[i])) : 0;
        if (rc < 0)
            return rc;
    }
    /* room for it in flight, and for it among the finished (dn + qn never exceeds dcap) */
    aitem_t *q = ring_room(c->q, &c->qcap, &c->qhead, c->qn, c->qn, sizeof *c->q);
    if (q)
        c->q = q;
    void **done =
        q ? ring_room(c->done, &c->dcap, &c->dhead, c->dn, c->dn + c->qn, sizeof *c->done) : NULL;
    if (!done)
        return -ENOMEM;
    c->done = done;
    astage_t stage = AS_EXEC;
    if (st->gen != db->gen) {
        if (c->unsynced && sync_batch(c) < 0)
            return -EIO;
        if (!PQsendPrepare(db->conn, st->name, st->text, st->nparams, NULL) ||
            !PQpipelineSync(db->conn))
            return -EIO;
        c->syncs++;
        st->gen = db->gen; /* the statements after it may use it; a failed one is undone */
        stage = AS_PREPARE;
    }
    for (int i = 0; i < st->nparams; i++)
        st->values[i] = st->params[i].null ? NULL : st->params[i].buf;
    if (!PQsendQueryPrepared(db->conn, st->name, st->nparams, st->values, NULL, NULL, 0))
        return -EIO;
    c->q[(c->qhead + c->qn++) % c->qcap] = (aitem_t){rp, arg, st, sent_ms, stage, 0, 0, NULL, 0};
    c->unsynced++;
    return 0;
}

int cm_pgasync_send(cm_pgasync_t *c, cm_replay_t *rp, void *arg, uint64_t now)
{
    if (c->state != CM_PGASYNC_IDLE || !rp->want_sql)
        return -EINVAL;
    int rc = async_queue(c, rp, arg, now);
    if (rc == -EIO)
        async_lost(c, PQerrorMessage(c->db->conn), -EIO);
    return rc;
}

int cm_pgasync_flush(cm_pgasync_t *c)
{
    if (c->state != CM_PGASYNC_IDLE || !c->unsynced)
        return 0;
    if (sync_batch(c) < 0) {
        async_lost(c, PQerrorMessage(c->db->conn), -EIO);
        return -EIO;
    }
    return 0;
}

/* The session setup's results (before pipeline mode): on its end, the connection is
 * ready. 0, or -EIO (the connection must be given up). */
static int setup_results(cm_pgasync_t *c)
{
    pg_db_t *db = c->db;
    while (!PQisBusy(db->conn)) {
        PGresult *r = PQgetResult(db->conn);
        if (!r) {
            if (c->setup_err || !PQenterPipelineMode(db->conn))
                return -EIO;
            if (db->backoff_ms)
                cm_log_msg(CM_LOG_INFO, "db: postgres connection open again");
            db->backoff_ms = 0;
            c->state = CM_PGASYNC_IDLE;
            return 0;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            c->setup_err = map_result(db, r, "postgres: session setup");
        PQclear(r);
        if (!db->conn)
            return -EIO;
    }
    return 0;
}

/* One result of the statement at the head of the flight (NULL: the end of one of its
 * commands' results). 0, or -EIO (out of step with the server: give the connection up). */
static int item_result(cm_pgasync_t *c, PGresult *r)
{
    pg_db_t *db = c->db;
    aitem_t *it = &c->q[c->qhead];
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_EMPTY_QUERY;
    if (it->stage == AS_PREPARE_SYNC) {
        PQclear(r);
        if (s != PGRES_PIPELINE_SYNC)
            return -EIO;
        c->syncs--;
        it->stage = AS_EXEC;
        return 0;
    }
    if (!r && it->stage == AS_PREPARE) {
        it->stage = AS_PREPARE_SYNC;
        return 0;
    }
    if (!r) { /* its execution is done */
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qn--;
        c->at_sync = it->synced;
        if (!it->skipped) {
            async_finish(c, it);
            return 0;
        }
        /* skipped for an earlier statement's error: again, in the next batch */
        aitem_t again = *it;
        PQclear(again.res);
        again.res = NULL;
        int rc = async_queue(c, again.rp, again.arg, again.sent_ms);
        if (rc < 0) { /* not in flight: it finishes here */
            again.err = rc == -ENOMEM ? -ENOMEM : -EIO;
            async_finish(c, &again);
        }
        return rc == -ENOMEM ? 0 : rc;
    }
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        if (it->stage == AS_EXEC) {
            PQclear(it->res);
            it->res = r;
        } else {
            PQclear(r);
        }
        return 0;
    }
    if (s == PGRES_PIPELINE_ABORTED) {
        PQclear(r); /* a prepare is alone in its batch: only an execution is skipped */
        if (!it->err)
            it->skipped = 1;
        return 0;
    }
    if (it->err) { /* its prepare failed, so its execution did too: said once */
        PQclear(r);
        return 0;
    }
    char what[160];
    snprintf(what, sizeof what, "postgres: \"%.100s\"", it->st->sql);
    it->err = map_result(db, r, what);
    PQclear(r);
    if (it->stage == AS_PREPARE)
        it->st->gen = 0; /* not prepared: the next use prepares it again */
    return db->conn ? 0 : -EIO;
}

void cm_pgasync_advance(cm_pgasync_t *c, uint64_t now)
{
    pg_db_t *db = c->db;
    if (c->state == CM_PGASYNC_DOWN)
        return;
    if (db->connecting) {
        if (now >= db->connect_by) {
            connect_failed(db, 0, "timed out");
            c->state = CM_PGASYNC_DOWN;
            return;
        }
        db->polling = PQconnectPoll(db->connecting);
        if (db->polling == PGRES_POLLING_FAILED) {
            connect_failed(db, 0, PQerrorMessage(db->connecting));
            c->state = CM_PGASYNC_DOWN;
            return;
        }
        if (db->polling != PGRES_POLLING_OK)
            return;
        db->conn = db->connecting;
        db->connecting = NULL;
        db->gen++;
        PQsetNoticeProcessor(db->conn, on_notice, NULL);
        char sql[128];
        snprintf(sql, sizeof sql,
                 "SET statement_timeout = %d; SET default_transaction_read_only = on",
                 PG_STATEMENT_TIMEOUT_MS);
        c->setup_err = 0;
        if (PQsetnonblocking(db->conn, 1) != 0 || !PQsendQuery(db->conn, sql) || async_flush(c) < 0)
            async_lost(c, PQerrorMessage(db->conn), -EIO);
        return;
    }
    if ((c->flushing && async_flush(c) < 0) || !PQconsumeInput(db->conn)) {
        async_lost(c, PQerrorMessage(db->conn), -EIO);
        return;
    }
    if (c->state == CM_PGASYNC_CONNECTING) {
        if (setup_results(c) < 0)
            async_lost(c, db->conn ? "session setup failed" : "the server closed the connection",
                       -EIO);
        return;
    }
    /* in pipeline mode PQgetResult answers NULL between commands and when nothing is
     * due: what is due is counted, not asked */
    while ((c->qn || c->syncs) && !PQisBusy(db->conn)) {
        PGresult *r = PQgetResult(db->conn);
        if (c->at_sync) {
            int sync = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (!sync) {
                async_lost(c, "out of step with the server", -EIO);
                return;
            }
            c->at_sync = 0;
            c->syncs--;
            continue;
        }
        if (!c->qn) {
            PQclear(r);
            async_lost(c, "out of step with the server", -EIO);
            return;
        }
        if (item_result(c, r) < 0) {
            const char *why = db->conn ? PQerrorMessage(db->conn) : "";
            async_lost(c, *why ? why : "out of step with the server", -EIO);
            return;
        }
    }
    if (PQstatus(db->conn) == CONNECTION_BAD)
        async_lost(c, PQerrorMessage(db->conn), -EIO);
    else if (c->unsynced) /* statements sent again */
        cm_pgasync_flush(c);
}

void cm_pgasync_abort(cm_pgasync_t *c, int err, const char *why)
{
    if (c->state == CM_PGASYNC_DOWN)
        return;
    if (c->db->connecting && c->state == CM_PGASYNC_CONNECTING) {
        connect_failed(c->db, 0, "timed out");
        c->state = CM_PGASYNC_DOWN;
        return;
    }
    async_lost(c, why, err);
}
