// What running content, images and snapshots on demand costs the first call after the
// daemon was idle: the same command timed while the process it needs is stopped (cold:
// the call waits for berthd to start it) and right after, while it runs (warm). berthd
// runs with BERTH_IDLE_EXIT_MS=1000 so that each cold run finds the process gone.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startBerth } from "./daemons.ts";
import { importBusyboxWithCtr, median, wallMs, type Timed } from "./measure.ts";
import { childPids, distDir, repoRoot, sleep } from "../test/harness.ts";

const runs = Number(process.env.BENCH_RUNS ?? 11);
const idleExitMs = 1000;

interface Command extends Timed {
  /** The process the command needs. */
  process: string;
}

function running(berthdPid: number, name: string): boolean {
  return childPids(berthdPid).some((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((arg) => arg.endsWith(`/dist/${name}.js`));
    } catch {
      return false;
    }
  });
}

async function untilStopped(berthdPid: number, name: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (!running(berthdPid, name)) return;
    await sleep(50);
  }
  throw new Error(`${name} did not exit once idle`);
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-cold-"));
const loadBefore = loadavg()[0]!;
try {
  const berth = await startBerth(join(base, "berth"), { BERTH_IDLE_EXIT_MS: String(idleExitMs) });
  const rows: string[] = [];
  try {
    await importBusyboxWithCtr(berth.address, join(base, "busybox"));

    const address = ["--address", berth.address];
    const commands: Command[] = [
      { label: "berthctl images ls", process: "images", command: process.execPath, args: [join(distDir, "berthctl.js"), ...address, "images", "ls"] },
      { label: "ctr images ls", process: "images", command: "ctr", args: [...address, "images", "ls"] },
      { label: "ctr content ls", process: "content", command: "ctr", args: [...address, "content", "ls"] },
      { label: "ctr snapshots ls", process: "snapshots", command: "ctr", args: [...address, "snapshots", "ls"] },
    ];
    for (const c of commands) wallMs(c);
    const cold = new Map(commands.map((c) => [c.label, [] as number[]]));
    const warm = new Map(commands.map((c) => [c.label, [] as number[]]));
    for (let i = 0; i < runs; i++) {
      for (const c of commands) {
        await untilStopped(berth.pid, c.process);
        cold.get(c.label)!.push(wallMs(c));
        warm.get(c.label)!.push(wallMs(c));
      }
    }
    for (const c of commands) {
      const [coldMs, warmMs] = [median(cold.get(c.label)!), median(warm.get(c.label)!)];
      rows.push(`| ${c.label} | ${c.process} | ${coldMs.toFixed(1)} | ${warmMs.toFixed(1)} | ${(coldMs - warmMs).toFixed(1)} |`);
    }
  } finally {
    await berth.stop();
  }
  const report = [
    `# First call after idle: the process it needs stopped (cold) vs running (warm) (${new Date().toISOString()}, median of ${runs} runs)`,
    "",
    `Machine: ${cpus().length} CPUs, 1-minute load average ${loadBefore.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
    "",
    "| command | process started on demand | cold ms | warm ms | cold − warm ms |",
    "|---|---|---:|---:|---:|",
    ...rows,
    "",
  ].join("\n");
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "cold-start.md"), report);
} finally {
  rmSync(base, { recursive: true, force: true });
}
