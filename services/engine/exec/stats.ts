// Docker's container stats from the task's cgroup metrics, as the tasks service reads
// them (io.containerd.cgroups.v1/v2.Metrics), plus the host figures the CLI's CPU % needs:
// the host's total CPU time (system_cpu_usage) and its online CPUs.
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import * as v1 from "../../../core/gen/containerd/cgroups/v1/metrics.ts";
import * as v2 from "../../../core/gen/containerd/cgroups/v2/metrics.ts";
import type { Backend } from "../backend.ts";
import type { ContainerRecord } from "../store.ts";
import { zeroTime } from "../store.ts";

export interface CpuStats {
  cpu_usage: { total_usage: number; percpu_usage?: number[]; usage_in_kernelmode: number; usage_in_usermode: number };
  system_cpu_usage?: number;
  online_cpus?: number;
  throttling_data: { periods: number; throttled_periods: number; throttled_time: number };
}

export interface BlkioEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}

export interface Sample {
  read: string;
  cpu_stats: CpuStats;
  memory_stats: { usage?: number; max_usage?: number; limit?: number; failcnt?: number; stats?: Record<string, number> };
  pids_stats: { current?: number; limit?: number };
  blkio_stats: {
    io_service_bytes_recursive: BlkioEntry[] | null;
    io_serviced_recursive: BlkioEntry[] | null;
    io_queue_recursive: null;
    io_service_time_recursive: null;
    io_wait_time_recursive: null;
    io_merged_recursive: null;
    io_time_recursive: null;
    sectors_recursive: null;
  };
}

// /proc/stat counts USER_HZ ticks, which Linux fixes at 100 per second for user space.
const nanosPerTick = 10_000_000;

/** The host's CPU time in nanoseconds (all CPUs, every state), and its CPU count, from /proc/stat. */
export function hostCpu(): { systemUsage: number; onlineCpus: number } {
  const lines = readFileSync("/proc/stat", "utf8").split("\n");
  const total = lines.find((l) => l.startsWith("cpu "));
  const ticks = total ? total.trim().split(/\s+/).slice(1, 8).reduce((sum, v) => sum + Number(v), 0) : 0;
  const cpus = lines.filter((l) => /^cpu\d+ /.test(l)).length;
  return { systemUsage: ticks * nanosPerTick, onlineCpus: cpus || availableParallelism() };
}

const num = (value: bigint | undefined): number => Number(value ?? 0n);
const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
// v1 memory.stat names the generated fields spell otherwise.
const v1StatNames: Record<string, string> = { pgPgIn: "pgpgin", pgPgOut: "pgpgout", pgFault: "pgfault", pgMajFault: "pgmajfault", totalPgPgIn: "total_pgpgin", totalPgPgOut: "total_pgpgout", totalPgFault: "total_pgfault", totalPgMajFault: "total_pgmajfault" };

function counters(message: object, names: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(message)) if (typeof value === "bigint") out[names[key] ?? snake(key)] = Number(value);
  return out;
}

/** A memory limit the cgroup does not set reads as a huge number; Docker shows the host's memory then. */
const hostLimited = (limit: number) => (limit <= 0 || limit > totalmem() ? totalmem() : limit);

function emptyBlkio(): Sample["blkio_stats"] {
  return {
    io_service_bytes_recursive: null,
    io_serviced_recursive: null,
    io_queue_recursive: null,
    io_service_time_recursive: null,
    io_wait_time_recursive: null,
    io_merged_recursive: null,
    io_time_recursive: null,
    sectors_recursive: null,
  };
}

function emptySample(read: string): Sample {
  return {
    read,
    cpu_stats: { cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 }, throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 } },
    memory_stats: {},
    pids_stats: {},
    blkio_stats: emptyBlkio(),
  };
}

function fromV1(m: v1.Metrics, sample: Sample): void {
  if (m.cpu?.usage) {
    const u = m.cpu.usage;
    sample.cpu_stats.cpu_usage = { total_usage: num(u.total), percpu_usage: u.perCpu.map(Number), usage_in_kernelmode: num(u.kernel), usage_in_usermode: num(u.user) };
  }
  if (m.cpu?.throttling) {
    const t = m.cpu.throttling;
    sample.cpu_stats.throttling_data = { periods: num(t.periods), throttled_periods: num(t.throttledPeriods), throttled_time: num(t.throttledTime) };
  }
  if (m.memory) {
    const { usage, swap: _swap, kernel: _kernel, kernelTcp: _kernelTcp, ...stat } = m.memory;
    sample.memory_stats = {
      usage: num(usage?.usage),
      max_usage: num(usage?.max),
      failcnt: num(usage?.failcnt),
      limit: hostLimited(num(usage?.limit)),
      stats: counters(stat, v1StatNames),
    };
  }
  if (m.pids) sample.pids_stats = { current: num(m.pids.current), ...(m.pids.limit ? { limit: num(m.pids.limit) } : {}) };
  if (m.blkio) {
    const entries = (list: v1.BlkIOEntry[]) => list.map((e) => ({ major: num(e.major), minor: num(e.minor), op: e.op, value: num(e.value) }));
    sample.blkio_stats.io_service_bytes_recursive = entries(m.blkio.ioServiceBytesRecursive);
    sample.blkio_stats.io_serviced_recursive = entries(m.blkio.ioServicedRecursive);
  }
}

function fromV2(m: v2.Metrics, sample: Sample): void {
  if (m.cpu) {
    const c = m.cpu;
    sample.cpu_stats.cpu_usage = { total_usage: num(c.usageUsec) * 1000, usage_in_kernelmode: num(c.systemUsec) * 1000, usage_in_usermode: num(c.userUsec) * 1000 };
    sample.cpu_stats.throttling_data = { periods: num(c.nrPeriods), throttled_periods: num(c.nrThrottled), throttled_time: num(c.throttledUsec) * 1000 };
  }
  if (m.memory) {
    const { usage, usageLimit, swapUsage: _su, swapLimit: _sl, maxUsage, swapMaxUsage: _sm, ...stat } = m.memory;
    sample.memory_stats = { usage: num(usage), ...(maxUsage ? { max_usage: num(maxUsage) } : {}), limit: hostLimited(num(usageLimit)), stats: counters(stat) };
  }
  if (m.pids) sample.pids_stats = { current: num(m.pids.current), ...(m.pids.limit ? { limit: num(m.pids.limit) } : {}) };
  if (m.io) {
    const bytes: BlkioEntry[] = [];
    const ios: BlkioEntry[] = [];
    for (const e of m.io.usage) {
      const device = { major: num(e.major), minor: num(e.minor) };
      bytes.push({ ...device, op: "read", value: num(e.rbytes) }, { ...device, op: "write", value: num(e.wbytes) });
      ios.push({ ...device, op: "read", value: num(e.rios) }, { ...device, op: "write", value: num(e.wios) });
    }
    sample.blkio_stats.io_service_bytes_recursive = bytes;
    sample.blkio_stats.io_serviced_recursive = ios;
  }
}

/** One reading of the container's cgroup (zeros when it has no running task, as Docker shows a stopped container). */
export async function sample(backend: Backend, id: string): Promise<Sample> {
  const host = hostCpu();
  const result = emptySample(new Date().toISOString());
  const { metrics } = await backend.tasks.metrics({ filters: [`id==${id}`] }, backend.call());
  const data = metrics.find((m) => m.id === id)?.data;
  if (data?.value) {
    if (data.typeUrl.endsWith("cgroups.v2.Metrics")) fromV2(v2.Metrics.decode(data.value), result);
    else if (data.typeUrl.endsWith("cgroups.v1.Metrics")) fromV1(v1.Metrics.decode(data.value), result);
    result.cpu_stats.system_cpu_usage = host.systemUsage;
    result.cpu_stats.online_cpus = host.onlineCpus;
  }
  return result;
}

/** Docker's stats object: this sample, and the one before it as precpu (zeros for the first). */
export function statsJson(record: ContainerRecord, current: Sample, previous: Sample | undefined): Record<string, unknown> {
  const pre = previous ?? emptySample(zeroTime);
  return {
    read: current.read,
    preread: pre.read,
    pids_stats: current.pids_stats,
    blkio_stats: current.blkio_stats,
    num_procs: 0,
    storage_stats: {},
    cpu_stats: current.cpu_stats,
    precpu_stats: pre.cpu_stats,
    memory_stats: current.memory_stats,
    name: record.Name,
    id: record.Id,
  };
}
