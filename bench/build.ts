// node bench/build.ts: the same 8-step Dockerfile (a 20 MB COPY, a COPY of 200 small files,
// two RUNs, metadata steps) built by the real `docker build` (DOCKER_BUILDKIT=0) against
// Berth and against a real dockerd's classic builder (temp root, own containerd),
// interleaved: cold (--no-cache), fully cached, and one of the 200 files changed.
// Median of BENCH_RUNS (default 3). Results in bench/results/build.md.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../test/harness.ts";
import { dockerdInstalled } from "./daemons.ts";
import { startBerthAndDockerd, type Engine } from "./docker-engines.ts";
import { median } from "./measure.ts";
import { changeOneFile, writeBenchContext } from "./build-context.ts";

const runs = Number(process.env.BENCH_RUNS ?? 3);

if (!dockerdInstalled()) {
  console.error("bench/build.ts needs dockerd to compare against: apt-get install docker.io (it is not started as a service here)");
  process.exit(2);
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-build-"));
const engines: Engine[] = [];

function docker(socket: string, args: string[], input?: Buffer): string {
  const r = spawnSync("docker", args, {
    input,
    env: { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(base, "docker-config"), DOCKER_BUILDKIT: "0" },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`docker ${args.join(" ")} (${socket}): ${r.stderr}`);
  return r.stdout.toString();
}

function buildMs(socket: string, args: string[]): number {
  const start = process.hrtime.bigint();
  docker(socket, ["build", "-q", ...args, "-t", "bench:latest", context]);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const context = writeBenchContext(base);

let edits = 0;
/** Each scenario's wall times per engine, interleaved run by run. */
function scenario(prepare: () => void, args: string[]): Map<string, number> {
  const times = new Map(engines.map((e) => [e.name, [] as number[]]));
  for (let i = 0; i < runs; i++) {
    prepare();
    for (const e of engines) times.get(e.name)!.push(buildMs(e.socket, args));
  }
  return new Map([...times].map(([name, xs]) => [name, median(xs)]));
}

try {
  const load = loadavg()[0]!;
  await startBerthAndDockerd(base, engines, docker);
  for (const e of engines) buildMs(e.socket, []); // warm-up: both have every step cached

  const cold = scenario(() => {}, ["--no-cache"]);
  const cached = scenario(() => {}, []);
  const changed = scenario(() => changeOneFile(context, `edit ${++edits}\n`), []);
  const ratio = (m: Map<string, number>) => (m.get("berth")! / m.get("dockerd")!).toFixed(2);
  const row = (label: string, m: Map<string, number>) => `| ${label} | ${m.get("berth")!.toFixed(0)} | ${m.get("dockerd")!.toFixed(0)} | **${ratio(m)}×** |`;
  const report = [
    `# docker build (classic): Berth vs dockerd (${new Date().toISOString()}, median of ${runs} interleaved runs, the docker CLI driving both)`,
    "",
    `Machine: ${cpus().length} CPUs, 1-minute load average ${load.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
    "Dockerfile: FROM busybox, COPY of 20 MB, COPY of 200 small files, two RUNs, ENV, WORKDIR, CMD.",
    "",
    "| build | Berth ms | dockerd ms | Berth / dockerd |",
    "|---|---:|---:|---:|",
    row("cold (--no-cache)", cold),
    row("fully cached", cached),
    row("one of the 200 files changed", changed),
    "",
    "Targets (issue 11): cold at most 0.5×, one file changed at most 0.3×, cached no slower.",
    "",
  ].join("\n");
  console.log(report);
  writeFileSync(join(repoRoot, "bench", "results", "build.md"), report);
} finally {
  for (const e of engines) {
    try {
      const ids = docker(e.socket, ["ps", "-aq"]).split("\n").filter(Boolean);
      if (ids.length > 0) docker(e.socket, ["rm", "-f", ...ids]);
    } catch (err) {
      console.error(`cleaning up ${e.name}: ${(err as Error).message}`);
    }
    await e.stop();
  }
  rmSync(base, { recursive: true, force: true });
}
