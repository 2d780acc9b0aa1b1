// node bench/build-phases.ts: where a Berth build's time goes, seen from the docker CLI.
// The Dockerfile of bench/build.ts built by the real `docker build` (DOCKER_BUILDKIT=0,
// not quiet) against Berth only; each line of the stream is stamped as it arrives, and
// each phase is the time from one landmark line to the next: "start" (CLI start, context
// upload and extraction, up to Step 1), each step (its Step line to the next one),
// "built" (last step's id to Successfully built), "tagged", "exit" (to the CLI's exit).
// Scenarios: cold (--no-cache), cached, one of the 200 files changed (SCENARIOS picks).
// With AB_DIST=<a dist directory> a second daemon runs from that build (e.g. main's), and
// both are measured in the same rounds. ROUNDS (5) sets the runs; medians are printed.
// BUILD_ARGS adds arguments to every `docker build` (e.g. `--network=host`, to see what
// the RUN steps' network costs).
// Both daemons run with BERTH_BUILD_TRACE (services/engine/build/trace.ts): the engines'
// own marks are printed too, each the median of its position (the other daemon's beside
// this one's when their marks line up; its own list when its dist marks other phases).
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, type Daemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { median } from "./measure.ts";
import { changeOneFile, writeBenchContext } from "./build-context.ts";

const rounds = Number(process.env.ROUNDS ?? 5);
const scenarios = (process.env.SCENARIOS ?? "changed,cached,cold").split(",");
const base = mkdtempSync(join(tmpdir(), "berth-build-phases-"));

/** One build through the CLI: each phase's ms, in stream order. */
function timedBuild(d: Daemon, context: string, args: string[]): Promise<[string, number][]> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const since = () => Number(process.hrtime.bigint() - started) / 1e6;
    const child = spawn("docker", ["build", ...args, "-t", "bench:latest", context], {
      env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(base, "cfg"), DOCKER_BUILDKIT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const marks: [string, number][] = [];
    let pending = "";
    let stderr = "";
    let step = "start";
    let last = 0;
    const mark = (next: string) => {
      const now = since();
      marks.push([step, now - last]);
      last = now;
      step = next;
    };
    child.stdout.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const stepLine = /^Step (\d+)\/\d+ : (\S+)/.exec(line);
        if (stepLine) mark(`${stepLine[1]} ${stepLine[2]}`);
        else if (line.startsWith("Successfully built")) mark("tagged");
        else if (line.startsWith("Successfully tagged")) mark("exit");
        else if (/^ ---> [0-9a-f]{12}$/.test(line) && step.startsWith("8 ")) mark("built");
      }
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`docker build failed (${code}): ${stderr}`));
      mark("");
      resolve(marks);
    });
  });
}

const daemons: [string, Daemon][] = [];
try {
  mkdirSync(join(base, "archives"));
  const archive = readFileSync(skopeoArchives(join(base, "archives"), await buildBusyboxImage()).dockerArchive);
  const traceFiles = { this: join(base, "trace-this.jsonl"), other: join(base, "trace-other.jsonl") };
  daemons.push(["this", await startDaemon({ base: join(base, "this"), env: { BERTH_BUILD_TRACE: traceFiles.this } })]);
  /**
   * An engine's traces of the `builds` builds since the last call. A trace is appended as
   * the reply ends, maybe after the CLI has exited: polled for (up to 2 s) so that no
   * build's trace is counted with the next round's.
   */
  const traces = async (name: "this" | "other", builds: number) => {
    const file = traceFiles[name];
    const read = () => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
    for (let waited = 0; read().length < builds && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    const lines = read();
    rmSync(file, { force: true });
    return lines.map((line) => JSON.parse(line) as [string, number][]);
  };
  if (process.env.AB_DIST) {
    const launcher = join(base, "launch-other");
    writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${join(process.env.AB_DIST, "berthd.js")} "$@"\n`);
    chmodSync(launcher, 0o755);
    daemons.push(["other", await startDaemon({ base: join(base, "other"), launcher, env: { BERTH_BUILD_TRACE: traceFiles.other } })]);
  }
  for (const [, d] of daemons) {
    const r = d.docker(["load", "-q"], archive);
    if (r.code !== 0) throw new Error(`docker load: ${r.stderr}`);
  }
  const context = writeBenchContext(base);

  for (const [, d] of daemons) await timedBuild(d, context, []);
  await traces("this", 1);
  if (daemons.length > 1) await traces("other", 1);
  console.log(`load ${loadavg()[0]!.toFixed(2)} before`);
  let edits = 0;
  for (const scenario of scenarios) {
    const args = [...(scenario === "cold" ? ["--no-cache"] : []), ...(process.env.BUILD_ARGS ? process.env.BUILD_ARGS.split(" ") : [])];
    const phases = new Map(daemons.map(([name]) => [name, new Map<string, number[]>()]));
    const totals = new Map(daemons.map(([name]) => [name, [] as number[]]));
    for (let i = 0; i < rounds; i++) {
      if (scenario === "changed") changeOneFile(context, `edit ${++edits} ${Date.now()}\n`);
      for (const [name, d] of daemons) {
        const marks = await timedBuild(d, context, args);
        for (const [phase, ms] of marks) phases.get(name)!.set(phase, [...(phases.get(name)!.get(phase) ?? []), ms]);
        totals.get(name)!.push(marks.reduce((n, [, ms]) => n + ms, 0));
      }
    }
    console.log(`\n${scenario} (median of ${rounds}, ms)`);
    const names = [...phases.get(daemons[0]![0])!.keys()];
    console.log(["phase".padEnd(12), ...daemons.map(([name]) => name.padStart(8))].join(" "));
    for (const phase of names) console.log([phase.padEnd(12), ...daemons.map(([name]) => median(phases.get(name)!.get(phase) ?? [0]).toFixed(0).padStart(8))].join(" "));
    console.log(["total".padEnd(12), ...daemons.map(([name]) => median(totals.get(name)!).toFixed(0).padStart(8))].join(" "));
    for (const [name] of daemons) console.log(`  ${name} totals: ${totals.get(name)!.map((x) => x.toFixed(0)).join(" ")}`);
    const engine = await traces("this", rounds);
    const other = daemons.length > 1 ? await traces("other", rounds) : [];
    const phasesOf = (t: [string, number][][]) => (t[0] ?? []).map(([phase]) => phase.replace(/\d+/g, "#")).join("|");
    const lined = other.length > 0 && phasesOf(other) === phasesOf(engine);
    const show = (label: string, list: [string, number][][], beside?: [string, number][][]) => {
      if (list.length === 0) return;
      console.log(`  engine marks (${label}):`);
      for (const [i, [phase]] of list[0]!.entries()) {
        const values = list.map((t) => t[i]?.[1] ?? 0);
        const names = [...new Set(list.map((t) => t[i]?.[0]))];
        const next = beside ? ` ${median(beside.map((t) => t[i]?.[1] ?? 0)).toFixed(1).padStart(7)}` : "";
        console.log(`  ${phase.padEnd(20)} ${median(values).toFixed(1).padStart(7)}${next}   (${values.map((v) => v.toFixed(0)).join(" ")})${names.length > 1 ? ` ${names.join(", ")}` : ""}`);
      }
    };
    show(lined ? "this, other" : "this", engine, lined ? other : undefined);
    if (!lined) show("other", other);
    // The engine's own time per build from the job's start (the upload and the queue left
    // out, both noisy at load): the median of the per-build sums, not a sum of medians.
    const afterStart = (t: [string, number][]) => t.filter(([phase]) => !["context", "plan", "job started"].includes(phase)).reduce((n, [, ms]) => n + ms, 0);
    for (const [label, list] of [["this", engine], ["other", other]] as const) {
      if (list.length > 0) console.log(`  engine after job start (${label}): median ${median(list.map(afterStart)).toFixed(1)}   (${list.map((t) => afterStart(t).toFixed(0)).join(" ")})`);
    }
  }
  console.log(`load ${loadavg()[0]!.toFixed(2)} after`);
} finally {
  for (const [, d] of daemons) await d.destroy();
  rmSync(base, { recursive: true, force: true });
}
