// node bench/berthd-memory.ts: berthd's own memory, the process that stays up beside
// every container (docs/architecture.md, "Node flags" and "Calls berthd answers itself"),
// at three points, each once the daemon has settled (on-demand processes retired, the
// idle heap trim of core/heap-trim.ts done: USS unchanged for a while):
//  1. idle right after start (no call served yet),
//  2. after an image import and BENCH_RUNS `ctr run --rm` (the local store reads used),
//  3. with BENCH_IDLE idle containers running;
// and the median latency of those `ctr run --rm` and of BENCH_CALLS Images/Get calls
// in a row (answered in berthd's JavaScript: what a flag such as --lite-mode slows), so
// a change that saves memory is seen to cost no time. For each point: berthd's RSS, PSS and USS (/proc/PID/smaps_rollup) and
// its V8 heap (a diagnostic report, node --report-on-signal).
// Variants run one after the other: this checkout, and BENCH_BASELINE=<checkout>[,…]
// (its dist/, built there) for a before/after; each with every flag set of BENCH_FLAG_SETS
// (";"-separated, default core/node-flags.ts' berthdNodeFlags, what the launchers pass).
// Results in bench/results/berthd-memory.md. Cleans up everything even on failure.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { berthdNodeFlags } from "../core/node-flags.ts";
import { processTable } from "../core/routes.ts";
import { closeFreshChannels, childPids, freshClient, repoRoot, startDaemon, type Daemon } from "../test/harness.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { median, Report } from "./measure.ts";
import { ctrAsync as ctrInBackground, ctrOk, ctrSync, removeNamespaceCgroups } from "./ctr.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { processName } from "./proc-memory.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const calls = Number(process.env.BENCH_CALLS ?? 2000);
const idleCount = Number(process.env.BENCH_IDLE ?? 100);
const idleExitMs = Number(process.env.BENCH_IDLE_EXIT_MS ?? 3000);
const flagSets = (process.env.BENCH_FLAG_SETS ?? berthdNodeFlags.join(" ")).split(";").map((set) => set.trim().split(/\s+/).filter(Boolean));
const baselines = (process.env.BENCH_BASELINE ?? "").split(",").filter(Boolean);
const checkouts = [{ name: "this checkout", root: repoRoot }, ...baselines.map((root) => ({ name: root, root }))];
const image = "docker.io/library/busybox:latest";
const namespace = `bench-berthd-memory-${process.pid}`;
const onDemand = new Set(processTable.filter((p) => p.onDemand).map((p) => p.name));

const base = mkdtempSync(join(tmpdir(), "berth-bench-berthd-memory-"));
let daemon: Daemon | undefined;
let counter = 0;

interface Point {
  rssKiB: number;
  pssKiB: number;
  ussKiB: number;
  anonKiB: number;
  heapUsedKiB: number;
  heapTotalKiB: number;
  settled: boolean;
  /** PSS of the daemon's other processes (tasks, redis, …) by name, and of the shims summed. */
  othersPssKiB: Map<string, number>;
}

function rollup(pid: number): Pick<Point, "rssKiB" | "pssKiB" | "ussKiB" | "anonKiB"> {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return { rssKiB: field("Rss"), pssKiB: field("Pss"), ussKiB: field("Private_Clean") + field("Private_Dirty"), anonKiB: field("Anonymous") };
}

const ctr = (args: string[]) => ctrOk(daemon!.address, namespace, args);
const ctrAsync = (args: string[]) => ctrInBackground(daemon!.address, namespace, args);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runningTasks = () => ctr(["tasks", "ls"]).split("\n").slice(1).filter((line) => /\sRUNNING\s*$/.test(line)).length;
const onDemandRunning = () => childPids(daemon!.pid!).some((pid) => onDemand.has(processName(pid)));

/**
 * Waits until no on-demand process runs and berthd's USS has stayed within 256 KiB for
 * 12 s (two of the heap trim's 5-s checks), at most 120 s; false if it never settled.
 */
async function settle(): Promise<boolean> {
  const samples: number[] = [];
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    samples.push(onDemandRunning() ? Number.NaN : rollup(daemon!.pid!).ussKiB);
    const last = samples.slice(-13);
    if (last.length === 13 && last.every((x) => !Number.isNaN(x)) && Math.max(...last) - Math.min(...last) <= 256) return true;
    await sleep(1000);
  }
  return false;
}

/** berthd's V8 heap from a diagnostic report (the launcher turns them on for SIGUSR2). */
async function heapOf(reports: string): Promise<{ used: number; total: number }> {
  const before = new Set(readdirSync(reports));
  process.kill(daemon!.pid!, "SIGUSR2");
  for (let i = 0; i < 200; i++) {
    const fresh = readdirSync(reports).find((f) => !before.has(f) && f.endsWith(".json"));
    if (fresh) {
      try {
        const heap = JSON.parse(readFileSync(join(reports, fresh), "utf8")).javascriptHeap;
        return { used: heap.usedMemory / 1024, total: heap.totalMemory / 1024 };
      } catch {
        // still being written
      }
    }
    await sleep(50);
  }
  throw new Error("berthd wrote no diagnostic report");
}

function othersPss(): Map<string, number> {
  const others = new Map<string, number>();
  const add = (name: string, pid: number) => {
    try {
      others.set(name, (others.get(name) ?? 0) + rollup(pid).pssKiB);
    } catch {
      // exited meanwhile
    }
  };
  for (const pid of childPids(daemon!.pid!)) add(processName(pid), pid);
  const shims = join(daemon!.state, "shims", namespace);
  for (const id of existsSync(shims) ? readdirSync(shims) : []) {
    try {
      add("shims", Number(readFileSync(join(shims, id, "shim.pid"), "utf8")));
    } catch {
      // no pid file (yet)
    }
  }
  return others;
}

async function point(reports: string): Promise<Point> {
  const settled = await settle();
  const memory = rollup(daemon!.pid!);
  const othersPssKiB = othersPss();
  const heap = await heapOf(reports);
  return { ...memory, heapUsedKiB: heap.used, heapTotalKiB: heap.total, settled, othersPssKiB };
}

async function removeContainers(): Promise<void> {
  const ids = ctr(["containers", "ls", "-q"]).split("\n").filter(Boolean);
  for (const id of ids) ctrSync(daemon!.address, namespace, ["tasks", "kill", "-s", "SIGKILL", id]);
  for (let i = 0; i < 600 && runningTasks() > 0; i++) await sleep(100);
  for (const id of ids) {
    ctrSync(daemon!.address, namespace, ["tasks", "delete", id]);
    ctrSync(daemon!.address, namespace, ["containers", "rm", id]);
  }
}


interface Result {
  variant: string;
  idle: Point;
  afterRuns: Point;
  withContainers: Point | undefined;
  runMs: number;
  callMs: number;
  callP99Ms: number;
}

async function measureVariant(checkout: { name: string; root: string }, flags: string[], index: number): Promise<Result> {
  const dir = join(base, `variant-${index}`);
  const reports = join(dir, "reports");
  mkdirSync(reports, { recursive: true });
  const launcher = join(dir, "berthd");
  // Every variant on this node binary: one of another checkout's own would share no page
  // with the other node processes of the machine, and its PSS would not compare.
  writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${flags.join(" ")} --report-on-signal --report-directory=${reports} ${join(checkout.root, "dist", "berthd.js")} "$@"\n`);
  chmodSync(launcher, 0o755);
  daemon = await startDaemon({ base: join(dir, "daemon"), launcher, env: { BERTH_LOG_LEVEL: "warn", BERTH_IDLE_EXIT_MS: String(idleExitMs) } });
  try {
    const idle = await point(reports);
    mkdirSync(join(dir, "image"));
    ctr(["images", "import", skopeoArchives(join(dir, "image"), await buildBusyboxImage(), "busybox:latest").dockerArchive]);
    ctr(["run", "--rm", image, `warm-${++counter}`, "true"]);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      ctr(["run", "--rm", image, `rm-${++counter}`, "true"]);
      times.push(performance.now() - t0);
    }
    // One call after the other on one connection: berthd's own time per call.
    const images = freshClient(ImagesDefinition, daemon.address);
    const callTimes: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await images.get({ name: image }, inNamespace(namespace));
      callTimes.push(performance.now() - t0);
    }
    closeFreshChannels();
    const afterRuns = await point(reports);
    const queue = Array.from({ length: idleCount }, () => `idle-${++counter}`);
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let id = queue.shift(); id; id = queue.shift()) await ctrAsync(["run", "-d", "--null-io", image, id, "sleep", "100000"]);
      }),
    );
    for (let i = 0; i < 1200 && runningTasks() < idleCount; i++) await sleep(100);
    const withContainers = idleCount > 0 ? await point(reports) : undefined;
    const sorted = callTimes.sort((a, b) => a - b);
    return { variant: `${checkout.name}, ${flags.join(" ") || "no flags"}`, idle, afterRuns, withContainers, runMs: median(times), callMs: sorted[Math.floor(sorted.length / 2)] ?? 0, callP99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0 };
  } finally {
    await removeContainers().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`));
    await daemon.destroy();
    daemon = undefined;
  }
}

const report = new Report();
const out = report.out;
const mib = (kib: number) => (kib / 1024).toFixed(1);

try {
  const loadBefore = loadavg()[0]!;
  const results: Result[] = [];
  let index = 0;
  for (const checkout of checkouts) for (const flags of flagSets) results.push(await measureVariant(checkout, flags, index++));
  out(`# berthd's memory (${new Date().toISOString()})`);
  out();
  out(`Command: \`node bench/berthd-memory.ts\` (runs ${runs}, idle containers ${idleCount}, BERTH_IDLE_EXIT_MS ${idleExitMs}); ${cpus().length} CPUs, load ${loadBefore.toFixed(2)} before.`);
  out("berthd alone (not redis, tasks or shims), each point once settled; MiB. PSS shares the node binary's pages with every other node process on the machine, USS does not.");
  out();
  out("| variant | point | RSS | PSS | USS | anon | V8 heap used / total | `ctr run --rm` median ms | Images/Get median / p99 ms | PSS of the other processes | summed PSS, all |");
  out("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
  for (const r of results) {
    const rows: [string, Point][] = [["idle after start", r.idle], [`after ${runs + 1} \`ctr run --rm\``, r.afterRuns]];
    if (r.withContainers) rows.push([`${idleCount} idle containers`, r.withContainers]);
    for (const [name, p] of rows) {
      out(`| ${r.variant} | ${name}${p.settled ? "" : " (not settled)"} | ${mib(p.rssKiB)} | ${mib(p.pssKiB)} | ${mib(p.ussKiB)} | ${mib(p.anonKiB)} | ${mib(p.heapUsedKiB)} / ${mib(p.heapTotalKiB)} | ${name.startsWith("after") ? r.runMs.toFixed(1) : ""} | ${name.startsWith("after") ? `${r.callMs.toFixed(2)} / ${r.callP99Ms.toFixed(2)}` : ""} | ${[...p.othersPssKiB].map(([n, kib]) => `${n} ${mib(kib)}`).join(", ")} | ${mib(p.pssKiB + [...p.othersPssKiB.values()].reduce((a, b) => a + b, 0))} |`);
    }
  }
  out();
  report.save(join(repoRoot, "bench", "results", "berthd-memory.md"));
} finally {
  if (daemon) {
    await removeContainers().catch(() => undefined);
    await daemon.destroy();
  }
  removeNamespaceCgroups(namespace);
  rmSync(base, { recursive: true, force: true });
}
