// node bench/engine.ts: the Engine API against a real dockerd (Debian's docker.io, on a
// temp root with its own containerd, --iptables=false --bridge=none), the same docker CLI
// driving both, interleaved run by run so a busy machine hits both alike:
//  - `docker run --rm --network none busybox true`: median wall time;
//  - `docker ps` with 50 running containers: median wall time.
// Both daemons get the busybox image through `docker load`. Results in bench/results/engine.md.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir, cpus } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../test/harness.ts";
import { dockerdInstalled } from "./daemons.ts";
import { dockerCli, dockerWallMs, startBerthAndDockerd, stopEngines, type Engine } from "./docker-engines.ts";
import { median } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const idle = Number(process.env.BENCH_ENGINE_CONTAINERS ?? 50);

if (!dockerdInstalled()) {
  console.error("bench/engine.ts needs dockerd to compare against: apt-get install docker.io (it is not started as a service here)");
  process.exit(2);
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-engine-"));
const engines: Engine[] = [];
const docker = dockerCli(join(base, "docker-config"));
const wallMs = (socket: string, args: string[]) => dockerWallMs(docker, socket, args);

/** Median wall time of `args` on each engine, runs interleaved. */
function timeBoth(args: string[]): Map<string, number> {
  const times = new Map(engines.map((e) => [e.name, [] as number[]]));
  for (const e of engines) wallMs(e.socket, args); // warm-up
  for (let i = 0; i < runs; i++) for (const e of engines) times.get(e.name)!.push(wallMs(e.socket, args));
  return new Map([...times].map(([name, xs]) => [name, median(xs)]));
}

try {
  const load = loadavg()[0]!;
  await startBerthAndDockerd(base, engines, docker);

  const run = timeBoth(["run", "--rm", "--network", "none", "busybox:latest", "true"]);
  const psEmpty = timeBoth(["ps"]);
  for (const e of engines) for (let i = 0; i < idle; i++) docker(e.socket, ["run", "-d", "--network", "none", "busybox:latest", "sleep", "600"]);
  const ps = timeBoth(["ps"]);
  const ratio = (m: Map<string, number>) => (m.get("berth")! / m.get("dockerd")!).toFixed(2);
  const row = (label: string, m: Map<string, number>) => `| ${label} | ${m.get("berth")!.toFixed(1)} | ${m.get("dockerd")!.toFixed(1)} | **${ratio(m)}×** |`;
  const report = [
    `# Engine API: Berth vs dockerd (${new Date().toISOString()}, median of ${runs} interleaved runs after a warm-up, the docker CLI driving both)`,
    "",
    `Machine: ${cpus().length} CPUs, 1-minute load average ${load.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
    "",
    "| docker command | Berth ms | dockerd ms | Berth / dockerd |",
    "|---|---:|---:|---:|",
    row("run --rm --network none busybox true", run),
    row("ps (no containers)", psEmpty),
    row(`ps (${idle} running containers)`, ps),
    "",
    "Targets: `run --rm` at most 0.6× dockerd's time; `ps` with 50 containers no slower than dockerd.",
    "",
  ].join("\n");
  console.log(report);
  writeFileSync(join(repoRoot, "bench", "results", "engine.md"), report);
} finally {
  await stopEngines(engines, docker);
  rmSync(base, { recursive: true, force: true });
}
