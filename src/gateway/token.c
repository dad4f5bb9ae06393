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
    const char *sub;    /* required */
    const char *scope;  /* "" = no scope claim */
    uint64_t ttl_ms;    /* default 1h */
    const char *config; /* take key, issuer and audience from this gateway config */
    gw_auth_cfg_t auth; /* flags, which win over the config's */
} token_opts_t;

static const char help[] =
    "usage: cmesh token --sub NAME [--scope \"a b\"] [--ttl 1h] (--config FILE | --auth-key FILE)\n"
    "                   [--issuer I] [--audience A]\n"
    "\n"
    "Prints a signed JWT (and a newline) that the gateway accepts.\n"
    "\n"
    "  --sub NAME        the token's subject (required)\n"
    "  --scope \"A B\"     space-separated scopes, e.g. \"users:read orders:write\"\n"
    "  --ttl DURATION    lifetime: 30m, 1h, 24h... (default 1h)\n"
    "  --config FILE     the gateway's YAML config: its auth key, issuer and audience\n"
    "  --auth-key FILE   HS256 secret (>= 32 bytes) or a PEM private key (RSA, EC P-256)\n"
    "  --issuer I        iss claim\n"
    "  --audience A      aud claim\n";

static int copy_flag(char *dst, size_t cap, const char *name, const char *v, char *err,
                     size_t err_cap)
{
    if (strlen(v) >= cap) {
        snprintf(err, err_cap, "--%s: longer than %zu bytes", name, cap - 1);
        return -EINVAL;
    }
    snprintf(dst, cap, "%s", v);
    return 1;
}

static int set_flag(void *ctx, const char *name, const char *v, char *err, size_t err_cap)
{
    token_opts_t *o = ctx;
    if (strcmp(name, "sub") == 0) {
        o->sub = v;
        return 1;
    }
    if (strcmp(name, "scope") == 0) {
        o->scope = v;
        return 1;
    }
    if (strcmp(name, "ttl") == 0) {
        if (cm_parse_duration_ms(v, &o->ttl_ms) < 0 || o->ttl_ms < 1000) {
            snprintf(err, err_cap, "--ttl: '%s' is not a duration of 1s or more (e.g. 1h)", v);
            return -EINVAL;
        }
        return 1;
    }
    if (strcmp(name, "config") == 0) {
        o->config = v;
        return 1;
    }
    if (strcmp(name, "auth-key") == 0)
        return copy_flag(o->auth.key_file, sizeof o->auth.key_file, name, v, err, err_cap);
    if (strcmp(name, "issuer") == 0)
        return copy_flag(o->auth.issuer, sizeof o->auth.issuer, name, v, err, err_cap);
    if (strcmp(name, "audience") == 0)
        return copy_flag(o->auth.audience, sizeof o->auth.audience, name, v, err, err_cap);
    return 0;
}

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
    token_opts_t o = {.scope = "", .ttl_ms = 3600 * 1000};
    int rc = cm_flags_parse(argc, argv, "token", help, set_flag, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (!o.sub || !*o.sub) {
        fprintf(stderr, "cmesh token: --sub NAME is required; see cmesh token --help\n");
        return 2;
    }
    char err[1024];
    if (o.config && apply_config(&o, err, sizeof err) < 0) {
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
