/* gateway/health.c: active health checks: GET <instance><health path> every interval
 * with a timeout; rise successes in a row make an instance healthy, fall failures
 * unhealthy. Runs per worker on its own loop (no locks), through the core HTTP client. */
#include "gateway/health.h"

#include <errno.h>
#include <stdio.h>

#include "core/log.h"
#include "gateway/gateway_types.h"
#include "gateway/table.h"

static void on_check_timer(uv_timer_t *t);

static void set_healthy(gw_inst_t *in, int healthy)
{
    if (in->healthy == healthy)
        return;
    in->healthy = healthy;
    gw_up_healthy_add(in->stats, healthy ? 1 : -1);
    if (healthy)
        in->available_since_ns = uv_hrtime(); /* slow start counts from here */
    cm_log_msg(healthy ? CM_LOG_INFO : CM_LOG_WARN, "gateway: route %s: %s is %s", in->route_name,
               in->url, healthy ? "healthy again" : "unhealthy (health check failed)");
}

static void on_check_done(int status, const char *body, size_t len, void *data)
{
    (void)body;
    (void)len;
    gw_inst_t *in = data;
    in->hc_busy = 0;
    if (status == -ECANCELED || in->refs == 1) { /* only this check still held it */
        gw_inst_unref(in);
        return;
    }
    const gw_route_cfg_t *rc = in->cfg;
    if (status >= 200 && status < 300) {
        in->hc_fail = 0;
        if (++in->hc_ok >= rc->health_rise)
            set_healthy(in, 1);
    } else {
        in->hc_ok = 0;
        if (++in->hc_fail >= rc->health_fall)
            set_healthy(in, 0);
    }
    gw_inst_unref(in);
}

static void on_check_timer(uv_timer_t *t)
{
    gw_inst_t *in = t->data;
    const gw_route_cfg_t *rc = in->cfg;
    if (in->hc_busy || !rc->health_path[0] || in->w->stopping)
        return;
    char url[GW_URL_MAX * 2];
    snprintf(url, sizeof url, "%s%s", in->url, rc->health_path);
    in->refs++; /* the check holds the instance until its callback */
    if (cm_client_get(in->w->hc, url, (unsigned)rc->health_timeout_ms, NULL, on_check_done, in) ==
        0)
        in->hc_busy = 1;
    else
        in->refs--;
}

void gw_health_start(gw_inst_t *in)
{
    const gw_route_cfg_t *rc = in->cfg;
    if (!rc->health_path[0] || !in->w->hc) {
        uv_timer_stop(&in->hc_timer);
        if (!in->healthy) /* checks off: nothing would ever bring it back */
            in->healthy = 1, gw_up_healthy_add(in->stats, 1);
        return;
    }
    uv_timer_start(&in->hc_timer, on_check_timer, rc->health_interval_ms, rc->health_interval_ms);
}

void gw_health_stop(gw_inst_t *in, uv_close_cb done)
{
    uv_timer_stop(&in->hc_timer);
    in->hc_timer.data = in;
    uv_close((uv_handle_t *)&in->hc_timer, done);
}
