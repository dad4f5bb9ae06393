/* core/sock.h: the one socket call the hot paths make themselves.
 * libuv writes with write(2); send(2) skips the VFS layer (file position lock, permission
 * hooks) that a socket never needs, which is measurable at tens of thousands of small
 * answers a second. Only valid while libuv has no write of its own queued on the socket. */
#ifndef CMESH_CORE_SOCK_H
#define CMESH_CORE_SOCK_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Sends what the socket takes now. Returns the bytes sent (maybe fewer than len) or a
 * negative errno: -EAGAIN when it takes nothing now, -EPIPE/-ECONNRESET when the peer
 * is gone (no SIGPIPE), -EBADF for fd -1. */
static inline ssize_t cm_sock_send(int fd, const void *data, size_t len)
{
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n >= 0 ? n : -errno;
}

#endif
