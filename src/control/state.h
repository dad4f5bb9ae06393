/* control/state.h: the control plane's state directory, the part of its memory that
 * outlives it: one record per running instance (pid, /proc start time, port), the
 * registry index epoch, the desired instance counts, the lock that keeps a second
 * `cmesh up` out. Every file is written atomically (write to a temporary + rename), so
 * a control plane killed mid-write leaves the old record or the new one, never half.
 * Used by up.c (adoption), supervise.c (records) and `cmesh down` (without a control
 * plane). No libuv: plain blocking file I/O on small files. */
#ifndef CMESH_CONTROL_STATE_H
#define CMESH_CONTROL_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_inst_rec {
    char service[64];
    int index;            /* instance number within its service: users/0, users/1 */
    int pid;              /* the instance's process (leader of its own session) */
    uint64_t start_ticks; /* /proc/PID/stat starttime: a reused pid has another */
    int port;
    int64_t started_ms; /* wall clock (ms since the epoch) when it was spawned */
    char def[17];       /* the definition it runs (control/defn.h); "" unknown */
} cm_inst_rec_t;

/* Creates dir, dir/instances and dir/logs (mode 0700/0755). Returns 0 or -errno. */
int cm_state_init(const char *dir);
/* Takes dir/lock (flock, exclusive, not blocking); *fd stays open while held (closed by
 * exit). Returns 0, -EWOULDBLOCK when another process holds it, or -errno. */
int cm_state_lock(const char *dir, int *fd);

/* Writes path atomically (path.tmp, fsync, rename). Returns 0 or -errno. */
int cm_state_write_atomic(const char *path, const char *data, size_t len);
/* Reads a whole small file into *out (NUL-terminated; caller frees). -ENOENT when absent. */
int cm_state_read(const char *path, char **out, size_t *len);

int cm_state_put(const char *dir, const cm_inst_rec_t *r);
/* Returns 0, -ENOENT when there is no record, -EINVAL when it does not parse. */
int cm_state_get(const char *dir, const char *service, int index, cm_inst_rec_t *r);
int cm_state_del(const char *dir, const char *service, int index); /* absent is fine */
/* Every record, in no particular order; caller frees *out. Returns 0 or -errno. */
int cm_state_list(const char *dir, cm_inst_rec_t **out, int *n);

/* The control plane's own record (pid + start time), for `cmesh down`/`status`. */
int cm_state_put_control(const char *dir, int pid, uint64_t start_ticks);
int cm_state_get_control(const char *dir, int *pid, uint64_t *start_ticks);

/* The desired count of a service set by `cmesh scale` (survives a restart of the
 * control plane). Returns 0, -ENOENT when none was set. */
int cm_state_put_scale(const char *dir, const char *service, int count);
int cm_state_get_scale(const char *dir, const char *service, int *count);
/* Forgets every count set by scale: after a down, the next up starts from the file (as
 * docker compose does). Returns 0 or -errno. */
int cm_state_clear_scale(const char *dir);

/* Reads, increments and writes back dir/epoch: every run of the control plane gets a
 * larger epoch than the last, so indexes built on it (epoch << 32 | counter) never go
 * backwards across restarts. Returns 0 or -errno. */
int cm_state_next_epoch(const char *dir, uint64_t *epoch);

/* /proc/PID/stat's starttime (clock ticks since boot). Returns 0 or -ENOENT. */
int cm_proc_start_ticks(int pid, uint64_t *ticks);
/* 1 when pid is alive and started at start_ticks (not a zombie), else 0. */
int cm_proc_same(int pid, uint64_t start_ticks);
/* Finds a live process whose environment holds CMESH_STATE=dir and CMESH_INSTANCE=id
 * ("users/0"): every instance gets both, so an instance is found also when its record
 * was never written (the control plane died between spawn and record) or was lost.
 * Returns 0 with *pid and *ticks, or -ENOENT. */
int cm_proc_find_instance(const char *dir, const char *id, int *pid, uint64_t *ticks);
/* utime+stime (ticks) and RSS (bytes) of pid. Returns 0 or -ENOENT. */
int cm_proc_usage(int pid, uint64_t *cpu_ticks, uint64_t *rss_bytes);

/* Path of instance SERVICE/INDEX's log file: dir/logs/SERVICE.INDEX.log. */
void cm_state_log_path(const char *dir, const char *service, int index, char *out, size_t cap);

#endif
