/*
 * Moving stdio between the container and its clients without ever blocking the shim:
 * every fd here is non-blocking, and a stream that cannot move its bytes on keeps them
 * in its buffer and stops reading until they are gone — back-pressure instead of loss.
 */
#ifndef BERTH_SHIM_RELAY_H
#define BERTH_SHIM_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "logfile.h"

/* Container output (a pipe, or the pty master) copied to the log file and a client FIFO. */
struct output_stream {
    const char *name;
    int source;       /* -1 when absent */
    bool owns_source; /* false for the pty master, which stdin shares */
    bool eof;
    int fifo;         /* -1 when there is none or it failed */
    const struct log_file *log; /* shared by both streams; reopen-log swaps its fd */
    size_t pending_at, pending_length;
    char buffer[16384];
};

/* Client stdin FIFO copied to the container's stdin (a pipe, or the pty master). */
struct input_stream {
    int fifo;       /* -1 when there is none or it has been closed */
    int sink;
    bool owns_sink;
    bool closing;   /* told to close: forward what is already in the FIFO, then close */
    size_t pending_at, pending_length;
    char buffer[4096];
};

void output_pump(struct output_stream *stream);
/* The fd and poll events the stream waits on; false when it waits on nothing. */
bool output_interest(const struct output_stream *stream, int *fd, short *events);
bool output_finished(const struct output_stream *stream);
void output_close(struct output_stream *stream);

void input_pump(struct input_stream *stream);
bool input_interest(const struct input_stream *stream, int *fd, short *events);
/* Stops relaying at once, dropping what is buffered (the container is gone). */
void input_close(struct input_stream *stream);

#endif
