// What the benchmarks that time commands share: a command's wall time (it must succeed),
// the median of the runs, the busybox image imported with the real ctr, and the report.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";

export interface Timed {
  label: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

/** Wall time of one run of `command`, in ms; a failing run fails the benchmark. */
export function wallMs({ label, command, args, env }: Timed): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(command, args, { encoding: "utf8", env, maxBuffer: 64 * 1024 * 1024 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr}`);
  return ms;
}

/** /proc/<pid>/stat's fields after the command name: [0] is the state (field 3). */
type StatFields = string[];
const cpuMsOf = (f: StatFields) => ((Number(f[11]) + Number(f[12])) * 1000) / 100;
/** Minor page faults (field 10): on a VM whose fresh pages the host must back, each costs. */
const minorFaultsOf = (f: StatFields) => Number(f[7]);

/** A number read off /proc/<pid>/stat for each process under `root` (itself included), keyed "pid name"; with `threads`, for each thread too ("pid name/tid thread"). */
function treeStat(root: number, pick: (fields: StatFields) => number, threads = false): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const name = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").find((a) => a.endsWith(".js")) ?? stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      out.set(`${pid} ${name.replace(/^.*\//, "")}`, pick(stat.slice(stat.lastIndexOf(")") + 2).split(" ")));
      if (threads)
        for (const task of readdirSync(`/proc/${pid}/task`)) {
          const t = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
          out.set(`${pid} ${name.replace(/^.*\//, "")}/${task} ${t.slice(t.indexOf("(") + 1, t.lastIndexOf(")"))}`, pick(t.slice(t.lastIndexOf(")") + 2).split(" ")));
        }
      for (const task of readdirSync(`/proc/${pid}/task`)) for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ").filter(Boolean)) walk(Number(child));
    } catch {
      // gone meanwhile
    }
  };
  walk(root);
  return out;
}

/** CPU ms (user+sys) of each process under `root` (itself included), keyed "pid name"; with `threads`, of each thread too ("pid name/tid thread"). */
export const treeCpuMs = (root: number, threads = false) => treeStat(root, cpuMsOf, threads);

/** Minor page faults of each process under `root` so far, keyed as treeCpuMs. */
export const treeMinorFaults = (root: number) => treeStat(root, minorFaultsOf);

/**
 * Polls until the processes under `root` used at most `quietMs` of CPU in each of two
 * 250 ms windows in a row: a daemon done with its start (warm-ups included), as one
 * that sits idle before its first call is. Throws after `timeoutMs`.
 */
export async function waitUntilIdle(root: number, quietMs = 20, timeoutMs = 15_000): Promise<void> {
  const total = () => [...treeCpuMs(root).values()].reduce((a, b) => a + b, 0);
  const deadline = Date.now() + timeoutMs;
  let last = total();
  let quiet = 0;
  while (quiet < 2) {
    if (Date.now() > deadline) throw new Error(`processes under pid ${root} still busy after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = total();
    quiet = now - last <= quietMs ? quiet + 1 : 0;
    last = now;
  }
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** busybox:latest imported by the real ctr into the default namespace of the daemon at `address`; its archive is written under `dir`. */
export async function importBusyboxWithCtr(address: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const archive = skopeoArchives(dir, await buildBusyboxImage(), "busybox:latest").dockerArchive;
  const imported = spawnSync("ctr", ["--address", address, "images", "import", archive], { encoding: "utf8" });
  if (imported.status !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
}

/** A bench's Markdown report: each line printed as it is written, the whole saved at the end. */
export class Report {
  private readonly lines: string[] = [];
  readonly out = (line = ""): void => {
    this.lines.push(line);
    process.stdout.write(`${line}\n`);
  };

  save(file: string): void {
    writeFileSync(file, `${this.lines.join("\n")}\n`);
  }
}
