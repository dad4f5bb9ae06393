/* core/client.h: a non-blocking HTTP client on a libuv loop (libcurl's multi-socket
 * API driven by uv_poll and a uv_timer), with keep-alive connection reuse.
 * Used by orders to ask users whether a user exists; one client per worker loop. */
#ifndef CMESH_CORE_CLIENT_H
#define CMESH_CORE_CLIENT_H

#include <stddef.h>

#include <uv.h>

typedef struct cm_client cm_client_t; /* opaque; lives on one loop, one thread */

/* Initialises libcurl for the whole process (curl_global_init). main calls it once,
 * before it starts any thread; tests call it before cm_client_new().
 * Returns 0, or -EIO when libcurl could not be initialised. */
int cm_client_global_init(void);

/* status: the HTTP status (100..599), or a negative errno when no response came:
 * -ETIMEDOUT past the timeout, -ECONNREFUSED / -EHOSTUNREACH when it could not
 * connect, -ECANCELED when the client was freed first, -EIO otherwise.
 * body is never NULL (empty "" with len 0 when no response came), NUL-terminated,
 * borrowed for the duration of the call only. Bodies above 1 MiB give -EIO.
 * The callback may call cm_client_get() or cm_client_free() on the same client. */
typedef void (*cm_client_cb)(int status, const char *body, size_t len, void *data);

/* Caller owns *out; free with cm_client_free(). Returns 0 or -ENOMEM. */
int cm_client_new(uv_loop_t *loop, cm_client_t **out);
/* Every pending request's callback fires with -ECANCELED before this returns;
 * handles are closed on the loop afterwards, so run the loop once more. NULL is a no-op. */
void cm_client_free(cm_client_t *c);

/* Starts GET url (http:// or https:// only). request_id, when not NULL, is sent as
 * X-Request-Id; Accept: application/json is always sent. timeout_ms (> 0) bounds the
 * whole exchange; connecting gets at most min(timeout_ms, 1000) ms of it.
 * cb fires exactly once, later, on the loop: never from inside this call.
 * Returns 0, or -ENOMEM / -EINVAL (bad url, zero timeout, CR/LF in request_id, NULL cb)
 * / -ECANCELED (called from a callback while the client is being freed); on error cb
 * never fires. */
int cm_client_get(cm_client_t *c, const char *url, unsigned timeout_ms, const char *request_id,
                  cm_client_cb cb, void *data);

/* The same for POST url with an empty body (no request id). */
int cm_client_post(cm_client_t *c, const char *url, unsigned timeout_ms, cm_client_cb cb,
                   void *data);

/* PUT url with a JSON body (len bytes, copied; Content-Type: application/json); the
 * rest as cm_client_get. Used by the gateway's drain reports to the control plane. */
int cm_client_put_json(cm_client_t *c, const char *url, const char *body, size_t len,
                       unsigned timeout_ms, cm_client_cb cb, void *data);

/* Inside a callback (status >= 0) only: copies the last response's header name (any
 * case) into out. 0, -ENOENT (absent, or not inside a callback), -ENAMETOOLONG. */
int cm_client_header(cm_client_t *c, const char *name, char *out, size_t cap);

#endif
