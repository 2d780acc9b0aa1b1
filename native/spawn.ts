// Children started with posix_spawn (native/index.ts spawn) instead of child_process,
// for the tasks process, which runs runc and berth-shim for every container step
// (create, start, delete): child_process forks, which copies the page tables of the
// whole Node process and leaves its memory write-protected until the child has exec'd
// (measured from a Node process of 43 MB RSS: fork + exec + wait of /bin/true 1.16 ms,
// posix_spawn 0.62 ms; more as the heap grows). The exit is learned through a pidfd on
// the event loop, and output through pipes read as sockets.
import { closeSync } from "node:fs";
import { Socket } from "node:net";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { pidfdOpen, pidfdWait, pipe, reap, spawn, type ChildExit } from "./index.ts";

export type { ChildExit } from "./index.ts";

/** Per child fd: /dev/null, a pipe whose read end the caller gets ("pipe"), or one whose write end it gets ("input"). */
export type StdioChoice = "ignore" | "pipe" | "input";

export interface SpawnOptions {
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Child fds 0, 1, 2, 3, ...; the child has no other fd. */
  stdio: readonly StdioChoice[];
}

export interface SpawnedChild {
  pid: number;
  /** By child fd: the read end of a "pipe" (ends once every holder of the write end closed it), undefined otherwise. */
  outputs: (Readable | undefined)[];
  /** By child fd: the write end of an "input" (the child reads what is written, then end of file once it is ended), undefined otherwise. */
  inputs: (Writable | undefined)[];
  /** Settles once the child has exited (and has been reaped). */
  exited: Promise<ChildExit>;
  /** Signals the child unless it has been reaped (its pid may then be another process's). */
  kill(signal: NodeJS.Signals): void;
}

function environment(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out.push(`${key}=${value}`);
  return out;
}

const signalNames = new Map(Object.entries(constants.signals).map(([name, number]) => [number as number, name]));

/** "exit status 3" or "signal SIGKILL": how a child ended, for messages. */
export function describeExit(exit: ChildExit): string {
  return exit.code !== null ? `exit status ${exit.code}` : `signal ${signalNames.get(exit.signal) ?? exit.signal}`;
}

/** Starts `file` (looked up in PATH when it has no "/") with `args`. Throws when it cannot be run (ENOENT, EACCES). */
export function spawnChild(file: string, args: readonly string[], options: SpawnOptions): SpawnedChild {
  /** By child fd: the end this process keeps, and which way it goes. */
  const kept: ({ fd: number; input: boolean } | undefined)[] = [];
  /** The child's ends: closed here once it has its copies. */
  const given: number[] = [];
  const childFds: number[] = [];
  let pid: number;
  try {
    for (const choice of options.stdio) {
      if (choice === "ignore") {
        kept.push(undefined);
        childFds.push(-1);
        continue;
      }
      const [readEnd, writeEnd] = pipe();
      const input = choice === "input";
      kept.push({ fd: input ? writeEnd : readEnd, input });
      given.push(input ? readEnd : writeEnd);
      childFds.push(input ? readEnd : writeEnd);
    }
    pid = spawn(file, [file, ...args], environment(options.env ?? process.env), childFds);
  } catch (err) {
    for (const end of kept) if (end) closeSync(end.fd);
    throw err;
  } finally {
    // The child holds its own copies: an output ends when the child (and what it started) closes them.
    for (const fd of given) closeSync(fd);
  }
  let exited: Promise<void>;
  try {
    const pidfd = pidfdOpen(pid);
    try {
      exited = pidfdWait(pidfd); // waits on a duplicate
    } finally {
      closeSync(pidfd);
    }
  } catch (err) {
    // Nothing would ever collect it: end it here rather than leave it running unreaped.
    process.kill(pid, "SIGKILL");
    reap(pid, true);
    for (const end of kept) if (end) closeSync(end.fd);
    throw err;
  }
  let reaped = false;
  return {
    pid,
    outputs: kept.map((end) => (end && !end.input ? new Socket({ fd: end.fd, readable: true, writable: false }) : undefined)),
    inputs: kept.map((end) => (end?.input ? new Socket({ fd: end.fd, readable: false, writable: true }) : undefined)),
    // The pidfd is readable once the child is a zombie: the blocking wait returns at once.
    exited: exited.then(() => {
      reaped = true;
      return reap(pid, true)!;
    }),
    kill(signal) {
      if (!reaped) process.kill(pid, signal);
    },
  };
}

export interface CollectedRun {
  exit: ChildExit;
  stdout: string;
  stderr: string;
}

/** A child that ran longer than runCollected's `timeoutMs` (it was killed). */
export class ChildTimeoutError extends Error {
  override name = "ChildTimeoutError";
}

/**
 * Runs `file` to its end with stdin from /dev/null (or `input`, then end of file), and
 * collects its stdout and stderr (as child_process.execFile does: settles once it has
 * exited and both have ended). An output beyond `maxBuffer` bytes kills it and rejects,
 * and so does a run longer than `timeoutMs`.
 */
export function runCollected(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; maxBuffer?: number; input?: string | Buffer; timeoutMs?: number } = {}): Promise<CollectedRun> {
  const maxBuffer = options.maxBuffer ?? 1024 * 1024;
  const child = spawnChild(file, args, { env: options.env, stdio: [options.input === undefined ? "ignore" : "input", "pipe", "pipe"] });
  let failure: Error | undefined;
  const stop = (err: Error) => {
    if (failure) return;
    failure = err;
    child.kill("SIGKILL");
  };
  const stdin = child.inputs[0];
  // Settled once the pipe's end here is closed too: a caller that sees the result has no fd of this run left.
  const inputClosed = new Promise<void>((resolve) => {
    if (!stdin) return resolve();
    // A child that exits before reading all of it closes the pipe under us: its exit status tells.
    stdin.on("error", () => {});
    stdin.on("close", () => resolve());
    stdin.end(options.input);
  });
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => stop(new ChildTimeoutError(`${file}: still running after ${options.timeoutMs} ms, killed`)), options.timeoutMs);
  const collect = (stream: Readable, name: string) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBuffer) {
          stop(new RangeError(`${file}: ${name} exceeded ${maxBuffer} bytes`));
          stream.destroy();
          return;
        }
        chunks.push(chunk);
      });
      stream.on("error", reject);
      stream.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
  return Promise.all([child.exited, collect(child.outputs[1]!, "stdout"), collect(child.outputs[2]!, "stderr"), inputClosed])
    .finally(() => clearTimeout(timer))
    .then(([exit, stdout, stderr]) => {
      if (failure) throw failure;
      return { exit, stdout, stderr };
    });
}

/** A child that ended other than with exit status 0: what it printed is kept for the caller's message. */
export class ChildFailedError extends Error {
  override name = "ChildFailedError";
  readonly exit: ChildExit;
  readonly stdout: string;
  readonly stderr: string;
  constructor(file: string, run: CollectedRun) {
    super(`${file}: ${describeExit(run.exit)}${run.stderr.trim() ? `: ${run.stderr.trim()}` : ""}`);
    this.exit = run.exit;
    this.stdout = run.stdout;
    this.stderr = run.stderr;
  }
}

/**
 * runCollected for a command that must succeed (as promisify(execFile) is used): its output
 * when it exits 0, else a ChildFailedError with its `stderr`. Short commands a busy engine
 * runs (ip, iptables, unshare, CNI plugins) go through here: a fork of the engine's
 * process blocked its event loop 4–5 ms per exec while building.
 */
export async function execChecked(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  const run = await runCollected(file, args, options);
  if (run.exit.code !== 0) throw new ChildFailedError(file, run);
  return { stdout: run.stdout, stderr: run.stderr };
}
