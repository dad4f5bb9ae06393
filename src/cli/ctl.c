/* cli/ctl.c: `cmesh status`, `cmesh scale`, `cmesh logs`, and `cmesh token`'s lookup of
 * the running system's key (see ctl.h). status and scale talk to the control API with
 * libcurl (blocking: a CLI has nothing else to do); logs reads the state directory's log
 * files, so it works also when the control plane is gone. */
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "control/spec.h"
#include "control/state.h"
#include "control/up.h"
#include "core/buf.h"
#include "core/flags.h"
#include "gateway/auth.h"

/* ---------------------------------------------------------------------------------- */
/* The control API                                                                    */
/* ---------------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    cm_buf_append(arg, p, sz * n);
    return sz * n;
}

/* One request to the control API. Returns the HTTP status, or -1 when it did not answer
 * (message printed). *body is NUL-terminated; caller frees with cm_buf_free. */
static int api(const cm_spec_t *s, const char *cmd, const char *method, const char *path,
               const char *payload, long timeout_s, cm_buf_t *body)
{
    char url[600];
    snprintf(url, sizeof url, "http://%s:%d%s", s->control_host, s->control_port, path);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (payload) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cm_buf_append(body, "", 1);
    body->len--;
    if (rc != CURLE_OK) {
        fprintf(stderr,
                "cmesh %s: the control plane does not answer on %s:%d (%s); is the system up? "
                "(cmesh up)\n",
                cmd, s->control_host, s->control_port, curl_easy_strerror(rc));
        return -1;
    }
    return (int)status;
}

/* -h or --help anywhere among the arguments: prints help and says so. */
static int asks_help(int argc, char **argv, const char *help)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 1;
        }
    return 0;
}

static int load_spec(const char *cmd, int *argc, char **argv, cm_spec_t **s)
{
    const char *config = cm_up_config_arg(argc, argv);
    char err[2048];
    if (cm_spec_load(config, s, err, sizeof err) < 0) {
        fprintf(stderr, "cmesh %s: %s\n", cmd, err);
        return -1;
    }
    return 0;
}

static const char *api_error(const cm_buf_t *b)
{
    static char msg[512];
    json_t *o = json_loadb((const char *)b->data, b->len, 0, NULL);
    const char *e = json_string_value(json_object_get(o, "error"));
    snprintf(msg, sizeof msg, "%s", e ? e : (const char *)b->data);
    json_decref(o);
    return msg;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh status                                                                       */
/* ---------------------------------------------------------------------------------- */

static void human_age(int64_t started_ms, char *out, size_t cap)
{
    if (started_ms <= 0) {
        snprintf(out, cap, "-");
        return;
    }
    int64_t s = (int64_t)time(NULL) - started_ms / 1000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, cap, "%llds", (long long)s);
    else if (s < 7200)
        snprintf(out, cap, "%lldm", (long long)(s / 60));
    else if (s < 172800)
        snprintf(out, cap, "%lldh", (long long)(s / 3600));
    else
        snprintf(out, cap, "%lldd", (long long)(s / 86400));
}

static void human_bytes(double b, char *out, size_t cap)
{
    if (b <= 0)
        snprintf(out, cap, "-");
    else if (b < 1024 * 1024)
        snprintf(out, cap, "%.0fKi", b / 1024);
    else
        snprintf(out, cap, "%.0fMi", b / (1024 * 1024));
}

static void last_line(const char *tail, char *out, size_t cap)
{
    out[0] = '\0';
    if (!tail)
        return;
    size_t n = strlen(tail);
    while (n && tail[n - 1] == '\n')
        n--;
    size_t start = n;
    while (start && tail[start - 1] != '\n')
        start--;
    snprintf(out, cap, "%.*s", (int)(n - start > 120 ? 120 : n - start), tail + start);
}

/* One line under the table when a service autoscales: which are auto, which pinned. */
static void print_scaling(json_t *st)
{
    json_t *svcs = json_object_get(st, "services"), *sv;
    size_t i;
    int any = 0;
    json_array_foreach(svcs, i, sv)
    {
        const char *mode = json_string_value(json_object_get(sv, "scaling"));
        if (!mode || strcmp(mode, "fixed") == 0)
            continue;
        printf("%s%s %s",
               any ? ", " : "\nscaling: ", json_string_value(json_object_get(sv, "name")), mode);
        if (strcmp(mode, "pinned") == 0)
            printf(" at %d", (int)json_integer_value(json_object_get(sv, "pinned")));
        printf(" (desired %d)", (int)json_integer_value(json_object_get(sv, "desired")));
        any = 1;
    }
    if (any)
        printf("\n");
}

/* kubectl get's look: a header, one row per instance, columns padded to their width. */
static void print_table(json_t *st, int wide)
{
    static const char *const cols[] = {"SERVICE", "INSTANCE", "PID", "ADDRESS",   "STATE",
                                       "READY",   "RESTARTS", "AGE", "RPS",       "P99",
                                       "CPU",     "RSS",      "DEF", "LAST-EXIT", "LAST-LOG"};
    int ncols = wide ? 15 : 13;
    enum { MAXROWS = 512 };
    static char cell[MAXROWS][15][128];
    int rows = 0;
    for (int c = 0; c < 15; c++)
        snprintf(cell[0][c], sizeof cell[0][c], "%s", cols[c]);
    rows = 1;
    json_t *svcs = json_object_get(st, "services"), *sv;
    size_t i;
    json_array_foreach(svcs, i, sv)
    {
        const char *name = json_string_value(json_object_get(sv, "name"));
        json_t *insts = json_object_get(sv, "instances"), *in;
        size_t j;
        json_array_foreach(insts, j, in)
        {
            if (rows >= MAXROWS)
                break;
            char(*r)[128] = cell[rows++];
            int pid = (int)json_integer_value(json_object_get(in, "pid"));
            json_t *le = json_object_get(in, "last_exit");
            snprintf(r[0], 128, "%s", name ? name : "?");
            const char *id = json_string_value(json_object_get(in, "id"));
            snprintf(r[1], 128, "%s", id ? id : "?");
            snprintf(r[2], 128, pid > 0 ? "%d" : "-", pid);
            snprintf(r[3], 128, "%s:%d", json_string_value(json_object_get(in, "address")),
                     (int)json_integer_value(json_object_get(in, "port")));
            snprintf(r[4], 128, "%s", json_string_value(json_object_get(in, "state")));
            snprintf(r[5], 128, "%s", json_is_true(json_object_get(in, "ready")) ? "1/1" : "0/1");
            snprintf(r[6], 128, "%d", (int)json_integer_value(json_object_get(in, "restarts")));
            human_age(json_integer_value(json_object_get(in, "started_ms")), r[7], 128);
            /* from the instance's own /metrics, scraped by the control plane every 2 s */
            json_t *rps = json_object_get(in, "rps"), *p99 = json_object_get(in, "p99_ms");
            if (rps)
                snprintf(r[8], 128, "%.0f", json_number_value(rps));
            else
                snprintf(r[8], 128, "-");
            if (p99)
                snprintf(r[9], 128, "%.1fms", json_number_value(p99));
            else
                snprintf(r[9], 128, "-");
            json_t *cpu = json_object_get(in, "cpu_seconds");
            if (cpu)
                snprintf(r[10], 128, "%.1fs", json_number_value(cpu));
            else
                snprintf(r[10], 128, "-");
            human_bytes(json_number_value(json_object_get(in, "rss_bytes")), r[11], 128);
            /* the definition it runs (defn.h), marked when it is not the service's now */
            const char *def = json_string_value(json_object_get(in, "definition"));
            const char *want = json_string_value(json_object_get(sv, "definition"));
            snprintf(r[12], 128, "%.8s%s", def ? def : "-",
                     def && want && strcmp(def, want) != 0 ? "*" : "");
            if (json_is_integer(le))
                snprintf(r[13], 128, "%d", (int)json_integer_value(le));
            else
                snprintf(r[13], 128, "-");
            last_line(json_string_value(json_object_get(in, "log_tail")), r[14], 128);
        }
    }
    int width[15] = {0};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ncols; c++)
            if ((int)strlen(cell[r][c]) > width[c])
                width[c] = (int)strlen(cell[r][c]);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < ncols; c++)
            printf(c + 1 < ncols ? "%-*s   " : "%-*s", c + 1 < ncols ? width[c] : 0, cell[r][c]);
        printf("\n");
    }
    print_scaling(st);
    /* the last rollout of each service, when one ran */
    json_array_foreach(svcs, i, sv)
    {
        json_t *ro = json_object_get(sv, "rollout");
        const char *st = json_string_value(json_object_get(ro, "state"));
        const char *why = json_string_value(json_object_get(ro, "reason"));
        if (st)
            printf("rollout %s: %s%s%s (%d of %d replaced)\n",
                   json_string_value(json_object_get(sv, "name")), st, why ? ": " : "",
                   why ? why : "", (int)json_integer_value(json_object_get(ro, "replaced")),
                   (int)json_integer_value(json_object_get(ro, "total")));
    }
    fflush(stdout);
}

static const char status_help[] =
    "usage: cmesh status [--config FILE] [-o wide|json] [--watch]\n"
    "\n"
    "Shows every instance of the running system: a table like kubectl get (SERVICE,\n"
    "INSTANCE, PID, ADDRESS, STATE, READY, RESTARTS, AGE, RPS, P99, CPU, RSS, DEF: the\n"
    "definition it runs, * when it is not the service's current one), then the last\n"
    "rollout of each service (running, done, or failed and why).\n"
    "\n"
    "  --config FILE   the system's spec (default cmesh.yaml): where the control API is\n"
    "  -o wide         adds LAST-EXIT and the last log line of an instance not ready\n"
    "  -o json         the control API's /v1/status as it is\n"
    "  -w, --watch     prints again on every change (a blocking query: no polling)\n"
    "\n"
    "Exit status: 0 shown, 1 the control plane does not answer, 2 bad flags or spec.\n";

int cm_ctl_status_main(int argc, char **argv)
{
    int wide = 0, js = 0, watch = 0;
    cm_spec_t *s;
    if (asks_help(argc, argv, status_help))
        return 0;
    if (load_spec("status", &argc, argv, &s) < 0)
        return 2;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "wide") == 0)
                wide = 1;
            else if (strcmp(argv[i], "json") == 0)
                js = 1;
            else {
                fprintf(stderr, "cmesh status: -o '%s' is not wide or json\n", argv[i]);
                cm_spec_free(s);
                return 2;
            }
        } else if (strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--watch") == 0)
            watch = 1;
        else {
            fprintf(stderr, "cmesh status: unknown argument '%s'; see cmesh status --help\n",
                    argv[i]);
            cm_spec_free(s);
            return 2;
        }
    }
    unsigned long long index = 0;
    int rc = 0;
    for (;;) {
        cm_buf_t b = {0};
        int st = api(s, "status", "GET", "/v1/status", NULL, 10, &b);
        if (st != 200) {
            if (st > 0)
                fprintf(stderr, "cmesh status: the control API answered %d: %s\n", st,
                        api_error(&b));
            cm_buf_free(&b);
            rc = 1;
            break;
        }
        json_t *o = json_loadb((const char *)b.data, b.len, 0, NULL);
        if (js)
            printf("%s\n", (const char *)b.data);
        else if (o)
            print_table(o, wide);
        fflush(stdout);
        index = (unsigned long long)json_integer_value(json_object_get(o, "index"));
        json_decref(o);
        cm_buf_free(&b);
        if (!watch)
            break;
        /* block until anything changes (the registry's index passes ours) */
        char path[128];
        snprintf(path, sizeof path, "/v1/services?index=%llu&wait=5m", index);
        cm_buf_t w = {0};
        st = api(s, "status", "GET", path, NULL, 700, &w);
        cm_buf_free(&w);
        if (st != 200) {
            rc = 1;
            break;
        }
        if (!js)
            printf("\n");
    }
    cm_spec_free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh scale                                                                        */
/* ---------------------------------------------------------------------------------- */

static const char scale_help[] =
    "usage: cmesh scale [--config FILE] SERVICE N\n"
    "       cmesh scale [--config FILE] SERVICE auto\n"
    "       cmesh scale [--config FILE] SERVICE --explain [-o json]\n"
    "\n"
    "N (0..64) sets SERVICE's instance count: new instances start, extra ones leave\n"
    "routing and stop gracefully, highest number first. The count survives a restart of\n"
    "the control plane (not a down). A service with autoscale: in cmesh.yaml is pinned\n"
    "at N (the autoscaler only watches) until `auto` hands it back.\n"
    "--explain prints the autoscaler's last decision: its inputs (in-flight work L, ready\n"
    "and surge instances), the formula with its numbers, the result and the limit that\n"
    "applied; -o json prints the control API's answer as it is.\n"
    "Exit status: 0 done, 1 refused or no control plane, 2 bad arguments.\n";

static int scale_explain(const cm_spec_t *s, const char *svc, int js)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/services/%s/autoscale", svc);
    cm_buf_t b = {0};
    int st = api(s, "scale", "GET", path, NULL, 10, &b), rc = 0;
    if (st == 200 && js)
        printf("%s\n", (const char *)b.data);
    else if (st == 200) {
        json_t *o = json_loadb((const char *)b.data, b.len, 0, NULL);
        const char *t = json_string_value(json_object_get(o, "explain"));
        fputs(t ? t : (const char *)b.data, stdout);
        json_decref(o);
    } else {
        if (st > 0)
            fprintf(stderr, "cmesh scale: %s\n", api_error(&b));
        rc = 1;
    }
    cm_buf_free(&b);
    return rc;
}

int cm_ctl_scale_main(int argc, char **argv)
{
    if (asks_help(argc, argv, scale_help))
        return 0;
    cm_spec_t *s;
    if (load_spec("scale", &argc, argv, &s) < 0)
        return 2;
    long n = -1;
    int explain = argc >= 3 && strcmp(argv[2], "--explain") == 0;
    int js = explain && argc == 5 && strcmp(argv[3], "-o") == 0 && strcmp(argv[4], "json") == 0;
    int is_auto = argc == 3 && strcmp(argv[2], "auto") == 0;
    if (!(explain && (argc == 3 || js)) && !is_auto &&
        (argc != 3 || cm_parse_int(argv[2], 0, CM_SPEC_MAX_INST, &n) < 0)) {
        fprintf(stderr,
                "cmesh scale: give SERVICE N with N in 0..%d, SERVICE auto or SERVICE "
                "--explain; see cmesh scale --help\n",
                CM_SPEC_MAX_INST);
        cm_spec_free(s);
        return 2;
    }
    if (!cm_spec_service(s, argv[1])) {
        fprintf(stderr, "cmesh scale: %s has no service '%s'\n", s->path, argv[1]);
        cm_spec_free(s);
        return 2;
    }
    if (explain) {
        int rc = scale_explain(s, argv[1], js);
        cm_spec_free(s);
        return rc;
    }
    char path[256], body[64];
    snprintf(path, sizeof path, "/v1/services/%s/scale", argv[1]);
    if (is_auto)
        snprintf(body, sizeof body, "{\"auto\":true}");
    else
        snprintf(body, sizeof body, "{\"instances\":%ld}", n);
    cm_buf_t b = {0};
    int st = api(s, "scale", "PUT", path, body, 10, &b);
    int rc = 0;
    if (st == 200) {
        json_t *o = json_loadb((const char *)b.data, b.len, 0, NULL);
        const char *mode = json_string_value(json_object_get(o, "scaling"));
        if (is_auto)
            printf("%s handed back to the autoscaler (now %d instances)\n", argv[1],
                   (int)json_integer_value(json_object_get(o, "desired")));
        else if (mode && strcmp(mode, "pinned") == 0)
            printf("%s pinned at %ld (autoscaling off until `cmesh scale %s auto`)\n", argv[1], n,
                   argv[1]);
        else
            printf("%s scaled to %ld\n", argv[1], n);
        json_decref(o);
    } else {
        if (st > 0)
            fprintf(stderr, "cmesh scale: %s\n", api_error(&b));
        rc = 1;
    }
    cm_buf_free(&b);
    cm_spec_free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh rollout, cmesh reload                                                        */
/* ---------------------------------------------------------------------------------- */

static const char rollout_help[] =
    "usage: cmesh rollout [--config FILE] SERVICE [--no-wait]\n"
    "\n"
    "Replaces SERVICE's instances that do not run its current definition (its command,\n"
    "args, env, listen, probes, drain timeout and the binary on disk), or every one when\n"
    "none is stale: one extra instance first, then one old instance at a time, each\n"
    "leaving only once its replacement is ready and routed (max surge 1, max\n"
    "unavailable 0). A new version not ready within rollout_timeout stops the rollout;\n"
    "the old instances keep serving and cmesh status says why.\n"
    "\n"
    "  --no-wait   return once it started (default: wait for it, printing its steps)\n"
    "\n"
    "Exit status: 0 done, 1 failed, refused or no control plane, 2 bad arguments.\n";

/* The service's rollout in /v1/status (a new reference), or NULL. */
static json_t *rollout_of(json_t *st, const char *name)
{
    json_t *svcs = json_object_get(st, "services"), *sv;
    size_t i;
    json_array_foreach(svcs, i, sv)
    {
        const char *n = json_string_value(json_object_get(sv, "name"));
        if (n && strcmp(n, name) == 0)
            return json_incref(json_object_get(sv, "rollout"));
    }
    return NULL;
}

int cm_ctl_rollout_main(int argc, char **argv)
{
    if (asks_help(argc, argv, rollout_help))
        return 0;
    cm_spec_t *s;
    if (load_spec("rollout", &argc, argv, &s) < 0)
        return 2;
    const char *name = NULL;
    int wait = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--no-wait") == 0)
            wait = 0;
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "cmesh rollout: unknown argument '%s'; see cmesh rollout --help\n",
                    argv[i]);
            cm_spec_free(s);
            return 2;
        }
    if (!name) {
        fprintf(stderr, "cmesh rollout: name a SERVICE; see cmesh rollout --help\n");
        cm_spec_free(s);
        return 2;
    }
    char path[256];
    snprintf(path, sizeof path, "/v1/services/%s/rollout", name);
    cm_buf_t b = {0};
    int st = api(s, "rollout", "POST", path, "{}", 10, &b);
    if (st != 202) {
        if (st > 0)
            fprintf(stderr, "cmesh rollout: %s\n", api_error(&b));
        cm_buf_free(&b);
        cm_spec_free(s);
        return 1;
    }
    cm_buf_free(&b);
    printf("rollout of %s started\n", name);
    int rc = 0;
    /* the rollout's own bound (rollout_timeout per instance) ends it; the CLI follows */
    while (wait) {
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
        cm_buf_t w = {0};
        if (api(s, "rollout", "GET", "/v1/status", NULL, 10, &w) != 200) {
            cm_buf_free(&w);
            rc = 1;
            break;
        }
        json_t *o = json_loadb((const char *)w.data, w.len, 0, NULL);
        json_t *ro = rollout_of(o, name);
        const char *state = json_string_value(json_object_get(ro, "state"));
        const char *why = json_string_value(json_object_get(ro, "reason"));
        int done = state && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0);
        if (done) {
            printf("rollout of %s %s: %s\n", name, state, why ? why : "");
            rc = strcmp(state, "failed") == 0;
        }
        json_decref(ro);
        json_decref(o);
        cm_buf_free(&w);
        if (done || !state)
            break;
    }
    fflush(stdout);
    cm_spec_free(s);
    return rc;
}

static const char reload_help[] =
    "usage: cmesh reload [--config FILE]\n"
    "\n"
    "Tells the running control plane to re-read its cmesh.yaml (as SIGHUP to cmesh up)\n"
    "and apply the difference: services whose definition changed are rolled out, a\n"
    "changed instance count is scaled, new services start, removed ones stop, a changed\n"
    "gateway: section is reloaded by the gateway in place. A file with errors changes\n"
    "nothing: every error is printed as FILE:LINE. A changed control listen address or\n"
    "state dir is warned about and kept.\n"
    "Exit status: 0 applied, 1 refused or no control plane, 2 bad arguments.\n";

int cm_ctl_reload_main(int argc, char **argv)
{
    if (asks_help(argc, argv, reload_help))
        return 0;
    /* where the control plane is: the file it runs may be the one just broken, so only
     * its control: section has to read (the control plane reports the file's errors) */
    cm_spec_t *s;
    const char *config = cm_up_config_arg(&argc, argv);
    if (argc > 1) {
        fprintf(stderr, "cmesh reload: unknown argument '%s'; see cmesh reload --help\n", argv[1]);
        return 2;
    }
    char err[2048];
    if (cm_spec_load(config, &s, err, sizeof err) < 0) {
        /* a broken file: tell the user here, the running spec stays */
        fprintf(stderr, "cmesh reload: %s\ncmesh reload: nothing changed\n", err);
        return 1;
    }
    cm_buf_t b = {0};
    int st = api(s, "reload", "POST", "/v1/reload", "{}", 30, &b);
    int rc = st == 200 ? 0 : 1;
    json_t *o = json_loadb((const char *)b.data, b.len, 0, NULL);
    if (st == 200) {
        json_t *ch, *w, *changes = json_object_get(o, "changes");
        json_t *warnings = json_object_get(o, "warnings");
        size_t i;
        int n = 0;
        json_array_foreach(changes, i, ch)
        {
            printf("%s: %s\n", json_string_value(json_object_get(ch, "service")),
                   json_string_value(json_object_get(ch, "change")));
            n++;
        }
        if (strcmp(json_string_value(json_object_get(o, "gateway")) ?: "", "reloaded") == 0)
            printf("gateway: configuration reloaded in place\n"), n++;
        json_array_foreach(warnings, i, w)
        {
            fprintf(stderr, "cmesh reload: warning: %s\n", json_string_value(w));
        }
        if (!n)
            printf("nothing changed\n");
    } else if (st > 0)
        fprintf(stderr, "cmesh reload: %s\n", api_error(&b));
    json_decref(o);
    cm_buf_free(&b);
    cm_spec_free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh logs                                                                         */
/* ---------------------------------------------------------------------------------- */

/* The time of a log line: a JSON line's "ts", or a leading RFC 3339 stamp (the
 * supervisor's notes). Returns seconds since the epoch, or -1 when it has none. */
static long long line_time(const char *line)
{
    const char *p = strstr(line, "\"ts\":\"");
    p = p ? p + 6 : line;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(p, "%Y-%m-%dT%H:%M:%S", &tm);
    return end ? (long long)timegm(&tm) : -1;
}

typedef struct logf {
    char label[96];
    char path[4096];
    FILE *f;
    int keep; /* --since: the last line seen was recent enough */
} logf_t;

static void pump(logf_t *l, int prefix, long long since)
{
    char line[65536];
    while (fgets(line, sizeof line, l->f)) {
        if (since > 0) {
            long long t = line_time(line);
            if (t >= 0)
                l->keep = t >= since;
            if (!l->keep)
                continue;
        }
        if (prefix)
            printf("%s | ", l->label);
        fputs(line, stdout);
        if (line[strlen(line) - 1] != '\n')
            putchar('\n');
    }
    clearerr(l->f);
    fflush(stdout);
}

static const char logs_help[] =
    "usage: cmesh logs [--config FILE] SERVICE[/N] [-f] [--since DUR]\n"
    "\n"
    "Prints the output of SERVICE's instances (or of instance N only), from the state\n"
    "directory's log files (they outlive the control plane). Lines of several instances\n"
    "are prefixed with SERVICE/N.\n"
    "\n"
    "  -f, --follow   keeps printing what is written (also across a rotation)\n"
    "  --since DUR    only lines of the last DUR (10s, 5m, 1h)\n"
    "\n"
    "Exit status: 0, 1 no such log, 2 bad arguments.\n";

int cm_ctl_logs_main(int argc, char **argv)
{
    if (asks_help(argc, argv, logs_help))
        return 0;
    cm_spec_t *s;
    if (load_spec("logs", &argc, argv, &s) < 0)
        return 2;
    const char *target = NULL;
    int follow = 0;
    long long since = 0;
    for (int i = 1; i < argc; i++) {
        uint64_t ms;
        if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0)
            follow = 1;
        else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
            if (cm_parse_duration_ms(argv[++i], &ms) < 0) {
                fprintf(stderr, "cmesh logs: --since '%s' is not a duration like 5m\n", argv[i]);
                cm_spec_free(s);
                return 2;
            }
            since = (long long)time(NULL) - (long long)(ms / 1000);
        } else if (!target && argv[i][0] != '-')
            target = argv[i];
        else {
            fprintf(stderr, "cmesh logs: unknown argument '%s'; see cmesh logs --help\n", argv[i]);
            cm_spec_free(s);
            return 2;
        }
    }
    if (!target) {
        fprintf(stderr, "cmesh logs: name a SERVICE or SERVICE/N; see cmesh logs --help\n");
        cm_spec_free(s);
        return 2;
    }
    char name[CM_SPEC_NAME_MAX];
    int one = -1;
    const char *slash = strchr(target, '/');
    snprintf(name, sizeof name, "%.*s", slash ? (int)(slash - target) : (int)strlen(target),
             target);
    long v;
    if (slash && cm_parse_int(slash + 1, 0, CM_SPEC_MAX_INST - 1, &v) == 0)
        one = (int)v;
    else if (slash) {
        fprintf(stderr, "cmesh logs: '%s': N must be an instance number\n", target);
        cm_spec_free(s);
        return 2;
    }
    if (!cm_spec_service(s, name)) {
        fprintf(stderr, "cmesh logs: %s has no service '%s'\n", s->path, name);
        cm_spec_free(s);
        return 2;
    }
    logf_t logs[CM_SPEC_MAX_INST];
    int n = 0;
    for (int i = 0; i < CM_SPEC_MAX_INST; i++) {
        if (one >= 0 && i != one)
            continue;
        logf_t *l = &logs[n];
        memset(l, 0, sizeof *l);
        snprintf(l->label, sizeof l->label, "%s/%d", name, i);
        cm_state_log_path(s->state_dir, name, i, l->path, sizeof l->path);
        if (!(l->f = fopen(l->path, "r")))
            continue;
        l->keep = since == 0;
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "cmesh logs: no log of %s in %s/logs (has it run?)\n", target,
                s->state_dir);
        cm_spec_free(s);
        return 1;
    }
    int prefix = n > 1;
    for (int i = 0; i < n; i++)
        pump(&logs[i], prefix, since);
    while (follow) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        for (int i = 0; i < n; i++) {
            struct stat st;
            /* copytruncate made it shorter: start over at its beginning */
            if (fstat(fileno(logs[i].f), &st) == 0 && st.st_size < ftell(logs[i].f))
                fseek(logs[i].f, 0, SEEK_SET);
            pump(&logs[i], prefix, 0);
        }
    }
    for (int i = 0; i < n; i++)
        fclose(logs[i].f);
    cm_spec_free(s);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh token                                                                        */
/* ---------------------------------------------------------------------------------- */

int cm_ctl_token_main(int argc, char **argv)
{
    const char *config = NULL;
    int cfg_at = -1;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--auth-key", 10) == 0 || strcmp(argv[i], "--help") == 0 ||
            strcmp(argv[i], "-h") == 0)
            return -1;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[i + 1], cfg_at = i;
    }
    if (!config) {
        config = getenv("CMESH_CONFIG");
        if (!config || !config[0])
            config = "cmesh.yaml";
        if (access(config, R_OK) < 0)
            return -1;
    }
    cm_spec_t *s;
    char err[2048];
    if (cm_spec_load(config, &s, err, sizeof err) < 0)
        return -1; /* not a cmesh.yaml: a gateway config, for gw_token_main to read */
    if (!s->key_file[0]) {
        fprintf(stderr, "cmesh token: %s's gateway has no auth.key_file: every route is public\n",
                config);
        cm_spec_free(s);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/gateway.yaml", s->state_dir);
    cm_spec_free(s);
    if (access(path, R_OK) < 0) {
        fprintf(stderr,
                "cmesh token: %s does not exist yet; run cmesh up first (it makes the "
                "key and the gateway's config)\n",
                path);
        return 2;
    }
    char **av = calloc((size_t)argc + 3, sizeof *av);
    if (!av)
        return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i == cfg_at) {
            i++; /* the spec's --config becomes the gateway file's */
            continue;
        }
        av[n++] = argv[i];
    }
    av[n++] = "--config";
    av[n++] = path;
    int rc = gw_token_main(n, av);
    free(av);
    return rc;
}
