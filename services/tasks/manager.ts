// The tasks of every namespace: creating a bundle and its shim, driving runc, and
// rebuilding all of it from <state>/shims/ after a restart. The shims, not this process,
// own the containers: this process may die and come back at any time.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import { mountAll, unmountAll } from "../../core/mounts.ts";
import { makePrivateDir, writePrivateFile } from "../../core/private-files.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { inspectShimState, sendShimCommand, shimGone, startShim } from "../../shim/client.ts";
import { lostExit, ProcessEntry, type ProcessIo } from "./process-entry.ts";
import { Runc } from "./runc.ts";
import { clampRlimits, hostHardLimits, type OciSpec } from "./spec.ts";
import { detectCgroupLayout } from "./cgroups.ts";
import { initPhaseOnDisk, noSuchTask, runcRootOf, taskDirOf, type TaskRecord } from "./disk-state.ts";
import { cgroupMetricsOf } from "./metrics.ts";
import type { Any } from "../../core/gen/google/protobuf/any.ts";

export interface TaskPaths {
  /** <state>: shims/ and runc/ live under it. */
  state: string;
  shimBinary: string;
  runcBinary: string;
}

export class Task {
  readonly namespace: string;
  readonly id: string;
  readonly dir: string;
  readonly init: ProcessEntry;
  readonly execs = new Map<string, ProcessEntry>();
  constructor(record: TaskRecord, dir: string) {
    this.namespace = record.namespace;
    this.id = record.id;
    this.dir = dir;
    this.init = new ProcessEntry(record.id, dir, record.io);
  }

  process(execId: string): ProcessEntry {
    if (!execId) return this.init;
    const exec = this.execs.get(execId);
    if (!exec) throw notFound(`process "${execId}" in task "${this.id}"`);
    return exec;
  }
}

export interface TaskEvents {
  exited(task: Task, process: ProcessEntry): void;
  /** The kernel's OOM killer killed a process in the task's memory cgroup (the init's shim watches it). */
  oom(task: Task): void;
}

/**
 * Where a process's output goes: FIFOs a client made (ctr's default), or a log file named
 * by a `file://` URI in stdout (ctr's `--log-uri`: raw bytes; `?format=json` makes it
 * Docker's json-file lines, which the Engine API's logs read).
 */
export function outputOf(io: ProcessIo): { stdout?: string; stderr?: string; log?: string; logFormat?: "raw" | "json" } {
  if (!io.stdout.startsWith("file://")) return { stdout: io.stdout, stderr: io.stderr };
  const url = new URL(io.stdout);
  if (url.host) throw invalidArgument(`log URI ${io.stdout}: a file URI names a local path (file:///path)`);
  const format = url.searchParams.get("format") ?? "raw";
  if (format !== "raw" && format !== "json") throw invalidArgument(`log URI ${io.stdout}: format must be raw or json`);
  return { log: decodeURIComponent(url.pathname), logFormat: format };
}

const phaseName = (p: ProcessEntry) => (p.exit ? "stopped" : p.phase);

export class TaskManager {
  private readonly paths: TaskPaths;
  private readonly log: Logger;
  private readonly events: TaskEvents;
  /** namespace → container id → task; a task being created is here already (so a second Create fails). */
  private readonly tasks = new Map<string, Map<string, Task>>();
  private readonly hardLimits = hostHardLimits();
  private readonly cgroups = detectCgroupLayout();

  constructor(paths: TaskPaths, log: Logger, events: TaskEvents) {
    this.paths = paths;
    this.log = log;
    this.events = events;
  }

  runc(namespace: string): Runc {
    return new Runc(this.paths.runcBinary, runcRootOf(this.paths.state, namespace));
  }

  private taskDir(namespace: string, id: string): string {
    return taskDirOf(this.paths.state, namespace, id);
  }

  get(namespace: string, id: string): Task {
    const task = this.tasks.get(namespace)?.get(id);
    if (!task) throw noSuchTask(id);
    return task;
  }

  list(namespace: string): Task[] {
    return [...(this.tasks.get(namespace)?.values() ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  private put(task: Task): void {
    let byId = this.tasks.get(task.namespace);
    if (!byId) this.tasks.set(task.namespace, (byId = new Map()));
    byId.set(task.id, task);
  }

  private drop(task: Task): void {
    this.tasks.get(task.namespace)?.delete(task.id);
  }

  private watch(task: Task, process: ProcessEntry): void {
    process.watchExit(
      () => this.events.exited(task, process),
      () => this.events.oom(task),
    );
  }

  async create(namespace: string, id: string, spec: OciSpec, rootfs: readonly Mount[], io: ProcessIo): Promise<Task> {
    if (this.tasks.get(namespace)?.has(id)) throw alreadyExists(`task ${id}`);
    if (Boolean(spec.process?.terminal) !== io.terminal) {
      throw invalidArgument(`task ${id}: terminal is ${io.terminal} but the spec's process.terminal is ${Boolean(spec.process?.terminal)}`);
    }
    const dir = this.taskDir(namespace, id);
    if (existsSync(dir)) throw alreadyExists(`task ${id}: its state dir ${dir} exists`);
    makePrivateDir(join(this.paths.state, "shims"));
    mkdirSync(join(this.paths.state, "shims", namespace), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o711 });
    const record: TaskRecord = { namespace, id, io };
    const task = new Task(record, dir);
    this.put(task);
    const runc = this.runc(namespace);
    try {
      if (rootfs.length === 0 && !spec.root?.path?.startsWith("/")) {
        throw invalidArgument(`task ${id}: without rootfs mounts the spec's root.path must be an absolute path`);
      }
      writePrivateFile(join(dir, "task.json"), JSON.stringify(record));
      if (rootfs.length > 0) {
        const target = join(dir, "rootfs");
        mkdirSync(target, { mode: 0o755 });
        await mountAll(rootfs, target);
        spec.root = { ...spec.root, path: target };
      }
      clampRlimits(spec, this.hardLimits);
      // Not synced: runc reads it at once, and after a crash of the machine no container of
      // this bundle runs again (restore reads task.json only).
      writePrivateFile(join(dir, "config.json"), JSON.stringify(spec), { durable: false });
      mkdirSync(runc.root, { recursive: true, mode: 0o700 });
      const started = await this.startShimFor(task, dir, io, { bundle: dir });
      task.init.pid = started.pid;
      task.init.shimPid = started.shimPid;
      this.watch(task, task.init);
      return task;
    } catch (err) {
      this.drop(task);
      await runc.delete(id).catch(() => {});
      await this.removeBundle(task).catch((cleanup: Error) => this.log.error({ err: cleanup.message, id }, "cannot clean up after a failed create"));
      throw err;
    }
  }

  /** A shim for the task's init (`bundle`) or one of its execs (`execProcess`), in state dir `dir`. */
  private startShimFor(task: Task, dir: string, io: ProcessIo, what: { bundle: string } | { execProcess: string }) {
    return startShim({
      binary: this.paths.shimBinary,
      stateDir: dir,
      runc: this.paths.runcBinary,
      runcRoot: this.runc(task.namespace).root,
      id: task.id,
      ...what,
      terminal: io.terminal,
      stdin: io.stdin,
      ...outputOf(io),
    });
  }

  private async removeBundle(task: Task): Promise<void> {
    await unmountAll(join(task.dir, "rootfs"), { detachBusy: true });
    rmSync(task.dir, { recursive: true, force: true });
  }

  async start(task: Task, execId: string): Promise<ProcessEntry> {
    const process = task.process(execId);
    if (process.exit || process.phase !== "created") throw failedPrecondition(`process ${process.id} of task ${task.id} is ${phaseName(process)}, not created: cannot start it`);
    if (!execId) {
      await this.runc(task.namespace).start(task.id);
      process.phase = "running";
      return process;
    }
    if (task.init.exit) throw failedPrecondition(`task ${task.id} is stopped: cannot start exec ${execId}`);
    // Marked before the shim runs, so two Starts cannot both run it.
    process.phase = "running";
    try {
      const started = await this.startShimFor(task, process.dir, process.io, { execProcess: join(process.dir, "process.json") });
      process.pid = started.pid;
      process.shimPid = started.shimPid;
    } catch (err) {
      process.exitWith(lostExit());
      throw err;
    }
    this.watch(task, process);
    return process;
  }

  exec(task: Task, execId: string, processSpec: OciSpec, io: ProcessIo): ProcessEntry {
    validateIdentifier(execId, "exec id");
    if (task.init.exit || task.init.phase !== "running") throw failedPrecondition(`task ${task.id} is ${phaseName(task.init)}: cannot exec in it`);
    if (task.execs.has(execId)) throw alreadyExists(`exec "${execId}" in task ${task.id}`);
    const dir = join(task.dir, "execs", execId);
    mkdirSync(join(task.dir, "execs"), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o700 });
    try {
      writePrivateFile(join(dir, "process.json"), JSON.stringify({ ...processSpec, terminal: io.terminal }));
      writePrivateFile(join(dir, "exec.json"), JSON.stringify({ io }));
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const process = new ProcessEntry(execId, dir, io);
    task.execs.set(execId, process);
    return process;
  }

  async kill(task: Task, execId: string, signal: number, all: boolean): Promise<void> {
    const process = task.process(execId);
    if (process.noticeExit()) throw notFound(`process already finished: ${process.id}`);
    if (!execId) return this.runc(task.namespace).kill(task.id, signal, all);
    if (process.phase === "created") throw failedPrecondition(`exec ${execId} is not started`);
    globalThis.process.kill(process.pid, signal);
  }

  /** Removes a task whose init has stopped (or never started); reports how the init ended. */
  async delete(task: Task): Promise<ProcessEntry> {
    const init = task.init;
    init.noticeExit();
    if (!init.exit && init.phase !== "created") throw failedPrecondition(`task ${task.id} must be stopped before deletion: ${init.phase}`);
    this.drop(task);
    try {
      // --force: a created init (and any exec left) is killed, not only forgotten.
      await this.runc(task.namespace).delete(task.id).catch((err: Error) => {
        if (!/not found|does not exist/i.test(err.message)) throw err;
      });
      // A created init dies by runc's SIGKILL; its shim records that as the exit.
      if (init.pid !== 0) this.watch(task, init);
      else init.exitWith(lostExit());
      await init.exited;
      // Shims that recorded an exit are finishing in the bundle: removing it under them
      // races their last steps (and can leave it half removed). One whose process still
      // runs (an exec outside the container's pid namespace) is not waited for.
      const finishing = [init, ...task.execs.values()].filter((p) => p.exit && p.shimPid !== 0);
      for (const exec of task.execs.values()) if (!exec.exit) exec.exitWith(lostExit());
      await Promise.all(finishing.map((p) => shimGone(p.dir, p.shimPid)));
      await this.removeBundle(task);
    } catch (err) {
      this.put(task);
      throw err;
    }
    return init;
  }

  async deleteProcess(task: Task, execId: string): Promise<ProcessEntry> {
    if (!execId) throw invalidArgument("exec id is required (delete the task to remove its init)");
    const process = task.process(execId);
    if (!process.exit && process.phase !== "created") throw failedPrecondition(`exec ${execId} of task ${task.id} must be stopped before deletion: ${process.phase}`);
    const finishing = process.exit !== undefined && process.shimPid !== 0;
    if (!process.exit) process.exitWith(lostExit());
    task.execs.delete(execId);
    // As in delete: the exec's shim may still be finishing in its dir.
    if (finishing) await shimGone(process.dir, process.shimPid);
    rmSync(process.dir, { recursive: true, force: true });
    return process;
  }

  async pause(task: Task): Promise<void> {
    if (task.init.exit || task.init.phase !== "running") throw failedPrecondition(`task ${task.id} is ${phaseName(task.init)}: cannot pause`);
    await this.runc(task.namespace).pause(task.id);
    task.init.phase = "paused";
  }

  async resume(task: Task): Promise<void> {
    if (task.init.exit || task.init.phase !== "paused") throw failedPrecondition(`task ${task.id} is ${phaseName(task.init)}: cannot resume`);
    await this.runc(task.namespace).resume(task.id);
    task.init.phase = "running";
  }

  /** A shim control command, for a process whose shim still runs; an exited one has nothing to resize or close. */
  control(task: Task, execId: string, command: string): void {
    const process = task.process(execId);
    if (process.exit) return;
    if (process.phase === "created" && execId) throw failedPrecondition(`exec ${execId} is not started`);
    sendShimCommand(process.dir, command);
  }

  async update(task: Task, resources: OciSpec): Promise<void> {
    if (task.init.exit) throw failedPrecondition(`task ${task.id} is stopped: cannot update it`);
    const file = join(task.dir, "resources.json");
    writePrivateFile(file, JSON.stringify(resources));
    try {
      await this.runc(task.namespace).update(task.id, file);
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * The resource usage of the task's cgroup, or undefined when its init is gone (a stopped
   * task has no process to find the cgroup by, and runc removes the cgroup at delete).
   */
  metrics(task: Task): Any | undefined {
    if (task.init.exit || task.init.pid === 0) return undefined;
    try {
      return cgroupMetricsOf(this.cgroups, task.init.pid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
      throw err;
    }
  }

  /**
   * Rebuilds every task from <state>/shims/: a live shim is adopted (its phase from runc),
   * an exited one keeps its recorded status, a shim that died unrecorded counts as exited
   * with 255. Only `Delete` removes what is found.
   */
  async restore(): Promise<number> {
    const root = join(this.paths.state, "shims");
    let restored = 0;
    for (const namespace of safeReaddir(root)) {
      for (const id of safeReaddir(join(root, namespace))) {
        const dir = join(root, namespace, id);
        if (!existsSync(join(dir, "task.json"))) {
          // A create that died before recording anything: nothing runs from it, and a
          // new Create of the same id must not trip over it.
          await unmountAll(join(dir, "rootfs"), { detachBusy: true }).catch(() => {});
          rmSync(dir, { recursive: true, force: true });
          this.log.warn({ dir }, "removed the state dir of an unfinished create");
          continue;
        }
        try {
          const record = JSON.parse(readFileSync(join(dir, "task.json"), "utf8")) as TaskRecord;
          const task = new Task(record, dir);
          this.adopt(task, task.init, "");
          for (const execId of safeReaddir(join(dir, "execs"))) {
            const execDir = join(dir, "execs", execId);
            const { io } = JSON.parse(readFileSync(join(execDir, "exec.json"), "utf8")) as { io: ProcessIo };
            const exec = new ProcessEntry(execId, execDir, io);
            task.execs.set(execId, exec);
            this.adopt(task, exec, execId);
          }
          this.put(task);
          restored++;
        } catch (err) {
          this.log.error({ err: (err as Error).message, dir }, "cannot restore task");
        }
      }
    }
    return restored;
  }

  private adopt(task: Task, process: ProcessEntry, execId: string): void {
    // An exec never started has no shim yet.
    if (execId && !existsSync(join(process.dir, "shim.pid")) && !existsSync(join(process.dir, "exit"))) return;
    const state = inspectShimState(process.dir);
    // OOM kills recorded before this restore were announced by the service that ran then (or by nobody, when none ran).
    process.adoptOomKills();
    if (state.state === "exited") {
      process.pid = state.exit.pid;
      process.phase = "running";
      process.exitWith(state.exit);
      return;
    }
    if (state.state === "lost") {
      this.log.warn({ dir: process.dir, reason: state.reason }, "process lost");
      process.exitWith(lostExit());
      return;
    }
    process.pid = state.pid ?? 0;
    process.shimPid = state.shimPid;
    process.phase = execId ? "running" : initPhaseOnDisk(this.runc(task.namespace).root, task.id, process.pid, this.cgroups);
    this.watch(task, process);
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
