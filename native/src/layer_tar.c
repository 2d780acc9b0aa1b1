/*
 * Tar headers as core/tar/reader.ts reads them (ustar, GNU long names, PAX records
 * with raw byte values; Go archive/tar's rules): the same limits on extended headers,
 * the same messages, so a layer fails the same way on either path.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_internal.h"

#define BLOCK 512
/* defaultTarLimits in core/tar/reader.ts */
#define PER_ENTRY_LIMIT (1u << 20)
#define PER_ARCHIVE_LIMIT (256u << 20)
#define MAX_SAFE_INTEGER 9007199254740991LL

void tar_entry_free(struct tar_entry *entry)
{
    free(entry->name);
    free(entry->linkname);
    for (size_t i = 0; i < entry->xattr_count; i++) {
        free(entry->xattrs[i].name);
        free(entry->xattrs[i].value);
    }
    free(entry->xattrs);
    memset(entry, 0, sizeof *entry);
}

static bool no_memory(struct layer_error *err)
{
    layer_fail(err, LAYER_SYSTEM, ENOMEM, "out of memory reading the layer");
    return false;
}

/* A NUL-terminated copy of bytes[0..length), cut at the first NUL (a header field). */
static char *field_bytes(const unsigned char *bytes, size_t length, size_t *out_length)
{
    const unsigned char *nul = memchr(bytes, 0, length);
    size_t n = nul != NULL ? (size_t)(nul - bytes) : length;
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, bytes, n);
    copy[n] = '\0';
    *out_length = n;
    return copy;
}

/* An exact copy that may hold NULs (a PAX value), NUL-terminated. */
static char *dup_bytes(const unsigned char *bytes, size_t length)
{
    char *copy = malloc(length + 1);
    if (copy == NULL)
        return NULL;
    if (length > 0)
        memcpy(copy, bytes, length);
    copy[length] = '\0';
    return copy;
}

/* Octal (space/NUL padded) or GNU base-256 numeric field. */
static bool numeric(const unsigned char *field, size_t length, const char *what, int64_t *out, struct layer_error *err)
{
    if (field[0] & 0x80) {
        bool negative = field[0] == 0xff;
        /* Magnitude bits; anything past 2^53 is refused as JS does. */
        uint64_t value = 0;
        bool overflow = false;
        for (size_t i = 0; i < length; i++) {
            unsigned byte = field[i];
            if (i == 0)
                byte &= 0x7f;
            if (negative)
                byte ^= i == 0 ? 0x7f : 0xff;
            if (value > (UINT64_MAX >> 8))
                overflow = true;
            value = (value << 8) | byte;
        }
        if (overflow || value > (uint64_t)MAX_SAFE_INTEGER || (negative && value + 1 > (uint64_t)MAX_SAFE_INTEGER)) {
            layer_fail(err, LAYER_INVALID, 0, "tar header: %s out of range", what);
            return false;
        }
        *out = negative ? -(int64_t)(value + 1) : (int64_t)value;
        return true;
    }
    /* The text up to the first NUL, with surrounding whitespace trimmed. */
    size_t end = 0;
    while (end < length && field[end] != 0)
        end++;
    size_t start = 0;
    while (start < end && isspace(field[start]))
        start++;
    while (end > start && isspace(field[end - 1]))
        end--;
    if (start == end) {
        *out = 0;
        return true;
    }
    uint64_t value = 0;
    for (size_t i = start; i < end; i++) {
        if (field[i] < '0' || field[i] > '7') {
            char text[16];
            size_t n = end - start < sizeof text - 1 ? end - start : sizeof text - 1;
            for (size_t j = 0; j < n; j++)
                text[j] = isprint(field[start + j]) && field[start + j] != '"' ? (char)field[start + j] : '?';
            text[n] = '\0';
            layer_fail(err, LAYER_INVALID, 0, "tar header: invalid %s field \"%s\"", what, text);
            return false;
        }
        value = value * 8 + (uint64_t)(field[i] - '0');
    }
    /* At most 11 octal digits in the largest field (size, mtime): below 2^36. */
    *out = (int64_t)value;
    return true;
}

static bool checksum_matches(const unsigned char *block, bool *matches, struct layer_error *err)
{
    int64_t recorded;
    if (!numeric(block + 148, 8, "checksum", &recorded, err))
        return false;
    int64_t unsigned_sum = 0, signed_sum = 0;
    for (int i = 0; i < BLOCK; i++) {
        unsigned byte = i >= 148 && i < 156 ? 0x20 : block[i];
        unsigned_sum += byte;
        signed_sum += byte > 127 ? (int64_t)byte - 256 : (int64_t)byte;
    }
    *matches = recorded == unsigned_sum || recorded == signed_sum;
    return true;
}

static bool is_zero_block(const unsigned char *block)
{
    for (int i = 0; i < BLOCK; i++)
        if (block[i] != 0)
            return false;
    return true;
}

struct pax_set {
    struct pax_record *records;
    size_t count, capacity;
    bool present;
};

static void pax_free(struct pax_set *pax)
{
    for (size_t i = 0; i < pax->count; i++) {
        free(pax->records[i].key);
        free(pax->records[i].value);
    }
    free(pax->records);
    memset(pax, 0, sizeof *pax);
}

static bool pax_set_value(struct pax_set *pax, const unsigned char *key, size_t key_length, const unsigned char *value,
                          size_t value_length, struct layer_error *err)
{
    size_t i = 0;
    while (i < pax->count && !(strlen(pax->records[i].key) == key_length && memcmp(pax->records[i].key, key, key_length) == 0))
        i++;
    if (value_length == 0) {
        /* An empty value deletes the record (POSIX). */
        if (i < pax->count) {
            free(pax->records[i].key);
            free(pax->records[i].value);
            memmove(&pax->records[i], &pax->records[i + 1], (pax->count - i - 1) * sizeof *pax->records);
            pax->count--;
        }
        return true;
    }
    unsigned char *copy = (unsigned char *)dup_bytes(value, value_length);
    if (copy == NULL)
        return no_memory(err);
    if (i < pax->count) {
        free(pax->records[i].value);
        pax->records[i].value = copy;
        pax->records[i].length = value_length;
        return true;
    }
    if (pax->count == pax->capacity) {
        size_t capacity = pax->capacity ? pax->capacity * 2 : 8;
        struct pax_record *grown = realloc(pax->records, capacity * sizeof *grown);
        if (grown == NULL) {
            free(copy);
            return no_memory(err);
        }
        pax->records = grown;
        pax->capacity = capacity;
    }
    char *key_copy = dup_bytes(key, key_length);
    if (key_copy == NULL) {
        free(copy);
        return no_memory(err);
    }
    pax->records[pax->count++] = (struct pax_record){ key_copy, copy, value_length };
    return true;
}

/* PAX records "<len> <key>=<value>\n". */
static bool parse_pax(const unsigned char *data, size_t length, struct pax_set *pax, struct layer_error *err)
{
    size_t pos = 0;
    pax->present = true;
    while (pos < length) {
        const unsigned char *space = memchr(data + pos, ' ', length - pos);
        if (space == NULL || (size_t)(space - data) - pos > 20) {
            layer_fail(err, LAYER_INVALID, 0, "tar: malformed PAX record (no length)");
            return false;
        }
        size_t space_at = (size_t)(space - data);
        uint64_t record_length = 0;
        if (space_at == pos) {
            layer_fail(err, LAYER_INVALID, 0, "tar: malformed PAX record length \"\"");
            return false;
        }
        for (size_t i = pos; i < space_at; i++) {
            if (data[i] < '0' || data[i] > '9') {
                char text[24];
                size_t n = space_at - pos;
                for (size_t j = 0; j < n; j++)
                    text[j] = isprint(data[pos + j]) && data[pos + j] != '"' ? (char)data[pos + j] : '?';
                text[n] = '\0';
                layer_fail(err, LAYER_INVALID, 0, "tar: malformed PAX record length \"%s\"", text);
                return false;
            }
            record_length = record_length * 10 + (uint64_t)(data[i] - '0');
        }
        if (record_length <= space_at - pos + 1 || record_length > length - pos || data[pos + record_length - 1] != '\n') {
            layer_fail(err, LAYER_INVALID, 0, "tar: malformed PAX record (bad length)");
            return false;
        }
        size_t end = pos + (size_t)record_length;
        const unsigned char *record = data + space_at + 1;
        size_t record_size = end - 1 - (space_at + 1);
        const unsigned char *eq = memchr(record, '=', record_size);
        if (eq == NULL || eq == record) {
            layer_fail(err, LAYER_INVALID, 0, "tar: malformed PAX record (no key)");
            return false;
        }
        size_t key_length = (size_t)(eq - record);
        if (!pax_set_value(pax, record, key_length, eq + 1, record_size - key_length - 1, err))
            return false;
        pos = end;
    }
    return true;
}

static void show_value(char *text, size_t size, const struct pax_record *record)
{
    size_t n = record->length < size - 1 ? record->length : size - 1;
    for (size_t i = 0; i < n; i++)
        text[i] = isprint(record->value[i]) && record->value[i] != '"' ? (char)record->value[i] : '?';
    text[n] = '\0';
}

static bool pax_integer(const struct pax_record *record, int64_t *out, struct layer_error *err)
{
    uint64_t value = 0;
    bool overflow = false;
    for (size_t i = 0; i < record->length; i++) {
        if (record->value[i] < '0' || record->value[i] > '9') {
            char text[64];
            show_value(text, sizeof text, record);
            layer_fail(err, LAYER_INVALID, 0, "tar: invalid PAX %s \"%s\"", record->key, text);
            return false;
        }
        if (value > (uint64_t)MAX_SAFE_INTEGER)
            overflow = true;
        else
            value = value * 10 + (uint64_t)(record->value[i] - '0');
    }
    if (overflow || value > (uint64_t)MAX_SAFE_INTEGER) {
        layer_fail(err, LAYER_INVALID, 0, "tar: PAX %s out of range", record->key);
        return false;
    }
    *out = (int64_t)value;
    return true;
}

/* "-?digits(.digits)?" as a number of seconds. */
static bool pax_time(const struct pax_record *record, double *out, struct layer_error *err)
{
    size_t i = 0;
    const unsigned char *v = record->value;
    size_t n = record->length;
    if (i < n && v[i] == '-')
        i++;
    size_t digits = i;
    while (i < n && isdigit(v[i]))
        i++;
    bool ok = i > digits;
    if (ok && i < n && v[i] == '.') {
        size_t fraction = ++i;
        while (i < n && isdigit(v[i]))
            i++;
        ok = i > fraction;
    }
    if (!ok || i != n) {
        char text[64];
        show_value(text, sizeof text, record);
        layer_fail(err, LAYER_INVALID, 0, "tar: invalid PAX %s \"%s\"", record->key, text);
        return false;
    }
    char text[64];
    if (n >= sizeof text) {
        /* More digits than a double holds: parse a copy of any length. */
        char *copy = dup_bytes(v, n);
        if (copy == NULL)
            return no_memory(err);
        *out = strtod(copy, NULL);
        free(copy);
        return true;
    }
    memcpy(text, v, n);
    text[n] = '\0';
    *out = strtod(text, NULL);
    return true;
}

static bool add_xattr(struct tar_entry *entry, const char *name, const unsigned char *value, size_t length,
                      struct layer_error *err)
{
    struct tar_xattr *grown = realloc(entry->xattrs, (entry->xattr_count + 1) * sizeof *grown);
    if (grown == NULL)
        return no_memory(err);
    entry->xattrs = grown;
    char *name_copy = strdup(name);
    unsigned char *value_copy = (unsigned char *)dup_bytes(value, length);
    if (name_copy == NULL || value_copy == NULL) {
        free(name_copy);
        free(value_copy);
        return no_memory(err);
    }
    entry->xattrs[entry->xattr_count++] = (struct tar_xattr){ name_copy, value_copy, length };
    return true;
}

static bool replace_bytes(char **field, size_t *field_length, const unsigned char *bytes, size_t length,
                          struct layer_error *err)
{
    char *copy = dup_bytes(bytes, length);
    if (copy == NULL)
        return no_memory(err);
    free(*field);
    *field = copy;
    *field_length = length;
    return true;
}

static bool apply_pax(struct tar_reader *reader, struct tar_entry *entry, const struct pax_set *pax, struct layer_error *err)
{
    static const char xattr_prefix[] = "SCHILY.xattr.";
    for (size_t i = 0; i < pax->count; i++) {
        const struct pax_record *r = &pax->records[i];
        const char *key = r->key;
        int64_t number;
        if (strcmp(key, "path") == 0) {
            if (!replace_bytes(&entry->name, &entry->name_length, r->value, r->length, err))
                return false;
            layer_quote(reader->display, sizeof reader->display, entry->name, entry->name_length);
        } else if (strcmp(key, "linkpath") == 0) {
            if (!replace_bytes(&entry->linkname, &entry->linkname_length, r->value, r->length, err))
                return false;
        } else if (strcmp(key, "size") == 0) {
            if (!pax_integer(r, &number, err))
                return false;
            entry->size = number;
        } else if (strcmp(key, "uid") == 0) {
            if (!pax_integer(r, &entry->uid, err))
                return false;
        } else if (strcmp(key, "gid") == 0) {
            if (!pax_integer(r, &entry->gid, err))
                return false;
        } else if (strcmp(key, "mtime") == 0) {
            if (!pax_time(r, &entry->mtime, err))
                return false;
        } else if (strcmp(key, "atime") == 0) {
            if (!pax_time(r, &entry->atime, err))
                return false;
            entry->has_atime = true;
        } else if (strncmp(key, xattr_prefix, sizeof xattr_prefix - 1) == 0) {
            if (!add_xattr(entry, key + sizeof xattr_prefix - 1, r->value, r->length, err))
                return false;
        } else if (strncmp(key, "GNU.sparse.", 11) == 0) {
            layer_fail(err, LAYER_INVALID, 0, "tar: entry %s: sparse files are not supported", reader->display);
            return false;
        }
    }
    return true;
}

/* Reads an extended header's payload (size bytes plus padding) into a fresh buffer. */
static unsigned char *read_extended(struct tar_reader *reader, int64_t size, struct layer_error *err)
{
    size_t padded = (size_t)size + (size_t)((BLOCK - size % BLOCK) % BLOCK);
    unsigned char *data = malloc(padded > 0 ? padded : 1);
    if (data == NULL) {
        no_memory(err);
        return NULL;
    }
    if (padded > 0) {
        int got = source_read_exact(reader->src, data, padded, "tar extended header", err);
        if (got <= 0) {
            if (got == 0)
                layer_fail(err, LAYER_INVALID, 0, "tar: unexpected end of archive in an extended header");
            free(data);
            return NULL;
        }
    }
    return data;
}

static bool skip_rest(struct tar_reader *reader, struct layer_error *err)
{
    uint64_t left = reader->data_left + reader->padding;
    reader->data_left = reader->padding = 0;
    if (left > 0 && !source_skip(reader->src, left, err)) {
        if (err->kind == LAYER_OK)
            layer_fail(err, LAYER_INVALID, 0, "tar: unexpected end of archive in the data of %s (truncated layer)",
                       reader->display);
        return false;
    }
    return true;
}

int tar_next(struct tar_reader *reader, struct tar_entry *entry, struct layer_error *err)
{
    memset(entry, 0, sizeof *entry);
    if (!skip_rest(reader, err))
        return -1;
    uint64_t entry_extended = 0;
    char *long_name = NULL, *long_link = NULL;
    size_t long_name_length = 0, long_link_length = 0;
    struct pax_set pax = { 0 };
    int result = -1;
    unsigned char block[BLOCK];
    for (;;) {
        int got = source_read_exact(reader->src, block, BLOCK, "tar header", err);
        if (got < 0)
            goto done;
        if (got == 0) {
            if (long_name != NULL || long_link != NULL || pax.present) {
                layer_fail(err, LAYER_INVALID, 0, "tar: unexpected end of archive after an extended header");
                goto done;
            }
            result = 0;
            goto done;
        }
        if (is_zero_block(block)) {
            unsigned char next[BLOCK];
            got = source_read_exact(reader->src, next, BLOCK, "tar end-of-archive marker", err);
            if (got < 0)
                goto done;
            if (got > 0 && !is_zero_block(next)) {
                layer_fail(err, LAYER_INVALID, 0, "tar: invalid header (zero block followed by data)");
                goto done;
            }
            result = 0;
            goto done;
        }
        bool matches;
        if (!checksum_matches(block, &matches, err))
            goto done;
        if (!matches) {
            layer_fail(err, LAYER_INVALID, 0, "tar: invalid header checksum (corrupt archive, or not a tar)");
            goto done;
        }
        char flag = (char)block[156];
        tar_entry_free(entry);
        entry->name = field_bytes(block, 100, &entry->name_length);
        if (entry->name == NULL) {
            no_memory(err);
            goto done;
        }
        /* POSIX ustar keeps a 155-byte prefix; GNU ("ustar  ") uses that space for times. */
        if (memcmp(block + 257, "ustar\0", 6) == 0 && block[345] != 0) {
            size_t prefix_length;
            char *prefix = field_bytes(block + 345, 155, &prefix_length);
            char *joined = prefix != NULL ? malloc(prefix_length + 1 + entry->name_length + 1) : NULL;
            if (joined == NULL) {
                free(prefix);
                no_memory(err);
                goto done;
            }
            memcpy(joined, prefix, prefix_length);
            joined[prefix_length] = '/';
            memcpy(joined + prefix_length + 1, entry->name, entry->name_length + 1);
            free(prefix);
            free(entry->name);
            entry->name = joined;
            entry->name_length += prefix_length + 1;
        }
        layer_quote(reader->display, sizeof reader->display, entry->name, entry->name_length);
        entry->linkname = field_bytes(block + 157, 100, &entry->linkname_length);
        if (entry->linkname == NULL) {
            no_memory(err);
            goto done;
        }
        int64_t mode;
        if (!numeric(block + 100, 8, "mode", &mode, err) || !numeric(block + 108, 8, "uid", &entry->uid, err) ||
            !numeric(block + 116, 8, "gid", &entry->gid, err) || !numeric(block + 124, 12, "size", &entry->size, err))
            goto done;
        int64_t mtime;
        if (!numeric(block + 136, 12, "mtime", &mtime, err) ||
            !numeric(block + 329, 8, "devmajor", &entry->devmajor, err) ||
            !numeric(block + 337, 8, "devminor", &entry->devminor, err))
            goto done;
        entry->mode = (uint32_t)(mode & 07777);
        entry->mtime = (double)mtime;
        if (entry->size < 0) {
            layer_fail(err, LAYER_INVALID, 0, "tar: entry %s: negative size", reader->display);
            goto done;
        }

        if (flag == 'x' || flag == 'g' || flag == 'L' || flag == 'K') {
            /* Checked before reading, so the bytes are never buffered. */
            entry_extended += (uint64_t)entry->size;
            reader->archive_extended += (uint64_t)entry->size;
            if (entry_extended > PER_ENTRY_LIMIT) {
                layer_fail(err, LAYER_INVALID, 0, "tar: extended headers of one entry total more than %u bytes (the limit)",
                           PER_ENTRY_LIMIT);
                goto done;
            }
            if (reader->archive_extended > PER_ARCHIVE_LIMIT) {
                layer_fail(err, LAYER_INVALID, 0,
                           "tar: extended headers of the archive total more than %u bytes (the limit)", PER_ARCHIVE_LIMIT);
                goto done;
            }
            unsigned char *data = read_extended(reader, entry->size, err);
            if (data == NULL)
                goto done;
            bool ok = true;
            size_t length = (size_t)entry->size;
            if (flag == 'x') {
                ok = parse_pax(data, length, &pax, err);
            } else if (flag == 'L') {
                free(long_name);
                long_name = field_bytes(data, length, &long_name_length);
                ok = long_name != NULL || no_memory(err);
            } else if (flag == 'K') {
                free(long_link);
                long_link = field_bytes(data, length, &long_link_length);
                ok = long_link != NULL || no_memory(err);
            }
            /* Global PAX headers ('g') are ignored, as containerd does. */
            free(data);
            if (!ok)
                goto done;
            continue;
        }

        /* A regular-file flag on a name ending in "/" is a directory (old tars). */
        bool slash = entry->name_length > 0 && entry->name[entry->name_length - 1] == '/';
        if (long_name != NULL) {
            free(entry->name);
            entry->name = long_name;
            entry->name_length = long_name_length;
            long_name = NULL;
            layer_quote(reader->display, sizeof reader->display, entry->name, entry->name_length);
        }
        if (long_link != NULL) {
            free(entry->linkname);
            entry->linkname = long_link;
            entry->linkname_length = long_link_length;
            long_link = NULL;
        }
        if (pax.present && !apply_pax(reader, entry, &pax, err))
            goto done;

        switch (flag) {
        case '0':
        case '\0':
            entry->type = slash ? TAR_DIR : TAR_FILE;
            break;
        case '7':
            entry->type = TAR_FILE;
            break;
        case '1':
            entry->type = TAR_LINK;
            break;
        case '2':
            entry->type = TAR_SYMLINK;
            break;
        case '3':
            entry->type = TAR_CHAR;
            break;
        case '4':
            entry->type = TAR_BLOCK;
            break;
        case '5':
            entry->type = TAR_DIR;
            break;
        case '6':
            entry->type = TAR_FIFO;
            break;
        default:
            layer_fail(err, LAYER_INVALID, 0, "tar: entry %s: unsupported entry type '%c'", reader->display,
                       flag >= 0x20 && flag <= 0x7e ? flag : '?');
            goto done;
        }
        if (entry->type != TAR_FILE)
            entry->size = 0;
        reader->data_left = (uint64_t)entry->size;
        reader->padding = (uint64_t)((BLOCK - entry->size % BLOCK) % BLOCK);
        result = 1;
        goto done;
    }
done:
    free(long_name);
    free(long_link);
    pax_free(&pax);
    if (result != 1)
        tar_entry_free(entry);
    return result;
}

ssize_t tar_read_data(struct tar_reader *reader, const unsigned char **data, struct layer_error *err)
{
    if (reader->data_left == 0)
        return 0;
    ssize_t got = source_read_some(reader->src, reader->data_left > SIZE_MAX ? SIZE_MAX : (size_t)reader->data_left,
                                   data, err);
    if (got < 0)
        return -1;
    if (got == 0) {
        layer_fail(err, LAYER_INVALID, 0, "tar: unexpected end of archive in the data of %s (truncated layer)",
                   reader->display);
        return -1;
    }
    reader->data_left -= (uint64_t)got;
    return got;
}
