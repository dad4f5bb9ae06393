/* tests/integration/test_gwburst.c: a burst of simultaneous requests through a real
 * `cmesh gateway` to one fast `cmesh users` instance (default limits but the connection
 * cap). More requests than the instance's
 * connection cap arrive at once: the ones beyond it wait in the instance's queue and are
 * served (as HAProxy queues), instead of being refused 503 by the circuit limits. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

enum { N_MAX = 2500, N_MIN = 600 }; /* the burst; the cap below is 64 connections */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct client {
    int fd;
    size_t len;
    char buf[512]; /* the status line is all that is looked at */
    int done;
} client_t;

Test(gwburst, a_burst_past_the_connection_cap_is_queued_and_served, .timeout = 120)
{
    /* n sockets here and n + the upstream's in the gateway, which inherits this limit: as
     * many as the limit allows (raised where it may be), at least N_MIN, far past the cap.
     * Only past ~1,100 does the burst also exceed the old 1,024 queue default. */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < N_MAX + 200) {
        rl.rlim_cur = rl.rlim_max < N_MAX + 200 ? rl.rlim_max : N_MAX + 200;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int n = rl.rlim_cur >= N_MAX + 200 ? N_MAX : (int)rl.rlim_cur - 200;
    cr_assert_geq(n, N_MIN, "RLIMIT_NOFILE %llu is too low for %d sockets",
                  (unsigned long long)rl.rlim_cur, N_MIN);

    h_proc_t users, gw;
    h_start(&users, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    char dir[256], path[300], cfg[1024];
    h_tempdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/gateway.yaml", dir);
    /* a connection cap well below the burst, every other limit at its default */
    snprintf(cfg, sizeof cfg,
             "routes:\n"
             "  - prefix: /\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    limits: { max_connections: 64 }\n",
             users.url);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fclose(f);
    h_start(&gw, "gateway", "--config", path, "--workers", "1", "--access-log", "off", NULL);

    static client_t c[N_MAX];
    for (int i = 0; i < n; i++) {
        c[i] = (client_t){.fd = h_connect(gw.port)};
        cr_assert_geq(c[i].fd, 0, "connect %d failed", i);
    }
    /* The instance is held still while the burst arrives, so all n are in the gateway at
     * once however fast this machine is (else the instance answers as fast as the requests
     * are written, and a burst is never one); then it runs at full speed. */
    cr_assert_eq(kill(users.pid, SIGSTOP), 0);
    static const char req[] =
        "GET /users?limit=1 HTTP/1.1\r\nHost: burst\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < n; i++)
        h_send(c[i].fd, req, sizeof req - 1);
    usleep(300 * 1000); /* the gateway reads them meanwhile; shorter only makes it easier */
    cr_assert_eq(kill(users.pid, SIGCONT), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(fcntl(c[i].fd, F_SETFL, O_NONBLOCK), 0);

    static struct pollfd pfd[N_MAX];
    static int idx[N_MAX];
    int left = n;
    double end = now_s() + 90; /* generous: only a hang gets near it */
    while (left > 0 && now_s() < end) {
        int np = 0;
        for (int i = 0; i < n; i++) {
            if (c[i].done)
                continue;
            pfd[np] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
            idx[np++] = i;
        }
        int rc = poll(pfd, (nfds_t)np, 1000);
        cr_assert_geq(rc, 0, "poll: %s", strerror(errno));
        for (int k = 0; k < np; k++) {
            if (!pfd[k].revents)
                continue;
            client_t *cl = &c[idx[k]];
            char tmp[4096];
            ssize_t got = read(cl->fd, tmp, sizeof tmp);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got > 0) {
                size_t room = sizeof cl->buf - 1 - cl->len;
                size_t take = (size_t)got < room ? (size_t)got : room;
                memcpy(cl->buf + cl->len, tmp, take);
                cl->len += take;
                cl->buf[cl->len] = '\0';
                continue;
            }
            cl->done = 1; /* EOF (Connection: close) or an error: the answer is whole */
            left--;
        }
    }
    int n200 = 0, other = 0, first_other = -1;
    for (int i = 0; i < n; i++) {
        int st = c[i].len ? h_raw_status(c[i].buf) : 0;
        if (st == 200) {
            n200++;
        } else {
            if (first_other < 0)
                first_other = i;
            other++;
        }
        close(c[i].fd);
    }
    cr_log_info("%d of %d answered 200, %d otherwise, %d unfinished", n200, n, other, left);
    cr_assert_eq(n200, n, "%d of %d simultaneous requests were not 200; request %d got: %.80s",
                 other, n, first_other, first_other >= 0 ? c[first_other].buf : "");
    cr_assert_eq(h_stop(&gw), 0);
    cr_assert_eq(h_stop(&users), 0);
}
