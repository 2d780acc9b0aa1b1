// A container's root filesystem on the host, for the archive, export and commit routes:
// the task's own mount while it has a task, otherwise its snapshot mounted in a temp
// dir for the time of the call (and unmounted after it, whatever happens).
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { isMountPoint, mountAll, unmountAll } from "../../../core/mounts.ts";
import type { Backend } from "../backend.ts";
import type { ContainerRecord } from "../store.ts";
import { containerInfo, taskRootfs, taskState } from "../exec/container-state.ts";

const mountsDir = (backend: Backend) => join(backend.options.state, "engine", "rootfs");

/**
 * Takes away what an engine that died mid-call left: rootfs mounts made for a call and
 * upload spools. Run once at engine start, before any call can make new ones.
 */
export async function removeStaleCallState(backend: Backend): Promise<void> {
  const parent = mountsDir(backend);
  let names: string[] = [];
  try {
    names = readdirSync(parent);
  } catch {
    // none made yet
  }
  for (const name of names) {
    const target = join(parent, name);
    try {
      await unmountAll(target, { detachBusy: true });
      rmdirSync(target);
    } catch (err) {
      backend.log.warn({ target, err: (err as Error).message }, "cannot remove a stale container rootfs mount");
    }
  }
  rmSync(join(backend.options.state, "engine", "uploads"), { recursive: true, force: true });
}

export async function withContainerRootfs<T>(backend: Backend, record: ContainerRecord, fn: (root: string) => Promise<T>): Promise<T> {
  const { state } = await taskState(backend, record.Id);
  const live = taskRootfs(backend, record.Id);
  if (state !== "none" && isMountPoint(live)) return fn(live);
  const info = await containerInfo(backend, record.Id);
  const { mounts } = await backend.images.snapshots.mounts({ snapshotter: info.snapshotter, key: info.snapshotKey }, backend.call());
  const parent = mountsDir(backend);
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const target = join(parent, `${record.Id.slice(0, 12)}-${randomBytes(6).toString("hex")}`);
  mkdirSync(target, { mode: 0o700 });
  try {
    await mountAll(mounts, target);
    return await fn(target);
  } finally {
    await unmountAll(target, { detachBusy: true }).catch((err: Error) => backend.log.warn({ target, err: err.message }, "cannot unmount a container rootfs"));
    try {
      rmdirSync(target);
    } catch (err) {
      backend.log.warn({ target, err: (err as Error).message }, "cannot remove a container rootfs mount point");
    }
  }
}
