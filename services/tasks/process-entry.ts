// One process of a task (its init or an exec) as the tasks service tracks it: its state
// dir (the shim's), its stdio, its phase, and its exit once the shim recorded one.
import { watch } from "node:fs";
import { readShimExit, readShimOom, waitForShim, type ShimExit } from "../../shim/client.ts";
import type { Timestamp } from "../../core/gen/google/protobuf/timestamp.ts";
import { Status } from "../../core/gen/containerd/types/task/task.ts";

export interface ProcessIo {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export type Phase = "created" | "running" | "paused";

/** Exit status containerd reports for a process whose monitor vanished without telling. */
export const lostExitStatus = 255;

export function lostExit(): ShimExit {
  return { pid: 0, exitStatus: lostExitStatus, signal: 0, exitedAt: new Date().toISOString() };
}

/** "2026-11-30T05:26:13.164770693Z" (nanoseconds kept) as a protobuf Timestamp. */
export function timestampOfRfc3339(text: string): Timestamp {
  const match = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  const millis = Date.parse(match ? `${match[1]}${match[3]}` : text);
  if (!Number.isFinite(millis)) return { seconds: 0n, nanos: 0 };
  const nanos = match?.[2] ? Number(match[2].slice(0, 9).padEnd(9, "0")) : 0;
  return { seconds: BigInt(Math.floor(millis / 1000)), nanos };
}

export class ProcessEntry {
  readonly id: string;
  readonly dir: string;
  readonly io: ProcessIo;
  phase: Phase = "created";
  pid = 0;
  /** The shim that owns the process, or 0 when none was started (or it had gone by a restore). */
  shimPid = 0;
  exit: ShimExit | undefined;
  /** Settles once the process has exited (a Wait that came before Start waits too). */
  readonly exited: Promise<ShimExit>;
  private settle!: (exit: ShimExit) => void;
  private watching = false;
  /** The watch's end (records the exit and announces it), once watchExit runs. */
  private finishWatch: ((exit: ShimExit) => void) | undefined;
  /** The OOM kills of the shim's `oom` record already announced (or there before a restore: announced by the service that ran then). */
  private oomKillsSeen = 0;

  constructor(id: string, dir: string, io: ProcessIo) {
    this.id = id;
    this.dir = dir;
    this.io = io;
    this.exited = new Promise((resolve) => (this.settle = resolve));
  }

  get status(): Status {
    if (this.exit) return Status.STOPPED;
    return { created: Status.CREATED, running: Status.RUNNING, paused: Status.PAUSED }[this.phase];
  }

  /** Records the exit (once) and wakes every Wait. */
  exitWith(exit: ShimExit): void {
    if (this.exit) return;
    this.exit = exit;
    this.settle(exit);
  }

  /**
   * Learns of the exit from the shim's state dir: the `exit` file (seen by a watch as it
   * is renamed into place), or the shim's own end (a pidfd, for a shim another daemon
   * started) when it died without writing one.
   */
  watchExit(onExit: (exit: ShimExit) => void, onOom: () => void = () => {}): void {
    if (this.watching) return;
    this.watching = true;
    let done = false;
    // The shim writes `oom` before `exit`: whoever reads the exit announces the OOM kill first.
    const announceOom = () => {
      if (this.newOomKills()) onOom();
    };
    const finish = (exit: ShimExit) => {
      if (done) return;
      done = true;
      watcher?.close();
      announceOom();
      this.exitWith(exit);
      onExit(this.exit!);
    };
    this.finishWatch = finish;
    let watcher: ReturnType<typeof watch> | undefined;
    try {
      watcher = watch(this.dir, () => {
        if (done) return;
        announceOom();
        const exit = readShimExit(this.dir);
        if (exit) finish(exit);
      });
      watcher.on("error", () => watcher?.close());
    } catch {
      watcher = undefined; // the pidfd below still notices the end
    }
    const already = readShimExit(this.dir);
    if (already) return finish(already);
    waitForShim(this.dir).then(
      (state) => finish(state.state === "exited" ? state.exit : lostExit()),
      () => finish(readShimExit(this.dir) ?? lostExit()),
    );
  }

  /** Takes the OOM kills the shim recorded so far as seen, without announcing them (a restore). */
  adoptOomKills(): void {
    this.oomKillsSeen = readShimOom(this.dir)?.oomKills ?? 0;
  }

  /** Whether the shim recorded OOM kills not seen yet (each call sees them once). */
  private newOomKills(): boolean {
    let kills: number;
    try {
      kills = readShimOom(this.dir)?.oomKills ?? 0;
    } catch {
      return false; // the state dir went away with its task
    }
    if (kills <= this.oomKillsSeen) return false;
    this.oomKillsSeen = kills;
    return true;
  }

  /**
   * Takes an exit the shim has recorded but the watch has not delivered yet (it comes a
   * moment later): berthd answers Wait from the file itself (services/gateway/task-reads.ts),
   * so a client may act on the exit before this process has seen it. Announced as the watch
   * would, so the exit event still precedes what the caller does next. Whether it has exited.
   */
  noticeExit(): boolean {
    if (this.exit) return true;
    const exit = readShimExit(this.dir);
    if (!exit) return false;
    if (this.finishWatch) this.finishWatch(exit);
    else this.exitWith(exit);
    return true;
  }

  toProcess(containerId: string) {
    return {
      containerId,
      id: this.id,
      pid: this.pid,
      status: this.status,
      stdin: this.io.stdin,
      stdout: this.io.stdout,
      stderr: this.io.stderr,
      terminal: this.io.terminal,
      exitStatus: this.exit?.exitStatus ?? 0,
      exitedAt: this.exit ? timestampOfRfc3339(this.exit.exitedAt) : undefined,
    };
  }
}
