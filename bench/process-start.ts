// Start-up of the processes berthd starts on demand: the time from asking berthd for
// one (berth.internal.v1.Processes Ready, what a call that needs it waits for) until
// its socket accepts calls, and the CPU the process spent by then and once it settled
// (jobs goes on connecting to Redis after it listens). Two daemons side by side, one
// per variant, the starts alternating between them so load bursts hit both alike:
//   on:  the daemon as it runs (its processes use Node's compile cache)
//   off: NODE_DISABLE_COMPILE_CACHE=1 in the daemon's environment
// The first start of each process in the "on" daemon may write the cache; it and the
// "off" daemon's first are dropped as warm-up. Options: BENCH_RUNS (default 9),
// BENCH_PROCESSES (default content,images,snapshots,diff,jobs), BENCH_BASELINE_DIST=<dir>
// (another build's dist/, inside a checkout: the second daemon runs it instead, cache
// on, so two builds are compared). Each start also reports the process's PSS once settled.
// Run: node bench/process-start.ts
import { chmodSync, readFileSync, rmSync, mkdtempSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessesDefinition } from "../core/gen/berth/internal/v1/processes.ts";
import { createChannel, createClient } from "nice-grpc";
import { serviceSocketPath } from "../core/config.ts";
import { inProcess } from "../core/routes.ts";
import { childPids, distDir, sleep, startDaemon, type Daemon } from "../test/harness.ts";
import { median } from "./measure.ts";
import { processMemory } from "./proc-memory.ts";

const runs = Number(process.env.BENCH_RUNS ?? 9);
const names = (process.env.BENCH_PROCESSES ?? "content,images,snapshots,diff,jobs").split(",");
/** Long enough for a start to settle before the process retires. */
const idleExitMs = 2000;
const ticksPerSecond = 100;

const baselineDist = process.env.BENCH_BASELINE_DIST;

/** The pid of berthd's child running <dist>/<name>.js, if any. */
function pidOf(daemon: Daemon, name: string, dist = distDir): number | undefined {
  return childPids(daemon.pid!).find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((arg) => arg === join(dist, `${name}.js`));
    } catch {
      return false;
    }
  });
}

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

async function untilGone(daemon: Daemon, name: string, dist: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (pidOf(daemon, name, dist) === undefined) return;
    await sleep(50);
  }
  throw new Error(`${name} did not exit once idle`);
}

/** CPU of `pid` once it stopped growing for 300 ms (the process idles after its start). */
async function settledCpuMs(pid: number): Promise<number> {
  let last = cpuMs(pid);
  for (let still = 0; still < 3; ) {
    await sleep(100);
    const now = cpuMs(pid);
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

interface Sample {
  wall: number;
  cpuAtReady: number;
  cpuSettled: number;
  pssKiB: number;
}

async function startOnce(daemon: Daemon, name: string, dist: string): Promise<Sample> {
  await untilGone(daemon, name, dist);
  const channel = createChannel(`unix://${serviceSocketPath(daemon.state, inProcess)}`);
  try {
    const processes = createClient(ProcessesDefinition, channel);
    // The channel connects on this first call (an unknown name fails at once), not on the timed one.
    await processes.ready({ name: "no-such-process" }).catch(() => undefined);
    const t0 = performance.now();
    await processes.ready({ name });
    const wall = performance.now() - t0;
    const pid = pidOf(daemon, name, dist);
    if (pid === undefined) throw new Error(`${name} answered but runs under no pid`);
    const cpuAtReady = cpuMs(pid);
    const cpuSettled = await settledCpuMs(pid);
    return { wall, cpuAtReady, cpuSettled, pssKiB: processMemory(pid, name).pssKiB };
  } finally {
    channel.close();
  }
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-process-start-"));
const loadBefore = loadavg()[0]!;
const daemons: Daemon[] = [];
try {
  const env = { BERTH_LOG_LEVEL: "warn", BERTH_IDLE_EXIT_MS: String(idleExitMs) };
  let variants: { label: string; daemon: Daemon; dist: string }[];
  if (baselineDist) {
    // berthd started from the other build's dist/ (its processes are found by their path).
    const launcher = join(base, "baseline-berthd");
    writeFileSync(launcher, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(baselineDist, "berthd.js"))} "$@"\n`);
    chmodSync(launcher, 0o755);
    variants = [
      { label: "this build", daemon: await startDaemon({ base: join(base, "this"), env }), dist: distDir },
      { label: "baseline", daemon: await startDaemon({ base: join(base, "baseline"), env, launcher }), dist: baselineDist },
    ];
  } else {
    variants = [
      { label: "compile cache on", daemon: await startDaemon({ base: join(base, "on"), env }), dist: distDir },
      { label: "compile cache off", daemon: await startDaemon({ base: join(base, "off"), env: { ...env, NODE_DISABLE_COMPILE_CACHE: "1" } }), dist: distDir },
    ];
  }
  daemons.push(...variants.map((v) => v.daemon));
  const samples = new Map<string, Sample[]>();
  for (let run = 0; run <= runs; run++) {
    for (const name of names) {
      for (const v of run % 2 ? variants : [...variants].reverse()) {
        const s = await startOnce(v.daemon, name, v.dist);
        if (run === 0) continue;
        const key = `${name}\0${v.label}`;
        samples.set(key, [...(samples.get(key) ?? []), s]);
      }
    }
  }
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`# Start of on-demand processes (${new Date().toISOString()}, median of ${runs} starts each)`);
  out("");
  out(`${cpus().length} CPUs, 1-minute load ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after.`);
  out("");
  out("| process | variant | Ready → listening, wall ms | CPU ms at listening | CPU ms settled | PSS KiB settled |");
  out("|---|---|---:|---:|---:|---:|");
  for (const name of names) {
    for (const v of variants) {
      const s = samples.get(`${name}\0${v.label}`)!;
      const col = (f: (x: Sample) => number) => median(s.map(f)).toFixed(0);
      out(`| ${name} | ${v.label} | ${col((x) => x.wall)} | ${col((x) => x.cpuAtReady)} | ${col((x) => x.cpuSettled)} | ${col((x) => x.pssKiB)} |`);
    }
  }
  out("");
  out("Samples (wall ms / settled CPU ms / PSS KiB), in order:");
  out("");
  for (const name of names) {
    for (const v of variants) {
      out(`- ${name}, ${v.label}: ${samples.get(`${name}\0${v.label}`)!.map((x) => `${x.wall.toFixed(0)}/${x.cpuSettled}/${x.pssKiB}`).join(", ")}`);
    }
  }
} finally {
  for (const d of daemons) await d.stop().catch(() => undefined);
  rmSync(base, { recursive: true, force: true });
}
