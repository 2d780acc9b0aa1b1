// node bench/run-latency.ts: the latency of one `ctr run --rm IMAGE ID true`, Berth
// against a real containerd (both on temp roots, driven by the same real ctr), without
// the rest of bench/containers.ts (parallel runs, idle shims, memory), so a change to
// the run path can be measured in a minute or two on a loaded machine:
//  - warm: median of BENCH_RUNS runs, one of each engine per round (load hits both alike);
//  - cold: Berth's first run after its on-demand processes (content, images,
//    snapshots) retired, median of BENCH_COLD_RUNS;
//  - call by call: ctr under strace (bench/ctr-trace.ts), median per call of
//    BENCH_TRACE_RUNS runs, grouped by service, with ctr's own time between calls.
// BENCH_BASELINE=<checkout> adds a second Berth from that checkout's dist/ (built
// there), run in the same rounds: a before/after comparison that load hits alike.
// Results in bench/results/run-latency.md. Cleans up everything even on failure.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startContainerd, type RunningDaemon } from "./daemons.ts";
import { traceRounds } from "./ctr-trace.ts";
import { repoRoot, startDaemon, type Daemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { median, Report } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 20);
const coldRuns = Number(process.env.BENCH_COLD_RUNS ?? 3);
const traceRuns = Number(process.env.BENCH_TRACE_RUNS ?? 10);
// Short, so the cold figure does not wait long; still above the gap between traced runs under load.
const idleExitMs = Number(process.env.BENCH_IDLE_EXIT_MS ?? 8000);
const image = "docker.io/library/busybox:latest";
const namespace = `bench-run-latency-${process.pid}`;
const onDemand = ["content", "images", "snapshots"];
const baseline = process.env.BENCH_BASELINE;

if (!containerdInstalled()) throw new Error("bench/run-latency.ts needs containerd (and ctr) installed");

const base = mkdtempSync(join(tmpdir(), "berth-bench-run-latency-"));
let berth: Daemon | undefined;
let baselineBerth: Daemon | undefined;
let containerd: RunningDaemon | undefined;
let counter = 0;
const nextId = (prefix: string) => `${prefix}-${++counter}`;

interface Engine {
  name: string;
  address: () => string;
  /** A Berth daemon (the cold figure is measured on it). */
  daemon?: () => Daemon;
}

function ctrOk(engine: Engine, args: string[]): string {
  const r = spawnSync("ctr", ["--address", engine.address(), "--namespace", namespace, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${engine.name}: ctr ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

const timed = (fn: () => void) => {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
};
const ms = (x: number) => x.toFixed(1);

async function waitUntil(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const report = new Report();
const out = report.out;

try {
  const loadBefore = loadavg()[0]!;
  const env = { BERTH_LOG_LEVEL: "warn", BERTH_IDLE_EXIT_MS: String(idleExitMs) };
  berth = await startDaemon({ base: join(base, "berth"), env });
  if (baseline) {
    const launcher = join(base, "baseline-berthd");
    writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${join(baseline, "dist", "berthd.js")} "$@"\n`);
    chmodSync(launcher, 0o755);
    baselineBerth = await startDaemon({ base: join(base, "baseline"), env, launcher });
  }
  containerd = await startContainerd(join(base, "containerd"));
  const engines: Engine[] = [
    { name: "berth", address: () => berth!.address, daemon: () => berth! },
    ...(baselineBerth ? [{ name: "baseline", address: () => baselineBerth!.address, daemon: () => baselineBerth! }] : []),
    { name: "containerd", address: () => containerd!.address },
  ];
  const archive = skopeoArchives(mkdtempSync(join(base, "image-")), await buildBusyboxImage(), "busybox:latest").dockerArchive;
  for (const engine of engines) ctrOk(engine, ["images", "import", archive]);
  const run = (engine: Engine, prefix: string) => timed(() => ctrOk(engine, ["run", "--rm", image, nextId(prefix), "true"]));

  // Cold: every on-demand process gone (its socket removed as it retires) before the run.
  const cold = new Map<string, number[]>();
  for (let i = 0; i < coldRuns; i++) {
    for (const engine of engines) {
      if (!engine.daemon) continue;
      const daemon = engine.daemon();
      await waitUntil("the on-demand processes to retire", () => onDemand.every((name) => !existsSync(join(daemon.state, "services", `${name}.sock`))));
      await waitUntil("the retired processes to exit", () => onDemand.every((name) => daemon.servicePid(name) === undefined));
      cold.set(engine.name, [...(cold.get(engine.name) ?? []), run(engine, "cold")]);
    }
  }

  for (const engine of engines) run(engine, "warm");
  const latency = new Map<string, number[]>(engines.map((e) => [e.name, []]));
  for (let round = 0; round < runs; round++) for (const engine of engines) latency.get(engine.name)!.push(run(engine, "rm"));

  const { perCall, between, callOrder } = traceRounds(engines, traceRuns, (engine) => [
    "--address", engine.address(), "--namespace", namespace, "run", "--rm", image, nextId("trace"), "true",
  ]);

  const names = engines.map((e) => e.name);
  const warm = (name: string) => median(latency.get(name)!);
  out(`# \`ctr run --rm\` latency: ${names.join(" vs ")} (${new Date().toISOString()})`);
  out();
  out(`Command: \`${baseline ? `BENCH_BASELINE=${baseline} ` : ""}node bench/run-latency.ts\` (runs ${runs}, cold runs ${coldRuns}, traced runs ${traceRuns}); ${cpus().length} CPUs, load ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after`);
  if (baseline) out(`"baseline" is Berth built from ${baseline}; "berth" is this checkout.`);
  out();
  out(`| measure | ${names.join(" | ")} | berth / containerd |`);
  out(`|---|${names.map(() => "---:|").join("")}---:|`);
  out(`| \`ctr run --rm IMAGE ID true\`, warm, median ms | ${names.map((n) => ms(warm(n))).join(" | ")} | ${(warm("berth") / warm("containerd")).toFixed(2)}× |`);
  out(`| same, warm, min / max ms | ${names.map((n) => `${ms(Math.min(...latency.get(n)!))} / ${ms(Math.max(...latency.get(n)!))}`).join(" | ")} | |`);
  out(`| same, cold (content, images, snapshots retired first), median ms | ${names.map((n) => (cold.has(n) ? ms(median(cold.get(n)!)) : "")).join(" | ")} | |`);
  out();
  if (callOrder.length > 0) {
    const cellTimes = (engine: string, key: string) => perCall.get(engine)!.get(key) ?? [];
    const cell = (engine: string, key: string) => (cellTimes(engine, key).length ? ms(median(cellTimes(engine, key))) : "-");
    const sumOf = (engine: string, keys: string[]) => keys.reduce((total, key) => total + (cellTimes(engine, key).length ? median(cellTimes(engine, key)) : 0), 0);
    out(`## Call by call (ctr under strace; request to end of answer, median ms of ${traceRuns})`);
    out();
    out(`| call (k-th of its kind) | ${names.join(" | ")} |`);
    out(`|---|${names.map(() => "---:|").join("")}`);
    for (const key of callOrder) out(`| ${key} | ${names.map((n) => cell(n, key)).join(" | ")} |`);
    const byService = new Map<string, string[]>();
    for (const key of callOrder) {
      const service = key.split("/")[0]!;
      byService.set(service, [...(byService.get(service) ?? []), key]);
    }
    for (const [service, keys] of byService) out(`| sum: ${service} (${keys.length} calls) | ${names.map((n) => ms(sumOf(n, keys))).join(" | ")} |`);
    out(`| sum of the medians | ${names.map((n) => ms(sumOf(n, callOrder))).join(" | ")} |`);
    out(`| ctr between its calls, median | ${names.map((n) => ms(median(between.get(n)!))).join(" | ")} |`);
    out();
  }
  report.save(join(repoRoot, "bench", "results", "run-latency.md"));
} finally {
  await berth?.destroy();
  await baselineBerth?.destroy();
  await containerd?.stop();
  // ctr's specs put each container in the cgroup /<namespace>: remove it in every hierarchy.
  for (const controller of existsSync("/sys/fs/cgroup") ? readdirSync("/sys/fs/cgroup") : []) {
    const dir = join("/sys/fs/cgroup", controller, namespace);
    try {
      if (!existsSync(dir)) continue;
      for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) rmdirSync(join(dir, child.name));
      rmdirSync(dir);
    } catch (err) {
      process.stderr.write(`cgroup ${dir} left: ${(err as Error).message}\n`);
    }
  }
  const mounted = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((target) => target.startsWith(base))
    .sort((x, y) => y.length - x.length);
  for (const target of mounted) spawnSync("umount", ["-l", target]);
  rmSync(base, { recursive: true, force: true });
}
