// Where a cold pull's time goes: berthctl's per-status lines, timestamped as they
// arrive (first byte downloading, each download complete, each layer extracting, done),
// and the CPU all of Berth's processes spent (on a shared machine, CPU is what a pull
// competes for). One run; options in the environment:
//   BENCH_LAYERS_MIB=80,60,40,20  layer sizes (0.004,0.004 for the fixed costs alone)
//   BENCH_LAYER_KIND=gzip-files  gzip layers of many files of 1-64 KiB (as bench/pull.ts)
//   BENCH_WARM=1                  jobs and diff already running (another pull first)
//   BENCH_KEEP=1                  berthd --keep-processes (every process started with it, none used yet)
//   BENCH_SETTLE_MS=<ms>          wait that long after berthd is ready (a kept daemon sits idle before its first pull)
//   BENCH_CONTAINERD=1            the same pull by ctr into a fresh containerd first
//   BENCH_THREADS=1               the CPU during the pull per thread too, not only per process
//   BENCH_CPU_PROF=<dir>          a V8 CPU profile of every Berth process
//   BENCH_NODE_OPTIONS=<flags>    Node/V8 flags for every Berth process
// Run: node bench/profile-pull.ts
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { startBerth, startContainerd } from "./daemons.ts";
import { treeCpuMs, treeMinorFaults } from "./measure.ts";
import { blobOf, imageFromLayers, tarOf } from "../test/fixtures/archives.ts";
import { pullBenchImage } from "./pull-image.ts";
import { TestRegistry } from "../test/fixtures/registry.ts";
import { distDir } from "../test/harness.ts";
import { sha256Digest } from "../core/digest.ts";
import { RegistryClient, parseRegistryReference, pushBlob, pushManifest } from "../core/registry/index.ts";

const layerMiB = (process.env.BENCH_LAYERS_MIB ?? "80,60,40,20").split(",").map(Number);

// BENCH_LAYER_KIND=gzip-files: bench/pull.ts's gzip layers of many small files.
const benchImage = () => pullBenchImage(layerMiB, process.env.BENCH_LAYER_KIND);

/** CPU ms of this process's children that ended and were waited for (utime+stime of /proc/self/stat's cutime, cstime). */
function childrenCpuMs(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").replace(/^.*\) /, "").split(" ");
  // After the ") ": field 3 is the state; cutime and cstime are fields 16 and 17 of the whole line.
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
}

/** Minor page faults of this process's children that ended and were waited for (cminflt). */
function childrenMinorFaults(): number {
  return Number(readFileSync("/proc/self/stat", "utf8").replace(/^.*\) /, "").split(" ")[8]);
}

const base = mkdtempSync(join(tmpdir(), "berth-profile-pull-"));
const stops: (() => Promise<void>)[] = [];
try {
  const registry = await TestRegistry.start(join(base, "registry"));
  stops.push(() => registry.stop());
  const image = await benchImage();
  const client = new RegistryClient({ certsDir: "/nonexistent", credentials: async () => undefined });
  const target = parseRegistryReference(`${registry.host}/bench/pull:1`);
  for (const b of [image.config, ...image.layers]) await pushBlob(client, target, b, (async function* () { yield b.data; })());
  await pushManifest(client, target, "1", image.manifest, image.manifest.data);
  await client.close();
  // BENCH_CPU_PROF=<dir>: every daemon process writes a CPU profile there when it exits.
  // BENCH_NODE_OPTIONS: V8/Node flags for every Berth process (GC settings, say).
  const nodeOptions = [process.env.BENCH_NODE_OPTIONS ?? "", process.env.BENCH_CPU_PROF ? `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF}` : ""].join(" ").trim();
  const profile = nodeOptions ? { NODE_OPTIONS: nodeOptions } : {};
  if (process.env.BENCH_CONTAINERD) {
    // The same measure for containerd: its CPU and ctr's, for the same pull.
    const before = childrenCpuMs();
    const faultsBefore = childrenMinorFaults();
    const containerd = await startContainerd(join(base, "containerd"));
    const t0 = performance.now();
    const r = spawnSync("ctr", ["--address", containerd.address, "images", "pull", "--plain-http", `${registry.host}/bench/pull:1`], { stdio: "ignore" });
    const wall = performance.now() - t0;
    await containerd.stop();
    process.stdout.write(`containerd: ctr exit ${r.status}, ${wall.toFixed(0)} ms wall; CPU of containerd and ctr: ${(childrenCpuMs() - before).toFixed(0)} ms; their minor page faults: ${childrenMinorFaults() - faultsBefore}\n`);
  }
  const cpuBefore = childrenCpuMs();
  const berth = await startBerth(join(base, "berth"), profile, process.env.BENCH_KEEP ? ["--keep-processes"] : []);
  let stopped = false;
  const stopBerth = async () => {
    if (!stopped) await berth.stop();
    stopped = true;
  };
  stops.push(stopBerth);
  if (process.env.BENCH_WARM) {
    // The on-demand processes (jobs, diff) started by a pull of another, one-layer image first.
    const warmTar = await tarOf([{ name: "warm", data: randomBytes(100) }]);
    const warmImage = imageFromLayers([blobOf("application/vnd.oci.image.layer.v1.tar", warmTar)], [sha256Digest(warmTar)]);
    const c = new RegistryClient({ certsDir: "/nonexistent", credentials: async () => undefined });
    const t = parseRegistryReference(`${registry.host}/bench/warm:1`);
    for (const b of [warmImage.config, ...warmImage.layers]) await pushBlob(c, t, b, (async function* () { yield b.data; })());
    await pushManifest(c, t, "1", warmImage.manifest, warmImage.manifest.data);
    await c.close();
    spawnSync(process.execPath, [join(distDir, "berthctl.js"), "--address", berth.address, "pull", "--plain-http", `${registry.host}/bench/warm:1`], { stdio: "ignore" });
  }
  if (process.env.BENCH_SETTLE_MS) await new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_SETTLE_MS)));
  const names = new Map(image.layers.map((l, i) => [l.digest.slice(7, 19), `layer${i} (${layerMiB[i]} MiB)`]));
  names.set(image.config.digest.slice(7, 19), "config");
  const cpuAtStart = treeCpuMs(berth.pid, Boolean(process.env.BENCH_THREADS));
  const faultsAtStart = treeMinorFaults(berth.pid);
  const started = performance.now();
  const child = spawn(process.execPath, [join(distDir, "berthctl.js"), "--address", berth.address, "pull", "--plain-http", `${registry.host}/bench/pull:1`], { stdio: ["ignore", "pipe", "inherit"] });
  let buffered = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const at = (performance.now() - started).toFixed(0).padStart(6);
    buffered += chunk.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) {
      const id = line.slice(0, 12);
      if (names.has(id)) process.stdout.write(`${at} ms  ${names.get(id)}: ${line.slice(14)}\n`);
    }
  });
  await new Promise((resolve) => child.on("close", resolve));
  process.stdout.write(`${(performance.now() - started).toFixed(0).padStart(6)} ms  berthctl exited\n`);
  // The pull's own CPU per daemon process (berthctl's is in the total below).
  const during = [...treeCpuMs(berth.pid, Boolean(process.env.BENCH_THREADS))].map(([p, ms]) => `${p.replace(/^\d+ /, "")} ${ms - (cpuAtStart.get(p) ?? 0)}`);
  process.stdout.write(`CPU during the pull, ms: ${during.filter((d) => !d.endsWith(" 0")).join(", ")}\n`);
  const faults = [...treeMinorFaults(berth.pid)].map(([p, n]) => `${p.replace(/^\d+ /, "")} ${n - (faultsAtStart.get(p) ?? 0)}`);
  process.stdout.write(`Minor page faults during the pull: ${faults.filter((f) => !f.endsWith(" 0")).join(", ")}\n`);
  // Peak resident memory of each process so far (its start included): what the pull's buffers cost.
  const peaks = [...treeCpuMs(berth.pid).keys()].map((p) => {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.split(" ")[0]}/status`, "utf8"))?.[1];
    return `${p.replace(/^\d+ /, "")} ${hwm ? (Number(hwm) / 1024).toFixed(1) : "?"}`;
  });
  process.stdout.write(`Peak RSS, MiB: ${peaks.join(", ")}\n`);
  await stopBerth();
  // Includes berthd's start and stop (the same in every run), berthctl, every service.
  process.stdout.write(`CPU of berthd, its processes and berthctl: ${(childrenCpuMs() - cpuBefore).toFixed(0)} ms\n`);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(base, { recursive: true, force: true });
}
