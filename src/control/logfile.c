/* control/logfile.c: rotation and tails of instance log files (see logfile.h). */
#include "control/logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

void cm_logfile_rotate(int fd, const char *path, size_t max, int keep)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size < max)
        return;
    const char *p = path;
    char a[4200], b[4200];
    for (int i = keep - 1; i >= 1; i--) {
        snprintf(a, sizeof a, "%s.%d", p, i);
        snprintf(b, sizeof b, "%s.%d", p, i + 1);
        rename(a, b);
    }
    snprintf(a, sizeof a, "%s.1", p);
    int src = open(p, O_RDONLY | O_CLOEXEC);
    int dst = open(a, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char buf[65536];
    ssize_t r;
    while (src >= 0 && dst >= 0 && (r = read(src, buf, sizeof buf)) > 0)
        if (write(dst, buf, (size_t)r) != r)
            break;
    if (src >= 0)
        close(src);
    if (dst >= 0)
        close(dst);
    if (ftruncate(fd, 0) < 0)
        cm_log_msg(CM_LOG_WARN, "control: cannot truncate %s: %s", p, strerror(errno));
}

char *cm_logfile_tail(const char *p, int lines)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char buf[4097];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > 4096 ? end - 4096 : 0;
    ssize_t n = pread(fd, buf, 4096, from);
    close(fd);
    if (n <= 0)
        return strdup("");
    buf[n] = '\0';
    char *start = buf + n;
    if (n > 0 && buf[n - 1] == '\n')
        start--;
    int seen = 0;
    while (start > buf && seen < lines) {
        start--;
        if (*start == '\n')
            seen++;
    }
    if (*start == '\n')
        start++;
    return strdup(start);
}
