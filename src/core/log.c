/* core/log.c: process messages (one write(2) each, straight to stderr) and the access
 * log: worker streams fill batches without a lock and hand them to one writer thread per
 * sink, which writes them to stderr or an append-mode file. Called by the server and every
 * module that reports a process event; calls only libc and pthreads. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/json.h"

/* A stream hands its batch over once it passes this many bytes: large enough that a
 * busy worker takes the sink's lock a few times a second, small enough to stay in L2. */
#define BATCH_BYTES (64 * 1024)
/* Queued batches above this many bytes mean the target cannot keep up (full disk,
 * stalled pipe); newer batches are dropped and counted rather than growing the heap. */
#define QUEUE_MAX_BYTES (8 * 1024 * 1024)
/* Written batches kept for reuse, so a steady flow of batches costs no malloc. */
#define SPARE_MAX 16

/* ------------------------------------------------------------------------------------ */
/* Low level: timestamps, writing                                                      */
/* ------------------------------------------------------------------------------------ */

/* Appends "key":"escaped value", or "key":null when v is NULL. */
static int json_field_str(cm_buf_t *b, const char *key, const char *v, size_t len)
{
    if (cm_buf_append_str(b, key) < 0)
        return -ENOMEM;
    if (!v)
        return cm_buf_append(b, "null", 4);
    return cm_json_str(b, v, len);
}

/* The second part of an RFC 3339 UTC timestamp, "2026-11-25T04:24:34.", formatted once
 * per second per stream because gmtime_r and strftime cost far more than the ms digits. */
typedef struct ts_cache {
    time_t sec;      /* second that prefix shows; -1 before the first use */
    char prefix[24]; /* "YYYY-MM-DDTHH:MM:SS." NUL-terminated */
    size_t len;      /* strlen(prefix) */
} ts_cache_t;

/* Appends "YYYY-MM-DDTHH:MM:SS.mmmZ" for now. */
static int append_ts(cm_buf_t *b, ts_cache_t *c)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != c->sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        c->len = strftime(c->prefix, sizeof c->prefix, "%Y-%m-%dT%H:%M:%S.", &tm);
        c->sec = now.tv_sec;
    }
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    char tail[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z'};
    if (cm_buf_append(b, c->prefix, c->len) < 0)
        return -ENOMEM;
    return cm_buf_append(b, tail, 4);
}

/* Writes all of data, retrying partial writes and EINTR. Returns 0 or -errno. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static const char *level_name(cm_log_level_t level)
{
    switch (level) {
    case CM_LOG_DEBUG:
        return "debug";
    case CM_LOG_INFO:
        return "info";
    case CM_LOG_WARN:
        return "warn";
    case CM_LOG_ERROR:
        return "error";
    }
    return "info";
}

/* The text format's level column: upper case, padded so messages line up. */
static const char *level_text(cm_log_level_t level)
{
    switch (level) {
    case CM_LOG_DEBUG:
        return "DEBUG";
    case CM_LOG_INFO:
        return "INFO ";
    case CM_LOG_WARN:
        return "WARN ";
    case CM_LOG_ERROR:
        return "ERROR";
    }
    return "INFO ";
}

/* AUTO resolved against fd: a terminal reads text. */
static bool want_text(cm_log_format_t f, int fd)
{
    return f == CM_LOG_FORMAT_TEXT || (f == CM_LOG_FORMAT_AUTO && fd >= 0 && isatty(fd));
}

/* ------------------------------------------------------------------------------------ */
/* Process messages                                                                     */
/* ------------------------------------------------------------------------------------ */

/* The one process-wide setting of this module: process messages are written from any
 * module without a context (cm_log_msg has no handle), and the setting is written once
 * at start, before any thread; atomic so a late set is still well defined. */
static atomic_int msg_format = CM_LOG_FORMAT_AUTO;

void cm_log_set_format(cm_log_format_t format)
{
    atomic_store(&msg_format, (int)format);
}

void cm_log_msg(cm_log_level_t level, const char *fmt, ...)
{
    cm_buf_t msg = CM_BUF_INIT;
    cm_buf_t line = CM_BUF_INIT;
    ts_cache_t tc = {.sec = -1};
    va_list ap;
    va_start(ap, fmt);
    int rc = cm_buf_vappendf(&msg, fmt, ap);
    va_end(ap);
    if (want_text(atomic_load(&msg_format), STDERR_FILENO)) {
        if (rc == 0)
            rc = append_ts(&line, &tc);
        if (rc == 0)
            rc = cm_buf_appendf(&line, " %s ", level_text(level));
        if (rc == 0)
            rc = cm_json_escape(&line, msg.data ? msg.data : "", msg.len);
        if (rc == 0)
            rc = cm_buf_append(&line, "\n", 1);
    } else {
        if (rc == 0)
            rc = cm_buf_append_str(&line, "{\"ts\":\"");
        if (rc == 0)
            rc = append_ts(&line, &tc);
        if (rc == 0)
            rc = cm_buf_appendf(&line, "\",\"level\":\"%s\"", level_name(level));
        if (rc == 0)
            rc = json_field_str(&line, ",\"msg\":", msg.data ? msg.data : "", msg.len);
        if (rc == 0)
            rc = cm_buf_append(&line, "}\n", 2);
    }
    if (rc == 0) {
        /* One write(2) per line, so lines from threads and processes sharing stderr do
         * not interleave (atomic up to PIPE_BUF on a pipe, always with O_APPEND). */
        (void)write_all(STDERR_FILENO, line.data, line.len);
    } else {
        static const char oom[] = "{\"level\":\"error\",\"msg\":\"log: out of memory\"}\n";
        (void)write_all(STDERR_FILENO, oom, sizeof oom - 1);
    }
    cm_buf_free(&msg);
    cm_buf_free(&line);
}

/* ------------------------------------------------------------------------------------ */
/* The sink and its writer thread                                                       */
/* ------------------------------------------------------------------------------------ */

typedef struct batch {
    struct batch *next; /* queue or spare-list link */
    cm_buf_t buf;       /* whole JSON lines, each ending in '\n' */
    uint64_t lines;     /* lines in buf, counted so drops can be reported in lines */
} batch_t;

struct cm_log {
    bool off;             /* target "off": no fd, no thread */
    int fd;               /* target; -1 when off */
    bool own_fd;          /* opened here, closed by cm_log_close */
    char *path;           /* the file target, for cm_log_reopen; NULL for stderr/off */
    pthread_t thread;     /* the writer */
    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t cv;    /* signalled when a batch is queued or stop is set */
    batch_t *head, *tail; /* queued batches, oldest first */
    size_t queued;        /* bytes in the queue */
    batch_t *spare;       /* written batches for reuse */
    int nspare;           /* length of spare */
    bool stop;            /* cm_log_close called: drain and exit */
    uint64_t dropped;     /* lines dropped because the queue was full */
    uint64_t failed;      /* lines lost to write errors */
    int write_err;        /* first write error (-errno), reported at close */
    /* set by cm_log_configure before any stream writes, read-only afterwards */
    bool text;       /* text lines instead of JSON */
    bool probes;     /* write health probes too */
    cm_buf_t origin; /* JSON: ,"service":..,"instance":..  text: " users 127.0.0.1:7001" */
};

struct cm_log_stream {
    cm_log_t *log; /* borrowed; outlives the stream */
    batch_t *cur;  /* the batch being filled; NULL when off */
    ts_cache_t tc; /* per stream, so no lock around the cached second */
};

static void batch_free(batch_t *b)
{
    if (b) {
        cm_buf_free(&b->buf);
        free(b);
    }
}

/* Puts a written batch on the spare list, or frees it. Called with mu held. */
static void recycle_locked(cm_log_t *log, batch_t *b)
{
    if (log->nspare >= SPARE_MAX) {
        batch_free(b);
        return;
    }
    cm_buf_reset(&b->buf);
    cm_buf_shrink(&b->buf, 2 * BATCH_BYTES); /* a huge line must not pin its memory */
    b->lines = 0;
    b->next = log->spare;
    log->spare = b;
    log->nspare++;
}

static void *writer_main(void *arg)
{
    cm_log_t *log = arg;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (!log->head && !log->stop)
            pthread_cond_wait(&log->cv, &log->mu);
        if (!log->head)
            break; /* stop set and nothing left */
        batch_t *list = log->head;
        log->head = log->tail = NULL;
        pthread_mutex_unlock(&log->mu);

        /* Write without the lock: streams keep handing over while the disk is slow. */
        size_t bytes = 0;
        uint64_t failed = 0;
        int err = 0;
        for (batch_t *b = list; b; b = b->next) {
            bytes += b->buf.len;
            int rc = write_all(log->fd, b->buf.data, b->buf.len);
            if (rc < 0) {
                failed += b->lines;
                if (!err)
                    err = rc;
            }
        }

        pthread_mutex_lock(&log->mu);
        log->queued -= bytes;
        log->failed += failed;
        if (err && !log->write_err)
            log->write_err = err;
        while (list) {
            batch_t *next = list->next;
            recycle_locked(log, list);
            list = next;
        }
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

int cm_log_configure(cm_log_t *log, const cm_log_conf_t *conf)
{
    cm_buf_t o = CM_BUF_INIT;
    bool text = want_text(conf->format, log->fd);
    int rc = 0;
    const char *svc = conf->service, *inst = conf->instance;
    if (text) {
        if (svc)
            rc = cm_buf_append(&o, " ", 1) < 0 || cm_json_escape(&o, svc, strlen(svc)) < 0;
        if (!rc && inst)
            rc = cm_buf_append(&o, " ", 1) < 0 || cm_json_escape(&o, inst, strlen(inst)) < 0;
    } else {
        if (svc)
            rc = json_field_str(&o, ",\"service\":", svc, strlen(svc)) < 0;
        if (!rc && inst)
            rc = json_field_str(&o, ",\"instance\":", inst, strlen(inst)) < 0;
    }
    if (rc) {
        cm_buf_free(&o);
        return -ENOMEM;
    }
    cm_buf_free(&log->origin);
    log->origin = o;
    log->text = text;
    log->probes = conf->probes != 0;
    return 0;
}

int cm_log_open(const char *target, cm_log_t **out)
{
    if (!target || !*target)
        return -EINVAL;
    cm_log_t *log = calloc(1, sizeof *log);
    if (!log)
        return -ENOMEM;
    log->fd = -1;
    log->probes = true;
    if (strcmp(target, "off") == 0) {
        log->off = true;
        *out = log;
        return 0;
    }
    int rc;
    if (strcmp(target, "stderr") == 0) {
        log->fd = STDERR_FILENO;
    } else {
        log->fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (log->fd < 0) {
            rc = -errno;
            goto fail;
        }
        log->own_fd = true;
        if (!(log->path = strdup(target))) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, NULL);
    rc = -pthread_create(&log->thread, NULL, writer_main, log);
    if (rc < 0) {
        pthread_cond_destroy(&log->cv);
        pthread_mutex_destroy(&log->mu);
        goto fail;
    }
    *out = log;
    return 0;
fail:
    if (log->own_fd)
        close(log->fd);
    free(log->path);
    free(log);
    return rc;
}

int cm_log_reopen(cm_log_t *log)
{
    if (!log || !log->path)
        return 1;
    int fd = open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    /* dup3 swaps the file under the same descriptor number in one step, so the writer
     * thread (which uses log->fd without the lock) never sees a closed or reused fd: a
     * write under way finishes on the old file, the next one goes to the new file. */
    int rc = dup3(fd, log->fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void cm_log_close(cm_log_t *log)
{
    if (!log)
        return;
    if (log->off) {
        cm_buf_free(&log->origin);
        free(log);
        return;
    }
    pthread_mutex_lock(&log->mu);
    log->stop = true;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->thread, NULL);

    /* The writer has exited: no lock needed from here on. */
    if (log->dropped)
        cm_log_msg(CM_LOG_WARN,
                   "access log: dropped %llu lines because the target could not keep up",
                   (unsigned long long)log->dropped);
    if (log->write_err)
        cm_log_msg(CM_LOG_ERROR, "access log: lost %llu lines to write errors, first: %s",
                   (unsigned long long)log->failed, strerror(-log->write_err));
    while (log->spare) {
        batch_t *next = log->spare->next;
        batch_free(log->spare);
        log->spare = next;
    }
    pthread_cond_destroy(&log->cv);
    pthread_mutex_destroy(&log->mu);
    if (log->own_fd)
        close(log->fd);
    cm_buf_free(&log->origin);
    free(log->path);
    free(log);
}

/* ------------------------------------------------------------------------------------ */
/* Streams                                                                              */
/* ------------------------------------------------------------------------------------ */

static batch_t *batch_new(void)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    /* Room for a full batch plus one line, so filling it never reallocates. */
    if (cm_buf_reserve(&b->buf, BATCH_BYTES + 1024) < 0) {
        free(b);
        return NULL;
    }
    return b;
}

int cm_log_stream_new(cm_log_t *log, cm_log_stream_t **out)
{
    cm_log_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->log = log;
    s->tc.sec = -1;
    if (!log->off) {
        s->cur = batch_new();
        if (!s->cur) {
            free(s);
            return -ENOMEM;
        }
    }
    *out = s;
    return 0;
}

/* Hands s->cur to the writer and takes a spare (or new) batch in its place. One lock
 * round trip per batch. When the queue is over its bound the batch is dropped and
 * counted, and the stream keeps its memory. */
static void hand_over(cm_log_stream_t *s)
{
    cm_log_t *log = s->log;
    batch_t *b = s->cur;
    if (!b || b->buf.len == 0)
        return;
    pthread_mutex_lock(&log->mu);
    if (log->queued + b->buf.len > QUEUE_MAX_BYTES) {
        log->dropped += b->lines;
        pthread_mutex_unlock(&log->mu);
        cm_buf_reset(&b->buf);
        b->lines = 0;
        return;
    }
    b->next = NULL;
    if (log->tail)
        log->tail->next = b;
    else
        log->head = b;
    log->tail = b;
    log->queued += b->buf.len;
    batch_t *next = log->spare;
    if (next) {
        log->spare = next->next;
        log->nspare--;
    }
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    /* A spare was shrunk to at most 2 * BATCH_BYTES; top it up outside the lock. */
    if (next && cm_buf_reserve(&next->buf, BATCH_BYTES + 1024) < 0) {
        batch_free(next);
        next = NULL;
    }
    /* Without memory for a new batch the stream drops lines (cur == NULL) until a later
     * flush finds memory again; see cm_log_access. */
    s->cur = next ? next : batch_new();
}

void cm_log_stream_flush(cm_log_stream_t *s)
{
    if (s && !s->log->off)
        hand_over(s);
}

void cm_log_stream_free(cm_log_stream_t *s)
{
    if (!s)
        return;
    cm_log_stream_flush(s);
    batch_free(s->cur);
    free(s);
}

int cm_log_stream_on(const cm_log_stream_t *s)
{
    return s && !s->log->off;
}

/* nginx's rule: the answer's class says how much attention the line deserves. */
static cm_log_level_t level_of(int status)
{
    return status >= 500 ? CM_LOG_ERROR : status >= 400 ? CM_LOG_WARN : CM_LOG_INFO;
}

/* GET or HEAD of /healthz or /readyz (any query): a load balancer's probe, once a
 * second per checker, which would drown the lines people read the log for. */
static bool is_probe(const cm_access_t *rec)
{
    if (!rec->method || !rec->path ||
        (strcmp(rec->method, "GET") != 0 && strcmp(rec->method, "HEAD") != 0))
        return false;
    size_t n = 0;
    while (n < rec->path_len && rec->path[n] != '?')
        n++;
    return (n == 8 && memcmp(rec->path, "/healthz", 8) == 0) ||
           (n == 7 && memcmp(rec->path, "/readyz", 7) == 0);
}

static int format_json(cm_buf_t *b, cm_log_stream_t *s, const cm_access_t *rec)
{
    int rc = cm_buf_append(b, "{\"ts\":\"", 7);
    if (rc == 0)
        rc = append_ts(b, &s->tc);
    if (rc == 0)
        rc = cm_buf_append_str(b, "\",\"level\":\"");
    if (rc == 0)
        rc = cm_buf_append_str(b, level_name(level_of(rec->status)));
    if (rc == 0)
        rc = cm_buf_append(b, "\"", 1);
    if (rc == 0 && s->log->origin.len)
        rc = cm_buf_append(b, s->log->origin.data, s->log->origin.len);
    if (rc == 0)
        rc = json_field_str(b, ",\"request_id\":", rec->request_id,
                            rec->request_id ? strlen(rec->request_id) : 0);
    if (rc == 0)
        rc = json_field_str(b, ",\"method\":", rec->method, rec->method ? strlen(rec->method) : 0);
    if (rc == 0)
        rc = json_field_str(b, ",\"path\":", rec->path, rec->path_len);
    if (rc == 0)
        rc = cm_buf_appendf(b, ",\"status\":%d,\"duration_us\":%llu,\"bytes\":%llu", rec->status,
                            (unsigned long long)rec->duration_us, (unsigned long long)rec->bytes);
    if (rc == 0 && rec->extra &&
        rec->extra_len) /* the caller's members, verbatim (gateway: upstream) */
        rc = cm_buf_append(b, rec->extra, rec->extra_len);
    if (rc == 0)
        rc = cm_buf_append(b, "}\n", 2);
    return rc;
}

/* TS LEVEL SERVICE INSTANCE METHOD PATH STATUS DURATION BYTES id=REQUEST_ID [extra]:
 * the columns a person scans, in the order of nginx's combined format; extra members
 * follow as the JSON they are. */
static int format_text(cm_buf_t *b, cm_log_stream_t *s, const cm_access_t *rec)
{
    int rc = append_ts(b, &s->tc);
    if (rc == 0)
        rc = cm_buf_appendf(b, " %s", level_text(level_of(rec->status)));
    if (rc == 0 && s->log->origin.len)
        rc = cm_buf_append(b, s->log->origin.data, s->log->origin.len);
    if (rc == 0)
        rc = cm_buf_append(b, " ", 1);
    if (rc == 0)
        rc = rec->method ? cm_json_escape(b, rec->method, strlen(rec->method))
                         : cm_buf_append(b, "-", 1);
    if (rc == 0)
        rc = cm_buf_append(b, " ", 1);
    if (rc == 0)
        rc = rec->path ? cm_json_escape(b, rec->path, rec->path_len) : cm_buf_append(b, "-", 1);
    if (rc == 0)
        rc = cm_buf_appendf(b, " %d %llu.%03llums %lluB id=", rec->status,
                            (unsigned long long)(rec->duration_us / 1000),
                            (unsigned long long)(rec->duration_us % 1000),
                            (unsigned long long)rec->bytes);
    if (rc == 0)
        rc = rec->request_id ? cm_json_escape(b, rec->request_id, strlen(rec->request_id))
                             : cm_buf_append(b, "-", 1);
    if (rc == 0 && rec->extra && rec->extra_len > 1) { /* ",..." without its comma */
        rc = cm_buf_append(b, " ", 1);
        if (rc == 0)
            rc = cm_buf_append(b, rec->extra + 1, rec->extra_len - 1);
    }
    if (rc == 0)
        rc = cm_buf_append(b, "\n", 1);
    return rc;
}

void cm_log_access(cm_log_stream_t *s, const cm_access_t *rec)
{
    if (!s || s->log->off)
        return;
    if (!s->log->probes && is_probe(rec))
        return;
    if (!s->cur) {
        s->cur = batch_new();
        if (!s->cur) {
            pthread_mutex_lock(&s->log->mu);
            s->log->dropped++;
            pthread_mutex_unlock(&s->log->mu);
            return;
        }
    }
    cm_buf_t *b = &s->cur->buf;
    size_t start = b->len;
    int rc = s->log->text ? format_text(b, s, rec) : format_json(b, s, rec);
    if (rc < 0) {
        /* Out of memory mid-line: take the partial line back so the batch stays whole
         * lines, and count the loss like a drop. */
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
        pthread_mutex_lock(&s->log->mu);
        s->log->dropped++;
        pthread_mutex_unlock(&s->log->mu);
        return;
    }
    s->cur->lines++;
    if (b->len >= BATCH_BYTES)
        hand_over(s);
}
