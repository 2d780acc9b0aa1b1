// Keeps each service process running: starts it, waits for its socket, restarts it
// with exponential backoff when it dies, and stops it on shutdown. A process declared
// on demand is instead started by the first call that needs it (ready()) and left
// stopped when it exits, as it does once idle. Each child holds a pipe to us on its
// stdin and exits when that pipe closes, so a killed berthd never leaves services
// running behind it.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import type { Logger } from "../../core/log.ts";
import { hasExited, stopChild } from "../../core/process.ts";
import { waitForSocket } from "../../core/socket.ts";

export interface ServiceSpec {
  name: string;
  script: string;
  args: string[];
  /** Node/V8 flags placed before the script (core/node-flags.ts). */
  nodeFlags?: readonly string[];
  env: NodeJS.ProcessEnv;
  /** The socket that accepts connections once the service is ready. */
  socket: string;
  /** Started by ready() rather than at once, and not restarted when it exits. */
  onDemand?: boolean;
}

const minBackoffMs = 100;
const maxBackoffMs = 5000;
const stableAfterMs = 10_000;
/** A retiring process drains its calls for at most 60 s (core/grpc-server.ts); past this, it is stopped. */
const retireLimitMs = 70_000;

export class SupervisedService {
  private child: ChildProcess | undefined;
  private stopping = false;
  private backoffMs = minBackoffMs;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Children seen listening: one whose socket is gone after that is retiring. */
  private readonly listened = new WeakSet<ChildProcess>();
  /** The start under way (on-demand processes), shared by the calls waiting for it. */
  private starting: Promise<void> | undefined;
  private readonly spec: ServiceSpec;
  private readonly log: Logger;

  constructor(spec: ServiceSpec, log: Logger) {
    this.spec = spec;
    this.log = log;
  }

  /** Starts the process and resolves once its socket accepts connections. */
  async start(): Promise<void> {
    const child = this.spawnChild();
    if (await waitForSocket(this.spec.socket, 10_000, () => hasExited(child))) {
      this.listened.add(child);
      return;
    }
    if (hasExited(child)) {
      throw new Error(`service ${this.spec.name} exited during start-up (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    throw new Error(`service ${this.spec.name} did not open ${this.spec.socket} within 10s`);
  }

  /**
   * Undefined for an always-on process (the call goes straight through; while it is
   * being restarted the call fails UNAVAILABLE) and for an on-demand one that runs and
   * listens; otherwise (on demand) a promise that settles once it accepts calls,
   * starting it if needed, or fails.
   */
  ready(): Promise<void> | undefined {
    if (!this.spec.onDemand) return undefined;
    if (this.stopping) return Promise.reject(new Error(`service ${this.spec.name} is stopping`));
    // Running and not retiring: the call goes straight through, as to an always-on one
    // (content, images and snapshots take every call of a burst this way).
    const child = this.child;
    if (!this.starting && child && this.listened.has(child) && !hasExited(child) && existsSync(this.spec.socket)) return undefined;
    this.starting ??= this.startOnDemand().finally(() => (this.starting = undefined));
    return this.starting;
  }

  /**
   * An on-demand process may be retiring (idle: it removed its socket and finishes the
   * calls it has, core/grpc-server.ts): the fresh one for this call starts once it has
   * exited. Never two copies at once: content and snapshots must each be the only
   * process linking and unlinking their files (a second copy's start-up sweep could
   * unlink a blob the first is linking).
   */
  private async startOnDemand(): Promise<void> {
    const child = this.child;
    if (child && !hasExited(child)) {
      if (this.listened.has(child)) {
        // Its socket file goes first when it retires (a connect test would also fail under
        // load, with a full listen backlog, and start a second copy).
        if (existsSync(this.spec.socket)) return;
      } else if (await waitForSocket(this.spec.socket, 10_000, () => hasExited(child))) {
        // A child that never listened yet is starting (a crash restart): wait for it. Its
        // socket file proves nothing: a killed predecessor's is still there, refusing
        // connections, and calls sent on its word failed until the child listened.
        this.listened.add(child);
        return;
      }
      await this.retired(child);
      if (this.stopping) throw new Error(`service ${this.spec.name} is stopping`);
    }
    await this.start();
  }

  /** Resolves once a retiring child has exited; one that outstays its drain is stopped. */
  private async retired(child: ChildProcess): Promise<void> {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const overdue = setTimeout(() => void stopChild(child, 5000), retireLimitMs);
    try {
      if (!hasExited(child)) await exited;
    } finally {
      clearTimeout(overdue);
    }
  }

  private spawnChild(): ChildProcess {
    const startedAt = Date.now();
    const child = spawn(process.execPath, [...(this.spec.nodeFlags ?? []), this.spec.script, ...this.spec.args], {
      stdio: ["pipe", "inherit", "inherit"],
      env: { ...this.spec.env, BERTH_SUPERVISED: "1" },
    });
    this.child = child;
    // EPIPE on our end of the pipe while the child dies is expected.
    child.stdin?.on("error", () => {});
    child.on("exit", (code, signal) => {
      if (this.child === child) this.child = undefined;
      // An on-demand process that exits cleanly (idle) waits for the next call; one that
      // crashed comes back, since it may have left durable work half done.
      if (this.stopping || (this.spec.onDemand && code === 0)) return;
      if (Date.now() - startedAt > stableAfterMs) this.backoffMs = minBackoffMs;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, maxBackoffMs);
      this.log.warn({ service: this.spec.name, code, signal, restartInMs: delay }, "service exited; restarting");
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        // A call may have started it on demand meanwhile.
        if (!this.stopping && !this.child) this.spawnChild();
      }, delay);
    });
    return child;
  }

  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.child) await stopChild(this.child, timeoutMs);
  }
}
