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

/* ------------------------------------------------------------------------- */
/* configured logs: level by status, service/instance, probes, text format    */

/* Opens a file log under tmpdir with conf, writes recs, closes, returns the file. */
static char *log_records(const cm_log_conf_t *conf, const cm_access_t *recs, int n)
{
    char file[128];
    snprintf(file, sizeof file, "%s/conf.log", tmpdir);
    unlink(file);
    cm_log_t *log;
    cr_assert_eq(cm_log_open(file, &log), 0);
    if (conf)
        cr_assert_eq(cm_log_configure(log, conf), 0);
    cm_log_stream_t *s;
    cr_assert_eq(cm_log_stream_new(log, &s), 0);
    for (int i = 0; i < n; i++)
        cm_log_access(s, &recs[i]);
    cm_log_stream_free(s);
    cm_log_close(log);
    size_t len;
    return slurp(file, &len);
}

static cm_access_t rec_of(const char *method, const char *path, int status)
{
    return (cm_access_t){.request_id = "rid-1",
                         .method = method,
                         .path = path,
                         .path_len = strlen(path),
                         .status = status,
                         .duration_us = 1234,
                         .bytes = 77};
}

Test(log, level_follows_the_status_5xx_error_4xx_warn_else_info, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
    static const int status[] = {200, 201, 304, 400, 404, 499, 500, 503};
    static const char *const want[] = {"info", "info", "info",  "warn",
                                       "warn", "warn", "error", "error"};
    enum { N = sizeof status / sizeof status[0] };
    cm_access_t recs[N];
    for (int i = 0; i < N; i++)
        recs[i] = rec_of("GET", "/users", status[i]);
    char *data = log_records(NULL, recs, N);
    int i = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n"), i++) {
        cr_assert_lt(i, N, "more lines than records");
        json_t *j = json_loads(line, 0, NULL);
        cr_assert_not_null(j, "not JSON: %s", line);
        cr_assert_str_eq(json_string_value(json_object_get(j, "level")), want[i], "status %d: %s",
                         status[i], line);
        json_decref(j);
    }
    cr_assert_eq(i, N);
    free(data);
}

Test(log, configured_lines_name_service_and_instance, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cm_log_conf_t conf = {.format = CM_LOG_FORMAT_JSON,
                          .probes = 1,
                          .service = "users",
                          .instance = "127.0.0.1:7001"};
    cm_access_t rec = rec_of("POST", "/users", 201);
    char *data = log_records(&conf, &rec, 1);
    json_t *j = json_loads(data, 0, NULL);
    cr_assert_not_null(j, "not JSON: %s", data);
    cr_assert_str_eq(json_string_value(json_object_get(j, "service")), "users");
    cr_assert_str_eq(json_string_value(json_object_get(j, "instance")), "127.0.0.1:7001");
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/users");
    json_decref(j);
    free(data);
}

Test(log, probes_are_skipped_unless_asked_for, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cm_access_t recs[] = {
        rec_of("GET", "/readyz", 200),   rec_of("GET", "/healthz", 200),
        rec_of("HEAD", "/readyz", 200),  rec_of("GET", "/readyz?verbose=1", 503),
        rec_of("GET", "/users", 200),    rec_of("POST", "/healthz", 405),
        rec_of("GET", "/healthzz", 404), rec_of("GET", "/readyz/x", 404),
    };
    enum { N = sizeof recs / sizeof recs[0] };
    cm_log_conf_t quiet = {.format = CM_LOG_FORMAT_JSON, .probes = 0};
    char *data = log_records(&quiet, recs, N);
    int lines = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_t *j = json_loads(line, 0, NULL);
        cr_assert_not_null(j, "not JSON: %s", line);
        const char *p = json_string_value(json_object_get(j, "path"));
        const char *m = json_string_value(json_object_get(j, "method"));
        cr_assert(strcmp(p, "/users") == 0 || strcmp(m, "POST") == 0 ||
                      strcmp(p, "/healthzz") == 0 || strcmp(p, "/readyz/x") == 0,
                  "a probe was logged: %s", line);
        json_decref(j);
    }
    cr_assert_eq(lines, 4, "%d lines: only the 4 non-probes expected", lines);
    free(data);

    cm_log_conf_t all = {.format = CM_LOG_FORMAT_JSON, .probes = 1};
    data = log_records(&all, recs, N);
    lines = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n"))
        lines++;
    cr_assert_eq(lines, N, "with probes on every request is logged: %d lines", lines);
    free(data);
}

Test(log, text_format_has_the_columns_and_escapes_hostile_bytes, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
    cm_log_conf_t conf = {.format = CM_LOG_FORMAT_TEXT,
                          .probes = 1,
                          .service = "orders",
                          .instance = "127.0.0.1:7002"};
    cm_access_t recs[] = {rec_of("GET", "/orders/9", 404), rec_of("GET", "/a\x1b[31mb", 500)};
    recs[0].extra = ",\"route\":\"r\"";
    recs[0].extra_len = strlen(recs[0].extra);
    char *data = log_records(&conf, recs, 2);
    char *second = strchr(data, '\n');
    cr_assert_not_null(second, "one line only: %s", data);
    *second++ = '\0';
    /* 2026-12-01T17:34:56.123Z WARN  orders 127.0.0.1:7002 GET /orders/9 404 1.234ms 77B ... */
    cr_assert_eq(strlen(data) > 25 && data[4] == '-' && data[10] == 'T' && data[23] == 'Z', 1,
                 "no timestamp first: %s", data);
    cr_assert_not_null(strstr(data,
                              " WARN  orders 127.0.0.1:7002 GET /orders/9 404 1.234ms 77B id=rid-1 "
                              "\"route\":\"r\""),
                       "%s", data);
    cr_assert_not_null(strstr(second, " ERROR orders 127.0.0.1:7002 GET /a\\u001b[31mb 500 "), "%s",
                       second);
    cr_assert_null(strchr(second, '\x1b'), "an escape byte reached the log: %s", second);
    free(data);
}

Test(log, auto_format_writes_json_to_a_file, .init = make_tmpdir, .fini = remove_tmpdir)
{
    cm_log_conf_t conf = {.format = CM_LOG_FORMAT_AUTO, .probes = 1};
    cm_access_t rec = rec_of("GET", "/users", 200);
    char *data = log_records(&conf, &rec, 1);
    json_t *j = json_loads(data, 0, NULL);
    cr_assert_not_null(j, "auto on a file is not JSON: %s", data);
    json_decref(j);
    free(data);
}

Test(log, text_process_message_is_one_plain_line, .init = cr_redirect_stderr)
{
    cm_log_set_format(CM_LOG_FORMAT_TEXT);
    cm_log_msg(CM_LOG_WARN, "users: slow %s", "disk");
    cm_log_set_format(CM_LOG_FORMAT_AUTO);
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char line[256] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_not_null(strstr(line, "Z WARN  users: slow disk\n"), "%s", line);
    cr_assert_eq(line[0] == '{', 0, "JSON, not text: %s", line);
}
