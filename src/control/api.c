/* control/api.c: the /v1 routes (see api.h). Bodies are written straight into the answer
 * buffer; a blocking query parks its request on a registry watch and answers from the
 * watch's callback, on the same loop. */
#include "control/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "control/dashboard.h"
#include "control/state.h"
#include "core/flags.h"
#include "core/json.h"
#include "core/num.h"

static cm_api_ctx_t *ctx_of(cm_req_t *req)
{
    return req->state;
}

static void set_index(cm_req_t *req, uint64_t index)
{
    cm_res_header(req, "X-Cmesh-Index", "%" PRIu64, index);
}

static void iso_ms(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int count_ready(const cm_registry_t *reg, const char *name)
{
    int n = cm_registry_ninstances(reg, name), r = 0;
    for (int i = 0; i < n; i++)
        r += cm_registry_instance(reg, name, i)->state == CM_INST_READY;
    return r;
}

static int count_running(const cm_registry_t *reg, const char *name)
{
    int n = cm_registry_ninstances(reg, name), r = 0;
    for (int i = 0; i < n; i++)
        r += cm_registry_instance(reg, name, i)->pid > 0;
    return r;
}

/* ,"scaling":"fixed"|"auto"|"pinned" (and "pinned":N): how the count is decided. */
static void render_mode(cm_api_ctx_t *c, const char *name, cm_buf_t *b)
{
    if (!c->autoscale || !cm_autoscale_on(c->autoscale, name)) {
        cm_buf_append_str(b, ",\"scaling\":\"fixed\"");
        return;
    }
    int pin = cm_autoscale_pinned(c->autoscale, name);
    if (pin >= 0)
        cm_buf_appendf(b, ",\"scaling\":\"pinned\",\"pinned\":%d", pin);
    else
        cm_buf_append_str(b, ",\"scaling\":\"auto\"");
}

static void render_services(cm_api_ctx_t *c, cm_buf_t *b)
{
    cm_buf_append_str(b, "[");
    for (int i = 0; i < c->spec->nsvcs; i++) {
        const char *name = c->spec->svcs[i].name;
        cm_buf_appendf(b, "%s{\"name\":", i ? "," : "");
        cm_json_str(b, name, strlen(name));
        cm_buf_appendf(b, ",\"desired\":%d,\"running\":%d,\"ready\":%d", cm_sup_count(c->sup, name),
                       count_running(c->reg, name), count_ready(c->reg, name));
        render_mode(c, name, b);
        cm_buf_append_str(b, "}");
    }
    cm_buf_append_str(b, "]");
}

static void render_instance(cm_buf_t *b, const char *name, const cm_reg_inst_t *in, int extra,
                            cm_api_ctx_t *c)
{
    char started[32] = "";
    if (in->started_ms)
        iso_ms(in->started_ms, started);
    cm_buf_append_str(b, "{\"id\":\"");
    cm_json_escape(b, name, strlen(name));
    if (in->ext_id[0]) {
        cm_buf_append_str(b, "/");
        cm_json_escape(b, in->ext_id, strlen(in->ext_id));
        cm_buf_append_str(b, "\"");
    } else
        cm_buf_appendf(b, "/%d\"", in->index);
    cm_buf_append_str(b, ",\"service\":");
    cm_json_str(b, name, strlen(name));
    cm_buf_appendf(b, ",\"index\":%d,\"address\":", in->index);
    cm_json_str(b, in->host, strlen(in->host));
    int v6 = strchr(in->host, ':') != NULL;
    cm_buf_appendf(b,
                   ",\"port\":%d,\"url\":\"http://%s%s%s:%d\",\"state\":\"%s\",\"ready\":%s,"
                   "\"pid\":%d,\"restarts\":%d,\"adopted\":%s",
                   in->port, v6 ? "[" : "", in->host, v6 ? "]" : "", in->port,
                   cm_inst_state_name(in->state), in->state == CM_INST_READY ? "true" : "false",
                   in->pid, in->restarts, in->adopted ? "true" : "false");
    if (in->def[0])
        cm_buf_appendf(b, ",\"definition\":\"%s\"", in->def);
    else if (!in->ext_id[0])
        cm_buf_append_str(b, ",\"definition\":null");
    if (in->ext_id[0])
        cm_buf_appendf(b, ",\"registered\":true,\"ttl_ms\":%lld", (long long)in->ttl_ms);
    if (in->last_exit >= 0)
        cm_buf_appendf(b, ",\"last_exit\":%d", in->last_exit);
    else
        cm_buf_append_str(b, ",\"last_exit\":null");
    if (started[0])
        cm_buf_appendf(b, ",\"started_at\":\"%s\",\"started_ms\":%lld", started,
                       (long long)in->started_ms);
    if (extra) {
        uint64_t cpu = 0, rss = 0;
        double rps, p99;
        if (!in->ext_id[0] && cm_sup_load(c->sup, name, in->index, &rps, &p99) == 0) {
            cm_buf_appendf(b, ",\"rps\":%.1f", rps);
            if (p99 >= 0)
                cm_buf_appendf(b, ",\"p99_ms\":%.2f", p99);
        }
        cm_load_sample_t w;
        uint64_t dt;
        if (!in->ext_id[0] && cm_sup_window(c->sup, name, in->index, &w, &dt) == 0 &&
            cm_load_window_errors(&w) >= 0)
            cm_buf_appendf(b, ",\"error_rate\":%.4f", cm_load_window_errors(&w));
        if (in->pid > 0 && cm_proc_usage(in->pid, &cpu, &rss) == 0)
            cm_buf_appendf(b, ",\"cpu_seconds\":%.2f,\"rss_bytes\":%llu",
                           (double)cpu / (double)sysconf(_SC_CLK_TCK), (unsigned long long)rss);
        uint64_t left;
        char waiting[256];
        if (in->state == CM_INST_LEAVING && !in->ext_id[0] &&
            cm_sup_leaving(c->sup, name, in->index, &left, waiting, sizeof waiting)) {
            cm_buf_appendf(
                b, ",\"leaving\":{\"left_index\":%llu,\"waiting_for\":", (unsigned long long)left);
            cm_json_str(b, waiting, strlen(waiting));
            cm_buf_append_str(b, "}");
        }
        if (in->state == CM_INST_BACKOFF || in->state == CM_INST_CRASHLOOP ||
            in->state == CM_INST_CRITICAL || in->state == CM_INST_STARTING) {
            char *tail = cm_sup_log_tail(c->sup, name, in->index, 5);
            if (tail) {
                cm_buf_append_str(b, ",\"log_tail\":");
                cm_json_str(b, tail, strlen(tail));
                free(tail);
            }
        }
    }
    cm_buf_append_str(b, "}");
}

static void render_service(cm_api_ctx_t *c, const char *name, cm_buf_t *b, int extra)
{
    int n = cm_registry_ninstances(c->reg, name);
    cm_buf_append_str(b, "[");
    for (int i = 0; i < n; i++) {
        if (i)
            cm_buf_append_str(b, ",");
        render_instance(b, name, cm_registry_instance(c->reg, name, i), extra, c);
    }
    cm_buf_append_str(b, "]");
}

/* ---------------------------------------------------------------------------------- */
/* Blocking queries                                                                   */
/* ---------------------------------------------------------------------------------- */

typedef struct parked {
    cm_req_t *req;
    cm_api_ctx_t *ctx;
    char service[CM_SPEC_NAME_MAX]; /* "" = the service list */
} parked_t;

static void answer(cm_api_ctx_t *c, cm_req_t *req, const char *service)
{
    if (service[0]) {
        set_index(req, cm_registry_service_index(c->reg, service));
        /* the desired count: lets a gateway tell "scaled to zero on purpose" (hold its
         * requests and wake the service) from "no instance ready" (keep its last set) */
        int want = cm_sup_count(c->sup, service);
        if (want >= 0)
            cm_res_header(req, "X-Cmesh-Desired", "%d", want);
        render_service(c, service, &req->res_body, 0);
    } else {
        set_index(req, cm_registry_index(c->reg));
        render_services(c, &req->res_body);
    }
    cm_res_send(req, 200);
}

static void on_watch(int changed, void *data)
{
    (void)changed; /* either way the answer is the current set with its index */
    parked_t *p = data;
    answer(p->ctx, p->req, p->service);
    free(p);
}

/* ?index=N&wait=DUR. Returns 1 when the request was parked, 0 to answer now, -1 after
 * answering 400. */
static int maybe_block(cm_api_ctx_t *c, cm_req_t *req, const char *service)
{
    char v[64];
    int rc = cm_req_query(req, "index", v, sizeof v);
    if (rc == -ENOENT)
        return 0;
    char *end;
    errno = 0;
    unsigned long long index = rc > 0 && v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (rc <= 0 || v[0] < '0' || v[0] > '9' || *end || errno) {
        cm_res_error_field(req, 400, "index",
                           "index must be a whole number (the X-Cmesh-Index "
                           "of an earlier answer)");
        return -1;
    }
    uint64_t wait = CM_API_WAIT_DEFAULT_MS;
    rc = cm_req_query(req, "wait", v, sizeof v);
    if (rc != -ENOENT && (rc <= 0 || cm_parse_duration_ms(v, &wait) < 0)) {
        cm_res_error_field(req, 400, "wait", "wait must be a duration like 30s or 5m");
        return -1;
    }
    if (wait > CM_API_WAIT_MAX_MS)
        wait = CM_API_WAIT_MAX_MS;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint32_t)time(NULL);
    /* jitter, as Consul: watchers that started together do not all come back together */
    wait += wait >= 16 ? r % (wait / 16) : 0;
    /* index=0 (a watcher's first query) answers at once, as with Consul: also for a service
     * whose index is still 0 (it never had an instance, e.g. one that starts at zero) */
    if (c->stopping || index == 0)
        return 0;
    parked_t *p = calloc(1, sizeof *p);
    if (!p) {
        cm_res_error(req, 503, "out of memory");
        return -1;
    }
    p->req = req;
    p->ctx = c;
    snprintf(p->service, sizeof p->service, "%s", service ? service : "");
    rc = cm_registry_watch(c->reg, service, index, wait, on_watch, p);
    if (rc < 0) {
        free(p);
        return 0; /* -EALREADY: it changed already */
    }
    return 1;
}

/* ---------------------------------------------------------------------------------- */
/* Handlers                                                                           */
/* ---------------------------------------------------------------------------------- */

/* Copies route capture 0 (a service name) into out; answers 404 when unknown. */
static const cm_svc_spec_t *service_param(cm_req_t *req, cm_api_ctx_t *c, char *out, size_t cap)
{
    cm_str_t s = req->params[0];
    if (s.len >= cap) {
        cm_res_error(req, 404, "no such service");
        return NULL;
    }
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    const cm_svc_spec_t *sp = cm_spec_service(c->spec, out);
    if (!sp)
        cm_res_error(req, 404, "no service named '%s'", out);
    return sp;
}

static void h_services(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    if (maybe_block(c, req, NULL) != 0)
        return;
    answer(c, req, "");
}

static void h_service(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX];
    if (!service_param(req, c, name, sizeof name))
        return;
    if (maybe_block(c, req, name) != 0)
        return;
    answer(c, req, name);
}

/* {"instances": N} sets the count (and pins an autoscaled service there); {"auto": true}
 * hands an autoscaled service back to the autoscaler. */
static void h_scale(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX], err[256];
    if (!service_param(req, c, name, sizeof name))
        return;
    json_t *o = cm_json_parse_object(req->body.p, req->body.len, err, sizeof err);
    if (!o) {
        cm_res_error(req, 400, "%s", err);
        return;
    }
    json_t *n = json_object_get(o, "instances"), *a = json_object_get(o, "auto");
    json_int_t v = json_is_integer(n) ? json_integer_value(n) : -1;
    int is_auto = json_is_true(a), has_auto = a != NULL, has_n = n != NULL;
    const char *unknown = NULL;
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val) if (strcmp(k, "instances") != 0 && strcmp(k, "auto") != 0)
        unknown = k;
    char unk[64];
    snprintf(unk, sizeof unk, "%s", unknown ? unknown : "");
    json_decref(o);
    if (unknown) {
        cm_res_error_field(req, 422, unk, "unknown field '%s'; give instances: N or auto: true",
                           unk);
        return;
    }
    if (has_n == has_auto) {
        cm_res_error_field(req, 422, "instances",
                           "give either instances: N (pins the count) or auto: true (hands it "
                           "back to the autoscaler)");
        return;
    }
    if (has_auto && !is_auto) {
        cm_res_error_field(req, 422, "auto",
                           "auto must be true; to pin the count give instances: N instead");
        return;
    }
    if (has_n && (v < 0 || v > CM_SPEC_MAX_INST)) {
        cm_res_error_field(req, 422, "instances", "instances must be a whole number in 0..%d",
                           CM_SPEC_MAX_INST);
        return;
    }
    if (strcmp(name, CM_SPEC_GATEWAY) == 0 && (has_auto || v != 1)) {
        cm_res_error_field(req, 422, has_auto ? "auto" : "instances",
                           "the gateway runs as exactly 1 instance (it "
                           "owns its port)");
        return;
    }
    int autoscaled = c->autoscale && cm_autoscale_on(c->autoscale, name);
    if (has_auto && !autoscaled) {
        cm_res_error_field(req, 409, "auto",
                           "%s has no autoscale: section in %s; its count is fixed (give "
                           "instances: N)",
                           name, c->spec->path);
        return;
    }
    if (c->stopping) {
        cm_res_error(req, 409, "the system is going down");
        return;
    }
    int rc = autoscaled ? cm_autoscale_pin(c->autoscale, name, has_auto ? -1 : (int)v)
                        : cm_sup_scale(c->sup, name, (int)v);
    if (rc < 0) {
        cm_res_error(req, 500, "scale failed: %s", strerror(-rc));
        return;
    }
    set_index(req, cm_registry_index(c->reg));
    cm_buf_append_str(&req->res_body, "{\"name\":");
    cm_json_str(&req->res_body, name, strlen(name));
    cm_buf_appendf(&req->res_body, ",\"desired\":%d", cm_sup_count(c->sup, name));
    render_mode(c, name, &req->res_body);
    cm_buf_append_str(&req->res_body, "}");
    cm_res_send(req, 200);
}

/* The last decision with its inputs and the explanation `cmesh scale --explain` prints. */
static void h_autoscale(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX];
    const cm_svc_spec_t *sp = service_param(req, c, name, sizeof name);
    if (!sp)
        return;
    if (!c->autoscale || !cm_autoscale_on(c->autoscale, name)) {
        cm_res_error(req, 409, "%s has no autoscale: section in %s; it keeps instances: %d", name,
                     c->spec->path, cm_sup_count(c->sup, name));
        return;
    }
    cm_buf_t *b = &req->res_body;
    cm_buf_append_str(b, "{\"name\":");
    cm_json_str(b, name, strlen(name));
    cm_buf_appendf(b, ",\"desired\":%d", cm_sup_count(c->sup, name));
    render_mode(c, name, b);
    const cm_as_decision_t *d;
    cm_buf_t text = {0};
    if (cm_autoscale_last(c->autoscale, name, &d) == 0) {
        cm_buf_append_str(b, ",\"decision\":");
        cm_as_render_json(d, &sp->autoscale, name, b);
        cm_as_render_text(d, &sp->autoscale, name, &text);
        if (cm_autoscale_pinned(c->autoscale, name) >= 0)
            cm_buf_appendf(&text,
                           "  pinned:  at %d by `cmesh scale %s N`; `cmesh scale %s auto` "
                           "hands it back\n",
                           cm_autoscale_pinned(c->autoscale, name), name, name);
    } else {
        cm_buf_append_str(b, ",\"decision\":null");
        cm_buf_appendf(&text, "%s: no decision yet (the first comes two ticks after start)\n",
                       name);
    }
    cm_buf_append_str(b, ",\"explain\":");
    cm_json_str(b, text.data ? text.data : "", text.len);
    cm_buf_append_str(b, "}");
    cm_buf_free(&text);
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 200);
}

/* POST /v1/services/NAME/wake: a gateway holds requests for a service scaled to zero and
 * asks for one instance. 202 when this call started it, 200 when the service already
 * wants instances (waking or running: asking again changes nothing), 404 unknown. */
static void h_wake(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX];
    if (!service_param(req, c, name, sizeof name))
        return;
    if (strcmp(name, CM_SPEC_GATEWAY) == 0) {
        cm_res_error(req, 422, "the gateway is not a service that scales to zero");
        return;
    }
    if (c->stopping) {
        cm_res_error(req, 409, "the system is going down");
        return;
    }
    /* through the autoscaler: the demand is noted, so scale-down waits a whole window */
    int woke = cm_autoscale_wake(c->autoscale, name);
    if (woke < 0) {
        cm_res_error(req, 500, "wake failed: %s", strerror(-woke));
        return;
    }
    int want = cm_sup_count(c->sup, name);
    if (woke)
        cm_events_add(c->events, "wake", name, -1, NULL,
                      "woken from zero to 1 instance (asked by %s)", req->peer);
    set_index(req, cm_registry_index(c->reg));
    cm_buf_append_str(&req->res_body, "{\"name\":");
    cm_json_str(&req->res_body, name, strlen(name));
    cm_buf_appendf(&req->res_body, ",\"desired\":%d,\"woken\":%s}", want, woke ? "true" : "false");
    cm_res_send(req, woke ? 202 : 200);
}

/* An id of a hand-registered instance: 1..47 of a-z, 0-9, '-', '_', '.'. Copies capture
 * 1 into out; answers 400 and returns -1 when it is not one. */
static int ext_id_param(cm_req_t *req, char *out, size_t cap)
{
    cm_str_t s = req->params[1];
    size_t ok = 0;
    while (ok < s.len &&
           (strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", s.p[ok]) && s.p[ok] != '\0'))
        ok++;
    if (s.len == 0 || s.len >= cap || ok != s.len) {
        cm_res_error_field(req, 400, "id", "an instance id is 1..%zu of a-z, 0-9, '-', '_', '.'",
                           cap - 1);
        return -1;
    }
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return 0;
}

static void h_register(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX], id[48], err[256];
    if (!service_param(req, c, name, sizeof name) || ext_id_param(req, id, sizeof id) < 0)
        return;
    if (strcmp(name, CM_SPEC_GATEWAY) == 0) {
        cm_res_error(req, 422, "the gateway is not a service instances register with");
        return;
    }
    json_t *o = cm_json_parse_object(req->body.p, req->body.len, err, sizeof err);
    if (!o) {
        cm_res_error(req, 400, "%s", err);
        return;
    }
    const char *addr = json_string_value(json_object_get(o, "address"));
    json_t *port = json_object_get(o, "port"), *ttl = json_object_get(o, "ttl");
    uint64_t ttl_ms = 0;
    const char *bad = NULL;
    if (!addr || !addr[0] || strlen(addr) > 255 || strpbrk(addr, " /\r\n"))
        bad = "address";
    else if (!json_is_integer(port) || json_integer_value(port) < 1 ||
             json_integer_value(port) > 65535)
        bad = "port";
    else if (!json_is_string(ttl) || cm_parse_duration_ms(json_string_value(ttl), &ttl_ms) < 0 ||
             ttl_ms < 100 || ttl_ms > CM_EXT_TTL_MAX_MS)
        bad = "ttl";
    if (bad) {
        json_decref(o);
        cm_res_error_field(req, 422, bad, "%s",
                           strcmp(bad, "address") == 0 ? "address must be a host name or IP"
                           : strcmp(bad, "port") == 0  ? "port must be a whole number in 1..65535"
                                                       : "ttl must be a duration from 100ms to 1h");
        return;
    }
    int rc = c->stopping
                 ? -ESHUTDOWN
                 : cm_ext_put(c->ext, name, id, addr, (int)json_integer_value(port), ttl_ms);
    json_decref(o);
    if (rc == -ESHUTDOWN) {
        cm_res_error(req, 409, "the system is going down");
        return;
    }
    if (rc < 0) {
        cm_res_error(req, rc == -ENOSPC ? 507 : 422, "%s",
                     rc == -ENOSPC ? "too many instances registered by hand"
                                   : "the registration was refused");
        return;
    }
    set_index(req, cm_registry_index(c->reg));
    cm_buf_append_str(&req->res_body, "{\"id\":\"");
    cm_json_escape(&req->res_body, name, strlen(name));
    cm_buf_appendf(&req->res_body, "/%s\",\"ttl_ms\":%llu}", id, (unsigned long long)ttl_ms);
    cm_res_send(req, 200);
}

static void h_deregister(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX], id[48];
    if (!service_param(req, c, name, sizeof name) || ext_id_param(req, id, sizeof id) < 0)
        return;
    if (cm_ext_del(c->ext, name, id) < 0) {
        cm_res_error(req, 404, "no instance '%s' registered with %s", id, name);
        return;
    }
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 204);
}

/* Prometheus HTTP SD: [{"targets": ["h:p", ...], "labels": {...}}], one group per
 * service, instances with a process only. */
static void h_targets(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    cm_buf_t *b = &req->res_body;
    cm_buf_append_str(b, "[");
    int groups = 0;
    for (int i = 0; i < c->spec->nsvcs; i++) {
        const char *name = c->spec->svcs[i].name;
        int n = cm_registry_ninstances(c->reg, name);
        for (int j = 0; j < n; j++) {
            const cm_reg_inst_t *in = cm_registry_instance(c->reg, name, j);
            if (in->pid <= 0 && !in->ext_id[0])
                continue;
            int v6 = strchr(in->host, ':') != NULL;
            cm_buf_appendf(b, "%s{\"targets\":[\"%s%s%s:%d\"],\"labels\":{\"job\":",
                           groups++ ? "," : "", v6 ? "[" : "", in->host, v6 ? "]" : "", in->port);
            cm_json_str(b, name, strlen(name));
            cm_buf_appendf(b, ",\"service\":");
            cm_json_str(b, name, strlen(name));
            if (in->ext_id[0])
                cm_buf_appendf(b, ",\"instance_id\":\"%s/%s\",\"state\":\"%s\"}}", name, in->ext_id,
                               cm_inst_state_name(in->state));
            else
                cm_buf_appendf(b, ",\"instance_id\":\"%s/%d\",\"state\":\"%s\"}}", name, in->index,
                               cm_inst_state_name(in->state));
        }
    }
    cm_buf_append_str(b, "]");
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 200);
}

static void h_status(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    cm_buf_t *b = &req->res_body;
    cm_buf_appendf(b, "{\"index\":%" PRIu64 ",\"pid\":%d,\"stopping\":%s,\"services\":[",
                   cm_registry_index(c->reg), (int)getpid(), c->stopping ? "true" : "false");
    for (int i = 0; i < c->spec->nsvcs; i++) {
        const char *name = c->spec->svcs[i].name;
        cm_buf_appendf(b, "%s{\"name\":", i ? "," : "");
        cm_json_str(b, name, strlen(name));
        cm_buf_appendf(b, ",\"desired\":%d", cm_sup_count(c->sup, name));
        render_mode(c, name, b);
        cm_buf_append_str(b, ",\"definition\":");
        char def[CM_DEFN_LEN];
        if (cm_sup_def(c->sup, name, def) == 0)
            cm_buf_appendf(b, "\"%s\"", def);
        else
            cm_buf_append_str(b, "null");
        cm_buf_append_str(b, ",\"rollout\":");
        if (c->ro)
            cm_rollouts_render(c->ro, name, b);
        else
            cm_buf_append_str(b, "null");
        cm_buf_append_str(b, ",\"instances\":");
        render_service(c, name, b, 1);
        cm_buf_append_str(b, "}");
    }
    cm_buf_append_str(b, "]}");
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 200);
}

static void h_ready(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    cm_buf_t *b = &req->res_body;
    int all = !c->stopping, first = 1;
    cm_buf_append_str(b, "{\"not_ready\":[");
    for (int i = 0; i < c->spec->nsvcs; i++) {
        const char *name = c->spec->svcs[i].name;
        int want = cm_sup_count(c->sup, name);
        for (int j = 0; j < want; j++) {
            const cm_reg_inst_t *in = NULL;
            int n = cm_registry_ninstances(c->reg, name);
            for (int k = 0; k < n; k++)
                if (cm_registry_instance(c->reg, name, k)->index == j)
                    in = cm_registry_instance(c->reg, name, k);
            if (in && in->state == CM_INST_READY)
                continue;
            all = 0;
            cm_buf_appendf(b, "%s{\"id\":\"%s/%d\",\"state\":\"%s\"}", first ? "" : ",", name, j,
                           in ? cm_inst_state_name(in->state) : "stopped");
            first = 0;
        }
    }
    cm_buf_appendf(b, "],\"ready\":%s}", all ? "true" : "false");
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, all ? 200 : 503);
}

/* GET /v1/events?after=N&limit=M: the recent events after id N (0: from the oldest kept). */
static void h_events(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char v[32];
    int64_t after = 0, limit = CM_EVENTS_KEEP;
    int rc = cm_req_query(req, "after", v, sizeof v);
    if (rc != -ENOENT && (rc <= 0 || cm_num_parse(v, (size_t)rc, 0, INT64_MAX, &after) < 0)) {
        cm_res_error_field(req, 400, "after", "after must be an event id (a whole number)");
        return;
    }
    rc = cm_req_query(req, "limit", v, sizeof v);
    if (rc != -ENOENT && (rc <= 0 || cm_num_parse(v, (size_t)rc, 1, CM_EVENTS_KEEP, &limit) < 0)) {
        cm_res_error_field(req, 400, "limit", "limit must be a whole number from 1 to 512");
        return;
    }
    cm_events_render(c->events, (uint64_t)after, (int)limit, &req->res_body);
    cm_res_send(req, 200);
}

/* GET /v1/history?after=N: the charts' points after id N (0: every one kept). */
static void h_history(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char v[32];
    int64_t after = 0;
    int rc = cm_req_query(req, "after", v, sizeof v);
    if (rc != -ENOENT && (rc <= 0 || cm_num_parse(v, (size_t)rc, 0, INT64_MAX, &after) < 0)) {
        cm_res_error_field(req, 400, "after",
                           "after must be a point id (a whole number: the \"last\" of an "
                           "earlier answer)");
        return;
    }
    cm_history_render(c->history, (uint64_t)after, &req->res_body);
    cm_res_send(req, 200);
}

/* PUT /v1/gateways/{id}/ack: a gateway's report (acks.h). The id is an instance id, its
 * '/' escaped in the path ("gateway%2F0"); the router hands it down decoded. */
static void h_ack(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    cm_str_t s = req->params[0];
    char id[CM_ACKS_ID_MAX], err[256];
    size_t ok = 0;
    while (ok < s.len && s.p[ok] && strchr("abcdefghijklmnopqrstuvwxyz0123456789-_./", s.p[ok]))
        ok++;
    if (s.len == 0 || s.len >= sizeof id || ok != s.len) {
        cm_res_error_field(req, 400, "id",
                           "a gateway id is 1..%zu of a-z, 0-9, '-', '_', '.', '/' (its instance "
                           "id, as gateway%%2F0)",
                           sizeof id - 1);
        return;
    }
    memcpy(id, s.p, s.len);
    id[s.len] = '\0';
    cm_ack_t a;
    char field[CM_ACKS_FIELD_MAX];
    if (cm_ack_parse(req->body.p, req->body.len, &a, field, err, sizeof err) < 0) {
        if (field[0])
            cm_res_error_field(req, 422, field, "%s", err);
        else
            cm_res_error(req, 400, "%s", err);
        return;
    }
    if (cm_acks_put(c->acks, id, &a) < 0) {
        cm_res_error(req, 507, "too many gateways acknowledging (at most %d)", CM_ACKS_MAX);
        return;
    }
    cm_sup_acked(c->sup);
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 204);
}

static void h_gateways(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cm_acks_render(c->acks, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, &req->res_body);
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 200);
}

/* POST /v1/services/{name}/rollout: 202 with the rollout as it starts; its progress is
 * in /v1/status (and the events). */
static void h_rollout(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    char name[CM_SPEC_NAME_MAX];
    if (!service_param(req, c, name, sizeof name))
        return;
    int rc = c->stopping || !c->ro ? -ESHUTDOWN : cm_rollouts_start(c->ro, name);
    if (rc == -ESHUTDOWN) {
        cm_res_error(req, 409, "the system is going down");
        return;
    }
    if (rc == -EBUSY) {
        cm_res_error(req, 409, "a rollout of %s is already running (see cmesh status)", name);
        return;
    }
    if (rc == -EINVAL) {
        cm_res_error(req, 422,
                     "the gateway owns its port and cannot run twice: cmesh reload applies "
                     "its gateway: section in place");
        return;
    }
    if (rc < 0) {
        cm_res_error(req, 500, "rollout failed to start: %s", strerror(-rc));
        return;
    }
    cm_buf_append_str(&req->res_body, "{\"name\":");
    cm_json_str(&req->res_body, name, strlen(name));
    cm_buf_append_str(&req->res_body, ",\"rollout\":");
    cm_rollouts_render(c->ro, name, &req->res_body);
    cm_buf_append_str(&req->res_body, "}");
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, 202);
}

static void h_reload(cm_req_t *req)
{
    cm_api_ctx_t *c = ctx_of(req);
    if (c->stopping || !c->reload) {
        cm_res_error(req, 409, "the system is going down");
        return;
    }
    int st = c->reload(c->reload_arg, &req->res_body);
    set_index(req, cm_registry_index(c->reg));
    cm_res_send(req, st);
}

const cm_route_t cm_api_routes[] = {
    {CM_GET, "/v1/services", h_services},
    {CM_GET, "/v1/services/{name}", h_service},
    {CM_PUT, "/v1/services/{name}/scale", h_scale},
    {CM_POST, "/v1/services/{name}/wake", h_wake},
    {CM_GET, "/v1/services/{name}/autoscale", h_autoscale},
    {CM_PUT, "/v1/services/{name}/instances/{id}", h_register},
    {CM_DELETE, "/v1/services/{name}/instances/{id}", h_deregister},
    {CM_GET, "/v1/targets", h_targets},
    {CM_GET, "/v1/status", h_status},
    {CM_GET, "/v1/ready", h_ready},
    {CM_GET, "/v1/events", h_events},
    {CM_GET, "/v1/history", h_history},
    {CM_GET, "/", cm_dash_page},
    {CM_GET, "/dashboard.css", cm_dash_css},
    {CM_GET, "/dashboard.js", cm_dash_js},
    {CM_GET, "/favicon.svg", cm_dash_icon},
    {CM_PUT, "/v1/gateways/{id}/ack", h_ack},
    {CM_GET, "/v1/gateways", h_gateways},
    {CM_POST, "/v1/services/{name}/rollout", h_rollout},
    {CM_POST, "/v1/reload", h_reload},
};
const int cm_api_nroutes = (int)(sizeof cm_api_routes / sizeof cm_api_routes[0]);
