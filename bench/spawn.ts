// node bench/spawn.ts: what starting a child costs the tasks process, which runs runc or
// berth-shim for each step of a container: child_process.execFile (libuv: fork + exec)
// against native/spawn.ts runCollected (posix_spawn: a vfork-style clone). Runs itself
// again under the tasks process's V8 flags (core/routes.ts: --lite-mode ...) with a heap
// about as large as that process's, and times BENCH_SPAWNS runs of /bin/true (a child
// that does nothing, so the start is what is measured), alternating the two per round so
// load hits both alike. Prints medians in ms.
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { addonPath } from "../native/index.ts";
import { runCollected } from "../native/spawn.ts";

// Not bench/measure.ts's: it brings the test harness, which a bundle cannot carry.
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runs = Number(process.env.BENCH_SPAWNS ?? 300);
const heapMb = Number(process.env.BENCH_SPAWN_HEAP_MB ?? 10);
// BENCH_SPAWN_COMMAND="runc --version": the start of a Go binary, as the tasks process runs it.
const [file, ...args] = (process.env.BENCH_SPAWN_COMMAND ?? "/bin/true").split(" ");

if (process.env.BENCH_SPAWN_CHILD !== "1") {
  // --lite-mode has no WebAssembly, which type stripping needs: the child runs a bundle, as the tasks process does.
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-spawn-"));
  try {
    const bundle = join(dir, "spawn.mjs");
    const { buildSync } = await import("esbuild");
    buildSync({ entryPoints: [fileURLToPath(import.meta.url)], bundle: true, platform: "node", format: "esm", outfile: bundle, external: ["esbuild"], logLevel: "error" });
    const flags = ["--lite-mode", "--max-semi-space-size=1", "--v8-pool-size=1"];
    const env = { ...process.env, BENCH_SPAWN_CHILD: "1", BERTH_NATIVE_ADDON: addonPath() };
    const r = spawnSync(process.execPath, [...flags, bundle], { stdio: "inherit", env });
    process.exitCode = r.status ?? 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  await measure();
}

async function measure(): Promise<void> {

// Live objects the size of the tasks process's anonymous memory (~17-22 MB of its 63-68 MB RSS).
const keep: object[] = [];
for (let i = 0; i < heapMb * 1024 * 16; i++) keep.push({ i, s: String(i) });
const churn = () => {
  for (let i = 0; i < 500; i++) keep[(Math.random() * keep.length) | 0] = { i };
};
const execFileOnce = () => new Promise<void>((resolve, reject) => execFile(file!, args, (err) => (err ? reject(err) : resolve())));
const spawnOnce = async () => {
  const { exit } = await runCollected(file!, args);
  if (exit.code !== 0) throw new Error(`${file}: ${exit.code}`);
};

const times = { execFile: [] as number[], posixSpawn: [] as number[] };
const load = loadavg()[0]!;
for (let i = 0; i < runs; i++) {
  for (const [name, fn] of [["execFile", execFileOnce], ["posixSpawn", spawnOnce]] as const) {
    churn();
    const t0 = performance.now();
    await fn();
    times[name].push(performance.now() - t0);
  }
}
const rss = Math.round(process.memoryUsage().rss / 1048576);
console.log(`start, run and reap ${[file, ...args].join(" ")} from a Node process of ${rss} MB RSS (tasks' V8 flags), median of ${runs}; ${cpus().length} CPUs, load ${load.toFixed(2)}`);
console.log(`child_process.execFile: ${median(times.execFile).toFixed(3)} ms`);
console.log(`native/spawn.ts runCollected: ${median(times.posixSpawn).toFixed(3)} ms`);
}
