/* control/autoscale.h: the autoscaler's decisions, on Little's law. Each tick a service's
 * in-flight work L (= arrival rate x time in system, measured by control/demand.c) goes
 * in; the desired instance count comes out: ceil(L / target) within min..max, kept while
 * within the tolerance, averaged over a stable window, with a short panic window that
 * scales up at once (and never down while panicking), scale-down held to the highest
 * recommendation of the stable window, and a flap budget on direction changes (Knative's
 * KPA and the HPA's behaviours, with shorter windows). No I/O and no clock of its own:
 * time is passed in, the count is applied through a hook handed down (up.c hands
 * cm_sup_scale), so unit tests run it on a virtual clock. One loop; no lock. */
#ifndef CMESH_CONTROL_AUTOSCALE_H
#define CMESH_CONTROL_AUTOSCALE_H

#include <stdint.h>

#include "control/events.h"
#include "control/registry.h"
#include "control/spec.h"
#include "core/buf.h"

/* Which rule decided the count (the first that applied, in this order of precedence). */
typedef enum {
    CM_AS_TARGET,        /* ceil(L / target), nothing held it */
    CM_AS_MIN,           /* the formula said fewer than min */
    CM_AS_MAX,           /* the formula said more than max */
    CM_AS_TOLERANCE,     /* L / (count x target) within 1 +- tolerance: count kept */
    CM_AS_PANIC,         /* panicking: up at once, never down */
    CM_AS_STABLE_WINDOW, /* scale-down held by a higher recommendation in the window */
    CM_AS_FLAP_BUDGET,   /* a change of direction over the budget for the window: kept */
    CM_AS_IDLE,          /* no demand for a whole stable window: down to min */
    CM_AS_PINNED,        /* `cmesh scale SERVICE N`: the autoscaler only watches */
    CM_AS_NO_DATA,       /* no load measured this tick: count kept */
    CM_AS_WAKE,          /* a request for a service at 0 (cm_autoscale_wake) */
    CM_AS_ROLLOUT,       /* a rollout of the service runs: the count is held until it ends */
} cm_as_reason_t;

const char *cm_as_reason_name(cm_as_reason_t r); /* "stable_window" */

/* One tick's input for one service. */
typedef struct cm_as_input {
    double load; /* L: in-flight work of its instances over the last tick (requests) */
    int ready;   /* ready instances not counting surge ones (cm_autoscale_capacity) */
    int surge;   /* running, non-leaving instances at an index >= desired (shown only) */
    int desired; /* the current desired count */
    int valid;   /* 0: nothing measured this tick (no scrape answered) */
    int rollout; /* 1: a rollout of the service runs (it fails on a changed count, and its
                    surge is no reason to scale): the count is held */
} cm_as_input_t;

/* One decision with everything that went into it (printed by --explain, put in events). */
typedef struct cm_as_decision {
    uint64_t now_ms;
    cm_as_input_t in;
    double stable_load; /* mean L over the stable window */
    double panic_load;  /* mean L over the panic window */
    int stable_n;       /* ceil(stable_load / target), before limits */
    int panic_n;        /* ceil(panic_load / target), before limits */
    int over_panic;     /* panic_load >= threshold x max(1, ready) x target */
    int panicking;
    int recommended; /* this tick's recommendation, within min..max (and panic's floor) */
    int window_max;  /* the highest recommendation over the stable window */
    int desired;     /* the result */
    cm_as_reason_t reason;
    int pinned; /* -1: automatic, else the pinned count */
    int wanted; /* reason rollout: the count it would have set without the rollout */
} cm_as_decision_t;

/* The history of one service: samples, recommendations, panic, direction changes. */
typedef struct cm_as_svc cm_as_svc_t; /* opaque */

/* spec borrowed (it outlives the state). Caller owns *out (cm_as_svc_free). */
int cm_as_svc_new(const cm_autoscale_spec_t *spec, cm_as_svc_t **out);
void cm_as_svc_free(cm_as_svc_t *st); /* NULL is a no-op */

/* The decision for one tick at now_ms (never earlier than the last one). Pure but for
 * the history in st, which it updates (it assumes the result is applied). */
void cm_as_decide(cm_as_svc_t *st, const cm_as_input_t *in, uint64_t now_ms, cm_as_decision_t *out);
/* Demand noticed outside the metrics (a request held for a service at 0): counts as
 * demand at now_ms and as a recommendation of at least 1, so scale-down waits a window. */
void cm_as_note_demand(cm_as_svc_t *st, uint64_t now_ms);
void cm_as_pin(cm_as_svc_t *st, int count); /* -1 hands it back */

/* Ready capacity of a service: ready instances at an index below desired. Any running,
 * non-leaving instance at an index >= desired is surge (where a rollout starts its new
 * one) and is counted in *surge, not as capacity. *surge may be NULL. */
int cm_autoscale_capacity(const cm_reg_inst_t *inst, int n, int desired, int *surge);

/* {"service", "now_ms", "inputs":{...}, "policy":{...}, "stable_load", ..., "reason"} */
void cm_as_render_json(const cm_as_decision_t *d, const cm_autoscale_spec_t *spec,
                       const char *service, cm_buf_t *out);
/* The same as lines for people: the inputs, the formula with numbers, the result and
 * the limit that applied. */
void cm_as_render_text(const cm_as_decision_t *d, const cm_autoscale_spec_t *spec,
                       const char *service, cm_buf_t *out);

/* ---------------------------------------------------------------------------------- */
/* Every autoscaled service of a spec, applied through hooks                          */
/* ---------------------------------------------------------------------------------- */

typedef struct cm_autoscale_hooks {
    uint64_t (*now_ms)(void *arg);                           /* a monotonic clock */
    int (*scale)(void *arg, const char *service, int count); /* 0 or -errno */
    int (*count)(void *arg, const char *service);            /* desired now, -1 unknown */
    /* 1 while a rollout of service runs (up.c hands cm_rollouts_running); may be NULL */
    int (*rolling)(void *arg, const char *service);
    void *arg;
    cm_events_t *events; /* where changes are recorded; may be NULL */
} cm_autoscale_hooks_t;

typedef struct cm_autoscale cm_autoscale_t; /* opaque */

/* spec borrowed and must outlive it. Caller owns *out (cm_autoscale_free). */
int cm_autoscale_new(const cm_spec_t *spec, const cm_autoscale_hooks_t *hooks,
                     cm_autoscale_t **out);
void cm_autoscale_free(cm_autoscale_t *as); /* NULL is a no-op */
/* A reloaded spec (borrowed, outlives it; the old one must live until this returns):
 * a service whose autoscale: policy is unchanged keeps its history, panic and pin; a
 * changed policy starts its windows over (the pin is kept: only `cmesh scale SERVICE
 * auto` hands it back); a service that gained autoscale: starts fresh, one that lost it
 * or went away is dropped. Each of these is an event. Returns 0 or -ENOMEM (nothing
 * changed). */
int cm_autoscale_respec(cm_autoscale_t *as, const cm_spec_t *spec);

/* 1 when service has an autoscale: section. */
int cm_autoscale_on(const cm_autoscale_t *as, const char *service);
/* One tick for service: decides (in->rollout from hooks.rolling), applies a changed count
 * through hooks.scale and records it (event kind "scale", the decision as detail); a
 * count held by a rollout is recorded once when it would have changed. out may be NULL. Returns 0,
 * -ENOENT (not autoscaled) or scale's error. */
int cm_autoscale_tick(cm_autoscale_t *as, const char *service, const cm_as_input_t *in,
                      cm_as_decision_t *out);
/* A request arrived for service: when its desired count is 0 it goes to 1 at once, and
 * the demand is noted so that scale-down waits a whole stable window. A service without
 * autoscale: is woken too (to 1) when at 0. Returns 1 woken, 0 it was not at 0, -ENOENT
 * unknown service, or scale's error. */
int cm_autoscale_wake(cm_autoscale_t *as, const char *service);
/* Pins service at count (autoscaling off for it) and applies it; count -1 hands it back.
 * Returns 0, -ENOENT (not autoscaled), -EINVAL (outside 0..CM_SPEC_MAX_INST) or scale's. */
int cm_autoscale_pin(cm_autoscale_t *as, const char *service, int count);
int cm_autoscale_pinned(const cm_autoscale_t *as, const char *service); /* -1 auto / none */
/* The last decision of service (*d borrowed until the next tick), -ENOENT none yet or
 * not autoscaled. */
int cm_autoscale_last(const cm_autoscale_t *as, const char *service, const cm_as_decision_t **d);

#endif
