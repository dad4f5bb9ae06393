/* service/subject.h: the client a request speaks for, as a short opaque scope string,
 * so that state kept per client (Idempotency-Key records) never crosses clients.
 * Used by service/rest.c; reads only the request's Authorization header. */
#ifndef CMESH_SERVICE_SUBJECT_H
#define CMESH_SERVICE_SUBJECT_H

#include "core/http.h"

#define CM_SUBJECT_MAX 72 /* bytes of a scope with its NUL: "sub:" + 64 hex digits */

/* Writes the request's scope to out (NUL-terminated):
 * - "" without Authorization (auth off: every client is the same anonymous one);
 * - "sub:" + SHA-256 of iss NUL sub for a bearer JWT that carries a "sub" claim. The
 *   service does not verify tokens: the gateway did (auth on), and a route without auth
 *   has no identity to protect. Keyed by subject, not by token, so a retry after a token
 *   refresh still replays;
 * - "cred:" + SHA-256 of the whole header value for any other credential.
 * Hashes, so no subject is stored in the clear. */
void cm_subject_scope(const cm_req_t *req, char out[CM_SUBJECT_MAX]);

#endif
