/* gateway/auth.c: JWT verification for the proxy and signing for `cmesh token` (auth.h).
 * The key file decides the one algorithm accepted (HS256, RS256 or ES256); the token
 * header is checked against it before libjwt sees the token, because libjwt verifies
 * with whatever alg the header names. Claims are read with jansson from libjwt's JSON. */
#include "gateway/auth.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define HS256_MIN_SECRET 32    /* bytes: RFC 7518 3.2, a key at least as long as the hash */
#define RSA_MIN_BITS     2048  /* smaller RSA keys are breakable */
#define KEY_FILE_MAX     65536 /* bytes: a PEM key is a few KiB; anything larger is a mistake */
#define TOKEN_MAX        16384 /* bytes: refuse absurd Authorization headers before decoding */
#define HS256_SIG_LEN    32    /* bytes: an HMAC-SHA-256 */
#define ES256_SIG_LEN    64    /* bytes: R || S, 32 each (RFC 7518 3.4), not DER */

struct gw_auth {
    jwt_alg_t alg;         /* the only algorithm accepted and used to sign */
    unsigned char *verify; /* HS256: the secret; RS/ES: the public key PEM */
    size_t verify_len;
    unsigned char *sign; /* HS256: the secret again; RS/ES: private PEM or NULL */
    size_t sign_len;
    size_t sig_len;     /* the signature's exact size in bytes: a token has one spelling */
    char issuer[256];   /* required iss; "" = not checked (issuer: any) */
    char audience[256]; /* required aud; "" = not checked (audience: any) */
    int64_t leeway_s;   /* clock skew allowed on exp and nbf */
};

/* ------------------------------------------------------------------ */
/* Key loading                                                          */
/* ------------------------------------------------------------------ */

static int read_key_file(const char *path, unsigned char **out, size_t *len, char *err,
                         size_t err_cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, err_cap, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    unsigned char *buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        snprintf(err, err_cap, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > KEY_FILE_MAX) {
        snprintf(err, err_cap, "%s: %s", path,
                 failed ? "cannot read" : "larger than 64 KiB; give a secret or a PEM key");
        free(buf);
        return failed ? -EIO : -EINVAL;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Never prompt for a passphrase on the terminal: an encrypted key is an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* Picks RS256 or ES256 for pkey; only P-256 curves and RSA >= 2048 bits. */
static int alg_for_pkey(EVP_PKEY *pkey, const char *path, jwt_alg_t *alg, char *err, size_t err_cap)
{
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_RSA) {
        if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
            snprintf(err, err_cap, "%s: RSA key of %d bits; use at least %d", path,
                     EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
            return -EINVAL;
        }
        *alg = JWT_ALG_RS256;
        return 0;
    }
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            &glen) ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(err, err_cap, "%s: EC curve '%s' is not supported; use P-256 (ES256)", path,
                     group);
            return -EINVAL;
        }
        *alg = JWT_ALG_ES256;
        return 0;
    }
    snprintf(err, err_cap, "%s: key type is neither RSA nor EC P-256", path);
    return -EINVAL;
}

/* Writes the SubjectPublicKeyInfo PEM of pkey (the form libjwt verifies with). */
static int public_pem(EVP_PKEY *pkey, unsigned char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return -ENOMEM;
    int rc = -ENOMEM;
    char *data;
    if (PEM_write_bio_PUBKEY(bio, pkey)) {
        long n = BIO_get_mem_data(bio, &data);
        *out = malloc((size_t)n + 1);
        if (*out) {
            memcpy(*out, data, (size_t)n);
            (*out)[n] = '\0';
            *len = (size_t)n;
            rc = 0;
        }
    }
    BIO_free(bio);
    return rc;
}

/* Loads a PEM key: a private key keeps its PEM for signing; either way the public PEM
 * verifies. Takes ownership of pem. */
static int load_pem(gw_auth_t *a, const char *path, unsigned char *pem, size_t len, char *err,
                    size_t err_cap)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        free(pem);
        return -ENOMEM;
    }
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    int is_private = pkey != NULL;
    if (!pkey) {
        (void)BIO_reset(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    BIO_free(bio);
    ERR_clear_error(); /* the failed attempt queued errors no one else should see */
    if (!pkey) {
        snprintf(err, err_cap,
                 "%s: not a readable PEM key (unencrypted private key or \"PUBLIC KEY\")", path);
        free(pem);
        return -EINVAL;
    }
    int rc = alg_for_pkey(pkey, path, &a->alg, err, err_cap);
    /* RS256: the modulus size (EVP_PKEY_get_size); ES256's is the DER maximum, not R||S */
    a->sig_len = a->alg == JWT_ALG_RS256 ? (size_t)EVP_PKEY_get_size(pkey) : ES256_SIG_LEN;
    if (rc == 0)
        rc = public_pem(pkey, &a->verify, &a->verify_len);
    EVP_PKEY_free(pkey);
    if (rc == 0 && is_private) {
        a->sign = pem;
        a->sign_len = len;
    } else {
        free(pem);
    }
    return rc;
}

/* An HS256 secret: the raw bytes without trailing newlines. Takes ownership of buf. */
static int load_secret(gw_auth_t *a, const char *path, unsigned char *buf, size_t len, char *err,
                       size_t err_cap)
{
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len < HS256_MIN_SECRET) {
        snprintf(err, err_cap, "%s: HS256 secret is %zu bytes; use at least %d random bytes", path,
                 len, HS256_MIN_SECRET);
        free(buf);
        return -EINVAL;
    }
    a->alg = JWT_ALG_HS256;
    a->sig_len = HS256_SIG_LEN;
    a->verify = buf;
    a->verify_len = len;
    a->sign = NULL; /* the same buffer: see gw_auth_sign */
    return 0;
}

int gw_auth_new(const gw_auth_cfg_t *cfg, gw_auth_t **out, char *err, size_t err_cap)
{
    if (!cfg->key_file[0]) {
        snprintf(err, err_cap, "auth: no key file given");
        return -EINVAL;
    }
    gw_auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    /* RFC 7519 4.1.3: an aud the gateway does not identify with is refused, so both
     * claims are always checked unless the config opted out by name */
    if (!cfg->any_issuer)
        snprintf(a->issuer, sizeof a->issuer, "%s",
                 cfg->issuer[0] ? cfg->issuer : GW_AUTH_DEFAULT_ISSUER);
    if (!cfg->any_audience)
        snprintf(a->audience, sizeof a->audience, "%s",
                 cfg->audience[0] ? cfg->audience : GW_AUTH_DEFAULT_AUDIENCE);
    a->leeway_s = (int64_t)((cfg->leeway_ms + 999) / 1000);

    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = read_key_file(cfg->key_file, &buf, &len, err, err_cap);
    if (rc == 0) {
        if (strstr((char *)buf, "-----BEGIN "))
            rc = load_pem(a, cfg->key_file, buf, len, err, err_cap);
        else
            rc = load_secret(a, cfg->key_file, buf, len, err, err_cap);
    }
    if (rc < 0) {
        gw_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void gw_auth_free(gw_auth_t *a)
{
    if (!a)
        return;
    if (a->verify)
        OPENSSL_cleanse(a->verify, a->verify_len);
    if (a->sign)
        OPENSSL_cleanse(a->sign, a->sign_len);
    free(a->verify);
    free(a->sign);
    free(a);
}

const char *gw_auth_alg(const gw_auth_t *a)
{
    return jwt_alg_str(a->alg);
}

/* ------------------------------------------------------------------ */
/* Verification                                                         */
/* ------------------------------------------------------------------ */

static int refuse(char *why, size_t why_cap, const char *reason)
{
    snprintf(why, why_cap, "%s", reason);
    return -EACCES;
}

/* Decodes base64url (no padding) src[0..len) into a NUL-terminated malloc'd string. */
static char *b64url_decode(const char *src, size_t len)
{
    if (len % 4 == 1)
        return NULL;
    size_t padded = (len + 3) / 4 * 4;
    unsigned char *in = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    int n = -1;
    if (in && out) {
        for (size_t i = 0; i < len; i++) {
            char c = src[i];
            in[i] = c == '-' ? '+' : c == '_' ? '/' : (unsigned char)c;
            if (c == '+' || c == '/' || c == '=')
                in[i] = '!'; /* base64url only: refuse the standard alphabet's extras */
        }
        memset(in + len, '=', padded - len);
        n = EVP_DecodeBlock(out, in, (int)padded);
    }
    free(in);
    if (n < 0) {
        free(out);
        return NULL;
    }
    n -= (int)(padded - len); /* EVP_DecodeBlock counts the padding as zero bytes */
    out[n] = '\0';
    return (char *)out;
}

/* 1 when src[0..len) is canonical base64url without padding (RFC 7515 2, RFC 4648 5):
 * only the 64 letters, no length that leaves a lone character, and the unused low
 * bits of the last character zero. Decoders (libjwt's among them) skip other bytes
 * or ignore those bits, which would give one token many spellings. */
static int b64url_canonical(const char *src, size_t len)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (len % 4 == 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!src[i] || !memchr(al, src[i], sizeof al - 1))
            return 0;
    if (len % 4 == 0)
        return 1;
    unsigned last = (unsigned)((const char *)memchr(al, src[len - 1], sizeof al - 1) - al);
    unsigned spare = len % 4 == 2 ? 0x0f : 0x03; /* 2 chars carry 1 byte, 3 carry 2 */
    return (last & spare) == 0;
}

/* Base64url characters for n bytes, unpadded. */
static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Checks "header.payload.sig" before any signature work, trusting nothing in it: three
 * canonical base64url segments, a JSON object header (no duplicate members) whose alg is
 * the key's, no "crit" (RFC 7515 4.1.11: we understand no extension, so any listed one
 * must be refused), a JSON object payload, and a signature of exactly the size the key
 * implies. Returns NULL or the refusal reason. */
static const char *check_token(const gw_auth_t *a, const char *token)
{
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
        return "malformed token";
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = strlen(dot2 + 1);
    if (!b64url_canonical(token, hlen) || !b64url_canonical(dot1 + 1, plen) ||
        !b64url_canonical(dot2 + 1, slen))
        return "malformed token";
    char *header = b64url_decode(token, hlen);
    char *payload = b64url_decode(dot1 + 1, plen);
    json_t *h = header ? json_loads(header, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *p = payload ? json_loads(payload, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *reason = NULL;
    if (!json_is_object(h) || !json_is_object(p) || !json_is_string(json_object_get(h, "alg")))
        reason = "malformed token";
    else if (jwt_str_alg(json_string_value(json_object_get(h, "alg"))) != a->alg)
        reason = "algorithm not allowed"; /* also "none" and HS256 with the public key */
    else if (json_object_get(h, "crit"))
        reason = "unsupported critical header";
    else if (slen != b64url_len(a->sig_len))
        reason = "malformed signature";
    json_decref(h);
    json_decref(p);
    free(header);
    free(payload);
    return reason;
}

/* aud may be one string or an array of strings (RFC 7519 4.1.3). */
static int audience_matches(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return 1;
    }
    return 0;
}

/* Copies a scope claim (a space-separated string or an array of strings) into out.
 * Returns 0, or -1 when it does not fit or is of another type. */
static int copy_scope(const json_t *v, char *out, size_t cap)
{
    out[0] = '\0';
    if (!v)
        return 0;
    if (json_is_string(v))
        return (size_t)snprintf(out, cap, "%s", json_string_value(v)) < cap ? 0 : -1;
    if (!json_is_array(v))
        return -1;
    size_t used = 0, i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return -1;
        int n = snprintf(out + used, cap - used, "%s%s", used ? " " : "", json_string_value(s));
        if (n < 0 || (size_t)n >= cap - used)
            return -1;
        used += (size_t)n;
    }
    return 0;
}

/* Checks the registered claims and fills claims. Returns NULL or the refusal reason. */
static const char *check_claims(const gw_auth_t *a, const json_t *g, int64_t now_s,
                                gw_claims_t *claims)
{
    const json_t *exp = json_object_get(g, "exp");
    const json_t *nbf = json_object_get(g, "nbf");
    if (!exp)
        return "missing exp";
    if (!json_is_integer(exp) || (nbf && !json_is_integer(nbf)))
        return "malformed token";
    /* written so that no attacker-chosen exp or nbf can overflow the arithmetic */
    if (now_s - a->leeway_s >= json_integer_value(exp))
        return "token expired";
    if (nbf && now_s + a->leeway_s < json_integer_value(nbf))
        return "token not yet valid";
    const json_t *iss = json_object_get(g, "iss");
    if (a->issuer[0] && (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0))
        return "wrong issuer";
    if (a->audience[0] && !audience_matches(json_object_get(g, "aud"), a->audience))
        return "wrong audience";

    const json_t *sub = json_object_get(g, "sub");
    claims->sub[0] = '\0';
    if (sub &&
        (!json_is_string(sub) || (size_t)snprintf(claims->sub, sizeof claims->sub, "%s",
                                                  json_string_value(sub)) >= sizeof claims->sub))
        return "malformed token";
    const json_t *scope = json_object_get(g, "scope");
    if (copy_scope(scope ? scope : json_object_get(g, "scp"), claims->scope, sizeof claims->scope) <
        0)
        return "malformed token";
    return NULL;
}

/* The claims of a verified token as a jansson object (new reference) or NULL. */
static json_t *grants_of(jwt_t *jwt)
{
    char *text = jwt_get_grants_json(jwt, NULL);
    json_t *g = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (g && !json_is_object(g)) {
        json_decref(g);
        g = NULL;
    }
    return g;
}

int gw_auth_verify(const gw_auth_t *a, const char *token, size_t len, int64_t now_s,
                   gw_claims_t *claims, char *why, size_t why_cap)
{
    if (len == 0 || len > TOKEN_MAX || memchr(token, '\0', len))
        return refuse(why, why_cap, "malformed token");
    char *tok = strndup(token, len);
    if (!tok)
        return refuse(why, why_cap, "malformed token");
    jwt_t *jwt = NULL;
    json_t *grants = NULL;
    const char *reason = check_token(a, tok);
    if (!reason && jwt_decode(&jwt, tok, a->verify, (int)a->verify_len) != 0)
        reason = "bad signature";
    if (!reason && jwt_get_alg(jwt) != a->alg)
        reason = "algorithm not allowed"; /* defence in depth: libjwt's own view of alg */
    if (!reason && !(grants = grants_of(jwt)))
        reason = "malformed token";
    if (!reason)
        reason = check_claims(a, grants, now_s, claims);
    json_decref(grants);
    jwt_free(jwt);
    free(tok);
    return reason ? refuse(why, why_cap, reason) : 0;
}

/* ------------------------------------------------------------------ */
/* Signing and scopes                                                   */
/* ------------------------------------------------------------------ */

static int add_claims(jwt_t *jwt, const gw_auth_t *a, const char *sub, const char *scope,
                      int64_t now_s, int64_t ttl_s)
{
    int rc = jwt_add_grant_int(jwt, "iat", (long)now_s);
    rc = rc ? rc : jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s));
    rc = rc ? rc : jwt_add_grant(jwt, "sub", sub);
    if (!rc && scope && *scope)
        rc = jwt_add_grant(jwt, "scope", scope);
    if (!rc && a->issuer[0])
        rc = jwt_add_grant(jwt, "iss", a->issuer);
    if (!rc && a->audience[0])
        rc = jwt_add_grant(jwt, "aud", a->audience);
    return rc;
}

int gw_auth_sign(const gw_auth_t *a, const char *sub, const char *scope, int64_t now_s,
                 int64_t ttl_s, char **out, char *err, size_t err_cap)
{
    const unsigned char *key = a->alg == JWT_ALG_HS256 ? a->verify : a->sign;
    size_t key_len = a->alg == JWT_ALG_HS256 ? a->verify_len : a->sign_len;
    if (!key) {
        snprintf(err, err_cap, "KEYFILE holds a public key; signing needs the private key");
        return -EINVAL;
    }
    if (!sub || !*sub || ttl_s <= 0) {
        snprintf(err, err_cap, "a token needs a subject and a ttl > 0");
        return -EINVAL;
    }
    jwt_t *jwt = NULL;
    char *text = NULL;
    if (jwt_new(&jwt) == 0 && add_claims(jwt, a, sub, scope, now_s, ttl_s) == 0 &&
        jwt_set_alg(jwt, a->alg, key, (int)key_len) == 0)
        text = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!text) {
        snprintf(err, err_cap, "cannot sign a %s token with this key", jwt_alg_str(a->alg));
        return -EINVAL;
    }
    *out = text; /* libjwt 1.10 allocates with malloc: the caller's free() matches */
    return 0;
}

int gw_scope_held(const char *have, const char *need, size_t len)
{
    for (const char *p = have; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " ");
        if (n == len && memcmp(p, need, len) == 0)
            return 1;
        p += n;
    }
    return 0;
}

int gw_scopes_allow(const char *have, const char *need)
{
    for (const char *p = need; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " ");
        if (n && !gw_scope_held(have, p, n))
            return 0;
        p += n;
    }
    return 1;
}
