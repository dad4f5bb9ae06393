/* service/outbox.c: the events table (see outbox.h). */
#include "service/outbox.h"

#include <errno.h>
#include <string.h>

#include "core/json.h"
#include "core/timefmt.h"

/* MAX(id) + 1 under the group's write lock: gap-free, in commit order (outbox.h). */
static const char sql_add[] = "INSERT INTO events(id, type, time, data)"
                              " VALUES((SELECT COALESCE(MAX(id), 0) + 1 FROM events), ?, ?, ?)";
static const char sql_page[] =
    "SELECT id, type, time, data FROM events WHERE id > ? ORDER BY id LIMIT ?";
static const char sql_head[] = "SELECT COALESCE(MAX(id), 0) FROM events";
/* the oldest max rows but the newest, of which those stamped before the cutoff go */
static const char sql_prune[] =
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < (SELECT MAX(id) FROM"
    " events) ORDER BY id LIMIT ?) AND time < ?";

int cm_outbox_add(cm_db_t *db, const char *type, const char *data, size_t len)
{
    char now[32];
    cm_time_rfc3339(now);
    cm_stmt_t *st = cm_db_stmt(db, sql_add);
    if (!st)
        return -EIO;
    cm_stmt_bind_text(st, 1, type, strlen(type));
    cm_stmt_bind_text(st, 2, now, CM_TIME_RFC3339_LEN);
    cm_stmt_bind_text(st, 3, data, len);
    /* nothing a client sends can make it fail (the id is taken under the write lock):
     * it rides with the unit's next round trip */
    return cm_stmt_defer(st);
}

int cm_outbox_page(cm_db_t *db, int64_t after, int limit, cm_buf_t *out, int64_t *last, int *n)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_page);
    *last = after;
    *n = 0;
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, after);
    cm_stmt_bind_int(st, 2, limit);
    cm_buf_append(out, "[", 1);
    int rc;
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW) {
        size_t tlen, ilen, dlen;
        const char *type = cm_stmt_text(st, 1, &tlen);
        const char *time = cm_stmt_text(st, 2, &ilen);
        const char *data = cm_stmt_text(st, 3, &dlen);
        *last = cm_stmt_int(st, 0);
        cm_buf_appendf(out, "%s{\"id\":%lld,\"type\":", *n ? "," : "", (long long)*last);
        cm_json_str(out, type ? type : "", tlen);
        cm_buf_append_str(out, ",\"time\":");
        cm_json_str(out, time ? time : "", ilen);
        cm_buf_append_str(out, ",\"data\":"); /* stored by us as JSON: written as it is */
        if (dlen)
            cm_buf_append(out, data, dlen);
        else
            cm_buf_append_str(out, "null");
        cm_buf_append(out, "}", 1);
        (*n)++;
    }
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    cm_buf_append(out, "]", 1);
    return 0;
}

int cm_outbox_head(cm_db_t *db, int64_t *head)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_head);
    if (!st)
        return -EIO;
    int rc = cm_stmt_step(st);
    *head = rc == CM_DB_ROW ? cm_stmt_int(st, 0) : 0;
    cm_stmt_reset(st);
    return rc < 0 ? rc : 0;
}

int cm_outbox_prune(cm_db_t *db, const char *cutoff, int max)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_prune);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, max);
    cm_stmt_bind_text(st, 2, cutoff, strlen(cutoff));
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    return rc < 0 ? rc : cm_db_changes(db);
}
