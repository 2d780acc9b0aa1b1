// node bench/networks.ts: container networking, Berth against a real dockerd (Debian's
// docker.io on a temp root), the same docker CLI driving both, interleaved run by run:
//  - `docker run --rm busybox true` on each engine's default bridge network: median wall time;
//  - TCP throughput between two containers on a user-defined bridge network: busybox wget
//    of a BENCH_NET_MB MiB file from busybox httpd (page-cached), the client's wall time less
//    that of the same client fetching an empty file, as MiB/s. (busybox nc's client stops at
//    its stdin's end without flushing, so it cannot carry a bulk transfer.)
// dockerd runs with --iptables=false on bridges this script makes (10.250.x.0/24, names bt-*)
// so it changes no rule on the host; Berth's CNI plugins add and remove only their own.
// Results in bench/results/networks.md.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot, startDaemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { dockerdInstalled, startDockerd } from "./daemons.ts";
import { dockerCli, dockerWallMs, stopEngines, type Engine } from "./docker-engines.ts";
import { median } from "./measure.ts";
import { freeSubnetPrefixes, subnetRanges } from "../test/fixtures/host-network.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const megabytes = Number(process.env.BENCH_NET_MB ?? 256);

if (!dockerdInstalled()) {
  console.error("bench/networks.ts needs dockerd to compare against: apt-get install docker.io (it is not started as a service here)");
  process.exit(2);
}

const tag = randomBytes(2).toString("hex");
const base = mkdtempSync(join(tmpdir(), "berth-bench-networks-"));
const engines: Engine[] = [];
const docker = dockerCli(join(base, "docker-config"));
const wallMs = (socket: string, args: string[]) => dockerWallMs(docker, socket, args);
const ourBridges: string[] = [];

function makeBridge(name: string, gatewayCidr: string): void {
  execFileSync("ip", ["link", "add", name, "type", "bridge"]);
  ourBridges.push(name);
  execFileSync("ip", ["addr", "add", gatewayCidr, "dev", name]);
  execFileSync("ip", ["link", "set", name, "up"]);
}

try {
  const load = loadavg()[0]!;
  const [dockerDefault, berthUser, dockerUser] = freeSubnetPrefixes(3, subnetRanges.bench);
  mkdirSync(join(base, "archives"));
  const archive = readFileSync(skopeoArchives(join(base, "archives"), await buildBusyboxImage()).dockerArchive);
  const berth = await startDaemon({ base: join(base, "berth"), env: { BERTH_CNI_ADMIN_CHAIN: `BT-BENCH-${tag.toUpperCase()}` } });
  engines.push({ name: "berth", socket: berth.dockerSocket, stop: () => berth.destroy() });
  // dockerd's default bridge: one of ours, so nothing named docker0 appears on the host
  makeBridge(`bt-dk${tag}`, `${dockerDefault}.1/24`);
  mkdirSync(join(base, "dockerd"));
  const dockerd = await startDockerd(join(base, "dockerd"), [`--bridge=bt-dk${tag}`]);
  engines.push({ name: "dockerd", socket: dockerd.address, stop: () => dockerd.stop() });
  for (const e of engines) docker(e.socket, ["load", "-q"], archive);

  // docker run --rm on the default bridge
  const runTimes = new Map(engines.map((e) => [e.name, [] as number[]]));
  const runArgs = ["run", "--rm", "busybox:latest", "true"];
  for (const e of engines) wallMs(e.socket, runArgs);
  for (let i = 0; i < runs; i++) for (const e of engines) runTimes.get(e.name)!.push(wallMs(e.socket, runArgs));

  // throughput on a user-defined network
  docker(berth.dockerSocket, ["network", "create", "--subnet", `${berthUser}.0/24`, "benchnet"]);
  docker(dockerd.address, ["network", "create", "--subnet", `${dockerUser}.0/24`, "-o", `com.docker.network.bridge.name=bt-du${tag}`, "benchnet"]);
  ourBridges.push(`bt-du${tag}`);
  const throughput = new Map(engines.map((e) => [e.name, [] as number[]]));
  const transferRuns = Math.max(3, Math.floor(runs / 2));
  for (let i = 0; i < transferRuns; i++) {
    for (const e of engines) {
      const script = `mkdir -p /www && busybox dd if=/dev/zero of=/www/big bs=1048576 count=${megabytes} 2>/dev/null && touch /www/ready && exec busybox httpd -f -p 80 -h /www`;
      const server = docker(e.socket, ["run", "-d", "--network", "benchnet", "busybox:latest", "sh", "-c", script]).trim();
      const ip = JSON.parse(docker(e.socket, ["inspect", server]))[0].NetworkSettings.Networks.benchnet.IPAddress as string;
      const fetch = (path: string, out: string) => ["run", "--rm", "--network", "benchnet", "busybox:latest", "busybox", "wget", "-q", "-O", out, `http://${ip}/${path}`];
      for (let tries = 0; ; tries++) {
        try {
          docker(e.socket, fetch("ready", "/dev/null"));
          break;
        } catch (err) {
          if (tries > 100) throw err;
        }
      }
      const idle = wallMs(e.socket, fetch("ready", "/dev/null"));
      const transfer = wallMs(e.socket, fetch("big", "/dev/null"));
      throughput.get(e.name)!.push(megabytes / (Math.max(transfer - idle, 1) / 1000));
      docker(e.socket, ["rm", "-f", server]);
    }
  }

  const ms = (name: string) => median(runTimes.get(name)!);
  const mbps = (name: string) => median(throughput.get(name)!);
  const report = [
    `# Container networking: Berth vs dockerd (${new Date().toISOString()}, the docker CLI driving both, runs interleaved)`,
    "",
    `Machine: ${cpus().length} CPUs, 1-minute load average ${load.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
    "dockerd runs with --iptables=false (no NAT rules of its own) on bridges made by the benchmark; Berth runs its CNI plugins as it does for users (bridge; portmap only for published ports, firewall only where FORWARD drops).",
    "",
    "| measure | Berth | dockerd | Berth / dockerd |",
    "|---|---:|---:|---:|",
    `| run --rm busybox true, default bridge (median of ${runs}, ms) | ${ms("berth").toFixed(1)} | ${ms("dockerd").toFixed(1)} | **${(ms("berth") / ms("dockerd")).toFixed(2)}×** |`,
    `| container-to-container TCP, user network (${megabytes} MiB, busybox wget from httpd, median of ${transferRuns}, MiB/s) | ${mbps("berth").toFixed(0)} | ${mbps("dockerd").toFixed(0)} | **${(mbps("berth") / mbps("dockerd")).toFixed(2)}×** (higher is better) |`,
    "",
    "Targets: `run --rm` on the default bridge no slower than dockerd; throughput no lower.",
    "",
  ].join("\n");
  console.log(report);
  writeFileSync(join(repoRoot, "bench", "results", "networks.md"), report);
} finally {
  await stopEngines(engines, docker, (e) => docker(e.socket, ["network", "rm", "benchnet"]));
  for (const bridge of ourBridges) spawnSync("ip", ["link", "del", bridge]);
  rmSync(base, { recursive: true, force: true });
}
