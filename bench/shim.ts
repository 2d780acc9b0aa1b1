// node bench/shim.ts: what berth-shim costs per container.
//  - idle memory: USS (Private_Clean + Private_Dirty) of each shim of a few idle `sleep`
//    containers, and the same for the container process itself, for scale; beside it
//    containerd-shim-runc-v2 for the same containers run by a real containerd (ctr run -d);
//  - start-to-pid latency: berth-shim + runc create (startShim resolving with the pid)
//    against bare `runc create --pid-file` (spawn, wait for exit, read the pid file).
// Needs root, runc and a built dist/berth-shim. Results in bench/results/shim.md.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../test/harness.ts";
import { isRunning } from "../core/process.ts";
import { startShim } from "../shim/client.ts";
import { makeBusyboxRootfs, removeCgroup, writeBundle } from "../shim/test-bundle.ts";
import { processMemory } from "./proc-memory.ts";
import { containerdInstalled, startContainerd } from "./daemons.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";

const idleContainers = Number(process.env.BENCH_SHIM_IDLE ?? 5);
const rounds = Number(process.env.BENCH_SHIM_ROUNDS ?? 20);
const binary = join(repoRoot, "dist", "berth-shim");

const base = mkdtempSync(join(tmpdir(), "berth-bench-shim-"));
const runcRoot = join(base, "runc");
const rootfs = join(base, "rootfs");
const created: { id: string; cgroup: string }[] = [];
let counter = 0;

function newContainer(args: string[]) {
  const id = `bench${++counter}-${process.pid}`;
  const cgroup = `berth-bench-shim-${id}`;
  created.push({ id, cgroup });
  const dir = join(base, id);
  const stateDir = join(dir, "state");
  mkdirSync(stateDir, { recursive: true });
  writeBundle(join(dir, "bundle"), { rootfs, cgroup, args });
  return { id, dir, stateDir, bundle: join(dir, "bundle") };
}

const runc = (...args: string[]) => execFileSync("runc", ["--root", runcRoot, ...args], { encoding: "utf8" });

function removeContainer(id: string): void {
  spawnSync("runc", ["--root", runcRoot, "delete", "--force", id], { stdio: "ignore" });
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 10));
}

function bareRuncCreate(id: string, bundle: string, pidFile: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("runc", ["--root", runcRoot, "create", "--bundle", bundle, "--pid-file", pidFile, id], { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(Number(readFileSync(pidFile, "utf8"))) : reject(new Error(`runc create exited ${code}`))));
  });
}

/**
 * USS of containerd-shim-runc-v2 beside the same idle container, run by a real containerd
 * through ctr (the busybox fixture image imported first); undefined without containerd.
 */
async function containerdShimUss(): Promise<number[] | undefined> {
  if (!containerdInstalled()) return undefined;
  const dir = join(base, "containerd");
  mkdirSync(dir);
  const daemon = await startContainerd(dir);
  const ctr = (...args: string[]) => execFileSync("ctr", ["--address", daemon.address, "-n", "bench", ...args], { encoding: "utf8" });
  const ids = Array.from({ length: idleContainers }, (_, i) => `bench-ctr-${i}-${process.pid}`);
  const shimPids = new Set<number>();
  try {
    const archive = skopeoArchives(join(dir, "image"), await buildBusyboxImage(), "busybox:latest").dockerArchive;
    ctr("images", "import", archive);
    for (const id of ids) ctr("run", "-d", "docker.io/library/busybox:latest", id, "sleep", "1000");
    await new Promise((r) => setTimeout(r, 500));
    for (const line of execFileSync("pgrep", ["-f", "containerd-shim-runc-v2 -namespace bench"], { encoding: "utf8" }).split("\n")) {
      if (line.trim()) shimPids.add(Number(line));
    }
    return [...shimPids].map((pid) => processMemory(pid, "containerd-shim-runc-v2").ussKiB);
  } finally {
    for (const id of ids) {
      spawnSync("ctr", ["--address", daemon.address, "-n", "bench", "tasks", "kill", "-s", "SIGKILL", id], { stdio: "ignore" });
    }
    for (const id of ids) {
      for (let i = 0; i < 100 && spawnSync("ctr", ["--address", daemon.address, "-n", "bench", "tasks", "rm", id], { stdio: "ignore" }).status !== 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      spawnSync("ctr", ["--address", daemon.address, "-n", "bench", "containers", "rm", id], { stdio: "ignore" });
    }
    await daemon.stop();
    for (const pid of shimPids) if (isRunning(pid)) process.kill(pid, "SIGKILL");
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!;
const ms = (value: number) => value.toFixed(1);

try {
  makeBusyboxRootfs(rootfs);

  // Idle memory.
  const idle: { shimUss: number; containerUss: number }[] = [];
  const shims: { stateDir: string; shimPid: number; pid: number; id: string }[] = [];
  for (let i = 0; i < idleContainers; i++) {
    const c = newContainer(["sleep", "1000"]);
    const started = await startShim({ binary, stateDir: c.stateDir, runc: "runc", runcRoot, id: c.id, bundle: c.bundle, log: join(c.dir, "output.log") });
    runc("start", c.id);
    shims.push({ ...started, stateDir: c.stateDir, id: c.id });
  }
  // Idle: the container has started and the shim waits in poll.
  await new Promise((r) => setTimeout(r, 500));
  for (const s of shims) idle.push({ shimUss: processMemory(s.shimPid, "shim").ussKiB, containerUss: processMemory(s.pid, "sleep").ussKiB });
  for (const s of shims) {
    runc("kill", s.id, "KILL");
    await waitFor(() => !isRunning(s.shimPid));
    removeContainer(s.id);
  }

  // Start-to-pid latency, interleaved so both see the same machine load.
  const shimTimes: number[] = [];
  const bareTimes: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const a = newContainer(["sleep", "1000"]);
    let t0 = performance.now();
    const started = await startShim({ binary, stateDir: a.stateDir, runc: "runc", runcRoot, id: a.id, bundle: a.bundle });
    shimTimes.push(performance.now() - t0);
    removeContainer(a.id);
    await waitFor(() => !isRunning(started.shimPid));

    const b = newContainer(["sleep", "1000"]);
    t0 = performance.now();
    await bareRuncCreate(b.id, b.bundle, join(b.dir, "pid"));
    bareTimes.push(performance.now() - t0);
    removeContainer(b.id);
  }

  const shimUss = idle.map((r) => r.shimUss);
  const containerdUss = await containerdShimUss();
  const containerdRows = containerdUss?.length
    ? [`| containerd-shim-runc-v2 (containerd ${/ (\d+\.\d+\S*)/.exec(execFileSync("containerd", ["--version"], { encoding: "utf8" }))?.[1] ?? "?"}), same container via \`ctr run -d\`, median | ${median(containerdUss)} |`]
    : ["| containerd-shim-runc-v2 (published figure; containerd not installed here) | ~2400 |"];
  const lines = [
    `# berth-shim cost (${new Date().toISOString()})`,
    "",
    `Command: \`node bench/shim.ts\` (${idleContainers} idle containers, ${rounds} latency rounds; runc ${/runc version (\S+)/.exec(runc("--version"))?.[1]})`,
    "",
    "## Idle memory per shim (one idle `sleep` container each)",
    "",
    "| | USS kB (Private_Clean + Private_Dirty) |",
    "|---|---:|",
    `| berth-shim, median | ${median(shimUss)} |`,
    `| berth-shim, max | ${Math.max(...shimUss)} |`,
    `| the container's \`sleep\` (static busybox), median | ${median(idle.map((r) => r.containerUss))} |`,
    ...containerdRows,
    "| conmon (published figure, not measured here) | ~1000 |",
    "",
    "## Start to pid",
    "",
    "| | median ms | p90 ms |",
    "|---|---:|---:|",
    `| berth-shim + runc create | ${ms(median(shimTimes))} | ${ms(percentile(shimTimes, 0.9))} |`,
    `| bare runc create | ${ms(median(bareTimes))} | ${ms(percentile(bareTimes, 0.9))} |`,
    `| shim overhead (median) | ${ms(median(shimTimes) - median(bareTimes))} | |`,
    "",
  ];
  const report = lines.join("\n");
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "shim.md"), report);
} finally {
  for (const { id, cgroup } of created) {
    removeContainer(id);
    try {
      removeCgroup(cgroup);
    } catch {
      // runc delete removed it, or it is still busy: reported by nothing, checked by the tests
    }
  }
  rmSync(base, { recursive: true, force: true });
}
