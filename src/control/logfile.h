/* control/logfile.h: an instance's log file: rotation by size while the instance keeps
 * writing to it, and its last lines. Used by supervise.c (and api.c through it); plain
 * file I/O, no libuv. */
#ifndef CMESH_CONTROL_LOGFILE_H
#define CMESH_CONTROL_LOGFILE_H

#include <stddef.h>

/* When the file open as fd (path) reached max bytes: path.1 .. path.(keep-1) move up one,
 * the bytes are copied to path.1 and the file is truncated (logrotate's copytruncate: the
 * instance holds the file with O_APPEND, so its next write lands at offset 0; lines
 * written between the copy and the truncate are lost, at most a few). */
void cm_logfile_rotate(int fd, const char *path, size_t max, int keep);
/* The last `lines` lines of path (of its last 4 KiB); NULL when it cannot be read.
 * Caller frees. */
char *cm_logfile_tail(const char *path, int lines);

#endif
