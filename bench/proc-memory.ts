// Memory of a process tree, from /proc/<pid>/smaps_rollup: private memory (USS =
// Private_Clean + Private_Dirty) and the proportional set size (PSS).
import { readFileSync } from "node:fs";

export interface ProcessMemory {
  pid: number;
  name: string;
  ussKiB: number;
  pssKiB: number;
}

function field(rollup: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(rollup);
  return m ? Number(m[1]) : 0;
}

export function processMemory(pid: number, name: string): ProcessMemory {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  return {
    pid,
    name,
    ussKiB: field(rollup, "Private_Clean") + field(rollup, "Private_Dirty"),
    pssKiB: field(rollup, "Pss"),
  };
}

/** A short name for a process: the bundle it runs (dist/<name>.js) or its command. */
export function processName(pid: number): string {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return String(pid); // it exited between the listing and this read
  }
  const bundle = argv.find((a) => /\/dist\/[^/]+\.js$/.test(a));
  if (bundle) return bundle.replace(/^.*\/dist\/(.*)\.js$/, "$1");
  // redis-server rewrites its title to "redis-server unixsocket:…": keep the command
  return (argv[0] ?? String(pid)).split(" ")[0]!.replace(/^.*\//, "");
}

export const mib = (kib: number) => (kib / 1024).toFixed(1);
