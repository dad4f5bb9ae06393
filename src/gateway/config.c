/* gateway/config.c: the gateway configuration model without YAML: route names,
 * upstream URL parsing (resolved once with getaddrinfo), --route flag routes, the
 * whole-config checks and sort (gw_config_finish), deep copy and free.
 * The YAML loader (gw_config_load) lives in config_yaml.c and builds on these; its key
 * tables hold every default (gw_route_defaults). */
#include "gateway/config.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/uri.h"
#include "gateway/balancer.h"

/* ---------------------------------------------------------------------------------- */
/* Names                                                                              */
/* ---------------------------------------------------------------------------------- */

/* A name safe to write as one segment of an admin URL (/_cmesh/routes/NAME/upstreams)
 * and as a metrics label: the prefix's segments joined by '-' ("/api/v1" -> "api-v1",
 * "/" -> "root"), after "HOST-" for a host-specific route; a byte outside
 * [A-Za-z0-9._~-] becomes '-'. */
static int slug(const char *host, const char *prefix, char *out, size_t cap)
{
    const char *p = prefix;
    while (*p == '/')
        p++;
    int n = snprintf(out, cap, "%s%s%s", host, host[0] ? "-" : "", *p ? p : "root");
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    for (char *c = out; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._~-", *c))
            *c = '-';
    for (size_t len = strlen(out); len > 1 && out[len - 1] == '-';) /* "/a/" leaves none */
        out[--len] = '\0';
    return 0;
}

static int name_taken(const gw_config_t *cfg, int nbefore, const char *name)
{
    for (int i = 0; cfg && i < nbefore; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return 1;
    return 0;
}

int gw_route_default_name(const gw_config_t *cfg, int nbefore, gw_route_cfg_t *r)
{
    char base[GW_NAME_MAX - 4]; /* room for "-999" */
    if (slug(r->host, r->prefix, base, sizeof(base)) < 0)
        return -ENAMETOOLONG;
    snprintf(r->name, sizeof(r->name), "%s", base);
    for (int k = 2; name_taken(cfg, nbefore, r->name); k++) {
        if (k > 999)
            return -ENAMETOOLONG;
        snprintf(r->name, sizeof(r->name), "%s-%d", base, k);
    }
    return 0;
}

const char *gw_lb_name(gw_lb_kind_t k)
{
    switch (k) {
    case GW_LB_ROUND_ROBIN:
        return "round_robin";
    case GW_LB_WEIGHTED_ROUND_ROBIN:
        return "weighted_round_robin";
    case GW_LB_LEAST_REQUEST:
        return "least_request";
    case GW_LB_PEAK_EWMA:
        return "peak_ewma";
    case GW_LB_HASH:
        return "hash";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------------------- */
/* Upstream URLs                                                                      */
/* ---------------------------------------------------------------------------------- */

/* Splits "HOST:PORT" or "[V6]:PORT" (after "http://", before any "/") into host and
 * port text. Returns 0 or -EINVAL with err naming the problem. */
static int split_authority(const char *url, const char *auth, size_t len, char *host, char *port,
                           char *err, size_t err_cap)
{
    const char *colon;
    size_t hlen;
    if (len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', len);
        if (!close || close + 1 >= auth + len || close[1] != ':')
            goto noport;
        hlen = (size_t)(close - auth - 1);
        memcpy(host, auth + 1, hlen);
        colon = close + 1;
    } else {
        colon = NULL;
        for (size_t i = 0; i < len; i++)
            if (auth[i] == ':')
                colon = auth + i;
        if (!colon)
            goto noport;
        hlen = (size_t)(colon - auth);
        memcpy(host, auth, hlen);
    }
    host[hlen] = '\0';
    size_t plen = len - (size_t)(colon + 1 - auth);
    if (hlen == 0) {
        snprintf(err, err_cap, "upstream '%s' has no host; write http://HOST:PORT", url);
        return -EINVAL;
    }
    if (plen == 0 || plen > 5)
        goto noport;
    memcpy(port, colon + 1, plen);
    port[plen] = '\0';
    return 0;
noport:
    snprintf(err, err_cap, "upstream '%s' needs a port; write http://HOST:PORT (1-65535)", url);
    return -EINVAL;
}

/* Resolves host once (names through DNS or /etc/hosts) into its first numeric address. */
static int resolve_host(const char *url, const char *host, const char *port, char *out,
                        size_t out_cap, char *err, size_t err_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY || rc == EAI_NODATA) {
        hints.ai_flags &= ~AI_ADDRCONFIG; /* "::1" on a host without IPv6 addresses */
        rc = getaddrinfo(host, port, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, err_cap, "upstream '%s': cannot resolve host '%s': %s", url, host,
                 gai_strerror(rc));
        return -EINVAL;
    }
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, out, (socklen_t)out_cap, NULL, 0,
                     NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, err_cap, "upstream '%s': cannot print address of '%s': %s", url, host,
                 gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

int gw_upstream_parse(const char *url, gw_upstream_cfg_t *u, char *err, size_t err_cap)
{
    static const char scheme[] = "http://";
    size_t n = strlen(url);
    if (n >= sizeof(u->url)) {
        snprintf(err, err_cap, "upstream URL is longer than %zu bytes", sizeof(u->url) - 1);
        return -EINVAL;
    }
    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0) {
        snprintf(err, err_cap, "upstream '%s' must start with http:// (https is not supported)",
                 url);
        return -EINVAL;
    }
    const char *auth = url + sizeof(scheme) - 1;
    size_t alen = strcspn(auth, "/?#");
    const char *rest = auth + alen;
    if (rest[0] != '\0' && strcmp(rest, "/") != 0) {
        snprintf(err, err_cap, "upstream '%s' must not have a path, query or fragment", url);
        return -EINVAL;
    }
    for (size_t i = 0; i < alen; i++) {
        if (auth[i] == '@' || isspace((unsigned char)auth[i]) || iscntrl((unsigned char)auth[i])) {
            snprintf(err, err_cap, "upstream '%s': bad character in host", url);
            return -EINVAL;
        }
    }
    char host[GW_URL_MAX], port[8];
    int rc = split_authority(url, auth, alen, host, port, err, err_cap);
    if (rc < 0)
        return rc;
    char *end;
    long p = strtol(port, &end, 10);
    if (*end != '\0' || !isdigit((unsigned char)port[0]) || p < 1 || p > 65535) {
        snprintf(err, err_cap, "upstream '%s': port '%s' is not 1-65535", url, port);
        return -EINVAL;
    }
    gw_upstream_cfg_t v = {.port = (int)p, .weight = GW_WEIGHT_DEFAULT};
    rc = resolve_host(url, host, port, v.host, sizeof(v.host), err, err_cap);
    if (rc < 0)
        return rc;
    memcpy(v.url, url, n + 1);
    if (n > 0 && v.url[n - 1] == '/')
        v.url[n - 1] = '\0';
    *u = v;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Flag routes                                                                        */
/* ---------------------------------------------------------------------------------- */

static gw_config_t *config_new(void)
{
    gw_config_t *cfg = calloc(1, sizeof(gw_config_t));
    if (cfg)
        gw_config_defaults(cfg);
    return cfg;
}

/* Appends a copy of r (taking ownership of r->upstreams, even on failure). */
static int config_append(gw_config_t *cfg, gw_route_cfg_t *r)
{
    gw_route_cfg_t *grown = realloc(cfg->routes, sizeof(*grown) * (size_t)(cfg->nroutes + 1));
    if (!grown) {
        free(r->upstreams);
        r->upstreams = NULL;
        return -ENOMEM;
    }
    cfg->routes = grown;
    cfg->routes[cfg->nroutes++] = *r;
    return 0;
}

int gw_prefix_normalise(char *prefix, char *err, size_t err_cap)
{
    if (prefix[0] != '/') {
        snprintf(err, err_cap, "prefix '%s' must start with '/'", prefix);
        return -EINVAL;
    }
    for (const char *c = prefix; *c; c++) {
        if (*c == '?' || *c == '#' || isspace((unsigned char)*c) || iscntrl((unsigned char)*c)) {
            snprintf(err, err_cap, "prefix '%s' must be a plain path (no space, '?' or '#')",
                     prefix);
            return -EINVAL;
        }
    }
    /* requests are matched on their normalized path (core/uri), so the prefix is written
     * in the same form, or "/%7Euser" and "/a/../b" could never match */
    size_t n = strlen(prefix);
    const char *why;
    int rc = cm_uri_path_scan(prefix, n, &why);
    if (rc > 0) {
        char *as_written = strdup(prefix); /* for the message: normalizing is in place */
        if (!as_written)
            return -ENOMEM;
        rc = cm_uri_normalize(prefix, n, prefix, &n, &why);
        if (rc < 0)
            snprintf(err, err_cap, "prefix '%s': %s", as_written, why);
        free(as_written);
    } else if (rc < 0) {
        snprintf(err, err_cap, "prefix '%s': %s", prefix, why);
    }
    if (rc < 0)
        return rc;
    prefix[n] = '\0';
    while (n > 1 && prefix[n - 1] == '/') /* "/users/" means "/users" */
        prefix[--n] = '\0';
    return 0;
}

int gw_upstream_same(const gw_upstream_cfg_t *a, const gw_upstream_cfg_t *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Parses the comma-separated upstream list of a --route value into r. */
static int flag_upstreams(const char *list, gw_route_cfg_t *r, char *err, size_t err_cap)
{
    char *copy = strdup(list);
    r->upstreams = calloc(GW_LB_MAX_HOSTS, sizeof(*r->upstreams));
    if (!copy || !r->upstreams) {
        free(copy);
        return -ENOMEM;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        if (r->nupstreams == GW_LB_MAX_HOSTS) {
            snprintf(err, err_cap, "more than %d upstreams", GW_LB_MAX_HOSTS);
            rc = -EINVAL;
            break;
        }
        gw_upstream_cfg_t *u = &r->upstreams[r->nupstreams];
        rc = gw_upstream_parse(tok, u, err, err_cap);
        for (int i = 0; rc == 0 && i < r->nupstreams; i++) {
            if (gw_upstream_same(&r->upstreams[i], u)) {
                snprintf(err, err_cap, "upstream '%s' is listed twice (as '%s')", u->url,
                         r->upstreams[i].url);
                rc = -EINVAL;
            }
        }
        if (rc == 0)
            r->nupstreams++;
    }
    free(copy);
    if (rc == 0 && r->nupstreams == 0) {
        snprintf(err, err_cap, "no upstream; write /prefix=http://HOST:PORT[,...]");
        rc = -EINVAL;
    }
    return rc;
}

/* Builds r from "/prefix=URL,URL". On failure r->upstreams is freed. */
static int flag_route(const char *value, const gw_config_t *cfg, gw_route_cfg_t *r, char *err,
                      size_t err_cap)
{
    gw_route_defaults(r);
    const char *eq = strchr(value, '=');
    if (!eq) {
        snprintf(err, err_cap, "expected /prefix=http://HOST:PORT[,http://HOST:PORT...]");
        return -EINVAL;
    }
    size_t plen = (size_t)(eq - value);
    if (plen >= sizeof(r->prefix)) {
        snprintf(err, err_cap, "prefix is longer than %zu bytes", sizeof(r->prefix) - 1);
        return -EINVAL;
    }
    memcpy(r->prefix, value, plen);
    r->prefix[plen] = '\0';
    int rc = gw_prefix_normalise(r->prefix, err, err_cap);
    if (rc == 0 && gw_route_default_name(cfg, cfg->nroutes, r) < 0) {
        snprintf(err, err_cap, "prefix is too long to name the route (%zu bytes at most)",
                 sizeof(r->name) - 5);
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = flag_upstreams(eq + 1, r, err, err_cap);
    if (rc < 0) {
        free(r->upstreams);
        r->upstreams = NULL;
        return rc;
    }
    r->auth = cfg->auth.key_file[0] != '\0';
    return 0;
}

int gw_config_add_flag_route(gw_config_t **cfg, const char *value, char *err, size_t err_cap)
{
    char why[1024];
    gw_config_t *fresh = NULL;
    if (!*cfg) {
        fresh = config_new();
        if (!fresh)
            return -ENOMEM;
    }
    gw_route_cfg_t r;
    int rc = flag_route(value, *cfg ? *cfg : fresh, &r, why, sizeof(why));
    if (rc == -EINVAL)
        snprintf(err, err_cap, "--route '%s': %s", value, why);
    if (rc == 0)
        rc = config_append(*cfg ? *cfg : fresh, &r);
    if (rc < 0) {
        free(fresh);
        return rc;
    }
    if (fresh)
        *cfg = fresh;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Whole-config checks and order                                                      */
/* ---------------------------------------------------------------------------------- */

/* Most specific first: longer prefix, then Host-specific before any Host. The last two
 * keys only make the order total (no two routes share host and prefix). */
static int route_order(const void *pa, const void *pb)
{
    const gw_route_cfg_t *a = pa, *b = pb;
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    if (la != lb)
        return la > lb ? -1 : 1;
    int ha = a->host[0] != '\0', hb = b->host[0] != '\0';
    if (ha != hb)
        return ha ? -1 : 1;
    int c = strcmp(a->prefix, b->prefix);
    return c != 0 ? c : strcasecmp(a->host, b->host);
}

int gw_route_clash(const gw_route_cfg_t *a, const gw_route_cfg_t *b)
{
    if (strcmp(a->name, b->name) == 0)
        return GW_CLASH_NAME;
    if (strcmp(a->prefix, b->prefix) == 0 && strcasecmp(a->host, b->host) == 0)
        return GW_CLASH_MATCH;
    return 0;
}

static int check_pair(const gw_config_t *cfg, const gw_route_cfg_t *a, const gw_route_cfg_t *b,
                      char *err, size_t err_cap)
{
    const char *file = cfg->path[0] ? cfg->path : "config";
    int clash = gw_route_clash(a, b);
    if (clash == GW_CLASH_NAME) {
        snprintf(err, err_cap, "%s: two routes are named '%s'; names must be unique", file,
                 a->name);
        return -EINVAL;
    }
    if (clash == GW_CLASH_MATCH) {
        snprintf(err, err_cap, "%s: routes '%s' and '%s' both match host '%s' prefix '%s'", file,
                 a->name, b->name, a->host[0] ? a->host : "*", a->prefix);
        return -EINVAL;
    }
    return 0;
}

int gw_config_finish(gw_config_t *cfg, char *err, size_t err_cap)
{
    const char *file = cfg->path[0] ? cfg->path : "config";
    for (int i = 0; i < cfg->nroutes; i++) {
        const gw_route_cfg_t *r = &cfg->routes[i];
        if (r->auth && cfg->auth.key_file[0] == '\0') {
            snprintf(err, err_cap, "%s: route '%s': auth needs auth.key_file", file, r->name);
            return -EINVAL;
        }
        for (int j = i + 1; j < cfg->nroutes; j++) {
            int rc = check_pair(cfg, r, &cfg->routes[j], err, err_cap);
            if (rc < 0)
                return rc;
        }
    }
    if (cfg->nroutes > 1)
        qsort(cfg->routes, (size_t)cfg->nroutes, sizeof(*cfg->routes), route_order);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Copy and free                                                                      */
/* ---------------------------------------------------------------------------------- */

gw_config_t *gw_config_dup(const gw_config_t *cfg)
{
    gw_config_t *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c = *cfg;
    c->routes = NULL;
    c->nroutes = 0;
    if (cfg->nroutes > 0) {
        c->routes = calloc((size_t)cfg->nroutes, sizeof(*c->routes));
        if (!c->routes)
            goto nomem;
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        const gw_route_cfg_t *src = &cfg->routes[i];
        gw_route_cfg_t *dst = &c->routes[i];
        *dst = *src;
        dst->upstreams = malloc(sizeof(*dst->upstreams) * (size_t)src->nupstreams);
        if (!dst->upstreams)
            goto nomem;
        memcpy(dst->upstreams, src->upstreams, sizeof(*dst->upstreams) * (size_t)src->nupstreams);
        c->nroutes++;
    }
    return c;
nomem:
    gw_config_free(c);
    return NULL;
}

void gw_config_free(gw_config_t *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nroutes; i++)
        free(cfg->routes[i].upstreams);
    free(cfg->routes);
    free(cfg);
}
