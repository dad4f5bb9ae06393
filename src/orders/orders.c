/* orders/orders.c: the orders service's routes. Validation, the status state machine,
 * conditional requests and idempotent creates around orders_store.c; before an order
 * is written for a user, the users service is asked (core/client.h, on the same loop)
 * whether that user exists. Entered from cli/main.c as `cmesh orders`. */
#include "orders/orders.h"

#include "service/batch.h"
#include "service/cmd.h"
#include "service/feed.h"
#include "service/outbox.h"
#include "service/regset.h"
#include "service/rest.h"
#include "service/retention.h"
#include "service/subscribe.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/client.h"
#include "core/flags.h"
#include "core/json.h"
#include "core/log.h"
#include "orders/orders_store.h"

/* Whether --users-url reaches the users service, shared by the workers. An answer to
 * GET /users/{id} that the users service never gives (a 404 whose body is not its
 * {"error":"User not found"}, or a 200 that is not that user) means the URL points at
 * something else: the gateway's own 404 for a route it does not have, another server.
 * Then "user does not exist" would be a lie that the client acts on, so writes get 503
 * and /readyz reports not ready until a check is answered right again. */
typedef struct users_state {
    atomic_int bad_status;  /* status of the last foreign answer; 0 = answers are right */
    atomic_llong bad_user;  /* the user id it was for: /readyz asks for it again */
    atomic_llong feed_head; /* the users feed's newest event id last seen */
} users_state_t;

typedef struct orders_opts {
    cm_svc_opts_t svc;
    char users_url[512];      /* base URL of the users service, no trailing slash */
    uint64_t users_timeout;   /* ms for one existence check */
    users_state_t *users;     /* process-wide, outlives the workers */
    char users_registry[512]; /* --users-registry: the control plane's base URL, or "" */
    cm_regset_t *regset;      /* its watched users set (NULL without the flag) */
    char users_desc[640];     /* where users are asked, for messages */
} orders_opts_t;

typedef struct orders_worker {
    cm_db_t *db;       /* writes, in the batch's group (used only inside units) */
    cm_batch_t *batch; /* every store call goes through it: group commit */
    cm_client_t *users;
    cm_feed_t *feed;           /* GET /events */
    cm_retention_t *retention; /* NULL but on the worker that prunes */
    cm_sub_t *sub;             /* the users feed; NULL but on the worker that follows it */
    cm_buf_t scratch;          /* representations of orders a user's delete cancels */
    const orders_opts_t *opts;
    int probing; /* a /readyz re-check of the users service is under way */
} orders_worker_t;

/* What a write carries across the asynchronous user check. */
typedef struct order_op {
    cm_req_t *req;
    int64_t id;      /* 0 for a create */
    int64_t user_id; /* 0 when not sent (update) */
    char status[CM_ORDER_STATUS_MAX];
    int has_status;
    unsigned ticket; /* round robin over the watched users set */
    int tries;       /* instances that refused the connection so far */
    int ask;         /* its unit found the user unseen: the loop asks the users service */
    int asked;       /* the users service said the user exists */
} order_op_t;

/* ------------------------------------------------------------------------- */
/* the status state machine                                                   */

static const char *const statuses[] = {"pending", "paid", "shipped", "completed", "cancelled"};

static int status_index(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, statuses[i]) == 0)
            return i;
    return -1;
}

/* pending → paid → shipped → completed; pending|paid → cancelled; staying put is fine. */
static int transition_ok(const char *from, const char *to)
{
    static const char *const allowed[][2] = {{"pending", "paid"},
                                             {"paid", "shipped"},
                                             {"shipped", "completed"},
                                             {"pending", "cancelled"},
                                             {"paid", "cancelled"}};
    if (strcmp(from, to) == 0)
        return 1;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strcmp(allowed[i][0], from) == 0 && strcmp(allowed[i][1], to) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* validation                                                                 */

/* Fills op from o; answers 422 naming the field and returns -EINVAL on a problem. */
static int validate(cm_req_t *req, json_t *o, int create, order_op_t *op)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "userId") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                cm_res_error_field(req, 422, "userId", "userId must be a positive integer");
                return -EINVAL;
            }
            op->user_id = json_integer_value(v);
        } else if (strcmp(key, "status") == 0) {
            if (!json_is_string(v) || status_index(json_string_value(v)) < 0) {
                cm_res_error_field(req, 422, "status",
                                   "status must be one of pending, paid, shipped, completed, "
                                   "cancelled");
                return -EINVAL;
            }
            snprintf(op->status, sizeof op->status, "%s", json_string_value(v));
            op->has_status = 1;
        } else if (strcmp(key, "id") == 0) {
            cm_res_error_field(req, 422, "id", "id is assigned by the server and cannot be set");
            return -EINVAL;
        } else {
            cm_res_error_field(req, 422, key, "unknown field '%s'; orders have userId and status",
                               key);
            return -EINVAL;
        }
    }
    if (create && !op->user_id) {
        cm_res_error_field(req, 422, "userId", "userId is required");
        return -EINVAL;
    }
    if (create && !op->has_status) {
        snprintf(op->status, sizeof op->status, "pending");
        op->has_status = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* handlers                                                                   */

static orders_worker_t *worker_of(cm_req_t *req)
{
    return req->state;
}

static void not_found(cm_req_t *req)
{
    cm_res_error(req, 404, "Order not found");
}

static void orders_list(cm_req_t *req)
{
    int limit, more;
    int64_t after, last, user_id = 0;
    char extra[48] = "";
    int n = cm_rest_query_num(req, "userId", 1, INT64_MAX, &user_id);
    if (n == -EINVAL)
        return;
    if (n == 0)
        snprintf(extra, sizeof extra, "userId=%lld&", (long long)user_id);
    if (cm_rest_page(req, &limit, &after) < 0)
        return;
    orders_worker_t *w = worker_of(req);
    cm_db_t *rdb;
    int rc = cm_batch_read(w->batch, req, orders_list, &rdb);
    if (rc == 1)
        return; /* called again after the commit */
    if (rc == 0)
        rc = cm_orders_list(rdb, user_id, after, limit, &req->res_body, &last, &more);
    if (rc < 0) {
        cm_buf_reset(&req->res_body);
        cm_rest_db_error(req, rc);
        return;
    }
    if (more)
        cm_rest_link_next(req, "/orders", extra, limit, last);
    cm_res_send(req, 200);
}

static void orders_get(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    orders_worker_t *w = worker_of(req);
    cm_db_t *rdb;
    int rc = cm_batch_read(w->batch, req, orders_get, &rdb);
    if (rc == 1)
        return; /* called again after the commit */
    if (rc == 0)
        rc = cm_orders_get(rdb, id, &req->res_body, NULL);
    cm_rest_answer_item(req, rc, "Order not found");
}

/* Ends a unit that cannot go on (cm_rest_refuse_fn): 404 or the store error. */
static void refuse(cm_req_t *req, cm_batch_t *b, int rc)
{
    cm_rest_refuse(req, b, rc, "Order not found");
}

static void answer_user_gone(cm_req_t *req, int64_t user_id)
{
    cm_res_error_body(req, "userId", "user %lld does not exist (deleted)", (long long)user_id);
}

/* Inside the unit: the user check. An order for a user the users feed said is gone is
 * refused (422, held), also when the delete was applied while the users service was being
 * asked: this check and the delete's unit both hold the write lock, so one sees the other
 * (a delete applied after an order cancels it). A user the feed told of is accepted (also
 * while users is down); an unseen one not yet asked about ends the unit untouched with
 * op->ask set, for the loop to ask. Returns 0 to go on, 1 when the unit ended. */
static int check_user(cm_req_t *req, orders_worker_t *w, order_op_t *op)
{
    if (!op->user_id)
        return 0;
    int st = cm_orders_user_state(w->db, op->user_id);
    if (st < 0) {
        refuse(req, w->batch, st);
        return 1;
    }
    if (st == CM_USER_GONE) {
        cm_buf_reset(&req->res_body);
        answer_user_gone(req, op->user_id);
        cm_batch_refuse(w->batch, req, 422);
        return 1;
    }
    if (st == CM_USER_KNOWN || op->asked)
        return 0;
    cm_batch_undo(w->batch);
    cm_buf_reset(&req->res_body);
    op->ask = 1;
    return 1;
}

static void finish_create(order_op_t *op)
{
    cm_req_t *req = op->req;
    orders_worker_t *w = worker_of(req);
    cm_rest_idem_t idem;
    int64_t id = 0;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse) || check_user(req, w, op))
        return;
    int rc = cm_orders_insert(w->db, op->user_id, op->status, &id, &req->res_body);
    if (rc == 0)
        rc = cm_outbox_add(w->db, "order.created", req->res_body.data, req->res_body.len);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    char location[48];
    snprintf(location, sizeof location, "/orders/%lld", (long long)id);
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 201, location);
}

/* Inside a unit: loads the order's status and checks the preconditions. Returns 0 to go
 * on, or 1 when the unit was refused (404/412/5xx held). */
static int check_for_write(cm_req_t *req, orders_worker_t *w, int64_t id,
                           char status[CM_ORDER_STATUS_MAX])
{
    int rc = cm_orders_get(w->db, id, &req->res_body, status);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return 1;
    }
    return cm_rest_write_check_etag(req, w->batch, "order");
}

static void finish_update(order_op_t *op)
{
    cm_req_t *req = op->req;
    orders_worker_t *w = worker_of(req);
    char current[CM_ORDER_STATUS_MAX];
    cm_rest_idem_t idem;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse) ||
        check_for_write(req, w, op->id, current) || check_user(req, w, op))
        return;
    if (op->has_status && !transition_ok(current, op->status)) {
        cm_buf_appendf(&req->res_body,
                       "{\"error\":\"cannot change status from %s to %s\",\"from\":\"%s\","
                       "\"to\":\"%s\"}",
                       current, op->status, current, op->status);
        cm_batch_refuse(w->batch, req, 409);
        return;
    }
    int rc = cm_orders_update(w->db, op->id, op->user_id, op->has_status ? op->status : NULL,
                              &req->res_body);
    if (rc == 0) /* 1: a no-op, which writes no event */
        rc = cm_outbox_add(w->db,
                           op->has_status && strcmp(current, op->status) != 0
                               ? "order.status_changed"
                               : "order.updated",
                           req->res_body.data, req->res_body.len);
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 200, NULL);
}

static void ask_users(order_op_t *op);

/* The write's unit (service/batch.h: on PostgreSQL on the worker's store writer). */
static void op_unit(void *data)
{
    order_op_t *op = data;
    op->ask = 0; /* this run's: a group run again (service/batch.c) may see the user now */
    if (op->id)
        finish_update(op);
    else
        finish_create(op);
}

/* After the unit, on the loop: the users service is asked about an unseen user, or op
 * is done. */
static void op_after(void *data)
{
    order_op_t *op = data;
    if (!op->ask) {
        free(op);
        return;
    }
    op->ask = 0;
    orders_worker_t *w = worker_of(op->req);
    if (w->opts->regset)
        op->ticket = cm_regset_ticket(w->opts->regset);
    ask_users(op);
}

static void run_op(order_op_t *op)
{
    cm_batch_run(worker_of(op->req)->batch, CM_BATCH_WRITE, op->req, op_unit, op_after, op);
}

/* ------------------------------------------------------------------------- */
/* the users service's answers                                                */

typedef enum {
    USER_FOUND,     /* 200 with that user */
    USER_NOT_FOUND, /* the users service's own 404 */
    USER_FOREIGN,   /* 200 or 404 as the users service never answers: misconfigured */
    USER_NO_ANSWER, /* no answer, or another status: unavailable */
} user_answer_t;

static user_answer_t classify(int status, const char *body, size_t len, int64_t user_id)
{
    if (status != 200 && status != 404)
        return USER_NO_ANSWER;
    json_t *o = json_loadb(body, len, 0, NULL);
    int ours;
    if (status == 200) {
        json_t *id = json_object_get(o, "id");
        ours = json_is_integer(id) && json_integer_value(id) == user_id;
    } else {
        const char *e = json_string_value(json_object_get(o, "error"));
        ours = e && strcmp(e, "User not found") == 0;
    }
    json_decref(o);
    if (!ours)
        return USER_FOREIGN;
    return status == 200 ? USER_FOUND : USER_NOT_FOUND;
}

/* Notes what an answer says about --users-url; logs only when that changes, so a
 * misconfiguration under load is one error line, not one per request. */
static void note_answer(const orders_opts_t *o, user_answer_t a, int status, const char *body,
                        int64_t user_id)
{
    users_state_t *u = o->users;
    if (a == USER_FOREIGN) {
        atomic_store(&u->bad_user, (long long)user_id);
        if (atomic_exchange(&u->bad_status, status) == 0)
            cm_log_msg(CM_LOG_ERROR,
                       "orders: users service misconfigured: GET %s/users/%lld answered %d "
                       "with a body the users service never sends (%.100s); --users-url must "
                       "point at the users service or at a gateway route to it. Writes get "
                       "503 and /readyz is not ready until it answers right",
                       o->users_desc, (long long)user_id, status, body);
    } else if (a != USER_NO_ANSWER && atomic_exchange(&u->bad_status, 0) != 0) {
        cm_log_msg(CM_LOG_INFO, "orders: users service at %s answers right again", o->users_desc);
    }
}

/* The users base URL for try `tries` of a check: the watched set's instance (ticket +
 * tries), else --users-url. 0, or -ENOENT when neither knows one. */
static int users_base(const orders_opts_t *o, unsigned ticket, int tries, char *out, size_t cap)
{
    if (o->regset && cm_regset_pick(o->regset, ticket, tries, out, cap) == 0)
        return 0;
    if (!o->users_url[0])
        return -ENOENT;
    snprintf(out, cap, "%s", o->users_url);
    return 0;
}

static void on_probe(int status, const char *body, size_t len, void *data)
{
    orders_worker_t *w = data;
    w->probing = 0;
    int64_t id = (int64_t)atomic_load(&w->opts->users->bad_user);
    note_answer(w->opts, classify(status, body, len, id), status, body, id);
}

/* GET /readyz: not ready while the database refuses writes, or while --users-url answers
 * as the users service never does.
 * Each call also asks again (one question per worker at a time), so the gateway's
 * health checks, which send no orders while we are not ready, still see us recover. */
static int orders_ready(void *config, void *state, char *why, size_t cap)
{
    const orders_opts_t *o = config;
    orders_worker_t *w = state;
    const char *db_problem = w ? cm_batch_write_problem(w->batch) : NULL;
    if (db_problem) {
        snprintf(why, cap, "%s", db_problem);
        return -EIO;
    }
    int bad = atomic_load(&o->users->bad_status);
    if (!bad)
        return 0;
    char base[512];
    if (w && !w->probing && users_base(o, 0, 0, base, sizeof base) == 0) {
        char url[640];
        snprintf(url, sizeof url, "%s/users/%lld", base,
                 (long long)atomic_load(&o->users->bad_user));
        w->probing =
            cm_client_get(w->users, url, (unsigned)o->users_timeout, NULL, on_probe, w) == 0;
    }
    snprintf(why, cap,
             "users service misconfigured: %s/users/{id} answered %d with a body that is not "
             "the users service's; check --users-url",
             o->users_desc, bad);
    return -EPROTO;
}

/* The users service answered (or did not) whether op->user_id exists. */
static void on_user_checked(int status, const char *body, size_t len, void *data)
{
    order_op_t *op = data;
    cm_req_t *req = op->req;
    const orders_opts_t *o = worker_of(req)->opts;
    /* a watched instance that refuses the connection (killed, not yet out of the
     * registry): the next one may answer; nothing reached the dead one */
    if ((status == -ECONNREFUSED || status == -EHOSTUNREACH) && o->regset &&
        op->tries + 1 < cm_regset_count(o->regset)) {
        op->tries++;
        ask_users(op);
        return;
    }
    user_answer_t a = classify(status, body, len, op->user_id);
    note_answer(o, a, status, body, op->user_id);
    if (a == USER_FOUND) {
        op->asked = 1;
        run_op(op);
        return;
    }
    if (a == USER_NOT_FOUND) {
        cm_res_error_field(req, 422, "userId", "user %lld does not exist", (long long)op->user_id);
    } else if (a == USER_FOREIGN) {
        cm_res_header(req, "Retry-After", "5");
        cm_res_error(req, 503, "users service misconfigured");
    } else {
        /* never accept an order we could not check: the client retries later */
        cm_res_header(req, "Retry-After", "1");
        if (status < 0)
            cm_res_error(req, 503, "users service unavailable: %s", strerror(-status));
        else
            cm_res_error(req, 503, "users service unavailable: it answered %d", status);
    }
    free(op);
}

/* One try of op's user check, at the instance its ticket and tries name. */
static void ask_users(order_op_t *op)
{
    cm_req_t *req = op->req;
    orders_worker_t *w = worker_of(req);
    char base[512], url[640];
    if (users_base(w->opts, op->ticket, op->tries, base, sizeof base) < 0) {
        cm_res_header(req, "Retry-After", "1");
        if (w->opts->regset && cm_regset_desired(w->opts->regset) == 0)
            cm_res_error(req, 503, "users service unavailable: it is scaled to 0 instances");
        else
            cm_res_error(req, 503,
                         "users service unavailable: the registry lists no ready users "
                         "instance yet");
        free(op);
        return;
    }
    snprintf(url, sizeof url, "%s/users/%lld", base, (long long)op->user_id);
    int rc = cm_client_get(w->users, url, (unsigned)w->opts->users_timeout, req->request_id,
                           on_user_checked, op);
    if (rc < 0)
        on_user_checked(rc, "", 0, op);
}

/* Parses and validates a write's body into a new op; NULL when an answer was sent. */
static order_op_t *op_from_body(cm_req_t *req, int create)
{
    if (cm_rest_require_json(req) < 0)
        return NULL;
    json_t *o = cm_rest_body_object(req);
    if (!o)
        return NULL;
    order_op_t *op = calloc(1, sizeof *op);
    if (!op) {
        json_decref(o);
        cm_res_error(req, 500, "out of memory");
        return NULL;
    }
    op->req = req;
    int rc = validate(req, o, create, op);
    json_decref(o);
    if (rc < 0) {
        free(op);
        return NULL;
    }
    return op;
}

static void orders_create(cm_req_t *req)
{
    order_op_t *op = op_from_body(req, 1);
    if (!op)
        return;
    run_op(op); /* a replayed key is answered in the unit, before asking users */
}

static void orders_update(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    order_op_t *op = op_from_body(req, 0);
    if (!op)
        return;
    op->id = id;
    run_op(op);
}

static void delete_unit(void *data)
{
    order_op_t *op = data;
    cm_req_t *req = op->req;
    orders_worker_t *w = worker_of(req);
    char current[CM_ORDER_STATUS_MAX];
    cm_rest_idem_t idem;
    if (cm_rest_write_begin(req, w->batch, w->db, &idem, refuse) ||
        check_for_write(req, w, op->id, current))
        return;
    int rc = cm_orders_delete(w->db, op->id);
    if (rc == 0) {
        char event[48];
        int n = snprintf(event, sizeof event, "{\"id\":%lld}", (long long)op->id);
        rc = cm_outbox_add(w->db, "order.deleted", event, (size_t)n);
    }
    if (rc < 0) {
        refuse(req, w->batch, rc);
        return;
    }
    cm_buf_append_str(&req->res_body, "{\"message\":\"Order deleted\"}");
    cm_rest_write_end(req, w->batch, w->db, &idem, refuse, 200, NULL);
}

static void orders_delete(cm_req_t *req)
{
    int64_t id;
    if (cm_req_param_id(req, 0, &id) < 0) {
        not_found(req);
        return;
    }
    order_op_t *op = calloc(1, sizeof *op);
    if (!op) {
        cm_res_error(req, 500, "out of memory");
        return;
    }
    op->req = req;
    op->id = id;
    cm_batch_run(worker_of(req)->batch, CM_BATCH_WRITE, req, delete_unit, free, op);
}

static void orders_events(cm_req_t *req)
{
    cm_feed_get(worker_of(req)->feed, req);
}

/* GET /orders/consistency: how far the users feed is applied and what is still to mend:
 * the stored cursor, the feed's newest id last seen, the lag between them, and the open
 * (pending, paid) orders whose user is gone, which is zero once the lag is. */
static void orders_consistency(cm_req_t *req)
{
    orders_worker_t *w = worker_of(req);
    cm_db_t *rdb;
    int64_t cursor = 0, count = 0;
    cm_buf_t ids = {0};
    int rc = cm_batch_read(w->batch, req, orders_consistency, &rdb);
    if (rc == 1)
        return; /* called again after the commit */
    if (rc == 0)
        rc = cm_sub_cursor(rdb, "users", &cursor);
    if (rc == 0)
        rc = cm_orders_gone_open(rdb, 100, &ids, &count);
    if (rc < 0) {
        cm_buf_free(&ids);
        cm_rest_db_error(req, rc);
        return;
    }
    long long head = atomic_load(&w->opts->users->feed_head);
    if (head < cursor) /* another instance applied what this one has not seen yet */
        head = cursor;
    cm_buf_appendf(&req->res_body,
                   "{\"cursor\":%lld,\"feedLast\":%lld,\"lag\":%lld,"
                   "\"openOrdersOfGoneUsers\":%lld,\"orderIds\":%.*s}",
                   (long long)cursor, head, head - (long long)cursor, (long long)count,
                   (int)ids.len, ids.data);
    cm_buf_free(&ids);
    cm_res_send(req, 200);
}

static const cm_route_t routes[] = {
    {CM_GET, "/events", orders_events},         {CM_GET, "/orders/consistency", orders_consistency},
    {CM_GET, "/orders", orders_list},           {CM_POST, "/orders", orders_create},
    {CM_GET, "/orders/{id}", orders_get},       {CM_PUT, "/orders/{id}", orders_update},
    {CM_DELETE, "/orders/{id}", orders_delete},
};

/* ------------------------------------------------------------------------- */
/* the users feed                                                             */

/* The users base for a page of the feed (cm_sub_base_fn): round robin over the set. */
static int feed_base(void *data, int tries, char *out, size_t cap)
{
    const orders_opts_t *o = ((const orders_worker_t *)data)->opts;
    unsigned ticket = o->regset ? cm_regset_ticket(o->regset) : 0;
    return users_base(o, ticket, tries, out, cap);
}

/* One users event inside the page's unit (cm_sub_apply_fn): created/updated → known;
 * deleted → gone, its open orders cancelled. */
static int apply_user_event(void *data, cm_db_t *db, int64_t id, const char *type, json_t *payload)
{
    orders_worker_t *w = data;
    json_t *uid = json_object_get(payload, "id");
    (void)id;
    if (!json_is_integer(uid))
        return 0; /* not an event about one user: nothing for us */
    int64_t user = json_integer_value(uid);
    if (strcmp(type, "user.created") == 0 || strcmp(type, "user.updated") == 0)
        return cm_orders_user_seen(db, user);
    if (strcmp(type, "user.deleted") != 0)
        return 0;
    int n = cm_orders_user_gone(db, user, &w->scratch);
    if (n > 0)
        cm_log_msg(CM_LOG_INFO, "orders: user %lld deleted: %d open orders cancelled",
                   (long long)user, n);
    return n < 0 ? n : 0;
}

/* ------------------------------------------------------------------------- */
/* command                                                                    */

static int worker_init(uv_loop_t *loop, void *config, void **state)
{
    const orders_opts_t *o = config;
    orders_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->opts = o;
    int rc = cm_svc_open_db(&o->svc, &w->db);
    if (rc == 0)
        rc = cm_batch_new(loop, w->db, o->svc.db, &w->batch);
    if (rc == 0)
        rc = cm_client_new(loop, &w->users);
    if (rc == 0)
        rc = cm_feed_new(loop, w->batch, &w->feed);
    if (rc == 0)
        rc = cm_retention_start(loop, w->batch, w->db, o->svc.key_retention_ms,
                                o->svc.event_retention_ms, &w->retention);
    cm_sub_cfg_t sub = {.name = "users",
                        .base = feed_base,
                        .apply = apply_user_event,
                        .data = w,
                        .wait_ms = 20000,
                        .head = &o->users->feed_head};
    if (rc == 0)
        rc = cm_sub_start(loop, w->batch, w->db, &sub, &w->sub);
    if (rc < 0) {
        cm_sub_free(w->sub);
        cm_retention_free(w->retention);
        cm_feed_free(w->feed);
        cm_client_free(w->users);
        cm_batch_free(w->batch);
        cm_db_close(w->db);
        free(w);
        return rc;
    }
    *state = w;
    return 0;
}

/* GET /readyz: not ready while writes cannot be stored. */
static void worker_free(void *state)
{
    orders_worker_t *w = state;
    if (!w)
        return;
    cm_sub_free(w->sub);      /* its poll in flight is cancelled */
    cm_feed_free(w->feed);    /* answers the parked long-polls */
    cm_batch_free(w->batch);  /* finishes, commits and answers what it holds; a unit that
                               * found an unseen user may start one more check */
    cm_client_free(w->users); /* pending checks answer 503 */
    cm_retention_free(w->retention);
    cm_buf_free(&w->scratch);
    cm_db_close(w->db);
    free(w);
}

/* --users-url: an http(s) base URL, kept without trailing slashes. */
static int url_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    size_t len = strlen(v);
    while (len && v[len - 1] == '/')
        len--;
    if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) || len >= f->size ||
        len < 8) {
        snprintf(err, cap, "'%s' is not an http:// or https:// URL", v);
        return -EINVAL;
    }
    snprintf(field, f->size, "%.*s", (int)len, v);
    return 0;
}

static void url_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    cm_flag_str.show(f, field, out, cap);
}

static const cm_flag_type_t users_url_type = {url_parse, url_show, 0, NULL};

static const cm_flag_t orders_flags[] = {
    CM_FLAG_CUSTOM("users-url", "URL", users_url_type, orders_opts_t, users_url, 0,
                   "base URL of the users service (or a gateway route to it): user checks, and "
                   "its GET /events feed, followed to know users and cancel a deleted user's "
                   "orders; with --users-registry, used only while the registry lists no ready "
                   "instance"),
    CM_FLAG_CUSTOM("users-registry", "URL", users_url_type, orders_opts_t, users_registry, 0,
                   "the control plane (http://HOST:PORT): ask the ready instances of its "
                   "registry service users, round robin, followed in memory; the last set "
                   "stays while the control plane is away"),
    CM_FLAG_DURATION("users-timeout", orders_opts_t, users_timeout, 1,
                     "limit for one user check; past it the write answers 503"),
    CM_FLAG_END,
};

static void opts_defaults(void *opts)
{
    orders_opts_t *o = opts;
    memset(o, 0, sizeof *o);
    cm_svc_opts_default(&o->svc, cm_orders_migrations, cm_orders_nmigrations);
    o->users_timeout = 2000;
}

static const cm_flag_table_t tables[] = {
    {"flags", orders_flags, 0},
    {"service flags", cm_svc_flags, offsetof(orders_opts_t, svc)},
    {"server flags", cm_server_flags, offsetof(orders_opts_t, svc.server)},
    {0},
};

const cm_cmd_t cm_orders_cmd = {
    .name = "orders",
    .usage = "cmesh orders --db PATH (--users-url URL | --users-registry URL) [flags]",
    .about = "Serves the orders REST API: GET|POST /orders (GET takes ?userId=N), "
             "GET|PUT|DELETE /orders/{id}, the event feed GET /events, GET /orders/consistency, "
             "plus /healthz, /readyz and /metrics.",
    .tables = tables,
    .opts_size = sizeof(orders_opts_t),
    .defaults = opts_defaults,
};

static void render_metrics(void *config, cm_buf_t *out)
{
    const orders_opts_t *o = config;
    if (!o->regset)
        return;
    cm_buf_appendf(out,
                   "# HELP cmesh_orders_registry_age_seconds Seconds since the registry last "
                   "answered for users (the set in use is that old)\n"
                   "# TYPE cmesh_orders_registry_age_seconds gauge\n"
                   "cmesh_orders_registry_age_seconds %.3f\n",
                   cm_regset_age_s(o->regset));
}

int cm_orders_main(int argc, char **argv)
{
    users_state_t users = {0};
    orders_opts_t o;
    opts_defaults(&o);
    o.users = &users; /* process-wide, outlives the workers */
    int rc = cm_flags_parse(&cm_orders_cmd, argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (!o.users_url[0] && !o.users_registry[0]) {
        fprintf(stderr, "cmesh orders: give --users-url URL or --users-registry URL (where the "
                        "users service is)\n");
        return 2;
    }
    if (o.users_registry[0])
        snprintf(o.users_desc, sizeof o.users_desc, "the users instances of registry %s",
                 o.users_registry);
    else
        snprintf(o.users_desc, sizeof o.users_desc, "%s", o.users_url);
    if (o.users_registry[0] && (rc = cm_regset_start(o.users_registry, "users", &o.regset)) < 0) {
        fprintf(stderr, "cmesh orders: --users-registry %s: %s\n", o.users_registry, strerror(-rc));
        return 2;
    }
    cm_service_t svc = {.name = "orders",
                        .routes = routes,
                        .nroutes = sizeof routes / sizeof routes[0],
                        .worker_init = worker_init,
                        .worker_free = worker_free,
                        .ready = orders_ready,
                        .render_metrics = render_metrics,
                        .config = &o};
    rc = cm_server_run(&o.svc.server, &svc) < 0 ? 1 : 0;
    cm_regset_stop(o.regset);
    return rc;
}
