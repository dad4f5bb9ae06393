/* store/idempotency.c: Idempotency-Key records (see idempotency.h).
 * Fingerprints are SHA-256 through OpenSSL's EVP; rows live in the service's own
 * database through store/db's statement cache. */
#include "store/idempotency.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/timefmt.h"

static const char SQL_LOOKUP[] =
    "SELECT fingerprint, status, location, body FROM idempotency_keys WHERE scope = ? AND key = ?";
static const char SQL_STORE[] = "INSERT INTO idempotency_keys(scope, key, fingerprint, status,"
                                " location, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";

static const char SQL_PRUNE[] =
    "DELETE FROM idempotency_keys WHERE (scope, key) IN (SELECT scope, key FROM idempotency_keys"
    " WHERE created_at < ? ORDER BY created_at LIMIT ?)";

int cm_idem_prune(cm_db_t *db, const char *cutoff, int max)
{
    cm_stmt_t *st = cm_db_stmt(db, SQL_PRUNE);
    if (!st)
        return -EIO;
    cm_stmt_bind_text(st, 1, cutoff, strlen(cutoff));
    cm_stmt_bind_int(st, 2, max);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    return rc < 0 ? rc : cm_db_changes(db);
}

void cm_idem_fingerprint(const char *method, const char *path, const char *body, size_t len,
                         char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    out[0] = '\0';
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return;
    /* NUL separators: method and path are C strings, so "a" + "b/c" and "ab" + "/c"
     * can never hash alike. */
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, method, strlen(method) + 1) &&
             EVP_DigestUpdate(ctx, path, strlen(path) + 1) &&
             (len == 0 || EVP_DigestUpdate(ctx, body, len)) &&
             EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return;
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[2 * md_len] = '\0';
}

void cm_idem_response_free(cm_idem_response_t *r)
{
    if (!r)
        return;
    free(r->location);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int cm_idem_lookup(cm_db_t *db, const char *scope, size_t scope_len, const char *key,
                   size_t key_len, const char *fingerprint, cm_idem_response_t *out)
{
    memset(out, 0, sizeof *out);
    if (!key || key_len == 0 || !fingerprint || !*fingerprint || !scope)
        return -EINVAL;
    cm_stmt_t *st = cm_db_stmt(db, SQL_LOOKUP);
    if (!st)
        return -EIO;
    if (cm_stmt_bind_text(st, 1, scope, scope_len) < 0 ||
        cm_stmt_bind_text(st, 2, key, key_len) < 0)
        return -EINVAL;
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_DONE) {
        cm_stmt_reset(st);
        return -ENOENT;
    }
    if (rc < 0)
        return rc;

    int err = 0;
    size_t fp_len = 0;
    const char *fp = cm_stmt_text(st, 0, &fp_len);
    if (!fp || fp_len != strlen(fingerprint) || memcmp(fp, fingerprint, fp_len) != 0) {
        err = -EEXIST;
        goto done;
    }
    out->status = (int)cm_stmt_int(st, 1);
    if (!cm_stmt_is_null(st, 2)) {
        size_t n = 0;
        const char *loc = cm_stmt_text(st, 2, &n);
        if (!(out->location = dup_n(loc, n))) {
            err = -ENOMEM;
            goto done;
        }
    }
    const char *body = cm_stmt_text(st, 3, &out->body_len);
    if (!(out->body = dup_n(body, out->body_len)))
        err = -ENOMEM;
done:
    if (err < 0)
        cm_idem_response_free(out);
    /* Release the read cursor: the caller goes on writing in this transaction. */
    cm_stmt_reset(st);
    return err;
}

int cm_idem_store(cm_db_t *db, const char *scope, size_t scope_len, const char *key, size_t key_len,
                  const char *fingerprint, int status, const char *location, const char *body,
                  size_t body_len)
{
    if (!key || key_len == 0 || !fingerprint || !*fingerprint || (!body && body_len) || !scope)
        return -EINVAL;
    cm_stmt_t *st = cm_db_stmt(db, SQL_STORE);
    if (!st)
        return -EIO;
    char now[32];
    cm_time_rfc3339(now);
    /* body "" rather than NULL: the column is NOT NULL and a 201 may be empty. */
    if (cm_stmt_bind_text(st, 1, scope, scope_len) < 0 ||
        cm_stmt_bind_text(st, 2, key, key_len) < 0 ||
        cm_stmt_bind_text(st, 3, fingerprint, strlen(fingerprint)) < 0 ||
        cm_stmt_bind_int(st, 4, status) < 0 ||
        cm_stmt_bind_text(st, 5, location, location ? strlen(location) : 0) < 0 ||
        cm_stmt_bind_text(st, 6, body ? body : "", body_len) < 0 ||
        cm_stmt_bind_text(st, 7, now, strlen(now)) < 0)
        return -EINVAL;
    /* the key was looked up under the same write lock: nothing but the store can make it
     * fail, so it rides with the unit's next round trip */
    return cm_stmt_defer(st);
}
