/* core/watch.c: blocking-query loops over the registry's /v1/services/NAME (watch.h).
 * One cm_client per watch; per service one outstanding GET or one backoff timer. The
 * last success time is an atomic so that metrics can read it from other threads. */
#include "core/watch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/client.h"
#include "core/log.h"

#define WATCH_WAIT_DEFAULT 10000 /* ms; also how stale the age gets in steady state */
#define WATCH_SLACK_MS     5000  /* ms past wait + wait/16 before we call the query lost */
#define BACKOFF_FIRST_MS   250
#define BACKOFF_MAX_MS     10000 /* a control plane back from a restart is seen within 10 s */
#define URL_MAX            512

typedef struct svc {
    struct cm_watch *w;
    int i;
    char name[128];
    uint64_t index;            /* what the next query sends; 0 = answer at once */
    uint64_t handed;           /* the index of the last set handed to the callback */
    unsigned attempt;          /* failures in a row */
    int in_flight;             /* a GET is pending */
    uv_timer_t timer;          /* backoff before the next query */
    _Atomic uint64_t ok_ms;    /* CLOCK_MONOTONIC ms of the last 200; 0 = never */
    _Atomic uint64_t start_ms; /* when the watch started */
    _Atomic int desired;       /* the answer's X-Cmesh-Desired; -1 = not given */
} svc_t;

struct cm_watch {
    uv_loop_t *loop;
    cm_client_t *hc;
    char base[URL_MAX];
    unsigned wait_ms;
    cm_watch_cb cb;
    void *data;
    int n;
    int stopping;
    int open; /* timers not yet closed */
    uint64_t rng;
    svc_t svcs[];
};

/* ------------------------------------------------------------------------- */
/* pure parts                                                                 */

int cm_watch_parse(const char *body, size_t len, char ***urls_out, int *n_out)
{
    json_error_t jerr;
    json_t *a = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!a || !json_is_array(a)) {
        json_decref(a);
        return -EINVAL;
    }
    size_t cnt = json_array_size(a);
    char **urls = cnt ? calloc(cnt, sizeof *urls) : NULL;
    if (cnt && !urls) {
        json_decref(a);
        return -ENOMEM;
    }
    int n = 0, rc = 0;
    for (size_t k = 0; k < cnt && rc == 0; k++) {
        json_t *in = json_array_get(a, k);
        json_t *url = json_object_get(in, "url"), *ready = json_object_get(in, "ready");
        if (!json_is_object(in) || !json_is_string(url) || !json_is_boolean(ready))
            rc = -EINVAL;
        else if (json_is_true(ready) && n < CM_WATCH_MAX_URLS &&
                 !(urls[n++] = strdup(json_string_value(url))))
            rc = -ENOMEM;
    }
    json_decref(a);
    if (rc < 0) {
        for (int k = 0; k < n; k++)
            free(urls[k]);
        free(urls);
        return rc;
    }
    if (n == 0) {
        free(urls);
        urls = NULL;
    }
    *urls_out = urls;
    *n_out = n;
    return 0;
}

int cm_watch_index_rule(uint64_t last, uint64_t got, uint64_t *next)
{
    if (last == 0) {           /* the first answer (or the one after a reset): always a set */
        *next = got ? got : 1; /* index=0 would answer at once, again and again */
        return 1;
    }
    if (got < last) {
        *next = 0;
        return 0;
    }
    *next = got;
    return got > last;
}

unsigned cm_watch_backoff_ms(unsigned attempt, uint64_t rnd)
{
    uint64_t d = BACKOFF_FIRST_MS;
    for (unsigned k = 0; k < attempt && d < BACKOFF_MAX_MS; k++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return (unsigned)(d / 2 + rnd % (d / 2 + 1));
}

/* ------------------------------------------------------------------------- */
/* the query loop                                                             */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void query(svc_t *s);

static void on_timer(uv_timer_t *t)
{
    query(t->data);
}

static void retry_later(svc_t *s)
{
    cm_watch_t *w = s->w;
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    unsigned ms = cm_watch_backoff_ms(s->attempt, w->rng);
    if (s->attempt < 32)
        s->attempt++;
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_answer(int status, const char *body, size_t len, void *data)
{
    svc_t *s = data;
    cm_watch_t *w = s->w;
    s->in_flight = 0;
    if (status == -ECANCELED || w->stopping)
        return;
    char hdr[32];
    uint64_t got = 0;
    char *end = NULL;
    int have = status == 200 && cm_client_header(w->hc, "X-Cmesh-Index", hdr, sizeof hdr) == 0;
    if (have) {
        got = strtoull(hdr, &end, 10);
        have = end != hdr && *end == '\0';
    }
    char **urls = NULL;
    int n = 0;
    if (!have || cm_watch_parse(body, len, &urls, &n) < 0) {
        if (s->attempt == 0 && status < 0) /* once per outage, not once per retry */
            cm_log_msg(CM_LOG_WARN,
                       "watch: %s: registry at %s is away (%s); keeping the last set and "
                       "retrying",
                       s->name, w->base, strerror(-status));
        else if (s->attempt == 0)
            cm_log_msg(CM_LOG_WARN,
                       "watch: %s: registry at %s answered %d%s; keeping the last set and "
                       "retrying",
                       s->name, w->base, status,
                       status == 404 ? " (no such service)" : " without a set");
        retry_later(s);
        return;
    }
    if (s->attempt)
        cm_log_msg(CM_LOG_INFO, "watch: %s: registry at %s answers again", s->name, w->base);
    s->attempt = 0;
    atomic_store(&s->ok_ms, mono_ms());
    int desired = -1;
    if (cm_client_header(w->hc, "X-Cmesh-Desired", hdr, sizeof hdr) == 0) {
        long d = strtol(hdr, &end, 10);
        desired = end != hdr && *end == '\0' && d >= 0 && d <= 1000000 ? (int)d : -1;
    }
    /* a new desired count is news too (a scale to zero before the set changed) */
    int moved = atomic_exchange(&s->desired, desired) != desired;
    uint64_t next;
    if (cm_watch_index_rule(s->index, got, &next) || moved) {
        s->handed = got;
        w->cb(s->i, s->name, urls, n, w->data);
    }
    s->index = next;
    for (int k = 0; k < n; k++)
        free(urls[k]);
    free(urls);
    if (!w->stopping)
        query(s);
}

static void query(svc_t *s)
{
    cm_watch_t *w = s->w;
    if (w->stopping)
        return;
    char url[URL_MAX + 256];
    snprintf(url, sizeof url, "%s/v1/services/%s?index=%" PRIu64 "&wait=%ums", w->base, s->name,
             s->index, w->wait_ms);
    unsigned timeout = w->wait_ms + w->wait_ms / 16 + WATCH_SLACK_MS;
    if (cm_client_get(w->hc, url, timeout, NULL, on_answer, s) < 0) {
        retry_later(s);
        return;
    }
    s->in_flight = 1;
}

/* ------------------------------------------------------------------------- */
/* life cycle                                                                 */

int cm_watch_new(uv_loop_t *loop, const char *base, const char *const *services, int n,
                 unsigned wait_ms, cm_watch_cb cb, void *data, cm_watch_t **out)
{
    if (!loop || !base || !cb || n < 1 || n > CM_WATCH_MAX_SERVICES ||
        (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) ||
        strlen(base) >= URL_MAX)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!services[i][0] || strlen(services[i]) >= sizeof((svc_t *)0)->name ||
            strpbrk(services[i], "/?&#% \r\n"))
            return -EINVAL;
    cm_watch_t *w = calloc(1, sizeof *w + (size_t)n * sizeof(svc_t));
    if (!w)
        return -ENOMEM;
    int rc = cm_client_new(loop, &w->hc);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->loop = loop;
    snprintf(w->base, sizeof w->base, "%s", base);
    size_t bl = strlen(w->base);
    while (bl > 0 && w->base[bl - 1] == '/')
        w->base[--bl] = '\0';
    w->wait_ms = wait_ms ? wait_ms : WATCH_WAIT_DEFAULT;
    w->cb = cb;
    w->data = data;
    w->n = n;
    w->rng = uv_hrtime() * 0x9e3779b97f4a7c15ULL | 1;
    uint64_t now = mono_ms();
    for (int i = 0; i < n; i++) {
        svc_t *s = &w->svcs[i];
        s->w = w;
        s->i = i;
        snprintf(s->name, sizeof s->name, "%s", services[i]);
        atomic_store(&s->start_ms, now);
        atomic_store(&s->desired, -1);
        uv_timer_init(loop, &s->timer);
        s->timer.data = s;
        w->open++;
        /* the first query from the loop, not from inside this call */
        uv_timer_start(&s->timer, on_timer, 0, 0);
    }
    *out = w;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    svc_t *s = h->data;
    cm_watch_t *w = s->w;
    if (--w->open == 0)
        free(w);
}

void cm_watch_free(cm_watch_t *w)
{
    if (!w || w->stopping)
        return;
    w->stopping = 1;
    cm_client_free(w->hc); /* pending answers fire with -ECANCELED */
    for (int i = 0; i < w->n; i++)
        uv_close((uv_handle_t *)&w->svcs[i].timer, on_closed);
}

double cm_watch_age_s(const cm_watch_t *w, int i)
{
    if (!w || i < 0 || i >= w->n)
        return -1;
    uint64_t ok = atomic_load(&w->svcs[i].ok_ms);
    uint64_t from = ok ? ok : atomic_load(&w->svcs[i].start_ms);
    uint64_t now = mono_ms();
    return now > from ? (double)(now - from) / 1000.0 : 0.0;
}

uint64_t cm_watch_index(const cm_watch_t *w, int i)
{
    return w && i >= 0 && i < w->n ? w->svcs[i].handed : 0;
}

int cm_watch_answered(const cm_watch_t *w, int i)
{
    return w && i >= 0 && i < w->n && atomic_load(&w->svcs[i].ok_ms) != 0;
}

int cm_watch_desired(const cm_watch_t *w, int i)
{
    return w && i >= 0 && i < w->n ? atomic_load(&w->svcs[i].desired) : -1;
}
