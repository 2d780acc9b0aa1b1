// What exec, stats and archives need to know of a container: its engine record (404 with
// Docker's wording when unknown), whether its task runs (from the tasks service, which is
// the truth even when the record lags), its OCI spec, and where its rootfs is mounted.
import { join } from "node:path";
import { ClientError, Status as GrpcStatus } from "nice-grpc-common";
import { Status } from "../../../core/gen/containerd/types/task/task.ts";
import type { Backend } from "../backend.ts";
import { conflict, notFoundError, serverError } from "../http.ts";
import type { ContainerRecord } from "../store.ts";

export function containerOr404(backend: Backend, ref: string): ContainerRecord {
  const record = backend.store.resolve(ref);
  if (!record) throw notFoundError(`No such container: ${ref}`);
  return record;
}

export type TaskState = "running" | "paused" | "created" | "stopped" | "none";

/** The state of the container's task (its init process), "none" when it has no task. */
export async function taskState(backend: Backend, id: string): Promise<{ state: TaskState; pid: number }> {
  try {
    const { process } = await backend.tasks.get({ containerId: id, execId: "" }, backend.call());
    const status = process?.status;
    const pid = process?.pid ?? 0;
    if (status === Status.RUNNING) return { state: "running", pid };
    if (status === Status.PAUSED || status === Status.PAUSING) return { state: "paused", pid };
    if (status === Status.CREATED) return { state: "created", pid };
    return { state: "stopped", pid };
  } catch (err) {
    if (err instanceof ClientError && err.code === GrpcStatus.NOT_FOUND) return { state: "none", pid: 0 };
    throw err;
  }
}

/** Docker's 409s for a container an exec cannot run in. */
export async function requireRunning(backend: Backend, record: ContainerRecord): Promise<void> {
  const { state } = await taskState(backend, record.Id);
  if (state === "paused") throw conflict(`Container ${record.Id} is paused, unpause the container before exec`);
  if (state !== "running") throw conflict(`Container ${record.Id} is not running`);
}

export interface OciProcess {
  terminal?: boolean;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  args?: string[];
  env?: string[];
  cwd?: string;
  [key: string]: unknown;
}

export interface ContainerInfo {
  spec: { process?: OciProcess; linux?: { cgroupsPath?: string }; [key: string]: unknown };
  snapshotter: string;
  snapshotKey: string;
  image: string;
}

/** The containerd-level container: its OCI spec and its snapshot. */
export async function containerInfo(backend: Backend, id: string): Promise<ContainerInfo> {
  const { container } = await backend.containers.get({ id }, backend.call());
  if (!container) throw serverError(`container ${id} has no containerd record`);
  let spec: ContainerInfo["spec"] = {};
  if (container.spec?.value && container.spec.value.length > 0) {
    try {
      spec = JSON.parse(Buffer.from(container.spec.value).toString("utf8")) as ContainerInfo["spec"];
    } catch (err) {
      throw serverError(`the spec of container ${id} is not valid JSON: ${(err as Error).message}`);
    }
  }
  return { spec, snapshotter: container.snapshotter, snapshotKey: container.snapshotKey, image: container.image };
}

/** Where the tasks service mounts a task's rootfs (while the task exists). */
export function taskRootfs(backend: Backend, id: string): string {
  return join(backend.options.state, "shims", backend.namespace, id, "rootfs");
}

/** The attributes Docker puts on a container's events: its labels, image and name. */
export function containerEventAttributes(record: ContainerRecord, extra: Record<string, string> = {}): Record<string, string> {
  return { ...(record.Config.Labels ?? {}), image: record.Config.Image ?? "", name: record.Name.replace(/^\//, ""), ...extra };
}
