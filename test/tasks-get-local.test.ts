// Tasks/Get and Wait of an init, which berthd answers from the task's files
// (services/gateway/task-reads.ts, services/tasks/disk-state.ts): in every state the
// answer through the gateway is the one the tasks process gives on its own socket; it
// comes while the tasks process cannot answer (stopped with SIGSTOP); a state only the
// tasks process knows (a shim killed without recording an exit) is still its answer; and
// a Delete right after a Wait that berthd answered finds the task stopped.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Status } from "nice-grpc";
import { closeFreshChannels, freshClient, grpcError, ok, type Daemon } from "./harness.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { TasksDefinition } from "../core/gen/containerd/services/tasks/v1/tasks.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { Status as TaskStatus } from "../core/gen/containerd/types/task/task.ts";
import { startDaemonWithBusybox } from "./fixtures/busybox-daemon.ts";
import { removeNamespaceLeftovers } from "./fixtures/namespace-leftovers.ts";
import { waitUntil } from "./fixtures/poll.ts";

const image = "docker.io/library/busybox:latest";
const namespace = `tasks-get-${randomBytes(4).toString("hex")}`;
const meta = inNamespace(namespace);
let d: Daemon;
let stoppedTasksPid: number | undefined;

const ctr = (args: string[]) => d.ctr(args, undefined, namespace);
const viaGateway = () => freshClient(TasksDefinition, d.address);
const viaTasksProcess = () => freshClient(TasksDefinition, join(d.state, "services", "tasks.sock"));

/** Get's answer, or its error's code and words: what a client can tell apart. */
async function getOutcome(client: ReturnType<typeof viaGateway>, containerId: string): Promise<unknown> {
  try {
    return (await client.get({ containerId }, meta)).process;
  } catch (err) {
    const { code, details } = await grpcError(Promise.reject(err));
    return { code, details };
  }
}

async function sameAnswer(containerId: string, what: string): Promise<unknown> {
  const [local, owner] = await Promise.all([getOutcome(viaGateway(), containerId), getOutcome(viaTasksProcess(), containerId)]);
  assert.deepEqual(local, owner, `${what}: berthd answers as the tasks process`);
  return local;
}

/** A container with a created (not started) task running `sleep 300`. */
async function createTask(id: string): Promise<void> {
  ok(ctr(["containers", "create", image, id, "sleep", "300"]), "containers create");
  const { mounts } = await freshClient(SnapshotsDefinition, d.address).mounts({ snapshotter: "overlayfs", key: id }, meta);
  await viaGateway().create({ containerId: id, rootfs: mounts }, meta);
}

async function removeTask(id: string): Promise<void> {
  ctr(["tasks", "kill", "--signal", "SIGKILL", id]);
  await viaGateway().wait({ containerId: id }, meta).catch(() => {});
  ctr(["tasks", "delete", "--force", id]);
  ctr(["containers", "rm", id]);
}

before(async () => {
  d = await startDaemonWithBusybox(namespace);
});

after(async () => {
  if (stoppedTasksPid) process.kill(stoppedTasksPid, "SIGCONT");
  closeFreshChannels();
  if (d) removeNamespaceLeftovers(d, namespace);
  await d?.destroy();
});

describe("Tasks/Get answered by berthd", () => {
  test("in every state of an init the answer is the tasks process's", async () => {
    const id = "lifecycle";
    await createTask(id);
    try {
      const created = (await sameAnswer(id, "created")) as { status: TaskStatus; pid: number };
      assert.equal(created.status, TaskStatus.CREATED);
      assert.ok(created.pid > 0, "the init's pid once runc created it");

      await viaGateway().start({ containerId: id }, meta);
      assert.equal(((await sameAnswer(id, "running")) as { status: TaskStatus }).status, TaskStatus.RUNNING);

      ok(ctr(["tasks", "pause", id]), "pause");
      assert.equal(((await sameAnswer(id, "paused")) as { status: TaskStatus }).status, TaskStatus.PAUSED);
      ok(ctr(["tasks", "resume", id]), "resume");
      assert.equal(((await sameAnswer(id, "resumed")) as { status: TaskStatus }).status, TaskStatus.RUNNING);

      const waited = viaGateway().wait({ containerId: id }, meta);
      ok(ctr(["tasks", "kill", "--signal", "SIGKILL", id]), "kill");
      await waited;
      const stopped = (await sameAnswer(id, "stopped")) as { status: TaskStatus; exitStatus: number; exitedAt: Date | undefined };
      assert.equal(stopped.status, TaskStatus.STOPPED);
      assert.equal(stopped.exitStatus, 137);
      assert.ok(stopped.exitedAt, "the exit time");

      await viaGateway().delete({ containerId: id }, meta);
      const gone = (await sameAnswer(id, "deleted")) as { code: Status; details: string };
      assert.equal(gone.code, Status.NOT_FOUND);
      assert.match(gone.details, /no running task found: task lifecycle/);
    } finally {
      await removeTask(id);
    }
    assert.equal(((await sameAnswer("never-created", "never created")) as { code: Status }).code, Status.NOT_FOUND);
    const badId = (await sameAnswer("../escape", "an id that is no identifier")) as { code: Status };
    assert.equal(badId.code, Status.NOT_FOUND);
  });

  test("an exec's Get is the tasks process's", async () => {
    const id = "with-exec";
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    try {
      ok(ctr(["tasks", "exec", "--detach", "--exec-id", "side", id, "sleep", "300"]), "exec --detach");
      const [local, owner] = await Promise.all(
        [viaGateway(), viaTasksProcess()].map((client) => client.get({ containerId: id, execId: "side" }, meta)),
      );
      assert.deepEqual(local, owner);
      assert.equal(local!.process!.status, TaskStatus.RUNNING);
    } finally {
      await removeTask(id);
    }
  });

  test("berthd answers while the tasks process is stopped; a shim gone without a record is left to the tasks process", async () => {
    const [running, victim] = ["answered-alone", "shim-gone"];
    ok(ctr(["run", "-d", image, running, "sleep", "300"]), "run -d");
    ok(ctr(["run", "-d", image, victim, "sleep", "300"]), "run -d victim");
    try {
      const tasksPid = d.servicePid("tasks");
      assert.ok(tasksPid, "the tasks process runs");
      process.kill(tasksPid, "SIGSTOP");
      stoppedTasksPid = tasksPid;
      // Bounded: forwarded, the call would wait for the stopped process.
      const bounded = { ...meta, signal: AbortSignal.timeout(20_000) };
      try {
        const { process: answered } = await viaGateway().get({ containerId: running }, bounded);
        assert.equal(answered!.status, TaskStatus.RUNNING);
        assert.equal(answered!.pid, Number(readFileSync(join(d.state, "shims", namespace, running, "pid"), "utf8")));
        assert.equal((await grpcError(viaGateway().get({ containerId: "no-such-task" }, bounded))).code, Status.NOT_FOUND);
      } finally {
        process.kill(tasksPid, "SIGCONT");
        stoppedTasksPid = undefined;
      }

      // No exit file and no shim: the files cannot tell when it ended; the tasks process can.
      const shimPid = Number(readFileSync(join(d.state, "shims", namespace, victim, "shim.pid"), "utf8"));
      process.kill(shimPid, "SIGKILL");
      await waitUntil("the tasks process notices the shim is gone", () =>
        /STOPPED/.test(ok(ctr(["tasks", "ls"]), "tasks ls").stdout.split("\n").find((line) => line.startsWith(victim)) ?? ""),
      );
      const lost = (await sameAnswer(victim, "shim gone")) as { status: TaskStatus; exitStatus: number };
      assert.equal(lost.status, TaskStatus.STOPPED);
      assert.equal(lost.exitStatus, 255);
    } finally {
      await removeTask(running);
      await removeTask(victim);
    }
  });

  test("Wait ends with the shim's exit record while the tasks process is stopped; Delete right after takes that exit", async () => {
    const id = "waited-alone";
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    try {
      const initPid = Number(readFileSync(join(d.state, "shims", namespace, id, "pid"), "utf8"));
      const tasksPid = d.servicePid("tasks");
      assert.ok(tasksPid, "the tasks process runs");
      process.kill(tasksPid, "SIGSTOP");
      stoppedTasksPid = tasksPid;
      try {
        // Bounded: forwarded, the call would wait for the stopped process.
        const waited = viaGateway().wait({ containerId: id }, { ...meta, signal: AbortSignal.timeout(20_000) });
        process.kill(initPid, "SIGKILL");
        const exit = await waited;
        assert.equal(exit.exitStatus, 137);
        assert.ok(exit.exitedAt, "the exit time");
        const again = await viaGateway().wait({ containerId: id }, { ...meta, signal: AbortSignal.timeout(20_000) });
        assert.deepEqual(again, exit, "a Wait after the exit gets the same record");
      } finally {
        process.kill(tasksPid, "SIGCONT");
        stoppedTasksPid = undefined;
      }
      // At once: the tasks process may not have seen the exit file yet.
      const deleted = await viaGateway().delete({ containerId: id }, meta);
      assert.equal(deleted.exitStatus, 137);
    } finally {
      await removeTask(id);
    }
  });

  test("Waits the client cancels on a running task leave no fds behind in berthd (one pidfd wait per shim, shared)", async () => {
    const id = "waits-cancelled";
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    try {
      const client = viaGateway();
      const fds = () => readdirSync(`/proc/${d.pid}/fd`).length;
      await client.get({ containerId: id }, meta);
      const baseline = fds();
      const aborts = Array.from({ length: 20 }, () => new AbortController());
      const waits = aborts.map((abort) => client.wait({ containerId: id }, { ...meta, signal: abort.signal }).then(() => "ended", () => "cancelled"));
      // A Get after them on the same connection is answered once berthd has read them.
      await client.get({ containerId: id }, meta);
      await waitUntil("berthd waits on the shim", () => fds() >= baseline + 2);
      for (const abort of aborts) abort.abort();
      assert.deepEqual(new Set(await Promise.all(waits)), new Set(["cancelled"]));
      // Unshared, each cancelled Wait kept a pidfd and its duplicate until the task ended.
      await waitUntil("the cancelled Waits' fds are closed", () => fds() <= baseline + 4);
    } finally {
      await removeTask(id);
    }
  });

  test("a Wait whose shim is killed without a record ends with the tasks process's 255", async () => {
    const id = "wait-shim-gone";
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    try {
      const waited = viaGateway().wait({ containerId: id }, meta);
      const owners = viaTasksProcess().wait({ containerId: id }, meta);
      process.kill(Number(readFileSync(join(d.state, "shims", namespace, id, "shim.pid"), "utf8")), "SIGKILL");
      const [local, owner] = await Promise.all([waited, owners]);
      assert.equal(local.exitStatus, 255);
      assert.deepEqual(local, owner);
    } finally {
      await removeTask(id);
    }
  });
});
