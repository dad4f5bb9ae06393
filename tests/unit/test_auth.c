/* tests/unit/test_auth.c: JWT verification and signing (gateway/auth.h). Keys are made
 * at test time with OpenSSL into a temporary directory; hostile tokens are forged with
 * libjwt or by hand. */
#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "gateway/auth.h"

#define NOW 1700000000 /* Unix seconds: a fixed clock for every test */

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/cmesh-auth-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    static const char *names[] = {"rsa.pem", "rsa.pub", "ec.pem",   "ec.pub",
                                  "hs.key",  "hs2.key", "short.key"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

TestSuite(auth, .init = make_dir, .fini = remove_dir);

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

static const char *file_in_dir(const char *name)
{
    static char path[4][128];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(file_in_dir(name), "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes NAME.pem (private) and NAME.pub (public) for a new RSA-2048 or P-256 key. */
static void make_keypair(const char *name, int rsa)
{
    EVP_PKEY *k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    cr_assert_not_null(k);
    char file[32];
    snprintf(file, sizeof file, "%s.pem", name);
    FILE *f = fopen(file_in_dir(file), "w");
    cr_assert(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    snprintf(file, sizeof file, "%s.pub", name);
    f = fopen(file_in_dir(file), "w");
    cr_assert(f && PEM_write_PUBKEY(f, k));
    fclose(f);
    EVP_PKEY_free(k);
}

static const char hs_secret[] = "0123456789abcdef0123456789abcdef-test";

/* iss / aud: the required value, "" for the default, NULL for any. */
static gw_auth_t *auth_for(const char *file, const char *iss, const char *aud)
{
    gw_auth_cfg_t cfg = {.leeway_ms = 30000, .any_issuer = !iss, .any_audience = !aud};
    snprintf(cfg.key_file, sizeof cfg.key_file, "%s", file_in_dir(file));
    snprintf(cfg.issuer, sizeof cfg.issuer, "%s", iss ? iss : "");
    snprintf(cfg.audience, sizeof cfg.audience, "%s", aud ? aud : "");
    gw_auth_t *a = NULL;
    char err[256] = "";
    cr_assert_eq(gw_auth_new(&cfg, &a, err, sizeof err), 0, "%s: %s", file, err);
    return a;
}

/* HS256 that accepts any iss and aud: for tests of the other claims. */
static gw_auth_t *hs_auth(void)
{
    write_text("hs.key", hs_secret);
    return auth_for("hs.key", NULL, NULL);
}

static char *sign(const gw_auth_t *a, const char *sub, const char *scope, int64_t now, int64_t ttl)
{
    char *tok = NULL;
    char err[256] = "";
    cr_assert_eq(gw_auth_sign(a, sub, scope, now, ttl, &tok, err, sizeof err), 0, "%s", err);
    return tok;
}

/* Verifies tok at NOW; returns the refusal reason ("" when accepted). */
static const char *verify(const gw_auth_t *a, const char *tok, gw_claims_t *c)
{
    static char why[128];
    gw_claims_t scratch;
    why[0] = '\0';
    int rc = gw_auth_verify(a, tok, strlen(tok), NOW, c ? c : &scratch, why, sizeof why);
    cr_assert_eq(rc == 0, why[0] == '\0', "rc %d with why '%s'", rc, why);
    if (rc != 0)
        cr_assert_eq(rc, -EACCES);
    return why;
}

/* A token with these claims (JSON) signed by libjwt with alg and key: for claims that
 * gw_auth_sign never writes, and for tokens an attacker would make. */
static char *forge(jwt_alg_t alg, const void *key, size_t key_len, const char *claims)
{
    jwt_t *jwt = NULL;
    cr_assert_eq(jwt_new(&jwt), 0);
    cr_assert_eq(jwt_add_grants_json(jwt, claims), 0);
    cr_assert_eq(jwt_set_alg(jwt, alg, key, (int)key_len), 0);
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    cr_assert_not_null(tok);
    return tok;
}

static char *forge_hs(const char *claims)
{
    return forge(JWT_ALG_HS256, hs_secret, strlen(hs_secret), claims);
}

static void sign_and_verify_round_trip(const char *keyfile, const char *alg)
{
    gw_auth_t *a = auth_for(keyfile, "https://issuer", "gateway");
    cr_assert_str_eq(gw_auth_alg(a), alg);
    char *tok = sign(a, "alice", "users:read orders:write", NOW, 3600);
    gw_claims_t c;
    cr_assert_str_eq(verify(a, tok, &c), "");
    cr_assert_str_eq(c.sub, "alice");
    cr_assert_str_eq(c.scope, "users:read orders:write");
    free(tok);
    gw_auth_free(a);
}

/* ------------------------------------------------------------------ */
/* Keys and round trips                                                 */
/* ------------------------------------------------------------------ */

Test(auth, hs256_signs_and_verifies)
{
    write_text("hs.key", "0123456789abcdef0123456789abcdef\n\n");
    sign_and_verify_round_trip("hs.key", "HS256");
}

Test(auth, rs256_signs_and_verifies)
{
    make_keypair("rsa", 1);
    sign_and_verify_round_trip("rsa.pem", "RS256");
}

Test(auth, es256_signs_and_verifies)
{
    make_keypair("ec", 0);
    sign_and_verify_round_trip("ec.pem", "ES256");
}

Test(auth, public_key_verifies_tokens_of_its_private_key)
{
    make_keypair("ec", 0);
    gw_auth_t *priv = auth_for("ec.pem", "", "");
    gw_auth_t *pub = auth_for("ec.pub", "", "");
    char *tok = sign(priv, "bob", "", NOW, 60);
    gw_claims_t c;
    cr_assert_str_eq(verify(pub, tok, &c), "");
    cr_assert_str_eq(c.sub, "bob");
    cr_assert_str_eq(c.scope, "");
    free(tok);
    gw_auth_free(priv);
    gw_auth_free(pub);
}

Test(auth, short_secret_is_refused)
{
    write_text("short.key", "too-short-secret\n");
    gw_auth_cfg_t cfg = {0};
    snprintf(cfg.key_file, sizeof cfg.key_file, "%s", file_in_dir("short.key"));
    gw_auth_t *a = NULL;
    char err[256] = "";
    cr_assert_eq(gw_auth_new(&cfg, &a, err, sizeof err), -EINVAL);
    cr_assert_null(a);
    cr_assert_not_null(strstr(err, "at least 32"), "%s", err);
}

Test(auth, missing_key_file_names_the_file)
{
    gw_auth_cfg_t cfg = {.key_file = "/nonexistent/cmesh.key"};
    gw_auth_t *a = NULL;
    char err[256] = "";
    cr_assert_eq(gw_auth_new(&cfg, &a, err, sizeof err), -ENOENT);
    cr_assert_not_null(strstr(err, "/nonexistent/cmesh.key"), "%s", err);
}

Test(auth, signing_with_a_public_key_is_refused)
{
    make_keypair("rsa", 1);
    gw_auth_t *a = auth_for("rsa.pub", "", "");
    char *tok = NULL;
    char err[256] = "";
    cr_assert_eq(gw_auth_sign(a, "alice", "", NOW, 60, &tok, err, sizeof err), -EINVAL);
    cr_assert_null(tok);
    cr_assert_str_eq(err, "KEYFILE holds a public key; signing needs the private key");
    gw_auth_free(a);
}

/* ------------------------------------------------------------------ */
/* Claims                                                               */
/* ------------------------------------------------------------------ */

Test(auth, expired_token_is_refused_after_the_leeway)
{
    gw_auth_t *a = hs_auth();
    char *old = sign(a, "alice", "", NOW - 7200, 3600);
    cr_assert_str_eq(verify(a, old, NULL), "token expired");
    char *just = sign(a, "alice", "", NOW - 3610, 3600); /* 10 s late, leeway 30 s */
    cr_assert_str_eq(verify(a, just, NULL), "");
    free(old);
    free(just);
    gw_auth_free(a);
}

Test(auth, token_without_exp_is_refused)
{
    gw_auth_t *a = hs_auth();
    char *tok = forge_hs("{\"sub\":\"alice\"}");
    cr_assert_str_eq(verify(a, tok, NULL), "missing exp");
    free(tok);
    gw_auth_free(a);
}

Test(auth, token_before_nbf_is_refused)
{
    gw_auth_t *a = hs_auth();
    char *tok = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"nbf\":1700000100}");
    cr_assert_str_eq(verify(a, tok, NULL), "token not yet valid");
    char *soon = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"nbf\":1700000010}");
    cr_assert_str_eq(verify(a, soon, NULL), ""); /* within the leeway */
    free(tok);
    free(soon);
    gw_auth_free(a);
}

Test(auth, extreme_exp_and_nbf_do_not_overflow)
{
    gw_auth_t *a = hs_auth();
    char *far = forge_hs("{\"sub\":\"a\",\"exp\":9223372036854775807,"
                         "\"nbf\":-9223372036854775807}");
    cr_assert_str_eq(verify(a, far, NULL), "");
    char *past = forge_hs("{\"sub\":\"a\",\"exp\":-9223372036854775807}");
    cr_assert_str_eq(verify(a, past, NULL), "token expired");
    char *late = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"nbf\":9223372036854775807}");
    cr_assert_str_eq(verify(a, late, NULL), "token not yet valid");
    char *real = forge_hs("{\"sub\":\"a\",\"exp\":1700009999.5}");
    cr_assert_str_eq(verify(a, real, NULL), "malformed token");
    free(far);
    free(past);
    free(late);
    free(real);
    gw_auth_free(a);
}

Test(auth, wrong_issuer_is_refused)
{
    write_text("hs.key", hs_secret);
    gw_auth_t *a = auth_for("hs.key", "https://issuer", "");
    char *tok = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"iss\":\"https://evil\"}");
    cr_assert_str_eq(verify(a, tok, NULL), "wrong issuer");
    char *none = forge_hs("{\"sub\":\"a\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(a, none, NULL), "wrong issuer");
    free(tok);
    free(none);
    gw_auth_free(a);
}

Test(auth, wrong_audience_is_refused_and_an_array_may_hold_it)
{
    write_text("hs.key", hs_secret);
    gw_auth_t *a = auth_for("hs.key", NULL, "gateway");
    char *wrong = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"aud\":\"billing\"}");
    cr_assert_str_eq(verify(a, wrong, NULL), "wrong audience");
    char *arr = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"aud\":[\"billing\",\"gateway\"]}");
    cr_assert_str_eq(verify(a, arr, NULL), "");
    char *arr_wrong = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"aud\":[\"billing\"]}");
    cr_assert_str_eq(verify(a, arr_wrong, NULL), "wrong audience");
    free(wrong);
    free(arr);
    free(arr_wrong);
    gw_auth_free(a);
}

Test(auth, scope_and_scp_arrays_are_joined_with_spaces)
{
    gw_auth_t *a = hs_auth();
    gw_claims_t c;
    char *scope = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"scope\":[\"users:read\",\"x\"]}");
    cr_assert_str_eq(verify(a, scope, &c), "");
    cr_assert_str_eq(c.scope, "users:read x");
    char *scp = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"scp\":[\"orders:write\"]}");
    cr_assert_str_eq(verify(a, scp, &c), "");
    cr_assert_str_eq(c.scope, "orders:write");
    free(scope);
    free(scp);
    gw_auth_free(a);
}

/* ------------------------------------------------------------------ */
/* Hostile tokens                                                       */
/* ------------------------------------------------------------------ */

static char *b64url(const char *s)
{
    unsigned char out[512];
    int n = EVP_EncodeBlock(out, (const unsigned char *)s, (int)strlen(s));
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return strndup((char *)out, (size_t)n);
}

static char *b64url_bytes(const unsigned char *in, size_t len)
{
    unsigned char out[512];
    int n = EVP_EncodeBlock(out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return strndup((char *)out, (size_t)n);
}

Test(auth, alg_none_token_is_refused)
{
    gw_auth_t *a = hs_auth();
    char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    char *p = b64url("{\"sub\":\"admin\",\"exp\":1700009999}");
    char tok[512];
    snprintf(tok, sizeof tok, "%s.%s.", h, p);
    cr_assert_str_eq(verify(a, tok, NULL), "algorithm not allowed");
    free(h);
    free(p);
    gw_auth_free(a);
}

Test(auth, hs256_signed_with_the_public_key_is_refused)
{
    make_keypair("rsa", 1);
    gw_auth_t *a = auth_for("rsa.pub", "", "");
    FILE *f = fopen(file_in_dir("rsa.pub"), "r");
    char pem[4096];
    size_t n = fread(pem, 1, sizeof pem, f);
    fclose(f);
    char *tok = forge(JWT_ALG_HS256, pem, n, "{\"sub\":\"admin\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(a, tok, NULL), "algorithm not allowed");
    free(tok);
    gw_auth_free(a);
}

Test(auth, token_of_another_key_is_refused)
{
    make_keypair("ec", 0);
    gw_auth_t *a = auth_for("ec.pub", "", "");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, other, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    char *tok = forge(JWT_ALG_ES256, pem, (size_t)n, "{\"sub\":\"a\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(a, tok, NULL), "bad signature");
    free(tok);
    BIO_free(bio);
    EVP_PKEY_free(other);
    gw_auth_free(a);

    write_text("hs2.key", "another-secret-another-secret-another-secret");
    gw_auth_t *hs = auth_for("hs2.key", "", "");
    char *hs_tok = forge_hs("{\"sub\":\"a\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(hs, hs_tok, NULL), "bad signature");
    free(hs_tok);
    gw_auth_free(hs);
}

Test(auth, tampered_payload_is_refused)
{
    make_keypair("rsa", 1);
    gw_auth_t *a = auth_for("rsa.pem", "", "");
    char *tok = sign(a, "alice", "users:read", NOW, 3600);
    char *p = b64url("{\"sub\":\"admin\",\"scope\":\"users:write\",\"exp\":1700009999}");
    char *dot1 = strchr(tok, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    char forged[2048];
    snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(dot1 - tok), tok, p, dot2);
    cr_assert_str_eq(verify(a, forged, NULL), "bad signature");
    free(p);
    free(tok);
    gw_auth_free(a);
}

Test(auth, tampered_signature_is_refused)
{
    make_keypair("ec", 0);
    gw_auth_t *a = auth_for("ec.pem", "", "");
    char *tok = sign(a, "alice", "", NOW, 3600);
    char *sig = strrchr(tok, '.') + 1;
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    cr_assert_str_eq(verify(a, tok, NULL), "bad signature");
    free(tok);
    gw_auth_free(a);
}

Test(auth, garbage_is_malformed)
{
    gw_auth_t *a = hs_auth();
    cr_assert_str_eq(verify(a, "not-a-token", NULL), "malformed token");
    cr_assert_str_eq(verify(a, "a.b.c", NULL), "malformed token");
    cr_assert_str_eq(verify(a, "a.b.c.d", NULL), "malformed token");
    char why[64];
    gw_claims_t c;
    cr_assert_eq(gw_auth_verify(a, "", 0, NOW, &c, why, sizeof why), -EACCES);
    cr_assert_str_eq(why, "malformed token");
    gw_auth_free(a);
}

Test(auth, token_length_is_respected_without_a_nul)
{
    gw_auth_t *a = hs_auth();
    char *tok = sign(a, "alice", "", NOW, 60);
    size_t len = strlen(tok);
    char *buf = malloc(len + 8);
    memcpy(buf, tok, len);
    memcpy(buf + len, "garbage", 8);
    char why[64] = "";
    gw_claims_t c;
    cr_assert_eq(gw_auth_verify(a, buf, len, NOW, &c, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq(c.sub, "alice");
    free(buf);
    free(tok);
    gw_auth_free(a);
}

/* ------------------------------------------------------------------ */
/* Scopes                                                               */
/* ------------------------------------------------------------------ */

Test(auth, scopes_allow_needs_every_scope_exactly)
{
    cr_assert(gw_scopes_allow("users:read orders:write", "users:read"));
    cr_assert(gw_scopes_allow("users:read orders:write", "orders:write users:read"));
    cr_assert(gw_scopes_allow("users:read", ""));
    cr_assert(gw_scopes_allow("", "  "));
    cr_assert_not(gw_scopes_allow("users:read", "users:write"));
    cr_assert_not(gw_scopes_allow("users:readwrite", "users:read"));
    cr_assert_not(gw_scopes_allow("users:read", "users:read orders:read"));
    cr_assert_not(gw_scopes_allow("", "users:read"));
}

Test(auth, scopes_of_any_length_are_checked)
{
    char big[700], other[700], have[1500];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(other, big, sizeof big);
    other[sizeof other - 2] = 'b'; /* differs in the last byte only */
    snprintf(have, sizeof have, "x %s", other);
    cr_assert_not(gw_scopes_allow("x", big));
    cr_assert_not(gw_scopes_allow(have, big));
    snprintf(have, sizeof have, "x %s", big);
    cr_assert(gw_scopes_allow(have, big));
    cr_assert(gw_scope_held(have, big, strlen(big)));
    cr_assert_not(gw_scope_held(have, big, strlen(big) - 1)); /* a prefix is not the scope */
}

/* ------------------------------------------------------------------ */
/* Issuer and audience: required unless the config says any             */
/* ------------------------------------------------------------------ */

Test(auth, default_issuer_and_audience_are_required_and_signed)
{
    write_text("hs.key", hs_secret);
    gw_auth_t *a = auth_for("hs.key", "", "");
    char *none = forge_hs("{\"sub\":\"a\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(a, none, NULL), "wrong issuer");
    char *no_aud =
        forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"iss\":\"" GW_AUTH_DEFAULT_ISSUER "\"}");
    cr_assert_str_eq(verify(a, no_aud, NULL), "wrong audience");
    char *both = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"iss\":\"" GW_AUTH_DEFAULT_ISSUER
                          "\",\"aud\":\"" GW_AUTH_DEFAULT_AUDIENCE "\"}");
    cr_assert_str_eq(verify(a, both, NULL), "");
    char *signed_tok = sign(a, "alice", "", NOW, 60); /* cmesh token mints what is required */
    cr_assert_str_eq(verify(a, signed_tok, NULL), "");
    free(none);
    free(no_aud);
    free(both);
    free(signed_tok);
    gw_auth_free(a);
}

Test(auth, any_issuer_and_audience_accept_every_value_and_none)
{
    gw_auth_t *a = hs_auth();
    char *none = forge_hs("{\"sub\":\"a\",\"exp\":1700009999}");
    cr_assert_str_eq(verify(a, none, NULL), "");
    char *some = forge_hs("{\"sub\":\"a\",\"exp\":1700009999,\"iss\":\"x\",\"aud\":[\"y\"]}");
    cr_assert_str_eq(verify(a, some, NULL), "");
    free(none);
    free(some);
    gw_auth_free(a);
}

Test(auth, duplicate_claims_are_malformed)
{
    gw_auth_t *a = hs_auth();
    char *h = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    char *p = b64url("{\"sub\":\"alice\",\"exp\":1700009999,\"sub\":\"admin\"}");
    char input[512], tok[600];
    snprintf(input, sizeof input, "%s.%s", h, p);
    unsigned char mac[32];
    unsigned int n = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), hs_secret, (int)strlen(hs_secret),
                            (const unsigned char *)input, strlen(input), mac, &n));
    char *sig = b64url_bytes(mac, n);
    snprintf(tok, sizeof tok, "%s.%s", input, sig);
    cr_assert_str_eq(verify(a, tok, NULL), "malformed token");
    free(h);
    free(p);
    free(sig);
    gw_auth_free(a);
}

/* ------------------------------------------------------------------ */
/* crit, and one spelling per signature                                 */
/* ------------------------------------------------------------------ */

Test(auth, crit_header_is_refused)
{
    gw_auth_t *a = hs_auth();
    static const char *const headers[] = {
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"crit\":[]}",
        "{\"alg\":\"HS256\",\"crit\":\"b64\",\"b64\":false}",
    };
    char *p = b64url("{\"sub\":\"a\",\"exp\":1700009999}");
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = b64url(headers[i]);
        char input[512], tok[600];
        snprintf(input, sizeof input, "%s.%s", h, p);
        unsigned char mac[32];
        unsigned int n = 0;
        cr_assert_not_null(HMAC(EVP_sha256(), hs_secret, (int)strlen(hs_secret),
                                (const unsigned char *)input, strlen(input), mac, &n));
        char *sig = b64url_bytes(mac, n);
        snprintf(tok, sizeof tok, "%s.%s", input, sig);
        cr_assert_str_eq(verify(a, tok, NULL), "unsupported critical header", "%s", headers[i]);
        free(h);
        free(sig);
    }
    free(p);
    gw_auth_free(a);
}

/* tok verifies under a; no other spelling of its signature does. */
static void one_spelling(const gw_auth_t *a, const char *tok)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    cr_assert_str_eq(verify(a, tok, NULL), "");
    size_t len = strlen(tok), sig = (size_t)(strrchr(tok, '.') + 1 - tok);
    char v[2048];
    for (const char *j = "!*~%$+/= \t.\\\""; *j; j++) {
        for (size_t at = sig; at <= len; at++) { /* every position of the segment */
            snprintf(v, sizeof v, "%.*s%c%s", (int)at, tok, *j, tok + at);
            cr_assert_str_neq(verify(a, v, NULL), "", "'%c' at %zu accepted", *j, at - sig);
        }
    }
    static const char *const tails[] = {"=", "==", "A", "AA", "AAAA"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        snprintf(v, sizeof v, "%s%s", tok, tails[i]);
        cr_assert_str_neq(verify(a, v, NULL), "", "'%s' appended accepted", tails[i]);
    }
    snprintf(v, sizeof v, "%sAAAA", tok); /* canonical, three bytes too long */
    cr_assert_str_eq(verify(a, v, NULL), "malformed signature");
    for (size_t cut = 1; cut <= 4; cut++) {
        snprintf(v, sizeof v, "%.*s", (int)(len - cut), tok);
        cr_assert(strncmp(verify(a, v, NULL), "malformed ", 10) == 0, "%zu chars cut accepted",
                  cut);
    }
    for (unsigned bit = 1; bit < 16; bit <<= 1) { /* the last character's spare bits */
        snprintf(v, sizeof v, "%s", tok);
        char *last = v + len - 1;
        unsigned val = (unsigned)(strchr(al, *last) - al);
        if (((len - sig) % 4 == 3 && bit > 2)) /* 3 chars carry 2 bytes: 2 spare bits */
            break;
        *last = al[val ^ bit];
        cr_assert_str_eq(verify(a, v, NULL), "malformed token", "spare bit %u set accepted", bit);
    }
}

Test(auth, hs256_signature_has_one_spelling)
{
    gw_auth_t *a = hs_auth();
    char *tok = sign(a, "alice", "", NOW, 60);
    one_spelling(a, tok);
    free(tok);
    gw_auth_free(a);
}

Test(auth, rs256_signature_has_one_spelling)
{
    make_keypair("rsa", 1);
    gw_auth_t *a = auth_for("rsa.pem", "", "");
    char *tok = sign(a, "alice", "", NOW, 60);
    cr_assert_eq(strlen(strrchr(tok, '.') + 1), 342); /* 256 bytes */
    one_spelling(a, tok);
    free(tok);
    gw_auth_free(a);
}

Test(auth, es256_signature_has_one_spelling)
{
    make_keypair("ec", 0);
    gw_auth_t *a = auth_for("ec.pem", "", "");
    char *tok = sign(a, "alice", "", NOW, 60);
    cr_assert_eq(strlen(strrchr(tok, '.') + 1), 86); /* R || S, 64 bytes */
    one_spelling(a, tok);
    free(tok);
    gw_auth_free(a);
}

Test(auth, rs256_signature_length_follows_the_modulus)
{
    EVP_PKEY *k = EVP_RSA_gen(3072);
    cr_assert_not_null(k);
    FILE *f = fopen(file_in_dir("rsa.pem"), "w");
    cr_assert(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    EVP_PKEY_free(k);
    gw_auth_t *a = auth_for("rsa.pem", "", "");
    char *tok = sign(a, "alice", "", NOW, 60);
    cr_assert_eq(strlen(strrchr(tok, '.') + 1), 512); /* 384 bytes */
    cr_assert_str_eq(verify(a, tok, NULL), "");
    free(tok);
    gw_auth_free(a);
}
