/* control/spec.h: cmesh.yaml as an immutable spec: the services (command, instance
 * count, addresses, env, args, probes, drain timeout), the gateway (the gateway's own
 * keys, routes naming a service) and the control plane (listen address, state dir).
 * Loaded once by `cmesh up` and every CLI command; read-only after, so it needs no lock.
 * Knows nothing of processes or HTTP. */
#ifndef CMESH_CONTROL_SPEC_H
#define CMESH_CONTROL_SPEC_H

#include <stddef.h>
#include <stdint.h>

#define CM_SPEC_NAME_MAX 64
#define CM_SPEC_PATH_MAX 1024
#define CM_SPEC_MAX_SVCS 32
#define CM_SPEC_MAX_INST 64        /* instances of one service: ports base..base+63 */
#define CM_SPEC_GATEWAY  "gateway" /* the gateway's service name in the registry */

typedef struct cm_probe_spec {
    char path[256];       /* "" = this probe is off */
    uint64_t interval_ms; /* between probes; default 1s (readiness) / 10s (liveness) */
    uint64_t timeout_ms;  /* per probe; default 1s, as Kubernetes */
    int rise;             /* successes in a row to pass; default 1 */
    int fall;             /* failures in a row to fail; default 3, as Kubernetes */
} cm_probe_spec_t;

/* `autoscale:` of a service (control/autoscale.c reads it). Durations in ms. */
typedef struct cm_autoscale_spec {
    int on;                 /* 0: no autoscale: key, the fixed `instances:` count */
    int min, max;           /* instances, 0 <= min <= max <= CM_SPEC_MAX_INST */
    double target;          /* in-flight requests per instance (L = rate x time), > 0 */
    double tolerance;       /* keep the count while L/(count x target) is within 1 +- this */
    uint64_t stable_ms;     /* averaging and scale-down window; default 30s */
    uint64_t panic_ms;      /* the short window that triggers panic; default 3s */
    uint64_t tick_ms;       /* between decisions; default 1s */
    double panic_threshold; /* panic when panic demand >= this x ready capacity; 2.0 */
    int flap_budget;        /* direction changes allowed per stable window; default 2 */
    int line;               /* where it is defined, for messages */
} cm_autoscale_spec_t;

#define CM_AUTOSCALE_HIST 1024 /* samples kept per window: stable_window / tick at most */

typedef struct cm_svc_spec {
    char name[CM_SPEC_NAME_MAX];
    char command[CM_SPEC_PATH_MAX]; /* a cmesh subcommand (self = 1) or an executable */
    int self;                       /* 1: run this binary with command as its first arg */
    char **args;                    /* after the command; {addr} {host} {port} {index}
                                       {url:SERVICE} are replaced per instance */
    int nargs;
    char **env; /* "NAME=value", added to the control plane's environment */
    int nenv;
    int instances;         /* fixed count (scale changes it at run time) */
    char host[256];        /* listen host of every instance */
    int port;              /* instance i listens on port + i */
    cm_probe_spec_t ready; /* readiness: failing removes the instance from routing */
    cm_probe_spec_t live;  /* liveness: failing restarts the instance */
    uint64_t drain_ms;     /* SIGTERM to SIGKILL; default 10s */
    uint64_t rollout_ms;   /* rollout_timeout: a new instance ready within this, or the
                              rollout stops; default 60s (not part of the definition) */
    int line;              /* where it is defined, for messages */

    cm_autoscale_spec_t autoscale; /* `autoscale:`; .on 0: the fixed instances count */
} cm_svc_spec_t;

typedef struct cm_spec {
    char path[CM_SPEC_PATH_MAX];      /* the file as given */
    char dir[CM_SPEC_PATH_MAX];       /* its directory, absolute: instances run there */
    char control_host[256];           /* control API; default 127.0.0.1 */
    int control_port;                 /* default 9000 */
    char state_dir[CM_SPEC_PATH_MAX]; /* absolute; default DIR/data/state */
    cm_svc_spec_t *svcs;              /* the gateway, when there is one, is the last */
    int nsvcs;
    int has_gateway;
    char key_file[CM_SPEC_PATH_MAX]; /* gateway.auth.key_file, absolute; "" = no auth */
    char *text;                      /* the file's bytes: the gateway section is rendered
                                        from them (cm_spec_gateway_yaml) */
    size_t len;
} cm_spec_t;

/* Loads and validates path. On error returns -EINVAL (or -errno when it cannot be read)
 * with err "FILE:LINE: what is wrong"; *out untouched. Caller owns *out (cm_spec_free). */
int cm_spec_load(const char *path, cm_spec_t **out, char *err, size_t cap);
int cm_spec_parse(const char *path, const char *text, size_t len, cm_spec_t **out, char *err,
                  size_t cap);
void cm_spec_free(cm_spec_t *s); /* NULL is a no-op */

const cm_svc_spec_t *cm_spec_service(const cm_spec_t *s, const char *name); /* or NULL */

/* The gateway's own config file for the current instance set: the `gateway:` section
 * with each route's `service: NAME` replaced by `upstreams:` (urls_of(NAME) gives the
 * list; an empty list is an error) and key_file made absolute. The section is first
 * validated with the gateway's own loader, so errors name cmesh.yaml's lines.
 * Returns 0 with *yaml (caller frees) or -EINVAL with err. */
typedef int (*cm_spec_urls_fn)(const char *service, char ***urls, int *n, void *arg);
int cm_spec_gateway_yaml(const cm_spec_t *s, cm_spec_urls_fn urls_of, void *arg, char **yaml,
                         char *err, size_t cap);

/* One argument of an instance with its placeholders replaced. url_of(SERVICE, index)
 * gives the URL for {url:SERVICE}; url_of("", index) the control API's for {registry}
 * (what --registry / --users-registry want). Returns 0 or -EINVAL (unknown placeholder, too long).
 */
typedef int (*cm_spec_url_fn)(const char *service, int index, char *out, size_t cap, void *arg);
int cm_spec_expand(const cm_svc_spec_t *svc, int index, const char *arg, cm_spec_url_fn url_of,
                   void *ctx, char *out, size_t cap);

#endif
