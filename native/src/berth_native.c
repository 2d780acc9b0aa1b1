/*
 * berth_native: the Linux syscalls Node's fs module lacks — mount(2), umount2(2),
 * mknod(2) for device nodes, the l*xattr(2) family, statfs(2)'s f_type.
 *
 * Written against node_api.h only (ABI-stable, so one build loads in every Node
 * release that has Node-API 8). Every function is synchronous: each is one fast
 * syscall, and the async machinery would cost more than the call.
 *
 * Failures throw like Node's fs: an Error whose code is the errno name, errno the
 * negated number, syscall the call's name and path the path it was given.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <linux/magic.h>

#include <node_api.h>

/* ---- throwing ---------------------------------------------------------------------- */

enum error_kind { KIND_ERROR, KIND_TYPE_ERROR, KIND_RANGE_ERROR };

__attribute__((format(printf, 4, 5)))
static void throw_fmt(napi_env env, enum error_kind kind, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int needed = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = needed >= 0 ? malloc((size_t)needed + 1) : NULL;
    if (msg != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)needed + 1, fmt, ap);
        va_end(ap);
    }
    /* Out of memory for the message: the format string still says what failed. */
    const char *text = msg != NULL ? msg : fmt;
    switch (kind) {
    case KIND_TYPE_ERROR:
        napi_throw_type_error(env, code, text);
        break;
    case KIND_RANGE_ERROR:
        napi_throw_range_error(env, code, text);
        break;
    case KIND_ERROR:
        napi_throw_error(env, code, text);
        break;
    }
    free(msg);
}

/*
 * A failed napi_* call may or may not have left an exception pending; either way the
 * caller must unwind with exactly one pending.
 */
static bool call_ok(napi_env env, napi_status status, const char *call)
{
    if (status == napi_ok)
        return true;
    /* Read the error info first: any later napi call overwrites it. */
    const napi_extended_error_info *info = NULL;
    const char *reason = "unknown failure";
    if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL && info->error_message != NULL)
        reason = info->error_message;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
        return false;
    throw_fmt(env, KIND_ERROR, "ERR_BERTH_NATIVE", "berth_native: %s failed: %s", call, reason);
    return false;
}

/* For functions with cleanup: every napi call's status is checked, failure unwinds. */
#define CHECK(call)                                                                          \
    do {                                                                                     \
        if (!call_ok(env, (call), #call))                                                    \
            goto done;                                                                       \
    } while (0)

struct errno_name {
    int number;
    const char *name;
    const char *description;
};

#define ERRNO(name, description) { name, #name, description }
/* The errno values these syscalls can return, with libuv's wording (as Node prints). */
static const struct errno_name errno_names[] = {
    ERRNO(EPERM, "operation not permitted"),
    ERRNO(ENOENT, "no such file or directory"),
    ERRNO(ESRCH, "no such process"),
    ERRNO(EINTR, "interrupted system call"),
    ERRNO(EIO, "i/o error"),
    ERRNO(ENXIO, "no such device or address"),
    ERRNO(E2BIG, "argument list too long"),
    ERRNO(EBADF, "bad file descriptor"),
    ERRNO(EAGAIN, "resource temporarily unavailable"),
    ERRNO(ENOMEM, "not enough memory"),
    ERRNO(EACCES, "permission denied"),
    ERRNO(EFAULT, "bad address in system call argument"),
    ERRNO(ENOTBLK, "block device required"),
    ERRNO(EBUSY, "resource busy or locked"),
    ERRNO(EEXIST, "file already exists"),
    ERRNO(EXDEV, "cross-device link not permitted"),
    ERRNO(ENODEV, "no such device"),
    ERRNO(ENOTDIR, "not a directory"),
    ERRNO(EISDIR, "illegal operation on a directory"),
    ERRNO(EINVAL, "invalid argument"),
    ERRNO(ENFILE, "file table overflow"),
    ERRNO(EMFILE, "too many open files"),
    ERRNO(ETXTBSY, "text file is busy"),
    ERRNO(ENOEXEC, "exec format error"),
    ERRNO(ECHILD, "no child processes"),
    ERRNO(EFBIG, "file too large"),
    ERRNO(ENOSPC, "no space left on device"),
    ERRNO(EROFS, "read-only file system"),
    ERRNO(EMLINK, "too many links"),
    ERRNO(ERANGE, "result too large"),
    ERRNO(ENAMETOOLONG, "name too long"),
    ERRNO(ENOSYS, "function not implemented"),
    ERRNO(ENOTEMPTY, "directory not empty"),
    ERRNO(ELOOP, "too many symbolic links encountered"),
    ERRNO(ENODATA, "no data available"),
    ERRNO(EOVERFLOW, "value too large for defined data type"),
    ERRNO(ENOTSUP, "operation not supported"),
    ERRNO(ESTALE, "stale file handle"),
    ERRNO(EDQUOT, "disk quota exceeded"),
    ERRNO(EUCLEAN, "structure needs cleaning"),
    ERRNO(ENOMEDIUM, "no medium found"),
};

/* Throws an fs-style system error; errnum must be captured right after the syscall. */
static void throw_errno(napi_env env, int errnum, const char *syscall, const char *path)
{
    const char *name = "UNKNOWN";
    const char *description = "unknown error";
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
        if (errno_names[i].number == errnum) {
            name = errno_names[i].name;
            description = errno_names[i].description;
            break;
        }
    }

    char *msg = NULL;
    int needed = snprintf(NULL, 0, "%s: %s, %s '%s'", name, description, syscall, path);
    if (needed >= 0 && (msg = malloc((size_t)needed + 1)) != NULL)
        snprintf(msg, (size_t)needed + 1, "%s: %s, %s '%s'", name, description, syscall, path);

    napi_value code_v, msg_v, error, errno_v, syscall_v, path_v;
    if (!call_ok(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v), "napi_create_string_utf8") ||
        !call_ok(env, napi_create_string_utf8(env, msg != NULL ? msg : description, NAPI_AUTO_LENGTH, &msg_v),
                 "napi_create_string_utf8") ||
        !call_ok(env, napi_create_error(env, code_v, msg_v, &error), "napi_create_error") ||
        !call_ok(env, napi_create_int32(env, -errnum, &errno_v), "napi_create_int32") ||
        !call_ok(env, napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v), "napi_create_string_utf8") ||
        !call_ok(env, napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_v), "napi_create_string_utf8") ||
        !call_ok(env, napi_set_named_property(env, error, "errno", errno_v), "napi_set_named_property") ||
        !call_ok(env, napi_set_named_property(env, error, "syscall", syscall_v), "napi_set_named_property") ||
        !call_ok(env, napi_set_named_property(env, error, "path", path_v), "napi_set_named_property"))
        goto done;
    call_ok(env, napi_throw(env, error), "napi_throw");
done:
    free(msg);
}

/* ---- arguments --------------------------------------------------------------------- */

static const char *type_name(napi_valuetype type)
{
    switch (type) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
    }
    return "unknown";
}

/* Fills argv[0..count) and insists on exactly count arguments. */
static bool get_args(napi_env env, napi_callback_info info, const char *fn, size_t count, napi_value *argv)
{
    size_t argc = count;
    if (!call_ok(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "napi_get_cb_info"))
        return false;
    if (argc != count) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_COUNT", "%s: expected %zu arguments, got %zu", fn, count,
                  argc);
        return false;
    }
    return true;
}

static bool get_type(napi_env env, napi_value value, napi_valuetype *type)
{
    return call_ok(env, napi_typeof(env, value, type), "napi_typeof");
}

/*
 * Copies a JS string into a malloc'd C string (*out; the caller frees it). With
 * nullable, null and undefined give NULL. Embedded NUL bytes are refused: the kernel
 * would silently stop at the first one and act on a different path.
 */
static bool get_string(napi_env env, napi_value value, const char *fn, const char *arg, bool nullable, char **out)
{
    *out = NULL;
    napi_valuetype type;
    if (!get_type(env, value, &type))
        return false;
    if (nullable && (type == napi_null || type == napi_undefined))
        return true;
    if (type != napi_string) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"%s\" must be a string%s, got %s", fn,
                  arg, nullable ? " or null" : "", type_name(type));
        return false;
    }
    size_t length;
    if (!call_ok(env, napi_get_value_string_utf8(env, value, NULL, 0, &length), "napi_get_value_string_utf8"))
        return false;
    char *text = malloc(length + 1);
    if (text == NULL) {
        throw_errno(env, ENOMEM, fn, arg);
        return false;
    }
    size_t copied;
    if (!call_ok(env, napi_get_value_string_utf8(env, value, text, length + 1, &copied), "napi_get_value_string_utf8")) {
        free(text);
        return false;
    }
    if (strlen(text) != copied) {
        free(text);
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_VALUE", "%s: argument \"%s\" must not contain null bytes", fn,
                  arg);
        return false;
    }
    *out = text;
    return true;
}

/* An integer in [0, 2^32): flags, modes and device numbers all fit. */
static bool get_uint32(napi_env env, napi_value value, const char *fn, const char *arg, uint32_t *out)
{
    napi_valuetype type;
    if (!get_type(env, value, &type))
        return false;
    if (type != napi_number) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"%s\" must be a number, got %s", fn,
                  arg, type_name(type));
        return false;
    }
    double number;
    if (!call_ok(env, napi_get_value_double(env, value, &number), "napi_get_value_double"))
        return false;
    /* The range test comes first so the cast below is defined (NaN fails it too). */
    if (!(number >= 0 && number <= (double)UINT32_MAX) || number != (double)(uint32_t)number) {
        throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE",
                  "%s: argument \"%s\" must be an integer from 0 to 4294967295, got %g", fn, arg, number);
        return false;
    }
    *out = (uint32_t)number;
    return true;
}

/* A Buffer or other Uint8Array; *data stays valid until the next call into JS. */
static bool get_bytes(napi_env env, napi_value value, const char *fn, const char *arg, void **data, size_t *length)
{
    bool is_typedarray = false;
    if (!call_ok(env, napi_is_typedarray(env, value, &is_typedarray), "napi_is_typedarray"))
        return false;
    napi_typedarray_type type = napi_int8_array;
    if (is_typedarray &&
        !call_ok(env, napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL), "napi_get_typedarray_info"))
        return false;
    if (!is_typedarray || type != napi_uint8_array) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"%s\" must be a Buffer or Uint8Array",
                  fn, arg);
        return false;
    }
    return true;
}

/*
 * A path argument: a string, or the raw bytes of a name (Buffer / Uint8Array), since
 * Linux names are bytes and need not be valid UTF-8. Copied into a malloc'd C string
 * (*out; the caller frees it); embedded NUL bytes are refused as in get_string.
 */
static bool get_path(napi_env env, napi_value value, const char *fn, const char *arg, char **out)
{
    *out = NULL;
    bool is_typedarray = false;
    if (!call_ok(env, napi_is_typedarray(env, value, &is_typedarray), "napi_is_typedarray"))
        return false;
    if (!is_typedarray)
        return get_string(env, value, fn, arg, false, out);
    void *data = NULL;
    size_t length = 0;
    if (!get_bytes(env, value, fn, arg, &data, &length))
        return false;
    if (length > 0 && memchr(data, 0, length) != NULL) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_VALUE", "%s: argument \"%s\" must not contain null bytes", fn,
                  arg);
        return false;
    }
    char *path = malloc(length + 1);
    if (path == NULL) {
        throw_errno(env, ENOMEM, fn, arg);
        return false;
    }
    if (length > 0)
        memcpy(path, data, length);
    path[length] = '\0';
    *out = path;
    return true;
}

/*
 * What a binding returns after a syscall that gives 0 or -1: undefined, or NULL with the
 * fs-style error thrown. Call it with the syscall itself as rc, so errno is still its own.
 */
static napi_value syscall_result(napi_env env, int rc, const char *syscall, const char *path)
{
    napi_value result = NULL;
    if (rc != 0)
        throw_errno(env, errno, syscall, path);
    else
        call_ok(env, napi_get_undefined(env, &result), "napi_get_undefined");
    return result;
}

/* ---- mount, umount, mknod, statfs -------------------------------------------------- */

/* mount(source: string | null, target, fstype: string | null, flags, data: string | null) */
static napi_value js_mount(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[5];
    char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
    uint32_t flags;
    if (!get_args(env, info, "mount", 5, argv) || !get_string(env, argv[0], "mount", "source", true, &source) ||
        !get_string(env, argv[1], "mount", "target", false, &target) ||
        !get_string(env, argv[2], "mount", "fstype", true, &fstype) ||
        !get_uint32(env, argv[3], "mount", "flags", &flags) || !get_string(env, argv[4], "mount", "data", true, &data))
        goto done;
    result = syscall_result(env, mount(source, target, fstype, flags, data), "mount", target);
done:
    free(source);
    free(target);
    free(fstype);
    free(data);
    return result;
}

/* umount(target, flags) */
static napi_value js_umount(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[2];
    char *target = NULL;
    uint32_t flags;
    if (!get_args(env, info, "umount", 2, argv) || !get_string(env, argv[0], "umount", "target", false, &target) ||
        !get_uint32(env, argv[1], "umount", "flags", &flags))
        goto done;
    result = syscall_result(env, umount2(target, (int)flags), "umount2", target);
done:
    free(target);
    return result;
}

/* mknod(path, mode, major, minor); mode carries the file type (S_IFCHR, S_IFBLK, S_IFIFO …). */
static napi_value js_mknod(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[4];
    char *path = NULL;
    uint32_t mode, major_number, minor_number;
    if (!get_args(env, info, "mknod", 4, argv) || !get_path(env, argv[0], "mknod", "path", &path) ||
        !get_uint32(env, argv[1], "mknod", "mode", &mode) ||
        !get_uint32(env, argv[2], "mknod", "major", &major_number) ||
        !get_uint32(env, argv[3], "mknod", "minor", &minor_number))
        goto done;
    result = syscall_result(env, mknod(path, (mode_t)mode, makedev(major_number, minor_number)), "mknod", path);
done:
    free(path);
    return result;
}

/* statfsType(path) → f_type, the filesystem's magic number (all are 32-bit). */
static napi_value js_statfs_type(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[1];
    char *path = NULL;
    if (!get_args(env, info, "statfsType", 1, argv) || !get_string(env, argv[0], "statfsType", "path", false, &path))
        goto done;
    struct statfs st;
    if (statfs(path, &st) != 0) {
        throw_errno(env, errno, "statfs", path);
        goto done;
    }
    CHECK(napi_create_uint32(env, (uint32_t)st.f_type, &result));
done:
    free(path);
    return result;
}

/* ---- extended attributes ----------------------------------------------------------- */

typedef ssize_t (*xattr_reader)(const char *path, const char *name, void *buffer, size_t size);

static ssize_t read_lgetxattr(const char *path, const char *name, void *buffer, size_t size)
{
    return lgetxattr(path, name, buffer, size);
}

static ssize_t read_llistxattr(const char *path, const char *name, void *buffer, size_t size)
{
    (void)name;
    return llistxattr(path, buffer, size);
}

/* Bounds the retries when another process keeps growing the value under us. */
#define XATTR_READ_ATTEMPTS 64

/*
 * Reads a value whose size is only known to the kernel: asks for the size, reads into
 * a buffer of that size, and starts over if the value grew in between (ERANGE).
 * On success *out is malloc'd (NULL when empty) holding *length bytes.
 * On failure returns false with errno set.
 */
static bool read_sized(xattr_reader reader, const char *path, const char *name, char **out, size_t *length)
{
    *out = NULL;
    *length = 0;
    for (int attempt = 0; attempt < XATTR_READ_ATTEMPTS; attempt++) {
        ssize_t size = reader(path, name, NULL, 0);
        if (size < 0)
            return false;
        if (size == 0)
            return true;
        char *buffer = malloc((size_t)size);
        if (buffer == NULL) {
            errno = ENOMEM;
            return false;
        }
        ssize_t got = reader(path, name, buffer, (size_t)size);
        if (got >= 0) {
            *out = buffer;
            *length = (size_t)got;
            return true;
        }
        int saved = errno;
        free(buffer);
        errno = saved;
        if (saved != ERANGE)
            return false;
    }
    errno = ERANGE;
    return false;
}

/* lsetxattr(path, name, value: Buffer, flags: XATTR_CREATE | XATTR_REPLACE | 0) */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[4];
    char *path = NULL, *name = NULL;
    void *value = NULL;
    size_t size = 0;
    uint32_t flags;
    if (!get_args(env, info, "lsetxattr", 4, argv) || !get_path(env, argv[0], "lsetxattr", "path", &path) ||
        !get_string(env, argv[1], "lsetxattr", "name", false, &name) ||
        !get_bytes(env, argv[2], "lsetxattr", "value", &value, &size) ||
        !get_uint32(env, argv[3], "lsetxattr", "flags", &flags))
        goto done;
    result = syscall_result(env, lsetxattr(path, name, value, size, (int)flags), "lsetxattr", path);
done:
    free(path);
    free(name);
    return result;
}

/* lgetxattr(path, name) → Buffer, or null when the attribute is absent (ENODATA). */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[2];
    char *path = NULL, *name = NULL, *value = NULL;
    size_t length = 0;
    if (!get_args(env, info, "lgetxattr", 2, argv) || !get_path(env, argv[0], "lgetxattr", "path", &path) ||
        !get_string(env, argv[1], "lgetxattr", "name", false, &name))
        goto done;
    if (!read_sized(read_lgetxattr, path, name, &value, &length)) {
        if (errno == ENODATA)
            CHECK(napi_get_null(env, &result));
        else
            throw_errno(env, errno, "lgetxattr", path);
        goto done;
    }
    if (length == 0)
        CHECK(napi_create_buffer(env, 0, NULL, &result));
    else
        CHECK(napi_create_buffer_copy(env, length, value, NULL, &result));
done:
    free(path);
    free(name);
    free(value);
    return result;
}

/* llistxattr(path) → the attribute names. */
static napi_value js_llistxattr(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[1];
    char *path = NULL, *names = NULL;
    size_t length = 0;
    if (!get_args(env, info, "llistxattr", 1, argv) || !get_path(env, argv[0], "llistxattr", "path", &path))
        goto done;
    if (!read_sized(read_llistxattr, path, NULL, &names, &length)) {
        throw_errno(env, errno, "llistxattr", path);
        goto done;
    }
    napi_value list;
    CHECK(napi_create_array(env, &list));
    /* NUL-separated names; strnlen keeps a missing final NUL from running off the end. */
    uint32_t index = 0;
    for (size_t offset = 0; offset < length;) {
        size_t name_length = strnlen(names + offset, length - offset);
        if (name_length > 0) {
            napi_value name;
            CHECK(napi_create_string_utf8(env, names + offset, name_length, &name));
            CHECK(napi_set_element(env, list, index++, name));
        }
        offset += name_length + 1;
    }
    result = list;
done:
    free(path);
    free(names);
    return result;
}

/* lremovexattr(path, name) */
static napi_value js_lremovexattr(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[2];
    char *path = NULL, *name = NULL;
    if (!get_args(env, info, "lremovexattr", 2, argv) ||
        !get_path(env, argv[0], "lremovexattr", "path", &path) ||
        !get_string(env, argv[1], "lremovexattr", "name", false, &name))
        goto done;
    result = syscall_result(env, lremovexattr(path, name), "lremovexattr", path);
done:
    free(path);
    free(name);
    return result;
}

/* ---- module ------------------------------------------------------------------------ */

struct constant {
    const char *name;
    uint32_t value;
};

#define CONSTANT(name) { #name, (uint32_t)(name) }

static const struct constant mount_flags[] = {
    CONSTANT(MS_RDONLY),     CONSTANT(MS_NOSUID),     CONSTANT(MS_NODEV),      CONSTANT(MS_NOEXEC),
    CONSTANT(MS_SYNCHRONOUS), CONSTANT(MS_REMOUNT),   CONSTANT(MS_MANDLOCK),   CONSTANT(MS_DIRSYNC),
    CONSTANT(MS_NOATIME),    CONSTANT(MS_NODIRATIME), CONSTANT(MS_BIND),       CONSTANT(MS_MOVE),
    CONSTANT(MS_REC),        CONSTANT(MS_SILENT),     CONSTANT(MS_POSIXACL),   CONSTANT(MS_UNBINDABLE),
    CONSTANT(MS_PRIVATE),    CONSTANT(MS_SLAVE),      CONSTANT(MS_SHARED),     CONSTANT(MS_RELATIME),
    CONSTANT(MS_STRICTATIME), CONSTANT(MS_LAZYTIME),
};

static const struct constant umount_flags[] = {
    CONSTANT(MNT_FORCE),
    CONSTANT(MNT_DETACH),
    CONSTANT(MNT_EXPIRE),
    CONSTANT(UMOUNT_NOFOLLOW),
};

static const struct constant xattr_flags[] = {
    CONSTANT(XATTR_CREATE),
    CONSTANT(XATTR_REPLACE),
};

static const struct constant fs_magic[] = {
    CONSTANT(TMPFS_MAGIC),       CONSTANT(RAMFS_MAGIC),         CONSTANT(OVERLAYFS_SUPER_MAGIC),
    CONSTANT(EXT4_SUPER_MAGIC),  CONSTANT(BTRFS_SUPER_MAGIC),   CONSTANT(XFS_SUPER_MAGIC),
    CONSTANT(SQUASHFS_MAGIC),    CONSTANT(FUSE_SUPER_MAGIC),    CONSTANT(NFS_SUPER_MAGIC),
    CONSTANT(PROC_SUPER_MAGIC),  CONSTANT(SYSFS_MAGIC),         CONSTANT(CGROUP2_SUPER_MAGIC),
};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* Sets exports[key] to a frozen object of the given constants. */
static bool export_constants(napi_env env, napi_value exports, const char *key, const struct constant *constants,
                             size_t count)
{
    napi_value object;
    if (!call_ok(env, napi_create_object(env, &object), "napi_create_object"))
        return false;
    for (size_t i = 0; i < count; i++) {
        napi_value value;
        if (!call_ok(env, napi_create_uint32(env, constants[i].value, &value), "napi_create_uint32") ||
            !call_ok(env, napi_set_named_property(env, object, constants[i].name, value), "napi_set_named_property"))
            return false;
    }
    return call_ok(env, napi_object_freeze(env, object), "napi_object_freeze") &&
           call_ok(env, napi_set_named_property(env, exports, key, object), "napi_set_named_property");
}

/* ---- memory --------------------------------------------------------------------- */

/* malloc_trim(0): glibc returns only the top of its heap by itself; this hands back every
 * free page, also those between chunks still in use (what a burst of load leaves behind,
 * core/heap-trim.ts). True when memory was released. It cannot fail. */
static napi_value js_malloc_trim(napi_env env, napi_callback_info info)
{
    (void)info;
    napi_value result = NULL;
    if (!call_ok(env, napi_get_boolean(env, malloc_trim(0) == 1, &result), "napi_get_boolean"))
        return NULL;
    return result;
}

#define FUNCTION(name, callback) { name, NULL, callback, NULL, NULL, NULL, napi_enumerable, NULL }

/* Defined after the module init (pidfds and namespaces, for the tasks service). */
static bool export_process_functions(napi_env env, napi_value exports);
/* Defined at the end (the native layer applier, for the diff service). */
static bool export_layer_functions(napi_env env, napi_value exports);
/* Defined at the end (running sha256 hashes, for the content store's ingests). */
static bool export_hash_functions(napi_env env, napi_value exports);

NAPI_MODULE_INIT()
{
    static const napi_property_descriptor functions[] = {
        FUNCTION("mount", js_mount),
        FUNCTION("umount", js_umount),
        FUNCTION("mknod", js_mknod),
        FUNCTION("statfsType", js_statfs_type),
        FUNCTION("lsetxattr", js_lsetxattr),
        FUNCTION("lgetxattr", js_lgetxattr),
        FUNCTION("llistxattr", js_llistxattr),
        FUNCTION("lremovexattr", js_lremovexattr),
        FUNCTION("mallocTrim", js_malloc_trim),
    };
    if (!call_ok(env, napi_define_properties(env, exports, COUNT(functions), functions), "napi_define_properties") ||
        !export_constants(env, exports, "mountFlags", mount_flags, COUNT(mount_flags)) ||
        !export_constants(env, exports, "umountFlags", umount_flags, COUNT(umount_flags)) ||
        !export_constants(env, exports, "xattrFlags", xattr_flags, COUNT(xattr_flags)) ||
        !export_constants(env, exports, "fsMagic", fs_magic, COUNT(fs_magic)) ||
        !export_process_functions(env, exports) || !export_layer_functions(env, exports) ||
        !export_hash_functions(env, exports))
        return NULL;
    return exports;
}

/* ---- pidfds and namespaces --------------------------------------------------------- */
/*
 * For the tasks service, which watches shims it did not start (after a restart they are
 * not its children): a pidfd names a process without the pid-reuse race, signals it,
 * and becomes readable when the process exits — which pidfdWait turns into a promise
 * through a libuv poll handle on the loop, so no thread waits per process.
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif

/* An int argument (fds, pids, signals): an integer in [0, 2^31). */
static bool get_int(napi_env env, napi_value value, const char *fn, const char *arg, int *out)
{
    uint32_t number;
    if (!get_uint32(env, value, fn, arg, &number))
        return false;
    if (number > INT32_MAX) {
        throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE", "%s: argument \"%s\" must be at most 2147483647, got %u",
                  fn, arg, number);
        return false;
    }
    *out = (int)number;
    return true;
}

/* Errors name the pid or fd acted on where fs errors name a path. */
static void throw_errno_on(napi_env env, int errnum, const char *syscall, const char *what, int number)
{
    char subject[48];
    snprintf(subject, sizeof subject, "%s %d", what, number);
    throw_errno(env, errnum, syscall, subject);
}

/* pidfdOpen(pid, flags: 0 | PIDFD_NONBLOCK) → a close-on-exec fd (close it with fs.closeSync). */
static napi_value js_pidfd_open(napi_env env, napi_callback_info info)
{
    napi_value result = NULL;
    napi_value argv[2];
    int pid;
    uint32_t flags;
    if (!get_args(env, info, "pidfdOpen", 2, argv) || !get_int(env, argv[0], "pidfdOpen", "pid", &pid) ||
        !get_uint32(env, argv[1], "pidfdOpen", "flags", &flags))
        return NULL;
    long fd = syscall(SYS_pidfd_open, (pid_t)pid, (unsigned int)flags);
    if (fd < 0) {
        throw_errno_on(env, errno, "pidfd_open", "pid", pid);
        return NULL;
    }
    if (!call_ok(env, napi_create_int32(env, (int32_t)fd, &result), "napi_create_int32")) {
        close((int)fd);
        return NULL;
    }
    return result;
}

/* pidfdSendSignal(fd, signal) */
static napi_value js_pidfd_send_signal(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    int fd, signal_number;
    if (!get_args(env, info, "pidfdSendSignal", 2, argv) || !get_int(env, argv[0], "pidfdSendSignal", "fd", &fd) ||
        !get_int(env, argv[1], "pidfdSendSignal", "signal", &signal_number))
        return NULL;
    if (syscall(SYS_pidfd_send_signal, fd, signal_number, NULL, 0) != 0) {
        throw_errno_on(env, errno, "pidfd_send_signal", "fd", fd);
        return NULL;
    }
    napi_value result = NULL;
    call_ok(env, napi_get_undefined(env, &result), "napi_get_undefined");
    return result;
}

/* pidfdExited(fd) → whether the process has exited (its pidfd polls readable). Never blocks. */
static napi_value js_pidfd_exited(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd;
    if (!get_args(env, info, "pidfdExited", 1, argv) || !get_int(env, argv[0], "pidfdExited", "fd", &fd))
        return NULL;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int ready;
    do
        ready = poll(&pfd, 1, 0);
    while (ready < 0 && errno == EINTR);
    if (ready < 0) {
        throw_errno_on(env, errno, "poll", "fd", fd);
        return NULL;
    }
    if (ready > 0 && (pfd.revents & POLLNVAL)) {
        throw_errno_on(env, EBADF, "poll", "fd", fd);
        return NULL;
    }
    napi_value result = NULL;
    call_ok(env, napi_get_boolean(env, ready > 0 && (pfd.revents & (POLLIN | POLLHUP)) != 0, &result),
            "napi_get_boolean");
    return result;
}

struct pidfd_watch {
    uv_poll_t poll;
    napi_env env;
    napi_deferred deferred;
    napi_async_context context;
    int fd; /* a dup of the caller's: the caller may close its own at any time */
};

static void pidfd_watch_closed(uv_handle_t *handle)
{
    struct pidfd_watch *watch = handle->data;
    close(watch->fd);
    free(watch);
}

/* Settles the promise inside a callback scope, so its continuations run right after. */
static void pidfd_watch_ready(uv_poll_t *handle, int status, int events)
{
    (void)events;
    struct pidfd_watch *watch = handle->data;
    napi_env env = watch->env;
    uv_poll_stop(handle);
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
        napi_value resource, value;
        napi_callback_scope callback_scope;
        if (napi_create_object(env, &resource) == napi_ok &&
            napi_open_callback_scope(env, resource, watch->context, &callback_scope) == napi_ok) {
            if (status < 0) {
                napi_value code, message;
                if (napi_create_string_utf8(env, uv_err_name(status), NAPI_AUTO_LENGTH, &code) == napi_ok &&
                    napi_create_string_utf8(env, uv_strerror(status), NAPI_AUTO_LENGTH, &message) == napi_ok &&
                    napi_create_error(env, code, message, &value) == napi_ok)
                    napi_reject_deferred(env, watch->deferred, value);
            } else if (napi_get_undefined(env, &value) == napi_ok) {
                napi_resolve_deferred(env, watch->deferred, value);
            }
            napi_close_callback_scope(env, callback_scope);
        }
        napi_close_handle_scope(env, scope);
    }
    napi_async_destroy(env, watch->context);
    uv_close((uv_handle_t *)handle, pidfd_watch_closed);
}

/* pidfdWait(fd) → a promise that resolves once the process has exited. */
static napi_value js_pidfd_wait(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd;
    if (!get_args(env, info, "pidfdWait", 1, argv) || !get_int(env, argv[0], "pidfdWait", "fd", &fd))
        return NULL;
    uv_loop_t *loop;
    if (!call_ok(env, napi_get_uv_event_loop(env, &loop), "napi_get_uv_event_loop"))
        return NULL;
    struct pidfd_watch *watch = calloc(1, sizeof *watch);
    if (watch == NULL) {
        throw_errno_on(env, ENOMEM, "pidfdWait", "fd", fd);
        return NULL;
    }
    watch->env = env;
    watch->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (watch->fd < 0) {
        throw_errno_on(env, errno, "fcntl", "fd", fd);
        free(watch);
        return NULL;
    }
    int rc = uv_poll_init(loop, &watch->poll, watch->fd);
    if (rc != 0) {
        /* epoll refuses what cannot be polled (a regular file): EPERM. */
        throw_errno_on(env, -rc, "pidfdWait", "fd", fd);
        close(watch->fd);
        free(watch);
        return NULL;
    }
    watch->poll.data = watch;
    napi_value promise, name;
    if (!call_ok(env, napi_create_string_utf8(env, "berth:pidfdWait", NAPI_AUTO_LENGTH, &name), "napi_create_string_utf8") ||
        !call_ok(env, napi_async_init(env, NULL, name, &watch->context), "napi_async_init"))
        goto fail;
    if (!call_ok(env, napi_create_promise(env, &watch->deferred, &promise), "napi_create_promise")) {
        napi_async_destroy(env, watch->context);
        goto fail;
    }
    rc = uv_poll_start(&watch->poll, UV_READABLE, pidfd_watch_ready);
    if (rc != 0) {
        napi_value error, code, message;
        if (napi_create_string_utf8(env, uv_err_name(rc), NAPI_AUTO_LENGTH, &code) == napi_ok &&
            napi_create_string_utf8(env, uv_strerror(rc), NAPI_AUTO_LENGTH, &message) == napi_ok &&
            napi_create_error(env, code, message, &error) == napi_ok)
            napi_reject_deferred(env, watch->deferred, error);
        napi_async_destroy(env, watch->context);
        uv_close((uv_handle_t *)&watch->poll, pidfd_watch_closed);
    }
    return promise;
fail:
    uv_close((uv_handle_t *)&watch->poll, pidfd_watch_closed);
    return NULL;
}

/* setns(fd, nstype: 0 or a CLONE_NEW* constant): moves the calling thread only. */
static napi_value js_setns(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    int fd;
    uint32_t nstype;
    if (!get_args(env, info, "setns", 2, argv) || !get_int(env, argv[0], "setns", "fd", &fd) ||
        !get_uint32(env, argv[1], "setns", "nstype", &nstype))
        return NULL;
    if (setns(fd, (int)nstype) != 0) {
        throw_errno_on(env, errno, "setns", "fd", fd);
        return NULL;
    }
    napi_value result = NULL;
    call_ok(env, napi_get_undefined(env, &result), "napi_get_undefined");
    return result;
}

/* ---- spawning children --------------------------------------------------------------- */
/*
 * For the tasks service, which runs runc and berth-shim several times per container:
 * libuv starts a child with fork(), which copies the page tables of the whole Node
 * process and write-protects its memory (every later write of the parent faults once);
 * posix_spawn() starts it with clone(CLONE_VM | CLONE_VFORK), which copies nothing. The
 * caller learns of the exit through a pidfd (pidfdWait) and collects it with reap().
 */
#include <spawn.h>
#include <sys/wait.h>

/* At most this many descriptors are handed to a child (stdio and a few more). */
#define SPAWN_MAX_FDS 16

static void free_string_array(char **array)
{
    if (array == NULL)
        return;
    for (char **item = array; *item != NULL; item++)
        free(*item);
    free(array);
}

/* A JS array of strings as a NULL-terminated, malloc'd C array (free_string_array). */
static bool get_string_array(napi_env env, napi_value value, const char *fn, const char *arg, char ***out)
{
    *out = NULL;
    bool is_array = false;
    if (!call_ok(env, napi_is_array(env, value, &is_array), "napi_is_array"))
        return false;
    if (!is_array) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"%s\" must be an array of strings", fn, arg);
        return false;
    }
    uint32_t length;
    if (!call_ok(env, napi_get_array_length(env, value, &length), "napi_get_array_length"))
        return false;
    char **array = calloc((size_t)length + 1, sizeof *array);
    if (array == NULL) {
        throw_errno(env, ENOMEM, fn, arg);
        return false;
    }
    for (uint32_t i = 0; i < length; i++) {
        napi_value item;
        if (!call_ok(env, napi_get_element(env, value, i, &item), "napi_get_element") ||
            !get_string(env, item, fn, arg, false, &array[i])) {
            free_string_array(array);
            return false;
        }
    }
    *out = array;
    return true;
}

/* pipe() → [readFd, writeFd], both close-on-exec (a child gets one only through spawn's fds). */
static napi_value js_pipe(napi_env env, napi_callback_info info)
{
    (void)info;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        throw_errno(env, errno, "pipe2", "");
        return NULL;
    }
    napi_value result, read_end, write_end;
    if (!call_ok(env, napi_create_array_with_length(env, 2, &result), "napi_create_array_with_length") ||
        !call_ok(env, napi_create_int32(env, fds[0], &read_end), "napi_create_int32") ||
        !call_ok(env, napi_create_int32(env, fds[1], &write_end), "napi_create_int32") ||
        !call_ok(env, napi_set_element(env, result, 0, read_end), "napi_set_element") ||
        !call_ok(env, napi_set_element(env, result, 1, write_end), "napi_set_element")) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    return result;
}

/*
 * spawn(file, argv, envp, fds) → the child's pid. Child fd i is the caller's fds[i], or
 * /dev/null where fds[i] is -1; the child has no other descriptor, default signal
 * dispositions (Node ignores SIGPIPE, and an ignored signal stays ignored across exec)
 * and an empty signal mask. Only glibc's two internal signals (32, 33) stay ignored: its
 * posix_spawn sets them so and refuses them a default; a glibc program installs their
 * handlers when it needs them, and Go's runtime (runc) installs its own. A file without a "/" is looked up in PATH. Exec failures
 * (ENOENT, EACCES, ...) are thrown, since posix_spawn waits for the exec.
 */
static napi_value js_spawn(napi_env env, napi_callback_info info)
{
    napi_value argv_js[4];
    char *file = NULL;
    char **child_argv = NULL, **child_envp = NULL;
    int sources[SPAWN_MAX_FDS];
    int high[SPAWN_MAX_FDS];
    uint32_t count = 0;
    napi_value result = NULL;
    bool actions_ready = false, attr_ready = false;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    for (size_t i = 0; i < SPAWN_MAX_FDS; i++)
        high[i] = -1;

    if (!get_args(env, info, "spawn", 4, argv_js) || !get_string(env, argv_js[0], "spawn", "file", false, &file) ||
        !get_string_array(env, argv_js[1], "spawn", "argv", &child_argv) ||
        !get_string_array(env, argv_js[2], "spawn", "envp", &child_envp))
        goto done;
    if (child_argv[0] == NULL) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_VALUE", "spawn: argument \"argv\" must hold at least argv[0]");
        goto done;
    }
    bool is_array = false;
    CHECK(napi_is_array(env, argv_js[3], &is_array));
    if (is_array)
        CHECK(napi_get_array_length(env, argv_js[3], &count));
    if (!is_array || count > SPAWN_MAX_FDS) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_VALUE", "spawn: argument \"fds\" must be an array of at most %d fds",
                  SPAWN_MAX_FDS);
        goto done;
    }
    for (uint32_t i = 0; i < count; i++) {
        napi_value item;
        int32_t fd;
        napi_valuetype type;
        CHECK(napi_get_element(env, argv_js[3], i, &item));
        if (!get_type(env, item, &type))
            goto done;
        if (type != napi_number) {
            throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "spawn: fds[%u] must be a number, got %s", i,
                      type_name(type));
            goto done;
        }
        CHECK(napi_get_value_int32(env, item, &fd));
        if (fd < -1) {
            throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE", "spawn: fds[%u] must be an fd or -1, got %d", i, fd);
            goto done;
        }
        sources[i] = fd;
    }
    /*
     * Each source is first copied above the child's range, so no dup2 below has the same
     * fd on both sides (that would keep its close-on-exec flag) or overwrites a source a
     * later one still needs.
     */
    for (uint32_t i = 0; i < count; i++) {
        if (sources[i] < 0)
            continue;
        high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, (int)count);
        if (high[i] < 0) {
            throw_errno_on(env, errno, "fcntl", "fd", sources[i]);
            goto done;
        }
    }
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        throw_errno(env, rc, "posix_spawn_file_actions_init", file);
        goto done;
    }
    actions_ready = true;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = high[i] >= 0 ? posix_spawn_file_actions_adddup2(&actions, high[i], (int)i)
                          : posix_spawn_file_actions_addopen(&actions, (int)i, "/dev/null", O_RDWR, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&actions, (int)count);
    if (rc != 0) {
        throw_errno(env, rc, "posix_spawn_file_actions", file);
        goto done;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        throw_errno(env, rc, "posix_spawnattr_init", file);
        goto done;
    }
    attr_ready = true;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc != 0) {
        throw_errno(env, rc, "posix_spawnattr", file);
        goto done;
    }
    pid_t pid;
    rc = strchr(file, '/') != NULL ? posix_spawn(&pid, file, &actions, &attr, child_argv, child_envp)
                                   : posix_spawnp(&pid, file, &actions, &attr, child_argv, child_envp);
    if (rc != 0) {
        throw_errno(env, rc, "posix_spawn", file);
        goto done;
    }
    if (!call_ok(env, napi_create_int32(env, (int32_t)pid, &result), "napi_create_int32")) {
        /* The caller never learns of it: do not leave it running or unreaped. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        result = NULL;
    }
done:
    if (attr_ready)
        posix_spawnattr_destroy(&attr);
    if (actions_ready)
        posix_spawn_file_actions_destroy(&actions);
    for (size_t i = 0; i < SPAWN_MAX_FDS; i++)
        if (high[i] >= 0)
            close(high[i]);
    free_string_array(child_envp);
    free_string_array(child_argv);
    free(file);
    return result;
}

/*
 * reap(pid, block) → { code, signal } of an exited child (code null when a signal ended
 * it, signal 0 when it exited), or null while it runs (block false). Only for children
 * spawned by spawn(): libuv reaps only the children it started itself.
 */
static napi_value js_reap(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    int pid;
    bool block;
    if (!get_args(env, info, "reap", 2, argv) || !get_int(env, argv[0], "reap", "pid", &pid) ||
        !call_ok(env, napi_get_value_bool(env, argv[1], &block), "napi_get_value_bool"))
        return NULL;
    if (pid == 0) {
        throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE", "reap: argument \"pid\" must be a process id, got 0");
        return NULL;
    }
    int status;
    pid_t reaped;
    do
        reaped = waitpid((pid_t)pid, &status, block ? 0 : WNOHANG);
    while (reaped < 0 && errno == EINTR);
    if (reaped < 0) {
        throw_errno_on(env, errno, "waitpid", "pid", pid);
        return NULL;
    }
    napi_value result, code, signal_number;
    if (reaped == 0)
        return call_ok(env, napi_get_null(env, &result), "napi_get_null") ? result : NULL;
    if (!call_ok(env, napi_create_object(env, &result), "napi_create_object"))
        return NULL;
    if (WIFEXITED(status)) {
        if (!call_ok(env, napi_create_int32(env, WEXITSTATUS(status), &code), "napi_create_int32") ||
            !call_ok(env, napi_create_int32(env, 0, &signal_number), "napi_create_int32"))
            return NULL;
    } else if (!call_ok(env, napi_get_null(env, &code), "napi_get_null") ||
               !call_ok(env, napi_create_int32(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0, &signal_number),
                        "napi_create_int32")) {
        return NULL;
    }
    if (!call_ok(env, napi_set_named_property(env, result, "code", code), "napi_set_named_property") ||
        !call_ok(env, napi_set_named_property(env, result, "signal", signal_number), "napi_set_named_property"))
        return NULL;
    return result;
}

static const struct constant namespace_types[] = {
    CONSTANT(CLONE_NEWNS),  CONSTANT(CLONE_NEWUTS),  CONSTANT(CLONE_NEWIPC),    CONSTANT(CLONE_NEWNET),
    CONSTANT(CLONE_NEWPID), CONSTANT(CLONE_NEWUSER), CONSTANT(CLONE_NEWCGROUP), CONSTANT(CLONE_NEWTIME),
};

static const struct constant pidfd_flags[] = {
    CONSTANT(PIDFD_NONBLOCK),
};

static bool export_process_functions(napi_env env, napi_value exports)
{
    static const napi_property_descriptor functions[] = {
        FUNCTION("pidfdOpen", js_pidfd_open),
        FUNCTION("pidfdSendSignal", js_pidfd_send_signal),
        FUNCTION("pidfdExited", js_pidfd_exited),
        FUNCTION("pidfdWait", js_pidfd_wait),
        FUNCTION("setns", js_setns),
        FUNCTION("pipe", js_pipe),
        FUNCTION("spawn", js_spawn),
        FUNCTION("reap", js_reap),
    };
    return call_ok(env, napi_define_properties(env, exports, COUNT(functions), functions), "napi_define_properties") &&
           export_constants(env, exports, "namespaceTypes", namespace_types, COUNT(namespace_types)) &&
           export_constants(env, exports, "pidfdFlags", pidfd_flags, COUNT(pidfd_flags));
}

/* ---- layer apply ------------------------------------------------------------------- */
/*
 * applyLayer(options) → a promise of the result of layer_apply (layer_apply.c), which
 * runs on the libuv thread pool: several layers extract at once and the event loop
 * stays free. An extraction failure resolves (with error set) rather than rejects, so
 * the caller still learns the blob's digest and can report corrupt bytes first.
 */
#include "layer_apply.h"

struct apply_job {
    napi_async_work work;
    napi_deferred deferred;
    char *blob, *root;
    char **lowers;
    uint32_t lower_count;
    struct layer_options options;
    struct layer_result result;
    napi_ref cancel; /* keeps the cancel flag's buffer alive while the work runs */
};

static void apply_job_free(napi_env env, struct apply_job *job)
{
    if (job->cancel != NULL)
        napi_delete_reference(env, job->cancel);
    free(job->blob);
    free(job->root);
    for (uint32_t i = 0; i < job->lower_count; i++)
        free(job->lowers[i]);
    free(job->lowers);
    layer_result_free(&job->result);
    free(job);
}

static void apply_execute(napi_env env, void *data)
{
    (void)env;
    struct apply_job *job = data;
    layer_apply(&job->options, &job->result);
}

static bool set_string(napi_env env, napi_value object, const char *key, const char *value)
{
    napi_value v;
    return call_ok(env, napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v), "napi_create_string_utf8") &&
           call_ok(env, napi_set_named_property(env, object, key, v), "napi_set_named_property");
}

static bool set_number(napi_env env, napi_value object, const char *key, double value)
{
    napi_value v;
    return call_ok(env, napi_create_double(env, value, &v), "napi_create_double") &&
           call_ok(env, napi_set_named_property(env, object, key, v), "napi_set_named_property");
}

static napi_value apply_result_object(napi_env env, const struct layer_result *r)
{
    napi_value object, warnings;
    if (!call_ok(env, napi_create_object(env, &object), "napi_create_object") ||
        !set_string(env, object, "blobDigest", r->blob_digest) || !set_number(env, object, "blobSize", (double)r->blob_size) ||
        !set_string(env, object, "diffId", r->diff_id) || !set_number(env, object, "size", (double)r->tar_size) ||
        !set_number(env, object, "entries", (double)r->entries) ||
        !call_ok(env, napi_create_array_with_length(env, r->warning_count, &warnings), "napi_create_array_with_length"))
        return NULL;
    for (size_t i = 0; i < r->warning_count; i++) {
        napi_value text;
        if (!call_ok(env, napi_create_string_utf8(env, r->warnings[i], NAPI_AUTO_LENGTH, &text), "napi_create_string_utf8") ||
            !call_ok(env, napi_set_element(env, warnings, (uint32_t)i, text), "napi_set_element"))
            return NULL;
    }
    if (!call_ok(env, napi_set_named_property(env, object, "warnings", warnings), "napi_set_named_property"))
        return NULL;
    /* Names are bytes (not necessarily UTF-8): Buffers, as the addon's paths elsewhere. */
    napi_value dirs;
    if (!call_ok(env, napi_create_array_with_length(env, r->copy_up_dir_count, &dirs), "napi_create_array_with_length"))
        return NULL;
    for (size_t i = 0; i < r->copy_up_dir_count; i++) {
        napi_value buffer;
        if (!call_ok(env, napi_create_buffer_copy(env, strlen(r->copy_up_dirs[i]), r->copy_up_dirs[i], NULL, &buffer),
                     "napi_create_buffer_copy") ||
            !call_ok(env, napi_set_element(env, dirs, (uint32_t)i, buffer), "napi_set_element"))
            return NULL;
    }
    if (!call_ok(env, napi_set_named_property(env, object, "copyUpDirs", dirs), "napi_set_named_property"))
        return NULL;
    if (r->error.kind != LAYER_OK) {
        static const char *const kinds[] = { "ok", "invalid", "system", "unsupported", "cancelled" };
        napi_value error;
        if (!call_ok(env, napi_create_object(env, &error), "napi_create_object") ||
            !set_string(env, error, "kind", kinds[r->error.kind]) || !set_string(env, error, "code", r->error.code) ||
            !set_string(env, error, "message", r->error.message) ||
            !call_ok(env, napi_set_named_property(env, object, "error", error), "napi_set_named_property"))
            return NULL;
    }
    return object;
}

static void apply_complete(napi_env env, napi_status status, void *data)
{
    struct apply_job *job = data;
    napi_value value = NULL;
    if (status == napi_ok)
        value = apply_result_object(env, &job->result);
    else
        call_ok(env, status, "applyLayer");
    if (value != NULL) {
        napi_resolve_deferred(env, job->deferred, value);
    } else {
        /* The pending exception (a napi failure) becomes the rejection. */
        napi_value exception = NULL;
        if (napi_get_and_clear_last_exception(env, &exception) != napi_ok || exception == NULL)
            napi_create_string_utf8(env, "applyLayer: cannot build the result", NAPI_AUTO_LENGTH, &exception);
        napi_reject_deferred(env, job->deferred, exception);
    }
    napi_delete_async_work(env, job->work);
    apply_job_free(env, job);
}

static bool get_property(napi_env env, napi_value object, const char *key, napi_value *value)
{
    return call_ok(env, napi_get_named_property(env, object, key, value), "napi_get_named_property");
}

/* A string property that must be one of two words: true for the first. */
static bool get_choice(napi_env env, napi_value object, const char *key, const char *first, const char *second, bool *out)
{
    napi_value value;
    char *text = NULL;
    if (!get_property(env, object, key, &value) || !get_string(env, value, "applyLayer", key, false, &text))
        return false;
    bool known = strcmp(text, first) == 0 || strcmp(text, second) == 0;
    *out = strcmp(text, first) == 0;
    free(text);
    if (!known)
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_VALUE", "applyLayer: %s must be \"%s\" or \"%s\"", key, first,
                  second);
    return known;
}

/* applyLayer({ blob, compression: "gzip" | "none", root, whiteouts: "overlay" | "delete", lowers: string[], cancel?: Int32Array, growingSize?: number }) */
static napi_value js_apply_layer(napi_env env, napi_callback_info info)
{
    napi_value argv[1], value, promise = NULL, name;
    if (!get_args(env, info, "applyLayer", 1, argv))
        return NULL;
    struct apply_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        throw_errno(env, ENOMEM, "applyLayer", "");
        return NULL;
    }
    bool is_array = false;
    if (!get_property(env, argv[0], "blob", &value) || !get_path(env, value, "applyLayer", "blob", &job->blob) ||
        !get_property(env, argv[0], "root", &value) || !get_path(env, value, "applyLayer", "root", &job->root) ||
        !get_choice(env, argv[0], "compression", "gzip", "none", &job->options.gzip) ||
        !get_choice(env, argv[0], "whiteouts", "overlay", "delete", &job->options.overlay) ||
        !get_property(env, argv[0], "lowers", &value) ||
        !call_ok(env, napi_is_array(env, value, &is_array), "napi_is_array"))
        goto fail;
    if (!is_array) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "applyLayer: lowers must be an array of strings");
        goto fail;
    }
    uint32_t count;
    if (!call_ok(env, napi_get_array_length(env, value, &count), "napi_get_array_length"))
        goto fail;
    job->lowers = calloc(count + 1, sizeof *job->lowers);
    if (job->lowers == NULL) {
        throw_errno(env, ENOMEM, "applyLayer", "lowers");
        goto fail;
    }
    for (uint32_t i = 0; i < count; i++) {
        napi_value element;
        if (!call_ok(env, napi_get_element(env, value, i, &element), "napi_get_element") ||
            !get_path(env, element, "applyLayer", "lowers[]", &job->lowers[i]))
            goto fail;
        job->lower_count = i + 1;
    }
    /* cancel: optional, an Int32Array over a SharedArrayBuffer (never moved by the GC); [0] != 0 stops the apply. */
    bool has_cancel = false;
    if (!call_ok(env, napi_has_named_property(env, argv[0], "cancel", &has_cancel), "napi_has_named_property"))
        goto fail;
    if (has_cancel) {
        napi_value flag;
        bool is_typedarray = false;
        napi_typedarray_type type = napi_int8_array;
        size_t length = 0;
        void *data = NULL;
        if (!get_property(env, argv[0], "cancel", &flag) ||
            !call_ok(env, napi_is_typedarray(env, flag, &is_typedarray), "napi_is_typedarray"))
            goto fail;
        if (is_typedarray &&
            !call_ok(env, napi_get_typedarray_info(env, flag, &type, &length, &data, NULL, NULL), "napi_get_typedarray_info"))
            goto fail;
        if (!is_typedarray || type != napi_int32_array || length < 1) {
            throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "applyLayer: cancel must be an Int32Array of at least one element");
            goto fail;
        }
        if (!call_ok(env, napi_create_reference(env, flag, 1, &job->cancel), "napi_create_reference"))
            goto fail;
        job->options.cancel = data;
    }
    /* growingSize: optional, the final size of a blob file still being written (0 or absent: a complete file). */
    bool has_growing = false;
    if (!call_ok(env, napi_has_named_property(env, argv[0], "growingSize", &has_growing), "napi_has_named_property"))
        goto fail;
    if (has_growing) {
        napi_value size_value;
        napi_valuetype type;
        double size = 0;
        if (!get_property(env, argv[0], "growingSize", &size_value) || !get_type(env, size_value, &type))
            goto fail;
        if (type != napi_undefined) {
            if (type != napi_number) {
                throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "applyLayer: growingSize must be a number, got %s", type_name(type));
                goto fail;
            }
            if (!call_ok(env, napi_get_value_double(env, size_value, &size), "napi_get_value_double"))
                goto fail;
            /* The range test comes first so the cast is defined (NaN fails it too); 2^53: exact in a double. */
            if (!(size >= 0 && size <= 9007199254740991.0) || size != (double)(uint64_t)size) {
                throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE", "applyLayer: growingSize must be an integer from 0 to 2^53-1, got %g", size);
                goto fail;
            }
            job->options.growing_size = (uint64_t)size;
        }
    }
    job->options.blob = job->blob;
    job->options.root = job->root;
    job->options.lowers = (const char *const *)job->lowers;
    job->options.lower_count = job->lower_count;
    if (!call_ok(env, napi_create_string_utf8(env, "berth:applyLayer", NAPI_AUTO_LENGTH, &name), "napi_create_string_utf8") ||
        !call_ok(env, napi_create_async_work(env, NULL, name, apply_execute, apply_complete, job, &job->work),
                 "napi_create_async_work"))
        goto fail;
    if (!call_ok(env, napi_create_promise(env, &job->deferred, &promise), "napi_create_promise") ||
        !call_ok(env, napi_queue_async_work(env, job->work), "napi_queue_async_work")) {
        /* A created promise is left pending and unreachable: nothing else to undo. */
        napi_delete_async_work(env, job->work);
        goto fail;
    }
    return promise;
fail:
    apply_job_free(env, job);
    return NULL;
}

static bool export_layer_functions(napi_env env, napi_value exports)
{
    static const napi_property_descriptor functions[] = {
        FUNCTION("applyLayer", js_apply_layer),
    };
    return call_ok(env, napi_define_properties(env, exports, COUNT(functions), functions), "napi_define_properties");
}

/* ---- running sha256 hashes ------------------------------------------------------------ */
/*
 * For the content store's ingests: a download's chunks are appended to the ingest file
 * and hashed on a libuv pool thread (writev, then EVP_DigestUpdate over what was
 * written), so the content process's one JS thread only receives them. Hashing there
 * took a quarter of that thread during a pull, and it is what bounded the downloads.
 *
 * A hash is an external (type-tagged, freed with it); one write or update at a time per
 * hash (a second while one runs throws ERR_INVALID_STATE), so the digest always covers
 * exactly the bytes appended before it.
 */
#include <limits.h>
#include <openssl/evp.h>
#include <sys/uio.h>

struct sha256_hash {
    EVP_MD_CTX *ctx;
    bool busy;
};

static const napi_type_tag sha256_tag = { 0x6265727468736861ULL, 0x3235362d68617368ULL };

static void sha256_free(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    struct sha256_hash *hash = data;
    EVP_MD_CTX_free(hash->ctx);
    free(hash);
}

/* sha256Create() → a new hash of no bytes. */
static napi_value js_sha256_create(napi_env env, napi_callback_info info)
{
    (void)info;
    struct sha256_hash *hash = calloc(1, sizeof *hash);
    if (hash == NULL) {
        throw_errno(env, ENOMEM, "sha256Create", "");
        return NULL;
    }
    hash->ctx = EVP_MD_CTX_new();
    if (hash->ctx == NULL || EVP_DigestInit_ex(hash->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(hash->ctx);
        free(hash);
        throw_fmt(env, KIND_ERROR, "ERR_BERTH_NATIVE", "sha256Create: libcrypto cannot start a sha256 digest");
        return NULL;
    }
    napi_value external;
    if (!call_ok(env, napi_create_external(env, hash, sha256_free, NULL, &external), "napi_create_external")) {
        sha256_free(env, hash, NULL);
        return NULL;
    }
    if (!call_ok(env, napi_type_tag_object(env, external, &sha256_tag), "napi_type_tag_object"))
        return NULL; /* the external owns the hash now: its finalizer frees it */
    return external;
}

/* The hash an argument holds, refused unless it came from sha256Create or is in use. */
static bool get_sha256(napi_env env, napi_value value, const char *fn, struct sha256_hash **out)
{
    napi_valuetype type;
    bool tagged = false;
    if (!get_type(env, value, &type))
        return false;
    if (type == napi_external && !call_ok(env, napi_check_object_type_tag(env, value, &sha256_tag, &tagged), "napi_check_object_type_tag"))
        return false;
    if (!tagged) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"hash\" must come from sha256Create, got %s", fn, type_name(type));
        return false;
    }
    void *data;
    if (!call_ok(env, napi_get_value_external(env, value, &data), "napi_get_value_external"))
        return false;
    *out = data;
    if ((*out)->busy) {
        throw_fmt(env, KIND_ERROR, "ERR_INVALID_STATE", "%s: the hash is still taking an earlier write", fn);
        return false;
    }
    return true;
}

struct hash_job {
    napi_async_work work;
    napi_deferred deferred;
    struct sha256_hash *hash;
    napi_ref keep;        /* [hash, ...chunks]: alive, their memory in place, while the work runs */
    int fd;               /* -1: hash only */
    struct iovec *spans;  /* the chunks, as given: what is hashed */
    struct iovec *unsent; /* a copy writev advances past what reached the file */
    int count;
    size_t total;
    size_t done;  /* bytes written (all of them, without fd) */
    int error;    /* errno of the failed writev; -1: libcrypto failed */
};

static void hash_job_free(napi_env env, struct hash_job *job)
{
    if (job->keep != NULL)
        napi_delete_reference(env, job->keep);
    free(job->spans);
    free(job->unsent);
    free(job);
}

/* Appends the chunks (the fd is O_APPEND or positioned by its owner), then hashes exactly
 * the bytes that reached the file, so after a failed write the digest still matches it. */
static void hash_execute(napi_env env, void *data)
{
    (void)env;
    struct hash_job *job = data;
    if (job->fd < 0) {
        job->done = job->total;
    } else {
        struct iovec *next = job->unsent;
        int left = job->count;
        while (job->done < job->total) {
            ssize_t n = writev(job->fd, next, left < IOV_MAX ? left : IOV_MAX);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                job->error = errno;
                break;
            }
            if (n == 0) {
                /* Bytes left and none taken: a file that cannot grow; never spin on it. */
                job->error = EIO;
                break;
            }
            job->done += (size_t)n;
            /* A short write: carry on after the bytes that made it. */
            size_t rest = (size_t)n;
            while (left > 0 && rest >= next->iov_len) {
                rest -= next->iov_len;
                next++;
                left--;
            }
            if (rest > 0) {
                next->iov_base = (char *)next->iov_base + rest;
                next->iov_len -= rest;
            }
        }
    }
    size_t unhashed = job->done;
    for (int i = 0; i < job->count && unhashed > 0; i++) {
        size_t n = job->spans[i].iov_len < unhashed ? job->spans[i].iov_len : unhashed;
        if (EVP_DigestUpdate(job->hash->ctx, job->spans[i].iov_base, n) != 1) {
            job->error = -1;
            return;
        }
        unhashed -= n;
    }
}

static void hash_complete(napi_env env, napi_status status, void *data)
{
    struct hash_job *job = data;
    job->hash->busy = false;
    napi_value value = NULL;
    bool ok = false;
    if (status != napi_ok) {
        call_ok(env, status, "sha256Write");
    } else if (job->error > 0) {
        /* The fs-style error, thrown then taken back, with how far the write got. */
        napi_value written;
        throw_errno_on(env, job->error, "writev", "fd", job->fd);
        if (napi_get_and_clear_last_exception(env, &value) == napi_ok && value != NULL &&
            napi_create_double(env, (double)job->done, &written) == napi_ok)
            napi_set_named_property(env, value, "bytesWritten", written);
    } else if (job->error < 0) {
        throw_fmt(env, KIND_ERROR, "ERR_BERTH_NATIVE", "sha256Write: libcrypto failed to hash the bytes (the hash is now unusable)");
    } else {
        ok = call_ok(env, napi_create_double(env, (double)job->done, &value), "napi_create_double");
    }
    if (ok) {
        napi_resolve_deferred(env, job->deferred, value);
    } else {
        if (value == NULL && (napi_get_and_clear_last_exception(env, &value) != napi_ok || value == NULL))
            napi_create_string_utf8(env, "sha256Write: failed", NAPI_AUTO_LENGTH, &value);
        napi_reject_deferred(env, job->deferred, value);
    }
    napi_delete_async_work(env, job->work);
    hash_job_free(env, job);
}

/* The shared part of sha256Write(hash, fd, chunks) and sha256Update(hash, chunks). */
static napi_value queue_hash_job(napi_env env, const char *fn, napi_value hash_arg, int fd, napi_value chunks)
{
    struct sha256_hash *hash;
    bool is_array = false;
    uint32_t count = 0;
    if (!get_sha256(env, hash_arg, fn, &hash) || !call_ok(env, napi_is_array(env, chunks, &is_array), "napi_is_array"))
        return NULL;
    if (!is_array) {
        throw_fmt(env, KIND_TYPE_ERROR, "ERR_INVALID_ARG_TYPE", "%s: argument \"chunks\" must be an array of Buffers", fn);
        return NULL;
    }
    if (!call_ok(env, napi_get_array_length(env, chunks, &count), "napi_get_array_length"))
        return NULL;
    if (count > INT_MAX / 2) {
        throw_fmt(env, KIND_RANGE_ERROR, "ERR_OUT_OF_RANGE", "%s: too many chunks (%u)", fn, count);
        return NULL;
    }
    struct hash_job *job = calloc(1, sizeof *job);
    napi_value keep, promise = NULL, name;
    if (job == NULL || (count > 0 && ((job->spans = calloc(count, sizeof *job->spans)) == NULL ||
                                      (job->unsent = calloc(count, sizeof *job->unsent)) == NULL))) {
        if (job != NULL)
            hash_job_free(env, job);
        throw_errno(env, ENOMEM, fn, "chunks");
        return NULL;
    }
    job->hash = hash;
    job->fd = fd;
    job->count = (int)count;
    /* A private array of its own: the caller may change theirs while the work runs. */
    if (!call_ok(env, napi_create_array_with_length(env, count + 1, &keep), "napi_create_array_with_length") ||
        !call_ok(env, napi_set_element(env, keep, 0, hash_arg), "napi_set_element"))
        goto fail;
    for (uint32_t i = 0; i < count; i++) {
        napi_value chunk;
        void *bytes = NULL;
        size_t length = 0;
        if (!call_ok(env, napi_get_element(env, chunks, i, &chunk), "napi_get_element") ||
            !get_bytes(env, chunk, fn, "chunks[]", &bytes, &length) ||
            !call_ok(env, napi_set_element(env, keep, i + 1, chunk), "napi_set_element"))
            goto fail;
        job->spans[i] = (struct iovec){ .iov_base = bytes, .iov_len = length };
        job->total += length;
    }
    if (count > 0)
        memcpy(job->unsent, job->spans, count * sizeof *job->spans);
    if (!call_ok(env, napi_create_reference(env, keep, 1, &job->keep), "napi_create_reference") ||
        !call_ok(env, napi_create_string_utf8(env, "berth:sha256Write", NAPI_AUTO_LENGTH, &name), "napi_create_string_utf8") ||
        !call_ok(env, napi_create_async_work(env, NULL, name, hash_execute, hash_complete, job, &job->work), "napi_create_async_work"))
        goto fail;
    if (!call_ok(env, napi_create_promise(env, &job->deferred, &promise), "napi_create_promise") ||
        !call_ok(env, napi_queue_async_work(env, job->work), "napi_queue_async_work")) {
        /* A created promise is left pending and unreachable: nothing else to undo. */
        napi_delete_async_work(env, job->work);
        goto fail;
    }
    hash->busy = true;
    return promise;
fail:
    hash_job_free(env, job);
    return NULL;
}

/* sha256Write(hash, fd, chunks) → a promise of the bytes appended to fd (all of them) and hashed. */
static napi_value js_sha256_write(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    int fd;
    if (!get_args(env, info, "sha256Write", 3, argv) || !get_int(env, argv[1], "sha256Write", "fd", &fd))
        return NULL;
    return queue_hash_job(env, "sha256Write", argv[0], fd, argv[2]);
}

/* sha256Update(hash, chunks) → a promise of the bytes hashed (nothing written). */
static napi_value js_sha256_update(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    if (!get_args(env, info, "sha256Update", 2, argv))
        return NULL;
    return queue_hash_job(env, "sha256Update", argv[0], -1, argv[1]);
}

/* sha256Digest(hash) → "sha256:<hex>" of the bytes so far; the hash goes on. */
static napi_value js_sha256_digest(napi_env env, napi_callback_info info)
{
    napi_value argv[1], result = NULL;
    struct sha256_hash *hash;
    if (!get_args(env, info, "sha256Digest", 1, argv) || !get_sha256(env, argv[0], "sha256Digest", &hash))
        return NULL;
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (copy == NULL || EVP_MD_CTX_copy_ex(copy, hash->ctx) != 1 || EVP_DigestFinal_ex(copy, md, &length) != 1 || length != 32) {
        EVP_MD_CTX_free(copy);
        throw_fmt(env, KIND_ERROR, "ERR_BERTH_NATIVE", "sha256Digest: libcrypto cannot finish the digest");
        return NULL;
    }
    EVP_MD_CTX_free(copy);
    char text[7 + 64 + 1] = "sha256:";
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < length; i++) {
        text[7 + 2 * i] = hex[md[i] >> 4];
        text[7 + 2 * i + 1] = hex[md[i] & 15];
    }
    text[7 + 64] = '\0';
    call_ok(env, napi_create_string_utf8(env, text, 7 + 64, &result), "napi_create_string_utf8");
    return result;
}

static bool export_hash_functions(napi_env env, napi_value exports)
{
    static const napi_property_descriptor functions[] = {
        FUNCTION("sha256Create", js_sha256_create),
        FUNCTION("sha256Write", js_sha256_write),
        FUNCTION("sha256Update", js_sha256_update),
        FUNCTION("sha256Digest", js_sha256_digest),
    };
    return call_ok(env, napi_define_properties(env, exports, COUNT(functions), functions), "napi_define_properties");
}
