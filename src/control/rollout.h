/* control/rollout.h: `cmesh rollout SERVICE`: replaces a service's instances with max
 * surge 1 and max unavailable 0, one explicit state machine per service. With n
 * instances at indexes 0..n-1 (ports base+i):
 *   1. a surge instance starts at index n (port base+n: an index >= the desired count,
 *      which the autoscaler counts as surge, not capacity), new definition;
 *   2. once it is ready and every follower of the registry came back past the index
 *      that published it (bounded by CM_RO_PUBLISH_MS), the first stale instance k is
 *      replaced in place: the supervisor's normal graceful stop, then a spawn of the new
 *      definition at the same index and port; the surge holds capacity meanwhile;
 *   3. once the replacement is ready (and published), the next stale one; at the end
 *      the surge leaves gracefully. Indexes and ports after a rollout are what they were.
 * "Stale" is an instance whose definition (defn.h) is not the current one; with none
 * stale every instance is replaced (the user asked for a restart). A new instance not
 * ready within the service's rollout_timeout, a surge that exits, or a replacement that
 * crash-loops fails the rollout: the surge is stopped, the old instances keep serving,
 * and the reason (its last exit and log line) is in /v1/status. Every step is an event.
 * The pure step function is separate from the glue (a 100 ms tick on the control
 * plane's loop, reading the supervisor) so that the unit tests drive it with tables. */
#ifndef CMESH_CONTROL_ROLLOUT_H
#define CMESH_CONTROL_ROLLOUT_H

#include <stdint.h>

#include <uv.h>

#include "control/events.h"
#include "control/registry.h"
#include "control/supervise.h"
#include "core/buf.h"

#define CM_RO_TICK_MS    100  /* how often a running rollout looks at its instances */
#define CM_RO_PUBLISH_MS 5000 /* longest wait for the followers to come back past an index */

typedef enum {
    CM_RO_IDLE,    /* never ran */
    CM_RO_SURGE,   /* the surge instance (index n) started: waits until it is ready → PUBLISH;
                      it exits or the timeout passes → FAILED */
    CM_RO_PUBLISH, /* a new instance is ready: waits until the followers parked again past
                      the index that published it (or CM_RO_PUBLISH_MS) → REPLACE / LEAVE */
    CM_RO_REPLACE, /* instance cur is being replaced: waits until a new pid of it is ready
                      → PUBLISH; crash loop or timeout → FAILED */
    CM_RO_LEAVE,   /* every instance replaced: the surge stops gracefully → DONE at its exit */
    CM_RO_DONE,    /* finished */
    CM_RO_FAILED,  /* stopped; reason says why */
} cm_ro_state_t;

const char *cm_ro_state_name(cm_ro_state_t s); /* "surge" */

typedef struct cm_ro {
    cm_ro_state_t state;
    int n;                /* instances at the start: the surge is at index n */
    uint64_t restart_set; /* bit i: instance i is replaced though not stale (a restart) */
    int cur;              /* the instance waited for (n = the surge) */
    int old_pid;          /* REPLACE: the pid it had */
    int seen_running;     /* SURGE: the surge had a process */
    uint64_t deadline;    /* ms (loop time): SURGE/REPLACE fail after it */
    uint64_t timeout_ms;  /* rollout_timeout */
    uint64_t pub_index;   /* PUBLISH: the service's registry index when cur was ready */
    uint64_t pub_until;   /* PUBLISH: proceed anyway after this */
    int pub_want;         /* followers of the service before the step */
    int replaced, total;  /* progress */
    char reason[768];     /* FAILED: why; DONE: a summary */
    char note[512];       /* the step just taken (an event), cleared by the caller */
} cm_ro_t;

/* What a step sees: the service now. inst[i] for i in 0..n (n = the surge). */
typedef struct cm_ro_view {
    uint64_t now;          /* ms, loop time */
    int count;             /* the desired count now */
    char def[CM_DEFN_LEN]; /* the current definition */
    cm_sup_inst_t inst[CM_SPEC_MAX_INST];
    uint64_t reg_index; /* the service's registry index */
    int watchers;       /* followers parked on the service */
    int watchers_past;  /* of them, parked at >= ro->pub_index */
    int gateways;       /* running gateways */
    int gateways_past;  /* of them, acknowledged >= ro->pub_index: it is in their tables */
} cm_ro_view_t;

typedef enum { CM_RO_ACT_NONE, CM_RO_ACT_SURGE, CM_RO_ACT_RESTART, CM_RO_ACT_STOP } cm_ro_act_t;

typedef struct cm_ro_action {
    cm_ro_act_t act;
    int index;
} cm_ro_action_t;

/* Starts a rollout of a service with v->count instances (pure). Returns the first action
 * (the surge), or NONE with state DONE (nothing to replace) / FAILED (no room). */
cm_ro_action_t cm_ro_begin(cm_ro_t *ro, const cm_ro_view_t *v, uint64_t timeout_ms);
/* One step (pure): looks at v, maybe moves on; returns what the caller must do. */
cm_ro_action_t cm_ro_step(cm_ro_t *ro, const cm_ro_view_t *v);

/* ---- the glue: every service's rollout on the control plane's loop ---- */

typedef struct cm_rollouts cm_rollouts_t; /* opaque */

/* sup, reg and events are borrowed and outlive it. Caller owns *out. */
int cm_rollouts_new(uv_loop_t *loop, cm_sup_t *sup, cm_registry_t *reg, cm_events_t *events,
                    cm_rollouts_t **out);
/* Closes its timer (the loop must run once more); NULL is a no-op. */
void cm_rollouts_free(cm_rollouts_t *r);
/* Starts a rollout of service. Returns 0, -EBUSY (one runs), -EINVAL (the gateway: one
 * instance owning its port cannot surge), -ENOENT, -ESHUTDOWN. */
int cm_rollouts_start(cm_rollouts_t *r, const char *service);
int cm_rollouts_running(const cm_rollouts_t *r, const char *service); /* 1 while one runs */
/* The control plane is stopping: running rollouts end (FAILED), nothing more is done. */
void cm_rollouts_shutdown(cm_rollouts_t *r);
/* Appends service's last rollout as a JSON object, or null when none ran. */
void cm_rollouts_render(const cm_rollouts_t *r, const char *service, cm_buf_t *out);

#endif
