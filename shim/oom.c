/* Finding a process's memory cgroup and counting its OOM kills (see oom.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "oom.h"
#include "util.h"

/* A process's cgroup membership: the v1 memory hierarchy's path, and the v2 one's. */
struct membership {
    char v1_memory[PATH_MAX];
    char v2[PATH_MAX];
};

static bool has_word(const char *list, const char *word)
{
    size_t length = strlen(word);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == length && strncmp(p, word, n) == 0)
            return true;
        p += n + (end != NULL ? 1 : 0);
    }
    return false;
}

static void copy_text(char *out, size_t size, const char *text)
{
    snprintf(out, size, "%s", text);
}

/*
 * Ends a getline() loop over f: frees the line buffer and closes f. false (diagnosed,
 * naming `what`) when the loop stopped on a read error rather than at the end.
 */
static bool finish_reading(FILE *f, char *line, const char *what)
{
    int saved = errno;
    bool failed = ferror(f);
    free(line);
    fclose(f);
    if (failed) {
        errno = saved;
        diag("oom watch: reading %s: %m", what);
        return false;
    }
    return true;
}

/* /proc/PID/cgroup: "id:controllers:path" per hierarchy; v2's is "0::path". */
static bool read_membership(pid_t pid, struct membership *m)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        diag("oom watch: %s: %m", path);
        return false;
    }
    m->v1_memory[0] = m->v2[0] = '\0';
    char *line = NULL;
    size_t capacity = 0;
    ssize_t n;
    while ((n = getline(&line, &capacity, f)) > 0) {
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        char *first = strchr(line, ':');
        char *second = first != NULL ? strchr(first + 1, ':') : NULL;
        if (second == NULL)
            continue;
        *first = *second = '\0';
        const char *controllers = first + 1;
        const char *where = second + 1;
        if (strcmp(line, "0") == 0 && controllers[0] == '\0')
            copy_text(m->v2, sizeof m->v2, where);
        else if (has_word(controllers, "memory"))
            copy_text(m->v1_memory, sizeof m->v1_memory, where);
    }
    return finish_reading(f, line, path);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_field(char *text)
{
    char *out = text;
    for (const char *in = text; *in != '\0'; in++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' && in[3] <= '7') {
            *out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
            in += 3;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
}

/*
 * The directory of cgroup `path` in the hierarchy mounted with fs type `fs_type` (and, for
 * v1, super option `controller`), from /proc/self/mountinfo: its mount point plus the
 * path below the mount's root. False when no such mount reaches the path.
 */
static bool cgroup_dir(const char *fs_type, const char *controller, const char *path, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL) {
        diag("oom watch: /proc/self/mountinfo: %m");
        return false;
    }
    bool found = false;
    char *line = NULL;
    size_t capacity = 0;
    ssize_t n;
    while (!found && (n = getline(&line, &capacity, f)) > 0) {
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        char *separator = strstr(line, " - ");
        if (separator == NULL)
            continue;
        *separator = '\0';
        /* After the separator: fstype source super-options. */
        char *save = NULL;
        char *type = strtok_r(separator + 3, " ", &save);
        strtok_r(NULL, " ", &save);
        char *super = strtok_r(NULL, " ", &save);
        if (type == NULL || strcmp(type, fs_type) != 0)
            continue;
        if (controller != NULL && (super == NULL || !has_word(super, controller)))
            continue;
        /* Before it: id parent major:minor root mount-point … */
        char *fields[5];
        save = NULL;
        size_t count = 0;
        for (char *field = strtok_r(line, " ", &save); field != NULL && count < 5; field = strtok_r(NULL, " ", &save))
            fields[count++] = field;
        if (count < 5)
            continue;
        char *root = fields[3], *mount_point = fields[4];
        unescape_field(root);
        unescape_field(mount_point);
        size_t root_length = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (strncmp(path, root, root_length) != 0 || (path[root_length] != '/' && path[root_length] != '\0'))
            continue; /* a bind mount of another sub-tree */
        int written = snprintf(out, size, "%s%s", mount_point, path + root_length);
        found = written > 0 && (size_t)written < size;
    }
    return finish_reading(f, line, "/proc/self/mountinfo") && found;
}

/* The oom_kill count in a memory.oom_control or memory.events fd; false when it cannot be read. */
static bool read_kills(int fd, unsigned long long *kills)
{
    char text[1024];
    ssize_t n;
    do
        n = pread(fd, text, sizeof text - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return false;
    text[n] = '\0';
    for (char *line = text; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        unsigned long long value;
        char extra;
        if (sscanf(line, "oom_kill %llu %c", &value, &extra) == 1) {
            *kills = value;
            return true;
        }
        line = next;
    }
    /* A kernel before 4.13 (v1 without the count): no count, no verdict. */
    errno = ENODATA;
    return false;
}

static bool start_v1(struct oom_watch *watch, const char *dir)
{
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        diag("oom watch: %s: %m", dir);
        return false;
    }
    watch->counter_fd = openat(dir_fd, "memory.oom_control", O_RDONLY | O_CLOEXEC);
    int control_fd = watch->counter_fd >= 0 ? openat(dir_fd, "cgroup.event_control", O_WRONLY | O_CLOEXEC) : -1;
    int saved = errno;
    close_quietly(dir_fd);
    if (control_fd < 0) {
        errno = saved;
        diag("oom watch: %s/%s: %m", dir, watch->counter_fd < 0 ? "memory.oom_control" : "cgroup.event_control");
        return false;
    }
    watch->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (watch->wake_fd < 0) {
        diag("oom watch: eventfd: %m");
        close_quietly(control_fd);
        return false;
    }
    char registration[64];
    int length = snprintf(registration, sizeof registration, "%d %d", watch->wake_fd, watch->counter_fd);
    bool registered = write_all(control_fd, registration, (size_t)length);
    if (!registered)
        diag("oom watch: registering with %s/cgroup.event_control: %m", dir);
    if (close(control_fd) != 0 && registered) {
        diag("oom watch: closing %s/cgroup.event_control: %m", dir);
        registered = false;
    }
    watch->wake_events = POLLIN;
    return registered;
}

static bool start_v2(struct oom_watch *watch, const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/memory.events", dir);
    watch->counter_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (watch->counter_fd < 0) {
        diag("oom watch: %s: %m", path);
        return false;
    }
    /* kernfs marks a changed memory.events for poll as POLLPRI (and POLLERR). */
    watch->wake_fd = watch->counter_fd;
    watch->wake_events = POLLPRI;
    return true;
}

bool oom_watch_start(struct oom_watch *watch, pid_t pid)
{
    *watch = (struct oom_watch){ .wake_fd = -1, .counter_fd = -1 };
    struct membership m;
    if (!read_membership(pid, &m))
        return false;
    char dir[PATH_MAX];
    bool started;
    /* A v1 memory hierarchy wins: on a hybrid host the cgroup2 beside it has no memory controller. */
    if (m.v1_memory[0] != '\0' && cgroup_dir("cgroup", "memory", m.v1_memory, dir, sizeof dir))
        started = start_v1(watch, dir);
    else if (m.v2[0] != '\0' && cgroup_dir("cgroup2", NULL, m.v2, dir, sizeof dir))
        started = start_v2(watch, dir);
    else {
        diag("oom watch: process %d is in no memory cgroup this shim can reach", (int)pid);
        started = false;
    }
    if (started && !read_kills(watch->counter_fd, &watch->kills)) {
        diag("oom watch: reading the oom_kill count of %s: %m", dir);
        started = false;
    }
    if (!started)
        oom_watch_stop(watch);
    return started;
}

/* How long after a wake-up a victim may take to be counted (the killer waits for locks). */
#define RECHECK_WINDOW_MS 2000

static struct timespec monotonic_now(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        now = (struct timespec){ 0, 0 };
    return now;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

bool oom_watch_check(struct oom_watch *watch, bool woke)
{
    if (watch->counter_fd < 0)
        return false;
    if (woke && watch->wake_fd != watch->counter_fd) {
        uint64_t wakes;
        if (read(watch->wake_fd, &wakes, sizeof wakes) < 0 && errno != EAGAIN && errno != EINTR)
            diag("oom watch: reading the eventfd: %m");
    }
    unsigned long long kills;
    if (!read_kills(watch->counter_fd, &kills)) {
        /* ENODEV and the like: the cgroup was removed (runc delete); nothing more to count. */
        oom_watch_stop(watch);
        return false;
    }
    if (kills > watch->kills) {
        watch->kills = kills;
        watch->rechecking = false;
        return true;
    }
    struct timespec now = monotonic_now();
    if (woke) {
        watch->rechecking = true;
        watch->recheck_until = now;
        watch->recheck_until.tv_sec += RECHECK_WINDOW_MS / 1000;
        watch->recheck_until.tv_nsec += (long)(RECHECK_WINDOW_MS % 1000) * 1000000L;
        if (watch->recheck_until.tv_nsec >= 1000000000L) {
            watch->recheck_until.tv_sec++;
            watch->recheck_until.tv_nsec -= 1000000000L;
        }
    } else if (watch->rechecking && !before(&now, &watch->recheck_until)) {
        watch->rechecking = false;
    }
    return false;
}

int oom_watch_timeout(const struct oom_watch *watch)
{
    return watch->counter_fd >= 0 && watch->rechecking ? OOM_RECHECK_MS : -1;
}

void oom_watch_stop(struct oom_watch *watch)
{
    if (watch->wake_fd != watch->counter_fd)
        close_quietly(watch->wake_fd);
    close_quietly(watch->counter_fd);
    watch->wake_fd = watch->counter_fd = -1;
    watch->rechecking = false;
}
