/* service/rest.h: what a REST resource service needs beyond the HTTP core: JSON-only
 * writes (415), paging (?limit=&after= with a Link header), ETags with If-Match /
 * If-None-Match, and Idempotency-Key replay. Shared by users and orders; built on
 * core (HTTP) and store (idempotency records). */
#ifndef CMESH_SERVICE_REST_H
#define CMESH_SERVICE_REST_H

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
/* True when an If-Match header is present and does not list etag ("*" lists all). */
int cm_rest_if_match_fails(const cm_req_t *req, const char *etag);

/* Idempotency-Key handling for a POST, inside the caller's unit of work.
 * Returns 0 when there is no key or it is new (*key set to the key or NULL, fp filled);
 * 1 when an answer is built in req and *status set, not sent: the stored answer (a
 * replay, with Idempotent-Replayed: true), or 422 for a key reused with another body
 * or malformed; a negative errno on a database error (nothing built). */
int cm_rest_idem_check(cm_req_t *req, cm_db_t *db, const char **key, size_t *key_len, char fp[65],
                       int *status);
/* Stores the answer about to be sent (status, Location, res_body) under key, in the
 * same transaction as the write. Returns 0 or a negative errno. */
int cm_rest_idem_save(cm_req_t *req, cm_db_t *db, const char *key, size_t key_len, const char *fp,
                      int status, const char *location);

/* Maps a store error to an answer: -EBUSY → 503 with Retry-After, else 500. */
void cm_rest_db_error(cm_req_t *req, int rc);

#endif
