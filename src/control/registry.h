/* control/registry.h: service → instances (address, state, pid, restarts), with one
 * index that grows on every change and never goes backwards, also across restarts of
 * the control plane (it starts at epoch << 32, the epoch from state.c). Blocking watches
 * in Consul's style: a watcher names the index it has seen and is called back as soon as
 * the service (or, with no service, anything) changes past it, or when its wait ends.
 * No polling: watchers sit on a list and a change walks it. Lives on one loop; the
 * supervisor writes it, api.c reads it. Knows nothing of HTTP or processes. */
#ifndef CMESH_CONTROL_REGISTRY_H
#define CMESH_CONTROL_REGISTRY_H

#include <stdint.h>

#include <uv.h>

typedef enum {
    CM_INST_STARTING,  /* spawned (or adopted), readiness not passed yet; not routed */
    CM_INST_READY,     /* readiness passes: in the routing set */
    CM_INST_CRITICAL,  /* was ready, readiness now fails: out of routing, still running */
    CM_INST_LEAVING,   /* stop asked: out of routing, still running, not signalled; waits
                          for every gateway to acknowledge and drain it (acks.h) */
    CM_INST_DRAINING,  /* leaving: out of routing, SIGTERM sent, waiting for its exit */
    CM_INST_BACKOFF,   /* exited; restarts after its backoff delay */
    CM_INST_CRASHLOOP, /* exited again soon after restarts: backoff at its cap (still retried) */
    CM_INST_STOPPED,   /* not running and not to be restarted (scaled away, down) */
} cm_inst_state_t;

const char *cm_inst_state_name(cm_inst_state_t s); /* "ready" */

typedef struct cm_reg_inst {
    int index;      /* users/0 → 0 */
    char host[256]; /* where it listens */
    int port;
    int pid; /* 0 when no process runs */
    cm_inst_state_t state;
    int restarts;       /* unexpected exits restarted so far */
    int last_exit;      /* exit status of the last run (128+N for signal N), -1 none */
    int64_t started_ms; /* wall clock of the current (or last) spawn */
    int adopted;        /* 1: running since an earlier control plane */
    char ext_id[48];    /* registered by hand (external.c): its id; "" = supervised */
    int64_t ttl_ms;     /* registered by hand: a heartbeat within this or it is removed */
    char def[17];       /* the definition it runs (control/defn.h); "" unknown */
} cm_reg_inst_t;

#define CM_REG_EXT_BASE 1000 /* indexes of hand-registered instances start here */

typedef struct cm_registry cm_registry_t; /* opaque */

/* Caller owns *out (cm_registry_free). epoch from cm_state_next_epoch. Returns 0 or -ENOMEM. */
int cm_registry_new(uv_loop_t *loop, uint64_t epoch, cm_registry_t **out);
/* Every waiter is called (timed_out 1) first; its timer handles close on the loop, so
 * run the loop once more before closing it. NULL is a no-op. */
void cm_registry_free(cm_registry_t *r);

uint64_t cm_registry_index(const cm_registry_t *r); /* of everything */
/* The last index at which service changed; 0 when it is unknown. */
uint64_t cm_registry_service_index(const cm_registry_t *r, const char *service);

/* Adds or replaces instance inst->index of service (created on first use). Bumps the
 * index and wakes watchers only when something changed. Returns 1 changed, 0 same, or
 * -ENOMEM. */
int cm_registry_put(cm_registry_t *r, const char *service, const cm_reg_inst_t *inst);
/* Removes an instance (scaled away). Returns 1 removed, 0 absent. */
int cm_registry_remove(cm_registry_t *r, const char *service, int index);

/* Reading: services by position, their instances by position (sorted by index).
 * Pointers are borrowed until the next put/remove. */
int cm_registry_nservices(const cm_registry_t *r);
const char *cm_registry_service_name(const cm_registry_t *r, int i);
int cm_registry_ninstances(const cm_registry_t *r, const char *service); /* -1 unknown */
const cm_reg_inst_t *cm_registry_instance(const cm_registry_t *r, const char *service, int i);

/* Called once: changed 1 when the index passed the one the watcher had, 0 when its wait
 * ended (or the registry is being freed). Never from inside cm_registry_watch. */
typedef void (*cm_registry_watch_cb)(int changed, void *data);

/* Calls cb once service (NULL: anything) changes past index, or after wait_ms. The
 * caller checks the current index first: a watch whose index is already passed is
 * refused with -EALREADY (answer at once instead). Returns 0, -EALREADY or -ENOMEM. */
int cm_registry_watch(cm_registry_t *r, const char *service, uint64_t index, uint64_t wait_ms,
                      cm_registry_watch_cb cb, void *data);
/* Calls every watcher now (changed 0): the control plane is stopping. */
void cm_registry_release_watchers(cm_registry_t *r);
int cm_registry_nwatchers(const cm_registry_t *r);
/* Watchers of service itself (not of everything) and how many of them are parked at an
 * index >= index: a follower parks again only after it applied the answer it got, so
 * "as many parked past the index as there were watching" means every follower came back
 * having seen it (what a rollout waits for until the gateways acknowledge). */
int cm_registry_nwatchers_past(const cm_registry_t *r, const char *service, uint64_t index,
                               int *total);

#endif
