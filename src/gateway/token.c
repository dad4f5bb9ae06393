/* gateway/token.c: `cmesh token`: prints a signed JWT for the gateway's key, for
 * operators and tests, and `--init FILE` makes a new HS256 key file. Flags through
 * core/flags; keys and signing through gateway/auth. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/flags.h"
#include "gateway/auth.h"
#include "gateway/config.h"

typedef struct token_opts {
    char sub[256];      /* required, unless --init */
    char scope[1024];   /* "" = no scope claim */
    uint64_t ttl_ms;    /* default 1h */
    char config[1024];  /* take key, issuer and audience from this gateway config */
    char init[1024];    /* --init FILE: write a new HS256 secret there and exit */
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
    CM_FLAG_STR("sub", "NAME", T, sub, 0, "the token's subject (required, unless --init)"),
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
    CM_FLAG_STR("init", "FILE", T, init, 0,
                "write a new random HS256 secret to FILE (mode 0600; an existing file is never "
                "overwritten) and exit"),
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
    .usage = "cmesh token --sub NAME (--config FILE | --auth-key FILE) [flags]\n"
             "       cmesh token --init FILE",
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

#define INIT_SECRET_BYTES 32 /* 256 bits: RFC 7518 3.2, as long as the HS256 hash */

/* Writes a new HS256 secret: 32 random bytes as 43 base64url characters and a newline
 * (printable, so it can be copied; the gateway keys on the characters, newline dropped).
 * O_EXCL: an existing key is never replaced, since tokens signed with it would stop
 * working. 0600: the secret signs tokens. Returns 0 or -errno with err set. */
static int init_key(const char *path, char *err, size_t cap)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[INIT_SECRET_BYTES + 2] = {0}; /* padded to a multiple of 3 */
    if (getrandom(raw, INIT_SECRET_BYTES, 0) != INIT_SECRET_BYTES) {
        snprintf(err, cap, "cannot read random bytes: %s", strerror(errno));
        return -EIO;
    }
    char text[64];
    size_t n = 0;
    for (size_t i = 0; i < INIT_SECRET_BYTES; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 3; k >= 0; k--)
            text[n++] = b64url[(v >> (6 * k)) & 63];
    }
    n = (INIT_SECRET_BYTES * 8 + 5) / 6; /* 43: the last group holds 2 bytes, not 3 */
    text[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, cap, "%s: %s%s", path, strerror(e),
                 e == EEXIST ? " (remove it first to make a new key; tokens signed with the "
                               "old one stop working)"
                             : "");
        return -e;
    }
    ssize_t w = write(fd, text, n);
    int e = w == (ssize_t)n ? 0 : w < 0 ? errno : EIO;
    if (close(fd) < 0 && e == 0)
        e = errno;
    if (e) {
        unlink(path);
        snprintf(err, cap, "%s: cannot write: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

int gw_token_main(int argc, char **argv)
{
    token_opts_t o;
    opts_defaults(&o);
    int rc = cm_flags_parse(&gw_token_cmd, argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    char err[2048]; /* a path of up to 1023 bytes and what went wrong */
    if (o.init[0]) {
        if (init_key(o.init, err, sizeof err) < 0) {
            fprintf(stderr, "cmesh token: --init %s\n", err);
            return 1;
        }
        fprintf(stderr, "cmesh token: wrote a new HS256 secret to %s\n", o.init);
        return 0;
    }
    if (!o.sub[0]) {
        fprintf(stderr, "cmesh token: --sub NAME is required; see cmesh token --help\n");
        return 2;
    }
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
