/*
 * Extracts a layer's tar entries into a root directory with the semantics of
 * core/tar/apply.ts (read that file for the why of each rule): names cleaned
 * lexically, existing paths replaced unless directory meets directory, directory times
 * set last, whiteouts as deletions or as overlayfs whiteouts, missing parents created
 * (in overlay mode with the metadata of the lower dirs, as a copy-up would give).
 *
 * Every path is resolved by the kernel inside the root: openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) from the root's fd, so ".." and symlinks (absolute or not)
 * land on the root again, never outside it, whatever the layer did before. Every
 * change is then made with an *at() call on the resolved parent's fd and a single
 * name that is neither "." nor "..".
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layer_internal.h"

#define MAX_SYMLINKS 255
#define MAX_WARNINGS 64

static const char whiteout_prefix[] = ".wh.";
static const char whiteout_meta_prefix[] = ".wh..wh.";
static const char whiteout_opaque[] = ".wh..wh..opq";
static const char overlay_xattr_prefix[] = "trusted.overlay.";
static const char overlay_opaque_xattr[] = "trusted.overlay.opaque";

/* ---- a string set: what this layer wrote, keyed by (parent dir inode, name) ---- */

struct name_set {
    char **slots;
    size_t capacity, count;
};

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static bool set_contains(const struct name_set *set, const char *key)
{
    if (set->capacity == 0)
        return false;
    for (size_t i = hash_key(key) & (set->capacity - 1);; i = (i + 1) & (set->capacity - 1)) {
        if (set->slots[i] == NULL)
            return false;
        if (strcmp(set->slots[i], key) == 0)
            return true;
    }
}

static bool set_insert_owned(struct name_set *set, char *key)
{
    if ((set->count + 1) * 2 > set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 256;
        char **slots = calloc(capacity, sizeof *slots);
        if (slots == NULL)
            return false;
        for (size_t j = 0; j < set->capacity; j++) {
            char *old = set->slots[j];
            if (old == NULL)
                continue;
            size_t i = hash_key(old) & (capacity - 1);
            while (slots[i] != NULL)
                i = (i + 1) & (capacity - 1);
            slots[i] = old;
        }
        free(set->slots);
        set->slots = slots;
        set->capacity = capacity;
    }
    size_t i = hash_key(key) & (set->capacity - 1);
    while (set->slots[i] != NULL) {
        if (strcmp(set->slots[i], key) == 0) {
            free(key);
            return true;
        }
        i = (i + 1) & (set->capacity - 1);
    }
    set->slots[i] = key;
    set->count++;
    return true;
}

static void set_free(struct name_set *set)
{
    for (size_t i = 0; i < set->capacity; i++)
        free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof *set);
}

static char *name_key(dev_t dev, ino_t ino, const char *name)
{
    char *key = NULL;
    if (asprintf(&key, "%llx:%llx/%s", (unsigned long long)dev, (unsigned long long)ino, name) < 0)
        return NULL;
    return key;
}

/* ---- an index: "dev:ino" → the newest record made for that inode ---- */

struct inode_index {
    char **keys;
    size_t *values;
    size_t capacity, count;
};

static size_t *index_find(const struct inode_index *index, const char *key)
{
    if (index->capacity == 0)
        return NULL;
    for (size_t i = hash_key(key) & (index->capacity - 1);; i = (i + 1) & (index->capacity - 1)) {
        if (index->keys[i] == NULL)
            return NULL;
        if (strcmp(index->keys[i], key) == 0)
            return &index->values[i];
    }
}

/* Takes key; a key already there gets the new value (an inode number used again). */
static bool index_put_owned(struct inode_index *index, char *key, size_t value)
{
    size_t *found = index_find(index, key);
    if (found != NULL) {
        *found = value;
        free(key);
        return true;
    }
    if ((index->count + 1) * 2 > index->capacity) {
        size_t capacity = index->capacity ? index->capacity * 2 : 64;
        char **keys = calloc(capacity, sizeof *keys);
        size_t *values = calloc(capacity, sizeof *values);
        if (keys == NULL || values == NULL) {
            free(keys);
            free(values);
            free(key);
            return false;
        }
        for (size_t j = 0; j < index->capacity; j++) {
            if (index->keys[j] == NULL)
                continue;
            size_t i = hash_key(index->keys[j]) & (capacity - 1);
            while (keys[i] != NULL)
                i = (i + 1) & (capacity - 1);
            keys[i] = index->keys[j];
            values[i] = index->values[j];
        }
        free(index->keys);
        free(index->values);
        index->keys = keys;
        index->values = values;
        index->capacity = capacity;
    }
    size_t i = hash_key(key) & (index->capacity - 1);
    while (index->keys[i] != NULL)
        i = (i + 1) & (index->capacity - 1);
    index->keys[i] = key;
    index->values[i] = value;
    index->count++;
    return true;
}

static void index_free(struct inode_index *index)
{
    for (size_t i = 0; i < index->capacity; i++)
        free(index->keys[i]);
    free(index->keys);
    free(index->values);
    memset(index, 0, sizeof *index);
}

static char *inode_key(dev_t dev, ino_t ino)
{
    char *key = NULL;
    if (asprintf(&key, "%llx:%llx", (unsigned long long)dev, (unsigned long long)ino) < 0)
        return NULL;
    return key;
}

/* ---- the applier ---- */

struct deferred_dir {
    char *path; /* the entry's cleaned path */
    struct timespec times[2];
};

/* A directory made (overlay mode) for entries below it that the layer does not carry. */
struct created_dir {
    char *path; /* real path, relative to the root */
    dev_t dev;
    ino_t ino;
    bool explicit; /* an entry for the directory itself came later and set its metadata */
    bool copied;   /* took a lower dir's metadata: its times are set again last */
    struct timespec times[2];
};

struct applier {
    const struct layer_options *options;
    struct layer_result *result;
    struct layer_error *err;
    int root_fd;
    char *root_path; /* real path, for the relative path of a created parent */
    int *lower_fds;  /* -2 = not opened yet, -1 = cannot be opened */
    /* The last resolved parent: entry parent path → O_PATH fd. Any removal invalidates it. */
    char *cache_key;
    int cache_fd;
    dev_t cache_dev;
    ino_t cache_ino;
    bool cache_valid;
    struct name_set unpacked; /* delete mode only: what an opaque marker keeps */
    struct deferred_dir *dirs;
    size_t dir_count, dir_capacity;
    struct created_dir *created;
    size_t created_count, created_capacity;
    struct inode_index created_index;
    char display[300]; /* the current entry, quoted */
};

static bool fail_memory(struct applier *a)
{
    layer_fail(a->err, LAYER_SYSTEM, ENOMEM, "out of memory");
    return false;
}

static void warn(struct applier *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct applier *a, const char *fmt, ...)
{
    struct layer_result *r = a->result;
    if (r->warning_count >= MAX_WARNINGS) {
        r->warnings_dropped = true;
        return;
    }
    char **grown = realloc(r->warnings, (r->warning_count + 1) * sizeof *grown);
    if (grown == NULL)
        return;
    r->warnings = grown;
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) >= 0)
        r->warnings[r->warning_count++] = text;
    va_end(ap);
}

/* openat2 inside dirfd treated as the root; "" is the root itself. -1 with errno on failure. */
static int open_beneath(int dirfd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    long fd;
    int tries = 0;
    /* EAGAIN: a concurrent rename or mount made the kernel give up on a safe walk; retry. */
    do
        fd = syscall(SYS_openat2, dirfd, path[0] != '\0' ? path : ".", &how, sizeof how);
    while (fd < 0 && (errno == EAGAIN || errno == EINTR) && ++tries < 64);
    return (int)fd;
}

static void invalidate(struct applier *a)
{
    a->cache_valid = false;
}

/* rm -rf of name in dirfd: 0, or the errno of what failed. */
static int remove_tree(int dirfd, const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR)
        return errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        int e = errno;
        close(fd);
        return e;
    }
    int failed = 0;
    for (;;) {
        errno = 0;
        struct dirent *d = readdir(dir);
        if (d == NULL) {
            failed = errno;
            break;
        }
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        failed = remove_tree(fd, d->d_name);
        if (failed != 0)
            break;
    }
    closedir(dir);
    if (failed != 0)
        return failed;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return errno;
    return 0;
}

static bool remove_at(struct applier *a, int dirfd, const char *name)
{
    invalidate(a);
    int e = remove_tree(dirfd, name);
    if (e != 0) {
        layer_fail_errno(a->err, e, "rm", name);
        return false;
    }
    return true;
}

/* Cleaned components of a name, joined with "/": NULL and err set when it climbs above the root or holds NUL. */
static char *clean_path(struct applier *a, const char *name, size_t length, const char *what, const char *shown,
                        size_t *count)
{
    if (memchr(name, 0, length) != NULL) {
        layer_fail(a->err, LAYER_INVALID, 0, "%s %s: NUL byte in name", what, shown);
        return NULL;
    }
    char *out = malloc(length + 1);
    if (out == NULL) {
        fail_memory(a);
        return NULL;
    }
    size_t o = 0, n = 0;
    size_t i = 0;
    while (i <= length) {
        size_t start = i;
        while (i < length && name[i] != '/')
            i++;
        size_t part = i - start;
        i++;
        if (part == 0 || (part == 1 && name[start] == '.'))
            continue;
        if (part == 2 && name[start] == '.' && name[start + 1] == '.') {
            if (n == 0) {
                free(out);
                layer_fail(a->err, LAYER_INVALID, 0, "%s %s: path escapes the root", what, shown);
                return NULL;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            n--;
            continue;
        }
        if (n > 0)
            out[o++] = '/';
        memcpy(out + o, name + start, part);
        o += part;
        n++;
    }
    out[o] = '\0';
    *count = n;
    return out;
}

static void split_last(char *path, const char **parent, const char **base)
{
    char *slash = strrchr(path, '/');
    if (slash == NULL) {
        *parent = "";
        *base = path;
    } else {
        *slash = '\0';
        *parent = path;
        *base = slash + 1;
    }
}

static void to_timespec(double seconds, struct timespec *ts)
{
    /* As libuv turns a JS time into a timespec. */
    ts->tv_sec = (time_t)seconds;
    ts->tv_nsec = (long)((seconds - (double)ts->tv_sec) * 1e9);
    if (ts->tv_nsec < 0) {
        ts->tv_sec--;
        ts->tv_nsec += 1000000000L;
    }
}

/*
 * Sets an xattr, skipping what the filesystem or the LSM refuses as containerd does.
 * fd >= 0: on it; else on path (not followed).
 */
static bool try_set_xattr(struct applier *a, int fd, const char *path, const char *name, const void *value,
                          size_t length, bool regular, const char *shown)
{
    int rc = fd >= 0 ? fsetxattr(fd, name, value, length, 0) : lsetxattr(path, name, value, length, 0);
    if (rc == 0)
        return true;
    int e = errno;
    bool skippable = e == ENOTSUP || e == EOPNOTSUPP ||
                     (e == EPERM && (strncmp(name, "security.", 9) == 0 || (strncmp(name, "user.", 5) == 0 && !regular)));
    if (!skippable) {
        layer_fail_errno(a->err, e, "lsetxattr", name);
        return false;
    }
    warn(a, "ignored xattr %s on %s: %s", name, shown, layer_errno_name(e));
    return true;
}

static int lower_fd(struct applier *a, size_t i)
{
    if (a->lower_fds[i] == -2) {
        a->lower_fds[i] = open(a->options->lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (a->lower_fds[i] < 0)
            a->lower_fds[i] = -1;
    }
    return a->lower_fds[i];
}

/*
 * A parent dir the layer lacks takes its metadata from the topmost lower that has it
 * (core/tar/copy-up.ts). rel: its real path below the root. *copied says whether it did.
 */
static bool copy_up_dir_info(struct applier *a, int dir_fd, const char *rel, struct created_dir *record)
{
    record->copied = false;
    for (size_t i = 0; i < a->options->lower_count; i++) {
        int lfd = lower_fd(a, i);
        if (lfd < 0)
            continue;
        int source = open_beneath(lfd, rel, O_PATH);
        if (source < 0) {
            if (errno == ENOENT)
                continue;
            return true;
        }
        struct stat st;
        int dir = -1;
        if (fstat(source, &st) != 0 || !S_ISDIR(st.st_mode) ||
            (dir = openat(source, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            close(source);
            return true;
        }
        close(source);
        bool ok = false;
        char *names = NULL;
        if (fchown(dir_fd, st.st_uid, st.st_gid) != 0) {
            layer_fail_errno(a->err, errno, "lchown", rel);
            goto done;
        }
        ssize_t size = flistxattr(dir, NULL, 0);
        if (size > 0) {
            names = malloc((size_t)size);
            if (names == NULL) {
                fail_memory(a);
                goto done;
            }
            size = flistxattr(dir, names, (size_t)size);
        }
        if (size < 0) {
            layer_fail_errno(a->err, errno, "llistxattr", rel);
            goto done;
        }
        for (ssize_t off = 0; off < size; off += (ssize_t)strlen(names + off) + 1) {
            const char *name = names + off;
            if (strncmp(name, overlay_xattr_prefix, sizeof overlay_xattr_prefix - 1) == 0)
                continue;
            ssize_t vsize = fgetxattr(dir, name, NULL, 0);
            if (vsize < 0)
                continue; /* gone meanwhile (ENODATA): nothing to copy */
            unsigned char *value = malloc((size_t)vsize + 1);
            if (value == NULL) {
                fail_memory(a);
                goto done;
            }
            vsize = fgetxattr(dir, name, value, (size_t)vsize);
            bool set = vsize < 0 || try_set_xattr(a, dir_fd, NULL, name, value, (size_t)vsize, true, rel);
            free(value);
            if (!set)
                goto done;
        }
        if (fchmod(dir_fd, st.st_mode & 07777) != 0) {
            layer_fail_errno(a->err, errno, "chmod", rel);
            goto done;
        }
        /* JS sets these from Date objects: millisecond precision. */
        struct timespec times[2] = {
            { st.st_atim.tv_sec, st.st_atim.tv_nsec / 1000000 * 1000000 },
            { st.st_mtim.tv_sec, st.st_mtim.tv_nsec / 1000000 * 1000000 },
        };
        if (futimens(dir_fd, times) != 0) {
            layer_fail_errno(a->err, errno, "lutimes", rel);
            goto done;
        }
        record->copied = true;
        record->times[0] = times[0];
        record->times[1] = times[1];
        ok = true;
    done:
        free(names);
        close(dir);
        return ok;
    }
    return true;
}

/* Overlay mode: copies a made parent dir up from the lowers, and keeps it for finish(). */
static bool record_created(struct applier *a, int dir_fd)
{
    char link[64], resolved[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dir_fd);
    ssize_t n = readlink(link, resolved, sizeof resolved - 1);
    if (n < 0) {
        layer_fail_errno(a->err, errno, "readlink", link);
        return false;
    }
    resolved[n] = '\0';
    size_t root_length = strlen(a->root_path);
    const char *rel = resolved + root_length;
    if (strncmp(resolved, a->root_path, root_length) != 0 || (*rel != '/' && *rel != '\0'))
        return true; /* cannot happen: the dir was made inside the root */
    while (*rel == '/')
        rel++;
    struct stat st;
    if (fstat(dir_fd, &st) != 0) {
        layer_fail_errno(a->err, errno, "fstat", rel);
        return false;
    }
    if (a->created_count == a->created_capacity) {
        size_t capacity = a->created_capacity ? a->created_capacity * 2 : 16;
        struct created_dir *grown = realloc(a->created, capacity * sizeof *grown);
        if (grown == NULL)
            return fail_memory(a);
        a->created = grown;
        a->created_capacity = capacity;
    }
    struct created_dir *record = &a->created[a->created_count];
    memset(record, 0, sizeof *record);
    record->dev = st.st_dev;
    record->ino = st.st_ino;
    if ((record->path = strdup(rel)) == NULL)
        return fail_memory(a);
    a->created_count++;
    char *key = inode_key(st.st_dev, st.st_ino);
    if (key == NULL || !index_put_owned(&a->created_index, key, a->created_count - 1))
        return fail_memory(a);
    return copy_up_dir_info(a, dir_fd, rel, record);
}

/* An entry for a directory the layer made earlier without one: the entry's metadata is what counts. */
static bool mark_explicit(struct applier *a, const struct stat *st)
{
    if (a->created_count == 0)
        return true;
    char *key = inode_key(st->st_dev, st->st_ino);
    if (key == NULL)
        return fail_memory(a);
    size_t *found = index_find(&a->created_index, key);
    free(key);
    if (found != NULL)
        a->created[*found].explicit = true;
    return true;
}

static void not_a_directory(struct applier *a, const char *path)
{
    char shown[300];
    layer_quote(shown, sizeof shown, path, strlen(path));
    layer_fail(a->err, LAYER_INVALID, ENOTDIR, "path %s: not a directory", shown);
}

static char *join3(const char *a, const char *b, const char *c)
{
    char *out = NULL;
    const char *sep1 = a[0] != '\0' && b[0] != '\0' ? "/" : "";
    const char *sep2 = (a[0] != '\0' || b[0] != '\0') && c[0] != '\0' ? "/" : "";
    if (asprintf(&out, "%s%s%s%s%s", a, sep1, b, sep2, c) < 0)
        return NULL;
    return out;
}

/*
 * Creates the missing directories of path (relative to the root, unresolved), one
 * component at a time: each is resolved by the kernel, and a missing one is made in its
 * resolved parent. A component that exists but does not resolve is a symlink to a
 * missing target: its target is put in its place and the walk starts again, so the
 * directories appear where the symlink points (inside the root), as in apply.ts.
 */
static int create_chain(struct applier *a, const char *path)
{
    char *work = strdup(path);
    if (work == NULL)
        return fail_memory(a), -1;
    int links = 0;
restart:;
    int current = open_beneath(a->root_fd, "", O_PATH | O_DIRECTORY);
    if (current < 0) {
        layer_fail_errno(a->err, errno, "openat2", ".");
        free(work);
        return -1;
    }
    size_t length = strlen(work);
    size_t i = 0;
    while (i < length) {
        size_t start = i;
        while (i < length && work[i] != '/')
            i++;
        if (i == start) {
            i++;
            continue;
        }
        char saved = work[i];
        work[i] = '\0';
        const char *component = work + start;
        int next = open_beneath(a->root_fd, work, O_PATH | O_DIRECTORY);
        if (next >= 0) {
            work[i] = saved;
            close(current);
            current = next;
            i++;
            continue;
        }
        int e = errno;
        if (e != ENOENT) {
            if (e == ENOTDIR)
                not_a_directory(a, work);
            else
                layer_fail_errno(a->err, e, "openat2", work);
            goto fail;
        }
        if (mkdirat(current, component, 0755) == 0) {
            int made = openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (made < 0) {
                layer_fail_errno(a->err, errno, "open", work);
                goto fail;
            }
            close(current);
            current = made;
            /* mkdir's mode passed the umask; the layer's tree must not depend on it. */
            if (fchmod(made, 0755) != 0) {
                layer_fail_errno(a->err, errno, "chmod", work);
                goto fail;
            }
            if (a->options->overlay && !record_created(a, made))
                goto fail;
            work[i] = saved;
            i++;
            continue;
        }
        e = errno;
        if (e != EEXIST) {
            layer_fail_errno(a->err, e, "mkdir", work);
            goto fail;
        }
        char target[PATH_MAX];
        ssize_t n = readlinkat(current, component, target, sizeof target - 1);
        if (n < 0) {
            layer_fail_errno(a->err, errno, "readlink", work);
            goto fail;
        }
        target[n] = '\0';
        if (++links > MAX_SYMLINKS) {
            char shown[300];
            layer_quote(shown, sizeof shown, path, strlen(path));
            layer_fail(a->err, LAYER_INVALID, ELOOP, "path %s: too many levels of symbolic links", shown);
            goto fail;
        }
        /* The prefix before this component, the link's target, what follows. */
        work[start > 0 ? start - 1 : 0] = '\0';
        const char *before = start > 0 ? work : "";
        const char *rest = i < length ? work + i + 1 : "";
        char *replaced = target[0] == '/' ? join3("", target, rest) : join3(before, target, rest);
        if (replaced == NULL) {
            fail_memory(a);
            goto fail;
        }
        free(work);
        work = replaced;
        close(current);
        goto restart;
    }
    free(work);
    return current;
fail:
    close(current);
    free(work);
    return -1;
}

/*
 * The O_PATH fd of an entry's parent dir. create: missing dirs are made (ensureDir).
 * Else returns -2 when the parent is missing or not a directory (nothing to do there).
 */
static int resolve_parent(struct applier *a, const char *path, bool create)
{
    if (a->cache_valid && strcmp(a->cache_key, path) == 0)
        return a->cache_fd;
    int fd = open_beneath(a->root_fd, path, create ? O_PATH | O_DIRECTORY : O_PATH);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && !create)
            return -2;
        if (e == ENOENT) {
            fd = create_chain(a, path);
            if (fd < 0)
                return -1;
        } else if (e == ENOTDIR) {
            int probe = open_beneath(a->root_fd, path, O_PATH);
            if (probe >= 0) {
                close(probe);
                char shown[300];
                layer_quote(shown, sizeof shown, path, strlen(path));
                layer_fail(a->err, LAYER_INVALID, ENOTDIR, "%s is not a directory", shown);
            } else {
                not_a_directory(a, path);
            }
            return -1;
        } else {
            layer_fail_errno(a->err, e, "openat2", path);
            return -1;
        }
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        layer_fail_errno(a->err, errno, "fstat", path);
        close(fd);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        close(fd);
        return -2;
    }
    char *key = strdup(path);
    if (key == NULL) {
        close(fd);
        return fail_memory(a), -1;
    }
    if (a->cache_fd >= 0)
        close(a->cache_fd);
    free(a->cache_key);
    a->cache_key = key;
    a->cache_fd = fd;
    a->cache_dev = st.st_dev;
    a->cache_ino = st.st_ino;
    a->cache_valid = true;
    return fd;
}

static bool mark_unpacked(struct applier *a, dev_t dev, ino_t ino, const char *name)
{
    if (a->options->overlay)
        return true;
    char *key = name_key(dev, ino, name);
    if (key == NULL || !set_insert_owned(&a->unpacked, key))
        return fail_memory(a);
    return true;
}

/* Removes what earlier layers left under dir, keeping what this layer wrote. */
static bool clear_except_unpacked(struct applier *a, int dir_path_fd)
{
    int fd = openat(dir_path_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        layer_fail_errno(a->err, errno, "open", ".");
        return false;
    }
    struct stat st;
    DIR *dir = NULL;
    char **names = NULL;
    size_t count = 0, capacity = 0;
    bool ok = false;
    if (fstat(fd, &st) != 0) {
        layer_fail_errno(a->err, errno, "fstat", ".");
        close(fd);
        return false;
    }
    int listing = dup(fd);
    if (listing < 0 || (dir = fdopendir(listing)) == NULL) {
        layer_fail_errno(a->err, errno, "readdir", ".");
        if (listing >= 0)
            close(listing);
        close(fd);
        return false;
    }
    /* The names first: the loop below removes entries. */
    for (;;) {
        errno = 0;
        struct dirent *d = readdir(dir);
        if (d == NULL) {
            if (errno != 0) {
                layer_fail_errno(a->err, errno, "readdir", ".");
                goto done;
            }
            break;
        }
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 32;
            char **grown = realloc(names, capacity * sizeof *grown);
            if (grown == NULL) {
                fail_memory(a);
                goto done;
            }
            names = grown;
        }
        if ((names[count] = strdup(d->d_name)) == NULL) {
            fail_memory(a);
            goto done;
        }
        count++;
    }
    for (size_t i = 0; i < count; i++) {
        char *key = name_key(st.st_dev, st.st_ino, names[i]);
        if (key == NULL) {
            fail_memory(a);
            goto done;
        }
        bool kept = set_contains(&a->unpacked, key);
        free(key);
        if (!kept) {
            if (!remove_at(a, fd, names[i]))
                goto done;
            continue;
        }
        struct stat child;
        if (fstatat(fd, names[i], &child, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(child.st_mode)) {
            int sub = openat(fd, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                layer_fail_errno(a->err, errno, "open", names[i]);
                goto done;
            }
            bool cleared = clear_except_unpacked(a, sub);
            close(sub);
            if (!cleared)
                goto done;
        }
    }
    ok = true;
done:
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    closedir(dir);
    close(fd);
    return ok;
}

static bool whiteout(struct applier *a, const struct tar_entry *h, const char *parent, const char *base)
{
    bool overlay = a->options->overlay;
    if (strcmp(base, whiteout_opaque) == 0) {
        int pfd = resolve_parent(a, parent, overlay);
        if (pfd == -1)
            return false;
        if (pfd == -2)
            return true;
        if (!overlay)
            return clear_except_unpacked(a, pfd);
        int dir = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) {
            layer_fail_errno(a->err, errno, "open", parent);
            return false;
        }
        int rc = fsetxattr(dir, overlay_opaque_xattr, "y", 1, 0);
        int e = errno;
        close(dir);
        if (rc != 0) {
            layer_fail_errno(a->err, e, "lsetxattr", parent);
            return false;
        }
        return true;
    }
    /* Other ".wh..wh." names are aufs bookkeeping: nothing to apply. */
    if (strncmp(base, whiteout_meta_prefix, sizeof whiteout_meta_prefix - 1) == 0)
        return true;
    const char *original = base + sizeof whiteout_prefix - 1;
    if (strcmp(original, "") == 0 || strcmp(original, ".") == 0 || strcmp(original, "..") == 0) {
        char shown[64];
        layer_quote(shown, sizeof shown, base, strlen(base));
        layer_fail(a->err, LAYER_INVALID, 0, "invalid whiteout name %s", shown);
        return false;
    }
    int pfd = resolve_parent(a, parent, overlay);
    if (pfd == -1)
        return false;
    if (pfd == -2)
        return true;
    if (!remove_at(a, pfd, original))
        return false;
    if (!overlay)
        return true;
    if (mknodat(pfd, original, S_IFCHR, makedev(0, 0)) != 0) {
        layer_fail_errno(a->err, errno, "mknod", original);
        return false;
    }
    if (fchownat(pfd, original, (uid_t)h->uid, (gid_t)h->gid, AT_SYMLINK_NOFOLLOW) != 0) {
        layer_fail_errno(a->err, errno, "lchown", original);
        return false;
    }
    return true;
}

static bool hard_link(struct applier *a, const struct tar_entry *h, int pfd, dev_t pdev, ino_t pino, const char *base)
{
    char shown[300];
    layer_quote(shown, sizeof shown, h->linkname, h->linkname_length);
    size_t count;
    char *target = clean_path(a, h->linkname, h->linkname_length, "hard link target", shown, &count);
    if (target == NULL)
        return false;
    bool ok = false;
    int tfd = -1;
    if (count == 0) {
        layer_fail(a->err, LAYER_INVALID, 0, "hard link to the root directory");
        goto done;
    }
    const char *tparent, *tbase;
    split_last(target, &tparent, &tbase);
    tfd = open_beneath(a->root_fd, tparent, O_PATH | O_DIRECTORY);
    if (tfd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            layer_fail(a->err, LAYER_INVALID, 0, "hard link target %s does not exist", shown);
        else
            layer_fail_errno(a->err, errno, "openat2", tparent);
        goto done;
    }
    struct stat tdir, st;
    if (fstat(tfd, &tdir) != 0) {
        layer_fail_errno(a->err, errno, "fstat", tparent);
        goto done;
    }
    /* A link to itself changes nothing. */
    if (tdir.st_dev == pdev && tdir.st_ino == pino && strcmp(tbase, base) == 0) {
        ok = true;
        goto done;
    }
    if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            layer_fail(a->err, LAYER_INVALID, 0, "hard link target %s does not exist", shown);
        else
            layer_fail_errno(a->err, errno, "lstat", tbase);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        layer_fail(a->err, LAYER_INVALID, 0, "hard link target %s is a directory", shown);
        goto done;
    }
    if (!remove_at(a, pfd, base))
        goto done;
    /* The link shares the target's inode and so its metadata; the header's copy is not applied. */
    if (linkat(tfd, tbase, pfd, base, 0) != 0) {
        layer_fail_errno(a->err, errno, "link", base);
        goto done;
    }
    ok = mark_unpacked(a, pdev, pino, base);
done:
    if (tfd >= 0)
        close(tfd);
    free(target);
    return ok;
}

static bool write_data(struct applier *a, struct tar_reader *reader, int fd, const char *base)
{
    for (;;) {
        const unsigned char *data;
        ssize_t n = tar_read_data(reader, &data, a->err);
        if (n < 0)
            return false;
        if (n == 0)
            return true;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, data + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                layer_fail_errno(a->err, errno, "write", base);
                return false;
            }
            off += w;
        }
    }
}

static bool check_ids(struct applier *a, const struct tar_entry *h)
{
    /* lchown's range in Node: -1 (leave as is) up to 2^32 - 1. */
    if (h->uid < -1 || h->uid > 4294967295LL || h->gid < -1 || h->gid > 4294967295LL) {
        layer_fail(a->err, LAYER_SYSTEM, 0, "uid or gid out of range (%lld:%lld)", (long long)h->uid, (long long)h->gid);
        return false;
    }
    return true;
}

/* Owner, xattrs, mode — in that order: chown clears security.capability and setuid. fd >= 0: on it. */
static bool set_metadata(struct applier *a, const struct tar_entry *h, int pfd, int fd, const char *base)
{
    int rc = fd >= 0 ? fchown(fd, (uid_t)h->uid, (gid_t)h->gid)
                     : fchownat(pfd, base, (uid_t)h->uid, (gid_t)h->gid, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) {
        layer_fail_errno(a->err, errno, "lchown", base);
        return false;
    }
    char proc_path[PATH_MAX + 64];
    if (fd < 0 && h->xattr_count > 0)
        snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d/%s", pfd, base);
    bool regular = h->type == TAR_FILE || h->type == TAR_DIR;
    for (size_t i = 0; i < h->xattr_count; i++) {
        const struct tar_xattr *x = &h->xattrs[i];
        /* A layer must not steer overlayfs (opaque, redirect, metacopy): those are ours to set. */
        if (strncmp(x->name, overlay_xattr_prefix, sizeof overlay_xattr_prefix - 1) == 0) {
            warn(a, "ignored xattr %s on %s", x->name, a->display);
            continue;
        }
        if (!try_set_xattr(a, fd, proc_path, x->name, x->value, x->length, regular, a->display))
            return false;
    }
    if (h->type == TAR_SYMLINK)
        return true;
    rc = fd >= 0 ? fchmod(fd, h->mode) : fchmodat(pfd, base, h->mode, 0);
    if (rc != 0) {
        layer_fail_errno(a->err, errno, "chmod", base);
        return false;
    }
    return true;
}

static bool defer_dir(struct applier *a, const char *path, const struct timespec times[2])
{
    if (a->dir_count == a->dir_capacity) {
        size_t capacity = a->dir_capacity ? a->dir_capacity * 2 : 64;
        struct deferred_dir *grown = realloc(a->dirs, capacity * sizeof *grown);
        if (grown == NULL)
            return fail_memory(a);
        a->dirs = grown;
        a->dir_capacity = capacity;
    }
    char *copy = strdup(path);
    if (copy == NULL)
        return fail_memory(a);
    a->dirs[a->dir_count].path = copy;
    a->dirs[a->dir_count].times[0] = times[0];
    a->dirs[a->dir_count].times[1] = times[1];
    a->dir_count++;
    return true;
}

static bool apply_entry(struct applier *a, struct tar_reader *reader, const struct tar_entry *h)
{
    size_t count;
    char *path = clean_path(a, h->name, h->name_length, "entry", a->display, &count);
    if (path == NULL)
        return false;
    bool ok = false;
    int fd = -1;
    /* The root itself ("./"): containerd ignores its metadata, so do we. */
    if (count == 0) {
        ok = true;
        goto done;
    }
    char *parent_buf = strdup(path);
    if (parent_buf == NULL) {
        fail_memory(a);
        goto done;
    }
    const char *parent, *base;
    split_last(parent_buf, &parent, &base);
    if (strncmp(base, whiteout_prefix, sizeof whiteout_prefix - 1) == 0) {
        ok = whiteout(a, h, parent, base);
        free(parent_buf);
        goto done;
    }
    int pfd = resolve_parent(a, parent, true);
    if (pfd < 0) {
        if (pfd == -2)
            not_a_directory(a, parent);
        free(parent_buf);
        goto done;
    }
    /* The name outlives parent_buf below. */
    char name[NAME_MAX + 1];
    if (strlen(base) > NAME_MAX) {
        layer_fail_errno(a->err, ENAMETOOLONG, "open", base);
        free(parent_buf);
        goto done;
    }
    strcpy(name, base);
    free(parent_buf);
    dev_t pdev = a->cache_dev;
    ino_t pino = a->cache_ino;

    if (h->type == TAR_LINK) {
        ok = hard_link(a, h, pfd, pdev, pino, name);
        goto done;
    }
    if (!check_ids(a, h))
        goto done;

    struct stat existing;
    bool exists = fstatat(pfd, name, &existing, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) {
        layer_fail_errno(a->err, errno, "lstat", name);
        goto done;
    }
    bool existing_dir = exists && S_ISDIR(existing.st_mode);
    /* A removal invalidates the cache but not this fd: it stays open until the next lookup. */
    if (exists && !(existing_dir && h->type == TAR_DIR) && !remove_at(a, pfd, name))
        goto done;

    if (existing_dir && h->type == TAR_DIR && !mark_explicit(a, &existing))
        goto done;
    switch (h->type) {
    case TAR_DIR:
        if (!existing_dir && mkdirat(pfd, name, 0700) != 0) {
            layer_fail_errno(a->err, errno, "mkdir", name);
            goto done;
        }
        fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            layer_fail_errno(a->err, errno, "open", name);
            goto done;
        }
        break;
    case TAR_FILE:
        fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            layer_fail_errno(a->err, errno, "open", name);
            goto done;
        }
        if (!write_data(a, reader, fd, name))
            goto done;
        break;
    case TAR_SYMLINK:
        if (memchr(h->linkname, 0, h->linkname_length) != NULL) {
            layer_fail(a->err, LAYER_INVALID, 0, "symlink target holds a NUL byte");
            goto done;
        }
        if (symlinkat(h->linkname, pfd, name) != 0) {
            layer_fail_errno(a->err, errno, "symlink", name);
            goto done;
        }
        break;
    case TAR_CHAR:
    case TAR_BLOCK:
    case TAR_FIFO: {
        if (h->devmajor < 0 || h->devmajor > 4294967295LL || h->devminor < 0 || h->devminor > 4294967295LL) {
            layer_fail(a->err, LAYER_SYSTEM, 0, "device number out of range (%lld:%lld)", (long long)h->devmajor,
                       (long long)h->devminor);
            goto done;
        }
        mode_t type = h->type == TAR_CHAR ? S_IFCHR : h->type == TAR_BLOCK ? S_IFBLK : S_IFIFO;
        dev_t dev = h->type == TAR_FIFO ? 0 : makedev((unsigned)h->devmajor, (unsigned)h->devminor);
        if (mknodat(pfd, name, type | h->mode, dev) != 0) {
            layer_fail_errno(a->err, errno, "mknod", name);
            goto done;
        }
        break;
    }
    case TAR_LINK:
        break;
    }
    if (!mark_unpacked(a, pdev, pino, name) || !set_metadata(a, h, pfd, fd, name))
        goto done;
    struct timespec times[2];
    to_timespec(h->has_atime ? h->atime : h->mtime, &times[0]);
    to_timespec(h->mtime, &times[1]);
    if (h->type == TAR_DIR) {
        ok = defer_dir(a, path, times);
        goto done;
    }
    int rc = fd >= 0 ? futimens(fd, times) : utimensat(pfd, name, times, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) {
        layer_fail_errno(a->err, errno, "lutimes", name);
        goto done;
    }
    ok = true;
done:
    if (fd >= 0 && close(fd) != 0 && ok) {
        layer_fail_errno(a->err, errno, "close", h->name);
        ok = false;
    }
    free(path);
    return ok;
}

/*
 * The made directories that are still there as made (the newest record of their inode,
 * not replaced, no entry of their own): copied-up times set again, the rest reported.
 */
static bool finish_created(struct applier *a)
{
    for (size_t i = 0; i < a->created_count; i++) {
        struct created_dir *record = &a->created[i];
        if (record->explicit)
            continue;
        char *key = inode_key(record->dev, record->ino);
        if (key == NULL)
            return fail_memory(a);
        size_t *newest = index_find(&a->created_index, key);
        free(key);
        if (newest == NULL || *newest != i)
            continue;
        int fd = open_beneath(a->root_fd, record->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                continue;
            layer_fail_errno(a->err, errno, "openat2", record->path);
            return false;
        }
        struct stat st;
        bool ok = true, same = false;
        if (fstat(fd, &st) != 0) {
            layer_fail_errno(a->err, errno, "fstat", record->path);
            ok = false;
        } else {
            same = st.st_dev == record->dev && st.st_ino == record->ino;
        }
        if (ok && same && record->copied && futimens(fd, record->times) != 0) {
            layer_fail_errno(a->err, errno, "lutimes", record->path);
            ok = false;
        }
        close(fd);
        if (!ok)
            return false;
        if (!same || record->copied)
            continue;
        struct layer_result *r = a->result;
        char **grown = realloc(r->copy_up_dirs, (r->copy_up_dir_count + 1) * sizeof *grown);
        if (grown == NULL)
            return fail_memory(a);
        r->copy_up_dirs = grown;
        r->copy_up_dirs[r->copy_up_dir_count++] = record->path;
        record->path = NULL; /* the result owns it now */
    }
    return true;
}

/* Directory times last: writing inside a directory changes its mtime. */
static bool finish(struct applier *a)
{
    if (!finish_created(a))
        return false;
    for (size_t i = 0; i < a->dir_count; i++) {
        const char *parent, *base;
        split_last(a->dirs[i].path, &parent, &base);
        int pfd = open_beneath(a->root_fd, parent, O_PATH | O_DIRECTORY);
        if (pfd < 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            layer_fail_errno(a->err, errno, "openat2", parent);
            return false;
        }
        struct stat st;
        bool ok = true;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            utimensat(pfd, base, a->dirs[i].times, AT_SYMLINK_NOFOLLOW) != 0) {
            layer_fail_errno(a->err, errno, "lutimes", a->dirs[i].path);
            ok = false;
        }
        close(pfd);
        if (!ok)
            return false;
    }
    return true;
}

static void applier_free(struct applier *a)
{
    if (a->root_fd >= 0)
        close(a->root_fd);
    free(a->root_path);
    for (size_t i = 0; a->lower_fds != NULL && i < a->options->lower_count; i++)
        if (a->lower_fds[i] >= 0)
            close(a->lower_fds[i]);
    free(a->lower_fds);
    if (a->cache_fd >= 0)
        close(a->cache_fd);
    free(a->cache_key);
    set_free(&a->unpacked);
    for (size_t i = 0; i < a->dir_count; i++)
        free(a->dirs[i].path);
    free(a->dirs);
    for (size_t i = 0; i < a->created_count; i++)
        free(a->created[i].path);
    free(a->created);
    index_free(&a->created_index);
}

/* The kernel's openat2 (5.6+) is what makes this safe; without it the caller uses the JS applier. */
static bool openat2_works(const char *root, struct layer_error *err)
{
    /* Not in-root: the root's own path is absolute, and may hold symlinks of the host. */
    struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS };
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, root, &how, sizeof how);
    if (fd >= 0) {
        close(fd);
        return true;
    }
    int e = errno;
    layer_fail_errno(err, e, "openat2", root);
    /* EPERM: a seccomp filter that refuses syscalls it does not know. */
    if (e == ENOSYS || e == EPERM)
        err->kind = LAYER_UNSUPPORTED;
    return false;
}

bool layer_apply(const struct layer_options *options, struct layer_result *result)
{
    memset(result, 0, sizeof *result);
    struct layer_error *err = &result->error;
    if (!openat2_works(options->root, err))
        return false;
    struct applier a = { .options = options, .result = result, .err = err, .root_fd = -1, .cache_fd = -1 };
    struct layer_source src;
    struct tar_reader reader = { .src = &src };
    bool source_ready = source_open(&src, options, err);
    bool ok = false;
    if (!source_ready)
        goto done;
    a.root_fd = open(options->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (a.root_fd < 0) {
        layer_fail_errno(err, errno, "open", options->root);
        goto done;
    }
    a.root_path = realpath(options->root, NULL);
    a.lower_fds = malloc((options->lower_count + 1) * sizeof *a.lower_fds);
    if (a.root_path == NULL || a.lower_fds == NULL) {
        layer_fail_errno(err, errno != 0 ? errno : ENOMEM, "realpath", options->root);
        goto done;
    }
    for (size_t i = 0; i < options->lower_count; i++)
        a.lower_fds[i] = -2;
    for (;;) {
        if (options->cancel != NULL && __atomic_load_n(options->cancel, __ATOMIC_RELAXED) != 0) {
            layer_fail(err, LAYER_CANCELLED, 0, "cancelled");
            goto done;
        }
        struct tar_entry entry;
        int got = tar_next(&reader, &entry, err);
        if (got < 0)
            goto done;
        if (got == 0)
            break;
        memcpy(a.display, reader.display, sizeof a.display);
        bool applied = apply_entry(&a, &reader, &entry);
        tar_entry_free(&entry);
        if (!applied) {
            /* As entryError in apply.ts: name the entry unless the message does already. */
            if (strstr(err->message, a.display) == NULL) {
                char prefix[320];
                snprintf(prefix, sizeof prefix, "entry %s", a.display);
                layer_error_prefix(err, prefix);
            }
            goto done;
        }
        result->entries++;
    }
    if (!finish(&a))
        goto done;
    /* The diff id covers everything the decompressor yields, padding after the end marker too. */
    if (!source_drain(&src, err))
        goto done;
    if (!source_digests(&src, result->blob_digest, result->diff_id, err))
        goto done;
    result->blob_size = src.blob_size;
    result->tar_size = src.tar_size;
    ok = true;
done:
    if (!ok && source_ready) {
        /* The blob's own digest still, so the caller can tell corrupt bytes from a bad layer. */
        struct layer_error drain_err = { 0 };
        if (source_drain_blob(&src, &drain_err) && source_digests(&src, result->blob_digest, NULL, &drain_err))
            result->blob_size = src.blob_size;
        else
            result->blob_digest[0] = '\0';
    }
    source_close(&src);
    applier_free(&a);
    return ok;
}

void layer_result_free(struct layer_result *result)
{
    for (size_t i = 0; i < result->warning_count; i++)
        free(result->warnings[i]);
    free(result->warnings);
    result->warnings = NULL;
    result->warning_count = 0;
    for (size_t i = 0; i < result->copy_up_dir_count; i++)
        free(result->copy_up_dirs[i]);
    free(result->copy_up_dirs);
    result->copy_up_dirs = NULL;
    result->copy_up_dir_count = 0;
}
