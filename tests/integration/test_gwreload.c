/* tests/integration/test_gwreload.c: what a SIGHUP reload does with the top-level keys:
 * a changed listen: cannot be applied (core opened the listeners), so the gateway says so
 * in its log, naming the old and the new address, and keeps serving on the old one while
 * the rest of the new config takes effect. */
#include "h_util.h"
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* Starts `cmesh gateway --config PATH --workers 1` without --listen (the harness always
 * passes one, and --listen wins over the file), so the address comes from the file's
 * listen:. The child dies with the test process (PR_SET_PDEATHSIG), also on a failed
 * assertion. */
static void start_from_file(h_proc_t *p, const char *path, int port)
{
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    p->port = port;
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", port);
    snprintf(p->log, sizeof p->log, "%s/stderr.log", p->dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "gateway", "--config", path, "--workers", "1", "--access-log", "off",
              (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 200; i++) {
        h_resp_t r = h_req(p, "GET", "/healthz", NULL, NULL);
        long st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the gateway exited; see %s", p->log);
        usleep(50 * 1000);
    }
    cr_assert_fail("the gateway did not become healthy; see %s", p->log);
}

static void config_text(char *out, size_t cap, int listen_port, const char *prefix)
{
    snprintf(out, cap,
             "listen: 127.0.0.1:%d\n"
             "routes:\n"
             "  - prefix: %s\n"
             "    upstreams: [http://127.0.0.1:9]\n"
             "    health: off\n",
             listen_port, prefix);
}

Test(gwreload, changed_listen_is_named_in_a_warning_and_the_old_address_stays, .timeout = 30)
{
    h_proc_t gw = {0};
    h_tempdir(gw.dir, sizeof gw.dir);
    char path[300], cfg[512];
    snprintf(path, sizeof path, "%s/gateway.yaml", gw.dir);
    int port = h_free_port(), new_port = h_free_port();
    config_text(cfg, sizeof cfg, port, "/a");
    h_write_text(path, cfg);
    start_from_file(&gw, path, port);

    /* the new file moves the gateway and renames its route */
    config_text(cfg, sizeof cfg, new_port, "/b");
    h_write_text(path, cfg);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    char *log;
    h_wait_for_text(gw.log, "config reloaded", 5000, &log);
    cr_assert(strstr(log, "config reloaded"), "no reload in the log:\n%s", log);
    char want[200];
    snprintf(want, sizeof want, "listen changed from 127.0.0.1:%d to 127.0.0.1:%d", port, new_port);
    cr_assert(strstr(log, want), "no warning naming both addresses in the log:\n%s", log);
    cr_assert(strstr(log, "restart"), "the warning does not say a restart is needed:\n%s", log);
    free(log);

    /* still on the old address, with the new routes (/b unreachable upstream: 502) */
    h_resp_t r = h_req(&gw, "GET", "/b/x", NULL, NULL);
    cr_assert_eq(r.status, 502, "GET /b/x on the old address: %ld", r.status);
    h_resp_free(&r);
    r = h_req(&gw, "GET", "/a/x", NULL, NULL);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);

    /* a reload that leaves listen: alone says nothing about it */
    config_text(cfg, sizeof cfg, port, "/c");
    h_write_text(path, cfg);
    truncate(gw.log, 0);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    h_wait_for_text(gw.log, "config reloaded", 5000, &log);
    cr_assert(strstr(log, "config reloaded"));
    cr_assert_null(strstr(log, "listen changed"), "a warning without a change:\n%s", log);
    free(log);
    cr_assert_eq(h_stop(&gw), 0);
}
