// What the engine knows about a container only while it runs (never stored): the
// promises waiters and attached streams hang on, the stdin FIFO's writer, a pending
// restart, and flags that keep two operations from stepping on each other.
import { EventEmitter } from "node:events";
import { constants, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { Socket } from "node:net";
import { mknod } from "../../../native/index.ts";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";

export interface RunEnd {
  exitCode: number;
}

export class ContainerRuntime {
  readonly id: string;
  /** "exit" (RunEnd) when a run ends and is recorded; "removed" (RunEnd) when the container is gone. */
  readonly events = new EventEmitter();
  watching = false;
  starting = false;
  removing = false;
  /** The client half-closed stdin before the task existed: close it once it does. */
  closeStdinAfterStart = false;
  restartTimer: NodeJS.Timeout | undefined;
  /** The next restart's delay (doubles while runs keep failing fast). */
  restartDelayMs = 100;
  /** This run's `oom` event is out (from containerd's /tasks/oom, or the shim's record at the exit). */
  oomAnnounced = false;
  private stdin: Socket | undefined;
  private preparedMounts: Mount[] | undefined;

  constructor(id: string) {
    this.id = id;
    this.events.setMaxListeners(0);
  }

  /** The rootfs mounts create was given, kept for the start that usually follows at once. */
  prepareMounts(mounts: Mount[]): void {
    this.preparedMounts = mounts;
  }

  takePreparedMounts(): Mount[] | undefined {
    const mounts = this.preparedMounts;
    this.preparedMounts = undefined;
    return mounts;
  }

  /** Resolves at the end of the next run (or at removal), with its exit code. */
  nextEnd(): { promise: Promise<RunEnd>; cancel(): void } {
    let cancel = () => {};
    const promise = new Promise<RunEnd>((resolve) => {
      const onEnd = (end: RunEnd) => {
        cancel();
        resolve(end);
      };
      this.events.on("exit", onEnd).on("removed", onEnd);
      cancel = () => this.events.off("exit", onEnd).off("removed", onEnd);
    });
    return { promise, cancel };
  }

  /** Resolves when the container is removed, with its last exit code. */
  removal(): { promise: Promise<RunEnd>; cancel(): void } {
    let cancel = () => {};
    const promise = new Promise<RunEnd>((resolve) => {
      const onRemoved = (end: RunEnd) => resolve(end);
      this.events.once("removed", onRemoved);
      cancel = () => this.events.off("removed", onRemoved);
    });
    return { promise, cancel };
  }

  /**
   * The writing end of the stdin FIFO, opened read-write so writes never fail for want of
   * a reader: bytes sent before the task exists wait in the pipe until the shim opens it.
   * It stays open for the whole run (closing it first would drop what the pipe holds).
   */
  stdinWriter(fifo: string): Socket {
    if (this.stdin && !this.stdin.destroyed) return this.stdin;
    ensureFifo(fifo);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    this.stdin = new Socket({ fd, readable: false, writable: true });
    this.stdin.on("error", () => undefined);
    return this.stdin;
  }

  /**
   * Waits until what was written to stdin is in the pipe. Not by 'drain': a stream emits it
   * only after a write() returned false, so bytes queued below the high-water mark would
   * never announce their flush. Writes complete in order, so an empty write's callback
   * runs once everything before it has reached the FIFO.
   */
  async stdinFlushed(): Promise<void> {
    const s = this.stdin;
    if (!s || s.destroyed || s.writableLength === 0) return;
    await new Promise<void>((resolve) => {
      s.once("close", resolve);
      s.write(Buffer.alloc(0), () => {
        s.off("close", resolve);
        resolve();
      });
    });
  }

  closeStdinWriter(): void {
    this.stdin?.destroy();
    this.stdin = undefined;
  }
}

export function ensureFifo(path: string): void {
  if (existsSync(path)) return;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  mknod(path, constants.S_IFIFO | 0o600);
}
