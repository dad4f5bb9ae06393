/* gateway/config.h: the gateway's configuration: routes, their upstream instances and
 * every policy (balancer, timeouts, retries, health, outlier ejection, limits, rate
 * limits, auth). Built from a YAML file (libfyaml) or from --route flags, validated
 * here once, then immutable: a reload builds a new one and the proxy swaps it in. */
#ifndef CMESH_GATEWAY_CONFIG_H
#define CMESH_GATEWAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define GW_URL_MAX  256
#define GW_NAME_MAX 64

typedef enum {
    GW_LB_ROUND_ROBIN,
    GW_LB_WEIGHTED_ROUND_ROBIN,
    GW_LB_LEAST_REQUEST, /* power of two choices on in-flight requests */
    GW_LB_PEAK_EWMA,     /* power of two choices on peak-EWMA latency x (in-flight + 1) */
    GW_LB_HASH,          /* consistent hashing (Maglev) on a header or cookie */
} gw_lb_kind_t;

typedef struct gw_upstream_cfg {
    char url[GW_URL_MAX];  /* "http://127.0.0.1:7001", as written (no trailing slash) */
    char host[GW_URL_MAX]; /* numeric address or name, resolved once when loaded */
    int port;
    int weight; /* 1..1000, default 1 */
} gw_upstream_cfg_t;

typedef struct gw_rate_cfg {
    double rate;  /* tokens per second; 0 = no limit */
    double burst; /* bucket size; default = max(rate, 1) */
} gw_rate_cfg_t;

typedef struct gw_route_cfg {
    char name[GW_NAME_MAX];  /* default: gw_route_default_name() ("users") */
    char prefix[GW_URL_MAX]; /* path prefix, matched on segment boundaries ("/users"
                                matches /users, /users/1, /users?x, not /usersx) */
    char host[GW_URL_MAX];   /* "" = any Host; else matched case-insensitively, port ignored */
    gw_upstream_cfg_t *upstreams;
    int nupstreams; /* >= 1 */

    gw_lb_kind_t balancer;         /* default GW_LB_PEAK_EWMA */
    char hash_header[GW_NAME_MAX]; /* GW_LB_HASH: key from this header, or */
    char hash_cookie[GW_NAME_MAX]; /* from this cookie (exactly one is set) */

    uint64_t connect_timeout_ms; /* default 1000 */
    uint64_t try_timeout_ms;     /* per attempt, until the response head; default 5000 */
    uint64_t timeout_ms;         /* whole request, until the response head; default 15000 */

    int attempts;             /* tries in all, 1 = no retry; default 3 */
    uint64_t backoff_base_ms; /* default 25: sleep rand(0, min(max, base * 2^n)) */
    uint64_t backoff_max_ms;  /* default 250 */
    double retry_budget;      /* retries <= this share of requests; default 0.2 */
    int retry_budget_min;     /* plus this many retries per second always; default 3 */

    char health_path[GW_URL_MAX]; /* default "/readyz"; "" = active checks off */
    uint64_t health_interval_ms;  /* default 1000 */
    uint64_t health_timeout_ms;   /* default 500 */
    int health_rise;              /* successes to become healthy; default 2 */
    int health_fall;              /* failures to become unhealthy; default 2 */

    int outlier_failures;     /* consecutive 5xx / connect failures to eject; default 5 */
    uint64_t outlier_base_ms; /* ejected for base x times ejected; default 10000 */
    uint64_t outlier_max_ms;  /* never longer; default 300000 */
    int outlier_max_percent;  /* never more of the set ejected; default 50 */
    int panic_percent;        /* below this share available, use all; default 50 */
    uint64_t slow_start_ms;   /* weight ramp for a returning instance; default 0 = off */

    int max_connections; /* per upstream instance and worker; default 1024 */
    int max_pending;     /* requests waiting for a connection, per instance; default 1024 */
    int max_requests;    /* in flight per instance; default 1024 */
    int pool_max_idle;   /* idle keep-alive connections kept per instance; default 64 */
    uint64_t pool_idle_timeout_ms; /* default 30000 */

    gw_rate_cfg_t rate_client;  /* per client address */
    gw_rate_cfg_t rate_subject; /* per token subject (auth on) */

    int auth;               /* 1 = a valid token is required; 0 = public */
    char scopes[512];       /* space-separated scopes every request needs ("" = none) */
    char read_scopes[512];  /* added for GET, HEAD, OPTIONS */
    char write_scopes[512]; /* added for every other method */
} gw_route_cfg_t;

typedef struct gw_auth_cfg {
    char key_file[1024]; /* "" = no auth anywhere. HS256 secret (raw bytes, trailing
                            newline dropped) or a PEM key: RSA -> RS256, EC P-256 -> ES256 */
    char issuer[256];    /* the iss required; "" = GW_AUTH_DEFAULT_ISSUER (flags only: a
                            file's auth block must name it) */
    char audience[256];  /* the aud required; "" = GW_AUTH_DEFAULT_AUDIENCE (likewise) */
    int any_issuer;      /* 1 = iss not checked ("issuer: any", an explicit opt-out) */
    int any_audience;    /* 1 = aud not checked ("audience: any") */
    uint64_t leeway_ms;  /* clock skew allowed on exp/nbf; default 30000 */
} gw_auth_cfg_t;

/* What tokens must carry when no issuer / audience is configured (--auth-key without a
 * file's auth block); `cmesh token --auth-key` mints the same, so the two agree. */
#define GW_AUTH_DEFAULT_ISSUER   "cmesh"
#define GW_AUTH_DEFAULT_AUDIENCE "cmesh-gateway"

typedef struct gw_config {
    char path[1024];  /* the file it came from, "" for flags only */
    char listen[300]; /* "listen:" from the file, "" if absent (--listen wins) */
    gw_auth_cfg_t auth;
    gw_route_cfg_t *routes; /* most specific first: longest prefix, Host before none */
    int nroutes;
} gw_config_t;

/* Fills r with every default above (no name, prefix or upstreams). */
void gw_route_defaults(gw_route_cfg_t *r);

/* Names r after its prefix (and host) when no name is given: "/users" -> "users",
 * "/api/v1" -> "api-v1", "/" -> "root", host "a.example" + "/users" ->
 * "a.example-users"; "-2", "-3"... when one of the nbefore routes of cfg (may be NULL)
 * has the name already. Returns 0, or -ENAMETOOLONG (the caller asks for a name:). */
int gw_route_default_name(const gw_config_t *cfg, int nbefore, gw_route_cfg_t *r);

/* Loads and validates a YAML file. On error returns -EINVAL (or -errno when it cannot be
 * read) with err set to "FILE:LINE: what is wrong", one line per error found (every key
 * is checked, not only up to the first error; lines that do not fit in err_cap are
 * counted in a last "FILE: (and N more errors)"), and *out untouched. Caller owns *out
 * (gw_config_free). */
int gw_config_load(const char *path, gw_config_t **out, char *err, size_t err_cap);

/* The same for a mapping node that is part of a larger document (the control plane's
 * cmesh.yaml `gateway:` section): errors name path and the node's own lines, and a
 * relative key_file is relative to path's directory. root is borrowed. */
struct fy_node;
int gw_config_load_node(struct fy_node *root, const char *path, gw_config_t **out, char *err,
                        size_t err_cap);

/* Adds a route from a --route value "/prefix=http://h:p,http://h2:p2" to cfg (created
 * when *cfg is NULL), with every default and auth on when cfg->auth has a key. Returns
 * 0 or -EINVAL with err ("--route '...': what is wrong"). */
int gw_config_add_flag_route(gw_config_t **cfg, const char *value, char *err, size_t err_cap);

/* Sorts routes (most specific first) and checks the whole config (duplicate route
 * names, auth scopes without a key). Returns 0 or -EINVAL with err. */
int gw_config_finish(gw_config_t *cfg, char *err, size_t err_cap);

/* Parses an upstream URL "http://host:port" (no path) into u; resolves host with
 * getaddrinfo once (AI_NUMERICSERV) into a numeric address. Returns 0 or -EINVAL. */
int gw_upstream_parse(const char *url, gw_upstream_cfg_t *u, char *err, size_t err_cap);

/* Deep copy (for a runtime upstream replacement). Returns NULL on ENOMEM. */
gw_config_t *gw_config_dup(const gw_config_t *cfg);
void gw_config_free(gw_config_t *cfg); /* NULL is a no-op */

const char *gw_lb_name(gw_lb_kind_t k); /* "peak_ewma" */

#endif
