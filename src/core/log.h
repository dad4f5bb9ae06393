/* core/log.h: structured JSON logs on stderr, and the access log.
 * Process messages (start, errors) are written at once: they are rare.
 * Access lines go into a per-worker stream (no lock per request) whose batches a
 * writer thread writes to the target, so a slow disk or a full pipe never blocks a loop. */
#ifndef CMESH_CORE_LOG_H
#define CMESH_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_log cm_log_t;               /* opaque: the sink and its writer thread */
typedef struct cm_log_stream cm_log_stream_t; /* opaque: one worker's batch; one thread only */

typedef enum { CM_LOG_DEBUG, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR } cm_log_level_t;

/* How lines are written. AUTO: TEXT when the line goes to a terminal, else JSON, so a
 * person at a shell reads text and pipes, files and tests get one JSON object a line. */
typedef enum { CM_LOG_FORMAT_AUTO, CM_LOG_FORMAT_TEXT, CM_LOG_FORMAT_JSON } cm_log_format_t;

/* What a server tells its access log (cm_log_configure). Strings are copied. */
typedef struct cm_log_conf {
    cm_log_format_t format; /* AUTO decides on the target: a terminal gets TEXT */
    int probes;             /* 0: GET/HEAD /healthz and /readyz are not written */
    const char *service;    /* "users", or NULL: written as "service" on every line */
    const char *instance;   /* "127.0.0.1:7001" (the bound address), or NULL */
} cm_log_conf_t;

/* One request, as the server saw it. Strings are borrowed for the call only. */
typedef struct cm_access {
    const char *request_id;
    const char *method;
    const char *path; /* raw target as received, query included */
    size_t path_len;
    int status;
    uint64_t duration_us;
    uint64_t bytes;    /* response bytes written, head included */
    const char *extra; /* NULL, or raw JSON members appended as they are: ,"a":1,"b":[] */
    size_t extra_len;
} cm_access_t;

/* target: "off", "stderr" or a file path (opened for append, created 0644).
 * On success the caller owns *out; release with cm_log_close().
 * Returns 0, -EINVAL for an empty target, or the open(2) error. */
int cm_log_open(const char *target, cm_log_t **out);
/* Sets format, probe filtering and the service/instance every access line names.
 * Call before any stream writes (the server does, before its workers start); a log
 * that never had it written JSON with probes and without service/instance.
 * Returns 0, or -ENOMEM (the log keeps its previous settings). */
int cm_log_configure(cm_log_t *log, const cm_log_conf_t *conf);
/* Writes every batch handed over so far, stops the writer, then reports lines dropped
 * (writer more than 8 MiB behind) or lost to write errors as one process message each.
 * Free every stream of this log first. NULL is a no-op. */
void cm_log_close(cm_log_t *log);
/* SIGHUP after logrotate moved the file: opens the target path again (created 0644) and
 * writes every later batch there. Call from one thread at a time (the main thread).
 * Returns 0, 1 when the target is not a file (off, stderr, NULL log: nothing to do), or
 * the open(2)/dup3(2) error as -errno (the old file stays in use). */
int cm_log_reopen(cm_log_t *log);

/* log is borrowed and must outlive the stream. Caller owns *out; free with
 * cm_log_stream_free() (which hands over what is left; NULL is a no-op).
 * Returns 0 or -ENOMEM. With log "off", streams exist and drop everything. */
int cm_log_stream_new(cm_log_t *log, cm_log_stream_t **out);
void cm_log_stream_free(cm_log_stream_t *s);
/* Formats one line: ts, level (from the status: 5xx error, 4xx warn, else info, as
 * nginx does), service, instance, request_id, method, path, status, duration_us, bytes,
 * then extra. JSON: a NULL request_id, method or path is written as null. Both formats:
 * control bytes, quotes and backslashes are escaped; well-formed UTF-8 passes through;
 * any other byte is written as \u00XX (text too: a path never reaches a terminal raw).
 * Health probes are skipped unless conf.probes. Hands the batch over by itself once it
 * passes 64 KiB. NULL s is a no-op. */
void cm_log_access(cm_log_stream_t *s, const cm_access_t *rec);
/* False when cm_log_access() drops everything (log "off", NULL s). */
int cm_log_stream_on(const cm_log_stream_t *s);
/* Hands the current batch to the writer thread; the server calls it every 100 ms.
 * Never blocks on I/O: takes the sink's mutex once. NULL is a no-op. */
void cm_log_stream_flush(cm_log_stream_t *s);

/* A process message as one line on stderr: JSON {"ts","level","msg"}, or text
 * "TS LEVEL msg" (see cm_log_set_format). fmt's output is escaped. Thread-safe. */
/* The format of process messages, for the whole process (default AUTO: text when
 * stderr is a terminal). Set once at start, before the threads. */
void cm_log_set_format(cm_log_format_t format);
void cm_log_msg(cm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
