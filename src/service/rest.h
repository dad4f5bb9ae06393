/* service/rest.h: what a REST resource service needs beyond the HTTP core: JSON-only
 * writes (415), paging (?limit=&after= with a Link header), ETags with If-Match /
 * If-None-Match, and Idempotency-Key replay. Shared by users and orders; built on
 * core (HTTP) and store (idempotency records). */
#ifndef CMESH_SERVICE_REST_H
#define CMESH_SERVICE_REST_H

#include "service/subject.h"

#include <stdint.h>

#include <jansson.h>

#include "core/http.h"
#include "store/db.h"

#define CM_REST_LIMIT_DEFAULT 100
#define CM_REST_LIMIT_MAX     1000

/* Answers 415 and returns -EINVAL unless Content-Type is application/json
 * (parameters such as charset allowed). Returns 0 when it is. */
int cm_rest_require_json(cm_req_t *req);

/* Parses the body as a JSON object; answers 400 and returns NULL when it is not.
 * Caller owns the returned reference. */
json_t *cm_rest_body_object(cm_req_t *req);

/* Reads ?limit= and ?after=; answers 422 (field "limit"/"after") and returns
 * -EINVAL when either is bad. */
int cm_rest_page(cm_req_t *req, int *limit, int64_t *after);
/* Adds `Link: <path?...&limit=L&after=LAST>; rel="next"`; extra is "" or "userId=5&". */
void cm_rest_link_next(cm_req_t *req, const char *path, const char *extra, int limit,
                       int64_t last_id);

/* Strong ETag of a representation: "\"<16 hex>\"" (FNV-1a 64); out has 20 bytes. */
void cm_rest_etag(const char *body, size_t len, char out[20]);
/* Adds the ETag header of the representation in res_body. */
void cm_rest_add_etag(cm_req_t *req);
/* Answers a read of one item: rc is the store's result (0 with the item in res_body):
 * 200 with its ETag, 304 when If-None-Match holds it, 404 {"error": not_found}, or a
 * store error. */
void cm_rest_answer_item(cm_req_t *req, int rc, const char *not_found);
/* True when If-None-Match lists etag (or is "*"). */
int cm_rest_none_match_hits(const cm_req_t *req, const char *etag);
/* True when an If-Match header is present and does not list etag ("*" lists all).
 * Strong comparison (RFC 9110 13.1.1): a weak tag W/"..." never matches. */
int cm_rest_if_match_fails(const cm_req_t *req, const char *etag);
/* The preconditions of a PUT/DELETE on an existing resource whose current ETag is etag
 * (RFC 9110 13.2.2): returns "If-Match" when it fails, "If-None-Match" when that lists
 * etag or is "*" (13.1.2: 412 for methods other than GET/HEAD), or NULL to go on. */
const char *cm_rest_write_precondition(const cm_req_t *req, const char *etag);

/* One request's Idempotency-Key, scoped to its client (service/subject.h). */
typedef struct cm_rest_idem {
    const char *key; /* borrowed from the request; NULL when none was sent */
    size_t key_len;
    char fp[65];                /* fingerprint of method, path and body */
    char scope[CM_SUBJECT_MAX]; /* the client's scope */
} cm_rest_idem_t;

/* Idempotency-Key handling for an unsafe request (POST, PUT, DELETE), inside the
 * caller's unit of work (or on a read snapshot, for a replay of committed answers).
 * Returns 0 when there is no key or it is new (idem->key set to the key or NULL);
 * 1 when an answer is built in req and *status set, not sent: the stored answer (a
 * replay, with Idempotent-Replayed: true), or 422 for a key reused with another
 * request or malformed; a negative errno on a database error (nothing built). */
int cm_rest_idem_check(cm_req_t *req, cm_db_t *db, cm_rest_idem_t *idem, int *status);
/* Stores the answer about to be sent (status, Location, res_body) under idem's key, in
 * the same transaction as the write; no-op without a key. Returns 0 or a negative errno. */
int cm_rest_idem_save(cm_req_t *req, cm_db_t *db, const cm_rest_idem_t *idem, int status,
                      const char *location);

/* Builds (does not send) the answer to a store error and returns its status: 503 with
 * Retry-After for what passes (busy, disk full, read-only or moved file, I/O error),
 * 500 for the rest (out of memory, a bad call). */
int cm_rest_db_error_body(cm_req_t *req, int rc);
/* The same, sent. */
void cm_rest_db_error(cm_req_t *req, int rc);

#endif
