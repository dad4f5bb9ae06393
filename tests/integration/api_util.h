/* tests/integration/api_util.h: small helpers shared by the users, orders and durability
 * integration tests: JSON requests, the error-body check every bad input gets, and
 * snapshots of a collection to prove a refused request stored nothing. Header-only
 * (static inline) so it needs no build change; it sits on top of harness.h. */
#ifndef CMESH_TESTS_API_UTIL_H
#define CMESH_TESTS_API_UTIL_H

#include "harness.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#define API_MAX_HEADERS 16

/* A request with "Content-Type: application/json" plus the extra NULL-terminated
 * "Name: value" headers. body may be NULL. */
static inline h_resp_t api_send(const h_proc_t *p, const char *method, const char *path,
                                const char *body, ...)
{
    const char *hdrs[API_MAX_HEADERS + 2];
    int n = 0;
    hdrs[n++] = "Content-Type: application/json";
    va_list ap;
    va_start(ap, body);
    const char *h;
    while ((h = va_arg(ap, const char *)) && n < API_MAX_HEADERS)
        hdrs[n++] = h;
    va_end(ap);
    hdrs[n] = NULL;
    return h_req(p, method, path, body, hdrs);
}

/* Asserts r is a JSON error: the status, a JSON content type, an object with a non-empty
 * "error" string and, when field is not NULL, "field" equal to it (any 422 must carry a
 * "field"). */
static inline void api_assert_error(const h_resp_t *r, long status, const char *field)
{
    cr_assert_eq(r->status, status, "expected status %ld, got %ld, body: %s", status, r->status,
                 r->body);
    char ct[128];
    cr_assert_eq(h_header(r, "Content-Type", ct, sizeof ct), 0, "error without Content-Type");
    cr_assert(strncmp(ct, "application/json", 16) == 0, "error Content-Type is %s", ct);
    json_t *j = h_json(r);
    cr_assert(json_is_object(j), "error body is not an object: %s", r->body);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_string(e) && json_string_length(e) > 0, "no \"error\" string in %s", r->body);
    const char *f = json_string_value(json_object_get(j, "field"));
    if (field)
        cr_assert(f && strcmp(f, field) == 0, "expected field \"%s\" in %s", field, r->body);
    else if (status == 422)
        cr_assert(f && *f, "a 422 must name the field: %s", r->body);
    json_decref(j);
}

/* Same, and frees the response. */
static inline void api_expect_error(h_resp_t r, long status, const char *field)
{
    api_assert_error(&r, status, field);
    h_resp_free(&r);
}

/* SIGTERM p (if still running) and assert it drained and exited 0; under the sanitizer
 * build this is where a leak report or a crash in shutdown shows. Quotes the end of the
 * process's stderr on failure, since its temp dir is gone when the test ends. */
static inline void api_stop_clean(h_proc_t *p)
{
    if (p->pid <= 0)
        return;
    int rc = h_stop(p);
    if (rc == 0)
        return;
    char tail[2048] = "";
    FILE *f = fopen(p->log, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
        size_t n = fread(tail, 1, sizeof tail - 1, f);
        tail[n] = '\0';
        fclose(f);
    }
    cr_assert_fail("process on port %d exited %d after SIGTERM; end of its stderr:\n%s", p->port,
                   rc, tail);
}

/* GET path (which must not carry a query) with limit=1000: the whole collection as a JSON
 * array, new reference. Asserts 200 and an array. */
static inline json_t *api_snapshot(const h_proc_t *p, const char *path)
{
    char full[512];
    snprintf(full, sizeof full, "%s%slimit=1000", path, strchr(path, '?') ? "&" : "?");
    h_resp_t r = h_req(p, "GET", full, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", full, r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert(json_is_array(j), "GET %s is not an array: %s", full, r.body);
    h_resp_free(&r);
    return j;
}

/* Asserts the collection at path still equals before (which it releases). */
static inline void api_assert_unchanged(const h_proc_t *p, const char *path, json_t *before)
{
    json_t *now = api_snapshot(p, path);
    char *a = json_dumps(before, JSON_COMPACT), *b = json_dumps(now, JSON_COMPACT);
    cr_assert(json_equal(before, now), "stored data changed:\nbefore %s\nafter  %s", a, b);
    free(a);
    free(b);
    json_decref(before);
    json_decref(now);
}

/* GET path; asserts the status and returns the parsed body (new reference). */
static inline json_t *api_get(const h_proc_t *p, const char *path, long status)
{
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, status, "GET %s: expected %ld, got %ld %s", path, status, r.status,
                 r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    return j;
}

/* Integer member of an object; asserts it is there. */
static inline json_int_t api_int(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* String member of an object (borrowed); asserts it is there. */
static inline const char *api_str(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_string(v), "\"%s\" is not a string", key);
    return json_string_value(v);
}

/* POST /users {name,email}; asserts 201 and returns the new id. */
static inline json_int_t api_create_user(const h_proc_t *p, const char *name, const char *email)
{
    json_t *o = json_pack("{s:s, s:s}", "name", name, "email", email);
    char *body = json_dumps(o, JSON_COMPACT);
    h_resp_t r = api_send(p, "POST", "/users", body, NULL);
    cr_assert_eq(r.status, 201, "create user %s: %ld %s", email, r.status, r.body);
    json_t *j = h_json(&r);
    json_int_t id = api_int(j, "id");
    json_decref(j);
    json_decref(o);
    free(body);
    h_resp_free(&r);
    return id;
}

/* True when s is an RFC 3339 UTC timestamp with milliseconds: 2026-11-25T04:24:34.123Z. */
static inline int api_is_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(s) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    }
    return 1;
}

/* True when s is a strong ETag of 16 lowercase hex digits in quotes. */
static inline int api_is_etag(const char *s)
{
    if (strlen(s) != 18 || s[0] != '"' || s[17] != '"')
        return 0;
    for (int i = 1; i < 17; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return 0;
    return 1;
}

/* Every item of collection path (no query), page by page (?limit=1000&after=ID): a new
 * reference, an array. Asserts every page is 200. */
static inline json_t *api_all_items(const h_proc_t *p, const char *path)
{
    json_t *all = json_array();
    for (json_int_t after = 0;;) {
        char full[128];
        snprintf(full, sizeof full, "%s?limit=1000&after=%lld", path, (long long)after);
        json_t *page = api_get(p, full, 200);
        size_t n = json_array_size(page);
        if (n)
            after = api_int(json_array_get(page, n - 1), "id");
        json_array_extend(all, page);
        json_decref(page);
        if (n == 0)
            return all;
    }
}

/* Every event of p's feed (GET /events), page by page: a new reference, an array. */
static inline json_t *api_all_events(const h_proc_t *p)
{
    json_t *all = json_array();
    json_int_t after = 0;
    for (int i = 0; i < 1000; i++) {
        char path[96];
        snprintf(path, sizeof path, "/events?after=%lld&limit=1000", (long long)after);
        json_t *j = api_get(p, path, 200);
        json_t *ev = json_object_get(j, "events");
        size_t n = json_array_size(ev);
        json_array_extend(all, ev);
        after = api_int(j, "last");
        json_decref(j);
        if (n == 0)
            return all;
    }
    cr_assert_fail("the feed did not end");
    return all;
}

/* One long poll of p's feed (GET /events?after=*after&limit=50&wait=1s): the page's
 * events appended to seen, *after moved to its last. 0, or -1 when the answer was not 200
 * (no asserts: reader threads call it). */
static inline int api_feed_poll(const h_proc_t *p, json_int_t *after, json_t *seen)
{
    char path[96];
    snprintf(path, sizeof path, "/events?after=%lld&limit=50&wait=1s", (long long)*after);
    h_resp_t x = h_req(p, "GET", path, NULL, NULL);
    json_t *j = x.status == 200 ? json_loadb(x.body, x.body_len, 0, NULL) : NULL;
    h_resp_free(&x);
    if (!j)
        return -1;
    json_array_extend(seen, json_object_get(j, "events"));
    *after = json_integer_value(json_object_get(j, "last"));
    json_decref(j);
    return 0;
}

#endif
