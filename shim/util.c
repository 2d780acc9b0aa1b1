#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool write_all(int fd, const void *data, size_t length)
{
    const char *at = data;
    while (length > 0) {
        ssize_t n = write(fd, at, length);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        at += n;
        length -= (size_t)n;
    }
    return true;
}

bool write_file_atomic(int dirfd, const char *name, const void *data, size_t length, bool durable)
{
    char temp[256];
    int needed = snprintf(temp, sizeof temp, "%s.tmp", name);
    if (needed < 0 || (size_t)needed >= sizeof temp) {
        errno = ENAMETOOLONG;
        return false;
    }
    int fd = openat(dirfd, temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return false;
    if (!write_all(fd, data, length) || renameat(dirfd, temp, dirfd, name) != 0) {
        int saved = errno;
        close(fd);
        unlinkat(dirfd, temp, 0);
        errno = saved;
        return false;
    }
    /*
     * Synced after the rename, not before: a reader waiting for the file learns of it
     * without waiting for the disk (an fsync costs milliseconds on a busy one). The
     * rename still comes after the whole write, so no reader sees part of the file while
     * the machine runs; only a crash of the machine before these syncs can leave name
     * empty, and readers take that as no file.
     */
    if (durable && fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return false;
    }
    if (close(fd) != 0)
        return false;
    return !durable || fsync(dirfd) == 0;
}

static int diag_fd = -1;

void diag_open(int dirfd)
{
    diag_fd = openat(dirfd, "shim.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
}

void diag_close(void)
{
    close_quietly(diag_fd);
    diag_fd = -1;
}

void diag(const char *fmt, ...)
{
    if (diag_fd < 0)
        return;
    int saved = errno;
    char line[1024];
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        now = (struct timespec){ 0, 0 };
    format_rfc3339(&now, line, sizeof line);
    size_t used = strlen(line);
    line[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + used, sizeof line - used - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    used += (size_t)n < sizeof line - used - 1 ? (size_t)n : sizeof line - used - 2;
    line[used++] = '\n';
    /* Nowhere left to report a failed diagnostic write. */
    (void)write_all(diag_fd, line, used);
    errno = saved;
}

void format_rfc3339(const struct timespec *when, char *out, size_t size)
{
    struct tm utc;
    if (size == 0)
        return;
    out[0] = '\0';
    if (gmtime_r(&when->tv_sec, &utc) == NULL)
        return;
    char seconds[32];
    if (strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &utc) == 0)
        return;
    snprintf(out, size, "%s.%09ldZ", seconds, when->tv_nsec);
}

bool set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void close_quietly(int fd)
{
    if (fd < 0)
        return;
    int saved = errno;
    close(fd);
    errno = saved;
}
