// npm run bench: memory of the idle daemons, side by side. Starts berthd through its
// launcher (with its private redis and every always-on service; the on-demand ones,
// core/routes.ts, run only while called, so an idle daemon has none) and containerd
// (CRI plugin disabled: Berth has no CRI yet), each on its own temp root, waits for
// them to settle, and reports each process's private memory (USS) and PSS, their sums,
// and the ratio of summed PSS Berth/containerd.
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids, repoRoot, sleep } from "../test/harness.ts";
import { containerdInstalled, startBerth, startContainerd, type RunningDaemon } from "./daemons.ts";
import { mib, processMemory, processName, type ProcessMemory } from "./proc-memory.ts";
import { processTable } from "../core/routes.ts";

const settleMs = Number(process.env.BENCH_SETTLE_MS ?? 5000);

interface Measured {
  rows: ProcessMemory[];
  /** Processes outside the daemon's tree running its binary: they share its pages, which lowers its PSS. */
  sharers: number;
}

function exeOf(pid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Every process of the daemon's tree, once it has settled. */
async function measure(daemon: RunningDaemon): Promise<Measured> {
  try {
    await sleep(settleMs);
    const pids = [daemon.pid, ...childPids(daemon.pid)];
    const exe = exeOf(daemon.pid);
    const sharers = readdirSync("/proc").filter((p) => /^\d+$/.test(p) && !pids.includes(Number(p)) && exeOf(p) === exe).length;
    return { rows: pids.map((pid) => processMemory(pid, processName(pid))), sharers };
  } finally {
    await daemon.stop();
  }
}

/** Lines saying who else ran the daemon's binary (none when nobody did). */
const sharersNote = (m: Measured, who: string): string[] =>
  m.sharers > 0 ? [`Note: ${m.sharers} other process(es) ran the same binary (${who}); they share its pages, so this PSS is lower than it would be alone.`, ""] : [];

function table(title: string, rows: ProcessMemory[]): string {
  const lines = [`${title}`, "| process | pid | USS MiB | PSS MiB |", "|---|---:|---:|---:|"];
  for (const r of rows) lines.push(`| ${r.name} | ${r.pid} | ${mib(r.ussKiB)} | ${mib(r.pssKiB)} |`);
  const total = (k: "ussKiB" | "pssKiB") => rows.reduce((s, r) => s + r[k], 0);
  lines.push(`| **total** | | ${mib(total("ussKiB"))} | ${mib(total("pssKiB"))} |`);
  return lines.join("\n");
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-"));
try {
  const berthRun = await measure(await startBerth(join(base, "berth")));
  const berth = berthRun.rows;
  const containerd = containerdInstalled()
    ? await measure(await startContainerd(join(base, "containerd")))
    : "containerd is not installed (apt-get install containerd)";
  const onDemand = processTable.filter((spec) => spec.onDemand).map((spec) => spec.name);
  const out: string[] = [
    `# Idle daemon memory (${new Date().toISOString()}, settle ${settleMs} ms)`,
    "",
    table("## Berth (berthd, services, redis)", berth),
    "",
    `Started on demand, so not running while idle: ${onDemand.join(", ")}.`,
    "",
    ...sharersNote(berthRun, "this benchmark's own node among them"),
  ];
  const berthPss = berth.reduce((s, r) => s + r.pssKiB, 0);
  if (typeof containerd === "string") {
    out.push(`containerd: not measured — ${containerd}`);
  } else {
    out.push(table("## containerd 1.6 (CRI disabled)", containerd.rows), "", ...sharersNote(containerd, "other containerd daemons on the machine"));
    const cPss = containerd.rows.reduce((s, r) => s + r.pssKiB, 0);
    out.push(`Ratio of summed PSS, Berth / containerd: **${(berthPss / cPss).toFixed(2)}×** (${mib(berthPss)} MiB vs ${mib(cPss)} MiB)`);
  }
  const report = out.join("\n") + "\n";
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "idle-memory.md"), report);
} finally {
  rmSync(base, { recursive: true, force: true });
}
