// The Tasks gRPC service: request checks, container records, events; the work is in
// manager.ts.
import type { CallContext } from "nice-grpc";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import type { Metric } from "../../core/gen/containerd/types/metrics.ts";
import { nowTimestamp } from "../../core/timestamp.ts";
import { invalidArgument, notImplemented } from "../../core/errors.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import { TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart } from "../../core/gen/containerd/events/task.ts";
import type { TasksServiceImplementation } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import type { ContainerStore } from "../containers/store.ts";
import { timestampOfRfc3339, type ProcessEntry } from "./process-entry.ts";
import type { Task, TaskManager } from "./manager.ts";
import { parseJsonObject } from "./spec.ts";

export function taskExitedPublisher(metadata: MetadataClient) {
  return (task: Task, process: ProcessEntry) => {
    const exit = process.exit!;
    metadata.publish(task.namespace, "/tasks/exit", "containerd.events.TaskExit", TaskExit, {
      containerId: task.id,
      id: process.id,
      pid: process.pid,
      exitStatus: exit.exitStatus,
      exitedAt: timestampOfRfc3339(exit.exitedAt),
    });
  };
}

/** containerd's /tasks/oom: the kernel's OOM killer killed a process in the task's memory cgroup. */
export function taskOomPublisher(metadata: MetadataClient) {
  return (task: Task) => {
    metadata.publish(task.namespace, "/tasks/oom", "containerd.events.TaskOOM", TaskOOM, { containerId: task.id });
  };
}

function required(value: string, what: string): string {
  if (!value) throw invalidArgument(`${what} is required`);
  return value;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(Object.assign(new Error("call canceled"), { name: "AbortError" }));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(Object.assign(new Error("call canceled"), { name: "AbortError" }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

export function tasksService(manager: TaskManager, containers: ContainerStore, metadata: MetadataClient): TasksServiceImplementation {
  const taskOf = (ctx: CallContext, containerId: string) => manager.get(namespaceOf(ctx), required(containerId, "container id"));
  const deleted = (task: Task, process: ProcessEntry) => {
    const exit = process.exit!;
    const exitedAt = timestampOfRfc3339(exit.exitedAt);
    metadata.publish(task.namespace, "/tasks/delete", "containerd.events.TaskDelete", TaskDelete, {
      containerId: task.id,
      id: process.id,
      pid: process.pid,
      exitStatus: exit.exitStatus,
      exitedAt,
    });
    return { id: process.id, pid: process.pid, exitStatus: exit.exitStatus, exitedAt };
  };

  return {
    async create(request, ctx) {
      const namespace = namespaceOf(ctx);
      const id = required(request.containerId, "container id");
      if (request.checkpoint) throw notImplemented("restoring a task from a checkpoint is not supported");
      const container = containers.get(namespace, id);
      const spec = parseJsonObject(container.spec?.value, `the spec of container "${id}"`);
      const io = { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
      const task = await manager.create(namespace, id, spec, request.rootfs, io);
      metadata.publish(namespace, "/tasks/create", "containerd.events.TaskCreate", TaskCreate, {
        containerId: id,
        bundle: task.dir,
        rootfs: request.rootfs,
        io,
        pid: task.init.pid,
      });
      return { containerId: id, pid: task.init.pid };
    },

    async start(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      const process = await manager.start(task, request.execId);
      if (request.execId) {
        metadata.publish(task.namespace, "/tasks/exec-started", "containerd.events.TaskExecStarted", TaskExecStarted, {
          containerId: task.id,
          execId: request.execId,
          pid: process.pid,
        });
      } else {
        metadata.publish(task.namespace, "/tasks/start", "containerd.events.TaskStart", TaskStart, { containerId: task.id, pid: process.pid });
      }
      return { pid: process.pid };
    },

    async delete(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      return deleted(task, await manager.delete(task));
    },

    async deleteProcess(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      return deleted(task, await manager.deleteProcess(task, request.execId));
    },

    async get(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      return { process: task.process(request.execId).toProcess(task.id) };
    },

    async list(_request, ctx) {
      return { tasks: manager.list(namespaceOf(ctx)).map((task) => task.init.toProcess(task.id)) };
    },

    async kill(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      if (request.signal === 0 || request.signal > 64) throw invalidArgument(`signal ${request.signal} is not a valid signal number`);
      await manager.kill(task, request.execId, request.signal, request.all);
      return {};
    },

    async exec(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      const execId = required(request.execId, "exec id");
      const spec = parseJsonObject(request.spec?.value, `the process spec of exec "${execId}"`);
      const io = { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
      manager.exec(task, execId, spec, io);
      metadata.publish(task.namespace, "/tasks/exec-added", "containerd.events.TaskExecAdded", TaskExecAdded, { containerId: task.id, execId });
      return {};
    },

    async resizePty(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      // 0x0 is what ctr sends when its own terminal has no size; the pty takes it as is.
      manager.control(task, request.execId, `resize ${request.width} ${request.height}`);
      return {};
    },

    async closeIO(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      if (request.stdin) manager.control(task, request.execId, "close-stdin");
      return {};
    },

    async pause(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      await manager.pause(task);
      metadata.publish(task.namespace, "/tasks/paused", "containerd.events.TaskPaused", TaskPaused, { containerId: task.id });
      return {};
    },

    async resume(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      await manager.resume(task);
      metadata.publish(task.namespace, "/tasks/resumed", "containerd.events.TaskResumed", TaskResumed, { containerId: task.id });
      return {};
    },

    async listPids(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      const pids = await manager.runc(task.namespace).pids(task.id);
      return { processes: pids.map((pid) => ({ pid })) };
    },

    async checkpoint() {
      throw notImplemented("checkpoint is not supported");
    },

    async update(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      await manager.update(task, parseJsonObject(request.resources?.value, "resources"));
      return {};
    },

    async metrics(request, ctx) {
      const namespace = namespaceOf(ctx);
      const filter = parseFilters(request.filters);
      const metrics: Metric[] = [];
      for (const task of manager.list(namespace)) {
        if (!filter(fieldsAndLabels({ id: task.id, namespace }, {}))) continue;
        const data = manager.metrics(task);
        if (data) metrics.push({ id: task.id, timestamp: nowTimestamp(), data });
      }
      return { metrics };
    },

    async wait(request, ctx) {
      const task = taskOf(ctx, request.containerId);
      const exit = await abortable(task.process(request.execId).exited, ctx.signal);
      return { exitStatus: exit.exitStatus, exitedAt: timestampOfRfc3339(exit.exitedAt) };
    },
  };
}
