// `berth ps` against `docker ps` on the same Berth engine: the real docker CLI (Go, one
// static binary) and berth (Node, dist/berth.js, and through the launcher that
// install-launchers.sh writes), with 0 and then 50 containers (made with `docker create`,
// listed with `ps -a`), plus bare `node -e 0` as the floor a Node CLI stands on. Runs are
// interleaved (one of each command per round, after a warm-up round) so a burst of load
// on the shared machine hits every column alike; each figure is the median wall time.
// Target (issue 9): `berth ps` at most 3× `docker ps`.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { distDir, ok, repoRoot, type Daemon } from "../test/harness.ts";
import { startEngineWithBusybox } from "../test/fixtures/engine-session.ts";
import { removeEveryContainer } from "../test/engine-cleanup.ts";
import { median, wallMs, type Timed } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const containerCount = 50;

function measure(commands: Timed[]): Map<string, number> {
  for (const c of commands) wallMs(c);
  const times = new Map(commands.map((c) => [c.label, [] as number[]]));
  for (let i = 0; i < runs; i++) for (const c of commands) times.get(c.label)!.push(wallMs(c));
  return new Map([...times].map(([label, xs]) => [label, median(xs)]));
}

const loadBefore = loadavg()[0]!;
let d: Daemon | undefined;
const rows: [string, number, number][] = [];
try {
  d = await startEngineWithBusybox();
  const launchers = join(d.base, "bin");
  mkdirSync(launchers);
  const install = spawnSync("sh", [join(repoRoot, "scripts", "install-launchers.sh"), launchers], { encoding: "utf8" });
  if (install.status !== 0) throw new Error(`install-launchers failed: ${install.stderr}`);
  const host = `unix://${d.dockerSocket}`;
  const env = { ...process.env, DOCKER_HOST: host, BERTH_HOST: host, DOCKER_CONFIG: join(d.base, "docker-config"), HOME: join(d.base, "home") };
  const commands: Timed[] = [
    { label: "node -e 0", command: process.execPath, args: ["-e", "0"], env },
    { label: "docker ps -a", command: "docker", args: ["ps", "-a"], env },
    { label: "berth ps -a", command: process.execPath, args: [join(distDir, "berth.js"), "ps", "-a"], env },
    { label: "berth ps -a (launcher)", command: join(launchers, "berth"), args: ["ps", "-a"], env },
  ];
  const empty = measure(commands);
  for (let i = 0; i < containerCount; i++) ok(d.docker(["create", "--name", `bench-${i}`, "busybox", "sleep", "1"]), "docker create");
  const listed = ok(d.docker(["ps", "-aq"])).stdout.trim().split("\n").length;
  if (listed !== containerCount) throw new Error(`expected ${containerCount} containers, docker ps lists ${listed}`);
  const full = measure(commands);
  for (const c of commands) rows.push([c.label, empty.get(c.label)!, full.get(c.label)!]);
} finally {
  if (d) {
    try {
      await removeEveryContainer(d);
    } finally {
      await d.destroy();
    }
  }
}

const at = (label: string, col: 1 | 2) => rows.find((r) => r[0] === label)![col];
const ratio = (col: 1 | 2, label = "berth ps -a") => `${(at(label, col) / at("docker ps -a", col)).toFixed(2)}×`;
const report = [
  `# berth ps vs docker ps on one Berth engine (${new Date().toISOString()}, median of ${runs} interleaved runs after a warm-up)`,
  "",
  `Machine: ${cpus().length} CPUs, 1-minute load average ${loadBefore.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
  "",
  `| command | 0 containers (ms) | ${containerCount} containers (ms) |`,
  "|---|---:|---:|",
  ...rows.map(([label, a, b]) => `| ${label} | ${a.toFixed(1)} | ${b.toFixed(1)} |`),
  "",
  `- \`berth ps -a\` / \`docker ps -a\`: **${ratio(1)}** with 0 containers, **${ratio(2)}** with ${containerCount} (target: at most 3×)`,
  `- through the launcher: ${ratio(1, "berth ps -a (launcher)")} and ${ratio(2, "berth ps -a (launcher)")}`,
  `- \`berth ps -a\` above bare \`node -e 0\`: ${(at("berth ps -a", 1) - at("node -e 0", 1)).toFixed(1)} ms and ${(at("berth ps -a", 2) - at("node -e 0", 2)).toFixed(1)} ms`,
  "",
].join("\n");
process.stdout.write(report);
writeFileSync(join(repoRoot, "bench", "results", "engine-cli.md"), report);
