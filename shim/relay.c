#define _GNU_SOURCE
#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "util.h"

/* Bounds one pump call so a chatty stream cannot starve the others (or SIGCHLD). */
#define PUMP_ROUNDS 16

/* Pushes pending bytes into the FIFO; false while some remain (the FIFO is full). */
static bool output_flush(struct output_stream *stream)
{
    while (stream->pending_length > 0) {
        if (stream->fifo < 0) {
            stream->pending_length = 0;
            break;
        }
        ssize_t n = write(stream->fifo, stream->buffer + stream->pending_at, stream->pending_length);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return false;
            diag("%s: writing the FIFO failed (%m); dropping it", stream->name);
            close_quietly(stream->fifo);
            stream->fifo = -1;
            continue;
        }
        stream->pending_at += (size_t)n;
        stream->pending_length -= (size_t)n;
    }
    stream->pending_at = 0;
    return true;
}

static void output_end(struct output_stream *stream)
{
    stream->eof = true;
    if (stream->owns_source)
        close_quietly(stream->source);
    stream->source = -1;
}

void output_pump(struct output_stream *stream)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (!output_flush(stream) || stream->source < 0)
            return;
        ssize_t n = read(stream->source, stream->buffer, sizeof stream->buffer);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            /* A pty master reads EIO once every slave fd is closed: that is its EOF. */
            if (errno != EIO)
                diag("%s: reading the container's output failed (%m)", stream->name);
            output_end(stream);
            return;
        }
        if (n == 0) {
            output_end(stream);
            return;
        }
        if (!log_append(stream->log, stream->name, stream->buffer, (size_t)n))
            diag("%s: writing the log failed (%m)", stream->name);
        stream->pending_at = 0;
        stream->pending_length = stream->fifo >= 0 ? (size_t)n : 0;
    }
}

bool output_interest(const struct output_stream *stream, int *fd, short *events)
{
    if (stream->pending_length > 0 && stream->fifo >= 0) {
        *fd = stream->fifo;
        *events = POLLOUT;
        return true;
    }
    if (stream->source >= 0) {
        *fd = stream->source;
        *events = POLLIN;
        return true;
    }
    return false;
}

bool output_finished(const struct output_stream *stream)
{
    return stream->source < 0 && (stream->pending_length == 0 || stream->fifo < 0);
}

void output_close(struct output_stream *stream)
{
    if (stream->owns_source)
        close_quietly(stream->source);
    stream->source = -1;
    close_quietly(stream->fifo);
    stream->fifo = -1;
    stream->pending_length = 0;
}

void input_close(struct input_stream *stream)
{
    close_quietly(stream->fifo);
    stream->fifo = -1;
    if (stream->owns_sink)
        close_quietly(stream->sink);
    stream->sink = -1;
    stream->pending_length = 0;
}

void input_pump(struct input_stream *stream)
{
    for (int round = 0; round < PUMP_ROUNDS && stream->fifo >= 0; round++) {
        while (stream->pending_length > 0) {
            ssize_t n = write(stream->sink, stream->buffer + stream->pending_at, stream->pending_length);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    return;
                /* EPIPE: the container closed its stdin; nothing more can reach it. */
                if (errno != EPIPE)
                    diag("stdin: writing to the container failed (%m)");
                input_close(stream);
                return;
            }
            stream->pending_at += (size_t)n;
            stream->pending_length -= (size_t)n;
        }
        ssize_t n = read(stream->fifo, stream->buffer, sizeof stream->buffer);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* Everything written before close-stdin has been forwarded. */
                if (stream->closing)
                    input_close(stream);
                return;
            }
            diag("stdin: reading the FIFO failed (%m)");
            input_close(stream);
            return;
        }
        /* The shim holds a write end itself, so 0 means the FIFO was replaced under it. */
        if (n == 0) {
            input_close(stream);
            return;
        }
        stream->pending_at = 0;
        stream->pending_length = (size_t)n;
    }
}

bool input_interest(const struct input_stream *stream, int *fd, short *events)
{
    if (stream->fifo < 0)
        return false;
    if (stream->pending_length > 0) {
        *fd = stream->sink;
        *events = POLLOUT;
    } else {
        *fd = stream->fifo;
        *events = POLLIN;
    }
    return true;
}
