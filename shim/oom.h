/*
 * The kernel's OOM killer in a container's memory cgroup: the shim watches the cgroup of
 * the process it runs and counts the OOM kills there (cgroup v1 memory.oom_control with
 * an eventfd registered in cgroup.event_control; cgroup v2 memory.events, which the kernel
 * marks for poll(POLLPRI) when it changes). The count is what decides, not the wake-up:
 * v1 also signals the eventfd when the cgroup is removed.
 */
#ifndef BERTH_SHIM_OOM_H
#define BERTH_SHIM_OOM_H

#include <stdbool.h>
#include <sys/types.h>

struct oom_watch {
    /* What to poll: the eventfd (v1) or memory.events (v2); -1 when not watching. */
    int wake_fd;
    short wake_events;
    /* memory.oom_control (v1) or memory.events (v2): read for the oom_kill count. */
    int counter_fd;
    unsigned long long kills;
    /*
     * v1 wakes the eventfd as the cgroup goes under OOM, before the killer has picked (and
     * counted) a victim: after a wake-up with no new count the count is looked at again
     * every OOM_RECHECK_MS until this time (CLOCK_MONOTONIC).
     */
    bool rechecking;
    struct timespec recheck_until;
};

#define OOM_RECHECK_MS 10

/* Starts watching the memory cgroup of pid; false (said why in shim.log) when there is none to watch. */
bool oom_watch_start(struct oom_watch *watch, pid_t pid);

/*
 * After a wake-up (woke), a recheck's timeout, or before recording the exit: whether the
 * cgroup counted OOM kills since the last call, the total in watch->kills. A cgroup gone
 * stops the watch.
 */
bool oom_watch_check(struct oom_watch *watch, bool woke);

/* The poll timeout the watch needs: OOM_RECHECK_MS while rechecking, else -1. */
int oom_watch_timeout(const struct oom_watch *watch);

void oom_watch_stop(struct oom_watch *watch);

#endif
