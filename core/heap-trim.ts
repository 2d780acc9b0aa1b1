// Hands the memory a burst of load took back to the system once the process is idle.
// Two things kept it. V8 frees a burst's objects at its next collection but keeps the
// heap pages it grew to until a memory-reducing collection, and an idle server
// allocates nothing, so none comes. glibc returns only the top of its heap by itself,
// and what a burst frees there (HTTP/2 stream state, socket buffers) lies between
// chunks still in use. berthd and content held 200-330 MiB for good after a burst of
// 20000 calls (bench/gateway-load.ts). Once the event loop is quiet after some work,
// one memory-reducing collection and malloc_trim(0) return both (measured: berthd
// 317 → 22 MiB, its idle size; a trim of an idle-sized heap takes a few ms).
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "./log.ts";
import { mallocTrim } from "../native/index.ts";

const checkEveryMs = 5000;
/** Event-loop utilization below which a check period counts as idle. */
const idleUtilization = 0.05;
/**
 * Event-loop time spent since the last trim that makes one worth it once idle: a burst
 * of calls takes seconds, 900 connections opening and closing some 100 ms; an idle
 * process's timers take minutes to add up to it, and a trim of an idle-sized heap
 * costs a few ms.
 */
const workMs = 50;

type FullGc = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
let fullGc: FullGc | undefined;

/** One memory-reducing collection, then glibc's free pages back to the system. */
export function trimHeap(log: Logger): void {
  if (!fullGc) {
    // The collection with options is reachable only through the exposed gc(); the
    // flag exposes it to new contexts, so one is made to fetch it.
    v8.setFlagsFromString("--expose-gc");
    fullGc = vm.runInNewContext("gc") as FullGc;
  }
  fullGc({ type: "major", execution: "sync", flavor: "last-resort" });
  try {
    mallocTrim();
  } catch (err) {
    // Without the addon (not built), V8's share still comes back.
    log.debug({ err: (err as Error).message }, "malloc_trim unavailable");
  }
}

let started = false;

/** Starts the check (once per process; the timer does not keep the process alive). */
export function trimHeapWhenIdle(log: Logger): void {
  if (started) return;
  started = true;
  let lastCheck = performance.eventLoopUtilization();
  // Start-up is work too (loading the bundle, opening sockets and the database), done
  // before this check began: the first quiet check trims it. Counted from here only, a
  // daemon that then served fewer than workMs of calls kept its start-up high-water mark
  // for good (berthd idle: 21.4 MiB USS untrimmed, 17.7 trimmed).
  let workedMs = workMs;
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    const period = performance.eventLoopUtilization(now, lastCheck);
    lastCheck = now;
    workedMs += period.active;
    if (period.utilization > idleUtilization || workedMs < workMs) return;
    const before = process.memoryUsage.rss();
    trimHeap(log);
    workedMs = 0;
    // The trim's own time is not work that calls for another.
    lastCheck = performance.eventLoopUtilization();
    log.debug({ rssBeforeMiB: Math.round(before / 2 ** 20), rssAfterMiB: Math.round(process.memoryUsage.rss() / 2 ** 20) }, "idle again after work: heap trimmed");
  }, checkEveryMs).unref();
}
