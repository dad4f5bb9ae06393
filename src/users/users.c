/* users/users.c: the users service's routes: validation, conditional requests and
 * idempotent creates around users_store.c, answered through core's HTTP server.
 * Entered from cli/main.c as `cmesh users`. */
#include "users/users.h"

#include "service/batch.h"
#include "service/cmd.h"
#include "service/feed.h"
#include "service/outbox.h"
#include "service/rest.h"
#include "service/retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/flags.h"
#include "core/log.h"
#include "users/users_store.h"

#define NAME_MAX_CHARS 200
#define EMAIL_MAX      254 /* RFC 5321 4.5.3.1.3, less the angle brackets */

typedef struct users_worker {
    cm_db_t *db;               /* writes, in the batch's group (used only inside units) */
    cm_batch_t *batch;         /* every store call goes through it: group commit */
    cm_feed_t *feed;           /* GET /events */
    cm_retention_t *retention; /* NULL but on the worker that prunes */
} users_worker_t;

typedef struct user_input {
    const char *name, *email; /* NULL when not sent */
    size_t name_len, email_len;
} user_input_t;

/* ------------------------------------------------------------------------- */
/* validation                                                                 */

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* A pragmatic address check: one @, a local part, a dotted domain, no spaces. */
static int email_ok(const char *s, size_t len)
{
    if (len == 0 || len > EMAIL_MAX || has_control(s, len))
        return 0;
    const char *at = memchr(s, '@', len);
    if (!at || at == s || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return 0;
    if (at - s > 64)
        return 0;
    const char *dom = at + 1, *end = s + len;
    if (dom == end || *dom == '.' || end[-1] == '.' || !memchr(dom, '.', (size_t)(end - dom)))
        return 0;
    for (const char *p = s; p < end; p++) {
        if (*p == ' ' || *p == '"' || *p == '(' || *p == ')' || *p == ',' || *p == ';' ||
            *p == '<' || *p == '>' || *p == '[' || *p == ']' || *p == '\\')
            return 0;
        if (*p == '.' && p + 1 < end && p[1] == '.')
            return 0;
    }
    return 1;
}

/* Checks every key of o. Answers 422 naming the field and returns -EINVAL on the
 * first problem. On create, name and email are both required. */
static int validate(cm_req_t *req, json_t *o, int create, user_input_t *in)
{
    const char *key;
    json_t *v;
    memset(in, 0, sizeof *in);
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "name") == 0) {
            if (!json_is_string(v)) {
                cm_res_error_field(req, 422, "name", "name must be a string");
                return -EINVAL;
            }
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            size_t n = utf8_chars(s, len);
            if (n < 1 || n > NAME_MAX_CHARS || has_control(s, len)) {
                cm_res_error_field(req, 422, "name",
                                   "name must be 1-%d characters without control characters",
                                   NAME_MAX_CHARS);
                return -EINVAL;
            }
            in->name = s;
            in->name_len = len;
        } else if (strcmp(key, "email") == 0) {
            if (!json_is_string(v) || !email_ok(json_string_value(v), json_string_length(v))) {
                cm_res_error_field(req, 422, "email", "email must be a valid address");
                return -EINVAL;
            }
            in->email = json_string_value(v);
            in->email_len = json_string_length(v);
        } else if (strcmp(key, "id") == 0) {
            cm_res_error_field(req, 422, "id", "id is assigned by the server and cannot be set");
            return -EINVAL;
        } else {
            cm_res_error_field(req, 422, key, "unknown field '%s'; users have name and email", key);
            return -EINVAL;
        }
    }
    if (create && !in->name) {
        cm_res_error_field(req, 422, "name", "name is required");
        return -EINVAL;
    }
    if (create && !in->email) {
        cm_res_error_field(req, 422, "email", "email is required");
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* handlers                                                                   */

static void not_found(cm_req_t *req)
{
    cm_res_error(req, 404, "User not found");
}

static void users_list(cm_req_t *req)
{
    int limit, more;
    int64_t after, last;
    if (cm_rest_page(req, &limit, &after) < 0)
        return;
    users_worker_t *w = req->state;
    cm_db_t *rdb;
    int rc = cm_batch_read(w->batch, req, users_list, &rdb);
    if (rc == 1)
        return; /* called again after the commit */
    if (rc == 0)
        rc = cm_users_list(rdb, after, limit, &req->res_body, &last, &more);
    if (rc < 0) {
        cm_buf_reset(&req->res_body);
        cm_rest_db_error(req, rc);
        return;
    }
    if (more)
        cm_rest_link_next(req, "/users", "", limit, last);
    cm_res_send(req, 200);
}

static void users_get(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    users_worker_t *w = req->state;
    cm_db_t *rdb;
    int rc = cm_batch_read(w->batch, req, users_get, &rdb);
    if (rc == 1)
        return; /* called again after the commit */
    if (rc == 0)
        rc = cm_users_get(rdb, id, &req->res_body);
    cm_rest_answer_item(req, rc, "User not found");
}

/* Ends a unit that cannot go on (cm_rest_refuse_fn): a taken email is 409 naming the
 * field; the rest (404, the store error) is every service's refusal. */
static void refuse(cm_req_t *req, cm_batch_t *b, int rc)
{
    if (rc == -EEXIST) {
        cm_buf_reset(&req->res_body);
        cm_res_error_body(req, "email", "a user with this email already exists");
        cm_batch_refuse(b, req, 409);
        return;
    }
    cm_rest_refuse(req, b, rc, "User not found");
}

/* A write as the loop parsed it, for its unit (service/batch.h: on PostgreSQL the unit
 * runs on the worker's store writer). */
typedef struct user_op {
    cm_req_t *req;
    json_t *body; /* NULL for a delete; in points into it */
    user_input_t in;
    int64_t id; /* 0 for a create */
} user_op_t;

static void op_free(void *data)
{
    user_op_t *op = data;
    json_decref(op->body);
    free(op);
}

/* Hands op's unit to the batch; op is freed after it. */
static void run_unit(cm_req_t *req, user_op_t *op, cm_batch_fn unit)
{
    users_worker_t *w = req->state;
    cm_batch_run(w->batch, CM_BATCH_WRITE, req, unit, op_free, op);
}

/* Parses a write's body into a new op; NULL when an answer was sent. */
static user_op_t *op_from_body(cm_req_t *req, int64_t id)
{
    if (cm_rest_require_json(req) < 0)
        return NULL;
    json_t *o = cm_rest_body_object(req);
    if (!o)
        return NULL;
    user_op_t *op = calloc(1, sizeof *op);
    if (!op) {
        json_decref(o);
        cm_res_error(req, 500, "out of memory");
        return NULL;
    }
    *op = (user_op_t){.req = req, .body = o, .id = id};
    if (validate(req, o, !id, &op->in) < 0) {
        op_free(op);
        return NULL;
    }
    return op;
}

static void create_unit(void *data)
{
    user_op_t *op = data;
    cm_req_t *req = op->req;
    users_worker_t *w = req->state;
    cm_rest_idem_t idem;
    int64_t id = 0;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse))
        return;
    int rc = cm_users_insert(w->db, op->in.name, op->in.name_len, op->in.email, op->in.email_len,
                             &id, &req->res_body);
    if (rc == 0) /* the event in the same unit: it exists iff the user does */
        rc = cm_outbox_add(w->db, "user.created", req->res_body.data, req->res_body.len);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    char location[48];
    snprintf(location, sizeof location, "/users/%lld", (long long)id);
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 201, location);
}

static void users_create(cm_req_t *req)
{
    user_op_t *op = op_from_body(req, 0);
    if (op)
        run_unit(req, op, create_unit);
}

/* Inside a unit: checks that the user exists and that its preconditions hold. Returns 0
 * to go on, or 1 when the unit was refused (404/412/5xx held). */
static int check_for_write(cm_req_t *req, users_worker_t *w, int64_t id)
{
    int rc = cm_users_get(w->db, id, &req->res_body);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return 1;
    }
    return cm_rest_write_check_etag(req, w->batch, "user");
}

static void update_unit(void *data)
{
    user_op_t *op = data;
    cm_req_t *req = op->req;
    users_worker_t *w = req->state;
    cm_rest_idem_t idem;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse) || check_for_write(req, w, op->id))
        return;
    int rc = cm_users_update(w->db, op->id, op->in.name, op->in.name_len, op->in.email,
                             op->in.email_len, &req->res_body);
    if (rc == 0) /* 1: a no-op, which changes nothing and so tells nobody */
        rc = cm_outbox_add(w->db, "user.updated", req->res_body.data, req->res_body.len);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 200, NULL);
}

static void users_update(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    user_op_t *op = op_from_body(req, id);
    if (op)
        run_unit(req, op, update_unit);
}

static void delete_unit(void *data)
{
    user_op_t *op = data;
    cm_req_t *req = op->req;
    users_worker_t *w = req->state;
    cm_rest_idem_t idem;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse) || check_for_write(req, w, op->id))
        return;
    int rc = cm_users_delete(w->db, op->id);
    if (rc == 0) {
        char data_[48];
        int n = snprintf(data_, sizeof data_, "{\"id\":%lld}", (long long)op->id);
        rc = cm_outbox_add(w->db, "user.deleted", data_, (size_t)n);
    }
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    cm_buf_append_str(&req->res_body, "{\"message\":\"User deleted\"}");
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 200, NULL);
}

static void users_delete(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    user_op_t *op = calloc(1, sizeof *op);
    if (!op) {
        cm_res_error(req, 500, "out of memory");
        return;
    }
    *op = (user_op_t){.req = req, .id = id};
    run_unit(req, op, delete_unit);
}

static void users_events(cm_req_t *req)
{
    users_worker_t *w = req->state;
    cm_feed_get(w->feed, req);
}

static const cm_route_t routes[] = {
    {CM_GET, "/events", users_events},     {CM_GET, "/users", users_list},
    {CM_POST, "/users", users_create},     {CM_GET, "/users/{id}", users_get},
    {CM_PUT, "/users/{id}", users_update}, {CM_DELETE, "/users/{id}", users_delete},
};

/* ------------------------------------------------------------------------- */
/* command                                                                    */

static int worker_init(uv_loop_t *loop, void *config, void **state)
{
    users_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    int rc = cm_svc_open_db(config, &w->db);
    if (rc == 0)
        rc = cm_batch_new(loop, w->db, ((const cm_svc_opts_t *)config)->db, &w->batch);
    if (rc == 0)
        rc = cm_feed_new(loop, w->batch, &w->feed);
    const cm_svc_opts_t *o = config;
    if (rc == 0)
        rc = cm_retention_start(loop, w->batch, w->db, o->key_retention_ms, o->event_retention_ms,
                                &w->retention);
    if (rc < 0) {
        cm_feed_free(w->feed);
        cm_batch_free(w->batch);
        cm_db_close(w->db);
        free(w);
        return rc;
    }
    *state = w;
    return 0;
}

/* GET /readyz: not ready while writes cannot be stored. */
/* Not ready while the database refuses writes (read-only, moved or deleted file). */
static int worker_ready(void *config, void *state, char *why, size_t cap)
{
    (void)config;
    const users_worker_t *w = state;
    const char *problem = w ? cm_batch_write_problem(w->batch) : NULL;
    if (!problem)
        return 0;
    snprintf(why, cap, "%s", problem);
    return -EIO;
}

static void worker_free(void *state)
{
    users_worker_t *w = state;
    if (!w)
        return;
    cm_feed_free(w->feed);   /* answers the parked long-polls */
    cm_batch_free(w->batch); /* commits and answers what it holds */
    cm_retention_free(w->retention);
    cm_db_close(w->db);
    free(w);
}

static void opts_defaults(void *opts)
{
    cm_svc_opts_default(opts, cm_users_migrations, cm_users_nmigrations);
}

static const cm_flag_table_t tables[] = {
    {"flags", cm_svc_flags, 0},
    {"server flags", cm_server_flags, offsetof(cm_svc_opts_t, server)},
    {0},
};

const cm_cmd_t cm_users_cmd = {
    .name = "users",
    .usage = "cmesh users --db PATH [flags]",
    .about = "Serves the users REST API: GET|POST /users, GET|PUT|DELETE /users/{id}, the "
             "event feed GET /events, plus /healthz, /readyz and /metrics.",
    .tables = tables,
    .opts_size = sizeof(cm_svc_opts_t),
    .defaults = opts_defaults,
};

int cm_users_main(int argc, char **argv)
{
    cm_svc_opts_t o;
    opts_defaults(&o);
    int rc = cm_flags_parse(&cm_users_cmd, argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    cm_service_t svc = {.name = "users",
                        .routes = routes,
                        .nroutes = sizeof routes / sizeof routes[0],
                        .worker_init = worker_init,
                        .worker_free = worker_free,
                        .ready = worker_ready,
                        .config = &o};
    return cm_server_run(&o.server, &svc) < 0 ? 1 : 0;
}
