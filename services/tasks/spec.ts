// The few changes the tasks service makes to the OCI spec a client sent (ctr sends a
// complete one): the root is the bundle's mounted rootfs, and rlimits are clamped to what
// this host allows.
import { readFileSync } from "node:fs";
import { invalidArgument } from "../../core/errors.ts";

export interface OciSpec {
  root?: { path?: string; readonly?: boolean };
  process?: { terminal?: boolean; rlimits?: { type: string; hard: number; soft: number }[] };
  [key: string]: unknown;
}

export function parseJsonObject(bytes: Uint8Array | undefined, what: string): OciSpec {
  if (!bytes || bytes.length === 0) throw invalidArgument(`${what} is empty`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalidArgument(`${what} must be a JSON object`);
  return value as OciSpec;
}

const limitNames: Record<string, string> = {
  RLIMIT_CPU: "Max cpu time",
  RLIMIT_FSIZE: "Max file size",
  RLIMIT_DATA: "Max data size",
  RLIMIT_STACK: "Max stack size",
  RLIMIT_CORE: "Max core file size",
  RLIMIT_RSS: "Max resident set",
  RLIMIT_NPROC: "Max processes",
  RLIMIT_NOFILE: "Max open files",
  RLIMIT_MEMLOCK: "Max locked memory",
  RLIMIT_AS: "Max address space",
  RLIMIT_LOCKS: "Max file locks",
  RLIMIT_SIGPENDING: "Max pending signals",
  RLIMIT_MSGQUEUE: "Max msgqueue size",
  RLIMIT_NICE: "Max nice priority",
  RLIMIT_RTPRIO: "Max realtime priority",
  RLIMIT_RTTIME: "Max realtime timeout",
};

/** This process's hard limits by rlimit name (runc inherits them); absent = unlimited. */
export function hostHardLimits(): Map<string, number> {
  const limits = new Map<string, number>();
  const lines = readFileSync("/proc/self/limits", "utf8").split("\n");
  for (const [name, label] of Object.entries(limitNames)) {
    const line = lines.find((l) => l.startsWith(label));
    const hard = line?.slice(label.length).trim().split(/\s+/)[1];
    if (hard !== undefined && hard !== "unlimited") limits.set(name, Number(hard));
  }
  return limits;
}

/**
 * Raising a hard limit needs CAP_SYS_RESOURCE, which a host (or a container Berth runs
 * in) may lack: runc then fails the whole create ("operation not permitted"). ctr's
 * default spec asks RLIMIT_NOFILE 1024, so this only bites on hosts with lower limits;
 * clamping keeps the container runnable with the most the host allows.
 */
export function clampRlimits(spec: OciSpec, hard: Map<string, number>): void {
  for (const limit of spec.process?.rlimits ?? []) {
    const max = hard.get(limit.type);
    if (max === undefined) continue;
    limit.hard = Math.min(limit.hard, max);
    limit.soft = Math.min(limit.soft, limit.hard);
  }
}
