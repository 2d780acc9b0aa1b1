// The hijacked streams of attach, run and exec: output is raw bytes for a TTY and
// 8-byte-framed (stdout/stderr) otherwise; input is never framed. Local stdin ends with a
// half-close (socket.end()), which the engine reads as stdin EOF, not as a detach. With a
// TTY the local terminal goes raw, resizes follow SIGWINCH, and ctrl-p ctrl-q detaches.
import { spawnSync } from "node:child_process";
import type { Socket } from "node:net";

/** Splits Docker's framed stream into stdout and stderr, whatever the chunk boundaries. */
export class Demuxer {
  private pending: Buffer = Buffer.alloc(0);
  private readonly stdout: NodeJS.WritableStream;
  private readonly stderr: NodeJS.WritableStream;

  constructor(stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream) {
    this.stdout = stdout;
    this.stderr = stderr;
  }

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 8) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + size) break;
      const payload = this.pending.subarray(8, 8 + size);
      // 2 is stderr, 3 the daemon's own error text (newer daemons); 0 and 1 go to stdout.
      (this.pending[0] === 2 || this.pending[0] === 3 ? this.stderr : this.stdout).write(payload);
      this.pending = this.pending.subarray(8 + size);
    }
  }
}

export interface SessionOptions {
  socket: Socket;
  head: Buffer;
  tty: boolean;
  /** Whether local stdin is sent; without it the write side is closed at once. */
  stdin: boolean;
}

export type SessionEnd = "ended" | "detached";

const ctrlP = 0x10;
const ctrlQ = 0x11;

/** The terminal size as the resize endpoints take it, if stdout is a terminal. */
export function terminalSize(): { h: number; w: number } | undefined {
  const out = process.stdout;
  return out.isTTY && out.rows && out.columns ? { h: out.rows, w: out.columns } : undefined;
}

/** Wires the hijacked socket to the local terminal until the engine ends the stream (or the user detaches). */
export function runSession({ socket, head, tty, stdin }: SessionOptions): { done: Promise<SessionEnd> } {
  const demux = tty ? undefined : new Demuxer(process.stdout, process.stderr);
  const output = (chunk: Buffer) => (demux ? demux.push(chunk) : process.stdout.write(chunk));
  const input = process.stdin;
  const raw = tty && stdin && input.isTTY;
  let finished = false;
  let resolveDone!: (end: SessionEnd) => void;
  const done = new Promise<SessionEnd>((resolve) => (resolveDone = resolve));
  const finish = (end: SessionEnd) => {
    if (finished) return;
    finished = true;
    if (raw) input.setRawMode(false);
    input.pause();
    resolveDone(end);
  };

  if (head.length) output(head);
  socket.on("data", output);
  // The client paused it after the 101, so nothing was read before this listener existed.
  socket.resume();
  socket.once("end", () => finish("ended"));
  socket.once("close", () => finish("ended"));
  socket.on("error", () => finish("ended"));

  const relayStdin = () => {
    if (raw) {
      input.setRawMode(true);
      // libuv's raw mode keeps output processing (ONLCR), so the container's \r\n would
      // reach the screen as \r\r\n; a real raw terminal has none. setRawMode(false)
      // restores the terminal as it was before either change.
      spawnSync("stty", ["-opost"], { stdio: ["inherit", "ignore", "ignore"] });
    }
    let heldCtrlP = false;
    // Backpressure: stdin is read only as fast as the engine takes it, as docker's
    // blocking copy does (the engine holds early stdin until the container starts).
    const send = (bytes: Buffer) => {
      if (!socket.write(bytes)) {
        input.pause();
        socket.once("drain", () => input.resume());
      }
    };
    input.on("data", (chunk: Buffer) => {
      if (!tty) {
        send(chunk);
        return;
      }
      // ctrl-p ctrl-q detaches; a ctrl-p followed by anything else is sent as typed.
      const bytes: number[] = [];
      for (const byte of chunk) {
        if (heldCtrlP) {
          heldCtrlP = false;
          if (byte === ctrlQ) {
            socket.destroy();
            finish("detached");
            return;
          }
          bytes.push(ctrlP);
        }
        if (byte === ctrlP) heldCtrlP = true;
        else bytes.push(byte);
      }
      if (bytes.length) send(Buffer.from(bytes));
    });
    input.once("end", () => {
      if (!finished) socket.end();
    });
    input.resume();
  };
  if (!stdin) socket.end();
  else relayStdin();
  return { done };
}

/** Sends the terminal size now and on every SIGWINCH; returns the function that stops that. */
export function followResize(resize: (size: { h: number; w: number }) => Promise<unknown>): () => void {
  const send = () => {
    const size = terminalSize();
    if (size) resize(size).catch(() => undefined);
  };
  send();
  process.on("SIGWINCH", send);
  return () => process.off("SIGWINCH", send);
}
