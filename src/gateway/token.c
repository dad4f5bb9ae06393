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
    const char *sub;    /* required */
    const char *scope;  /* "" = no scope claim */
    uint64_t ttl_ms;    /* default 1h */
    const char *config; /* take key, issuer and audience from this gateway config */
    const char *init;   /* --init FILE: write a new HS256 secret there and exit */
    gw_auth_cfg_t auth; /* flags, which win over the config's */
} token_opts_t;

static const char help[] =
    "usage: cmesh token --sub NAME [--scope \"a b\"] [--ttl 1h] (--config FILE | --auth-key FILE)\n"
    "                   [--issuer I] [--audience A]\n"
    "       cmesh token --init FILE\n"
    "\n"
    "Prints a signed JWT (and a newline) that the gateway accepts.\n"
    "\n"
    "  --sub NAME        the token's subject (required)\n"
    "  --scope \"A B\"     space-separated scopes, e.g. \"users:read orders:write\"\n"
    "  --ttl DURATION    lifetime: 30m, 1h, 24h... (default 1h)\n"
    "  --config FILE     the gateway's YAML config: its auth key, issuer and audience\n"
    "  --auth-key FILE   HS256 secret (>= 32 bytes) or a PEM private key (RSA, EC P-256)\n"
    "  --issuer I        iss claim\n"
    "  --audience A      aud claim\n"
    "  --init FILE       write a new random HS256 secret to FILE (mode 0600; an existing\n"
    "                    file is never overwritten) and exit\n";

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
    if (strcmp(name, "init") == 0) {
        o->init = v;
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
    token_opts_t o = {.scope = "", .ttl_ms = 3600 * 1000};
    int rc = cm_flags_parse(argc, argv, "token", help, set_flag, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    char err[1024];
    if (o.init) {
        if (init_key(o.init, err, sizeof err) < 0) {
            fprintf(stderr, "cmesh token: --init %s\n", err);
            return 1;
        }
        fprintf(stderr, "cmesh token: wrote a new HS256 secret to %s\n", o.init);
        return 0;
    }
    if (!o.sub || !*o.sub) {
        fprintf(stderr, "cmesh token: --sub NAME is required; see cmesh token --help\n");
        return 2;
    }
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
