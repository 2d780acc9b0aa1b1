// A container's output is complete once its shim has exited: the shim writes the exit
// file when the process is reaped, but leaves only after writing all output to the log.
import { closeSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pidfdOpen, pidfdWait } from "../../../native/index.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the shim of a state dir has exited: by then it has written all the output to the log. */
export async function shimGone(dir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, "shim.pid"), "utf8").trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  let fd: number;
  try {
    fd = pidfdOpen(pid);
  } catch {
    return; // ESRCH: gone already
  }
  try {
    // Pinned by the pidfd now: make sure the pid is still this dir's shim, not a reuse.
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return;
    }
    if (!cmdline.split("\0").includes(dir)) return;
    await Promise.race([pidfdWait(fd), sleep(10_000)]);
  } finally {
    closeSync(fd);
  }
}
