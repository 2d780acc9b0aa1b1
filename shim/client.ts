// The starter's side of berth-shim (see shim/README.md): builds its command line, waits for
// its verdict on the sync pipe, reads the state dir, sends control commands. The tasks
// service drives shims through this module.
import { closeSync, constants, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BerthError, invalidArgument, unavailable } from "../core/errors.ts";
import { isRunning } from "../core/process.ts";
import { pidfdOpen, pidfdWait } from "../native/index.ts";
import { spawnChild, type SpawnedChild } from "../native/spawn.ts";

export interface ShimOptions {
  /** The berth-shim executable. */
  binary: string;
  /** <run>/shims/<namespace>/<id>/ for an init, a sub dir of it for an exec; must exist. */
  stateDir: string;
  runc: string;
  runcRoot: string;
  /** The container id (for an exec too: the container it runs in). */
  id: string;
  /** The bundle, for a container's init. */
  bundle?: string;
  /** The process.json, for an exec. */
  execProcess?: string;
  terminal?: boolean;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  /** A file the output is appended to, as well as the FIFOs. */
  log?: string;
  /** raw (default): the bytes as they come; json: a JSON line per line of output, with stream and time. */
  logFormat?: "raw" | "json";
  env?: NodeJS.ProcessEnv;
}

export interface ShimStarted {
  /** The container process (init or exec) the shim owns. */
  pid: number;
  shimPid: number;
}

export interface ShimExit {
  pid: number;
  /** The exit code, or 128 + the signal that killed it (containerd's convention). */
  exitStatus: number;
  /** The signal that killed it, or 0. */
  signal: number;
  /** RFC 3339 with nanoseconds. */
  exitedAt: string;
}

export function shimArgs(options: ShimOptions): string[] {
  const args = ["--state-dir", options.stateDir, "--runc", options.runc, "--runc-root", options.runcRoot, "--id", options.id];
  const optional: [string, string | undefined][] = [
    ["--bundle", options.bundle],
    ["--exec", options.execProcess],
    ["--stdin", options.stdin],
    ["--stdout", options.stdout],
    ["--stderr", options.stderr],
    ["--log", options.log],
    ["--log-format", options.logFormat],
  ];
  for (const [flag, value] of optional) if (value) args.push(flag, value);
  if (options.terminal) args.push("--terminal");
  return args;
}

/**
 * Starts a shim and resolves once runc has created the process (or rejects with runc's
 * error). The shim is detached by then: it outlives this process. The caller runs
 * `runc start` for an init; an exec already runs.
 */
export function startShim(options: ShimOptions): Promise<ShimStarted> {
  return new Promise((resolve, reject) => {
    let child: SpawnedChild;
    try {
      // posix_spawn, not child_process: no copy of the starter's page tables per container.
      child = spawnChild(options.binary, [...shimArgs(options), "--sync-fd", "3"], { env: options.env, stdio: ["ignore", "ignore", "pipe", "pipe"] });
    } catch (err) {
      return reject(err);
    }
    let verdict = "";
    let stderr = "";
    let exitCode: number | null = null;
    let pending = 3; // the sync pipe's end, stderr's end, the exit
    const settle = () => {
      if (--pending > 0) return;
      const ok = /^ok (\d+)\n$/.exec(verdict);
      if (ok) {
        resolve({ pid: Number(ok[1]), shimPid: Number(readFileSync(join(options.stateDir, "shim.pid"), "utf8")) });
      } else if (verdict.startsWith("error ")) {
        const message = verdict.slice("error ".length).trimEnd();
        // Exit status 2: the shim refused its arguments before doing anything.
        reject(exitCode === 2 ? invalidArgument(`berth-shim: ${message}`) : new BerthError("unknown", `OCI runtime failed: ${message}`));
      } else {
        reject(unavailable(`berth-shim exited with status ${exitCode} and no verdict: ${stderr.trim() || "no output"}`));
      }
    };
    child.outputs[3]!.setEncoding("utf8").on("data", (text: string) => (verdict += text)).on("end", settle).on("error", reject);
    child.outputs[2]!.setEncoding("utf8").on("data", (text: string) => (stderr += text)).on("end", settle).on("error", reject);
    child.exited.then((exit) => {
      exitCode = exit.code;
      settle();
    }, reject);
  });
}

/**
 * The recorded exit, or undefined while the process runs (or the shim never started it).
 * The shim syncs `exit` only after renaming it into place, so a crash of the machine in
 * between can leave it empty: that counts as no record (the shim is gone, so the process
 * is lost), never as an error.
 */
export function readShimExit(stateDir: string): ShimExit | undefined {
  let text: string;
  try {
    text = readFileSync(join(stateDir, "exit"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return parseExitRecord(text);
}

export interface ShimOomRecord {
  /** The OOM kills the kernel counted in the init's memory cgroup while the init ran (≥ 1). */
  oomKills: number;
  /** RFC 3339 with nanoseconds: when the shim saw the last of them. */
  lastOomAt: string;
}

/**
 * The shim's `oom` record: written (atomically, before `exit`) once the kernel's OOM killer
 * killed a process in the init's memory cgroup, rewritten with the new count at each later
 * kill. Undefined when there was none (or the record is unreadable: a crash of the machine).
 */
export function readShimOom(stateDir: string): ShimOomRecord | undefined {
  let record: unknown;
  try {
    record = JSON.parse(readFileSync(join(stateDir, "oom"), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || error instanceof SyntaxError) return undefined;
    throw error;
  }
  const oom = record as Partial<ShimOomRecord> | null;
  const complete = typeof oom === "object" && oom !== null && Number.isInteger(oom.oomKills) && oom.oomKills! > 0 && typeof oom.lastOomAt === "string";
  return complete ? (oom as ShimOomRecord) : undefined;
}

function parseExitRecord(text: string): ShimExit | undefined {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return undefined;
  }
  const exit = record as Partial<ShimExit> | null;
  const complete =
    typeof exit === "object" && exit !== null &&
    typeof exit.pid === "number" && typeof exit.exitStatus === "number" && typeof exit.signal === "number" && typeof exit.exitedAt === "string";
  return complete ? (exit as ShimExit) : undefined;
}

export type ShimState =
  | { state: "running"; shimPid: number; /** undefined until runc has created the process */ pid: number | undefined }
  | { state: "exited"; exit: ShimExit }
  | { state: "lost"; reason: string };

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// The pid is this state dir's shim only if its command line says so (pids get reused).
function isShimOf(pid: number, stateDir: string): boolean {
  if (!isRunning(pid)) return false;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return false;
  }
  const at = argv.indexOf("--state-dir");
  return /(^|\/)berth-shim[^/]*$/.test(argv[0] ?? "") && at > 0 && argv[at + 1] === stateDir;
}

/**
 * What a state dir says about its process, for a daemon that did not start the shim (after
 * a restart): exited (with the recorded status), running (its shim is alive), or lost (the
 * shim died without recording an exit, e.g. killed with SIGKILL).
 */
export function inspectShimState(stateDir: string): ShimState {
  const exit = readShimExit(stateDir);
  if (exit) return { state: "exited", exit };
  const shimPid = readPid(join(stateDir, "shim.pid"));
  if (shimPid !== undefined && isShimOf(shimPid, stateDir)) {
    return { state: "running", shimPid, pid: readPid(join(stateDir, "pid")) };
  }
  // The shim may have recorded the exit and gone between the two reads.
  const late = readShimExit(stateDir);
  if (late) return { state: "exited", exit: late };
  return { state: "lost", reason: shimPid === undefined ? "no shim.pid in the state dir" : `shim ${shimPid} is gone and recorded no exit` };
}

/**
 * Resolves once the shim of this state dir has gone, with what the dir then says: exited
 * (the usual case) or lost. Works for a shim this process did not start (after a restart):
 * it waits on a pidfd, not as a parent. The shim leaves after draining the output, so the
 * exit file can appear earlier; watch the dir for `exit` to learn of the exit sooner.
 */
export async function waitForShim(stateDir: string): Promise<ShimState> {
  const state = inspectShimState(stateDir);
  if (state.state !== "running") return state;
  let fd: number;
  try {
    fd = pidfdOpen(state.shimPid);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return inspectShimState(stateDir);
    throw error;
  }
  try {
    // The pid could have been reused between the check and pidfd_open: check again, now pinned.
    if (inspectShimState(stateDir).state === "running") await pidfdWait(fd);
  } finally {
    closeSync(fd);
  }
  return inspectShimState(stateDir);
}

/**
 * Resolves once shim `shimPid` of this state dir has gone (at once if it has), or after
 * `timeoutMs`. The shim still uses its state dir after recording the exit (it syncs the
 * file, drains the output, removes its FIFO), so whoever removes the dir waits for this
 * first; bounded, because output that no client reads keeps a shim waiting for one.
 */
export async function shimGone(stateDir: string, shimPid: number, timeoutMs = 2000): Promise<void> {
  let fd: number;
  try {
    fd = pidfdOpen(shimPid);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return;
    throw error;
  }
  try {
    // Pinned by the pidfd now: a reused pid is not this dir's shim.
    if (isShimOf(shimPid, stateDir)) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      // pidfdWait polls a duplicate of fd: closing fd below does not cancel it.
      await Promise.race([pidfdWait(fd), timedOut]).finally(() => clearTimeout(timer));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Sends one control command ("resize <cols> <rows>", "close-stdin", "reopen-log").
 * O_NONBLOCK: with no shim reading, opening fails with ENXIO instead of hanging.
 */
export function sendShimCommand(stateDir: string, command: string): void {
  if (command.includes("\n")) throw invalidArgument(`shim command ${JSON.stringify(command)} must be one line`);
  let fd: number;
  try {
    fd = openSync(join(stateDir, "control"), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENXIO" || code === "ENOENT") throw unavailable(`the shim in ${stateDir} is not running`);
    throw error;
  }
  try {
    // One write below PIPE_BUF: never interleaved with another client's command.
    writeSync(fd, `${command}\n`);
  } finally {
    closeSync(fd);
  }
}
