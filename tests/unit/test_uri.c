/* tests/unit/test_uri.c: request-target checks and path normalization (core/uri.c): the
 * byte sets, the cheap "already normal" scan, escapes, dot-segments, merged slashes, the
 * refusals, absolute-form split and Host parsing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/uri.h"

/* The normalized form of path (scan first, as the gateway does) or "ERR" when refused. */
static const char *norm(const char *path, char *out, size_t cap)
{
    const char *why = NULL;
    size_t n = strlen(path), len = 0;
    cr_assert(cap > n);
    int rc = cm_uri_path_scan(path, n, &why);
    if (rc < 0) {
        cr_assert_not_null(why);
        return "ERR";
    }
    if (rc == 0) {
        snprintf(out, cap, "%s", path);
        return out;
    }
    if (cm_uri_normalize(path, n, out, &len, &why) < 0) {
        cr_assert_not_null(why);
        return "ERR";
    }
    out[len] = '\0';
    return out;
}

#define EXPECT_NORM(in, want)                                                                      \
    do {                                                                                           \
        char buf_[256];                                                                            \
        const char *got_ = norm(in, buf_, sizeof buf_);                                            \
        cr_expect_str_eq(got_, want, "%s normalized to %s, want %s", in, got_, want);              \
    } while (0)

Test(uri, plain_paths_need_no_copy)
{
    const char *why;
    static const char *const plain[] = {
        "/", "/admin/x", "/a/b/", "/a.b/c..d/...", "/.x/..y", "/a:b@c!$&'()*+,;=-_~"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        cr_expect_eq(cm_uri_path_scan(plain[i], strlen(plain[i]), &why), 0, "%s", plain[i]);
    static const char *const work[] = {"//a",
                                       "/a//b",
                                       "/./a",
                                       "/a/.",
                                       "/a/..",
                                       "/../a",
                                       "/%61",
                                       "/a/"
                                       "%2e"};
    for (size_t i = 0; i < sizeof work / sizeof work[0]; i++)
        cr_expect_eq(cm_uri_path_scan(work[i], strlen(work[i]), &why), 1, "%s", work[i]);
}

Test(uri, unreserved_escapes_decoded_others_upper_cased)
{
    EXPECT_NORM("/%61dmin/x", "/admin/x");
    EXPECT_NORM("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~");
    EXPECT_NORM("/a%20b/%c3%a9", "/a%20b/%C3%A9");
    EXPECT_NORM("/%25", "/%25");
    EXPECT_NORM("/a%3fb", "/a%3Fb");
}

Test(uri, dot_segments_removed_per_rfc3986)
{
    EXPECT_NORM("/x/../admin/x", "/admin/x");
    EXPECT_NORM("/./admin/x", "/admin/x");
    EXPECT_NORM("/%2e/admin/x", "/admin/x");
    EXPECT_NORM("/a/%2E%2e/admin", "/admin");
    EXPECT_NORM("/a/b/c/./../../g", "/a/g");
    EXPECT_NORM("/a/.", "/a/");
    EXPECT_NORM("/a/..", "/");
    EXPECT_NORM("/a/b/..", "/a/");
    EXPECT_NORM("/.", "/");
    EXPECT_NORM("/a/...", "/a/...");
    EXPECT_NORM("/a/.b/..c", "/a/.b/..c");
}

Test(uri, repeated_slashes_merged_trailing_slash_kept)
{
    EXPECT_NORM("//admin/x", "/admin/x");
    EXPECT_NORM("/admin///x//", "/admin/x/");
    EXPECT_NORM("//", "/");
    EXPECT_NORM("/a//../b", "/b");
}

Test(uri, hostile_paths_refused)
{
    static const char *const bad[] = {"/admin%2fx",
                                      "/admin%2Fx",
                                      "/a%5cb",
                                      "/a%00b",
                                      "/a%",
                                      "/a%4",
                                      "/a%zz",
                                      "/a%4g",
                                      "/..",
                                      "/../a",
                                      "/a/../..",
                                      "/%2e%2e/a",
                                      "/a/%2e%2e/%2e%2e/b",
                                      "/a#b",
                                      "/a\tb",
                                      "/a b",
                                      "/a\\b",
                                      "/a\x01",
                                      "/a\x7f",
                                      "/a\xc3\xa9",
                                      "/a\"b",
                                      "/a<b",
                                      "/a{b",
                                      "/a|b",
                                      "/a^b",
                                      "/a`b",
                                      "/a[b",
                                      "*",
                                      "a/b",
                                      ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_NORM(bad[i], "ERR");
}

Test(uri, normalize_works_in_place)
{
    char buf[] = "/x/%2e%2E/%61dmin//y/%c3";
    size_t len;
    const char *why;
    cr_assert_eq(cm_uri_normalize(buf, strlen(buf), buf, &len, &why), 0);
    cr_expect_eq(len, strlen("/admin/y/%C3"));
    cr_expect(memcmp(buf, "/admin/y/%C3", len) == 0, "%.*s", (int)len, buf);
}

Test(uri, query_bytes_checked_not_changed)
{
    const char *why;
    static const char *const ok[] = {"a=1&b=/x?y&c=%zz:@!$'()*+,;", "filter[x]=1&f={a}|^`\"<>\\"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect_eq(cm_uri_query_check(ok[i], strlen(ok[i]), &why), 0, "%s", ok[i]);
    static const char *const bad[] = {"a=#", "a=\t", "a= b", "a=\x01", "a=\xff", "a=\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(cm_uri_query_check(bad[i], strlen(bad[i]), &why), -EINVAL, "%s", bad[i]);
}

static int split(const char *t, char *auth, char *origin)
{
    cm_str_t a = {0}, o = {0};
    const char *why = NULL;
    int rc = cm_uri_split_absolute(&(cm_str_t){t, strlen(t)}, &a, &o, &why);
    if (rc == 1) {
        sprintf(auth, "%.*s", (int)a.len, a.p);
        sprintf(origin, "%.*s", (int)o.len, o.p);
    } else if (rc < 0) {
        cr_assert_not_null(why);
    }
    return rc;
}

Test(uri, absolute_form_split_into_authority_and_origin)
{
    char a[128], o[128];
    cr_assert_eq(split("http://internal.example/x?q=1", a, o), 1);
    cr_expect_str_eq(a, "internal.example");
    cr_expect_str_eq(o, "/x?q=1");
    cr_assert_eq(split("HTTPS://h:8080", a, o), 1);
    cr_expect_str_eq(a, "h:8080");
    cr_expect_str_eq(o, "");
    cr_assert_eq(split("http://h?x", a, o), 1);
    cr_expect_str_eq(o, "?x");
    cr_expect_eq(split("/x", a, o), 0);
    cr_expect_eq(split("*", a, o), 0);
    cr_expect_eq(split("ftp://h/x", a, o), -EINVAL);
    cr_expect_eq(split("http:///x", a, o), -EINVAL);
}

static const char *host(const char *v, char *out)
{
    cm_uri_host_t h;
    const char *why = NULL;
    if (cm_uri_host_parse(&(cm_str_t){v, strlen(v)}, &h, &why) < 0) {
        cr_assert_not_null(why);
        return "ERR";
    }
    sprintf(out, "%.*s|%.*s", (int)h.name.len, h.name.p, (int)h.port.len, h.port.p);
    return out;
}

Test(uri, host_trimmed_trailing_dot_dropped_port_split)
{
    char b[128];
    cr_expect_str_eq(host("public.example", b), "public.example|");
    cr_expect_str_eq(host("public.example.", b), "public.example|");
    cr_expect_str_eq(host("  public.example.:8080\t", b), "public.example|8080");
    cr_expect_str_eq(host("[::1]:80", b), "[::1]|80");
    cr_expect_str_eq(host("h:", b), "h|");
    cr_expect_str_eq(host("", b), "|");
    cr_expect_str_eq(host("u@h", b), "ERR");
    cr_expect_str_eq(host("h:8x", b), "ERR");
    cr_expect_str_eq(host("h:123456", b), "ERR");
    cr_expect_str_eq(host("a b", b), "ERR");
    cr_expect_str_eq(host("[::1", b), "ERR");
    cr_expect_str_eq(host("[::1]x", b), "ERR");
    cr_expect_str_eq(host(".", b), "ERR");
    cr_expect_str_eq(host(":80", b), "ERR");
}

/* The one escape decoder the router, the query and normalization share. */
Test(uri, pct_value_decodes_two_hex_digits_of_either_case)
{
    cr_expect_eq(cm_uri_pct_value("%2F", 3), '/');
    cr_expect_eq(cm_uri_pct_value("%2f", 3), '/');
    cr_expect_eq(cm_uri_pct_value("%aBz", 4), 0xab); /* only two digits are read */
    cr_expect_eq(cm_uri_pct_value("%00", 3), 0);     /* NUL is a value; callers decide */
    cr_expect_eq(cm_uri_pct_value("%FF", 3), 255);
    cr_expect_eq(cm_uri_pct_value("%2F", 2), -1); /* cut short */
    cr_expect_eq(cm_uri_pct_value("%", 1), -1);
    cr_expect_eq(cm_uri_pct_value("%G0", 3), -1);
    cr_expect_eq(cm_uri_pct_value("%0g", 3), -1);
    cr_expect_eq(cm_uri_pct_value("%@`", 3), -1); /* the bytes next to 'A' and 'a' */
    cr_expect_eq(cm_uri_hexval('9'), 9);
    cr_expect_eq(cm_uri_hexval('F'), 15);
    cr_expect_eq(cm_uri_hexval('f'), 15);
    cr_expect_eq(cm_uri_hexval('G'), -1);
    cr_expect_eq(cm_uri_hexval('g'), -1);
}
