/* service/rest.c: REST helpers shared by the resource services (see rest.h). */
#include "service/rest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/num.h"
#include "store/idempotency.h"

int cm_rest_require_json(cm_req_t *req)
{
    size_t len;
    const char *ct = cm_req_header(req, "Content-Type", &len);
    static const char want[] = "application/json";
    size_t wl = sizeof want - 1;
    if (ct && len >= wl && strncasecmp(ct, want, wl) == 0 &&
        (len == wl || ct[wl] == ';' || ct[wl] == ' '))
        return 0;
    cm_res_error(req, 415, "Content-Type must be application/json");
    return -EINVAL;
}

json_t *cm_rest_body_object(cm_req_t *req)
{
    char err[200];
    json_t *o = cm_json_parse_object(req->body.p, req->body.len, err, sizeof err);
    if (!o)
        cm_res_error(req, 400, "%s", err);
    return o;
}

int cm_rest_query_num(cm_req_t *req, const char *name, int64_t min, int64_t max, int64_t *out)
{
    char v[32]; /* INT64_MAX has 19 digits: a longer value is out of range or malformed */
    int n = cm_req_query(req, name, v, sizeof v);
    if (n == -ENOENT)
        return -ENOENT;
    if (n >= 0 && cm_num_parse(v, (size_t)n, min, max, out) == 0)
        return 0;
    /* one answer for malformed and out of range: decimal digits only (no sign, space,
     * leading zero or anything after them), within the range */
    cm_res_error_field(req, 422, name, "%s must be a decimal integer from %lld to %lld", name,
                       (long long)min, (long long)max);
    return -EINVAL;
}

int cm_rest_page(cm_req_t *req, int *limit, int64_t *after)
{
    int64_t l;
    *limit = CM_REST_LIMIT_DEFAULT;
    *after = 0;
    int rc = cm_rest_query_num(req, "limit", 1, CM_REST_LIMIT_MAX, &l);
    if (rc == -EINVAL)
        return rc;
    if (rc == 0)
        *limit = (int)l;
    rc = cm_rest_query_num(req, "after", 0, INT64_MAX, after);
    return rc == -EINVAL ? rc : 0;
}

void cm_rest_link_next(cm_req_t *req, const char *path, const char *extra, int limit,
                       int64_t last_id)
{
    cm_res_header(req, "Link", "<%s?%slimit=%d&after=%lld>; rel=\"next\"", path, extra, limit,
                  (long long)last_id);
}

void cm_rest_etag(const char *body, size_t len, char out[20])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= 0x100000001b3ULL;
    }
    static const char digits[] = "0123456789abcdef";
    out[0] = '"';
    for (int i = 16; i >= 1; i--, h >>= 4)
        out[i] = digits[h & 15];
    out[17] = '"';
    out[18] = '\0';
}

void cm_rest_add_etag(cm_req_t *req)
{
    char etag[20];
    cm_rest_etag(req->res_body.data, req->res_body.len, etag);
    cm_res_header_str(req, "ETag", etag);
}

void cm_rest_answer_item(cm_req_t *req, int rc, const char *not_found)
{
    if (rc < 0) {
        cm_buf_reset(&req->res_body);
        if (rc == -ENOENT)
            cm_res_error(req, 404, "%s", not_found);
        else
            cm_rest_db_error(req, rc);
        return;
    }
    char etag[20];
    cm_rest_etag(req->res_body.data, req->res_body.len, etag);
    cm_res_header_str(req, "ETag", etag);
    if (cm_rest_none_match_hits(req, etag)) {
        cm_buf_reset(&req->res_body);
        cm_res_send(req, 304);
        return;
    }
    cm_res_send(req, 200);
}

/* True when the comma-separated list in header name contains etag or "*". weak: the
 * weak comparison (W/ ignored, If-None-Match); else a weak tag never matches. */
static int header_lists(const cm_req_t *req, const char *name, const char *etag, int weak,
                        int *present)
{
    size_t len;
    const char *v = cm_req_header(req, name, &len);
    *present = v != NULL;
    if (!v)
        return 0;
    size_t el = strlen(etag);
    const char *end = v + len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == ','))
            v++;
        const char *tok = v;
        while (v < end && *v != ',')
            v++;
        const char *tend = v;
        while (tend > tok && tend[-1] == ' ')
            tend--;
        size_t tl = (size_t)(tend - tok);
        if (tl == 1 && *tok == '*')
            return 1;
        if (tl >= 2 && tok[0] == 'W' && tok[1] == '/') {
            if (!weak)
                continue; /* RFC 9110 13.1.1: If-Match uses the strong comparison */
            tok += 2;
            tl -= 2;
        }
        if (tl == el && memcmp(tok, etag, el) == 0)
            return 1;
    }
    return 0;
}

int cm_rest_none_match_hits(const cm_req_t *req, const char *etag)
{
    int present;
    return header_lists(req, "If-None-Match", etag, 1, &present);
}

int cm_rest_if_match_fails(const cm_req_t *req, const char *etag)
{
    int present;
    int hit = header_lists(req, "If-Match", etag, 0, &present);
    return present && !hit;
}

const char *cm_rest_write_precondition(const cm_req_t *req, const char *etag)
{
    if (cm_rest_if_match_fails(req, etag))
        return "If-Match";
    if (cm_rest_none_match_hits(req, etag))
        return "If-None-Match";
    return NULL;
}

int cm_rest_idem_check(cm_req_t *req, cm_db_t *db, cm_rest_idem_t *idem, int *status)
{
    size_t len;
    const char *k = cm_req_header(req, "Idempotency-Key", &len);
    idem->key = NULL;
    idem->key_len = 0;
    if (!k)
        return 0;
    if (len == 0 || len > 255) {
        cm_res_error_body(req, "Idempotency-Key", "Idempotency-Key must be 1-255 characters");
        *status = 422;
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)req->path.len, req->path.p);
    cm_idem_fingerprint(req->method_name, path, req->body.p, req->body.len, idem->fp);
    cm_subject_scope(req, idem->scope);
    cm_idem_response_t prev = {0};
    int rc = cm_idem_lookup(db, idem->scope, strlen(idem->scope), k, len, idem->fp, &prev);
    if (rc == -ENOENT) {
        idem->key = k;
        idem->key_len = len;
        return 0;
    }
    if (rc == -EEXIST) {
        cm_res_error_body(req, "Idempotency-Key",
                          "Idempotency-Key was already used with a different request");
        *status = 422;
        return 1;
    }
    if (rc < 0)
        return rc;
    cm_buf_reset(&req->res_body);
    cm_buf_append(&req->res_body, prev.body, prev.body_len);
    if (prev.location)
        cm_res_header(req, "Location", "%s", prev.location);
    if (prev.status >= 200 && prev.status < 300 && req->method != CM_DELETE) {
        char etag[20]; /* the answer carried the item, and its ETag */
        cm_rest_etag(prev.body, prev.body_len, etag);
        cm_res_header_str(req, "ETag", etag);
    }
    cm_res_header(req, "Idempotent-Replayed", "true");
    *status = prev.status;
    cm_idem_response_free(&prev);
    return 1;
}

int cm_rest_idem_save(cm_req_t *req, cm_db_t *db, const cm_rest_idem_t *idem, int status,
                      const char *location)
{
    if (!idem->key)
        return 0;
    return cm_idem_store(db, idem->scope, strlen(idem->scope), idem->key, idem->key_len, idem->fp,
                         status, location, req->res_body.data, req->res_body.len);
}

int cm_rest_db_error_body(cm_req_t *req, int rc)
{
    const char *why;
    switch (rc) {
    case -EBUSY:
        why = "database is busy";
        break;
    case -ENOSPC:
        why = "database disk is full";
        break;
    case -EROFS:
        why = "database is read-only";
        break;
    case -ESTALE:
        why = "database file was moved or deleted";
        break;
    case -EIO:
        why = "database error";
        break;
    case -ETIMEDOUT: /* db.h: the commit's outcome is unknown; not "nothing was stored" */
        cm_res_error_body(req, NULL, "%s", CM_BATCH_UNKNOWN_OUTCOME);
        return 500;
    default:
        cm_res_error_body(req, NULL, "database error");
        return 500;
    }
    /* nothing of the request was stored: saying so, and when to come back */
    cm_res_header(req, "Retry-After", "1");
    cm_res_error_body(req, NULL, "%s; retry", why);
    return 503;
}

void cm_rest_db_error(cm_req_t *req, int rc)
{
    int status = cm_rest_db_error_body(req, rc);
    cm_res_send(req, status);
}

void cm_rest_refuse(cm_req_t *req, cm_batch_t *b, int rc, const char *not_found)
{
    int status;
    cm_buf_reset(&req->res_body);
    if (rc == -ENOENT) {
        cm_res_error_body(req, NULL, "%s", not_found);
        status = 404;
    } else {
        status = cm_rest_db_error_body(req, rc);
    }
    cm_batch_refuse(b, req, status);
}

int cm_rest_write_begin(cm_req_t *req, cm_batch_t *b, cm_db_t *db, cm_rest_idem_t *idem,
                        cm_rest_refuse_fn refuse)
{
    int rc, status;
    if ((rc = cm_batch_begin(b)) < 0) {
        cm_rest_db_error(req, rc);
        return 1;
    }
    rc = cm_rest_idem_check(req, db, idem, &status);
    if (rc == 1) {
        cm_batch_answer(b, req, status);
        return 1;
    }
    if (rc < 0) {
        refuse(req, b, rc);
        return 1;
    }
    return 0;
}

int cm_rest_write_check_etag(cm_req_t *req, cm_batch_t *b, const char *item)
{
    char etag[20];
    cm_rest_etag(req->res_body.data, req->res_body.len, etag);
    cm_buf_reset(&req->res_body);
    const char *failed = cm_rest_write_precondition(req, etag);
    if (!failed)
        return 0;
    if (strcmp(failed, "If-Match") == 0)
        cm_res_error_body(req, NULL, "If-Match does not match the %s's current ETag %s", item,
                          etag);
    else
        cm_res_error_body(req, NULL, "If-None-Match matches the %s's current ETag %s", item, etag);
    cm_batch_refuse(b, req, 412);
    return 1;
}

void cm_rest_write_end(cm_req_t *req, cm_batch_t *b, cm_db_t *db, const cm_rest_idem_t *idem,
                       cm_rest_refuse_fn refuse, int status, const char *location)
{
    int rc = cm_rest_idem_save(req, db, idem, status, location);
    if (rc < 0) {
        refuse(req, b, rc);
        return;
    }
    if (location)
        cm_res_header_str(req, "Location", location);
    if (req->method != CM_DELETE)
        cm_rest_add_etag(req);
    cm_batch_answer(b, req, status);
}
