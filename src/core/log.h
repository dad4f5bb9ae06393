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
/* Formats one JSON line: ts, level, request_id, method, path, status, duration_us, bytes.
 * A NULL request_id, method or path is written as null. Control bytes, quotes and
 * backslashes are escaped; well-formed UTF-8 passes through; any other byte is written
 * as \u00XX. Hands the batch over by itself once it passes 64 KiB. NULL s is a no-op. */
void cm_log_access(cm_log_stream_t *s, const cm_access_t *rec);
/* False when cm_log_access() drops everything (log "off", NULL s). */
int cm_log_stream_on(const cm_log_stream_t *s);
/* Hands the current batch to the writer thread; the server calls it every 100 ms.
 * Never blocks on I/O: takes the sink's mutex once. NULL is a no-op. */
void cm_log_stream_flush(cm_log_stream_t *s);

/* A process message as one JSON line on stderr: {"ts","level","msg",...}.
 * fmt's output is the value of "msg", escaped. Thread-safe. */
void cm_log_msg(cm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
