/* service/rest.h: what a REST resource service needs beyond the HTTP core: JSON-only
 * writes (415), paging (?limit=&after= with a Link header), ETags with If-Match /
 * If-None-Match, Idempotency-Key replay, and the flow of one unsafe request's unit of
 * work (begin with the replay, refuse, end). Shared by users and orders; built on core
 * (HTTP), store (idempotency records) and service/batch (the units). */
#ifndef CMESH_SERVICE_REST_H
#define CMESH_SERVICE_REST_H

#include "service/batch.h"
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

/* Reads query parameter name as an integer from min to max with cm_num_parse() (decimal
 * digits after percent-decoding, nothing else). Returns 0 with *out set, -ENOENT when
 * absent, or -EINVAL after answering 422 naming the parameter. */
int cm_rest_query_num(cm_req_t *req, const char *name, int64_t min, int64_t max, int64_t *out);
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

/* The unit of work of an unsafe request, as users and orders run it (service/batch.h):
 * cm_rest_write_begin, the service's own write, then cm_rest_write_end or a refusal. */

/* Ends a unit that cannot go on for rc: builds the answer and holds it with
 * cm_batch_refuse(b, req, status). Handed down by the service, which words its outcomes
 * (users: 409 for a taken email) and leaves the rest to cm_rest_refuse. */
typedef void (*cm_rest_refuse_fn)(cm_req_t *req, cm_batch_t *b, int rc);

/* The refusal every service shares: res_body reset, then -ENOENT is 404 with not_found
 * as the message and any other rc the store error's answer (cm_rest_db_error_body); the
 * answer waits for the group like every answer decided in it. req must not be touched
 * afterwards. */
void cm_rest_refuse(cm_req_t *req, cm_batch_t *b, int rc, const char *not_found);

/* Starts the unit of an unsafe request on b (db is b's write connection) and answers a
 * replayed Idempotency-Key inside it (asked again inside the unit: another request may
 * have stored the key meanwhile; the key's record and the write commit together or not
 * at all). Returns 0 to go on (*idem set), or 1 when req was answered: the store error at
 * once when no unit began, the replay or 422 held, or a store error refused via refuse. */
int cm_rest_write_begin(cm_req_t *req, cm_batch_t *b, cm_db_t *db, cm_rest_idem_t *idem,
                        cm_rest_refuse_fn refuse);

/* Inside a unit, with res_body holding the item's current representation: checks the
 * write's preconditions against its ETag (cm_rest_write_precondition), res_body reset.
 * Returns 0 to go on, or 1 when they fail: 412 naming the header and the ETag of "the
 * <item>'s" current representation, held with cm_batch_refuse. */
int cm_rest_write_check_etag(cm_req_t *req, cm_batch_t *b, const char *item);

/* Ends a successful write: the key's record (status, Location, res_body) joins the unit,
 * then Location (when not NULL) and, but for DELETE, the ETag of res_body are set and the
 * answer is held for the commit (cm_batch_answer); a store error saving the record
 * refuses the unit via refuse instead. req must not be touched afterwards. */
void cm_rest_write_end(cm_req_t *req, cm_batch_t *b, cm_db_t *db, const cm_rest_idem_t *idem,
                       cm_rest_refuse_fn refuse, int status, const char *location);

#endif
