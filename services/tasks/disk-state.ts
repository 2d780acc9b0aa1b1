// A task's init as its files tell it, without the tasks process: its state dir
// (<state>/shims/<namespace>/<id>/: task.json, shim.pid, pid, exit) and runc's
// (<state>/runc/<namespace>/<id>/exec.fifo). Restore adopts tasks from it, and berthd
// answers Tasks/Get from it (services/gateway/task-reads.ts) instead of a hop to the
// tasks process.
//
// The answer is the tasks process's only where its memory holds nothing the files lack:
//  - stopped: `exit` is written by the shim before anyone learns of the exit, and the
//    tasks process takes its status from that very file. A stop the files cannot show
//    (a shim that died without recording one: the process reports 255 with the time it
//    noticed) is not answered here: `undefined`, ask the tasks process.
//  - created / running: runc's exec FIFO exists from `runc create` until `runc start`.
//  - paused: the freezer holds the init's cgroup (what runc pause did).
//  - no state dir: no task (Create makes the dir before it records the task; Delete
//    forgets the task before it removes the dir).
// A task being created or deleted may show earlier here than in the process's memory:
// such a Get runs concurrently with that Create or Delete, and either answer is one the
// client could have seen. A tasks process that starts keeping state of an init in memory
// only must drop Get from berthd's table (task-reads.ts).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { notFound, type BerthError } from "../../core/errors.ts";
import type { Process } from "../../core/gen/containerd/types/task/task.ts";
import { inspectShimState } from "../../shim/client.ts";
import { isFrozen, type CgroupLayout } from "./cgroups.ts";
import { ProcessEntry, type Phase, type ProcessIo } from "./process-entry.ts";

/** What survives a restart beside the shim's own files (task.json, exec.json). */
export interface TaskRecord {
  namespace: string;
  id: string;
  io: ProcessIo;
}

/** The error for a task that does not exist, as containerd words it (its clients match NotFound only). */
export function noSuchTask(id: string): BerthError {
  return notFound(`no running task found: task ${id}`);
}

export function taskDirOf(state: string, namespace: string, id: string): string {
  return join(state, "shims", namespace, id);
}

export function runcRootOf(state: string, namespace: string): string {
  return join(state, "runc", namespace);
}

/**
 * What `runc state` would say of a live init, read from files instead (a runc run per
 * task made adopting 100 tasks take seconds). Created: runc's exec FIFO, which `runc
 * start` removes, is still there. Paused: the freezer holds its cgroup.
 */
export function initPhaseOnDisk(runcRoot: string, id: string, pid: number, cgroups: CgroupLayout): Phase {
  if (existsSync(join(runcRoot, id, "exec.fifo"))) return "created";
  return pid > 0 && isFrozen(cgroups, pid) ? "paused" : "running";
}

/**
 * The init of task `id` as Tasks/Get reports it, "absent" when there is no such task, or
 * undefined when the files do not settle it (a create or delete half way, a shim gone
 * without a record): then only the tasks process knows.
 */
export function initOnDisk(state: string, namespace: string, id: string, cgroups: CgroupLayout): Process | "absent" | undefined {
  const dir = taskDirOf(state, namespace, id);
  let record: TaskRecord;
  try {
    record = JSON.parse(readFileSync(join(dir, "task.json"), "utf8")) as TaskRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !existsSync(dir)) return "absent";
    return undefined;
  }
  if (typeof record?.io?.stdout !== "string") return undefined;
  const init = new ProcessEntry(id, dir, record.io);
  const shim = inspectShimState(dir);
  if (shim.state === "exited") {
    init.pid = shim.exit.pid;
    init.exitWith(shim.exit);
  } else if (shim.state === "running" && shim.pid !== undefined) {
    init.pid = shim.pid;
    init.phase = initPhaseOnDisk(runcRootOf(state, namespace), id, shim.pid, cgroups);
  } else {
    return undefined;
  }
  return init.toProcess(id);
}
