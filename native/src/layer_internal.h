/* The parts of the native layer applier, shared between its files (not exported to JS). */
#ifndef BERTH_LAYER_INTERNAL_H
#define BERTH_LAYER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "layer_apply.h"

/* ---- errors (layer_error.c) ---- */

/* Sets err (kind, and the errno name when errnum is not 0) from a printf format. */
__attribute__((format(printf, 4, 5)))
void layer_fail(struct layer_error *err, enum layer_error_kind kind, int errnum, const char *fmt, ...);

/* Sets err from a failed syscall: "<prefix>: ENOENT: no such file or directory, <syscall> \"<path>\"". */
void layer_fail_errno(struct layer_error *err, int errnum, const char *syscall, const char *path);

/* Puts "prefix: " in front of err's message (an entry's name, say). */
void layer_error_prefix(struct layer_error *err, const char *prefix);

/*
 * A name as JS's displayPath shows it: double-quoted, JSON-escaped, cut after 256
 * bytes with "…". Writes at most size bytes (NUL included) to out.
 */
void layer_quote(char *out, size_t size, const char *name, size_t length);

/* The errno name ("ENOENT") for errnum, or "UNKNOWN". */
const char *layer_errno_name(int errnum);

/* ---- the blob, decompressed and hashed (layer_source.c) ---- */

struct layer_source {
    int fd;
    bool gzip;
    bool z_ready;
    bool member_ended;   /* inflate reached the end of a gzip member */
    bool input_ended;    /* read() returned 0 */
    bool output_ended;   /* no decompressed bytes will follow */
    z_stream z;
    unsigned char *in;
    size_t in_capacity;
    unsigned char *out;
    size_t out_capacity, out_pos, out_len;
    EVP_MD_CTX *blob_hash;
    EVP_MD_CTX *tar_hash; /* NULL for a plain tar: the tar is the blob */
    uint64_t blob_size, tar_size;
    /* A growing blob (layer_options.growing_size): its final size, and the inotify fd its waits use. */
    uint64_t growing_size;
    int notify_fd;
    const int32_t *cancel;
};

/* options->blob opened as options->gzip, growing_size and cancel say. */
bool source_open(struct layer_source *src, const struct layer_options *options, struct layer_error *err);
void source_close(struct layer_source *src);

/* Exactly n bytes into buf: 1 = read, 0 = clean end before any byte, -1 = error (a partial read is one: what names it). */
int source_read_exact(struct layer_source *src, void *buf, size_t n, const char *what, struct layer_error *err);

/* Up to max bytes in place (valid until the next call): the count, 0 at the end, -1 on error. */
ssize_t source_read_some(struct layer_source *src, size_t max, const unsigned char **data, struct layer_error *err);

/* Skips n bytes; false at the end (err unset) or on error (err set). */
bool source_skip(struct layer_source *src, uint64_t n, struct layer_error *err);

/* Reads and hashes all remaining decompressed bytes, then the rest of the blob. */
bool source_drain(struct layer_source *src, struct layer_error *err);

/* Hashes the rest of the blob file without decompressing it (after a failure, so its digest can be checked). */
bool source_drain_blob(struct layer_source *src, struct layer_error *err);

/* The hex digests, once drained. */
bool source_digests(struct layer_source *src, char *blob_digest, char *diff_id, struct layer_error *err);

/* ---- tar headers (layer_tar.c) ---- */

enum tar_type { TAR_FILE, TAR_LINK, TAR_SYMLINK, TAR_CHAR, TAR_BLOCK, TAR_DIR, TAR_FIFO };

struct tar_xattr {
    char *name;
    unsigned char *value;
    size_t length;
};

/* A PAX record set: keys in first-seen order, later values replace earlier ones, empty values delete. */
struct pax_record {
    char *key;
    unsigned char *value;
    size_t length;
};

struct tar_entry {
    enum tar_type type;
    char *name; /* exact bytes, NUL-terminated; may hold a NUL from PAX (name_length says) */
    size_t name_length;
    char *linkname;
    size_t linkname_length;
    uint32_t mode; /* 07777 bits */
    int64_t uid, gid;
    int64_t size; /* data bytes that follow (0 unless TAR_FILE) */
    double mtime;
    bool has_atime;
    double atime;
    int64_t devmajor, devminor;
    struct tar_xattr *xattrs;
    size_t xattr_count;
};

struct tar_reader {
    struct layer_source *src;
    uint64_t archive_extended;
    uint64_t data_left;  /* of the current entry's data */
    uint64_t padding;    /* after it */
    char display[300];   /* the current entry's name, quoted, for messages */
};

void tar_entry_free(struct tar_entry *entry);

/* 1 = an entry (free it with tar_entry_free), 0 = end of archive, -1 = error. Skips what the previous entry left unread. */
int tar_next(struct tar_reader *reader, struct tar_entry *entry, struct layer_error *err);

/* The current entry's data: as source_read_some, 0 at its end; a truncated archive is an error. */
ssize_t tar_read_data(struct tar_reader *reader, const unsigned char **data, struct layer_error *err);

#endif
