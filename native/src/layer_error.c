/* Error messages of the native layer applier, worded like the JS applier's. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "layer_internal.h"

const char *layer_errno_name(int errnum)
{
    const char *name = strerrorname_np(errnum);
    return name != NULL ? name : "UNKNOWN";
}

void layer_fail(struct layer_error *err, enum layer_error_kind kind, int errnum, const char *fmt, ...)
{
    err->kind = kind;
    if (errnum != 0)
        snprintf(err->code, sizeof err->code, "%s", layer_errno_name(errnum));
    else
        err->code[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* As the JS applier: these errnos mean "this layer does not fit its target", the rest are the system's. */
static enum layer_error_kind errno_kind(int errnum)
{
    switch (errnum) {
    case EEXIST:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case EMLINK:
    case ENOTEMPTY:
        return LAYER_INVALID;
    default:
        return LAYER_SYSTEM;
    }
}

void layer_fail_errno(struct layer_error *err, int errnum, const char *syscall, const char *path)
{
    char text[128];
    /* GNU strerror_r: returns the text, maybe not in the buffer. */
    const char *description = strerror_r(errnum, text, sizeof text);
    char quoted[300];
    layer_quote(quoted, sizeof quoted, path, strlen(path));
    layer_fail(err, errno_kind(errnum), errnum, "%s: %s, %s %s", layer_errno_name(errnum), description, syscall, quoted);
}

void layer_error_prefix(struct layer_error *err, const char *prefix)
{
    size_t size = sizeof err->message;
    size_t p = strlen(prefix);
    if (p + 3 >= size)
        return;
    size_t old = strnlen(err->message, size - 1);
    size_t keep = old < size - 1 - p - 2 ? old : size - 1 - p - 2;
    memmove(err->message + p + 2, err->message, keep);
    memcpy(err->message, prefix, p);
    err->message[p] = ':';
    err->message[p + 1] = ' ';
    err->message[p + 2 + keep] = '\0';
}

void layer_quote(char *out, size_t size, const char *name, size_t length)
{
    static const size_t max = 256;
    size_t o = 0;
    /* Room for the worst escape (6), the ellipsis (3), the closing quote and NUL. */
    if (size < 12) {
        if (size > 0)
            out[0] = '\0';
        return;
    }
    out[o++] = '"';
    size_t shown = length > max ? max : length;
    for (size_t i = 0; i < shown && o + 12 < size; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            /* Bytes that are not UTF-8 become U+FFFD when JS decodes the message, as displayPath shows them. */
            out[o++] = (char)c;
        }
    }
    if (length > shown)
        o += (size_t)snprintf(out + o, size - o, "\xe2\x80\xa6");
    out[o++] = '"';
    out[o] = '\0';
}
