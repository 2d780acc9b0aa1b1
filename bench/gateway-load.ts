// Load through the public socket, side by side: bursts of concurrent calls (unary
// Content/Info, server-streaming Content/Read) on one connection and on a hundred, then
// hundreds of idle connections, against Berth's gateway and against a real containerd,
// each on its own temp root. Reports throughput (calls/s) and its ratio, whether the
// daemon still served a call after each burst (no wedge), and the private memory (USS)
// of the processes the calls reach (Berth: berthd, which hosts the gateway, and
// content; containerd: itself) idle, at peak, and after the load, polling until it is
// back near idle (at most BENCH_RETURN_MS, default 60 s), after the bursts and again
// after the idle connections. Berth runs with a 20 s idle
// connection timeout (BERTH_GATEWAY_IDLE_MS; 5 min by default) so that the idle
// connections a client leaves open are closed within that minute; containerd keeps
// them. Writes bench/results/gateway-load.md.
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids, repoRoot, sleep } from "../test/harness.ts";
import { burst, callOnce, idleConnections, type BurstResult } from "../test/grpc-burst.ts";
import { InfoRequest, ReadContentRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import { containerdInstalled, startBerth, startContainerd, type RunningDaemon } from "./daemons.ts";
import { mib, processMemory, processName } from "./proc-memory.ts";

const returnWithinMs = Number(process.env.BENCH_RETURN_MS ?? 60_000);
/** content runs on demand: it must not exit while idle between the phases, its memory is measured throughout. */
const contentStaysMs = 3_600_000;
const idleConnectionCount = Number(process.env.BENCH_IDLE_CONNECTIONS ?? 900);
const berthIdleMs = 20_000;
/** Each burst runs this many times; the median by throughput is reported. */
const runs = Number(process.env.BENCH_RUNS ?? 3);

const blob = randomBytes(64 * 1024);
const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
const namespaced = { "containerd-namespace": "bench" };
const info = { path: "/containerd.services.content.v1.Content/Info", message: InfoRequest.encode({ digest }).finish() };
const read = { path: "/containerd.services.content.v1.Content/Read", message: ReadContentRequest.encode({ digest, offset: 0n, size: 0n }).finish() };

const phases = [
  { label: "unary Info, 1 connection × 20000 calls", call: info, connections: 1, calls: 20_000 },
  { label: "unary Info, 100 connections × 150 calls", call: info, connections: 100, calls: 150 },
  { label: "streaming Read 64 KiB, 1 connection × 2000 calls", call: read, connections: 1, calls: 2000 },
  { label: "streaming Read 64 KiB, 100 connections × 20 calls", call: read, connections: 100, calls: 20 },
];

interface PhaseFigures {
  label: string;
  result: BurstResult;
  callsPerSecond: number;
  servedAfter: boolean;
}

interface DaemonFigures {
  name: string;
  processes: string;
  idleKiB: number;
  peakKiB: number;
  /** After the bursts, and the time it took to get there (undefined: not within returnWithinMs). */
  afterBursts: { kib: number; ms: number | undefined };
  idleConnectionsKiB: number;
  afterIdleConnections: { kib: number; ms: number | undefined };
  idleConnectionsOpenAfter: number;
  phases: PhaseFigures[];
}

/** USS summed over the processes the calls reach. */
function usage(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + processMemory(pid, "").ussKiB, 0);
}

function reachedPids(daemon: RunningDaemon): number[] {
  if (daemon.name !== "berth") return [daemon.pid];
  const content = childPids(daemon.pid).find((pid) => processName(pid) === "content");
  if (!content) throw new Error("berthd runs no content process");
  return [daemon.pid, content];
}

async function served(address: string): Promise<boolean> {
  const r = await callOnce(address, info.path, info.message, { ...namespaced, "grpc-timeout": "10S" });
  return r.status === "0";
}

async function measure(daemon: RunningDaemon): Promise<DaemonFigures> {
  try {
    const ingest = spawnSync("ctr", ["--address", daemon.address, "--namespace", "bench", "content", "ingest", "bench-blob"], { input: blob });
    if (ingest.status !== 0) throw new Error(`ctr content ingest into ${daemon.name} failed: ${ingest.stderr}`);
    // A root for the garbage collector: containerd collected the unreferenced blob mid-run.
    const label = spawnSync("ctr", ["--address", daemon.address, "--namespace", "bench", "content", "label", digest, "containerd.io/gc.root=bench"]);
    if (label.status !== 0) throw new Error(`ctr content label in ${daemon.name} failed: ${label.stderr}`);
    const pids = reachedPids(daemon);
    await sleep(3000);
    const idleKiB = usage(pids);
    let peakKiB = idleKiB;
    const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, usage(pids))), 200);
    const figures: PhaseFigures[] = [];
    try {
      for (const phase of phases) {
        const tries: PhaseFigures[] = [];
        for (let run = 0; run < runs; run++) {
          const result = await burst({ address: daemon.address, connections: phase.connections, callsPerConnection: phase.calls, path: phase.call.path, message: phase.call.message, headers: namespaced, timeoutMs: 120_000 });
          tries.push({ label: phase.label, result, callsPerSecond: (result.ok / result.elapsedMs) * 1000, servedAfter: await served(daemon.address) });
        }
        // The median run by throughput; a wedge in any run shows.
        const median = [...tries].sort((a, b) => a.callsPerSecond - b.callsPerSecond)[Math.floor(runs / 2)]!;
        figures.push({ ...median, servedAfter: tries.every((t) => t.servedAfter) });
      }
    } finally {
      clearInterval(sampler);
    }
    peakKiB = Math.max(peakKiB, usage(pids));
    const nearIdle = idleKiB * 1.2 + 4096;
    const afterBursts = await backNearIdle(pids, nearIdle);
    // Idle connections, left open as a careless client leaves them.
    const idle = await idleConnections(daemon.address, idleConnectionCount);
    try {
      await sleep(3000);
      const idleConnectionsKiB = usage(pids);
      const afterIdleConnections = await backNearIdle(pids, nearIdle);
      return {
        name: daemon.name,
        processes: pids.map(processName).join(" + "),
        idleKiB,
        peakKiB,
        afterBursts,
        idleConnectionsKiB,
        afterIdleConnections,
        idleConnectionsOpenAfter: idle.open(),
        phases: figures,
      };
    } finally {
      idle.closeAll();
    }
  } finally {
    await daemon.stop();
  }
}

/** Polls (each second, at most returnWithinMs) until the processes' USS is at most `nearIdleKiB`. */
async function backNearIdle(pids: number[], nearIdleKiB: number): Promise<{ kib: number; ms: number | undefined }> {
  const started = performance.now();
  let kib = usage(pids);
  while (performance.now() - started < returnWithinMs) {
    kib = usage(pids);
    if (kib <= nearIdleKiB) return { kib, ms: performance.now() - started };
    await sleep(1000);
  }
  return { kib, ms: undefined };
}

function report(all: DaemonFigures[]): string {
  const [berth, containerd] = all;
  const out = [
    `# Gateway load: Berth vs containerd (${new Date().toISOString()})`,
    "",
    `\`node bench/gateway-load.ts\`: raw HTTP/2 bursts (test/grpc-burst.ts) on the daemon's UNIX socket, each run ${runs} times (median by calls/s; "served after": a call answered after every run); every call of a burst opened at once, the server's SETTINGS_MAX_CONCURRENT_STREAMS pacing them on a connection. ` +
      `Then ${idleConnectionCount} idle connections left open. Berth runs with BERTH_GATEWAY_IDLE_MS=${berthIdleMs}.`,
    "",
    "## Throughput",
    `| burst | ${all.map((d) => `${d.name} calls/s (ok / failed / unanswered; served after)`).join(" | ")} |${containerd ? " Berth / containerd |" : ""}`,
    `|---|${all.map(() => "---:").join("|")}|${containerd ? "---:|" : ""}`,
  ];
  phases.forEach((phase, i) => {
    const cells = all.map((d) => {
      const p = d.phases[i]!;
      const failed = Object.values(p.result.failed).reduce((a, b) => a + b, 0) + p.result.reset;
      return `${p.callsPerSecond.toFixed(0)} (${p.result.ok} / ${failed} / ${p.result.unanswered}; ${p.servedAfter ? "yes" : "**no**"})`;
    });
    const ratio = containerd ? ` ${(berth!.phases[i]!.callsPerSecond / containerd.phases[i]!.callsPerSecond).toFixed(2)}× |` : "";
    out.push(`| ${phase.label} | ${cells.join(" | ")} |${ratio}`);
  });
  const returned = (r: { kib: number; ms: number | undefined }) =>
    r.ms === undefined ? `${mib(r.kib)} (not within ${returnWithinMs / 1000} s)` : `${mib(r.kib)} (${(r.ms / 1000).toFixed(1)} s)`;
  out.push(
    "",
    "## Memory (USS MiB of the processes the calls reach; \"back near idle\" = at most idle × 1.2 + 4 MiB, polled each second)",
    `| daemon | processes | idle | peak (bursts) | after the bursts (time to get there) | with ${idleConnectionCount} idle connections | after, connections left open (time) | connections the server closed |`,
    "|---|---|---:|---:|---:|---:|---:|---:|",
    ...all.map(
      (d) =>
        `| ${d.name} | ${d.processes} | ${mib(d.idleKiB)} | ${mib(d.peakKiB)} | ${returned(d.afterBursts)} | ${mib(d.idleConnectionsKiB)} | ${returned(d.afterIdleConnections)} | ${idleConnectionCount - d.idleConnectionsOpenAfter} of ${idleConnectionCount} |`,
    ),
  );
  return out.join("\n") + "\n";
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-"));
try {
  const all = [await measure(await startBerth(join(base, "berth"), { BERTH_GATEWAY_IDLE_MS: String(berthIdleMs), BERTH_IDLE_EXIT_MS: String(contentStaysMs) }))];
  if (containerdInstalled()) all.push(await measure(await startContainerd(join(base, "containerd"))));
  else process.stderr.write("containerd is not installed (apt-get install containerd): Berth alone\n");
  const text = report(all);
  process.stdout.write(text);
  writeFileSync(join(repoRoot, "bench", "results", "gateway-load.md"), text);
} finally {
  rmSync(base, { recursive: true, force: true });
}
