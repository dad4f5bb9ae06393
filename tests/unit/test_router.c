/* tests/unit/test_router.c: route matching, captures, 404 vs 405, HEAD as GET, the
 * percent-decoded path, the trailing slash, Allow and OPTIONS. */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/router.h"

static void h_list(cm_req_t *r)
{
    (void)r;
}
static void h_get(cm_req_t *r)
{
    (void)r;
}
static void h_put(cm_req_t *r)
{
    (void)r;
}

static const cm_route_t routes[] = {
    {CM_GET, "/users", h_list},
    {CM_GET, "/users/{id}", h_get},
    {CM_PUT, "/users/{id}", h_put},
};

static cm_router_t *router(void)
{
    cm_router_t *r;
    cr_assert_eq(cm_router_new(routes, 3, &r), 0);
    return r;
}

static cm_handler_fn match(cm_router_t *r, cm_method_t m, const char *path, cm_req_t *req,
                           int *status, char *allow)
{
    memset(req, 0, sizeof *req);
    req->method = m;
    req->path = (cm_str_t){path, strlen(path)};
    return cm_router_match(r, req, status, allow, 64);
}

Test(router, exact_path_and_capture_match)
{
    cm_router_t *r = router();
    cm_req_t req;
    int st;
    char allow[64];
    cr_assert_eq(match(r, CM_GET, "/users", &req, &st, allow), h_list);
    cr_assert_eq(match(r, CM_GET, "/users/42", &req, &st, allow), h_get);
    cr_assert_eq(req.nparams, 1);
    cr_assert_eq(req.params[0].len, 2);
    cr_assert(memcmp(req.params[0].p, "42", 2) == 0);
    cr_assert_eq(match(r, CM_PUT, "/users/42", &req, &st, allow), h_put);
    cm_router_free(r);
}

Test(router, unknown_path_is_404_and_empty_capture_never_matches)
{
    cm_router_t *r = router();
    cm_req_t req;
    int st = 0;
    char allow[64];
    cr_assert_null(match(r, CM_GET, "/nope", &req, &st, allow));
    cr_assert_eq(st, 404);
    cr_assert_null(match(r, CM_GET, "/users//", &req, &st, allow));
    cr_assert_eq(st, 404);
    cr_assert_null(match(r, CM_GET, "/users/1/x", &req, &st, allow));
    cr_assert_eq(st, 404);
    cr_assert_eq(req.route, cm_router_npatterns(r));
    cm_router_free(r);
}

Test(router, wrong_method_is_405_with_allow)
{
    cm_router_t *r = router();
    cm_req_t req;
    int st = 0;
    char allow[64];
    cr_assert_null(match(r, CM_DELETE, "/users/1", &req, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "GET, HEAD, PUT, OPTIONS");
    cm_router_free(r);
}

Test(router, head_falls_back_to_get)
{
    cm_router_t *r = router();
    cm_req_t req;
    int st;
    char allow[64];
    cr_assert_eq(match(r, CM_HEAD, "/users/9", &req, &st, allow), h_get);
    cm_router_free(r);
}

Test(router, patterns_are_distinct_labels)
{
    cm_router_t *r = router();
    cr_assert_eq(cm_router_npatterns(r), 2);
    cr_assert_str_eq(cm_router_pattern(r, 1), "/users/{id}");
    cm_router_free(r);
}

Test(router, bad_pattern_is_refused)
{
    cm_router_t *r;
    cm_route_t bad[] = {{CM_GET, "users", h_list}};
    cr_assert_eq(cm_router_new(bad, 1, &r), -EINVAL);
}

/* Like match(), for paths that get decoded: the caller frees req->path_dec. */
static cm_handler_fn match_dec(cm_router_t *r, cm_method_t m, const char *path, cm_req_t *req,
                               int *status)
{
    char allow[64];
    cm_buf_free(&req->path_dec);
    memset(req, 0, sizeof *req);
    req->method = m;
    req->path = (cm_str_t){path, strlen(path)};
    return cm_router_match(r, req, status, allow, sizeof allow);
}

Test(router, path_is_percent_decoded_per_segment)
{
    cm_router_t *r = router();
    cm_req_t req = {0};
    int st = 0;
    cr_assert_eq(match_dec(r, CM_GET, "/users/%32", &req, &st), h_get);
    cr_assert_eq(req.params[0].len, 1);
    cr_assert_eq(req.params[0].p[0], '2');
    cr_assert_eq(match_dec(r, CM_GET, "/%75sers", &req, &st), h_list, "a literal segment too");
    cr_assert_eq(match_dec(r, CM_GET, "/users/a%2Fb", &req, &st), h_get,
                 "%%2F stays inside its segment");
    cr_assert_eq(req.params[0].len, 3);
    cr_assert(memcmp(req.params[0].p, "a/b", 3) == 0);
    cr_assert_null(match_dec(r, CM_GET, "/users%2F7", &req, &st), "%%2F is no boundary");
    cr_assert_eq(st, 404);
    cm_buf_free(&req.path_dec);
    cm_router_free(r);
}

Test(router, malformed_escape_or_encoded_nul_is_400)
{
    cm_router_t *r = router();
    cm_req_t req = {0};
    int st = 0;
    const char *bad[] = {"/users/%zz", "/users/%4", "/users/%", "/users/a%00b", "/users/%g1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = 0;
        cr_assert_null(match_dec(r, CM_GET, bad[i], &req, &st), "%s", bad[i]);
        cr_assert_eq(st, 400, "%s gave %d", bad[i], st);
    }
    cm_buf_free(&req.path_dec);
    cm_router_free(r);
}

Test(router, one_trailing_slash_is_ignored)
{
    cm_router_t *r = router();
    cm_req_t req = {0};
    int st = 0;
    char allow[64];
    cr_assert_eq(match(r, CM_GET, "/users/", &req, &st, allow), h_list);
    cr_assert_eq(match(r, CM_GET, "/users/2/", &req, &st, allow), h_get);
    cr_assert_eq(req.params[0].len, 1, "the slash is not part of the capture");
    cr_assert_eq(match_dec(r, CM_GET, "/users/%32/", &req, &st), h_get);
    cr_assert_null(match(r, CM_GET, "/users/2//", &req, &st, allow));
    cr_assert_eq(st, 404, "only one slash is forgiven");
    cm_buf_free(&req.path_dec);
    cm_router_free(r);
}

Test(router, options_on_a_known_path_is_204_with_allow)
{
    cm_router_t *r = router();
    cm_req_t req;
    int st = 0;
    char allow[64];
    cr_assert_null(match(r, CM_OPTIONS, "/users", &req, &st, allow));
    cr_assert_eq(st, 204);
    cr_assert_str_eq(allow, "GET, HEAD, OPTIONS");
    cr_assert_null(match(r, CM_OPTIONS, "/users/5", &req, &st, allow));
    cr_assert_eq(st, 204);
    cr_assert_str_eq(allow, "GET, HEAD, PUT, OPTIONS");
    cr_assert_null(match(r, CM_OPTIONS, "/nope", &req, &st, allow));
    cr_assert_eq(st, 404, "an unknown path stays 404");
    cm_router_free(r);
}

static void h_post(cm_req_t *r)
{
    (void)r;
}

Test(router, options_star_lists_every_method_of_the_server)
{
    static const cm_route_t more[] = {
        {CM_GET, "/users", h_list},
        {CM_POST, "/users", h_post},
        {CM_PUT, "/users/{id}", h_put},
    };
    cm_router_t *r;
    cr_assert_eq(cm_router_new(more, 3, &r), 0);
    cm_req_t req;
    int st = 0;
    char allow[64];
    cr_assert_null(match(r, CM_OPTIONS, "*", &req, &st, allow));
    cr_assert_eq(st, 204);
    cr_assert_str_eq(allow, "GET, HEAD, POST, PUT, OPTIONS");
    cr_assert_null(match(r, CM_GET, "*", &req, &st, allow));
    cr_assert_eq(st, 404, "* is a path only for OPTIONS");
    cr_assert_null(match(r, CM_DELETE, "/users", &req, &st, allow));
    cr_assert_eq(st, 405);
    cr_assert_str_eq(allow, "GET, HEAD, POST, OPTIONS");
    cm_router_free(r);
}
