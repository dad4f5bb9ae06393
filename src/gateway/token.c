/* gateway/token.c: `cmesh token`: prints a signed JWT for the gateway's key, for
 * operators and tests. Flags through core/flags; keys and signing through gateway/auth. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/flags.h"
#include "gateway/auth.h"
#include "gateway/config.h"

typedef struct token_opts {
    char sub[256];      /* required */
    char scope[1024];   /* "" = no scope claim */
    uint64_t ttl_ms;    /* default 1h */
    char config[1024];  /* take key, issuer and audience from this gateway config */
    gw_auth_cfg_t auth; /* flags, which win over the config's */
} token_opts_t;

/* --scope: any text, also empty (then the token has no scope claim). */
static int scope_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    if (strlen(v) >= f->size) {
        snprintf(err, cap, "longer than %zu bytes", f->size - 1);
        return -EINVAL;
    }
    snprintf(field, f->size, "%s", v);
    return 0;
}

static void scope_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    cm_flag_str.show(f, field, out, cap);
}

static const cm_flag_type_t scope_type = {scope_parse, scope_show, 0, NULL};

#define T token_opts_t
static const cm_flag_t token_flags[] = {
    CM_FLAG_STR("sub", "NAME", T, sub, CM_FLAG_REQUIRED, "the token's subject"),
    CM_FLAG_CUSTOM("scope", "\"A B\"", scope_type, T, scope, 0,
                   "space-separated scopes, e.g. \"users:read orders:write\""),
    CM_FLAG_DURATION("ttl", T, ttl_ms, 1000, "lifetime of the token"),
    CM_FLAG_STR("config", "FILE", T, config, 0,
                "the gateway's YAML config: its auth key, issuer and audience"),
    CM_FLAG_STR("auth-key", "FILE", T, auth.key_file, 0,
                "HS256 secret (32 bytes or more) or a PEM private key (RSA, EC P-256); wins "
                "over the config's"),
    CM_FLAG_STR("issuer", "I", T, auth.issuer, 0, "iss claim; wins over the config's"),
    CM_FLAG_STR("audience", "A", T, auth.audience, 0, "aud claim; wins over the config's"),
    CM_FLAG_END,
};
#undef T

static void opts_defaults(void *opts)
{
    token_opts_t *o = opts;
    memset(o, 0, sizeof *o);
    o->ttl_ms = 3600 * 1000;
}

static const cm_flag_table_t tables[] = {{"flags", token_flags, 0}, {0}};

const cm_cmd_t gw_token_cmd = {
    .name = "token",
    .usage = "cmesh token --sub NAME (--config FILE | --auth-key FILE) [flags]",
    .about = "Prints a signed JWT (and a newline) that the gateway accepts.",
    .tables = tables,
    .opts_size = sizeof(token_opts_t),
    .defaults = opts_defaults,
};

/* Fills what the flags left empty from the config's auth section. */
static int apply_config(token_opts_t *o, char *err, size_t cap)
{
    gw_config_t *cfg;
    int rc = gw_config_load(o->config, &cfg, err, cap);
    if (rc < 0)
        return rc;
    gw_auth_cfg_t *a = &o->auth, *c = &cfg->auth;
    if (!a->key_file[0])
        memcpy(a->key_file, c->key_file, sizeof a->key_file);
    if (!a->issuer[0])
        memcpy(a->issuer, c->issuer, sizeof a->issuer);
    if (!a->audience[0])
        memcpy(a->audience, c->audience, sizeof a->audience);
    gw_config_free(cfg);
    return 0;
}

int gw_token_main(int argc, char **argv)
{
    token_opts_t o;
    opts_defaults(&o);
    int rc = cm_flags_parse(&gw_token_cmd, argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    char err[1024];
    if (o.config[0] && apply_config(&o, err, sizeof err) < 0) {
        fprintf(stderr, "cmesh token: %s\n", err);
        return 2;
    }
    if (!o.auth.key_file[0]) {
        fprintf(stderr, "cmesh token: give --auth-key FILE, or --config FILE with auth.key_file; "
                        "see cmesh token --help\n");
        return 2;
    }
    gw_auth_t *auth;
    if (gw_auth_new(&o.auth, &auth, err, sizeof err) < 0) {
        fprintf(stderr, "cmesh token: %s\n", err);
        return 2;
    }
    char *token = NULL;
    rc = gw_auth_sign(auth, o.sub, o.scope, (int64_t)time(NULL), (int64_t)(o.ttl_ms / 1000), &token,
                      err, sizeof err);
    gw_auth_free(auth);
    if (rc < 0) {
        /* the message names KEYFILE generically: say which file it was */
        fprintf(stderr, "cmesh token: --auth-key %s: %s\n", o.auth.key_file, err);
        return 2;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}
