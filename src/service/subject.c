/* service/subject.c: a request's client scope (see subject.h). JWT payloads are
 * base64url-decoded and parsed with jansson; hashes through OpenSSL's EVP. */
#include "service/subject.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>

#define PAYLOAD_MAX 4096 /* bytes of a decoded JWT payload we look into */

/* prefix + lowercase hex SHA-256 of a and b (b may be NULL) joined by a NUL. */
static void hashed(const char *prefix, const char *a, size_t alen, const char *b, size_t blen,
                   char out[CM_SUBJECT_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char nul = '\0';
    int ok;
    if (!b) {
        ok = EVP_Digest(a, alen, md, &n, EVP_sha256(), NULL);
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
             EVP_DigestUpdate(ctx, &nul, 1) && EVP_DigestUpdate(ctx, b, blen) &&
             EVP_DigestFinal_ex(ctx, md, &n);
        EVP_MD_CTX_free(ctx);
    }
    size_t p = (size_t)snprintf(out, CM_SUBJECT_MAX, "%s", prefix);
    if (!ok || n != 32) {
        /* out of memory in OpenSSL: a scope no other client can share */
        snprintf(out, CM_SUBJECT_MAX, "%s?", prefix);
        return;
    }
    for (unsigned int i = 0; i < n && p + 2 < CM_SUBJECT_MAX; i++) {
        out[p++] = hex[md[i] >> 4];
        out[p++] = hex[md[i] & 15];
    }
    out[p] = '\0';
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url; returns the length or -1. */
static int b64url_decode(const char *s, size_t len, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    return (int)n;
}

/* The iss and sub of a JWT's payload; 0 when it has a string sub. */
static int jwt_subject(const char *tok, size_t len, char out[CM_SUBJECT_MAX])
{
    const char *dot1 = memchr(tok, '.', len);
    if (!dot1)
        return -1;
    const char *p = dot1 + 1, *end = tok + len;
    const char *dot2 = memchr(p, '.', (size_t)(end - p));
    if (!dot2)
        return -1;
    char payload[PAYLOAD_MAX];
    int n = b64url_decode(p, (size_t)(dot2 - p), payload, sizeof payload);
    if (n <= 0)
        return -1;
    json_t *claims = json_loadb(payload, (size_t)n, 0, NULL);
    json_t *sub = json_object_get(claims, "sub");
    json_t *iss = json_object_get(claims, "iss");
    int rc = -1;
    if (json_is_string(sub) && json_string_length(sub) > 0) {
        const char *is = json_is_string(iss) ? json_string_value(iss) : "";
        size_t il = json_is_string(iss) ? json_string_length(iss) : 0;
        hashed("sub:", is, il, json_string_value(sub), json_string_length(sub), out);
        rc = 0;
    }
    json_decref(claims);
    return rc;
}

void cm_subject_scope(const cm_req_t *req, char out[CM_SUBJECT_MAX])
{
    size_t len;
    const char *h = cm_req_header(req, "Authorization", &len);
    out[0] = '\0';
    if (!h || len == 0)
        return;
    size_t tlen;
    const char *tok = cm_req_bearer(req, &tlen);
    if (tok && jwt_subject(tok, tlen, out) == 0)
        return;
    hashed("cred:", h, len, NULL, 0, out);
}
