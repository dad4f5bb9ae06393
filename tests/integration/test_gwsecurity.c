/* tests/integration/test_gwsecurity.c: the gateway's auth and rate limits against hostile
 * requests, a real `cmesh gateway` in front of a recording scripted upstream: long required
 * scopes, repeated Authorization headers, other spellings of a signature, crit headers,
 * tokens for another audience or issuer, token guessing against the per-client limit and
 * tokens without a subject. Every refusal is also checked to reach no upstream. */
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define RECV_MS   5000 /* cap on waiting for an answer; never a timing assertion */
#define HS_SECRET "a-test-secret-of-at-least-32-bytes-0123456789"
#define ISSUER    "https://login.test"
#define AUDIENCE  "orders-api"

/* ------------------------------------------------------------------------- */
/* keys and tokens (scratch files, cmesh runs, signing: h_util.h)             */

typedef enum { KEY_HS256, KEY_RS256, KEY_ES256 } key_kind_t;

/* Writes a key of kind into the scratch dir as name; its path goes to path. */
static void make_key(key_kind_t k, const char *name, char *path, size_t cap)
{
    if (k == KEY_HS256) {
        h_write_file(path, cap, name, HS_SECRET "\n");
        return;
    }
    h_make_pem_key(path, cap, name, k == KEY_RS256 ? "RS256" : "ES256");
}

#define JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Claims valid for an hour; extra: more members (",\"sub\":\"x\"") or "". */
static char *claims_with(char *buf, size_t cap, const char *extra)
{
    snprintf(buf, cap, "{\"exp\":%ld%s}", (long)time(NULL) + 3600, extra);
    return buf;
}

static h_resp_t with_token(const h_proc_t *gw, const char *method, const char *path,
                           const char *tok)
{
    char auth[8192];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok ? tok : "");
    const char *hdrs[] = {tok ? auth : NULL, NULL};
    return h_req(gw, method, path, NULL, hdrs);
}

static void assert_error_json(const h_resp_t *r, long status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: expected %ld, got %ld %s", what, status, r->status,
                 r->body);
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    cr_assert(j && json_is_string(json_object_get(j, "error")), "%s: not a JSON error: '%s'", what,
              r->body);
    json_decref(j);
}

/* GET path with tok; asserts the status (and for 401 the JSON error, WWW-Authenticate and,
 * when why is given, that it names why). */
static void expect(const h_proc_t *gw, const char *path, const char *tok, long status,
                   const char *why, const char *what)
{
    h_resp_t r = with_token(gw, "GET", path, tok);
    if (status != 200)
        assert_error_json(&r, status, what);
    else
        cr_assert_eq(r.status, 200, "%s: expected 200, got %ld %s", what, r.status, r.body);
    char v[1024];
    if (status == 401 || status == 403) {
        cr_assert_eq(h_header(&r, "WWW-Authenticate", v, sizeof v), 0, "%s: no WWW-Authenticate",
                     what);
        cr_assert(strncmp(v, "Bearer", 6) == 0, "%s: WWW-Authenticate: %s", what, v);
    }
    if (why)
        cr_assert(strstr(r.body, why), "%s: '%s' not in %s", what, why, r.body);
    h_resp_free(&r);
}

/* A route block: NAME at /NAME to url, health off, plus extra lines (4-space indent). */
static void add_route(char *cfg, size_t cap, const char *name, const char *url, const char *extra)
{
    size_t l = strlen(cfg);
    snprintf(cfg + l, cap - l,
             "  - name: %s\n"
             "    prefix: /%s\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "%s",
             name, name, url, extra ? extra : "");
}

/* "auth:" with key, the test issuer and audience, then "routes:". */
static void auth_head(char *cfg, size_t cap, const char *key)
{
    snprintf(cfg, cap,
             "auth:\n  key_file: %s\n  issuer: " ISSUER "\n  audience: " AUDIENCE "\nroutes:\n",
             key);
}

/* ------------------------------------------------------------------------- */
/* item 3: a required scope of any length is enforced                         */

Test(gwsecurity, required_scopes_of_255_256_and_511_bytes_are_enforced)
{
    static const int lens[] = {255, 256, 511};
    char key[300], cfg[8192], cfg_path[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    us_scripted_t *s = us_start();
    auth_head(cfg, sizeof cfg, key);
    char scopes[3][512];
    for (int i = 0; i < 3; i++) {
        memset(scopes[i], 'a' + i, (size_t)lens[i]);
        scopes[i][lens[i]] = '\0';
        char name[16], extra[700];
        snprintf(name, sizeof name, "s%d", lens[i]);
        snprintf(extra, sizeof extra, "    auth: { scopes: [%s] }\n", scopes[i]);
        add_route(cfg, sizeof cfg, name, us_url(s), extra);
    }
    h_proc_t gw;
    h_start_gateway(&gw, cfg, cfg_path, sizeof cfg_path, NULL);
    char *none = h_token("alice", "users:read", "--config", cfg_path, NULL);
    for (int i = 0; i < 3; i++) {
        char path[32], what[64];
        snprintf(path, sizeof path, "/s%d/x", lens[i]);
        snprintf(what, sizeof what, "token without the %d-byte scope", lens[i]);
        expect(&gw, path, none, 403, "token lacks scope", what);
        char *holder = h_token("bob", scopes[i], "--config", cfg_path, NULL);
        snprintf(what, sizeof what, "token with the %d-byte scope", lens[i]);
        expect(&gw, path, holder, 200, NULL, what);
        for (int j = 0; j < 3; j++) { /* and it opens no other route */
            if (j == i)
                continue;
            snprintf(path, sizeof path, "/s%d/x", lens[j]);
            snprintf(what, sizeof what, "the %d-byte scope on the %d-byte route", lens[i], lens[j]);
            expect(&gw, path, holder, 403, NULL, what);
        }
        free(holder);
    }
    cr_assert_eq(us_count(s), 3, "the upstream saw %d requests; only the 3 holders may pass",
                 us_count(s));
    free(none);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* item 8: a repeated Authorization header                                    */

/* Sends a raw request on a new connection; returns the status of the answer. */
static int raw_status(int port, const char *req, char *body, size_t cap)
{
    int fd = h_connect(port);
    h_send(fd, req, strlen(req));
    size_t n;
    char *r = h_recv_responses(fd, 1, RECV_MS, &n);
    close(fd);
    int st = h_raw_status(r);
    snprintf(body, cap, "%s", h_raw_body(r));
    free(r);
    return st;
}

Test(gwsecurity, duplicate_authorization_headers_get_400_and_reach_no_upstream)
{
    char key[300], cfg[4096], cfg_path[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    us_scripted_t *s = us_start();
    auth_head(cfg, sizeof cfg, key);
    add_route(cfg, sizeof cfg, "secure", us_url(s), NULL);
    add_route(cfg, sizeof cfg, "pub", us_url(s), "    auth: public\n");
    h_proc_t gw;
    h_start_gateway(&gw, cfg, cfg_path, sizeof cfg_path, NULL);
    char *good = h_token("alice", "cmesh:admin", "--config", cfg_path, NULL);
    static const char *const shapes[] = {
        "GET /secure/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "Authorization: Bearer forged\r\n\r\n",
        "GET /secure/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "X-Other: 1\r\nauthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n",
        "GET /secure/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "AUTHORIZATION: Bearer %s\r\n\r\n",
        "GET /pub/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "Authorization: Basic YWRtaW46YWRtaW4=\r\n\r\n",
        "POST /secure/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "Authorization: Bearer forged\r\nContent-Length: 2\r\n\r\n{}",
        "GET /_cmesh/routes HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n"
        "Authorization: Bearer forged\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char req[4096], body[1024];
        snprintf(req, sizeof req, shapes[i], good, good);
        int st = raw_status(gw.port, req, body, sizeof body);
        cr_assert_eq(st, 400, "shape %zu: expected 400, got %d %s", i, st, body);
        cr_assert(strstr(body, "\"error\"") && strstr(body, "Authorization"), "shape %zu: body %s",
                  i, body);
    }
    cr_assert_eq(us_count(s), 0, "a request with two Authorization headers reached the upstream");
    cr_assert_eq(us_bytes(s), 0, "the upstream received %llu bytes",
                 (unsigned long long)us_bytes(s));
    expect(&gw, "/secure/x", good, 200, NULL, "one Authorization header (control)");
    cr_assert_eq(us_count(s), 1);
    free(good);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* item 10: one spelling per signature                                        */

/* Other spellings of tok's signature: each must be refused, tok itself accepted. */
static void check_signature_spellings(key_kind_t kind)
{
    char key[300], cfg[4096], cfg_path[300];
    make_key(kind, "gw.key", key, sizeof key);
    us_scripted_t *s = us_start();
    auth_head(cfg, sizeof cfg, key);
    add_route(cfg, sizeof cfg, "secure", us_url(s), NULL);
    h_proc_t gw;
    h_start_gateway(&gw, cfg, cfg_path, sizeof cfg_path, NULL);
    char *tok = h_token("alice", "", "--config", cfg_path, NULL);
    size_t len = strlen(tok);
    size_t sig = (size_t)(strrchr(tok, '.') + 1 - tok), slen = len - sig;
    static const char junk[] = "!*~%$+/= .";
    char variant[4096];
    int sent = 0;
    for (const char *j = junk; *j; j++) {
        for (size_t at = sig; at <= len; at += slen / 2) { /* start, middle, end */
            if (*j == ' ' && at == len)
                continue; /* trailing whitespace is not part of a field value */
            snprintf(variant, sizeof variant, "%.*s%c%s", (int)at, tok, *j, tok + at);
            char what[96];
            snprintf(what, sizeof what, "'%c' at signature offset %zu", *j, at - sig);
            expect(&gw, "/secure/x", variant, 401, NULL, what);
            sent++;
        }
    }
    snprintf(variant, sizeof variant, "%s==", tok);
    expect(&gw, "/secure/x", variant, 401, NULL, "padded signature");
    /* the last character's unused low bits set: decoders that ignore them see the same
     * bytes (HS256: 43 chars, 2 spare bits; RS256 2048: 342, 4; ES256: 86, 4) */
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    snprintf(variant, sizeof variant, "%s", tok);
    char *last = variant + len - 1;
    *last = al[(strchr(al, *last) - al) ^ 1];
    expect(&gw, "/secure/x", variant, 401, NULL, "non-canonical last character");
    snprintf(variant, sizeof variant, "%sAAAA", tok);
    expect(&gw, "/secure/x", variant, 401, NULL, "three zero bytes appended");
    cr_assert(sent > 0);
    cr_assert_eq(us_count(s), 0, "another spelling of the signature reached the upstream");
    expect(&gw, "/secure/x", tok, 200, NULL, "the canonical token (control)");
    cr_assert_eq(us_count(s), 1);
    free(tok);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

Test(gwsecurity, hs256_signature_has_one_spelling)
{
    check_signature_spellings(KEY_HS256);
}

Test(gwsecurity, rs256_signature_has_one_spelling)
{
    check_signature_spellings(KEY_RS256);
}

Test(gwsecurity, es256_signature_has_one_spelling)
{
    check_signature_spellings(KEY_ES256);
}

/* ------------------------------------------------------------------------- */
/* item 12: crit, audience, issuer                                            */

static void start_hs_gateway(h_proc_t *gw, us_scripted_t *s, const char *auth_extra)
{
    char key[300], cfg[4096], cfg_path[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    snprintf(cfg, sizeof cfg, "auth:\n  key_file: %s\n%sroutes:\n", key, auth_extra);
    add_route(cfg, sizeof cfg, "secure", us_url(s), NULL);
    h_start_gateway(gw, cfg, cfg_path, sizeof cfg_path, NULL);
}

#define GOOD_CLAIMS ",\"sub\":\"alice\",\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\""

Test(gwsecurity, token_with_a_crit_header_is_refused)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_hs_gateway(&gw, s, "  issuer: " ISSUER "\n  audience: " AUDIENCE "\n");
    char c[512];
    static const char *const headers[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}",
        "{\"alg\":\"HS256\",\"crit\":[]}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *t = h_jwt_sign(headers[i], claims_with(c, sizeof c, GOOD_CLAIMS), HS_SECRET, NULL);
        expect(&gw, "/secure/x", t, 401, "crit", headers[i]);
        free(t);
    }
    cr_assert_eq(us_count(s), 0, "a token with crit reached the upstream");
    char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, GOOD_CLAIMS), HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "the same token without crit (control)");
    free(t);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

Test(gwsecurity, audience_and_issuer_are_required_and_must_match)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_hs_gateway(&gw, s, "  issuer: " ISSUER "\n  audience: " AUDIENCE "\n");
    static const struct {
        const char *claims, *why;
    } bad[] = {
        {",\"sub\":\"a\",\"iss\":\"" ISSUER "\"", "wrong audience"},
        {",\"sub\":\"a\",\"iss\":\"" ISSUER "\",\"aud\":\"billing\"", "wrong audience"},
        {",\"sub\":\"a\",\"iss\":\"" ISSUER "\",\"aud\":[\"billing\"]", "wrong audience"},
        {",\"sub\":\"a\",\"aud\":\"" AUDIENCE "\"", "wrong issuer"},
        {",\"sub\":\"a\",\"iss\":\"https://evil\",\"aud\":\"" AUDIENCE "\"", "wrong issuer"},
        {GOOD_CLAIMS ",\"sub\":\"b\"", "malformed token"}, /* duplicate member */
    };
    char c[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, bad[i].claims), HS_SECRET, NULL);
        expect(&gw, "/secure/x", t, 401, bad[i].why, bad[i].claims);
        free(t);
    }
    cr_assert_eq(us_count(s), 0, "a token for another audience or issuer reached the upstream");
    char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, GOOD_CLAIMS), HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "matching iss and aud (control)");
    free(t);
    t = h_jwt_sign(JWT_HEADER,
                   claims_with(c, sizeof c,
                               ",\"sub\":\"a\",\"iss\":\"" ISSUER "\",\"aud\":[\"x\",\"" AUDIENCE
                               "\"]"),
                   HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "aud array holding ours");
    free(t);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

Test(gwsecurity, any_issuer_and_audience_is_an_explicit_opt_out)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_hs_gateway(&gw, s, "  issuer: any\n  audience: any\n");
    char c[512];
    char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, ",\"sub\":\"a\""), HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "no iss, no aud, both any");
    free(t);
    t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, ",\"iss\":\"x\",\"aud\":\"y\""), HS_SECRET,
                   NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "any iss, any aud");
    free(t);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

Test(gwsecurity, auth_block_without_issuer_or_audience_exits_2_naming_the_fix)
{
    char key[300], path[300], listen[64];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    static const struct {
        const char *auth, *want;
        int line;
    } cases[] = {
        {"", "auth needs issuer", 1},
        {"  issuer: " ISSUER "\n", "auth needs audience", 1},
        {"  audience: " AUDIENCE "\n", "auth needs issuer", 1},
        {"  issuer: \"\"\n  audience: x\n", "issuer: any", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "auth:\n  key_file: %s\n%sroutes:\n  - prefix: /a\n"
                 "    upstreams: [http://127.0.0.1:9]\n",
                 key, cases[i].auth);
        h_write_file(path, sizeof path, "bad.yaml", text);
        snprintf(listen, sizeof listen, "127.0.0.1:%d", h_free_port());
        char *err;
        int rc = h_run_cmesh(NULL, &err, "gateway", "--listen", listen, "--config", path, NULL);
        cr_assert_eq(rc, 2, "case %zu: exit %d: %s", i, rc, err);
        char at[400];
        snprintf(at, sizeof at, "%s:%d: ", path, cases[i].line);
        const char *where = strstr(err, at);
        cr_assert(where && strstr(where, cases[i].want), "case %zu: want '%s...%s' in: %s", i, at,
                  cases[i].want, err);
        free(err);
        /* cmesh token --config refuses the same file the same way */
        rc = h_run_cmesh(NULL, &err, "token", "--sub", "a", "--config", path, NULL);
        cr_assert_eq(rc, 2, "token, case %zu: exit %d: %s", i, rc, err);
        where = strstr(err, at);
        cr_assert(where && strstr(where, cases[i].want), "token, case %zu: want '%s...%s' in: %s",
                  i, at, cases[i].want, err);
        free(err);
    }
}

Test(gwsecurity, flag_auth_key_requires_the_default_issuer_and_audience_that_token_mints)
{
    char key[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    us_scripted_t *s = us_start();
    char route[300];
    snprintf(route, sizeof route, "/secure=%s", us_url(s));
    h_proc_t gw;
    h_start(&gw, "gateway", "--route", route, "--auth-key", key, "--workers", "1", "--access-log",
            "off", NULL);
    char *out, *err;
    int rc = h_run_cmesh(&out, &err, "token", "--sub", "alice", "--auth-key", key, NULL);
    cr_assert_eq(rc, 0, "cmesh token --auth-key: %d %s", rc, err);
    out[strcspn(out, "\r\n")] = '\0';
    expect(&gw, "/secure/x", out, 200, NULL, "cmesh token --auth-key on a --auth-key gateway");
    char c[512];
    char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, ",\"sub\":\"a\""), HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 401, "wrong issuer", "a token without iss and aud");
    free(t);
    t = h_jwt_sign(JWT_HEADER,
                   claims_with(c, sizeof c, ",\"sub\":\"a\",\"iss\":\"cmesh\",\"aud\":\"billing\""),
                   HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 401, "wrong audience", "a token for another audience");
    free(t);
    t = h_jwt_sign(
        JWT_HEADER,
        claims_with(c, sizeof c, ",\"sub\":\"a\",\"iss\":\"cmesh\",\"aud\":\"cmesh-gateway\""),
        HS_SECRET, NULL);
    expect(&gw, "/secure/x", t, 200, NULL, "the documented defaults");
    free(t);
    cr_assert_eq(us_count(s), 2);
    free(out);
    free(err);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* item 11: rate limits                                                       */

Test(gwsecurity, requests_that_fail_auth_spend_the_per_client_budget)
{
    char key[300], cfg[4096], cfg_path[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    us_scripted_t *s = us_start();
    auth_head(cfg, sizeof cfg, key);
    /* 1 token a minute: the 4th request is refused however slow this machine is */
    add_route(cfg, sizeof cfg, "secure", us_url(s),
              "    rate_limit: { per_client: { rate: 1/m, burst: 3 } }\n");
    h_proc_t gw;
    h_start_gateway(&gw, cfg, cfg_path, sizeof cfg_path, NULL);
    char *good = h_token("alice", "", "--config", cfg_path, NULL);
    expect(&gw, "/secure/x", NULL, 401, NULL, "guess 1: no token");
    expect(&gw, "/secure/x", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA", 401, NULL, "guess 2");
    h_resp_t r = with_token(&gw, "GET", "/secure/x", "not-a-token");
    assert_error_json(&r, 401, "guess 3");
    char v[64];
    cr_assert_eq(h_header(&r, "RateLimit-Remaining", v, sizeof v), 0, "401 without RateLimit-*");
    cr_assert_str_eq(v, "0");
    h_resp_free(&r);
    r = with_token(&gw, "GET", "/secure/x", good);
    assert_error_json(&r, 429, "a valid token after three failed guesses");
    cr_assert_eq(h_header(&r, "Retry-After", v, sizeof v), 0, "429 without Retry-After");
    h_resp_free(&r);
    expect(&gw, "/secure/x", "guess-4", 429, NULL, "a 4th guess is limited before auth");
    cr_assert_eq(us_count(s), 0);
    free(good);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}

Test(gwsecurity, token_without_subject_is_refused_where_a_subject_limit_applies)
{
    us_scripted_t *s = us_start();
    char key[300], cfg[4096], cfg_path[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    auth_head(cfg, sizeof cfg, key);
    add_route(cfg, sizeof cfg, "limited", us_url(s),
              "    rate_limit: { per_subject: { rate: 1/m, burst: 2 } }\n");
    add_route(cfg, sizeof cfg, "open", us_url(s), NULL);
    h_proc_t gw;
    h_start_gateway(&gw, cfg, cfg_path, sizeof cfg_path, NULL);
    char c[512];
    static const char *const subless[] = {
        ",\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\"",
        ",\"sub\":\"\",\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\"",
    };
    for (int round = 0; round < 3; round++) /* more than the burst: never one bucket */
        for (size_t i = 0; i < 2; i++) {
            char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, subless[i]), HS_SECRET, NULL);
            expect(&gw, "/limited/x", t, 401, "token has no subject", subless[i]);
            free(t);
        }
    cr_assert_eq(us_count(s), 0, "a token without sub passed the per-subject limit");
    char *t = h_jwt_sign(JWT_HEADER, claims_with(c, sizeof c, subless[0]), HS_SECRET, NULL);
    expect(&gw, "/open/x", t, 200, NULL, "no sub where no subject limit applies");
    free(t);
    char *alice = h_token("alice", "", "--config", cfg_path, NULL);
    expect(&gw, "/limited/x", alice, 200, NULL, "alice 1");
    expect(&gw, "/limited/x", alice, 200, NULL, "alice 2");
    expect(&gw, "/limited/x", alice, 429, NULL, "alice 3, past her burst");
    cr_assert_eq(us_count(s), 3);
    free(alice);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit cleanly");
    us_stop(s);
}
