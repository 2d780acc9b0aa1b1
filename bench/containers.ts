// node bench/containers.ts: running containers, Berth against a real containerd (CRI
// disabled), both started here on temp roots and both driven by the same real `ctr`:
//  - latency of `ctr run --rm IMAGE ID true` (median of BENCH_RUNS, interleaved), with
//    plain `runc run` of the same spec as the floor;
//  - wall time of BENCH_PARALLEL such runs at once;
//  - USS of the shims with BENCH_SHIMS idle `sleep` containers (berth-shim vs
//    containerd-shim-runc-v2, from /proc/PID/smaps_rollup);
//  - with BENCH_IDLE idle containers: the summed PSS of everything each engine runs
//    (berthd, its services, redis, shims / containerd and its shims), and the time from
//    berthd's restart until `ctr tasks ls` lists them all running;
//  - where the time of one `run --rm` goes: the real ctr traced with strace, each of its
//    RPCs timed against both engines (median per call).
// Cleans up everything (tasks, containers, daemons, temp roots, cgroups) even on failure.
// Results in bench/results/containers.md.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startContainerd, type RunningDaemon } from "./daemons.ts";
import { processMemory, processName } from "./proc-memory.ts";
import { median, Report } from "./measure.ts";
import { ctrAsync as ctrInBackground, ctrOk as ctrMust, ctrSync as ctrCommand, removeNamespaceCgroups } from "./ctr.ts";
import { processTable } from "../core/routes.ts";
import { traceRounds } from "./ctr-trace.ts";
import { childPids, distDir, repoRoot, startDaemon, type Daemon } from "../test/harness.ts";
import { isRunning } from "../core/process.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { containerSpec } from "../core/oci/spec.ts";
import { makeBusyboxRootfs } from "../shim/test-bundle.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const parallel = Number(process.env.BENCH_PARALLEL ?? 30);
const shimCount = Number(process.env.BENCH_SHIMS ?? 20);
const idleCount = Number(process.env.BENCH_IDLE ?? 100);
const image = "docker.io/library/busybox:latest";
// Its own namespace (and so cgroup parent /<namespace>), apart from any other run.
const namespace = `bench-containers-${process.pid}`;

if (!containerdInstalled()) throw new Error("bench/containers.ts needs containerd (and ctr) installed");

// berthd as installed: its launcher passes the V8 flags it runs with (core/node-flags.ts).
const berthdLauncher = join(repoRoot, "cmd", "berthd", "bin", "berthd");
const base = mkdtempSync(join(tmpdir(), "berth-bench-containers-"));
const runcFloorRoot = join(base, "runc-floor");
let berth: Daemon | undefined;
let containerd: RunningDaemon | undefined;
let counter = 0;
const nextId = (prefix: string) => `${prefix}-${++counter}`;

interface Engine {
  name: string;
  address: () => string;
}

const ctrSync = (engine: Engine, args: string[]) => ctrCommand(engine.address(), namespace, args);
const ctrOk = (engine: Engine, args: string[]) => ctrMust(engine.address(), namespace, args, engine.name);
const ctrAsync = (engine: Engine, args: string[]) => ctrInBackground(engine.address(), namespace, args, engine.name);

const timed = (fn: () => void) => {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
};

const ms = (x: number) => x.toFixed(1);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

/** Rows of `ctr tasks ls` (header dropped): [id, pid, status]. */
const taskRows = (engine: Engine) =>
  ctrOk(engine, ["tasks", "ls"])
    .trimEnd()
    .split("\n")
    .slice(1)
    .filter(Boolean)
    .map((line) => line.trim().split(/\s+/));

/** Every process in a tree, root first. */
function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childPids(all[i]!));
  return all.filter(isRunning);
}

function berthShimPids(): number[] {
  const dir = join(berth!.state, "shims", namespace);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((id) => Number(readFileSync(join(dir, id, "shim.pid"), "utf8")))
    .filter(isRunning);
}

function containerdShimPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(containerd!.address)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Summed memory of processes, in KiB; a process gone meanwhile counts nothing. */
function summed(pids: number[], pick: "ussKiB" | "pssKiB"): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += processMemory(pid, "")[pick];
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

async function waitUntil(what: string, check: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `count` idle containers (ids prefix-N) on the engine, `concurrency` at a time. */
async function startIdle(engine: Engine, ids: string[], concurrency = 4): Promise<void> {
  const queue = [...ids];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let id = queue.shift(); id; id = queue.shift()) await ctrAsync(engine, ["run", "-d", "--null-io", image, id, "sleep", "100000"]);
    }),
  );
}

/** Kills, waits for and deletes every task and container of the namespace on the engine. */
async function removeAll(engine: Engine): Promise<void> {
  const ids = ctrSync(engine, ["containers", "ls", "-q"]).stdout.split("\n").filter(Boolean);
  for (const id of ids) ctrSync(engine, ["tasks", "kill", "-s", "SIGKILL", id]);
  await waitUntil(`${engine.name}: every task stopped`, () => taskRows(engine).every((r) => r[2] === "STOPPED"), 60_000).catch(() => undefined);
  for (const id of ids) {
    ctrSync(engine, ["tasks", "delete", id]);
    ctrSync(engine, ["containers", "rm", id]);
  }
}


const report = new Report();
const out = report.out;

try {
  const loadBefore = loadavg()[0]!;
  const berthBase = join(base, "berth");
  berth = await startDaemon({ base: berthBase, launcher: berthdLauncher, env: { BERTH_LOG_LEVEL: "warn" } });
  containerd = await startContainerd(join(base, "containerd"));
  const engines: Engine[] = [
    { name: "berth", address: () => berth!.address },
    { name: "containerd", address: () => containerd!.address },
  ];
  const archive = skopeoArchives(mkdtempSync(join(base, "image-")), await buildBusyboxImage(), "busybox:latest").dockerArchive;
  for (const engine of engines) ctrOk(engine, ["images", "import", archive]);

  // Plain runc run of the spec ctr would give, on an unpacked copy of the same busybox.
  const rootfs = join(base, "runc-rootfs");
  makeBusyboxRootfs(rootfs);
  const runcFloor = () => {
    const id = nextId("runc");
    const bundle = join(base, "bundles", id);
    mkdirSync(bundle, { recursive: true });
    const spec = containerSpec({ namespace, id, args: ["true"] });
    spec.root = { path: rootfs, readonly: true };
    writeFileSync(join(bundle, "config.json"), JSON.stringify(spec));
    return timed(() => {
      const r = spawnSync("runc", ["--root", runcFloorRoot, "run", "--bundle", bundle, id], { stdio: "ignore" });
      if (r.status !== 0) throw new Error(`runc run exited ${r.status}`);
    });
  };

  // 1. run --rm latency, one of each per round so load hits both alike.
  const latency = new Map<string, number[]>([["runc run", []], ["berthctl", []], ...engines.map((e) => [e.name, []] as [string, number[]])]);
  const berthctlRun = () =>
    timed(() => {
      const args = [join(distDir, "berthctl.js"), "--address", berth!.address, "--namespace", namespace, "run", "--rm", "--fifo-dir", join(base, "fifo"), image, nextId("berthctl"), "true"];
      const r = spawnSync(process.execPath, args, { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`berthctl run --rm failed (${r.status}): ${r.stderr}`);
    });
  for (const engine of engines) ctrOk(engine, ["run", "--rm", image, nextId("warm"), "true"]);
  for (let round = 0; round < runs; round++) {
    latency.get("runc run")!.push(runcFloor());
    for (const engine of engines) latency.get(engine.name)!.push(timed(() => ctrOk(engine, ["run", "--rm", image, nextId("rm"), "true"])));
    latency.get("berthctl")!.push(berthctlRun());
  }

  // 2. parallel run --rm.
  const wall = new Map<string, number>();
  for (const engine of engines) {
    const t0 = performance.now();
    await Promise.all(Array.from({ length: parallel }, () => ctrAsync(engine, ["run", "--rm", image, nextId("par"), "true"])));
    wall.set(engine.name, performance.now() - t0);
  }

  // 3. where one run --rm spends its time: ctr's calls, each by its k-th occurrence, median of the rounds.
  // ctr's own time between calls (its start, FIFO handling, waiting for output to drain) is `idleTotals`.
  const { perCall: traces, between: idleTotals, callOrder } = traceRounds(engines, runs, (engine) => [
    "--address", engine.address(), "--namespace", namespace, "run", "--rm", image, nextId("trace"), "true",
  ]);

  // 4. idle shims.
  const shimIds = Array.from({ length: shimCount }, () => nextId("idle"));
  for (const engine of engines) await startIdle(engine, shimIds);
  await waitUntil("every idle task running", () => engines.every((e) => taskRows(e).filter((r) => r[2] === "RUNNING").length === shimCount));
  const berthShimUss = berthShimPids().map((pid) => processMemory(pid, "berth-shim").ussKiB);
  const containerdShimUss = containerdShimPids().map((pid) => processMemory(pid, "containerd-shim-runc-v2").ussKiB);

  // 5. idle containers in all, and the engines' summed PSS.
  const moreIds = Array.from({ length: idleCount - shimCount }, () => nextId("idle"));
  for (const engine of engines) await startIdle(engine, moreIds);
  await waitUntil("every idle task running", () => engines.every((e) => taskRows(e).filter((r) => r[2] === "RUNNING").length === idleCount));
  const berthPids = [...processTree(berth.pid!), ...berthShimPids()];
  const containerdPids = [...processTree(containerd.pid), ...containerdShimPids()];
  const berthPss = summed(berthPids, "pssKiB");
  const containerdPss = summed(containerdPids, "pssKiB");
  // The same once Berth's on-demand processes (content, images, snapshots, diff, jobs),
  // busy a moment ago with 100 runs, have retired (BERTH_IDLE_EXIT_MS): the steady state.
  const onDemand = new Set(processTable.filter((p) => p.onDemand).map((p) => p.name));
  const retired = () => !processTree(berth!.pid!).some((pid) => onDemand.has(processName(pid)));
  const settleStarted = performance.now();
  while (!retired() && performance.now() - settleStarted < 90_000) await new Promise((r) => setTimeout(r, 500));
  const allRetired = retired();
  const settledPids = [...processTree(berth!.pid!), ...berthShimPids()];
  const settledPss = summed(settledPids, "pssKiB");
  const containerdSettledPss = summed([...processTree(containerd.pid), ...containerdShimPids()], "pssKiB");

  // 6. berthd restart until tasks ls lists every container running.
  await berth.stop();
  const restartStarted = performance.now();
  berth = await startDaemon({ base: berthBase, launcher: berthdLauncher, env: { BERTH_LOG_LEVEL: "warn" } });
  const socketReady = performance.now() - restartStarted;
  await waitUntil("tasks ls after the restart", () => taskRows(engines[0]!).filter((r) => r[2] === "RUNNING").length === idleCount);
  const adopted = performance.now() - restartStarted;

  const [berthLatency, containerdLatency, floorLatency] = [median(latency.get("berth")!), median(latency.get("containerd")!), median(latency.get("runc run")!)];
  out(`# Containers: Berth vs containerd (${new Date().toISOString()})`);
  out();
  out(`Command: \`node bench/containers.ts\` (runs ${runs}, parallel ${parallel}, idle shims ${shimCount}, idle containers ${idleCount}); ${cpus().length} CPUs, load ${loadBefore.toFixed(2)} before`);
  out(`containerd ${/ (\d+\.\d+\S*)/.exec(spawnSync("containerd", ["--version"], { encoding: "utf8" }).stdout)?.[1] ?? "?"}, runc ${/runc version (\S+)/.exec(spawnSync("runc", ["--version"], { encoding: "utf8" }).stdout)?.[1] ?? "?"}; the same ctr drives both.`);
  out();
  out("| measure | Berth | containerd | Berth / containerd |");
  out("|---|---:|---:|---:|");
  out(`| \`ctr run --rm IMAGE ID true\`, median ms (plain \`runc run\`: ${ms(floorLatency)}) | ${ms(berthLatency)} | ${ms(containerdLatency)} | ${ratio(berthLatency, containerdLatency)} |`);
  out(`| \`berthctl run --rm IMAGE ID true\` against Berth, median ms | ${ms(median(latency.get("berthctl")!))} | | |`);
  out(`| ${parallel} such runs in parallel, wall ms | ${ms(wall.get("berth")!)} | ${ms(wall.get("containerd")!)} | ${ratio(wall.get("berth")!, wall.get("containerd")!)} |`);
  out(`| shim USS with ${shimCount} idle containers, median KiB | ${median(berthShimUss)} | ${median(containerdShimUss)} | ${ratio(median(berthShimUss), median(containerdShimUss))} |`);
  out(`| shim USS, sum of ${shimCount}, KiB | ${berthShimUss.reduce((a, b) => a + b, 0)} | ${containerdShimUss.reduce((a, b) => a + b, 0)} | |`);
  out(`| summed PSS of the engine with ${idleCount} idle containers, right after starting them, MiB (${berthPids.length} vs ${containerdPids.length} processes) | ${(berthPss / 1024).toFixed(1)} | ${(containerdPss / 1024).toFixed(1)} | ${ratio(berthPss, containerdPss)} |`);
  out(`| the same once Berth's on-demand processes retired${allRetired ? "" : " (some still ran after 90 s)"}, MiB (${settledPids.length} processes) | ${(settledPss / 1024).toFixed(1)} | ${(containerdSettledPss / 1024).toFixed(1)} | ${ratio(settledPss, containerdSettledPss)} |`);
  out(`| berthd restart until \`tasks ls\` lists all ${idleCount} running, ms (socket ready: ${ms(socketReady)}) | ${ms(adopted)} | | |`);
  out();
  if (callOrder.length > 0) {
    out(`## One \`ctr run --rm\`, call by call (ctr under strace; request to end of answer, median ms of ${runs})`);
    out();
    out("A content Read that ctr cancels once it has its bytes has no end: shown as -.");
    out();
    out("| call (k-th of its kind) | Berth | containerd |");
    out("|---|---:|---:|");
    const cell = (engine: string, key: string) => {
      const times = traces.get(engine)!.get(key) ?? [];
      return times.length ? ms(median(times)) : "-";
    };
    const sum = (engine: string) => callOrder.reduce((total, key) => total + (traces.get(engine)!.get(key)?.length ? median(traces.get(engine)!.get(key)!) : 0), 0);
    for (const key of callOrder) out(`| ${key} | ${cell("berth", key)} | ${cell("containerd", key)} |`);
    out(`| sum of the medians | ${ms(sum("berth"))} | ${ms(sum("containerd"))} |`);
    out(`| ctr between its calls (from its first I/O to its last call), median | ${ms(median(idleTotals.get("berth")!))} | ${ms(median(idleTotals.get("containerd")!))} |`);
    out();
  }
  report.save(join(repoRoot, "bench", "results", "containers.md"));
} finally {
  for (const [engine, running] of [
    [{ name: "berth", address: () => berth?.address ?? "" }, berth],
    [{ name: "containerd", address: () => containerd?.address ?? "" }, containerd],
  ] as const) {
    if (running) await removeAll(engine).catch((err: Error) => process.stderr.write(`cleanup of ${engine.name}: ${err.message}\n`));
  }
  const leftShims = [...(berth ? berthShimPids() : []), ...(containerd ? containerdShimPids() : [])];
  await berth?.stop();
  await containerd?.stop();
  for (const pid of leftShims) if (isRunning(pid)) process.kill(pid, "SIGKILL");
  for (const id of existsSync(runcFloorRoot) ? readdirSync(runcFloorRoot) : []) spawnSync("runc", ["--root", runcFloorRoot, "delete", "--force", id]);
  try {
    removeNamespaceCgroups(namespace);
  } catch (err) {
    process.stderr.write(`cgroups of ${namespace} left: ${(err as Error).message}\n`);
  }
  // Whatever a failed cleanup left mounted must not be deleted through its mount.
  const mounted = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((target) => target.startsWith(base))
    .sort((a, b) => b.length - a.length);
  for (const target of mounted) spawnSync("umount", ["-l", target]);
  rmSync(base, { recursive: true, force: true });
  closeChannels();
}
