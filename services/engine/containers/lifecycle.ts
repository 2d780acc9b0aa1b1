// A container's life: create (image, snapshot, spec, containerd container, record),
// start (a task whose output the shim writes to the json log), the watch on its exit
// (recorded, the task deleted so it can start again, then auto-removal or the restart
// policy), stop/kill/pause/rename/remove, and reconciling records with tasks when the
// engine starts. Records are the truth that survives crashes; ContainerRuntime holds
// what only matters while this engine runs.
import { mkdirSync, rmSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { ClientError } from "nice-grpc-common";
import { errorMessage, isAlreadyExists, isNotFound } from "../../../core/grpc-client.ts";
import { createLease, deleteLease } from "../../../core/image/lease.ts";
import type { NetworkMode } from "../../../core/oci/spec.ts";
import { prepareRootfs } from "../../../core/rootfs.ts";
import { Status as TaskStatus } from "../../../core/gen/containerd/types/task/task.ts";
import { millisFromTimestamp } from "../../../core/timestamp.ts";
import type { Backend } from "../backend.ts";
import { badRequest, conflict, EngineError, notFoundError } from "../http.ts";
import { initialState, type ContainerRecord, type ContainerState } from "../store.ts";
import { buildSpec, checkCreateBody, commandOf, defaultedHostConfig, mergedConfig, networkModeOf, type CreateBody } from "./config.ts";
import { findImage, snapshotter, unpackedChainId } from "./image.ts";
import { canonicalName, generateName, newContainerId } from "./names.ts";
import { containerDir, logPathOf, shimDirOf, stdinFifoOf } from "./paths.ts";
import { userInRootfs, writeContainerFiles } from "./rootfs-files.ts";
import { ContainerRuntime } from "./runtime.ts";
import { shimGone } from "./shim-exit.ts";
import { followOomEvents, oomKilledIn } from "./oom.ts";
import { parseSignal, SIGKILL, SIGWINCH } from "./signals.ts";
import { checkLogConfig, LogRotation } from "./rotation.ts";
import { hostsPathOf, networkManager } from "../networks/index.ts";
import type { EndpointSettings } from "../networks/manager.ts";
import { volumeStore } from "../volumes/index.ts";
import { removeAnonymousVolumes, resolveContainerVolumes, volumesFromSources } from "../volumes/mounts.ts";
import { fillNewVolumes } from "../volumes/copy-up.ts";

const specType = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const runtimeName = "io.containerd.runc.v2";
const now = () => new Date().toISOString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The exit code Docker gives a start that failed, from the runtime's words (the CLI maps 126/127 the same way). */
export function startFailureCode(message: string): number {
  if (/executable file not found|no such file or directory/.test(message)) return 127;
  if (/permission denied|is a directory/.test(message)) return 126;
  return 128;
}

function isRunningState(state: ContainerState): boolean {
  return state.Running || state.Restarting;
}

export class ContainerManager {
  private readonly backend: Backend;
  private readonly runtimes = new Map<string, ContainerRuntime>();
  private closed = false;
  private readonly aborter = new AbortController();
  readonly rotation: LogRotation;

  constructor(backend: Backend) {
    this.backend = backend;
    this.rotation = new LogRotation(backend);
    backend.onClose(() => {
      this.closed = true;
      this.aborter.abort();
      this.rotation.stopAll();
      for (const rt of this.runtimes.values()) {
        clearTimeout(rt.restartTimer);
        rt.closeStdinWriter();
      }
    });
    followOomEvents(backend, this.aborter.signal, (id) => this.noteOom(id));
  }

  /**
   * A process of a running container was OOM-killed (it may run on): Docker's `oom` event,
   * once per run. An event for a run not yet recorded as running is taken up by the start
   * itself (from the shim's record); one for a run already recorded as ended, by its exit.
   */
  private noteOom(id: string): void {
    const record = this.store.get(id);
    const rt = this.runtimes.get(id);
    if (!record || !rt || !record.State.Running || record.State.Restarting || rt.oomAnnounced) return;
    rt.oomAnnounced = true;
    record.State = { ...record.State, OOMKilled: true };
    this.store.update(record);
    this.publish(record, "oom");
  }

  private get store() {
    return this.backend.store;
  }

  runtime(id: string): ContainerRuntime {
    let rt = this.runtimes.get(id);
    if (!rt) this.runtimes.set(id, (rt = new ContainerRuntime(id)));
    return rt;
  }

  /** The record `ref` names (id, name, unique id prefix); Docker's 404 otherwise. */
  get(ref: string): ContainerRecord {
    const record = this.store.resolve(ref);
    if (!record) throw notFoundError(`No such container: ${ref}`);
    return record;
  }

  private publish(record: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    this.backend.events.publish("container", action, record.Id, { ...(record.Config.Labels ?? {}), image: record.Config.Image ?? "", name: record.Name.slice(1), ...extra });
  }

  private shimDir(id: string): string {
    return shimDirOf(this.backend.options.state, this.backend.namespace, id);
  }

  // ---- create ------------------------------------------------------------------------

  async create(body: CreateBody, nameParam: string | null): Promise<{ Id: string; Warnings: string[] }> {
    checkCreateBody(body);
    checkLogConfig(body.HostConfig?.LogConfig);
    const name = nameParam ? canonicalName(nameParam) : generateName((n) => this.store.resolve(n) !== undefined);
    const owner = this.store.resolve(name);
    if (owner && owner.Name === name) {
      throw conflict(`Conflict. The container name "${name}" is already in use by container "${owner.Id}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
    const image = await findImage(this.backend, body.Image ?? "");
    const id = newContainerId();
    const config = mergedConfig(body, image.config, id);
    const args = commandOf(config);
    const host = defaultedHostConfig(body.HostConfig);
    const network = this.networkOf(host.NetworkMode ?? "", id, name, body);
    const warnings: string[] = [];
    const svc = this.backend.images;
    const lease = await createLease(svc);
    const dir = containerDir(this.backend.options.root, id);
    let containerMade = false;
    let volumesMade: string[] = [];
    try {
      const chainId = await unpackedChainId(this.backend, image, lease);
      const mounts = await prepareRootfs(svc.snapshots, { namespace: this.backend.namespace, snapshotter, key: id, parent: chainId, lease });
      const user = config.User ? await userInRootfs(mounts, config.User) : { uid: 0, gid: 0 };
      const files = network.kind === "host" ? undefined : writeContainerFiles(dir, config.Hostname || id.slice(0, 12));
      const volumes = resolveContainerVolumes(volumeStore(this.backend), config, host, volumesFromSources(this.backend.store, host));
      volumesMade = volumes.created;
      await fillNewVolumes(mounts, volumes.points, volumes.created);
      for (const made of volumes.created) this.backend.events.publish("volume", "create", made, { driver: "local" });
      const spec = buildSpec({ namespace: this.backend.namespace, id, config, host, user, network, ...(files ? { files } : {}), extraMounts: volumes.mounts });
      await this.backend.containers.create(
        {
          container: {
            id,
            image: image.name,
            runtime: { name: runtimeName, options: undefined },
            spec: { typeUrl: specType, value: Buffer.from(JSON.stringify(spec)) },
            snapshotter,
            snapshotKey: id,
            labels: { ...(config.Labels ?? {}) },
            extensions: {},
          },
        },
        this.backend.call(lease),
      );
      containerMade = true;
      const record: ContainerRecord = {
        Id: id,
        Name: name,
        Created: now(),
        Path: args[0]!,
        Args: args.slice(1),
        Config: config,
        HostConfig: host,
        NetworkingConfig: body.NetworkingConfig ?? null,
        Image: image.id,
        State: initialState(),
        RestartCount: 0,
        LogPath: logPathOf(this.backend.options.root, id),
      };
      Object.assign(record, { Mounts: volumes.points, AnonymousVolumes: volumes.anonymous });
      this.store.insert(record);
      this.runtime(id).prepareMounts(mounts);
      this.publish(record, "create");
      return { Id: id, Warnings: warnings };
    } catch (err) {
      if (containerMade) await this.backend.containers.delete({ id }, this.backend.call()).catch(() => undefined);
      await svc.snapshots.remove({ snapshotter, key: id }, this.backend.call(lease)).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      await networkManager(this.backend).release(id).catch(() => undefined);
      for (const made of volumesMade) {
        try {
          volumeStore(this.backend).remove(made);
        } catch {
          // already gone
        }
      }
      throw err;
    } finally {
      await deleteLease(svc, lease).catch(() => undefined);
    }
  }

  private networkOf(mode: string, id: string, name: string, body: CreateBody): NetworkMode {
    const choice = networkModeOf(mode);
    if (choice.mode === "host") return { kind: "host" };
    if (choice.mode === "private") return { kind: "private" };
    if (choice.mode === "network") {
      const endpoints = (body.NetworkingConfig as { EndpointsConfig?: Record<string, EndpointSettings> } | null | undefined)?.EndpointsConfig;
      const extraHosts = (body.HostConfig as { ExtraHosts?: string[] | null } | undefined)?.ExtraHosts;
      return networkManager(this.backend).planContainer(id, name, choice.ref, endpoints, { hostsPath: hostsPathOf(this.backend.options.root, id), hostname: body.Hostname || id.slice(0, 12), extraHosts });
    }
    const other = this.get(choice.ref);
    if (!other.State.Running || !other.State.Pid) throw conflict(`cannot join network of a non running container: ${other.Id}`);
    return { kind: "join", path: `/proc/${other.State.Pid}/ns/net` };
  }

  // ---- start -------------------------------------------------------------------------

  /** false: it was running already (Docker's 304). */
  async start(ref: string): Promise<boolean> {
    const record = this.get(ref);
    const rt = this.runtime(record.Id);
    if (rt.removing) throw conflict(`removal of container ${record.Id} is already in progress`);
    if (record.State.Running && !record.State.Restarting) return false;
    if (rt.starting) return false;
    clearTimeout(rt.restartTimer);
    rt.restartTimer = undefined;
    rt.restartDelayMs = 100;
    record.ManuallyStopped = false;
    record.State.Restarting = false;
    this.store.update(record);
    await this.startTask(record, false);
    return true;
  }

  /** Runs the container's task; on failure records the failure (and auto-removes) before throwing. */
  private async startTask(record: ContainerRecord, byPolicy: boolean): Promise<void> {
    const id = record.Id;
    const rt = this.runtime(id);
    rt.starting = true;
    const call = this.backend.call();
    try {
      // The mounts create got, for the first start; the snapshotter's answer otherwise.
      const mounts = rt.takePreparedMounts() ?? (await this.backend.images.snapshots.mounts({ snapshotter, key: id }, call)).mounts;
      mkdirSync(containerDir(this.backend.options.root, id), { recursive: true });
      const fifo = record.Config.OpenStdin ? stdinFifoOf(this.backend.options.state, id) : "";
      if (fifo) rt.stdinWriter(fifo);
      await networkManager(this.backend).setUp(record);
      const logUri = `${pathToFileURL(record.LogPath).href}?format=json`;
      let pid: number;
      try {
        const request = { containerId: id, rootfs: mounts, stdin: fifo, stdout: logUri, stderr: "", terminal: Boolean(record.Config.Tty), checkpoint: undefined, options: undefined, runtimePath: "" };
        try {
          await this.backend.tasks.create(request, call);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
          // A task left from a run whose end this engine never saw: gone, then made anew.
          await this.backend.tasks.delete({ containerId: id }, call).catch(() => undefined);
          await this.backend.tasks.create(request, call);
        }
        try {
          pid = (await this.backend.tasks.start({ containerId: id, execId: "" }, call)).pid;
        } catch (err) {
          await this.backend.tasks.delete({ containerId: id }, call).catch(() => undefined);
          throw err;
        }
      } catch (err) {
        throw runtimeError(err);
      }
      const fresh = this.store.get(id) ?? record;
      rt.oomAnnounced = false;
      fresh.State = { ...fresh.State, Status: "running", Running: true, Paused: false, Restarting: false, OOMKilled: false, Dead: false, Pid: pid, ExitCode: 0, Error: "", StartedAt: now(), FinishedAt: fresh.State.FinishedAt };
      this.store.update(fresh);
      Object.assign(record, fresh);
      this.publish(fresh, "start");
      // A kill right after runc start may have been announced before this run was recorded as running.
      if (oomKilledIn(this.shimDir(id))) this.noteOom(id);
      this.watch(id);
      this.rotation.watch(fresh);
      if (rt.closeStdinAfterStart) {
        rt.closeStdinAfterStart = false;
        await this.closeStdin(id);
      }
    } catch (err) {
      await this.recordStartFailure(record, err, byPolicy);
      throw err;
    } finally {
      rt.starting = false;
    }
  }

  private async recordStartFailure(record: ContainerRecord, err: unknown, byPolicy: boolean): Promise<void> {
    const rt = this.runtime(record.Id);
    rt.closeStdinWriter();
    const message = err instanceof EngineError ? err.message : errorMessage(err);
    const exitCode = startFailureCode(message);
    const fresh = this.store.get(record.Id);
    if (!fresh) return;
    fresh.State = { ...fresh.State, Status: "exited", Running: false, Paused: false, Restarting: false, Pid: 0, ExitCode: exitCode, Error: message, FinishedAt: now() };
    this.store.update(fresh);
    rt.events.emit("exit", { exitCode });
    if (fresh.HostConfig.AutoRemove && !rt.removing) {
      await this.removeNow(fresh, true).catch((e: Error) => this.backend.log.warn({ id: fresh.Id, err: e.message }, "auto-removal failed"));
    } else if (byPolicy && this.shouldRestart(fresh, exitCode)) {
      this.scheduleRestart(fresh);
    }
  }

  async closeStdin(id: string): Promise<void> {
    const rt = this.runtime(id);
    await rt.stdinFlushed();
    await this.backend.tasks.closeIO({ containerId: id, execId: "", stdin: true }, this.backend.call()).catch(() => undefined);
  }

  /** The client ended its stdin: close the container's (now, or once its task exists). */
  async stdinEnded(id: string): Promise<void> {
    const record = this.store.get(id);
    if (!record) return;
    const rt = this.runtime(id);
    if (record.State.Running && !rt.starting) await this.closeStdin(id);
    else rt.closeStdinAfterStart = true;
  }

  // ---- the exit watch ----------------------------------------------------------------

  /** Watches the task until it exits, then records the exit (once per run). */
  private watch(id: string): void {
    const rt = this.runtime(id);
    if (rt.watching) return;
    rt.watching = true;
    void (async () => {
      let exitCode = 255;
      let finishedAt = now();
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          const exit = await this.backend.tasks.wait({ containerId: id, execId: "" }, this.backend.call(undefined, this.aborter.signal));
          exitCode = exit.exitStatus;
          if (exit.exitedAt) finishedAt = new Date(Number(exit.exitedAt.seconds) * 1000 + Math.floor(exit.exitedAt.nanos / 1e6)).toISOString();
          break;
        } catch (err) {
          if (this.closed) return;
          if (isNotFound(err)) break;
          // The tasks service restarts; its task survives in the shim.
          this.backend.log.debug({ id, err: errorMessage(err) }, "waiting for a task failed; retrying");
          await sleep(Math.min(2000, 100 * 2 ** attempt));
        }
      }
      if (this.closed) return;
      await shimGone(this.shimDir(id));
      rt.watching = false;
      await this.recordExit(id, exitCode, finishedAt).catch((err: Error) => this.backend.log.error({ id, err: err.message }, "recording an exit failed"));
    })();
  }

  private async recordExit(id: string, exitCode: number, finishedAt: string): Promise<void> {
    const rt = this.runtime(id);
    // Read before the task's delete removes the shim's state dir, and with it the record.
    const oomKilled = oomKilledIn(this.shimDir(id));
    this.rotation.unwatch(id);
    rt.closeStdinWriter();
    await this.backend.tasks.delete({ containerId: id }, this.backend.call()).catch((err) => {
      if (!isNotFound(err)) this.backend.log.warn({ id, err: errorMessage(err) }, "deleting an exited task failed");
    });
    const record = this.store.get(id);
    if (!record) return;
    const restart = !rt.removing && !record.HostConfig.AutoRemove && this.shouldRestart(record, exitCode);
    const ranMs = Date.parse(finishedAt) - Date.parse(record.State.StartedAt);
    record.State = {
      ...record.State,
      Status: restart ? "restarting" : "exited",
      Running: restart,
      Restarting: restart,
      Paused: false,
      Pid: 0,
      ExitCode: exitCode,
      OOMKilled: record.State.OOMKilled || oomKilled,
      FinishedAt: finishedAt,
    };
    this.store.update(record);
    if (oomKilled && !rt.oomAnnounced) {
      rt.oomAnnounced = true;
      this.publish(record, "oom");
    }
    this.publish(record, "die", { exitCode: String(exitCode) });
    // Before "exit" is told: a stop or wait that returns finds the network already given back.
    if (!restart && !record.HostConfig.AutoRemove && !rt.removing) {
      await networkManager(this.backend).stopped(id).catch((err: Error) => this.backend.log.warn({ id, err: err.message }, "releasing a stopped container's networks failed"));
    }
    rt.events.emit("exit", { exitCode });
    if (record.HostConfig.AutoRemove && !rt.removing) {
      await this.removeNow(record, true);
    } else if (restart) {
      // A run that lasted a while starts the backoff over, as Docker's restart manager does.
      if (ranMs >= 10_000) rt.restartDelayMs = 100;
      this.scheduleRestart(record);
    }
  }

  private shouldRestart(record: ContainerRecord, exitCode: number): boolean {
    if (record.ManuallyStopped) return false;
    const policy = record.HostConfig.RestartPolicy;
    switch (policy?.Name) {
      case "always":
      case "unless-stopped":
        return true;
      case "on-failure": {
        const max = policy.MaximumRetryCount ?? 0;
        return exitCode !== 0 && (max <= 0 || record.RestartCount < max);
      }
      default:
        return false;
    }
  }

  private scheduleRestart(record: ContainerRecord): void {
    const rt = this.runtime(record.Id);
    if (this.closed) return;
    const delay = rt.restartDelayMs;
    rt.restartDelayMs = Math.min(60_000, delay * 2);
    clearTimeout(rt.restartTimer);
    rt.restartTimer = setTimeout(() => {
      rt.restartTimer = undefined;
      const fresh = this.store.get(record.Id);
      if (!fresh || !fresh.State.Restarting || rt.removing || this.closed) return;
      fresh.RestartCount += 1;
      this.store.update(fresh);
      this.startTask(fresh, true).catch((err: Error) => this.backend.log.warn({ id: fresh.Id, err: err.message }, "restarting a container failed"));
    }, delay);
  }

  // ---- stop, kill, restart, pause ----------------------------------------------------

  /** Sends a signal to the init; `kill` is published for it (as Docker does for stop's signals too), WINCH aside. */
  private async signalTask(id: string, signal: number): Promise<void> {
    try {
      await this.backend.tasks.kill({ containerId: id, execId: "", signal, all: false }, this.backend.call());
    } catch (err) {
      // Gone already: the watch records the exit.
      if (!isNotFound(err)) throw err;
      return;
    }
    const record = this.store.get(id);
    if (record && signal !== SIGWINCH) this.publish(record, "kill", { signal: String(signal) });
  }

  /** Stops a restarting container's pending restart; true if there was one. */
  private cancelRestart(record: ContainerRecord): boolean {
    if (!record.State.Restarting) return false;
    const rt = this.runtime(record.Id);
    clearTimeout(rt.restartTimer);
    rt.restartTimer = undefined;
    if (rt.starting) return false;
    record.State = { ...record.State, Status: "exited", Running: false, Restarting: false };
    this.store.update(record);
    return true;
  }

  /** false: it was not running (Docker's 304). */
  async stop(ref: string, timeoutSeconds: number | undefined): Promise<boolean> {
    const record = this.get(ref);
    if (!isRunningState(record.State)) return false;
    record.ManuallyStopped = true;
    this.store.update(record);
    if (this.cancelRestart(record)) {
      this.publish(record, "stop");
      return true;
    }
    await this.terminate(record, parseSignal(record.Config.StopSignal || "SIGTERM"), timeoutSeconds ?? record.Config.StopTimeout ?? 10);
    this.publish(record, "stop");
    return true;
  }

  /** Sends `signal`, then SIGKILL after `timeoutSeconds` (negative: wait for ever), and waits for the run to end. */
  private async terminate(record: ContainerRecord, signal: number, timeoutSeconds: number): Promise<void> {
    const rt = this.runtime(record.Id);
    const end = rt.nextEnd();
    try {
      if (!record.State.Running || rt.starting) {
        // A start in flight: its task appears shortly; wait for it before signalling.
        for (let i = 0; i < 100 && rt.starting; i++) await sleep(20);
      }
      const current = this.store.get(record.Id);
      if (!current?.State.Running || current.State.Restarting) return;
      if (signal !== SIGKILL) {
        await this.signalTask(record.Id, signal);
        if (current.State.Paused) await this.resume(record.Id);
        if (timeoutSeconds < 0) {
          await end.promise;
          return;
        }
        const ended = await Promise.race([end.promise.then(() => true), sleep(timeoutSeconds * 1000).then(() => false)]);
        if (ended) return;
      }
      await this.signalTask(record.Id, SIGKILL);
      if (current.State.Paused) await this.resume(record.Id);
      await Promise.race([end.promise, sleep(30_000)]);
    } finally {
      end.cancel();
    }
  }

  private async resume(id: string): Promise<void> {
    await this.backend.tasks.resume({ containerId: id }, this.backend.call()).catch(() => undefined);
  }

  async kill(ref: string, signalText: string | null): Promise<void> {
    const record = this.get(ref);
    const signal = parseSignal(signalText || "KILL");
    if (!record.State.Running || record.State.Restarting) {
      if (signal === SIGWINCH) return;
      throw conflict(`Cannot kill container: ${ref}: Container ${record.Id} is not running`);
    }
    const stopSignal = parseSignal(record.Config.StopSignal || "SIGTERM");
    if (signal === SIGKILL || signal === stopSignal) {
      record.ManuallyStopped = true;
      this.store.update(record);
    }
    if (signal === SIGKILL) {
      await this.terminate(record, SIGKILL, 0);
    } else {
      await this.signalTask(record.Id, signal);
    }
  }

  async restart(ref: string, timeoutSeconds: number | undefined): Promise<void> {
    const record = this.get(ref);
    if (isRunningState(record.State)) {
      if (!this.cancelRestart(record)) await this.terminate(record, parseSignal(record.Config.StopSignal || "SIGTERM"), timeoutSeconds ?? record.Config.StopTimeout ?? 10);
    }
    await this.start(record.Id);
    this.publish(this.get(record.Id), "restart");
  }

  async pause(ref: string): Promise<void> {
    const record = this.get(ref);
    if (!record.State.Running || record.State.Restarting) throw conflict(`Container ${record.Id} is not running`);
    if (record.State.Paused) throw conflict(`Container ${record.Id} is already paused`);
    await this.backend.tasks.pause({ containerId: record.Id }, this.backend.call());
    record.State = { ...record.State, Status: "paused", Paused: true };
    this.store.update(record);
    this.publish(record, "pause");
  }

  async unpause(ref: string): Promise<void> {
    const record = this.get(ref);
    if (!record.State.Paused) throw conflict(`Container ${record.Id} is not paused`);
    await this.backend.tasks.resume({ containerId: record.Id }, this.backend.call());
    record.State = { ...record.State, Status: "running", Paused: false };
    this.store.update(record);
    this.publish(record, "unpause");
  }

  rename(ref: string, newName: string | null): void {
    const record = this.get(ref);
    if (!newName) throw badRequest("Neither old nor new names may be empty");
    const name = canonicalName(newName);
    if (name === record.Name) throw badRequest(`Renaming a container with the same name as its current name`);
    const oldName = record.Name;
    record.Name = name;
    this.store.update(record);
    this.publish(record, "rename", { oldName });
  }

  async resize(ref: string, height: number, width: number): Promise<void> {
    const record = this.get(ref);
    if (!record.State.Running) return;
    try {
      await this.backend.tasks.resizePty({ containerId: record.Id, execId: "", width, height }, this.backend.call());
    } catch (err) {
      // The process is not there yet (or gone): the CLI retries, and a late size is harmless.
      if (!(err instanceof ClientError)) throw err;
      return;
    }
    this.publish(record, "resize", { height: String(height), width: String(width) });
  }

  // ---- remove ------------------------------------------------------------------------

  /** removeVolumes: `rm -v`, the container's anonymous volumes go too (auto-removal does the same). */
  async remove(ref: string, force: boolean, removeVolumes = false): Promise<void> {
    const record = this.get(ref);
    const rt = this.runtime(record.Id);
    if (rt.removing) throw conflict(`removal of container ${record.Id} is already in progress`);
    if (isRunningState(record.State) && !force) {
      throw conflict(`You cannot remove a running container ${record.Id}. Stop the container before attempting removal or force remove`);
    }
    await this.removeNow(record, removeVolumes);
  }

  private async removeNow(record: ContainerRecord, removeVolumes = false): Promise<void> {
    const id = record.Id;
    const rt = this.runtime(id);
    rt.removing = true;
    try {
      clearTimeout(rt.restartTimer);
      if (isRunningState(record.State) && !this.cancelRestart(record)) await this.terminate(record, SIGKILL, 0);
      const call = this.backend.call();
      // The exit watch deleted the task; one is left only after an unclean end.
      await this.backend.containers.delete({ id }, call).catch(async (err) => {
        if (isNotFound(err)) return;
        await this.backend.tasks.delete({ containerId: id }, call).catch(() => undefined);
        await this.backend.containers.delete({ id }, call).catch((again) => {
          if (!isNotFound(again)) throw again;
        });
      });
      await this.backend.images.snapshots.remove({ snapshotter, key: id }, call).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      await networkManager(this.backend).release(id).catch((err: Error) => this.backend.log.warn({ id, err: err.message }, "releasing the container's networks failed"));
      const last = this.store.get(id) ?? record;
      this.store.delete(id);
      rt.closeStdinWriter();
      this.rotation.unwatch(id);
      rmSync(containerDir(this.backend.options.root, id), { recursive: true, force: true });
      rmSync(stdinFifoOf(this.backend.options.state, id), { force: true });
      if (removeVolumes) removeAnonymousVolumes(this.backend, last);
      this.publish(last, "destroy");
      rt.events.emit("removed", { exitCode: last.State.ExitCode });
      this.runtimes.delete(id);
    } catch (err) {
      rt.removing = false;
      throw err;
    }
  }

  // ---- engine start ------------------------------------------------------------------

  /**
   * Brings records and tasks together after the engine (re)starts: a running task is
   * watched again; one that ended while no engine ran gets its exit recorded and its
   * restart policy or auto-removal applied; a record whose task vanished counts as exited.
   */
  async reconcile(): Promise<void> {
    const startedAt = Date.now();
    const records = this.store.list();
    await this.removeOrphans(new Set(records.map((r) => r.Id)), startedAt).catch((err) => this.backend.log.warn({ err: errorMessage(err) }, "removing half-created containers failed"));
    if (records.length === 0) return;
    let tasks;
    for (let attempt = 0; ; attempt++) {
      try {
        tasks = (await this.backend.tasks.list({ filter: "" }, this.backend.call())).tasks;
        break;
      } catch (err) {
        // The tasks service may still be restoring its shims at boot.
        if (attempt >= 8 || this.closed) throw err;
        await sleep(100 * 2 ** attempt);
      }
    }
    const byId = new Map(tasks.map((t) => [t.id, t]));
    for (const record of records) {
      const task = byId.get(record.Id);
      try {
        if (task && (task.status === TaskStatus.RUNNING || task.status === TaskStatus.PAUSED)) {
          record.State = { ...record.State, Status: task.status === TaskStatus.PAUSED ? "paused" : "running", Running: true, Paused: task.status === TaskStatus.PAUSED, Restarting: false, Pid: task.pid };
          this.store.update(record);
          this.watch(record.Id);
          this.rotation.watch(record);
        } else if (task && task.status === TaskStatus.STOPPED) {
          this.watch(record.Id);
        } else if (task) {
          // Created but never started: the engine died in between.
          await this.backend.tasks.delete({ containerId: record.Id }, this.backend.call()).catch(() => undefined);
          await this.recordExit(record.Id, 128, now());
        } else if (isRunningState(record.State)) {
          await this.recordExit(record.Id, record.State.Restarting ? record.State.ExitCode : 255, now());
        } else if (record.HostConfig.AutoRemove && record.State.Status === "exited") {
          await this.removeNow(record, true);
        }
      } catch (err) {
        this.backend.log.warn({ id: record.Id, err: errorMessage(err) }, "reconciling a container failed");
      }
    }
  }

  /**
   * containerd containers of the engine's namespace that no record names, made before this
   * engine started: a create that died between the containerd container and the record.
   * They go with their task and snapshot (a create in flight now is younger, and kept).
   */
  private async removeOrphans(known: Set<string>, before: number): Promise<void> {
    const call = this.backend.call();
    const { containers } = await this.backend.containers.list({ filters: [] }, call);
    for (const c of containers) {
      if (known.has(c.id) || (millisFromTimestamp(c.createdAt) ?? 0) >= before) continue;
      this.backend.log.warn({ id: c.id }, "removing a container whose create did not finish");
      await this.backend.tasks.kill({ containerId: c.id, execId: "", signal: SIGKILL, all: true }, call).catch(() => undefined);
      for (let i = 0; i < 50; i++) {
        const deleted = await this.backend.tasks.delete({ containerId: c.id }, call).then(
          () => true,
          (err) => isNotFound(err),
        );
        if (deleted) break;
        await sleep(100);
      }
      await this.backend.containers.delete({ id: c.id }, call).catch(() => undefined);
      if (c.snapshotKey) await this.backend.images.snapshots.remove({ snapshotter: c.snapshotter || snapshotter, key: c.snapshotKey }, call).catch(() => undefined);
      rmSync(containerDir(this.backend.options.root, c.id), { recursive: true, force: true });
    }
  }
}

/** A runtime failure worded as Docker's daemon words it (the CLI reads 126/127 from the text). */
function runtimeError(err: unknown): EngineError {
  const message = errorMessage(err).replace(/^OCI runtime failed: /, "");
  return new EngineError(400, `failed to create shim task: OCI runtime create failed: ${message}: unknown`);
}
