/*
 * The --log file: output appended raw (what ctr's file:// log URI expects), or as JSON
 * lines that keep each stream and the time it was read apart (what `docker logs` needs):
 *   {"log":"text\n","stream":"stdout","time":"2026-11-30T05:26:13.164770693Z"}
 */
#ifndef BERTH_SHIM_LOGFILE_H
#define BERTH_SHIM_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>

enum log_format { LOG_FORMAT_RAW, LOG_FORMAT_JSON };

struct log_file {
    int fd; /* -1: no log */
    enum log_format format;
};

/* Appends one read's worth of a stream's output; false with errno set on a failed write. */
bool log_append(const struct log_file *log, const char *stream, const char *data, size_t length);

#endif
