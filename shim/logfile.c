#define _GNU_SOURCE
#include "logfile.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* Escaped text is staged here and written in pieces: escaping can grow it sixfold. */
struct staging {
    int fd;
    bool ok;
    size_t used;
    char buffer[4096];
};

static void stage_flush(struct staging *out)
{
    if (out->ok && out->used > 0 && !write_all(out->fd, out->buffer, out->used))
        out->ok = false;
    out->used = 0;
}

static void stage(struct staging *out, const char *text, size_t length)
{
    while (length > 0) {
        if (out->used == sizeof out->buffer)
            stage_flush(out);
        size_t room = sizeof out->buffer - out->used;
        size_t n = length < room ? length : room;
        memcpy(out->buffer + out->used, text, n);
        out->used += n;
        text += n;
        length -= n;
    }
}

/* JSON string contents: quote, backslash and control bytes escaped; other bytes as they are. */
static void stage_escaped(struct staging *out, const char *text, size_t length)
{
    size_t plain = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        stage(out, text + plain, i - plain);
        char escape[8];
        switch (c) {
        case '"': stage(out, "\\\"", 2); break;
        case '\\': stage(out, "\\\\", 2); break;
        case '\n': stage(out, "\\n", 2); break;
        case '\r': stage(out, "\\r", 2); break;
        case '\t': stage(out, "\\t", 2); break;
        default:
            snprintf(escape, sizeof escape, "\\u%04x", c);
            stage(out, escape, 6);
        }
        plain = i + 1;
    }
    stage(out, text + plain, length - plain);
}

/* One record per line; a chunk's unterminated tail is a record of its own, as in Docker's json-file. */
static bool append_json(int fd, const char *stream, const char *data, size_t length)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        now = (struct timespec){ 0, 0 };
    char when[64];
    format_rfc3339(&now, when, sizeof when);
    char suffix[128];
    int suffix_length = snprintf(suffix, sizeof suffix, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, when);
    if (suffix_length < 0 || (size_t)suffix_length >= sizeof suffix)
        suffix_length = 0;
    struct staging out = { .fd = fd, .ok = true };
    while (length > 0) {
        const char *newline = memchr(data, '\n', length);
        size_t line = newline != NULL ? (size_t)(newline - data) + 1 : length;
        stage(&out, "{\"log\":\"", 8);
        stage_escaped(&out, data, line);
        stage(&out, suffix, (size_t)suffix_length);
        data += line;
        length -= line;
    }
    stage_flush(&out);
    return out.ok;
}

bool log_append(const struct log_file *log, const char *stream, const char *data, size_t length)
{
    if (log->fd < 0 || length == 0)
        return true;
    if (log->format == LOG_FORMAT_JSON)
        return append_json(log->fd, stream, data, length);
    return write_all(log->fd, data, length);
}
