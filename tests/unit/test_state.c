/* Unit tests for control/state: records round-trip, atomic replacement, the lock, the
 * epoch that only grows, and /proc start times telling a live pid from a reused one. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "control/state.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/state-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(cm_state_init(dir), 0);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(state, .init = setup, .fini = teardown);

Test(state, records_round_trip_and_list)
{
    cm_inst_rec_t a = {"users", 1, 4242, 99999, 7002, 1700000000123, "0123456789abcdef"}, b = a,
                  got;
    b.index = 0;
    cr_assert_eq(cm_state_put(dir, &a), 0);
    cr_assert_eq(cm_state_put(dir, &b), 0);
    cr_assert_eq(cm_state_get(dir, "users", 1, &got), 0);
    cr_assert_eq(got.pid, 4242);
    cr_assert_eq(got.start_ticks, 99999);
    cr_assert_eq(got.port, 7002);
    cr_assert_eq(got.started_ms, 1700000000123);
    cm_inst_rec_t *all;
    int n;
    cr_assert_eq(cm_state_list(dir, &all, &n), 0);
    cr_assert_eq(n, 2);
    free(all);
    cr_assert_eq(cm_state_del(dir, "users", 1), 0);
    cr_assert_eq(cm_state_del(dir, "users", 1), 0, "absent is fine");
    cr_assert_eq(cm_state_get(dir, "users", 1, &got), -ENOENT);
}

Test(state, a_broken_record_is_not_an_instance)
{
    char p[512];
    snprintf(p, sizeof p, "%s/instances/users.0.json", dir);
    cr_assert_eq(cm_state_write_atomic(p, "{\"pid\":", 7), 0);
    cm_inst_rec_t r;
    cr_assert_eq(cm_state_get(dir, "users", 0, &r), -EINVAL);
    cm_inst_rec_t *all;
    int n;
    cr_assert_eq(cm_state_list(dir, &all, &n), 0);
    cr_assert_eq(n, 0);
    free(all);
}

Test(state, epoch_grows_on_every_call)
{
    uint64_t a, b, c;
    cr_assert_eq(cm_state_next_epoch(dir, &a), 0);
    cr_assert_eq(cm_state_next_epoch(dir, &b), 0);
    cr_assert_eq(cm_state_next_epoch(dir, &c), 0);
    cr_assert(a < b && b < c);
}

Test(state, lock_keeps_a_second_holder_out)
{
    int fd;
    cr_assert_eq(cm_state_lock(dir, &fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd2;
        _exit(cm_state_lock(dir, &fd2) == -EWOULDBLOCK ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a second process got the lock");
    close(fd);
}

Test(state, scale_survives_and_control_record_round_trips)
{
    int n;
    cr_assert_eq(cm_state_get_scale(dir, "users", &n), -ENOENT);
    cr_assert_eq(cm_state_put_scale(dir, "users", 3), 0);
    cr_assert_eq(cm_state_put_scale(dir, "orders", 0), 0);
    cr_assert_eq(cm_state_get_scale(dir, "users", &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(cm_state_get_scale(dir, "orders", &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(cm_state_clear_scale(dir), 0);
    cr_assert_eq(cm_state_get_scale(dir, "users", &n), -ENOENT, "a down forgets scale");
    int pid;
    uint64_t t;
    cr_assert_eq(cm_state_put_control(dir, 77, 88), 0);
    cr_assert_eq(cm_state_get_control(dir, &pid, &t), 0);
    cr_assert_eq(pid, 77);
    cr_assert_eq(t, 88);
}

Test(state, start_time_tells_a_live_pid_from_a_reused_one)
{
    uint64_t t;
    cr_assert_eq(cm_proc_start_ticks(getpid(), &t), 0);
    cr_assert_eq(cm_proc_same(getpid(), t), 1);
    cr_assert_eq(cm_proc_same(getpid(), t + 1), 0, "same pid, other start: not ours");
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    uint64_t ct = 0;
    cm_proc_start_ticks(pid, &ct);
    int st;
    waitpid(pid, &st, 0);
    cr_assert_eq(cm_proc_same(pid, ct), 0, "a reaped pid is gone");
    uint64_t cpu, rss;
    cr_assert_eq(cm_proc_usage(getpid(), &cpu, &rss), 0);
    cr_assert_gt(rss, 0);
}

Test(state, an_instance_without_a_record_is_found_by_its_environment)
{
    int pid;
    uint64_t t;
    cr_assert_eq(cm_proc_find_instance(dir, "users/0", &pid, &t), -ENOENT);
    pid_t child = fork();
    if (child == 0) {
        char st[400];
        snprintf(st, sizeof st, "CMESH_STATE=%s", dir);
        char *const env[] = {st, "CMESH_INSTANCE=users/0", NULL};
        setsid(); /* as the supervisor spawns them: leader of its own session */
        execle("/bin/sleep", "sleep", "30", (char *)NULL, env);
        _exit(127);
    }
    int found = -ENOENT;
    for (int i = 0; i < 200 && found < 0; i++) {
        found = cm_proc_find_instance(dir, "users/0", &pid, &t);
        if (found < 0)
            usleep(10000);
    }
    cr_assert_eq(found, 0);
    cr_assert_eq(pid, child);
    cr_assert_eq(cm_proc_same(pid, t), 1);
    cr_assert_eq(cm_proc_find_instance(dir, "users/1", &pid, &t), -ENOENT, "another instance");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cr_assert_eq(cm_proc_find_instance(dir, "users/0", &pid, &t), -ENOENT);
}
