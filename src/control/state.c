/* control/state.c: the state directory's files (see state.h): small JSON records through
 * jansson, each written to a temporary and renamed over the old one; /proc readers. */
#include "control/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int cm_state_init(const char *dir)
{
    char p[4096];
    int rc = mkdir_p(dir, 0700);
    if (rc == 0) {
        snprintf(p, sizeof p, "%s/instances", dir);
        rc = mkdir_p(p, 0700);
    }
    if (rc == 0) {
        snprintf(p, sizeof p, "%s/logs", dir);
        rc = mkdir_p(p, 0755);
    }
    return rc;
}

int cm_state_lock(const char *dir, int *fd)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/lock", dir);
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0)
        return -errno;
    if (flock(f, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

int cm_state_write_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int rc = -errno;
            close(fd);
            unlink(tmp);
            return rc;
        }
        off += (size_t)w;
    }
    /* fsync: after a power loss the rename must not point at an empty file */
    if (fsync(fd) < 0 || close(fd) < 0) {
        int rc = -errno;
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) < 0) {
        int rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

int cm_state_read(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 1 >= cap) {
            char *g = realloc(buf, cap ? cap * 2 : 1024);
            if (!g) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = g, cap = cap ? cap * 2 : 1024;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

static void rec_path(const char *dir, const char *service, int index, char *out, size_t cap)
{
    snprintf(out, cap, "%s/instances/%s.%d.json", dir, service, index);
}

static int put_json(const char *path, json_t *o)
{
    if (!o)
        return -ENOMEM;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -ENOMEM;
    int rc = cm_state_write_atomic(path, s, strlen(s));
    free(s);
    return rc;
}

static json_t *get_json(const char *path, int *rc)
{
    char *text;
    size_t len;
    if ((*rc = cm_state_read(path, &text, &len)) < 0)
        return NULL;
    json_t *o = json_loadb(text, len, 0, NULL);
    free(text);
    *rc = json_is_object(o) ? 0 : -EINVAL;
    if (*rc < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int cm_state_put(const char *dir, const cm_inst_rec_t *r)
{
    char p[4096];
    rec_path(dir, r->service, r->index, p, sizeof p);
    return put_json(p, json_pack("{s:s,s:i,s:i,s:I,s:i,s:I,s:s}", "service", r->service, "index",
                                 r->index, "pid", r->pid, "start_ticks", (json_int_t)r->start_ticks,
                                 "port", r->port, "started_ms", (json_int_t)r->started_ms, "def",
                                 r->def));
}

static int rec_from_json(json_t *o, cm_inst_rec_t *r)
{
    const char *svc;
    json_int_t st, sm;
    memset(r, 0, sizeof *r);
    if (json_unpack(o, "{s:s,s:i,s:i,s:I,s:i,s:I}", "service", &svc, "index", &r->index, "pid",
                    &r->pid, "start_ticks", &st, "port", &r->port, "started_ms", &sm) < 0 ||
        strlen(svc) >= sizeof r->service)
        return -EINVAL;
    snprintf(r->service, sizeof r->service, "%s", svc);
    r->start_ticks = (uint64_t)st;
    r->started_ms = (int64_t)sm;
    /* records written before definitions existed have none: unknown, replaced first */
    const char *def = json_string_value(json_object_get(o, "def"));
    snprintf(r->def, sizeof r->def, "%s", def && strlen(def) < sizeof r->def ? def : "");
    return 0;
}

int cm_state_get(const char *dir, const char *service, int index, cm_inst_rec_t *r)
{
    char p[4096];
    int rc;
    rec_path(dir, service, index, p, sizeof p);
    json_t *o = get_json(p, &rc);
    if (!o)
        return rc;
    rc = rec_from_json(o, r);
    json_decref(o);
    return rc;
}

int cm_state_del(const char *dir, const char *service, int index)
{
    char p[4096];
    rec_path(dir, service, index, p, sizeof p);
    return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}

int cm_state_list(const char *dir, cm_inst_rec_t **out, int *n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/instances", dir);
    DIR *d = opendir(p);
    *out = NULL, *n = 0;
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        char fp[4400];
        snprintf(fp, sizeof fp, "%s/%s", p, e->d_name);
        int rc;
        json_t *o = get_json(fp, &rc);
        cm_inst_rec_t r;
        if (!o || rec_from_json(o, &r) < 0) {
            json_decref(o);
            continue; /* a foreign or broken file is not an instance */
        }
        json_decref(o);
        if (*n == cap) {
            cm_inst_rec_t *g = realloc(*out, sizeof *g * (size_t)(cap ? cap * 2 : 8));
            if (!g) {
                closedir(d);
                return -ENOMEM;
            }
            *out = g, cap = cap ? cap * 2 : 8;
        }
        (*out)[(*n)++] = r;
    }
    closedir(d);
    return 0;
}

int cm_state_put_control(const char *dir, int pid, uint64_t start_ticks)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/control.json", dir);
    return put_json(p, json_pack("{s:i,s:I}", "pid", pid, "start_ticks", (json_int_t)start_ticks));
}

int cm_state_get_control(const char *dir, int *pid, uint64_t *start_ticks)
{
    char p[4096];
    int rc;
    snprintf(p, sizeof p, "%s/control.json", dir);
    json_t *o = get_json(p, &rc);
    if (!o)
        return rc;
    json_int_t st;
    rc = json_unpack(o, "{s:i,s:I}", "pid", pid, "start_ticks", &st) < 0 ? -EINVAL : 0;
    *start_ticks = (uint64_t)st;
    json_decref(o);
    return rc;
}

int cm_state_put_scale(const char *dir, const char *service, int count)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/scale.json", dir);
    int rc;
    json_t *o = get_json(p, &rc);
    if (!o)
        o = json_object();
    if (!o)
        return -ENOMEM;
    json_object_set_new(o, service, json_integer(count));
    return put_json(p, o);
}

int cm_state_get_scale(const char *dir, const char *service, int *count)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/scale.json", dir);
    int rc;
    json_t *o = get_json(p, &rc);
    if (!o)
        return rc;
    json_t *v = json_object_get(o, service);
    rc = json_is_integer(v) ? 0 : -ENOENT;
    if (rc == 0)
        *count = (int)json_integer_value(v);
    json_decref(o);
    return rc;
}

int cm_state_clear_scale(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/scale.json", dir);
    return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}

int cm_state_next_epoch(const char *dir, uint64_t *epoch)
{
    char p[4096], *text = NULL;
    snprintf(p, sizeof p, "%s/epoch", dir);
    unsigned long long e = 0;
    int rc = cm_state_read(p, &text, NULL);
    if (rc == 0 && sscanf(text, "%llu", &e) != 1)
        e = 0;
    free(text);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%llu\n", e + 1);
    if ((rc = cm_state_write_atomic(p, buf, (size_t)n)) < 0)
        return rc;
    *epoch = e + 1;
    return 0;
}

/* Fields of /proc/PID/stat after the command (which may hold spaces and parentheses:
 * the last ')' ends it). field 3 is the state; 14/15 utime/stime; 22 starttime. */
static int proc_stat(int pid, char *state, uint64_t *cpu, uint64_t *start)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -ENOENT;
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    if (!s)
        return -ENOENT;
    unsigned long long ut = 0, stt = 0, st = 0;
    char c = '?';
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice threads itrealvalue starttime */
    if (sscanf(s + 2,
               "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
               "%*d %llu",
               &c, &ut, &stt, &st) != 4)
        return -ENOENT;
    if (state)
        *state = c;
    if (cpu)
        *cpu = ut + stt;
    if (start)
        *start = st;
    return 0;
}

int cm_proc_start_ticks(int pid, uint64_t *ticks)
{
    return proc_stat(pid, NULL, NULL, ticks);
}

int cm_proc_same(int pid, uint64_t start_ticks)
{
    char st;
    uint64_t t;
    if (pid <= 0 || proc_stat(pid, &st, NULL, &t) < 0)
        return 0;
    return t == start_ticks && st != 'Z' && st != 'X';
}

int cm_proc_find_instance(const char *dir, const char *id, int *pid, uint64_t *ticks)
{
    char want_state[4200], want_id[200];
    snprintf(want_state, sizeof want_state, "CMESH_STATE=%s", dir);
    snprintf(want_id, sizeof want_id, "CMESH_INSTANCE=%s", id);
    DIR *d = opendir("/proc");
    if (!d)
        return -ENOENT;
    static char env[1 << 16]; /* one environment at a time, on the one control loop */
    struct dirent *e;
    int found = -ENOENT;
    while (found < 0 && (e = readdir(d))) {
        int p = atoi(e->d_name);
        if (p <= 0 || p == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/environ", p);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, env, sizeof env - 1);
        close(fd);
        if (n <= 0)
            continue;
        env[n] = '\0';
        int has_state = 0, has_id = 0;
        for (char *v = env; v < env + n; v += strlen(v) + 1) {
            has_state |= strcmp(v, want_state) == 0;
            has_id |= strcmp(v, want_id) == 0;
        }
        char st;
        uint64_t t;
        /* the leader: a child it forked inherits the same environment, but its own
         * session id is not its pid */
        if (has_state && has_id && proc_stat(p, &st, NULL, &t) == 0 && st != 'Z' &&
            getsid(p) == p) {
            *pid = p;
            *ticks = t;
            found = 0;
        }
    }
    closedir(d);
    return found;
}

int cm_proc_usage(int pid, uint64_t *cpu_ticks, uint64_t *rss_bytes)
{
    int rc = proc_stat(pid, NULL, cpu_ticks, NULL);
    if (rc < 0)
        return rc;
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/statm", pid);
    FILE *f = fopen(p, "r");
    unsigned long long size = 0, res = 0;
    if (!f)
        return -ENOENT;
    int ok = fscanf(f, "%llu %llu", &size, &res) == 2;
    fclose(f);
    *rss_bytes = ok ? res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
    return 0;
}

void cm_state_log_path(const char *dir, const char *service, int index, char *out, size_t cap)
{
    snprintf(out, cap, "%s/logs/%s.%d.log", dir, service, index);
}
