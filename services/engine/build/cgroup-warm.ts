// Keeps the kernel's cgroup migration lock cheap while a RUN's runc joins its cgroups.
// Every write to a cgroup.procs file takes cgroup_threadgroup_rwsem for writing, and the
// first writer after a quiet spell waits for an RCU grace period first (the lock's readers
// switch to their slow path); writers within one grace period of the last one do not.
// Measured here: moving a process between cgroups after a 100 ms gap took 14 ms (median),
// within 5 ms of the previous move 0.14 ms, and a build's RUNs are ≥ 80 ms apart, so each
// RUN's runc paid one grace period, 10-14 ms on this VM, on its way to the process. While
// runc starts, the engine writes its own pid into the cgroup it is already in (a move that
// moves nothing) every few ms, from the thread pool: the first write waits out the grace
// period beside runc's Go start, and runc's joins then find the lock warm. Where the kernel
// keeps the lock in that state anyway (the `favordynmods` mount option) this costs a few
// cheap writes. A write that fails turns it off for good: it is only ever a speed-up.
// BERTH_RUN_CGROUP_WARM=0 turns it off (to measure it).
import { closeSync, constants, existsSync, openSync, readFileSync, write } from "node:fs";

/** How often the lock is taken while warm: well under a grace period (≥ 10 ms here). */
const intervalMs = 4;
/** runc joins its cgroups 15-60 ms after it is started; a long RUN is not kept warm throughout. */
const longestMs = 150;

/**
 * The cgroup.procs file of the cgroup this process is in, in the first hierarchy where
 * that file exists (v1 controllers mounted under /sys/fs/cgroup/<name>, or v2 at
 * /sys/fs/cgroup or /sys/fs/cgroup/unified); undefined when there is none.
 */
export function ownCgroupProcs(procSelfCgroup: string, exists: (path: string) => boolean = existsSync): string | undefined {
  for (const line of procSelfCgroup.split("\n")) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!m) continue;
    const [, controllers, path] = m as unknown as [string, string, string];
    const relative = path === "/" ? "" : path;
    const mounts = controllers === "" ? ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] : [`/sys/fs/cgroup/${controllers.replace(/^name=/, "")}`];
    for (const mount of mounts) {
      const procs = `${mount}${relative}/cgroup.procs`;
      if (exists(procs)) return procs;
    }
  }
  return undefined;
}

let procsFd: number | undefined | null;

function openOwnProcs(): number | undefined {
  if (procsFd !== undefined) return procsFd ?? undefined;
  procsFd = null;
  if (process.env.BERTH_RUN_CGROUP_WARM === "0") return undefined;
  try {
    const path = ownCgroupProcs(readFileSync("/proc/self/cgroup", "utf8"));
    if (path) procsFd = openSync(path, constants.O_WRONLY);
  } catch {
    // no cgroup file to write: runs go on without it
  }
  return procsFd ?? undefined;
}

/** Keeps the lock warm until the returned function is called (at most longestMs). */
export function warmCgroupLock(): () => void {
  const fd = openOwnProcs();
  if (fd === undefined) return () => {};
  const pid = Buffer.from(String(process.pid));
  const until = performance.now() + longestMs;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const once = () => {
    timer = undefined;
    write(fd, pid, (err) => {
      if (err) {
        if (procsFd === fd) {
          procsFd = null;
          closeSync(fd);
        }
        return;
      }
      if (!stopped && performance.now() < until) timer = setTimeout(once, intervalMs).unref();
    });
  };
  once();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
