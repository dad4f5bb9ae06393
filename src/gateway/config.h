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

#define GW_WEIGHT_DEFAULT 1 /* an upstream's weight when not given (file or --route) */

typedef enum {
    GW_LB_ROUND_ROBIN,
    GW_LB_WEIGHTED_ROUND_ROBIN,
    GW_LB_LEAST_REQUEST, /* power of two choices on in-flight requests */
    GW_LB_PEAK_EWMA,     /* power of two choices on peak-EWMA latency x (in-flight + 1) */
    GW_LB_HASH,          /* consistent hashing (Maglev) on a header or cookie; the last:
                            config_yaml.c reads names 0..GW_LB_HASH */
} gw_lb_kind_t;

typedef struct gw_upstream_cfg {
    char url[GW_URL_MAX];  /* "http://127.0.0.1:7001", as written (no trailing slash) */
    char host[GW_URL_MAX]; /* numeric address or name, resolved once when loaded */
    int port;
    int weight; /* 1..1000, GW_WEIGHT_DEFAULT when not given */
} gw_upstream_cfg_t;

typedef struct gw_rate_cfg {
    double rate;  /* tokens per second; 0 = no limit */
    double burst; /* bucket size; not given: max(rate, 1) */
} gw_rate_cfg_t;

/* Durations are in ms. Every default is a row of the key tables in config_yaml.c
 * (gw_route_defaults; docs/gateway-config.md lists them, checked by a unit test). */
typedef struct gw_route_cfg {
    char name[GW_NAME_MAX];  /* default: gw_route_default_name() ("users") */
    char prefix[GW_URL_MAX]; /* path prefix, matched on segment boundaries ("/users"
                                matches /users, /users/1, /users?x, not /usersx) */
    char host[GW_URL_MAX];   /* "" = any Host; else matched case-insensitively, port ignored */
    gw_upstream_cfg_t *upstreams;
    int nupstreams;            /* >= 1 */
    char service[GW_NAME_MAX]; /* with --registry, the registry service whose ready
                                  instances replace upstreams; "" = the route's name */

    gw_lb_kind_t balancer;
    char hash_header[GW_NAME_MAX]; /* GW_LB_HASH: key from this header, or */
    char hash_cookie[GW_NAME_MAX]; /* from this cookie (exactly one is set) */

    uint64_t connect_timeout_ms;
    uint64_t try_timeout_ms; /* per attempt, until the response head */
    uint64_t timeout_ms;     /* whole request, until the response head */
    uint64_t cold_start_ms;  /* longest a request is held while its service, scaled to
                                zero, starts (then 503); not counted in timeout_ms */
    /* run-time state, never from a file: with --registry, the route's service is scaled
     * to zero on purpose (the registry's desired count is 0 and it has no ready instance)
     * and no ready set came since; requests are held and the service is woken (follow.c).
     * Next to timeout_ms: the proxy reads both per request, from one cache line. */
    int scaled_to_zero;

    int attempts;             /* tries in all, 1 = no retry */
    uint64_t backoff_base_ms; /* sleep rand(0, min(max, base * 2^n)) */
    uint64_t backoff_max_ms;
    double retry_budget;  /* retries <= this share of requests (0..1) */
    int retry_budget_min; /* plus this many retries per second always */

    char health_path[GW_URL_MAX]; /* "" = active checks off */
    uint64_t health_interval_ms;
    uint64_t health_timeout_ms;
    int health_rise; /* successes to become healthy */
    int health_fall; /* failures to become unhealthy */

    int outlier_failures;     /* consecutive 5xx / connect failures to eject */
    uint64_t outlier_base_ms; /* ejected for base x times ejected */
    uint64_t outlier_max_ms;  /* never longer */
    int outlier_max_percent;  /* never more of the set ejected */
    int panic_percent;        /* below this share available, use all */
    uint64_t slow_start_ms;   /* weight ramp for a returning instance; 0 = off */

    int max_connections; /* per upstream instance and worker */
    int max_pending;     /* requests waiting for a connection, per instance */
    int max_requests;    /* in flight per instance */
    int pool_max_idle;   /* idle keep-alive connections kept per instance */
    uint64_t pool_idle_timeout_ms;

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
    uint64_t leeway_ms;  /* clock skew allowed on exp/nbf */
} gw_auth_cfg_t;

/* What tokens must carry when no issuer / audience is configured (--auth-key without a
 * file's auth block); `cmesh token --auth-key` mints the same, so the two agree. */
#define GW_AUTH_DEFAULT_ISSUER   "cmesh"
#define GW_AUTH_DEFAULT_AUDIENCE "cmesh-gateway"

typedef struct gw_config {
    char path[1024];  /* the file it came from, "" for flags only */
    char listen[300]; /* "listen:" from the file, "" if absent (--listen wins) */
    /* "admin:" from the file, as --admin-listen spells it: "HOST:PORT" (admin.listen) or
     * "unix:PATH" (admin.socket, relative to the file's directory); "" if absent */
    char admin[1100];
    gw_auth_cfg_t auth;
    gw_route_cfg_t *routes; /* most specific first: longest prefix, Host before none */
    int nroutes;
} gw_config_t;

/* Where the gateway listens when neither --listen nor the file's listen: says. */
#define GW_LISTEN_DEFAULT "127.0.0.1:8080"

/* Fills r with every default above (no name, prefix or upstreams), taken from the
 * YAML loader's key tables (config_yaml.c), which hold each default once. */
void gw_route_defaults(gw_route_cfg_t *r);

/* Fills the top-level defaults of cfg (auth.leeway); routes are left alone. */
void gw_config_defaults(gw_config_t *cfg);

/* Calls fn once per key of every table of the file grammar, table by table (section is
 * the table's heading in docs/gateway-config.md, e.g. "`timeouts`"); def is the default
 * as a file would write it ("5s"), "required", or "" when it has none or it is computed.
 * For the docs test: every default lives in the tables, and the doc must match them. */
typedef void (*gw_describe_fn)(void *arg, const char *section, const char *key, const char *def);
void gw_config_describe(gw_describe_fn fn, void *arg);

/* The rules a file route and a --route share (config.c), so that each is written once. */

/* Checks and normalises a prefix in place: starts with '/', no whitespace, query or
 * fragment, trailing slashes dropped except for "/" itself. Returns 0 or -EINVAL with
 * err ("prefix '...' must start with '/'"). */
int gw_prefix_normalise(char *prefix, char *err, size_t err_cap);

/* Whether two upstreams name the same instance (same resolved address and port). */
int gw_upstream_same(const gw_upstream_cfg_t *a, const gw_upstream_cfg_t *b);

/* Why two routes cannot both be in one config: GW_CLASH_NAME (same name), GW_CLASH_MATCH
 * (same host and prefix), or 0 when they can. */
#define GW_CLASH_NAME  1
#define GW_CLASH_MATCH 2
int gw_route_clash(const gw_route_cfg_t *a, const gw_route_cfg_t *b);

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
