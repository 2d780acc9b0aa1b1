// A task's resource usage as containerd reports it: the cgroup files of its init read
// directly (a few small reads, far cheaper than a `runc events --stats` process per task)
// and packed as io.containerd.cgroups.v1.Metrics or io.containerd.cgroups.v2.Metrics.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as v1 from "../../core/gen/containerd/cgroups/v1/metrics.ts";
import * as v2 from "../../core/gen/containerd/cgroups/v2/metrics.ts";
import type { Any } from "../../core/gen/google/protobuf/any.ts";
import { cgroupDirsOf, type CgroupLayout } from "./cgroups.ts";

export const v1MetricsTypeUrl = "io.containerd.cgroups.v1.Metrics";
export const v2MetricsTypeUrl = "io.containerd.cgroups.v2.Metrics";

/** The file's text, or undefined when the controller does not offer it. */
function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTSUP" || code === "EOPNOTSUPP") return undefined;
    throw err;
  }
}

/** A single number; "max" (no limit) reads as `unlimited`. */
function readNumber(path: string, unlimited = 0n): bigint | undefined {
  const text = readOptional(path)?.trim();
  if (text === undefined || text === "") return undefined;
  if (text === "max") return unlimited;
  return /^\d+$/.test(text) ? BigInt(text) : undefined;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events). */
function readKeyed(path: string): Map<string, bigint> {
  const values = new Map<string, bigint>();
  for (const line of (readOptional(path) ?? "").split("\n")) {
    const [key, value] = line.split(" ");
    if (key && value && /^\d+$/.test(value)) values.set(key, BigInt(value));
  }
  return values;
}

const camel = (snake: string) => snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Copies each counter into the field of the same name, where the message has one. */
function fillCounters<T extends object>(target: T, counters: Map<string, bigint>, renames: Record<string, string> = {}): T {
  for (const [key, value] of counters) {
    const field = renames[key] ?? camel(key);
    if (Object.hasOwn(target, field) && typeof (target as Record<string, unknown>)[field] === "bigint") {
      (target as Record<string, unknown>)[field] = value;
    }
  }
  return target;
}

// v1 memory.stat names whose message fields are spelled otherwise.
const v1MemoryRenames: Record<string, string> = {
  pgpgin: "pgPgIn",
  pgpgout: "pgPgOut",
  pgfault: "pgFault",
  pgmajfault: "pgMajFault",
  total_pgpgin: "totalPgPgIn",
  total_pgpgout: "totalPgPgOut",
  total_pgfault: "totalPgFault",
  total_pgmajfault: "totalPgMajFault",
  hierarchical_memsw_limit: "hierarchicalSwapLimit",
};

// cpuacct.stat counts USER_HZ ticks, which Linux fixes at 100 per second for user space.
const nanosPerTick = 10_000_000n;

function v1MemoryEntry(dir: string, prefix: string): v1.MemoryEntry | undefined {
  const usage = readNumber(join(dir, `${prefix}.usage_in_bytes`));
  if (usage === undefined) return undefined;
  return {
    usage,
    limit: readNumber(join(dir, `${prefix}.limit_in_bytes`)) ?? 0n,
    max: readNumber(join(dir, `${prefix}.max_usage_in_bytes`)) ?? 0n,
    failcnt: readNumber(join(dir, `${prefix}.failcnt`)) ?? 0n,
  };
}

/** blkio lines "MAJ:MIN Op value" (and a trailing "Total value"). */
function v1BlkioEntries(dir: string, name: string): v1.BlkIOEntry[] {
  const text = readOptional(join(dir, `blkio.${name}`));
  const throttled = readOptional(join(dir, `blkio.throttle.${name}`));
  // Without CFQ/BFQ the plain files stay empty; the throttle ones count every request.
  const source = text && /^\d+:\d+ /m.test(text) ? text : (throttled ?? "");
  const entries: v1.BlkIOEntry[] = [];
  for (const line of source.split("\n")) {
    const match = /^(\d+):(\d+) (\S+) (\d+)$/.exec(line);
    if (match) entries.push({ major: BigInt(match[1]!), minor: BigInt(match[2]!), op: match[3]!, device: "", value: BigInt(match[4]!) });
  }
  return entries;
}

export function readV1Metrics(dirs: Map<string, string>): v1.Metrics {
  const metrics = v1.Metrics.fromPartial({});
  const pids = dirs.get("pids");
  // A root cgroup has no pids.current: nothing to report there.
  const pidsCurrent = pids ? readNumber(join(pids, "pids.current")) : undefined;
  if (pids && pidsCurrent !== undefined) metrics.pids = { current: pidsCurrent, limit: readNumber(join(pids, "pids.max")) ?? 0n };
  const cpuacct = dirs.get("cpuacct");
  if (cpuacct) {
    const ticks = readKeyed(join(cpuacct, "cpuacct.stat"));
    const perCpu = (readOptional(join(cpuacct, "cpuacct.usage_percpu")) ?? "").trim().split(/\s+/).filter(Boolean).map(BigInt);
    const throttle = dirs.get("cpu") ? readKeyed(join(dirs.get("cpu")!, "cpu.stat")) : new Map<string, bigint>();
    metrics.cpu = {
      usage: {
        total: readNumber(join(cpuacct, "cpuacct.usage")) ?? 0n,
        user: (ticks.get("user") ?? 0n) * nanosPerTick,
        kernel: (ticks.get("system") ?? 0n) * nanosPerTick,
        perCpu,
      },
      throttling: { periods: throttle.get("nr_periods") ?? 0n, throttledPeriods: throttle.get("nr_throttled") ?? 0n, throttledTime: throttle.get("throttled_time") ?? 0n },
    };
  }
  const memory = dirs.get("memory");
  if (memory) {
    const stat = fillCounters(v1.MemoryStat.fromPartial({}), readKeyed(join(memory, "memory.stat")), v1MemoryRenames);
    stat.usage = v1MemoryEntry(memory, "memory");
    stat.swap = v1MemoryEntry(memory, "memory.memsw");
    stat.kernel = v1MemoryEntry(memory, "memory.kmem");
    stat.kernelTcp = v1MemoryEntry(memory, "memory.kmem.tcp");
    metrics.memory = stat;
  }
  const blkio = dirs.get("blkio");
  if (blkio) {
    metrics.blkio = v1.BlkIOStat.fromPartial({
      ioServiceBytesRecursive: v1BlkioEntries(blkio, "io_service_bytes_recursive"),
      ioServicedRecursive: v1BlkioEntries(blkio, "io_serviced_recursive"),
    });
  }
  return metrics;
}

const uint64Max = (1n << 64n) - 1n;

export function readV2Metrics(dir: string): v2.Metrics {
  const metrics = v2.Metrics.fromPartial({});
  const pidsCurrent = readNumber(join(dir, "pids.current"));
  if (pidsCurrent !== undefined) metrics.pids = { current: pidsCurrent, limit: readNumber(join(dir, "pids.max")) ?? 0n };
  metrics.cpu = fillCounters(v2.CPUStat.fromPartial({}), readKeyed(join(dir, "cpu.stat")));
  const usage = readNumber(join(dir, "memory.current"));
  if (usage !== undefined) {
    const stat = fillCounters(v2.MemoryStat.fromPartial({}), readKeyed(join(dir, "memory.stat")));
    stat.usage = usage;
    stat.usageLimit = readNumber(join(dir, "memory.max"), uint64Max) ?? 0n;
    stat.swapUsage = readNumber(join(dir, "memory.swap.current")) ?? 0n;
    stat.swapLimit = readNumber(join(dir, "memory.swap.max"), uint64Max) ?? 0n;
    stat.maxUsage = readNumber(join(dir, "memory.peak")) ?? 0n;
    stat.swapMaxUsage = readNumber(join(dir, "memory.swap.peak")) ?? 0n;
    metrics.memory = stat;
    metrics.memoryEvents = fillCounters(v2.MemoryEvents.fromPartial({}), readKeyed(join(dir, "memory.events")));
  }
  const io: v2.IOEntry[] = [];
  for (const line of (readOptional(join(dir, "io.stat")) ?? "").split("\n")) {
    const [device, ...pairs] = line.split(" ");
    const match = /^(\d+):(\d+)$/.exec(device ?? "");
    if (!match) continue;
    const counters = new Map(pairs.map((pair) => pair.split("=")).filter(([, v]) => v && /^\d+$/.test(v)).map(([k, v]) => [k!, BigInt(v!)]));
    io.push(fillCounters(v2.IOEntry.fromPartial({ major: BigInt(match[1]!), minor: BigInt(match[2]!) }), counters));
  }
  metrics.io = { usage: io };
  return metrics;
}

/** The metrics of the cgroups `pid` is in, as the Any containerd's clients decode. */
export function cgroupMetricsOf(layout: CgroupLayout, pid: number): Any {
  const dirs = cgroupDirsOf(layout, pid);
  if (layout.mode === "v2") {
    const dir = dirs.get("");
    return { typeUrl: v2MetricsTypeUrl, value: Buffer.from(v2.Metrics.encode(dir ? readV2Metrics(dir) : v2.Metrics.fromPartial({})).finish()) };
  }
  return { typeUrl: v1MetricsTypeUrl, value: Buffer.from(v1.Metrics.encode(readV1Metrics(dirs)).finish()) };
}
