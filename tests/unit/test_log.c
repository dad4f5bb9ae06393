/* tests/unit/test_log.c: the access log sink (file target, "off", escaping, open errors)
 * and process messages. Each access line is parsed back with jansson. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <jansson.h>

#include "core/log.h"

/* Lines per thread: enough to pass 64 KiB several times, so both the automatic hand-over
 * and the explicit flush are exercised. */
#define LINES_PER_THREAD 3000

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/cmesh-log-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    (void)system(cmd);
}

/* Reads the whole file into a malloc'd NUL-terminated string. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    char *data = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            data = realloc(data, cap);
            cr_assert_not_null(data);
        }
        size_t got = fread(data + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

typedef struct writer_arg {
    cm_log_t *log;
    int id;
} writer_arg_t;

static void *writer_thread(void *p)
{
    writer_arg_t *a = p;
    cm_log_stream_t *s;
    cr_assert_eq(cm_log_stream_new(a->log, &s), 0);
    char rid[32];
    char path[64];
    for (int i = 0; i < LINES_PER_THREAD; i++) {
        snprintf(rid, sizeof rid, "t%d-%d", a->id, i);
        snprintf(path, sizeof path, "/users/%d?x=%d", i, a->id);
        cm_access_t rec = {.request_id = rid,
                           .method = "GET",
                           .path = path,
                           .path_len = strlen(path),
                           .status = 200 + a->id,
                           .duration_us = (uint64_t)i,
                           .bytes = 100 + (uint64_t)i};
        cm_log_access(s, &rec);
        if (i % 500 == 0)
            cm_log_stream_flush(s);
    }
    cm_log_stream_free(s);
    return NULL;
}

Test(log, file_target_gets_every_line_from_two_streams, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char file[128];
    snprintf(file, sizeof file, "%s/access.log", tmpdir);
    cm_log_t *log;
    cr_assert_eq(cm_log_open(file, &log), 0);

    pthread_t th[2];
    writer_arg_t args[2] = {{log, 0}, {log, 1}};
    for (int t = 0; t < 2; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, writer_thread, &args[t]), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    cm_log_close(log);

    size_t len;
    char *data = slurp(file, &len);
    cr_assert_gt(len, 0);
    cr_assert_eq(data[len - 1], '\n', "file ends in a whole line");

    static char seen[2][LINES_PER_THREAD];
    memset(seen, 0, sizeof seen);
    int lines = 0;
    for (char *line = data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        *nl = '\0';
        json_error_t err;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        cr_assert_not_null(o, "line %d is not JSON (%s): %s", lines, err.text, line);
        cr_assert(json_is_object(o));

        const char *ts = json_string_value(json_object_get(o, "ts"));
        cr_assert_not_null(ts);
        int y, mo, d, h, mi, sec, ms;
        char z;
        cr_assert_eq(
            sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &sec, &ms, &z), 8,
            "ts %s", ts);
        cr_assert_eq(strlen(ts), 24, "ts %s", ts);
        cr_assert_eq(z, 'Z');
        cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "info");
        cr_assert_str_eq(json_string_value(json_object_get(o, "method")), "GET");

        int tid, i;
        const char *rid = json_string_value(json_object_get(o, "request_id"));
        cr_assert_not_null(rid);
        cr_assert_eq(sscanf(rid, "t%d-%d", &tid, &i), 2, "request_id %s", rid);
        cr_assert(tid == 0 || tid == 1);
        cr_assert(i >= 0 && i < LINES_PER_THREAD);
        cr_assert_eq(seen[tid][i], 0, "line %s written twice", rid);
        seen[tid][i] = 1;

        char want[64];
        snprintf(want, sizeof want, "/users/%d?x=%d", i, tid);
        cr_assert_str_eq(json_string_value(json_object_get(o, "path")), want);
        cr_assert_eq(json_integer_value(json_object_get(o, "status")), 200 + tid);
        cr_assert_eq(json_integer_value(json_object_get(o, "duration_us")), i);
        cr_assert_eq(json_integer_value(json_object_get(o, "bytes")), 100 + i);
        cr_assert_eq(json_object_size(o), 8, "exactly the 8 fields: %s", line);
        json_decref(o);
        lines++;
    }
    cr_assert_eq(lines, 2 * LINES_PER_THREAD);
    free(data);
}

Test(log, off_target_writes_nothing, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cr_redirect_stderr();
    char cwd[4096];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(tmpdir), 0);

    cm_log_t *log;
    cr_assert_eq(cm_log_open("off", &log), 0);
    cm_log_stream_t *s;
    cr_assert_eq(cm_log_stream_new(log, &s), 0);
    cm_access_t rec = {
        .request_id = "r1", .method = "GET", .path = "/", .path_len = 1, .status = 200};
    for (int i = 0; i < 10000; i++)
        cm_log_access(s, &rec);
    cm_log_stream_flush(s);
    cm_log_stream_free(s);
    cm_log_close(log);

    struct stat st;
    cr_assert_neq(stat("off", &st), 0, "no file named off was created");
    cr_assert_eq(chdir(cwd), 0);
    fflush(stderr);
    cr_assert_stderr_eq_str("");
}

Test(log, access_strings_are_json_escaped, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char file[128];
    snprintf(file, sizeof file, "%s/access.log", tmpdir);
    cm_log_t *log;
    cr_assert_eq(cm_log_open(file, &log), 0);
    cm_log_stream_t *s;
    cr_assert_eq(cm_log_stream_new(log, &s), 0);

    /* The path holds a quote, a backslash, control bytes, DEL, well-formed UTF-8 (é) and
     * a stray 0xff byte, with an embedded NUL to show path_len is honoured. */
    static const char path[] = "/a\"b\\c\n\t\x01\x7f\xc3\xa9\xff\0z";
    cm_access_t rec = {.request_id = "id\"\x1f",
                       .method = NULL,
                       .path = path,
                       .path_len = sizeof path - 1,
                       .status = 404};
    cm_log_access(s, &rec);
    cm_log_stream_free(s);
    cm_log_close(log);

    size_t len;
    char *data = slurp(file, &len);
    cr_assert(strstr(data, "\\u0001") != NULL, "raw: %s", data);
    cr_assert(strstr(data, "\\u007f") != NULL, "raw: %s", data);
    cr_assert(strstr(data, "\\u00ff") != NULL, "raw: %s", data);
    cr_assert(strstr(data, "\\u0000") != NULL, "raw: %s", data);
    cr_assert(strstr(data, "\xc3\xa9") != NULL, "UTF-8 kept as is: %s", data);
    for (size_t i = 0; i + 1 < len; i++)
        cr_assert((unsigned char)data[i] >= 0x20, "no raw control byte at %zu", i);

    json_error_t err;
    json_t *o = json_loads(data, JSON_ALLOW_NUL, &err);
    cr_assert_not_null(o, "not JSON (%s): %s", err.text, data);
    cr_assert_str_eq(json_string_value(json_object_get(o, "request_id")), "id\"\x1f");
    cr_assert(json_is_null(json_object_get(o, "method")));
    json_t *p = json_object_get(o, "path");
    static const char want[] = "/a\"b\\c\n\t\x01\x7f\xc3\xa9\xc3\xbf\0z"; /* 0xff read as U+00FF */
    cr_assert_eq(json_string_length(p), sizeof want - 1);
    cr_assert_eq(memcmp(json_string_value(p), want, sizeof want - 1), 0);
    json_decref(o);
    free(data);
}

Test(log, open_unwritable_path_returns_negative_errno)
{
    cm_log_t *log = NULL;
    cr_assert_eq(cm_log_open("/nonexistent-cmesh-dir/access.log", &log), -ENOENT);
    cr_assert_null(log);
    cr_assert_eq(cm_log_open("/", &log), -EISDIR);
    cr_assert_eq(cm_log_open("", &log), -EINVAL);
    cr_assert_null(log);
}

Test(log, msg_is_one_escaped_json_line_on_stderr)
{
    cr_redirect_stderr();
    cm_log_msg(CM_LOG_WARN, "say \"%s\"\n", "hi\\there");
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_eq(line[strlen(line) - 1], '\n');
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    cr_assert_not_null(o, "not JSON (%s): %s", err.text, line);
    cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
    cr_assert_str_eq(json_string_value(json_object_get(o, "msg")), "say \"hi\\there\"\n");
    cr_assert_eq(strlen(json_string_value(json_object_get(o, "ts"))), 24);
    json_decref(o);
    cr_assert_null(fgets(line, sizeof line, f), "exactly one line");
}

Test(log, access_extra_members_are_appended_verbatim, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char file[128];
    snprintf(file, sizeof file, "%s/access.log", tmpdir);
    cm_log_t *log;
    cr_assert_eq(cm_log_open(file, &log), 0);
    cm_log_stream_t *s;
    cr_assert_eq(cm_log_stream_new(log, &s), 0);
    static const char extra[] = ",\"upstream\":\"127.0.0.1:9\",\"tries\":[1,2]";
    cm_access_t rec = {.request_id = "r1",
                       .method = "GET",
                       .path = "/",
                       .path_len = 1,
                       .status = 200,
                       .extra = extra,
                       .extra_len = sizeof extra - 1};
    cm_log_access(s, &rec);
    rec.extra = NULL;
    rec.extra_len = 0;
    cm_log_access(s, &rec);
    cm_log_stream_free(s);
    cm_log_close(log);

    size_t len;
    char *data = slurp(file, &len);
    char *second = strchr(data, '\n');
    cr_assert_not_null(second);
    *second++ = '\0';
    json_error_t err;
    json_t *o = json_loads(data, 0, &err);
    cr_assert_not_null(o, "not JSON (%s): %s", err.text, data);
    cr_assert_str_eq(json_string_value(json_object_get(o, "upstream")), "127.0.0.1:9");
    cr_assert_eq(json_array_size(json_object_get(o, "tries")), 2);
    cr_assert_eq(json_integer_value(json_object_get(o, "bytes")), 0);
    json_decref(o);
    o = json_loads(second, 0, &err);
    cr_assert_not_null(o, "not JSON (%s): %s", err.text, second);
    cr_assert_null(json_object_get(o, "upstream"));
    json_decref(o);
    free(data);
}
