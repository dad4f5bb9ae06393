/* control/probe.h: readiness and liveness probes of one instance: GET a path every
 * interval through core/client, count successes (2xx/3xx) and failures (anything else,
 * a timeout, no connection) against rise/fall, and report each change of verdict.
 * The counting is a pure function (cm_probe_count) so it is tested without sockets.
 * Owned by supervise.c, one per instance and kind. */
#ifndef CMESH_CONTROL_PROBE_H
#define CMESH_CONTROL_PROBE_H

#include <uv.h>

#include "control/spec.h"
#include "core/client.h"

typedef struct cm_probe_counter {
    int rise, fall; /* thresholds from the spec */
    int ok_run;     /* successes in a row */
    int fail_run;   /* failures in a row */
    int passing;    /* the current verdict */
} cm_probe_counter_t;

/* passing is the verdict before the first probe (readiness: 0, liveness: 1). */
void cm_probe_counter_init(cm_probe_counter_t *c, int rise, int fall, int passing);
/* Adds one result. Returns 1 when the verdict became passing, -1 when it became
 * failing, 0 when it did not change. */
int cm_probe_count(cm_probe_counter_t *c, int ok);

typedef struct cm_probe cm_probe_t; /* opaque */

/* Called on each change of verdict (passing 1/0), on the loop, never from inside a
 * cm_probe_* call. */
typedef void (*cm_probe_cb)(cm_probe_t *p, int passing, void *data);

/* Probes http://host:port + spec->path every spec->interval_ms (the first at once; while
 * the verdict has never passed, every 50 ms, so a new instance is ready when it answers).
 * client is borrowed and must outlive the probe. Caller owns *out (cm_probe_free).
 * Returns 0 or -ENOMEM. */
int cm_probe_new(uv_loop_t *loop, cm_client_t *client, const cm_probe_spec_t *spec,
                 const char *host, int port, int passing, cm_probe_cb cb, void *data,
                 cm_probe_t **out);
int cm_probe_passing(const cm_probe_t *p);
/* Stops probing; an answer still on its way is ignored. The memory is freed once the
 * timer closed and no request is outstanding. NULL is a no-op. */
void cm_probe_free(cm_probe_t *p);

#endif
