// Tasks/Get and Tasks/Wait of a task's init, answered by berthd from the task's files
// (services/tasks/disk-state.ts) instead of a hop to the tasks process: `ctr run --rm`
// makes three Gets (after Wait, and two after Delete that find nothing) and a Wait, and
// each crossed the gateway, a second connection and the tasks process's grpc-js server
// (1-2 ms under load against containerd's 0.2-0.9). disk-state.ts says why the files give
// the tasks process's answer, and which states they cannot settle: those calls, and every
// call on an exec, are forwarded as before.
//
// Wait ends when the shim's `exit` file appears (the record the tasks process reads too),
// so a client may learn of an exit before the tasks process has: its Delete and Kill take
// an exit file they have not yet been told of (ProcessEntry.noticeExit). A shim that ends
// without a record leaves the status to the tasks process: the Wait is then relayed to it.
import { watch } from "node:fs";
import type { CallContext } from "nice-grpc-common";
import { serviceSocketPath } from "../../core/config.ts";
import { TasksDefinition, type GetRequest, type WaitRequest } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import { Status as TaskStatus, type Process } from "../../core/gen/containerd/types/task/task.ts";
import { grpcClient } from "../../core/grpc-client.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { readShimExit, waitForShim, type ShimExit } from "../../shim/client.ts";
import { detectCgroupLayout, type CgroupLayout } from "../tasks/cgroups.ts";
import { initOnDisk, noSuchTask, taskDirOf } from "../tasks/disk-state.ts";
import { timestampOfRfc3339 } from "../tasks/process-entry.ts";
import { addLocalMethods, type LocalMethods } from "./local-calls.ts";

function isIdentifier(id: string): boolean {
  try {
    validateIdentifier(id);
    return true;
  } catch {
    return false;
  }
}

const abortError = () => Object.assign(new Error("call canceled"), { name: "AbortError" });

/**
 * One pidfd wait per shim, shared by every Wait on it: a Wait the client cancels cannot
 * end its pidfd wait early, so each used to hold two fds until its task ended, and clients
 * that kept cancelling Waits on a long-running task piled them up in berthd.
 */
const shimWaits = new Map<string, ReturnType<typeof waitForShim>>();

function sharedShimWait(dir: string): ReturnType<typeof waitForShim> {
  let wait = shimWaits.get(dir);
  if (!wait) {
    wait = waitForShim(dir);
    shimWaits.set(dir, wait);
    const forget = () => shimWaits.delete(dir);
    wait.then(forget, forget);
  }
  return wait;
}

/**
 * The exit the shim of state dir `dir` records, or "lost" when the shim ends without one.
 * Learned from a watch of the dir (the file is renamed into place) and the shim's pidfd.
 */
function exitRecordOf(dir: string, signal: AbortSignal): Promise<ShimExit | "lost"> {
  return new Promise((resolve, reject) => {
    let done = false;
    let watcher: ReturnType<typeof watch> | undefined;
    const end = () => {
      done = true;
      watcher?.close();
      signal.removeEventListener("abort", onAbort);
    };
    const finish = (exit: ShimExit | "lost") => {
      if (done) return;
      end();
      resolve(exit);
    };
    function onAbort() {
      if (done) return;
      end();
      reject(abortError());
    }
    if (signal.aborted) return reject(abortError());
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      watcher = watch(dir, () => {
        const exit = readShimExit(dir);
        if (exit) finish(exit);
      });
      watcher.on("error", () => watcher?.close()); // the pidfd below still tells the end
    } catch {
      watcher = undefined;
    }
    const already = readShimExit(dir);
    if (already) return finish(already);
    // Settles when the shim ends (a cancelled Wait leaves only its share of this).
    sharedShimWait(dir).then(
      (shim) => finish(shim.state === "exited" ? shim.exit : "lost"),
      () => finish(readShimExit(dir) ?? "lost"),
    );
  });
}

export function addTaskReads(into: LocalMethods, state: string): void {
  let cgroups: CgroupLayout | undefined;
  // Read once, in `accepts`, so the answer is the state that made it local.
  const found = new WeakMap<GetRequest | WaitRequest, Process | "absent">();
  const fromDisk = (request: GetRequest | WaitRequest, ctx: CallContext) => {
    // An id that is no identifier has no state dir either; the tasks process words the error.
    if (request.execId !== "" || !isIdentifier(request.containerId)) return undefined;
    return initOnDisk(state, namespaceOf(ctx), request.containerId, (cgroups ??= detectCgroupLayout()));
  };
  const reads = {
    async get(request: GetRequest) {
      const process = found.get(request);
      if (process === undefined || process === "absent") throw noSuchTask(request.containerId);
      return { process };
    },
    async wait(request: WaitRequest, ctx: CallContext) {
      const process = found.get(request) as Process;
      if (process.status === TaskStatus.STOPPED) return { exitStatus: process.exitStatus, exitedAt: process.exitedAt };
      const exit = await exitRecordOf(taskDirOf(state, namespaceOf(ctx), request.containerId), ctx.signal);
      if (exit === "lost") return grpcClient(TasksDefinition, serviceSocketPath(state, "tasks")).wait(request, { metadata: ctx.metadata, signal: ctx.signal });
      return { exitStatus: exit.exitStatus, exitedAt: timestampOfRfc3339(exit.exitedAt) };
    },
  };
  addLocalMethods(into, TasksDefinition, reads, {
    only: ["get", "wait"],
    accepts: {
      get: (request: GetRequest, ctx: CallContext) => {
        const process = fromDisk(request, ctx);
        if (process === undefined) return false;
        found.set(request, process);
        return true;
      },
      // A task being created or deleted, or none: the tasks process answers.
      wait: (request: WaitRequest, ctx: CallContext) => {
        const process = fromDisk(request, ctx);
        if (process === undefined || process === "absent") return false;
        found.set(request, process);
        return true;
      },
    },
  });
}
