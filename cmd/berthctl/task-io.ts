// A task's stdio on the client side, as ctr does it: FIFOs in a directory of their own,
// named in the Create/Exec request, which the shim opens; this process relays them to
// its own stdin/stdout/stderr. The FIFOs outlive a detached client, so `tasks attach`
// can open them again later; deleting the task removes them.
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import { basename, dirname, join } from "node:path";
import { mknod } from "../../native/index.ts";
import { CommandError } from "./output.ts";

export interface TaskIo {
  stdin: string;
  stdout: string;
  /** "" with a terminal: the pty carries both streams. */
  stderr: string;
  terminal: boolean;
}

/** ctr's default; tests and benchmarks point --fifo-dir at their own directories. */
export const defaultFifoDir = "/run/berth/fifo";

const fifoMode = 0o010000 | 0o600; // S_IFIFO, owner only

/** A new directory under `root` with `<id>-stdin`, `<id>-stdout` (and `<id>-stderr` without a terminal). */
export function createFifos(root: string, id: string, terminal: boolean): TaskIo {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(join(root, "/"));
  try {
    const io = {
      stdin: join(dir, `${id}-stdin`),
      stdout: join(dir, `${id}-stdout`),
      stderr: terminal ? "" : join(dir, `${id}-stderr`),
      terminal,
    };
    for (const path of [io.stdin, io.stdout, io.stderr]) if (path) mknod(path, fifoMode);
    return io;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new CommandError(`cannot create the FIFOs for ${id} in ${root}: ${(err as Error).message}`);
  }
}

/** Removes the FIFO directory of `io`, if its paths are FIFOs a client of ours made (`<dir>/<id>-stdout`). */
export function removeFifos(io: { stdout: string }, id: string): void {
  if (!io.stdout || basename(io.stdout) !== `${id}-stdout`) return;
  rmSync(dirname(io.stdout), { recursive: true, force: true });
}

export interface Attachment {
  /** Resolves once every output stream has ended (the shim closed its end after draining). */
  outputDone: Promise<void>;
  /**
   * Lets go of the placeholder writers that keep the output FIFOs from reading as ended
   * before the shim has opened them; call it once the shim runs (after Create or Start).
   */
  shimOpened(): void;
  /** Stops relaying (detach): this process may exit while the task runs on. */
  close(): void;
}

export interface AttachOptions {
  /** Relay this process's stdin to the task; `stdinEnded` runs once it is all written. */
  stdin?: { stdinEnded: () => void };
}

/** A FIFO opened without blocking, as a stream on libuv's pipe handle (epoll, not the thread pool). */
function fifoStream(path: string, flags: number, readable: boolean): { socket: Socket } {
  const fd = openSync(path, flags | constants.O_NONBLOCK);
  // Half-open: a write-only stream must not end itself because it has nothing to read.
  return { socket: new Socket({ fd, readable, writable: !readable, allowHalfOpen: true }) };
}

export function attachIo(io: TaskIo, options: AttachOptions = {}): Attachment {
  const placeholders: number[] = [];
  let opened!: () => void;
  const shimHasOpened = new Promise<void>((resolve) => (opened = resolve));
  const sockets: Socket[] = [];
  const ended: Promise<void>[] = [];
  const output = (path: string, sink: NodeJS.WriteStream) => {
    if (!path) return;
    // A reader on a FIFO with no writer reads end-of-file at once; this writer stands in
    // until the shim has its end open (it holds it until its output is drained).
    const { socket } = fifoStream(path, constants.O_RDONLY, true);
    placeholders.push(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
    sockets.push(socket);
    socket.pipe(sink, { end: false });
    ended.push(new Promise((resolve) => socket.once("close", () => resolve())));
  };
  output(io.stdout, process.stdout);
  output(io.stderr, process.stderr);
  if (options.stdin && io.stdin) {
    // Read-write: opening never waits for the shim, and writes never hit a FIFO without a reader.
    const { socket } = fifoStream(io.stdin, constants.O_RDWR, false);
    sockets.push(socket);
    const stdinEnded = options.stdin.stdinEnded;
    // Not end(): shutting a FIFO down closes our fd at once, and a FIFO's contents are
    // dropped when its last fd closes. Ours stays open until the shim holds its end and
    // everything is written; then the shim is told to close the process's stdin.
    process.stdin.pipe(socket, { end: false });
    process.stdin.once("end", () =>
      socket.write(Buffer.alloc(0), () =>
        void shimHasOpened.then(() => {
          socket.destroy();
          stdinEnded();
        }),
      ),
    );
  }
  const shimOpened = () => {
    for (const fd of placeholders.splice(0)) closeSync(fd);
    opened();
  };
  return {
    outputDone: Promise.all(ended).then(() => undefined),
    shimOpened,
    close() {
      shimOpened();
      process.stdin.unpipe();
      process.stdin.pause();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** The local terminal in raw mode while a `-t` task runs; returns the restore. */
export function rawTerminal(): () => void {
  if (!process.stdin.isTTY) return () => undefined;
  process.stdin.setRawMode(true);
  return () => process.stdin.setRawMode(false);
}

/** Calls `resize` with the local terminal's size now and at each change. */
export function followTerminalSize(resize: (width: number, height: number) => void): () => void {
  if (!process.stdout.isTTY) return () => undefined;
  const send = () => resize(process.stdout.columns, process.stdout.rows);
  send();
  process.stdout.on("resize", send);
  return () => process.stdout.off("resize", send);
}

// What ctr forwards to a task it waits on without a terminal (a terminal sends keys instead).
const forwarded: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"];

/** Forwards this process's signals to the task until the returned function is called. */
export function forwardSignals(kill: (signal: NodeJS.Signals) => void): () => void {
  const handlers = forwarded.map((signal) => [signal, () => kill(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
