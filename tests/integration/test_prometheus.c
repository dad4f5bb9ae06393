/* tests/integration/test_prometheus.c: a real Prometheus (the Debian package) pointed at
 * the control plane's /v1/targets (HTTP service discovery) finds every instance of a
 * running system and reports each one up. Bounded: Prometheus scrapes every 500 ms and
 * the test gives it 20 s. */
#include "ctl_util.h"

static sys_t sys;
static pid_t prom;

static void fini(void)
{
    if (prom > 0) {
        kill(prom, SIGTERM);
        for (int i = 0; i < 100 && waitpid(prom, NULL, WNOHANG) == 0; i++)
            ms_sleep(50);
        kill(prom, SIGKILL);
        waitpid(prom, NULL, 0);
        prom = 0;
    }
    sys_fini();
}

TestSuite(prometheus, .fini = fini, .timeout = 90);

static const char spec[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "  orders:\n    command: orders\n    instances: 1\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, orders.db, --users-url, '{url:users}', --access-log, 'off']\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n    - { prefix: /users, service: users }\n";

/* Counts Prometheus' active targets, and those whose health is "up". */
static void targets(int port, int *all, int *up)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/targets?state=active", port);
    h_resp_t r = h_http("GET", url, NULL, NULL);
    *all = *up = 0;
    json_t *o = r.status == 200 ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    json_t *list = json_object_get(json_object_get(o, "data"), "activeTargets"), *t;
    size_t i;
    json_array_foreach(list, i, t)
    {
        (*all)++;
        const char *h = json_string_value(json_object_get(t, "health"));
        *up += h && strcmp(h, "up") == 0;
    }
    json_decref(o);
    h_resp_free(&r);
}

Test(prometheus, finds_every_instance_through_v1_targets_and_reports_it_up)
{
    if (access("/usr/bin/prometheus", X_OK) != 0)
        cr_skip_test("prometheus is not installed (scripts/deps.sh installs it)");
    sys_init(&sys, spec);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    int pport = h_free_port();
    char cfg[400], data[400], log[400], listen[64], flag_cfg[450], flag_data[450];
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", sys.dir);
    snprintf(data, sizeof data, "%s/prom-data", sys.dir);
    snprintf(log, sizeof log, "%s/prometheus.log", sys.dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
            "scrape_configs:\n  - job_name: cmesh\n    http_sd_configs:\n"
            "      - url: %s/v1/targets\n        refresh_interval: 1s\n",
            sys.ctl);
    fclose(f);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", pport);
    snprintf(flag_cfg, sizeof flag_cfg, "--config.file=%s", cfg);
    snprintf(flag_data, sizeof flag_data, "--storage.tsdb.path=%s", data);
    prom = fork();
    if (prom == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/usr/bin/prometheus", "prometheus", flag_cfg, flag_data, listen, "--log.level=warn",
              (char *)NULL);
        _exit(127);
    }
    int all = 0, up = 0;
    double until = now_s() + 20;
    while (now_s() < until) {
        targets(pport, &all, &up);
        if (all == 4 && up == 4)
            break;
        ms_sleep(200);
    }
    cr_assert_eq(all, 4, "Prometheus found %d of the 4 instances", all);
    cr_assert_eq(up, 4, "Prometheus reports %d of 4 up", up);
    /* a new instance is discovered too */
    char url[128];
    snprintf(url, sizeof url, "%s/v1/services/users/scale", sys.ctl);
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_http("PUT", url, "{\"instances\":3}", hdr);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    until = now_s() + 20;
    while (now_s() < until) {
        targets(pport, &all, &up);
        if (all == 5 && up == 5)
            break;
        ms_sleep(200);
    }
    cr_assert_eq(up, 5, "after scale: %d of %d up", up, all);
}
