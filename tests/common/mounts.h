/* tests/common/mounts.h: small real filesystems for the store's failure tests: a tmpfs
 * that fills up (disk full) and a read-only bind mount. Everything is mounted in a
 * private mount namespace of the calling test process: no other process on the machine
 * sees it, the processes the test starts inherit it, and it disappears with them even
 * when a test dies. Root mounts directly; anyone else gets a user namespace, where
 * tmpfs and bind mounts are allowed. Header-only (static inline): no build change. */
#ifndef CMESH_TESTS_MOUNTS_H
#define CMESH_TESTS_MOUNTS_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static inline int mounts_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n == (ssize_t)strlen(text) ? 0 : -errno;
    close(fd);
    return err;
}

/* Enters a private mount namespace once per process. Returns 0 or -errno (the caller
 * skips the test: this machine lets it mount nothing). */
static inline int mounts_private(void)
{
    static int done;
    if (done)
        return 0;
    if (unshare(CLONE_NEWNS) < 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
            return -errno;
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        int err = mounts_write_file("/proc/self/uid_map", map);
        mounts_write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (err == 0)
            err = mounts_write_file("/proc/self/gid_map", map);
        if (err < 0)
            return err;
    }
    /* the new namespace shares propagation with the old: cut it, or mounts leak out */
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    done = 1;
    return 0;
}

/* A tmpfs of size bytes on the existing directory dir. Returns 0 or -errno. */
static inline int mounts_tmpfs(const char *dir, size_t size)
{
    int err = mounts_private();
    if (err < 0)
        return err;
    char opt[64];
    snprintf(opt, sizeof opt, "size=%zu,mode=0755", size);
    return mount("tmpfs", dir, "tmpfs", 0, opt) < 0 ? -errno : 0;
}

/* dir, seen read-only at ro (an existing directory). Returns 0 or -errno. */
static inline int mounts_bind_ro(const char *dir, const char *ro)
{
    int err = mounts_private();
    if (err < 0)
        return err;
    if (mount(dir, ro, NULL, MS_BIND, NULL) < 0)
        return -errno;
    if (mount(NULL, ro, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
        err = -errno;
        umount2(ro, MNT_DETACH);
        return err;
    }
    return 0;
}

/* Lazy unmount: works while files are still open (a process being stopped). */
static inline void mounts_unmount(const char *dir)
{
    umount2(dir, MNT_DETACH);
}

/* Writes a file in dir until the filesystem is full. Returns the bytes written. */
static inline long mounts_fill(const char *path)
{
    static char block[4096];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -errno;
    long total = 0;
    ssize_t n;
    while ((n = write(fd, block, sizeof block)) > 0)
        total += n;
    while ((n = write(fd, block, 1)) > 0) /* the last partial page */
        total += n;
    close(fd);
    return total;
}

#endif
