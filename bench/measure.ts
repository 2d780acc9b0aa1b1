// What the benchmarks that time commands share: a command's wall time (it must succeed),
// the median of the runs, the busybox image imported with the real ctr, and the report.
import { mkdirSync, writeFileSync } from "node:fs";
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
