// Docker execs: a config made by create, run by start as a process of the container's
// task (the tasks service's Exec with the container's process spec, changed by the
// exec's command, env, cwd, user and terminal), its stdio through FIFOs the engine
// holds. Exec records live in memory, as in Docker's daemon: they are for the client
// that made them and do not outlive the engine.
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { errorMessage } from "../../../core/grpc-client.ts";
import { mergeEnv } from "../../../core/oci/spec.ts";
import { resolveUser } from "../../../core/oci/user.ts";
import type { Backend } from "../backend.ts";
import { badRequest, conflict, frame, notFoundError } from "../http.ts";
import type { ContainerRecord } from "../store.ts";
import { containerEventAttributes, containerInfo, requireRunning, taskRootfs, type OciProcess } from "./container-state.ts";
import { FifoDir, FifoReader, FifoWriter } from "./fifo-io.ts";

export interface ExecConfig {
  Cmd: string[];
  User: string;
  WorkingDir: string;
  Env: string[];
  Tty: boolean;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  Privileged: boolean;
  DetachKeys: string;
}

export interface Exec {
  id: string;
  containerId: string;
  config: ExecConfig;
  /** Set once start has been asked for (a second start is a 409). */
  started: boolean;
  running: boolean;
  exitCode: number | null;
  pid: number;
  /** When it exited (ms), for dropping old records. */
  endedAt?: number;
  /** Settles once start has run the process or failed to (a resize right after start waits for it). */
  launched: Promise<void>;
  settleLaunch: () => void;
}

/** Exited execs are forgotten after this long (Docker keeps them about as long). */
const keepExitedMs = 10 * 60_000;
const maxExecs = 4096;

const processSpecType = "types.containerd.io/opencontainers/runtime-spec/1/Process";

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) throw badRequest(`${what} must be a list of strings`);
  return value as string[];
}

function text(value: unknown, what: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw badRequest(`${what} must be a string`);
  return value;
}

export function parseExecConfig(body: Record<string, unknown>): ExecConfig {
  const cmd = stringList(body.Cmd, "Cmd");
  if (cmd.length === 0) throw badRequest("No exec command specified");
  return {
    Cmd: cmd,
    User: text(body.User, "User"),
    WorkingDir: text(body.WorkingDir, "WorkingDir"),
    Env: stringList(body.Env, "Env"),
    Tty: Boolean(body.Tty),
    AttachStdin: Boolean(body.AttachStdin),
    AttachStdout: Boolean(body.AttachStdout),
    AttachStderr: Boolean(body.AttachStderr),
    Privileged: Boolean(body.Privileged),
    DetachKeys: text(body.DetachKeys, "DetachKeys"),
  };
}

/**
 * The exit code Docker reports for an exec that could not start, from the runtime's
 * message: 127 when the command itself is missing, 126 for anything else (not executable,
 * a bad working directory, …).
 */
export function startFailureExitCode(command: string, message: string): number {
  const lower = message.toLowerCase();
  const missing = lower.includes("executable file not found") || lower.includes("no such file or directory");
  return missing && lower.includes(command.toLowerCase()) ? 127 : 126;
}

/** Each engine's exec manager, for the container routes' ExecIDs (one engine per Backend). */
const managers = new WeakMap<Backend, ExecManager>();

/** The ids of a container's execs that have not ended (inspect's ExecIDs). */
export function execIdsOf(backend: Backend, containerId: string): string[] {
  return managers.get(backend)?.idsOf(containerId) ?? [];
}

export class ExecManager {
  private readonly backend: Backend;
  private readonly execs = new Map<string, Exec>();
  private readonly fifoRoot: string;

  constructor(backend: Backend) {
    this.backend = backend;
    this.fifoRoot = join(backend.options.state, "engine", "execs");
    // Exec records do not outlive the engine, so FIFO dirs a previous one left are nobody's.
    rmSync(this.fifoRoot, { recursive: true, force: true });
    managers.set(backend, this);
  }

  idsOf(containerId: string): string[] {
    return [...this.execs.values()].filter((e) => e.containerId === containerId && e.endedAt === undefined).map((e) => e.id);
  }

  get(id: string): Exec {
    const exec = this.execs.get(id);
    if (!exec) throw notFoundError("no such exec");
    return exec;
  }

  async create(record: ContainerRecord, config: ExecConfig): Promise<Exec> {
    await requireRunning(this.backend, record);
    this.forgetOld();
    let settleLaunch!: () => void;
    const launched = new Promise<void>((resolve) => (settleLaunch = resolve));
    const exec: Exec = { id: randomBytes(32).toString("hex"), containerId: record.Id, config, started: false, running: false, exitCode: null, pid: 0, launched, settleLaunch };
    this.execs.set(exec.id, exec);
    this.backend.events.publish("container", `exec_create: ${config.Cmd.join(" ")}`, record.Id, containerEventAttributes(record, { execID: exec.id }));
    return exec;
  }

  private forgetOld(): void {
    const now = Date.now();
    for (const [id, exec] of this.execs) if (exec.endedAt !== undefined && now - exec.endedAt > keepExitedMs) this.execs.delete(id);
    if (this.execs.size < maxExecs) return;
    for (const [id, exec] of this.execs) if (exec.endedAt !== undefined) this.execs.delete(id);
    if (this.execs.size >= maxExecs) throw conflict(`too many execs (${maxExecs}) are running or waiting to start`);
  }

  /** Marks the exec started (once) and checks its container still runs: the checks before any takeover. */
  async claim(exec: Exec): Promise<ContainerRecord> {
    if (exec.started) throw conflict(`Error: Exec command ${exec.id} is already running`);
    const record = this.backend.store.get(exec.containerId);
    if (!record) throw notFoundError(`No such container: ${exec.containerId}`);
    await requireRunning(this.backend, record);
    if (exec.started) throw conflict(`Error: Exec command ${exec.id} is already running`);
    exec.started = true;
    return record;
  }

  /** The process spec of the exec: the container's, with the exec's command, env, cwd, user and terminal. */
  private async processSpec(exec: Exec): Promise<OciProcess> {
    const { spec } = await containerInfo(this.backend, exec.containerId);
    const base: OciProcess = spec.process ?? {};
    const c = exec.config;
    return {
      ...base,
      terminal: c.Tty,
      args: c.Cmd,
      env: mergeEnv(base.env, c.Env),
      cwd: c.WorkingDir || base.cwd || "/",
      user: c.User ? resolveUser(c.User, taskRootfs(this.backend, exec.containerId)) : base.user ?? { uid: 0, gid: 0 },
      consoleSize: undefined,
    };
  }

  /**
   * Starts the exec with its output to nowhere (`docker exec -d`) and records its exit in
   * the background. Errors before the process runs are thrown (the client gets them as HTTP errors).
   */
  async startDetached(exec: Exec, record: ContainerRecord): Promise<void> {
    const spec = await this.failStart(exec, record, () => this.processSpec(exec));
    await this.failStart(exec, record, () => this.launch(exec, record, spec, { stdin: "", stdout: "", stderr: "" }));
    void this.watchExit(exec, record, []);
  }

  /**
   * Runs the exec attached to `stream` (after the takeover): output framed (no TTY) or raw,
   * stdin relayed when asked for. A half-close of the stream closes the process's stdin;
   * a full close detaches (the process runs on, its output discarded). Ends the stream
   * once the process has exited and all its output was sent; a start failure is written
   * into the stream as text, with 126/127 as the exit code.
   */
  async startAttached(exec: Exec, record: ContainerRecord, stream: Duplex, earlyStdin: Buffer, readsStdin: boolean): Promise<void> {
    const c = exec.config;
    let dir: FifoDir | undefined;
    const readers: FifoReader[] = [];
    let clientGone = false;
    const gone = () => {
      clientGone = true;
      // A reader paused for a full connection would wait for a drain that never comes.
      for (const reader of readers) reader.socket.resume();
    };
    stream.on("close", gone);
    stream.on("error", gone);
    // The connection is always read: its input is stdin (or dropped), and only reading
    // shows the client's half-close and its going away (a connection left unread would
    // stay open after the client closed it).
    const input = new StdinRelay(stream, earlyStdin, readsStdin && c.AttachStdin);
    try {
      const spec = await this.processSpec(exec);
      dir = new FifoDir(this.fifoRoot, exec.id);
      const paths = { stdin: "", stdout: "", stderr: "" };
      if (c.AttachStdin) paths.stdin = dir.fifo("stdin");
      // Output is always read (a client may ask for neither stream; the process must not block).
      paths.stdout = dir.fifo("stdout");
      if (!c.Tty) paths.stderr = dir.fifo("stderr");
      const relay = (reader: FifoReader, stream1or2: 1 | 2) => {
        const wanted = stream1or2 === 1 ? c.AttachStdout : c.AttachStderr;
        reader.socket.on("data", (chunk: Buffer) => {
          if (clientGone || !wanted) return;
          const ok = stream.write(c.Tty ? chunk : frame(stream1or2, chunk));
          if (!ok) {
            reader.socket.pause();
            stream.once("drain", () => reader.socket.resume());
          }
        });
      };
      const out = new FifoReader(paths.stdout);
      readers.push(out);
      relay(out, 1);
      if (paths.stderr) {
        const err = new FifoReader(paths.stderr);
        readers.push(err);
        relay(err, 2);
      }
      const stdin = paths.stdin ? new FifoWriter(paths.stdin) : undefined;
      if (stdin) input.attachWriter(stdin);
      await this.launch(exec, record, spec, paths);
      input.onEnd(() =>
        this.backend.tasks.closeIO({ containerId: exec.containerId, execId: exec.id, stdin: true }, this.backend.call()).catch(() => {
          // The exec may have exited meanwhile: nothing left to close.
        }),
      );
    } catch (err) {
      for (const reader of readers) reader.destroy();
      input.close();
      dir?.remove();
      const message = errorMessage(err);
      this.ended(exec, record, startFailureExitCode(c.Cmd[0]!, message));
      // Docker writes the failure where stdout goes: framed as stdout unless on a TTY.
      const line = Buffer.from(`${message}\r\n`);
      if (!clientGone) stream.end(c.Tty ? line : frame(1, line));
      return;
    }
    await this.watchExit(exec, record, readers);
    input.close();
    dir?.remove();
    if (!clientGone) stream.end();
  }

  private async failStart<T>(exec: Exec, record: ContainerRecord, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.ended(exec, record, startFailureExitCode(exec.config.Cmd[0]!, errorMessage(err)));
      throw err;
    }
  }

  private async launch(exec: Exec, record: ContainerRecord, spec: OciProcess, io: { stdin: string; stdout: string; stderr: string }): Promise<void> {
    const call = this.backend.call();
    const tasks = this.backend.tasks;
    await tasks.exec(
      { containerId: exec.containerId, execId: exec.id, terminal: exec.config.Tty, ...io, spec: { typeUrl: processSpecType, value: Buffer.from(JSON.stringify(spec)) } },
      call,
    );
    try {
      const { pid } = await tasks.start({ containerId: exec.containerId, execId: exec.id }, call);
      exec.pid = pid;
      exec.running = true;
      exec.settleLaunch();
    } catch (err) {
      await tasks.deleteProcess({ containerId: exec.containerId, execId: exec.id }, call).catch(() => {});
      throw err;
    }
    this.backend.events.publish("container", `exec_start: ${exec.config.Cmd.join(" ")}`, record.Id, containerEventAttributes(record, { execID: exec.id }));
  }

  /** Waits for the exit and for the output to drain; records the code before anyone can see the stream end. */
  private async watchExit(exec: Exec, record: ContainerRecord, readers: FifoReader[]): Promise<void> {
    const call = this.backend.call();
    let code = 255;
    try {
      const exit = await this.backend.tasks.wait({ containerId: exec.containerId, execId: exec.id }, call);
      code = exit.exitStatus;
    } catch (err) {
      this.backend.log.warn({ exec: exec.id, err: errorMessage(err) }, "cannot wait for an exec");
    }
    await Promise.all(readers.map((r) => r.ended));
    await this.backend.tasks.deleteProcess({ containerId: exec.containerId, execId: exec.id }, call).catch(() => {});
    this.ended(exec, record, code);
  }

  private ended(exec: Exec, record: ContainerRecord, code: number): void {
    if (exec.endedAt !== undefined) return;
    exec.running = false;
    exec.exitCode = code;
    exec.endedAt = Date.now();
    exec.settleLaunch();
    this.backend.events.publish("container", "exec_die", record.Id, containerEventAttributes(record, { execID: exec.id, exitCode: String(code) }));
  }

  async resize(exec: Exec, height: number, width: number): Promise<void> {
    // The CLI resizes as soon as the stream is up, which can be before the process runs.
    if (exec.started) await exec.launched;
    if (!exec.running) throw conflict(`Exec ${exec.id} is not running`);
    await this.backend.tasks.resizePty({ containerId: exec.containerId, execId: exec.id, width, height }, this.backend.call());
  }

  inspect(exec: Exec): Record<string, unknown> {
    const c = exec.config;
    return {
      ID: exec.id,
      Running: exec.running,
      ExitCode: exec.exitCode,
      ProcessConfig: { tty: c.Tty, entrypoint: c.Cmd[0], arguments: c.Cmd.slice(1), privileged: c.Privileged, user: c.User },
      OpenStdin: c.AttachStdin,
      OpenStderr: c.AttachStderr,
      OpenStdout: c.AttachStdout,
      CanRemove: false,
      ContainerID: exec.containerId,
      DetachKeys: c.DetachKeys,
      Pid: exec.pid,
    };
  }
}

/**
 * The client's side of a hijacked connection as the process's stdin. Input is written to
 * the stdin FIFO as it comes, with back-pressure (the FIFO is open before the process
 * starts, so input sent early is kept); without stdin it is read and dropped. The
 * client's half-close closes the process's stdin once everything it sent is in the FIFO
 * and the process runs.
 */
class StdinRelay {
  private readonly stream: Duplex;
  private readonly pending: Buffer[] = [];
  private writer: FifoWriter | undefined;
  private ended = false;
  private closed = false;
  private endHandler: (() => void) | undefined;

  constructor(stream: Duplex, early: Buffer, wanted: boolean) {
    this.stream = stream;
    if (wanted && early.length > 0) this.pending.push(early);
    stream.on("data", (data: Buffer) => {
      if (!wanted || this.closed) return;
      if (this.writer) this.push(data);
      else this.pending.push(data);
    });
    stream.once("end", () => {
      this.ended = true;
      this.finish();
    });
    stream.resume();
  }

  attachWriter(writer: FifoWriter): void {
    this.writer = writer;
    for (const data of this.pending.splice(0)) this.push(data);
  }

  /** Called once the input has ended and reached the FIFO (not at all without stdin). */
  onEnd(handler: () => void): void {
    this.endHandler = handler;
    this.finish();
  }

  private push(data: Buffer): void {
    if (!this.writer!.write(data)) {
      this.stream.pause();
      this.writer!.onDrain(() => this.stream.resume());
    }
  }

  private finish(): void {
    if (!this.ended || !this.writer || !this.endHandler) return;
    const handler = this.endHandler;
    this.endHandler = undefined;
    void this.writer.flushed().then(handler);
  }

  /** The process is gone: later input is dropped, and reading goes on so the client's close is seen. */
  close(): void {
    this.closed = true;
    this.writer?.destroy();
    this.stream.resume();
  }
}
