/* store/idempotency.h: Idempotency-Key records for replays of unsafe requests.
 * A service looks the key up and stores the response inside the same transaction
 * as the write it protects, so a crash can never keep one without the other.
 * Uses store/db only; the HTTP side (headers, 422) stays in the service. */
#ifndef CMESH_STORE_IDEMPOTENCY_H
#define CMESH_STORE_IDEMPOTENCY_H

#include <stddef.h>

#include "store/db.h"

/* Add to a service's migrations once. Portable SQL (SQLite and PostgreSQL). */
#define CM_IDEM_MIGRATION                                                                          \
    "CREATE TABLE idempotency_keys(key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "              \
    "status INTEGER NOT NULL, location TEXT, body TEXT NOT NULL, created_at TEXT NOT NULL);"

/* The second step: keys are scoped to a client (scope, key), so one client's key never
 * replays another's answer; existing records get the anonymous scope "". */
#define CM_IDEM_MIGRATION_SCOPE                                                                    \
    "CREATE TABLE idempotency_keys_scoped(scope TEXT NOT NULL, key TEXT NOT NULL, "                \
    "fingerprint TEXT NOT NULL, status INTEGER NOT NULL, location TEXT, body TEXT NOT NULL, "      \
    "created_at TEXT NOT NULL, PRIMARY KEY(scope, key));"                                          \
    "INSERT INTO idempotency_keys_scoped SELECT '', key, fingerprint, status, location, body, "    \
    "created_at FROM idempotency_keys;"                                                            \
    "DROP TABLE idempotency_keys;"                                                                 \
    "ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;"

/* The third step: an index by age, so that pruning (cm_idem_prune) looks only at the
 * records it deletes. */
#define CM_IDEM_MIGRATION_BY_TIME                                                                  \
    "CREATE INDEX idempotency_keys_by_time ON idempotency_keys(created_at);"

#define CM_IDEM_FINGERPRINT_LEN 64 /* lowercase hex chars of a SHA-256, without the NUL */

/* A stored response. Members are owned by whoever holds the struct. */
typedef struct cm_idem_response {
    int status;     /* HTTP status of the first response */
    char *location; /* Location header value, or NULL when there was none */
    char *body;     /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;
} cm_idem_response_t;

/* SHA-256 (lowercase hex, NUL-terminated) of method, NUL, path, NUL, body: the
 * request a key was first used with. body may be NULL when len is 0. On an OpenSSL
 * failure (out of memory) writes "" which cm_idem_lookup/store refuse. */
void cm_idem_fingerprint(const char *method, const char *path, const char *body, size_t len,
                         char out[65]);

/* Frees the members and leaves the struct zeroed; NULL is a no-op. */
void cm_idem_response_free(cm_idem_response_t *r);

/* scope (scope_len bytes, may be "" with 0) names the client the key belongs to.
 * Call inside the caller's transaction (after cm_db_begin). On 0 the key was found
 * with this fingerprint and the caller owns out's members (cm_idem_response_free).
 * Otherwise out is zeroed. Returns 0, -ENOENT (not found), -EEXIST (found with
 * another fingerprint: the key was reused for a different request), -EINVAL (empty
 * key or fingerprint), -ENOMEM, -EBUSY or -EIO. */
int cm_idem_lookup(cm_db_t *db, const char *scope, size_t scope_len, const char *key,
                   size_t key_len, const char *fingerprint, cm_idem_response_t *out);

/* Records the response for key, stamped with the current time. Call in the same
 * transaction as the write, under its write lock, after cm_idem_lookup found no record.
 * location may be NULL. Strings are copied. Deferred (cm_stmt_defer): in an optimistic
 * group a failure shows later, as the whole group's (which then runs again).
 * Returns 0, -EEXIST (key already stored), -EINVAL, -EBUSY or -EIO. */
int cm_idem_store(cm_db_t *db, const char *scope, size_t scope_len, const char *key, size_t key_len,
                  const char *fingerprint, int status, const char *location, const char *body,
                  size_t body_len);

/* Deletes at most max records stored before cutoff (an RFC 3339 text, core/timefmt.h),
 * oldest first: a retried request past the retention is a new request. Call inside a
 * unit. Returns the number deleted or the store's error. */
int cm_idem_prune(cm_db_t *db, const char *cutoff, int max);

#endif
