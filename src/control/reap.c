/* control/reap.c: orphans of a child subreaper (see reap.h). */
#include "control/reap.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* /proc/PID/stat after the command (which may hold spaces and parentheses: the last
 * ')' ends it): state, then the parent's pid. */
void cm_reap_orphans(cm_reap_ours_fn ours, void *arg, int kill_live)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    int me = getpid();
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char p[64], buf[512];
        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')'), st;
        int ppid;
        if (!rp || sscanf(rp + 2, "%c %d", &st, &ppid) != 2 || ppid != me)
            continue;
        if (ours(pid, arg))
            continue; /* its owner reaps it */
        if (st == 'Z')
            waitpid(pid, NULL, WNOHANG);
        else if (kill_live)
            kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    }
    closedir(d);
}
