/* control/supervise.h: the supervisor. Runs each instance of each service as a child
 * process in its own session (uv_spawn, detached) with its output appended to a log
 * file per instance (rotated by size), restarts what exits with jittered exponential
 * backoff, adopts instances an earlier control plane left running (state.c records:
 * pid + /proc start time), probes them (probe.c) and publishes every instance's state
 * to the registry. Stop is graceful: out of routing first (LEAVING), then, once every
 * running gateway acknowledged the registry index at which it left and has no request
 * in flight to it (or after its drain timeout), SIGTERM to the instance's process
 * group, SIGKILL after its drain timeout.
 * Owned by up.c; one loop; knows nothing of HTTP beyond the probes. */
#ifndef CMESH_CONTROL_SUPERVISE_H
#define CMESH_CONTROL_SUPERVISE_H

#include <stdint.h>

#include <uv.h>

#include "control/acks.h"
#include "control/defn.h"
#include "control/events.h"
#include "control/load.h"
#include "control/registry.h"
#include "control/spec.h"
#include "core/client.h"

#define CM_SUP_BACKOFF_BASE_MS 1000        /* the first delayed restart (the first is at once) */
#define CM_SUP_BACKOFF_CAP_MS  30000       /* never longer between restarts */
#define CM_SUP_STABLE_MS       10000       /* a run this long resets the backoff */
#define CM_SUP_LOG_MAX         (10u << 20) /* bytes per log file before rotation (kubelet) */
#define CM_SUP_LOG_KEEP        5           /* rotated files kept: .1 .. .5 */

/* The delay before restart number `failures` (0 = the first unexpected exit: at once;
 * then base·2^(n-1) capped, with "equal jitter": half fixed, half random from rnd).
 * Pure: the supervisor passes a random number, tests pass fixed ones. */
uint64_t cm_sup_backoff_ms(int failures, uint32_t rnd);

typedef struct cm_sup cm_sup_t; /* opaque */

typedef struct cm_sup_hooks {
    /* The set of routable (ready) instances of service changed: up.c rewrites the
     * gateway's file. May be NULL. */
    void (*on_routing)(void *arg, const char *service);
    /* Every instance is ready (once per time it becomes true), for --wait. May be NULL. */
    void (*on_all_ready)(void *arg);
    /* Every 2 s, before the round of /metrics scrapes starts: the windows of the last
     * round are in (up.c records the dashboard's history). May be NULL. */
    void (*on_tick)(void *arg);
    void *arg;
    cm_events_t *events; /* where restarts are recorded; may be NULL */
    /* the gateways' acknowledgements (api.c writes them): a leaving instance gets its
     * SIGTERM once every running gateway acknowledged and drained it. NULL: no gateway
     * is waited for (the unit tests) */
    cm_acks_t *acks;
} cm_sup_hooks_t;

/* spec, reg and client are borrowed and must outlive the supervisor. self is this
 * binary's path (instances of cmesh commands run it). Caller owns *out. */
int cm_sup_new(uv_loop_t *loop, const cm_spec_t *spec, cm_registry_t *reg, cm_client_t *client,
               const char *self, const cm_sup_hooks_t *hooks, cm_sup_t **out);
/* Adopts every live instance recorded in the state directory and spawns the rest up to
 * each service's count (scale.json, else the spec's). Returns 0 or -errno. */
int cm_sup_start(cm_sup_t *s);
/* Sets service's count; extra instances are stopped gracefully (highest index first),
 * missing ones spawned. Returns 0, -ENOENT (no such service) or -EINVAL. */
int cm_sup_scale(cm_sup_t *s, const char *service, int count);
int cm_sup_count(const cm_sup_t *s, const char *service); /* desired, -1 unknown */
/* Stops everything gracefully: the gateway first, then the services in reverse order
 * of the file (orders before the users it calls); done(arg) once all exited. */
void cm_sup_stop_all(cm_sup_t *s, void (*done)(void *arg), void *arg);
/* Detaches without stopping anything (the instances keep running for the next control
 * plane to adopt): closes handles; the loop must run once more. Frees s. */
void cm_sup_free(cm_sup_t *s);

/* The URLs of service's routable instances: ready ones, or when none is, every one
 * with a process (the gateway's own health checks pick among them). Caller frees. */
int cm_sup_urls(const cm_sup_t *s, const char *service, char ***urls, int *n);
/* The pid of the gateway, 0 when it is not running. */
int cm_sup_pid(const cm_sup_t *s, const char *service, int index);
/* Requests per second and p99 latency (ms; -1 when it served none) of the instance
 * between its last two /metrics scrapes (every 2 s). Returns 0, -ENOENT when not known. */
int cm_sup_load(const cm_sup_t *s, const char *service, int index, double *rps, double *p99_ms);
/* The same window as counters: requests, 5xx answers and latency buckets between the
 * last two scrapes (*w), and its length (*dt_ms), for error rates and a service's merged
 * p99. Returns 0, -ENOENT when not known. */
int cm_sup_window(const cm_sup_t *s, const char *service, int index, cm_load_sample_t *w,
                  uint64_t *dt_ms);
/* 1 when the instance is running and ready. */
int cm_sup_ready(const cm_sup_t *s, const char *service, int index);
/* A gateway acknowledged (api.c stored it in hooks.acks): leaving instances are checked
 * again, and those every gateway has drained get their SIGTERM. */
void cm_sup_acked(cm_sup_t *s);
/* 1 when the instance is LEAVING, with the registry index at which it left and the
 * gateways still waited for ("gateway/0 gateway/1", "" none) in waiting; else 0. */
/* How many running gateways have acknowledged an index >= index for service (every worker
 * of theirs routes on that set or a later one; one that follows no such service counts);
 * *total gets how many are running. For the rollout: "in every gateway's set". */
int cm_sup_gateways_applied(const cm_sup_t *s, const char *service, uint64_t index, int *total);
int cm_sup_leaving(const cm_sup_t *s, const char *service, int index, uint64_t *left_index,
                   char *waiting, size_t cap);

/* The last lines of an instance's log (for a crash loop's status). Caller frees. */
char *cm_sup_log_tail(const cm_sup_t *s, const char *service, int index, int lines);

/* One instance as the rollout sees it. */
typedef struct cm_sup_inst {
    int exists;            /* the slot was ever used */
    int pid;               /* 0: no process */
    cm_inst_state_t state; /* READY = routed */
    int last_exit;         /* of its last run, -1 none */
    char def[CM_DEFN_LEN]; /* the definition it runs ("" unknown) */
} cm_sup_inst_t;

/* Returns 0, or -ENOENT (no such service or slot: *out says exists 0). */
int cm_sup_inst(const cm_sup_t *s, const char *service, int index, cm_sup_inst_t *out);
/* The definition a spawn of service would run now (its spec and the binary on disk). */
int cm_sup_def(const cm_sup_t *s, const char *service, char out[CM_DEFN_LEN]);
uint64_t cm_sup_rollout_ms(const cm_sup_t *s, const char *service); /* rollout_timeout */
/* Starts a surge instance at index >= the count (a rollout's extra one: the autoscaler
 * counts it as surge, not capacity); it is never restarted and leaves the registry
 * when it exits. Returns 0, -EINVAL, -EBUSY (it runs), -ESHUTDOWN. */
int cm_sup_surge(cm_sup_t *s, const char *service, int index);
/* Replaces instance index < count: the normal graceful stop, then a spawn of the current
 * definition when it exited (at once when nothing runs). Returns 0, -EINVAL, -ESHUTDOWN. */
int cm_sup_restart(cm_sup_t *s, const char *service, int index);
/* Stops an instance at index >= the count (a surge) gracefully. Returns 0 or -EINVAL. */
int cm_sup_stop_one(cm_sup_t *s, const char *service, int index);
/* Reload: spec replaces the one the supervisor borrows (which must stay alive as long as
 * the supervisor: instances still running it point into it). Services are matched by
 * name: one gone is stopped, a new one started, a changed instances: scaled to the file's
 * count; a changed definition is only noted (new spawns run it: the rollout replaces the
 * running ones). Adding or removing the gateway is refused (-EINVAL). Returns 0 or -errno. */
int cm_sup_respec(cm_sup_t *s, const cm_spec_t *spec);

#endif
