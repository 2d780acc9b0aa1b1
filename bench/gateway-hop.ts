// node bench/gateway-hop.ts: what one small unary call costs, and how much of it is
// the gateway's hop. Sequential calls (one at a time, as ctr makes them) of
// Content/Info and Namespaces/Get, each on one connection: through the public socket,
// directly on the serving process's socket, and against a real containerd for
// reference. Median per call of BENCH_CALLS, the targets interleaved in rounds so load
// hits them alike. BENCH_BASELINE=<checkout> adds the same calls through a second Berth
// built there (before/after in the same rounds). Results in bench/results/gateway-hop.md.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startContainerd, type RunningDaemon } from "./daemons.ts";
import { DirectChannel } from "../core/grpc-direct.ts";
import { InfoRequest, ReadContentRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import { GetNamespaceRequest } from "../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { repoRoot, startDaemon, type Daemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { median, Report } from "./measure.ts";

const calls = Number(process.env.BENCH_CALLS ?? 2000);
const rounds = 10;
const namespace = "default";

const base = mkdtempSync(join(tmpdir(), "berth-bench-gateway-hop-"));
let berth: Daemon | undefined;
let baselineBerth: Daemon | undefined;
const baseline = process.env.BENCH_BASELINE;
let containerd: RunningDaemon | undefined;
const channels: DirectChannel[] = [];
const us = (msValue: number) => (msValue * 1000).toFixed(0);

interface Target {
  name: string;
  channel: DirectChannel;
  path: string;
  request: Uint8Array;
  times: number[];
  /** A server-streaming call (Content/Read), read to its end. */
  streamed: boolean;
}

const report = new Report();
const out = report.out;

try {
  const loadBefore = loadavg()[0]!;
  berth = await startDaemon({ base: join(base, "berth"), env: { BERTH_LOG_LEVEL: "warn" } });
  const archive = skopeoArchives(mkdtempSync(join(base, "image-")), await buildBusyboxImage(), "busybox:latest").dockerArchive;
  const sockets: Array<[string, string]> = [["berth", berth.address]];
  if (baseline) {
    const launcher = join(base, "baseline-berthd");
    writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${join(baseline, "dist", "berthd.js")} "$@"\n`);
    chmodSync(launcher, 0o755);
    baselineBerth = await startDaemon({ base: join(base, "baseline"), env: { BERTH_LOG_LEVEL: "warn" }, launcher });
    sockets.push(["baseline", baselineBerth.address]);
  }
  if (containerdInstalled()) {
    containerd = await startContainerd(join(base, "containerd"));
    sockets.push(["containerd", containerd.address]);
  }
  for (const [name, address] of sockets) {
    const r = spawnSync("ctr", ["--address", address, "--namespace", namespace, "images", "import", archive], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${name}: ctr images import failed: ${r.stderr}`);
  }
  // The image's own manifest (or index): both stores hold it for as long as the image exists.
  const digests = sockets.map(([, address]) => /\bsha256:[0-9a-f]{64}\b/.exec(spawnSync("ctr", ["--address", address, "--namespace", namespace, "images", "ls"], { encoding: "utf8" }).stdout)?.[0]);
  const digest = digests[0];
  if (!digest || digests.some((d) => d !== digest)) throw new Error(`the imported image differs: ${JSON.stringify(digests)}`);
  const info = InfoRequest.encode({ digest }).finish();
  const read = ReadContentRequest.encode({ digest, offset: 0n, size: 0n }).finish();
  const getNamespace = GetNamespaceRequest.encode({ name: namespace }).finish();
  const target = (name: string, address: string, path: string, request: Uint8Array, streamed = false): Target => {
    const channel = new DirectChannel(address);
    channels.push(channel);
    return { name, channel, path, request, times: [], streamed };
  };
  const readPath = "/containerd.services.content.v1.Content/Read";
  const services = (service: string) => join(berth!.state, "services", `${service}.sock`);
  const targets = [
    target("Content/Info, through the gateway", berth.address, "/containerd.services.content.v1.Content/Info", info),
    target("Content/Info, on content.sock", services("content"), "/containerd.services.content.v1.Content/Info", info),
    target("Content/Read of the manifest, through the gateway", berth.address, readPath, read, true),
    target("Namespaces/Get, through the gateway", berth.address, "/containerd.services.namespaces.v1.Namespaces/Get", getNamespace),
    target("Namespaces/Get, on metadata.sock (in berthd)", services("metadata"), "/containerd.services.namespaces.v1.Namespaces/Get", getNamespace),
  ];
  if (baselineBerth) {
    targets.push(target("baseline: Content/Info, through the gateway", baselineBerth.address, "/containerd.services.content.v1.Content/Info", info));
    targets.push(target("baseline: Content/Read of the manifest, through the gateway", baselineBerth.address, readPath, read, true));
    targets.push(target("baseline: Namespaces/Get, through the gateway", baselineBerth.address, "/containerd.services.namespaces.v1.Namespaces/Get", getNamespace));
  }
  if (containerd) {
    targets.push(target("Content/Read of the manifest, containerd", containerd.address, readPath, read, true));
    targets.push(target("Content/Info, containerd", containerd.address, "/containerd.services.content.v1.Content/Info", info));
    targets.push(target("Namespaces/Get, containerd", containerd.address, "/containerd.services.namespaces.v1.Namespaces/Get", getNamespace));
  }
  const metadata = { "containerd-namespace": namespace };
  const call = async (t: Target) => {
    if (!t.streamed) return void (await t.channel.unary(t.path, t.request, metadata));
    for await (const _ of t.channel.serverStream(t.path, t.request, metadata));
  };
  for (const t of targets) for (let i = 0; i < 200; i++) await call(t);
  for (let round = 0; round < rounds; round++) {
    for (const t of targets) {
      for (let i = 0; i < calls / rounds; i++) {
        const t0 = performance.now();
        await call(t);
        t.times.push(performance.now() - t0);
      }
    }
  }
  out(`# One small unary call: through the gateway, direct, containerd (${new Date().toISOString()})`);
  out();
  out(`Command: \`${baseline ? `BENCH_BASELINE=${baseline} ` : ""}node bench/gateway-hop.ts\` (${calls} sequential calls per target, core/grpc-direct.ts client); ${cpus().length} CPUs, load ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after`);
  out();
  out("| call | median µs | p90 µs |");
  out("|---|---:|---:|");
  for (const t of targets) {
    const sorted = [...t.times].sort((a, b) => a - b);
    out(`| ${t.name} | ${us(median(t.times))} | ${us(sorted[Math.floor(sorted.length * 0.9)]!)} |`);
  }
  report.save(join(repoRoot, "bench", "results", "gateway-hop.md"));
} finally {
  for (const channel of channels) channel.close?.();
  await berth?.destroy();
  await baselineBerth?.destroy();
  await containerd?.stop();
  rmSync(base, { recursive: true, force: true });
}
