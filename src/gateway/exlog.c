/* gateway/exlog.c: the access-log record of an exchange's attempts (exlog.h), written
 * without a DOM straight into the line's buffer. */
#include "gateway/exlog.h"

#include <string.h>

#include "core/json.h"

void gw_exlog_attempt(cm_buf_t *o, const char *upstream, int status, const char *error,
                      uint64_t duration_us, const char *retry)
{
    cm_buf_append_str(o, o->len ? ",{\"upstream\":" : "{\"upstream\":");
    cm_json_str(o, upstream, strlen(upstream));
    if (status) {
        cm_buf_append_str(o, ",\"status\":");
        cm_buf_append_u64(o, (unsigned long long)status);
    }
    if (error) {
        cm_buf_append_str(o, ",\"error\":");
        cm_json_str(o, error, strlen(error));
    }
    cm_buf_append_str(o, ",\"duration_us\":");
    cm_buf_append_u64(o, duration_us);
    if (retry) {
        cm_buf_append_str(o, ",\"retry\":");
        cm_json_str(o, retry, strlen(retry));
    }
    cm_buf_append(o, "}", 1);
}

void gw_exlog_attach(cm_buf_t *x, const char *route, const cm_buf_t *attempts, const char *refused)
{
    cm_buf_append_str(x, ",\"route\":");
    cm_json_str(x, route, strlen(route));
    cm_buf_append_str(x, ",\"attempts\":[");
    cm_buf_append(x, attempts->data ? attempts->data : "", attempts->len);
    cm_buf_append(x, "]", 1);
    if (refused) {
        cm_buf_append_str(x, ",\"retry_refused\":");
        cm_json_str(x, refused, strlen(refused));
    }
}
