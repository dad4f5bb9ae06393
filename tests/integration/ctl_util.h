/* tests/integration/ctl_util.h: helpers for the control-plane suites: a system in a
 * temp dir (cmesh.yaml with free ports, its state dir), `cmesh up` started for real,
 * the control API, and the /proc scan that finds every process the system started
 * (each carries CMESH_STATE=<its state dir> in its environment, grandchildren too), so
 * a test can prove nothing is left and its cleanup can kill what is. */
#ifndef CMESH_TESTS_CTL_UTIL_H
#define CMESH_TESTS_CTL_UTIL_H

#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#define SYS_BLOCK 64 /* ports per service (cmesh.yaml's rule) */

typedef struct sys {
    char dir[256];
    char yaml[320];
    char state[320];
    char log[320]; /* cmesh up's stdout + stderr */
    pid_t up;
    int base;     /* first port of the system's range */
    int ctl_port; /* base */
    int gw_port;  /* base + 1 */
    int port[4];  /* service i listens from base + 64 * (i + 1) */
    char ctl[64]; /* http://127.0.0.1:CTL */
} sys_t;

static sys_t *sys_current; /* the one a test's cleanup stops */

static inline void ms_sleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Free as the servers bind (SO_REUSEADDR, core/server.c): a port whose only sockets are
 * in TIME_WAIT is free for them, and every test system leaves a few of those on its
 * block for a minute, which on a busy machine used every block ("no free port block"). */
static inline int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Ports below the kernel's ephemeral range (32768+), so other suites' free ports
 * (bind to 0) never collide with a whole block picked here. */
static inline void sys_ports(sys_t *s)
{
    for (int tries = 0; tries < 200; tries++) {
        uint32_t r;
        cr_assert_eq(getrandom(&r, sizeof r, 0), (ssize_t)sizeof r);
        int base = 20000 + (int)(r % 40) * (SYS_BLOCK * 5);
        int ok = 1;
        for (int b = 0; b < 5 && ok; b++)
            for (int i = 0; i < 4 && ok; i++)
                ok = port_free(base + b * SYS_BLOCK + i);
        if (!ok)
            continue;
        s->base = base;
        s->ctl_port = base;
        s->gw_port = base + 1;
        for (int i = 0; i < 4; i++)
            s->port[i] = base + SYS_BLOCK * (i + 1);
        snprintf(s->ctl, sizeof s->ctl, "http://127.0.0.1:%d", s->ctl_port);
        return;
    }
    cr_assert_fail("no free port block");
}

/* A system in a fresh temp dir; body is the services: and gateway: sections (after
 * control:), with %1$d = gateway port, %2$d..%5$d = the services' first ports. */
static inline void sys_init(sys_t *s, const char *body_fmt)
{
    memset(s, 0, sizeof *s);
    h_tempdir(s->dir, sizeof s->dir);
    sys_ports(s);
    snprintf(s->yaml, sizeof s->yaml, "%s/cmesh.yaml", s->dir);
    snprintf(s->state, sizeof s->state, "%s/state", s->dir);
    snprintf(s->log, sizeof s->log, "%s/up.log", s->dir);
    FILE *f = fopen(s->yaml, "w");
    cr_assert_not_null(f);
    fprintf(f, "control:\n  listen: 127.0.0.1:%d\n  state_dir: state\n", s->ctl_port);
    fprintf(f, body_fmt, s->gw_port, s->port[0], s->port[1], s->port[2], s->port[3]);
    fclose(f);
    sys_current = s;
}

/* Runs `cmesh ARGS... --config YAML` and returns its exit status; out (may be NULL)
 * gets its stdout + stderr (caller frees). */
static inline int sys_cmd(sys_t *s, char **out, const char *const *args)
{
    char path[400];
    snprintf(path, sizeof path, "%s/cmd.out", s->dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[16];
        int n = 0;
        argv[n++] = getenv("CMESH_BIN");
        for (int i = 0; args[i] && n < 12; i++)
            argv[n++] = args[i];
        argv[n++] = "--config";
        argv[n++] = s->yaml;
        argv[n] = NULL;
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    if (out) {
        FILE *f = fopen(path, "r");
        char *buf = calloc(1, 65536);
        size_t n = f ? fread(buf, 1, 65535, f) : 0;
        buf[n] = '\0';
        if (f)
            fclose(f);
        *out = buf;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Starts `cmesh up --config YAML` in the foreground (a child of the test). */
static inline void sys_start(sys_t *s)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(getenv("CMESH_BIN"), getenv("CMESH_BIN"), "up", "--config", s->yaml, (char *)NULL);
        _exit(127);
    }
    s->up = pid;
}

static inline h_resp_t sys_get(sys_t *s, const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->ctl, path);
    return h_http("GET", url, NULL, NULL);
}

static inline json_t *sys_json(sys_t *s, const char *path)
{
    h_resp_t r = sys_get(s, path);
    json_t *j = r.status == 200 ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    h_resp_free(&r);
    return j;
}

/* Waits until GET /v1/ready answers 200 (every instance ready). */
static inline void sys_wait_ready(sys_t *s, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    while (now_s() < until) {
        h_resp_t r = sys_get(s, "/v1/ready");
        long st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return;
        ms_sleep(50);
    }
    char *log = NULL;
    FILE *f = fopen(s->log, "r");
    if (f) {
        log = calloc(1, 8192);
        size_t n = fread(log, 1, 8191, f);
        log[n] = '\0';
        fclose(f);
    }
    cr_assert_fail("system not ready in %d ms; cmesh up said:\n%s", timeout_ms, log ? log : "");
}

/* The instance SERVICE/INDEX from /v1/services/SERVICE (a new reference), or NULL. */
static inline json_t *sys_inst(sys_t *s, const char *service, int index)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/services/%s", service);
    json_t *arr = sys_json(s, path), *it, *found = NULL;
    size_t i;
    json_array_foreach(arr, i, it) if (json_integer_value(json_object_get(it, "index")) == index)
        found = json_incref(it);
    json_decref(arr);
    return found;
}

static inline int sys_pid(sys_t *s, const char *service, int index)
{
    json_t *in = sys_inst(s, service, index);
    int pid = in ? (int)json_integer_value(json_object_get(in, "pid")) : 0;
    json_decref(in);
    return pid;
}

/* Waits until instance SERVICE/INDEX is in state (and, when not 0, its pid differs from
 * not_pid); returns the instance (a new reference). */
static inline json_t *sys_wait_state(sys_t *s, const char *service, int index, const char *state,
                                     int not_pid, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    json_t *in = NULL;
    while (now_s() < until) {
        in = sys_inst(s, service, index);
        const char *st = in ? json_string_value(json_object_get(in, "state")) : NULL;
        int pid = in ? (int)json_integer_value(json_object_get(in, "pid")) : 0;
        if (st && strcmp(st, state) == 0 && (!not_pid || pid != not_pid))
            return in;
        json_decref(in);
        in = NULL;
        ms_sleep(50);
    }
    cr_assert_fail("%s/%d never reached state %s", service, index, state);
    return NULL;
}

/* Processes whose environment says they belong to state dir state (and, when not NULL,
 * are instance inst, "users/0"). The test process itself has neither. */
static inline int sys_procs(const char *state, const char *inst, int kill_them)
{
    char want[400], want_inst[128];
    snprintf(want, sizeof want, "CMESH_STATE=%s", state);
    if (inst)
        snprintf(want_inst, sizeof want_inst, "CMESH_INSTANCE=%s", inst);
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char p[64], st = '?';
        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        FILE *sf = fopen(p, "r");
        if (sf) {
            char buf[512];
            size_t len = fread(buf, 1, sizeof buf - 1, sf);
            buf[len] = '\0';
            char *rp = strrchr(buf, ')');
            if (rp)
                st = rp[2];
            fclose(sf);
        }
        if (st == 'Z' || st == 'X')
            continue;
        snprintf(p, sizeof p, "/proc/%d/environ", pid);
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        static char env[1 << 16];
        ssize_t len = read(fd, env, sizeof env - 1);
        close(fd);
        if (len <= 0)
            continue;
        env[len] = '\0';
        int has = 0, has_inst = !inst;
        for (char *v = env; v < env + len; v += strlen(v) + 1) {
            if (strcmp(v, want) == 0)
                has = 1;
            if (inst && strcmp(v, want_inst) == 0)
                has_inst = 1;
        }
        if (has && has_inst) {
            n++;
            if (kill_them)
                kill(pid, SIGKILL);
        }
    }
    closedir(d);
    return n;
}

/* SIGTERM to cmesh up and its exit status (-1 when it had to be killed). */
static inline int sys_stop(sys_t *s, int timeout_ms)
{
    if (s->up <= 0)
        return 0;
    kill(s->up, SIGTERM);
    int st;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid(s->up, &st, WNOHANG) == s->up) {
            s->up = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        ms_sleep(20);
    }
    kill(s->up, SIGKILL);
    waitpid(s->up, &st, 0);
    s->up = 0;
    return -1;
}

static inline void sys_kill9_up(sys_t *s)
{
    kill(s->up, SIGKILL);
    waitpid(s->up, NULL, 0);
    s->up = 0;
}

/* Cleanup for a test's .fini: stops cmesh up, kills whatever of the system is left. */
static inline void sys_fini(void)
{
    sys_t *s = sys_current;
    if (!s)
        return;
    if (s->up > 0)
        sys_stop(s, 20000);
    /* a control plane the test detached (up -d / --wait) is no child of ours: its record */
    char rec[400], *text = NULL;
    snprintf(rec, sizeof rec, "%s/control.json", s->state);
    FILE *f = fopen(rec, "r");
    if (f) {
        text = calloc(1, 256);
        size_t n = fread(text, 1, 255, f);
        text[n] = '\0';
        fclose(f);
        json_t *o = json_loads(text, 0, NULL);
        int pid = (int)json_integer_value(json_object_get(o, "pid"));
        json_decref(o);
        if (pid > 0 && kill(pid, SIGTERM) == 0)
            for (int i = 0; i < 400 && kill(pid, 0) == 0; i++)
                ms_sleep(50);
        free(text);
    }
    for (int i = 0; i < 50 && sys_procs(s->state, NULL, 1) > 0; i++)
        ms_sleep(20);
    sys_current = NULL;
}

#endif
