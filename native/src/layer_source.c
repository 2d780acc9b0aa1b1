/*
 * A layer blob as a stream of tar bytes: read from its file, inflated when gzip
 * (members one after another, trailing zero padding ignored, as Node's gunzip does),
 * and hashed on the way — the blob's bytes for its digest, the tar's for the diff id.
 * zlib and libcrypto are the node binary's own (it exports both).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layer_internal.h"

#define INPUT_CAPACITY (256 * 1024)
#define OUTPUT_CAPACITY (256 * 1024)

/*
 * How long a wait for more bytes sleeps at most when no inotify event comes: the
 * cancel flag is only read between waits, so this bounds how late a cancel is seen.
 */
#define GROW_POLL_MS 50

bool source_open(struct layer_source *src, const struct layer_options *options, struct layer_error *err)
{
    const char *path = options->blob;
    bool gzip = options->gzip;
    memset(src, 0, sizeof *src);
    src->fd = -1;
    src->notify_fd = -1;
    src->gzip = gzip;
    src->growing_size = options->growing_size;
    src->cancel = options->cancel;
    src->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0) {
        layer_fail_errno(err, errno, "open", path);
        err->kind = LAYER_SYSTEM;
        return false;
    }
    if (src->growing_size > 0) {
        /* The writer's appends wake a wait at the file's end (IN_MODIFY), and so does its unlink (IN_ATTRIB). */
        src->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (src->notify_fd < 0) {
            layer_fail_errno(err, errno, "inotify_init1", path);
            err->kind = LAYER_SYSTEM;
            return false;
        }
        if (inotify_add_watch(src->notify_fd, path, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE) < 0) {
            layer_fail_errno(err, errno, "inotify_add_watch", path);
            err->kind = LAYER_SYSTEM;
            return false;
        }
    }
    /* One read-ahead hint: the whole blob is read once, front to back. */
    (void)posix_fadvise(src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    src->out_capacity = OUTPUT_CAPACITY;
    src->out = malloc(src->out_capacity);
    src->blob_hash = EVP_MD_CTX_new();
    if (src->out == NULL || src->blob_hash == NULL || EVP_DigestInit_ex(src->blob_hash, EVP_sha256(), NULL) != 1)
        goto no_memory;
    if (gzip) {
        src->in_capacity = INPUT_CAPACITY;
        src->in = malloc(src->in_capacity);
        src->tar_hash = EVP_MD_CTX_new();
        if (src->in == NULL || src->tar_hash == NULL || EVP_DigestInit_ex(src->tar_hash, EVP_sha256(), NULL) != 1)
            goto no_memory;
        /* 16 + 15: a gzip wrapper and the largest window. */
        int rc = inflateInit2(&src->z, 16 + MAX_WBITS);
        if (rc != Z_OK) {
            layer_fail(err, LAYER_SYSTEM, 0, "inflateInit2 failed: %s", zError(rc));
            return false;
        }
        src->z_ready = true;
    }
    return true;
no_memory:
    layer_fail(err, LAYER_SYSTEM, ENOMEM, "out of memory setting up the layer reader");
    return false;
}

void source_close(struct layer_source *src)
{
    if (src->fd >= 0)
        close(src->fd);
    src->fd = -1;
    if (src->notify_fd >= 0)
        close(src->notify_fd);
    src->notify_fd = -1;
    if (src->z_ready)
        inflateEnd(&src->z);
    src->z_ready = false;
    free(src->in);
    free(src->out);
    src->in = src->out = NULL;
    EVP_MD_CTX_free(src->blob_hash);
    EVP_MD_CTX_free(src->tar_hash);
    src->blob_hash = src->tar_hash = NULL;
}

/*
 * At the end of a growing blob's bytes so far: returns once the file holds more than
 * blob_size bytes; false (err set) when it never will (unlinked, shrunk) or on cancel.
 */
static bool wait_for_growth(struct layer_source *src, struct layer_error *err)
{
    for (;;) {
        if (src->cancel != NULL && __atomic_load_n(src->cancel, __ATOMIC_RELAXED) != 0) {
            layer_fail(err, LAYER_CANCELLED, 0, "cancelled");
            return false;
        }
        struct stat st;
        if (fstat(src->fd, &st) < 0) {
            layer_fail_errno(err, errno, "fstat", "layer blob");
            err->kind = LAYER_SYSTEM;
            return false;
        }
        if ((uint64_t)st.st_size > src->blob_size)
            return true;
        if ((uint64_t)st.st_size < src->blob_size) {
            layer_fail(err, LAYER_INVALID, 0, "the blob being downloaded shrank from %llu to %llu bytes (its download restarted)",
                       (unsigned long long)src->blob_size, (unsigned long long)st.st_size);
            return false;
        }
        /* Committed blobs keep their link (the ingest is renamed): no link left means the download was given up. */
        if (st.st_nlink == 0) {
            layer_fail(err, LAYER_INVALID, 0, "the download was aborted at byte %llu of %llu (its ingest was removed)",
                       (unsigned long long)src->blob_size, (unsigned long long)src->growing_size);
            return false;
        }
        struct pollfd pfd = { .fd = src->notify_fd, .events = POLLIN };
        int ready = poll(&pfd, 1, GROW_POLL_MS);
        if (ready < 0 && errno != EINTR) {
            layer_fail_errno(err, errno, "poll", "layer blob");
            err->kind = LAYER_SYSTEM;
            return false;
        }
        if (ready > 0) {
            /* The events only wake us: the file's size says what happened. */
            char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
            while (read(src->notify_fd, events, sizeof events) > 0)
                ;
            if (errno != EAGAIN && errno != EINTR) {
                layer_fail_errno(err, errno, "read", "inotify");
                err->kind = LAYER_SYSTEM;
                return false;
            }
        }
    }
}

/* Reads blob bytes into buf and hashes them: the count, 0 at the end of the blob, -1 on error. */
static ssize_t read_blob(struct layer_source *src, unsigned char *buf, size_t size, struct layer_error *err)
{
    if (src->growing_size > 0) {
        /* Never past the stated size: a longer file is the writer's error to report. */
        uint64_t left = src->growing_size - src->blob_size;
        if (left == 0) {
            src->input_ended = true;
            return 0;
        }
        if (size > left)
            size = (size_t)left;
    }
    ssize_t n;
    for (;;) {
        do
            n = read(src->fd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n != 0 || src->growing_size == 0)
            break;
        if (!wait_for_growth(src, err))
            return -1;
    }
    if (n < 0) {
        layer_fail_errno(err, errno, "read", "layer blob");
        err->kind = LAYER_SYSTEM;
        return -1;
    }
    if (n == 0) {
        src->input_ended = true;
        return 0;
    }
    if (EVP_DigestUpdate(src->blob_hash, buf, (size_t)n) != 1) {
        layer_fail(err, LAYER_SYSTEM, 0, "sha256 of the layer blob failed");
        return -1;
    }
    src->blob_size += (uint64_t)n;
    return n;
}

static bool corrupt(struct layer_source *src, int rc, struct layer_error *err)
{
    const char *reason = src->z.msg != NULL ? src->z.msg : zError(rc);
    layer_fail(err, LAYER_INVALID, 0, "corrupt gzip data: %s", reason);
    return false;
}

/* Makes decompressed bytes available (out_pos < out_len) unless the stream has ended. */
static bool fill(struct layer_source *src, struct layer_error *err)
{
    while (src->out_pos == src->out_len && !src->output_ended) {
        src->out_pos = src->out_len = 0;
        if (!src->gzip) {
            ssize_t n = read_blob(src, src->out, src->out_capacity, err);
            if (n < 0)
                return false;
            if (n == 0)
                src->output_ended = true;
            src->out_len = (size_t)n;
            src->tar_size += (uint64_t)n;
            continue;
        }
        if (src->z.avail_in == 0 && !src->input_ended) {
            ssize_t n = read_blob(src, src->in, src->in_capacity, err);
            if (n < 0)
                return false;
            src->z.next_in = src->in;
            src->z.avail_in = (uInt)n;
            continue;
        }
        if (src->member_ended) {
            if (src->z.avail_in == 0) {
                src->output_ended = true;
                continue;
            }
            /* Zero bytes after a member are padding; anything else must be the next member. */
            if (src->z.next_in[0] == 0) {
                src->output_ended = true;
                continue;
            }
            int rc = inflateReset(&src->z);
            if (rc != Z_OK)
                return corrupt(src, rc, err);
            src->member_ended = false;
        }
        src->z.next_out = src->out;
        src->z.avail_out = (uInt)src->out_capacity;
        int rc = inflate(&src->z, Z_NO_FLUSH);
        size_t produced = src->out_capacity - src->z.avail_out;
        if (rc == Z_STREAM_END) {
            src->member_ended = true;
        } else if (rc == Z_BUF_ERROR || (rc == Z_OK && produced == 0 && src->z.avail_in == 0 && src->input_ended)) {
            /* No progress with all input consumed: the blob ends inside a member. */
            if (src->input_ended && src->z.avail_in == 0) {
                layer_fail(err, LAYER_INVALID, 0, "corrupt gzip data: unexpected end of file");
                return false;
            }
        } else if (rc != Z_OK) {
            return corrupt(src, rc, err);
        }
        if (produced > 0) {
            if (EVP_DigestUpdate(src->tar_hash, src->out, produced) != 1) {
                layer_fail(err, LAYER_SYSTEM, 0, "sha256 of the layer tar failed");
                return false;
            }
            src->tar_size += produced;
            src->out_len = produced;
        }
    }
    return true;
}

int source_read_exact(struct layer_source *src, void *buf, size_t n, const char *what, struct layer_error *err)
{
    unsigned char *to = buf;
    size_t have = 0;
    while (have < n) {
        if (!fill(src, err))
            return -1;
        if (src->out_pos == src->out_len) {
            if (have == 0)
                return 0;
            layer_fail(err, LAYER_INVALID, 0, "tar: unexpected end of archive in a %s (truncated layer)", what);
            return -1;
        }
        size_t take = src->out_len - src->out_pos;
        if (take > n - have)
            take = n - have;
        memcpy(to + have, src->out + src->out_pos, take);
        src->out_pos += take;
        have += take;
    }
    return 1;
}

ssize_t source_read_some(struct layer_source *src, size_t max, const unsigned char **data, struct layer_error *err)
{
    if (!fill(src, err))
        return -1;
    size_t take = src->out_len - src->out_pos;
    if (take > max)
        take = max;
    *data = src->out + src->out_pos;
    src->out_pos += take;
    return (ssize_t)take;
}

bool source_skip(struct layer_source *src, uint64_t n, struct layer_error *err)
{
    err->kind = LAYER_OK;
    while (n > 0) {
        const unsigned char *data;
        ssize_t got = source_read_some(src, n > SIZE_MAX ? SIZE_MAX : (size_t)n, &data, err);
        if (got <= 0)
            return false;
        n -= (uint64_t)got;
    }
    return true;
}

bool source_drain_blob(struct layer_source *src, struct layer_error *err)
{
    unsigned char *buf = src->gzip ? src->in : src->out;
    size_t size = src->gzip ? src->in_capacity : src->out_capacity;
    /* Bytes already read into the input buffer were hashed when read. */
    src->z.avail_in = 0;
    src->out_pos = src->out_len = 0;
    while (!src->input_ended) {
        if (read_blob(src, buf, size, err) < 0)
            return false;
    }
    return true;
}

bool source_drain(struct layer_source *src, struct layer_error *err)
{
    for (;;) {
        const unsigned char *data;
        ssize_t got = source_read_some(src, SIZE_MAX, &data, err);
        if (got < 0)
            return false;
        if (got == 0)
            break;
    }
    /* Past trailing padding, or a plain tar (already at the end). */
    return source_drain_blob(src, err);
}

static bool hex_digest(EVP_MD_CTX *ctx, char *out, struct layer_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(ctx, md, &length) != 1 || length != 32) {
        layer_fail(err, LAYER_SYSTEM, 0, "sha256 finalisation failed");
        return false;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < length; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[7 + 2 * length] = '\0';
    return true;
}

bool source_digests(struct layer_source *src, char *blob_digest, char *diff_id, struct layer_error *err)
{
    if (!hex_digest(src->blob_hash, blob_digest, err))
        return false;
    if (diff_id == NULL)
        return true;
    if (src->tar_hash == NULL) {
        memcpy(diff_id, blob_digest, 72);
        return true;
    }
    return hex_digest(src->tar_hash, diff_id, err);
}
