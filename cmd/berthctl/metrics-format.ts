// `tasks metrics` output as ctr prints it: the ID/TIMESTAMP table, then the METRIC/VALUE
// rows ctr picks from cgroup v1 or v2 metrics; or the decoded metrics as JSON with
// protobuf field names (ctr's --format json).
import * as v1 from "../../core/gen/containerd/cgroups/v1/metrics.ts";
import * as v2 from "../../core/gen/containerd/cgroups/v2/metrics.ts";
import type { Metric } from "../../core/gen/containerd/types/metrics.ts";
import type { Timestamp } from "../../core/gen/google/protobuf/timestamp.ts";
import { CommandError } from "./output.ts";
import { Table } from "./tabwriter.ts";

const v1Url = "io.containerd.cgroups.v1.Metrics";
const v2Url = "io.containerd.cgroups.v2.Metrics";

type Decoded = { kind: "v1"; metrics: v1.Metrics } | { kind: "v2"; metrics: v2.Metrics };

function decode(metric: Metric): Decoded {
  const data = metric.data;
  if (data?.typeUrl === v1Url) return { kind: "v1", metrics: v1.Metrics.decode(data.value) };
  if (data?.typeUrl === v2Url) return { kind: "v2", metrics: v2.Metrics.decode(data.value) };
  throw new CommandError(`cannot convert metric data type ${JSON.stringify(data?.typeUrl ?? "")}`);
}

/** Go's time.Time String() in UTC: "2006-01-02 15:04:05.999999999 +0000 UTC". */
export function goTimeString(ts: Timestamp | undefined): string {
  const seconds = Number(ts?.seconds ?? 0n);
  const nanos = ts?.nanos ?? 0;
  const base = new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
  const fraction = nanos ? `.${String(nanos).padStart(9, "0").replace(/0+$/, "")}` : "";
  return `${base}${fraction} +0000 UTC`;
}

export function metricsTable(metric: Metric): string {
  const decoded = decode(metric);
  const table = new Table(" ", { minWidth: 1, padding: 4 }).line("ID\tTIMESTAMP\t").line(`${metric.id}\t${goTimeString(metric.timestamp)}\t`).line("");
  table.line("METRIC\tVALUE\t");
  if (decoded.kind === "v1") {
    const { memory, cpu, pids } = decoded.metrics;
    if (memory) {
      table.line(`memory.usage_in_bytes\t${memory.usage?.usage ?? 0n}\t`);
      table.line(`memory.limit_in_bytes\t${memory.usage?.limit ?? 0n}\t`);
      table.line(`memory.stat.cache\t${memory.totalCache}\t`);
    }
    if (cpu) {
      table.line(`cpuacct.usage\t${cpu.usage?.total ?? 0n}\t`);
      table.line(`cpuacct.usage_percpu\t[${(cpu.usage?.perCpu ?? []).join(" ")}]\t`);
    }
    if (pids) {
      table.line(`pids.current\t${pids.current}\t`);
      table.line(`pids.limit\t${pids.limit}\t`);
    }
  } else {
    const { memory, cpu, pids } = decoded.metrics;
    if (pids) {
      table.line(`pids.current\t${pids.current}\t`);
      table.line(`pids.limit\t${pids.limit}\t`);
    }
    if (cpu) {
      table.line(`cpu.usage_usec\t${cpu.usageUsec}\t`);
      table.line(`cpu.user_usec\t${cpu.userUsec}\t`);
      table.line(`cpu.system_usec\t${cpu.systemUsec}\t`);
      table.line(`cpu.nr_periods\t${cpu.nrPeriods}\t`);
      table.line(`cpu.nr_throttled\t${cpu.nrThrottled}\t`);
      table.line(`cpu.throttled_usec\t${cpu.throttledUsec}\t`);
    }
    if (memory) {
      table.line(`memory.usage\t${memory.usage}\t`);
      table.line(`memory.usage_limit\t${memory.usageLimit}\t`);
      table.line(`memory.swap_usage\t${memory.swapUsage}\t`);
      table.line(`memory.swap_limit\t${memory.swapLimit}\t`);
    }
  }
  return table.toString();
}

const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Protobuf JSON with the original field names, zero values left out (as gogo's Go structs marshal with omitempty). */
function jsonValue(value: unknown): unknown {
  if (typeof value === "bigint") return value === 0n ? undefined : value;
  if (Array.isArray(value)) return value.length ? value.map(jsonValue) : undefined;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => [snake(k), jsonValue(v)] as const);
    const kept = entries.filter(([, v]) => v !== undefined && v !== "" && v !== 0);
    return Object.fromEntries(kept);
  }
  return value;
}

export function metricsJson(metric: Metric): string {
  const decoded = decode(metric);
  // Numbers beyond 2^53 (limits) are printed exactly: bigints go out as raw digits.
  const text = JSON.stringify(jsonValue(decoded.metrics), (_key, v: unknown) => (typeof v === "bigint" ? `\u0000${v}\u0000` : v), 2);
  return `${text.replace(/"\\u0000(\d+)\\u0000"/g, "$1")}\n`;
}
