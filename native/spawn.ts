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
import type { Readable } from "node:stream";
import { pidfdOpen, pidfdWait, pipe, reap, spawn, type ChildExit } from "./index.ts";

export type { ChildExit } from "./index.ts";

/** Per child fd: /dev/null, or a pipe whose read end the caller gets. */
export type StdioChoice = "ignore" | "pipe";

export interface SpawnOptions {
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Child fds 0, 1, 2, 3, ...; the child has no other fd. */
  stdio: readonly StdioChoice[];
}

export interface SpawnedChild {
  pid: number;
  /** By child fd: the read end of a "pipe" (ends once every holder of the write end closed it), undefined for "ignore". */
  outputs: (Readable | undefined)[];
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
  const readEnds: (number | undefined)[] = [];
  const writeEnds: number[] = [];
  const childFds: number[] = [];
  let pid: number;
  try {
    for (const choice of options.stdio) {
      if (choice === "ignore") {
        readEnds.push(undefined);
        childFds.push(-1);
        continue;
      }
      const [readEnd, writeEnd] = pipe();
      readEnds.push(readEnd);
      writeEnds.push(writeEnd);
      childFds.push(writeEnd);
    }
    pid = spawn(file, [file, ...args], environment(options.env ?? process.env), childFds);
  } catch (err) {
    for (const fd of readEnds) if (fd !== undefined) closeSync(fd);
    throw err;
  } finally {
    // The child holds its own copies: an output ends when the child (and what it started) closes them.
    for (const fd of writeEnds) closeSync(fd);
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
    for (const fd of readEnds) if (fd !== undefined) closeSync(fd);
    throw err;
  }
  let reaped = false;
  return {
    pid,
    outputs: readEnds.map((fd) => (fd === undefined ? undefined : new Socket({ fd, readable: true, writable: false }))),
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

/**
 * Runs `file` to its end with stdin from /dev/null, and collects its stdout and stderr
 * (as child_process.execFile does: settles once it has exited and both have ended). An
 * output beyond `maxBuffer` bytes kills it and rejects.
 */
export function runCollected(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; maxBuffer?: number } = {}): Promise<CollectedRun> {
  const maxBuffer = options.maxBuffer ?? 1024 * 1024;
  const child = spawnChild(file, args, { env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  let overflow: Error | undefined;
  const collect = (stream: Readable, name: string) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBuffer) {
          if (!overflow) {
            overflow = new RangeError(`${file}: ${name} exceeded ${maxBuffer} bytes`);
            child.kill("SIGKILL");
          }
          stream.destroy();
          return;
        }
        chunks.push(chunk);
      });
      stream.on("error", reject);
      stream.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
  return Promise.all([child.exited, collect(child.outputs[1]!, "stdout"), collect(child.outputs[2]!, "stderr")]).then(([exit, stdout, stderr]) => {
    if (overflow) throw overflow;
    return { exit, stdout, stderr };
  });
}
