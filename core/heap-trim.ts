// Hands the memory a burst of load took back to the system once the process is idle.
// V8 frees a burst's objects at its next collection but keeps the heap pages it grew
// to until a memory-reducing collection, and an idle server allocates nothing, so none
// comes: berthd and content held 200+ MiB for minutes after a burst of 20000 calls
// (bench/gateway-load.ts). One memory-reducing ("last resort") collection, run once
// the event loop is quiet after the heap grew, returns them (measured: a 366 MiB heap
// of dead objects back to 20 MiB private memory in 47 ms).
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "./log.ts";

const checkEveryMs = 5000;
/** Growth since the last trim (or start) worth a collection. */
const growthBytes = 16 * 1024 * 1024;
/** Event-loop utilization below which the process counts as idle. */
const idleUtilization = 0.05;

let started = false;

const heapBytes = () => {
  const stats = v8.getHeapStatistics();
  return stats.total_heap_size + stats.external_memory;
};

/** Starts the check (once per process; the timer does not keep the process alive). */
export function trimHeapWhenIdle(log: Logger): void {
  if (started) return;
  started = true;
  // The collection with options is reachable only through the exposed gc(); the flag
  // exposes it to new contexts, so one is made to fetch it.
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
  let baseline = heapBytes();
  let lastLoop = performance.eventLoopUtilization();
  setInterval(() => {
    const loop = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(loop, lastLoop).utilization;
    lastLoop = loop;
    const before = heapBytes();
    if (busy > idleUtilization || before < baseline + growthBytes) return;
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    baseline = heapBytes();
    log.debug({ beforeMiB: Math.round(before / 2 ** 20), afterMiB: Math.round(baseline / 2 ** 20) }, "idle again after load: heap trimmed");
  }, checkEveryMs).unref();
}
