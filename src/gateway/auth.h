/* gateway/auth.h: JWT bearer tokens: verification for the proxy and signing for
 * `cmesh token`. HS256 (shared secret), RS256 (RSA) and ES256 (EC P-256) through
 * libjwt/OpenSSL; the algorithm is pinned by the key type, so a token cannot choose
 * it ("none" and HS256-signed-with-the-public-key are refused). Thread-safe: one
 * gw_auth_t is shared by every worker. */
#ifndef CMESH_GATEWAY_AUTH_H
#define CMESH_GATEWAY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/flags.h"
#include "gateway/config.h"

typedef struct gw_auth gw_auth_t; /* opaque */

typedef struct gw_claims {
    char sub[256];    /* subject ("" when absent) */
    char scope[1024]; /* space-separated scopes ("scope" claim; "" when absent) */
} gw_claims_t;

/* Loads cfg->key_file. A PEM private key is accepted too (its public half verifies,
 * and it can sign). Returns 0, or -EINVAL/-errno with err ("KEYFILE: what is wrong").
 * Caller owns *out. */
int gw_auth_new(const gw_auth_cfg_t *cfg, gw_auth_t **out, char *err, size_t err_cap);
void gw_auth_free(gw_auth_t *a);             /* NULL is a no-op */
const char *gw_auth_alg(const gw_auth_t *a); /* "HS256", "RS256" or "ES256" */

/* Verifies token (the text after "Bearer "): its form (three canonical base64url
 * segments, the signature exactly as long as the key's algorithm makes it, no "crit"
 * header), alg, signature, exp (required), nbf, iss and aud (always, unless the config
 * says any), with the configured leeway. now_s: Unix seconds. Returns 0 with *claims
 * filled, or -EACCES with why set to a short reason for WWW-Authenticate ("token
 * expired", "bad signature", "wrong audience", "malformed signature", ...). */
int gw_auth_verify(const gw_auth_t *a, const char *token, size_t len, int64_t now_s,
                   gw_claims_t *claims, char *why, size_t why_cap);

/* Signs a token for sub with scope (may be ""), iat = now_s, exp = now_s + ttl_s, and
 * the iss/aud that verification requires (none for one the config accepts as any). Needs a private
 * key (or the HS256 secret). Returns 0 with a malloc'd NUL-terminated token in *out, or -EINVAL
 * with err. */
int gw_auth_sign(const gw_auth_t *a, const char *sub, const char *scope, int64_t now_s,
                 int64_t ttl_s, char **out, char *err, size_t err_cap);

/* 1 when every space-separated scope in need appears in have (also space-separated).
 * Scopes of any length. */
int gw_scopes_allow(const char *have, const char *need);
/* 1 when the one scope need[0..len) (no NUL needed) appears whole in have. */
int gw_scope_held(const char *have, const char *need, size_t len);

/* `cmesh token --sub NAME [--scope "a b"] [--ttl 1h] (--config FILE | --auth-key FILE)
 * [--issuer I] [--audience A]`: prints a signed token and a newline. Exit 0, 2 on
 * usage or key errors. */
int gw_token_main(int argc, char **argv);
/* Its command line (options private to token.c), for main and the help tests. */
extern const cm_cmd_t gw_token_cmd;

#endif
