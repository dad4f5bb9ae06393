/* service/regset.c: a watched registry service's ready set (regset.h). One thread runs
 * a libuv loop with a core/watch; the set is swapped under a mutex, and readers copy the
 * one URL they need, so no reader holds a pointer into a set being replaced. */
#include "service/regset.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/log.h"
#include "core/watch.h"

struct cm_regset {
    char service[128];
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    cm_watch_t *watch;
    pthread_mutex_t mu; /* guards urls, n */
    char **urls;
    int n;
    atomic_uint next; /* round robin */
};

static void free_set(char **u, int n)
{
    for (int i = 0; i < n; i++)
        free(u[i]);
    free(u);
}

static void on_set(int i, const char *service, char **urls, int n, void *data)
{
    (void)i;
    cm_regset_t *rs = data;
    char **copy = n ? calloc((size_t)n, sizeof *copy) : NULL;
    int ok = n == 0 || copy;
    for (int k = 0; ok && k < n; k++)
        if (!(copy[k] = strdup(urls[k]))) {
            free_set(copy, k);
            ok = 0;
        }
    if (!ok) {
        cm_log_msg(CM_LOG_ERROR, "registry: %s: out of memory; keeping the last set", service);
        return;
    }
    pthread_mutex_lock(&rs->mu);
    char **old = rs->urls;
    int nold = rs->n;
    rs->urls = copy;
    rs->n = n;
    pthread_mutex_unlock(&rs->mu);
    free_set(old, nold);
    cm_log_msg(CM_LOG_INFO, "registry: %s: %d ready instance%s", service, n, n == 1 ? "" : "s");
}

static void on_stop(uv_async_t *a)
{
    cm_regset_t *rs = a->data;
    cm_watch_free(rs->watch); /* the pointer stays: the age is read until rs is freed */
    uv_close((uv_handle_t *)&rs->stop, NULL);
}

static void *run(void *arg)
{
    cm_regset_t *rs = arg;
    uv_run(&rs->loop, UV_RUN_DEFAULT);
    return NULL;
}

int cm_regset_start(const char *base, const char *service, cm_regset_t **out)
{
    cm_regset_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    pthread_mutex_init(&rs->mu, NULL);
    snprintf(rs->service, sizeof rs->service, "%s", service);
    int rc = uv_loop_init(&rs->loop);
    if (rc == 0) {
        const char *names[1] = {rs->service};
        rc = cm_watch_new(&rs->loop, base, names, 1, 0, on_set, rs, &rs->watch);
        if (rc == 0) {
            uv_async_init(&rs->loop, &rs->stop, on_stop);
            rs->stop.data = rs;
            rc = -pthread_create(&rs->thread, NULL, run, rs);
            if (rc < 0) {
                on_stop(&rs->stop);
                uv_run(&rs->loop, UV_RUN_DEFAULT);
            }
        }
        if (rc < 0)
            uv_loop_close(&rs->loop);
    }
    if (rc < 0) {
        pthread_mutex_destroy(&rs->mu);
        free(rs);
        return rc;
    }
    *out = rs;
    return 0;
}

void cm_regset_stop(cm_regset_t *rs)
{
    if (!rs)
        return;
    uv_async_send(&rs->stop);
    pthread_join(rs->thread, NULL);
    uv_loop_close(&rs->loop);
    free_set(rs->urls, rs->n);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

int cm_regset_count(cm_regset_t *rs)
{
    pthread_mutex_lock(&rs->mu);
    int n = rs->n;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

unsigned cm_regset_ticket(cm_regset_t *rs)
{
    return atomic_fetch_add(&rs->next, 1);
}

int cm_regset_pick(cm_regset_t *rs, unsigned ticket, int skip, char *out, size_t cap)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&rs->mu);
    if (rs->n > 0) {
        snprintf(out, cap, "%s", rs->urls[(ticket + (unsigned)skip) % (unsigned)rs->n]);
        rc = 0;
    }
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

int cm_regset_desired(cm_regset_t *rs)
{
    return cm_watch_desired(rs->watch, 0);
}

double cm_regset_age_s(cm_regset_t *rs)
{
    return cm_watch_age_s(rs->watch, 0);
}
