// Tasks/Get of a task's init, answered by berthd from the task's files
// (services/tasks/disk-state.ts) instead of a hop to the tasks process: `ctr run --rm`
// makes three (after Wait, and two after Delete that find nothing), and each crossed the
// gateway, a second connection and the tasks process's grpc-js server (1-2 ms under load
// against containerd's 0.2-0.9). disk-state.ts says why the files give the tasks
// process's answer, and which states they cannot settle: those calls, and every Get of
// an exec, are forwarded as before.
import type { CallContext } from "nice-grpc-common";
import { TasksDefinition, type GetRequest } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import type { Process } from "../../core/gen/containerd/types/task/task.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { detectCgroupLayout, type CgroupLayout } from "../tasks/cgroups.ts";
import { initOnDisk, noSuchTask } from "../tasks/disk-state.ts";
import { addLocalMethods, type LocalMethods } from "./local-calls.ts";

function isIdentifier(id: string): boolean {
  try {
    validateIdentifier(id);
    return true;
  } catch {
    return false;
  }
}

export function addTaskReads(into: LocalMethods, state: string): void {
  let cgroups: CgroupLayout | undefined;
  // Read once, in `accepts`, so the answer is the state that made it local.
  const found = new WeakMap<GetRequest, Process | "absent">();
  const reads = {
    async get(request: GetRequest) {
      const process = found.get(request);
      if (process === undefined || process === "absent") throw noSuchTask(request.containerId);
      return { process };
    },
  };
  addLocalMethods(into, TasksDefinition, reads, {
    only: ["get"],
    accepts: {
      // An id that is no identifier has no state dir either; the tasks process words the error.
      get: (request: GetRequest, ctx: CallContext) => {
        if (request.execId !== "" || !isIdentifier(request.containerId)) return false;
        const process = initOnDisk(state, namespaceOf(ctx), request.containerId, (cgroups ??= detectCgroupLayout()));
        if (process === undefined) return false;
        found.set(request, process);
        return true;
      },
    },
  });
}
