// The Engine API's container path against a real dockerd, the same docker CLI driving
// both: `docker run --rm --network none busybox true` and `docker ps -a` with 50
// containers. Each daemon runs on its own temp root (dockerd: Debian's docker.io with
// --iptables=false --bridge=none, its own containerd); runs are interleaved so load
// bursts on a shared machine hit both alike; each figure is the median wall time.
// Results: bench/results/engine-containers.md.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { stopChild } from "../core/process.ts";
import { socketAccepts } from "../core/socket.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { repoRoot, sleep, startDaemon } from "../test/harness.ts";
import { removeEveryContainer } from "../test/engine-cleanup.ts";

const runs = Number(process.env.BENCH_RUNS ?? 15);
const containers = 50;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fastest = (xs: number[]) => Math.min(...xs);

function docker(host: string, args: string[]): { ms: number; stdout: string } {
  const started = process.hrtime.bigint();
  const r = spawnSync("docker", args, { encoding: "utf8", env: { ...process.env, DOCKER_HOST: `unix://${host}`, DOCKER_CONFIG: join(base, "docker-config") } });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`docker ${args.join(" ")} against ${host} failed (${r.status}): ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

async function startDockerd(dir: string): Promise<{ socket: string; proc: ChildProcess }> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "docker.sock");
  const proc = spawn(
    "dockerd",
    ["--data-root", join(dir, "root"), "--exec-root", join(dir, "exec"), "--pidfile", join(dir, "dockerd.pid"), "-H", `unix://${socket}`, "--iptables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false"],
    { stdio: ["ignore", "ignore", "ignore"] },
  );
  for (let i = 0; i < 600 && !(await socketAccepts(socket)); i++) await sleep(50);
  return { socket, proc };
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-engine-"));
const loadBefore = loadavg()[0]!;
const berth = await startDaemon({ base: join(base, "berth") });
let dockerd: { socket: string; proc: ChildProcess } | undefined;
try {
  dockerd = await startDockerd(join(base, "dockerd"));
  const archive = skopeoArchives(mkdtempSync(join(base, "image-")), await buildBusyboxImage()).dockerArchive;
  const loaded = berth.ctr(["images", "import", archive], undefined, "moby");
  if (loaded.code !== 0) throw new Error(`import into Berth failed: ${loaded.stderr}`);
  docker(dockerd.socket, ["load", "-i", archive]);
  const hosts = { berth: berth.dockerSocket, dockerd: dockerd.socket };

  const runMs: Record<string, number[]> = { berth: [], dockerd: [] };
  for (const host of Object.values(hosts)) docker(host, ["run", "--rm", "--network", "none", "busybox", "true"]); // warm-up
  for (let i = 0; i < runs; i++) {
    for (const [name, host] of Object.entries(hosts)) runMs[name]!.push(docker(host, ["run", "--rm", "--network", "none", "busybox", "true"]).ms);
  }

  for (const host of Object.values(hosts)) for (let i = 0; i < containers; i++) docker(host, ["create", "--network", "none", "busybox", "true"]);
  const psMs: Record<string, number[]> = { berth: [], dockerd: [] };
  for (let i = 0; i < runs; i++) {
    for (const [name, host] of Object.entries(hosts)) {
      const r = docker(host, ["ps", "-a"]);
      if (r.stdout.trim().split("\n").length !== containers + 1) throw new Error(`${name}: ps -a did not list ${containers} containers`);
      psMs[name]!.push(r.ms);
    }
  }

  const row = (what: string, ms: Record<string, number[]>) => {
    const b = median(ms.berth!);
    const d = median(ms.dockerd!);
    const bMin = fastest(ms.berth!);
    const dMin = fastest(ms.dockerd!);
    return `| ${what} | ${b.toFixed(0)} ms (${bMin.toFixed(0)}) | ${d.toFixed(0)} ms (${dMin.toFixed(0)}) | ${(b / d).toFixed(2)}× (${(bMin / dMin).toFixed(2)}×) |`;
  };
  const report = [
    "# Engine containers: Berth vs dockerd",
    "",
    `\`node bench/engine-containers.ts\`, ${runs} interleaved rounds, medians; ${cpus().length} CPUs, load average ${loadBefore.toFixed(1)} at start.`,
    `dockerd: ${docker(dockerd.socket, ["version", "--format", "{{.Server.Version}}"]).stdout.trim()}; the same docker CLI (${spawnSync("docker", ["--version"], { encoding: "utf8" }).stdout.trim()}) drives both.`,
    "",
    "Medians, fastest run in parentheses (the machine is shared: the fastest shows the cost with the least interference).",
    "",
    "| command | Berth | dockerd | Berth / dockerd |",
    "|---|---|---|---|",
    row("`docker run --rm --network none busybox true`", runMs),
    row(`\`docker ps -a\` with ${containers} containers`, psMs),
    "",
  ].join("\n");
  mkdirSync(join(repoRoot, "bench", "results"), { recursive: true });
  writeFileSync(join(repoRoot, "bench", "results", "engine-containers.md"), report);
  process.stdout.write(report);
} finally {
  await removeEveryContainer(berth).catch(() => undefined);
  if (dockerd) {
    const ids = spawnSync("docker", ["ps", "-aq"], { encoding: "utf8", env: { ...process.env, DOCKER_HOST: `unix://${dockerd.socket}`, DOCKER_CONFIG: join(base, "docker-config") } }).stdout.split("\n").filter(Boolean);
    if (ids.length > 0) spawnSync("docker", ["rm", "-f", ...ids], { env: { ...process.env, DOCKER_HOST: `unix://${dockerd.socket}`, DOCKER_CONFIG: join(base, "docker-config") } });
    await stopChild(dockerd.proc, 20_000);
  }
  await berth.destroy();
  rmSync(base, { recursive: true, force: true });
}
