// The engine's ends of an exec's stdio FIFOs, which the process's shim opens on its side:
// the engine reads stdout/stderr and writes stdin itself, so output reaches the client as
// it is produced and the stream can end exactly when the shim has drained everything.
import { constants, mkdirSync, openSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { mknod } from "../../../native/index.ts";

export function makeFifo(path: string): void {
  mknod(path, constants.S_IFIFO | 0o600);
}

/**
 * A FIFO's reading end. Opened O_NONBLOCK before the shim starts, so the open does not
 * wait for a writer and nothing the process writes early is lost; epoll reports EOF only
 * once a writer has come and gone, i.e. when the shim has closed its end.
 */
export class FifoReader {
  readonly socket: Socket;
  readonly ended: Promise<void>;

  constructor(path: string) {
    this.socket = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
    this.ended = new Promise((resolve) => {
      this.socket.once("end", resolve);
      this.socket.once("close", resolve);
      // A read error ends the output as EOF would; the exit status is still recorded.
      this.socket.once("error", () => resolve());
    });
  }

  /** For a process that never started: no writer will ever come, so EOF never would. */
  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A FIFO's writing end. O_RDWR so the open succeeds before the shim holds the reading end
 * (a plain O_WRONLY|O_NONBLOCK open fails with ENXIO then); this end is never read.
 */
export class FifoWriter {
  private readonly socket: Socket;
  private closed = false;

  constructor(path: string) {
    this.socket = new Socket({ fd: openSync(path, constants.O_RDWR | constants.O_NONBLOCK), readable: false, writable: true });
    // The shim gone (EPIPE cannot happen with our own reader open; anything else) ends stdin quietly.
    this.socket.on("error", () => this.destroy());
  }

  write(data: Buffer): boolean {
    if (this.closed || data.length === 0) return true;
    return this.socket.write(data);
  }

  onDrain(fn: () => void): void {
    this.socket.once("drain", fn);
  }

  /** Resolves once every byte written so far is in the FIFO (write callbacks run in order). */
  flushed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(Buffer.alloc(0), () => resolve()));
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }
}

/** A private directory for one exec's FIFOs; remove() takes it away with them. */
export class FifoDir {
  readonly path: string;
  constructor(parent: string, name: string) {
    mkdirSync(parent, { recursive: true, mode: 0o700 });
    this.path = join(parent, name);
    mkdirSync(this.path, { mode: 0o700 });
  }
  fifo(name: string): string {
    const path = join(this.path, name);
    makeFifo(path);
    return path;
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
