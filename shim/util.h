/* Small helpers the shim's modules share: whole writes, crash-safe files, its own log. */
#ifndef BERTH_SHIM_UTIL_H
#define BERTH_SHIM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Writes all of data to a blocking fd, retrying EINTR and short writes. */
bool write_all(int fd, const void *data, size_t length);

/*
 * Replaces dirfd/name with data so a reader sees either no file or the whole new one:
 * write name.tmp, rename over name. With durable, also fsync the file and the directory
 * after the rename, so the file survives a crash of the machine too (one in between can
 * leave name empty: a reader must take an empty or unparsable file as missing).
 */
bool write_file_atomic(int dirfd, const char *name, const void *data, size_t length, bool durable);

/* The shim's own diagnostics go to shim.log in its state dir (its stderr is /dev/null). */
void diag_open(int dirfd);
void diag_close(void);
__attribute__((format(printf, 1, 2))) void diag(const char *fmt, ...);

/* RFC 3339 UTC with nanoseconds: 2006-01-02T15:04:05.999999999Z. */
void format_rfc3339(const struct timespec *when, char *out, size_t size);

bool set_nonblocking(int fd);

/* close(2) that keeps errno and ignores -1, for cleanup paths. */
void close_quietly(int fd);

#endif
