/*
 * The native layer applier: a layer blob (gzip or plain tar) read from a file,
 * decompressed, hashed twice (the blob's digest, the tar's diff id) and extracted into
 * a root directory with the semantics of core/tar/apply.ts. Pure C, no Node-API: it
 * runs on a libuv pool thread (berth_native.c's applyLayer) and reports through
 * struct layer_result.
 */
#ifndef BERTH_LAYER_APPLY_H
#define BERTH_LAYER_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How failures map onto BerthError kinds on the JS side. */
enum layer_error_kind {
    LAYER_OK = 0,
    LAYER_INVALID,     /* the layer does not fit (bad tar, escape attempt, corrupt gzip): invalid argument */
    LAYER_SYSTEM,      /* anything else the system refused: unknown */
    LAYER_UNSUPPORTED, /* openat2 missing: the caller falls back to the JS applier; nothing was written */
    LAYER_CANCELLED,   /* the caller set *cancel: stopped between entries */
};

struct layer_error {
    enum layer_error_kind kind;
    char code[16]; /* errno name ("EEXIST") when an errno caused it, else "" */
    char message[2048];
};

struct layer_options {
    const char *blob;  /* the layer blob file */
    bool gzip;         /* else a plain tar */
    const char *root;  /* existing directory extracted into */
    bool overlay;      /* overlayfs whiteouts (char 0:0, opaque xattr) rather than deletions */
    const char *const *lowers; /* overlay mode: lower dirs, topmost first, for copied-up parents */
    size_t lower_count;
    /* Read between entries: non-zero stops the apply (the caller went away). May be NULL. */
    const int32_t *cancel;
    /*
     * Not 0: the blob file is still being written (a download's ingest) and will hold
     * this many bytes. Reads stop there, and wait at the file's end until more arrive;
     * the file losing its last link (the download was aborted), shrinking, or *cancel
     * ends the wait with a failure.
     */
    uint64_t growing_size;
};

struct layer_result {
    char blob_digest[72]; /* "sha256:<hex>" of every byte of the blob file */
    uint64_t blob_size;
    char diff_id[72];     /* "sha256:<hex>" of the uncompressed tar, trailing bytes included */
    uint64_t tar_size;
    uint64_t entries;
    char **warnings;      /* malloc'd strings; layer_result_free releases them */
    size_t warning_count;
    bool warnings_dropped;
    /*
     * Overlay mode: the directories made for entries below them that the layer does not
     * carry and that no lower dir had metadata for (real paths relative to the root;
     * malloc'd, released by layer_result_free). core/tar/apply.ts says why.
     */
    char **copy_up_dirs;
    size_t copy_up_dir_count;
    struct layer_error error;
};

/*
 * Applies the layer. Always fills blob_digest/blob_size when the blob could be read to
 * its end, even after an extraction error: the caller checks the bytes first, since
 * corrupt bytes may be what made extraction fail. Returns false on failure (see error).
 */
bool layer_apply(const struct layer_options *options, struct layer_result *result);

void layer_result_free(struct layer_result *result);

#endif
