/* core/uri.h: request-target checks and normalization (RFC 3986, RFC 9112 3.2), pure
 * functions with no allocation: the byte-set check of a target, the cheap "is this path
 * already normal" scan, the normalization itself (unreserved escapes decoded, the other
 * escapes upper-cased, dot-segments removed, repeated slashes merged), absolute-form split
 * and Host / authority parsing. Used by the gateway before it matches a route, so that the
 * route chosen and the path forwarded are the same string. */
#ifndef CMESH_CORE_URI_H
#define CMESH_CORE_URI_H

#include <stddef.h>

#include "core/http.h"

/* The value of a hex digit ('0'-'9', 'a'-'f', 'A'-'F'), or -1 for any other byte. */
int cm_uri_hexval(char c);

/* The byte the escape "%XX" at p[0..n) stands for (p[0] is the '%', not checked): 0-255,
 * or -1 when fewer than two bytes follow it or they are not both hex digits. The one
 * percent-decoding step of core: each caller decides what a decoded byte means (the
 * router refuses NUL, the query keeps it, normalization keeps only unreserved ones). */
int cm_uri_pct_value(const char *p, size_t n);

/* Checks that the path part of an origin-form target ("/..." up to '?') holds only bytes
 * RFC 3986 allows there (pchar and '/', '%' only as the start of an escape checked later)
 * and says whether it needs cm_uri_normalize(): 1 when it holds a '%', a "//" or a "." or
 * ".." segment, 0 when it is already normal (the hot path: nothing to copy). Returns
 * -EINVAL with *why set (a static string) for a byte outside the set ('#', a tab, a space,
 * a backslash, a control or non-ASCII byte) or a path that does not start with '/'. */
int cm_uri_path_scan(const char *p, size_t n, const char **why);

/* Checks that a query (after '?') holds only visible ASCII but '#' (RFC 3986 3.4's set
 * plus the bytes browsers send unescaped, as nginx accepts them): no whitespace, no
 * control or non-ASCII byte. Escapes are not decoded nor looked into:
 * the query is forwarded unchanged. Returns 0 or -EINVAL with *why set. */
int cm_uri_query_check(const char *p, size_t n, const char **why);

/* Normalizes the path in[0..n) (already passed by cm_uri_path_scan) into out, which has
 * room for n bytes (the result is never longer): %XX of an unreserved character (ALPHA
 * DIGIT - . _ ~) is decoded, every other escape is kept with upper-case hex digits; then
 * empty segments are merged away ("//" -> "/") and dot-segments removed (RFC 3986 5.2.4);
 * a trailing '/' (or a final "." / ".." segment) leaves a trailing '/'. *out_len gets the
 * length. Returns 0, or -EINVAL with *why set for a malformed escape, an encoded '/', '\'
 * or NUL, or a ".." that would climb above the root. in and out may be the same buffer. */
int cm_uri_normalize(const char *in, size_t n, char *out, size_t *out_len, const char **why);

/* Splits an absolute-form target ("http://authority/path?query", RFC 9112 3.2.2; the
 * scheme http or https, any case) into its authority and the origin-form rest. A target
 * that does not start with a scheme and "://" is not absolute: returns 0 and leaves the
 * outputs alone. Returns 1 when split (*origin empty when the target has no path: the
 * caller uses "/"), -EINVAL with *why for a scheme other than http(s) or an empty
 * authority. The outputs point into target. */
int cm_uri_split_absolute(const cm_str_t *target, cm_str_t *authority, cm_str_t *origin,
                          const char **why);

/* An authority (a Host value or the authority of an absolute-form target) as routed on. */
typedef struct cm_uri_host {
    cm_str_t name; /* reg-name or IP-literal (brackets kept); one trailing dot dropped */
    cm_str_t port; /* digits after the ':', empty when none */
} cm_uri_host_t;

/* Parses a Host value or authority v: surrounding spaces and tabs are ignored, one trailing
 * '.' of a reg-name is dropped (the same name, RFC 1034 3.1), the port is split off. An
 * empty value gives an empty name. Returns 0 or -EINVAL with *why set for userinfo ('@'),
 * a byte outside reg-name / IP-literal, or a port that is not digits. The outputs point
 * into v. */
int cm_uri_host_parse(const cm_str_t *v, cm_uri_host_t *out, const char **why);

#endif
