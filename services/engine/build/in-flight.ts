// What a build has in flight, kept in its job's record (the job's progress in Redis) as it
// changes: the active snapshots it prepared and has not yet committed
// or removed, the leases it holds, and the step it is at. A snapshot or a lease is
// written to the record before it is made (so a kill between the two leaves a record of
// something that may not exist, never the other way round). A RUN's process needs no
// record: its bundle and runc's state are in the build's directory (run-process.ts).
// releaseInFlight removes all of it: at the end of every build, and for a build a killed
// daemon left (recovery.ts).
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { isNotFound } from "../../../core/grpc-status.ts";
import type { Logger } from "../../../core/log.ts";
import { unmountAll } from "../../../core/mounts.ts";
import type { Backend } from "../backend.ts";
import type { ContainerManager } from "../containers/lifecycle.ts";
import { SIGKILL } from "../containers/signals.ts";
import { forgetContext, removeContext } from "./context.ts";
import { moveToTrash } from "./work-dir.ts";
import { releaseRuns, runcRootOf } from "./run-process.ts";
import { Status as TaskStatus } from "../../../core/gen/containerd/types/task/task.ts";

/** The label a build job puts on its RUN containers and leases: the job's id. */
export const buildJobLabel = "berth.build.job";

export interface InFlight {
  /** RUN containers, which builds made before RUN steps ran without one (removed as they were). */
  containers: string[];
  snapshots: { snapshotter: string; key: string }[];
  leases: string[];
}

/** A build job's progress: the step it is at and what it has in flight. */
export interface BuildProgress {
  step: string;
  inFlight: InFlight;
}

export function emptyProgress(): BuildProgress {
  return { step: "", inFlight: { containers: [], snapshots: [], leases: [] } };
}

/**
 * The record of one build, written through `save` (job.updateProgress) in the order of the
 * changes. One write at a time; the changes made while one is under way go out together in
 * the next, which writes the state as it is when it starts: a snapshot's record then waits
 * behind at most the write under way, not also behind each Step line queued before it.
 */
export class InFlightRecord {
  private readonly state = emptyProgress();
  private writing: Promise<void> = Promise.resolve();
  /** The write queued behind the one under way, not started yet: later changes join it. */
  private next: Promise<void> | undefined;
  private readonly save: (progress: BuildProgress) => Promise<void>;
  private readonly log: Logger;

  constructor(save: (progress: BuildProgress) => Promise<void>, log: Logger) {
    this.save = save;
    this.log = log;
  }

  get current(): BuildProgress {
    return structuredClone(this.state);
  }

  /** Applies `change` and queues the write; resolves once a write holding this state (or a later one) is stored. */
  private change(change: (state: BuildProgress) => void): Promise<void> {
    change(this.state);
    if (this.next) return this.next;
    const written = this.writing.then(() => {
      // From here on a change needs a write of its own: this one takes the state now.
      this.next = undefined;
      return this.save(structuredClone(this.state));
    });
    this.next = written;
    // A failed write fails the callers that wait for it, not the writes after it.
    this.writing = written.catch(() => undefined);
    return written;
  }

  /** For a change nothing waits on: a failed write is logged. */
  private changeLater(change: (state: BuildProgress) => void): void {
    this.change(change).catch((err: Error) => this.log.warn({ err: err.message }, "cannot record a build's progress"));
  }

  step(text: string): void {
    this.changeLater((s) => (s.step = text));
  }

  addSnapshot(snapshotter: string, key: string): Promise<void> {
    return this.change((s) => s.inFlight.snapshots.push({ snapshotter, key }));
  }

  dropSnapshot(snapshotter: string, key: string): void {
    this.changeLater((s) => (s.inFlight.snapshots = s.inFlight.snapshots.filter((x) => x.snapshotter !== snapshotter || x.key !== key)));
  }

  addLease(id: string): Promise<void> {
    return this.change((s) => s.inFlight.leases.push(id));
  }

  dropLease(id: string): void {
    this.changeLater((s) => (s.inFlight.leases = s.inFlight.leases.filter((x) => x !== id)));
  }

  /** Resolves once every change so far is stored (or failed). */
  flush(): Promise<void> {
    return this.writing;
  }
}

type AnyCall = (request: never, options?: unknown) => Promise<unknown>;

/** `client` with some of its methods replaced. */
function intercept<T extends object>(client: T, methods: Record<string, (original: AnyCall) => AnyCall>): T {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      const wrap = typeof prop === "string" ? methods[prop] : undefined;
      return wrap && typeof value === "function" ? wrap((value as AnyCall).bind(target)) : value;
    },
  });
}

/** Runs `call`; whether it succeeded or found nothing to remove, `gone` runs (other errors are thrown). */
async function removing<R>(call: () => Promise<R>, gone: () => void): Promise<R | undefined> {
  try {
    const result = await call();
    gone();
    return result;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    gone();
    throw err;
  }
}

/**
 * The backend a build runs on: the same services, but every snapshot it prepares and
 * every lease it opens is in the record (leases also labelled with the job) until it is
 * committed, removed or deleted.
 */
export function trackedBackend(backend: Backend, record: InFlightRecord, jobId: string): Backend {
  const images = backend.images;
  type SnapshotRequest = { snapshotter: string; key: string };
  const snapshots = intercept(images.snapshots, {
    prepare: (original) => (async (request: SnapshotRequest, options?: unknown) => {
      await record.addSnapshot(request.snapshotter, request.key);
      return original(request as never, options);
    }) as AnyCall,
    view: (original) => (async (request: SnapshotRequest, options?: unknown) => {
      await record.addSnapshot(request.snapshotter, request.key);
      return original(request as never, options);
    }) as AnyCall,
    commit: (original) => (async (request: SnapshotRequest, options?: unknown) => {
      const result = await original(request as never, options);
      record.dropSnapshot(request.snapshotter, request.key);
      return result;
    }) as AnyCall,
    remove: (original) => ((request: SnapshotRequest, options?: unknown) => removing(() => original(request as never, options), () => record.dropSnapshot(request.snapshotter, request.key))) as AnyCall,
  });
  type LeaseRequest = { id: string; labels?: Record<string, string> };
  const leases = intercept(images.leases, {
    create: (original) => (async (request: LeaseRequest, options?: unknown) => {
      await record.addLease(request.id);
      return original({ ...request, labels: { ...request.labels, [buildJobLabel]: jobId } } as never, options);
    }) as AnyCall,
    delete: (original) => ((request: LeaseRequest, options?: unknown) => removing(() => original(request as never, options), () => record.dropLease(request.id))) as AnyCall,
  });
  return Object.create(backend, { images: { value: { ...images, snapshots, leases }, enumerable: true } }) as Backend;
}

/** Mount points at or under `dir` now, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const base = resolve(dir);
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unescape)
    .filter((p) => p === base || p.startsWith(`${base}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Removes a RUN container that may be running. After a restart nothing of this manager's
 * watches its task (the containers routes' manager does), so the task is killed and
 * waited for here, and the record marked exited, before the manager removes the rest.
 */
async function removeRunContainer(backend: Backend, manager: ContainerManager, id: string): Promise<void> {
  const call = backend.call();
  await backend.tasks.kill({ containerId: id, execId: "", signal: SIGKILL, all: true }, call).catch(() => undefined);
  for (let i = 0; i < 200; i++) {
    const stopped = await backend.tasks.get({ containerId: id, execId: "" }, call).then(
      ({ process }) => !process || process.status === TaskStatus.STOPPED,
      (err) => isNotFound(err),
    );
    if (stopped) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const record = backend.store.get(id);
  if (record?.State.Running) backend.store.update({ ...record, State: { ...record.State, Status: "exited", Running: false, Paused: false, Restarting: false, Pid: 0, ExitCode: 137 } });
  await manager.remove(id, true);
}

export interface Leftovers {
  jobId: string;
  inFlight: InFlight;
  /** The build's directory (context, mount points). */
  dir: string | undefined;
  /**
   * Also look for containers and leases by the job's label: after a crash (the record is
   * written ahead of every snapshot and lease, but a RUN container's id only after its
   * create). A build that ended in this process knows all it made.
   */
  byLabel: boolean;
  /** The daemon's root: the directory is moved to its trash (work-dir.ts) and removed by the function returned. */
  trashIn?: string;
}

/** Removes a build's directory, with its context (in memory: a link in it). */
export function removeBuildDir(dir: string): void {
  removeContext(join(dir, "context"));
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Removes what a build had in flight: its RUN processes (with their cgroups and runc's
 * state), RUN containers of older builds, the mounts under its directory, its active snapshots, its leases, then the
 * directory. Everything is tried; the first failure is thrown after.
 */
export async function releaseInFlight(backend: Backend, manager: ContainerManager, leftovers: Leftovers): Promise<(() => void) | undefined> {
  const failures: Error[] = [];
  let removal: (() => void) | undefined;
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      if (isNotFound(err) || (err as { status?: number }).status === 404) return;
      failures.push(new Error(`${what}: ${(err as Error).message}`));
    }
  };
  const containers = new Set(leftovers.byLabel ? backend.store.list().filter((r) => r.Config.Labels?.[buildJobLabel] === leftovers.jobId).map((r) => r.Id) : []);
  for (const id of leftovers.inFlight.containers) containers.add(id);
  for (const id of containers) await attempt(`removing container ${id}`, () => removeRunContainer(backend, manager, id));
  if (leftovers.dir) {
    // Before the mounts: a RUN's processes keep its rootfs busy until they are gone.
    await attempt("removing the build's RUN processes", () => releaseRuns(runcRootOf(leftovers.dir!)));
    for (const point of mountsUnder(leftovers.dir)) await attempt(`unmounting ${point}`, () => unmountAll(point, { detachBusy: true }));
  }
  const call = backend.call();
  for (const s of [...leftovers.inFlight.snapshots].reverse()) {
    await attempt(`removing snapshot ${s.key}`, () => backend.images.snapshots.remove({ snapshotter: s.snapshotter, key: s.key }, call));
  }
  const leases = new Set(leftovers.inFlight.leases);
  if (leftovers.byLabel) await attempt("listing the build's leases", async () => {
    const { leases: labelled } = await backend.images.leases.list({ filters: [`labels."${buildJobLabel}"==${leftovers.jobId}`] }, call);
    for (const lease of labelled) leases.add(lease.id);
  });
  for (const id of leases) await attempt(`deleting lease ${id}`, () => backend.images.leases.delete({ id, sync: false }, call));
  if (leftovers.dir) {
    // Never recursively delete through a mount: that would empty a snapshot.
    const still = mountsUnder(leftovers.dir);
    if (still.length > 0) failures.push(new Error(`${leftovers.dir} still has mounts (${still.join(", ")}); left in place`));
    else if (leftovers.trashIn) {
      // Its digests are kept by the context's path, which the move changes.
      forgetContext(join(leftovers.dir, "context"));
      const moved = moveToTrash(leftovers.trashIn, leftovers.dir);
      removal = () => removeBuildDir(moved);
    } else removeBuildDir(leftovers.dir);
  }
  if (failures.length > 0) throw failures[0]!;
  return removal;
}
