// Tasks end to end: the real ctr runs containers from a real busybox image against a
// real berthd (berth-shim, runc, overlayfs). Each container runs in this file's own
// namespace, so the after hook can find and remove whatever a failure left behind.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Status } from "nice-grpc";
import { closeFreshChannels, freshClient, grpcError, ok, tableRows, type Daemon } from "./harness.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { isRunning } from "../core/process.ts";
import { TasksDefinition } from "../core/gen/containerd/services/tasks/v1/tasks.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { startDaemonWithBusybox } from "./fixtures/busybox-daemon.ts";
import { readdirOrEmpty, removeNamespaceLeftovers } from "./fixtures/namespace-leftovers.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { runInContainer } from "../scripts/demo-container.ts";

const image = "docker.io/library/busybox:latest";
const namespace = `tasks-${randomBytes(4).toString("hex")}`;
let d: Daemon;

const ctr = (args: string[], input?: string) => d.ctr(args, input, namespace);
const taskRows = () => tableRows(ok(ctr(["tasks", "ls"]), "tasks ls").stdout);

before(async () => {
  d = await startDaemonWithBusybox(namespace);
});

after(async () => {
  closeFreshChannels();
  removeNamespaceLeftovers(d, namespace);
  await d?.destroy();
});

describe("ctr run", () => {
  test("run --rm prints the output and exits 0", () => {
    const r = ok(ctr(["run", "--rm", image, "echo-hi", "echo", "hi"]), "ctr run");
    assert.equal(r.stdout, "hi\n");
    assert.deepEqual(taskRows(), [], "no task is left");
    assert.deepEqual(tableRows(ok(ctr(["containers", "ls"]), "containers ls").stdout), [], "no container is left");
    assert.deepEqual(readdirOrEmpty(join(d.state, "shims", namespace)), [], "no bundle is left");
  });

  test("run --rm delivers all of a long output, stdout and stderr apart", () => {
    const script = "i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); done; echo to-stderr >&2";
    const r = ok(ctr(["run", "--rm", image, "long-output", "sh", "-c", script]), "ctr run");
    const lines = r.stdout.split("\n");
    assert.equal(lines.length, 5001, "5000 lines and the empty tail");
    assert.equal(lines[4999], "line 4999");
    assert.match(r.stderr, /to-stderr/);
  });

  test("run --rm exits with the container's exit status", () => {
    const r = ctr(["run", "--rm", image, "exit-3", "sh", "-c", "exit 3"]);
    assert.equal(r.code, 3, r.stderr);
  });
});

describe("log files", () => {
  test("--log-uri file:// writes the output to the file; a malformed log URI is refused and leaves nothing", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-task-log-"));
    try {
      const log = join(dir, "out.log");
      ok(ctr(["run", "--rm", "--log-uri", `file://${log}`, image, "log-uri", "sh", "-c", "echo to-out; echo to-err >&2"]), "run --log-uri");
      assert.equal(readFileSync(log, "utf8").split("\n").sort().join("|"), "|to-err|to-out");
      const bad = ctr(["run", "--rm", "--log-uri", "file://somehost/x.log", image, "bad-log-uri", "true"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /names a local path/);
      ctr(["containers", "rm", "bad-log-uri"]);
      assert.deepEqual(tableRows(ok(ctr(["tasks", "ls"]), "tasks ls").stdout), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("terminal", () => {
  test("run -t gives the process a pty (script(1) gives ctr one)", () => {
    const command = ["ctr", "--address", d.address, "--namespace", namespace, "run", "-t", "--rm", image, "with-tty", "echo", "on-a-tty"];
    const r = spawnSync("script", ["-qec", command.join(" "), "/dev/null"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    // Two ptys turn "\n" into "\r\n" each: the container's (berth-shim's) and script's.
    assert.match(r.stdout, /on-a-tty\r\r\n/);
    assert.deepEqual(taskRows(), []);
  });
});

describe("failures", () => {
  test("a command that does not exist fails the run with runc's reason and leaves nothing", () => {
    const r = ctr(["run", "--rm", image, "no-binary", "/no/such/binary"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no\/such\/binary/);
    assert.deepEqual(taskRows(), []);
    ctr(["containers", "rm", "no-binary"]);
    assert.deepEqual(readdirOrEmpty(join(d.state, "shims", namespace)), [], "no bundle is left");
    assert.ok(!readFileSync("/proc/self/mountinfo", "utf8").includes(join(d.state, "shims", namespace)), "no rootfs stays mounted");
    const runcRoot = join(d.state, "runc", namespace);
    assert.deepEqual(readdirOrEmpty(runcRoot), [], "runc has no container left");
  });
});

describe("detached tasks", () => {
  test("run -d, tasks ls, exec, kill, delete, containers rm", async () => {
    const id = "sleeper";
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    assert.deepEqual(
      taskRows().map((r) => [r[0], r[2]]),
      [[id, "RUNNING"]],
    );
    const running = ctr(["containers", "rm", id]);
    assert.notEqual(running.code, 0, "a container with a running task is not removed");

    const exec = ok(ctr(["tasks", "exec", "--exec-id", "probe", id, "sh", "-c", "echo in-container"]), "exec");
    assert.equal(exec.stdout, "in-container\n");
    const failed = ctr(["tasks", "exec", "--exec-id", "fails", id, "sh", "-c", "exit 7"]);
    assert.equal(failed.code, 7, failed.stderr);

    assert.match(ctr(["tasks", "start", id]).stderr, /already exists/, "a second task for the container is refused");
    const tasks = freshClient(TasksDefinition, d.address);
    const again = await grpcError(tasks.start({ containerId: id }, inNamespace(namespace)));
    assert.equal(again.code, Status.FAILED_PRECONDITION, "starting a running task twice");
    const missingExec = await grpcError(tasks.get({ containerId: id, execId: "nope" }, inNamespace(namespace)));
    assert.equal(missingExec.code, Status.NOT_FOUND);

    const busy = ctr(["tasks", "delete", id]);
    assert.notEqual(busy.code, 0, "a running task is not deleted");
    assert.match(busy.stderr, /must be stopped/);

    ok(ctr(["tasks", "kill", "--signal", "SIGKILL", id]), "kill");
    await waitUntil("the task stops", () => taskRows().some((r) => r[0] === id && r[2] === "STOPPED"));
    const stoppedExec = ctr(["tasks", "exec", "--exec-id", "late", id, "true"]);
    assert.notEqual(stoppedExec.code, 0, "no exec into a stopped task");
    ok(ctr(["tasks", "delete", id]), "tasks delete");
    assert.deepEqual(taskRows(), []);
    ok(ctr(["containers", "rm", id]), "containers rm");
    assert.ok(!tableRows(ok(ctr(["snapshots", "ls"]), "snapshots ls").stdout).some((r) => r[0] === id), "containers rm removed the snapshot");
    assert.deepEqual(readdirOrEmpty(join(d.state, "shims", namespace)), [], "no bundle is left");
  });

  test("a detached exec is killed, waited for and deleted on its own", async () => {
    const id = "exec-host";
    const tasks = freshClient(TasksDefinition, d.address);
    const meta = inNamespace(namespace);
    ok(ctr(["run", "-d", image, id, "sleep", "300"]), "run -d");
    try {
      ok(ctr(["tasks", "exec", "--detach", "--exec-id", "side", id, "sleep", "300"]), "exec --detach");
      const side = (await tasks.get({ containerId: id, execId: "side" }, meta)).process!;
      assert.equal(side.id, "side");
      assert.ok(side.pid > 0);
      const waited = tasks.wait({ containerId: id, execId: "side" }, meta);
      ok(ctr(["tasks", "kill", "--exec-id", "side", "--signal", "SIGTERM", id]), "kill the exec");
      assert.equal((await waited).exitStatus, 128 + 15);
      assert.equal(taskRows().find((r) => r[0] === id)?.[2], "RUNNING", "the init runs on");
      const removed = await tasks.deleteProcess({ containerId: id, execId: "side" }, meta);
      assert.equal(removed.exitStatus, 143);
      assert.equal((await grpcError(tasks.get({ containerId: id, execId: "side" }, meta))).code, Status.NOT_FOUND);
    } finally {
      ctr(["tasks", "kill", "--signal", "SIGKILL", id]);
      await waitUntil("the task stops", () => !taskRows().some((r) => r[0] === id && r[2] !== "STOPPED"));
      ctr(["tasks", "delete", id]);
      ctr(["containers", "rm", id]);
    }
  });

  test("a shim killed with kill -9 is noticed: the task is stopped with 255, the others run on", async () => {
    const [victim, bystander] = ["shim-victim", "shim-bystander"];
    ok(ctr(["run", "-d", image, victim, "sleep", "300"]), "run -d victim");
    ok(ctr(["run", "-d", image, bystander, "sleep", "300"]), "run -d bystander");
    try {
      const shimPid = Number(readFileSync(join(d.state, "shims", namespace, victim, "shim.pid"), "utf8"));
      assert.ok(shimPid > 0, "the shim's pid file");
      process.kill(shimPid, "SIGKILL");
      await waitUntil("the victim's task is reported stopped", () => taskRows().some((r) => r[0] === victim && r[2] === "STOPPED"));
      const tasks = freshClient(TasksDefinition, d.address);
      const { process: stopped } = await tasks.get({ containerId: victim }, inNamespace(namespace));
      assert.equal(stopped!.exitStatus, 255, "containerd's status for a task whose shim is gone");
      assert.equal(taskRows().find((r) => r[0] === bystander)?.[2], "RUNNING", "no other container is affected");
    } finally {
      for (const id of [victim, bystander]) {
        ctr(["tasks", "kill", "--signal", "SIGKILL", id]);
        await waitUntil(`${id} stops`, () => !taskRows().some((r) => r[0] === id && r[2] !== "STOPPED"));
        ctr(["tasks", "delete", "--force", id]);
        ctr(["containers", "rm", id]);
      }
    }
  });

  test("a task of an unknown container is not found", () => {
    const r = ctr(["tasks", "start", "no-such"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not found/);
  });
});

describe("live restore", () => {
  test("tasks survive kill -9 of berthd and its services, and report exits that happened meanwhile", async () => {
    const tasks = () => freshClient(TasksDefinition, d.address);
    const meta = inNamespace(namespace);
    ok(ctr(["run", "-d", image, "survivor", "sleep", "300"]), "run survivor");
    ok(ctr(["run", "-d", image, "dies-while-down", "sleep", "300"]), "run dies-while-down");
    ok(ctr(["run", "-d", image, "exits-before", "sh", "-c", "exit 4"]), "run exits-before");
    await waitUntil("exits-before stops", () => taskRows().some((r) => r[0] === "exits-before" && r[2] === "STOPPED"));
    ok(ctr(["run", "-d", image, "paused-one", "sleep", "300"]), "run paused-one");
    ok(ctr(["tasks", "pause", "paused-one"]), "pause paused-one");
    // A task created but not started (ctr has no command for that; the API has).
    ok(ctr(["containers", "create", image, "created-only", "sleep", "300"]), "containers create created-only");
    const { mounts } = await freshClient(SnapshotsDefinition, d.address).mounts({ snapshotter: "overlayfs", key: "created-only" }, meta);
    await tasks().create({ containerId: "created-only", rootfs: mounts }, meta);
    const pidOf = (id: string) => Number(taskRows().find((r) => r[0] === id)![1]);
    const survivorPid = pidOf("survivor");
    const victimPid = pidOf("dies-while-down");

    const tasksPid = d.servicePid("tasks");
    assert.ok(tasksPid, "the tasks process runs");
    await d.kill9();
    assert.ok(!isRunning(tasksPid), "the tasks process went with berthd");
    process.kill(victimPid, "SIGKILL");
    // What a tasks process killed in the middle of a Create leaves.
    const halfMade = join(d.state, "shims", namespace, "half-made");
    mkdirSync(join(halfMade, "rootfs"), { recursive: true });
    closeFreshChannels();
    await d.start();
    assert.ok(!existsSync(halfMade), "the unfinished create's state dir is removed");

    const rows = new Map(taskRows().map((r) => [r[0], r]));
    assert.deepEqual(rows.get("survivor")?.slice(1), [String(survivorPid), "RUNNING"]);
    assert.equal(rows.get("dies-while-down")?.[2], "STOPPED");
    assert.equal(rows.get("exits-before")?.[2], "STOPPED");
    assert.equal(rows.get("paused-one")?.[2], "PAUSED", "a paused task is adopted paused");
    assert.equal(rows.get("created-only")?.[2], "CREATED", "a created task is adopted created");
    ok(ctr(["tasks", "resume", "paused-one"]), "resume after the restart");
    assert.equal(taskRows().find((r) => r[0] === "paused-one")?.[2], "RUNNING");
    await tasks().start({ containerId: "created-only" }, meta);
    assert.equal(taskRows().find((r) => r[0] === "created-only")?.[2], "RUNNING", "the adopted created task starts");
    for (const id of ["paused-one", "created-only"]) {
      const exited = tasks().wait({ containerId: id }, meta);
      ok(ctr(["tasks", "kill", "--signal", "SIGKILL", id]), `kill ${id}`);
      assert.equal((await exited).exitStatus, 137);
    }
    assert.equal((await tasks().wait({ containerId: "exits-before" }, meta)).exitStatus, 4);
    assert.equal((await tasks().wait({ containerId: "dies-while-down" }, meta)).exitStatus, 137);

    // The adopted task is still driven: exec into it, then kill it and see the exit.
    assert.equal(ok(ctr(["tasks", "exec", "--exec-id", "after-restart", "survivor", "echo", "still here"]), "exec").stdout, "still here\n");
    const waited = tasks().wait({ containerId: "survivor" }, meta);
    ok(ctr(["tasks", "kill", "--signal", "SIGKILL", "survivor"]), "kill survivor");
    assert.equal((await waited).exitStatus, 137);

    for (const id of ["survivor", "dies-while-down", "exits-before", "paused-one", "created-only"]) {
      ok(ctr(["tasks", "delete", id]), `delete ${id}`);
      ok(ctr(["containers", "rm", id]), `containers rm ${id}`);
    }
    assert.deepEqual(taskRows(), []);
    assert.deepEqual(readdirOrEmpty(join(d.state, "shims", namespace)), [], "no bundle is left");
  });
});

describe("over gRPC", () => {
  test("the demo's container runs echo through Berth's services alone", async () => {
    const config = (await buildBusyboxImage()).config;
    const diffIds = (JSON.parse(config.data.toString("utf8")) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    const ran = await runInContainer(d.address, namespace, image, diffIds, ["echo", "from the demo"]);
    assert.deepEqual(ran, { output: "from the demo\n", exitStatus: 0 });
    assert.deepEqual(taskRows(), [], "the demo removed its task");
    assert.deepEqual(tableRows(ok(ctr(["containers", "ls"]), "containers ls").stdout), [], "and its container");
  });

  test("bad requests are refused with the error naming the problem", async () => {
    const tasks = freshClient(TasksDefinition, d.address);
    const meta = inNamespace(namespace);
    ok(ctr(["run", "-d", image, "target", "sleep", "300"]), "run -d");
    try {
      const badSignal = await grpcError(tasks.kill({ containerId: "target", signal: 0 }, meta));
      assert.equal(badSignal.code, Status.INVALID_ARGUMENT);
      assert.match(badSignal.details, /signal 0/);
      const badSpec = await grpcError(tasks.exec({ containerId: "target", execId: "x", spec: { typeUrl: "p", value: Buffer.from("{not json") } }, meta));
      assert.equal(badSpec.code, Status.INVALID_ARGUMENT);
      assert.match(badSpec.details, /not valid JSON/);
      const badExecId = await grpcError(tasks.exec({ containerId: "target", execId: "../escape", spec: { typeUrl: "p", value: Buffer.from("{}") } }, meta));
      assert.equal(badExecId.code, Status.INVALID_ARGUMENT);
      assert.ok(!existsSync(join(d.state, "shims", namespace, "escape")), "nothing was written outside the task");
      const badExec = await grpcError(tasks.resizePty({ containerId: "target", execId: "never-added", width: 80, height: 24 }, meta));
      assert.equal(badExec.code, Status.NOT_FOUND);
      const twice = await grpcError(tasks.create({ containerId: "target" }, meta));
      assert.equal(twice.code, Status.ALREADY_EXISTS);
      const noContainer = await grpcError(tasks.create({ containerId: "never-created" }, meta));
      assert.equal(noContainer.code, Status.NOT_FOUND);
      assert.ok(!existsSync(join(d.state, "shims", namespace, "never-created")), "a refused create leaves no bundle");
      const checkpoint = await grpcError(tasks.checkpoint({ containerId: "target" }, meta));
      assert.equal(checkpoint.code, Status.UNIMPLEMENTED);

      await tasks.update({ containerId: "target", resources: { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", value: Buffer.from(JSON.stringify({ pids: { limit: 77 } })) } }, meta);
      assert.equal(readFileSync(join("/sys/fs/cgroup/pids", namespace, "target", "pids.max"), "utf8").trim(), "77", "Update reached the cgroup");
      const badResources = await grpcError(tasks.update({ containerId: "target", resources: { typeUrl: "r", value: Buffer.from("nope") } }, meta));
      assert.equal(badResources.code, Status.INVALID_ARGUMENT);

      // Pause, ListPids and Resume on the way out.
      ok(ctr(["tasks", "pause", "target"]), "pause");
      assert.equal(taskRows().find((r) => r[0] === "target")?.[2], "PAUSED");
      const pids = (await tasks.listPids({ containerId: "target" }, meta)).processes.map((p) => p.pid);
      assert.ok(pids.includes(Number(taskRows().find((r) => r[0] === "target")?.[1])), `ListPids has the init: ${pids}`);
      ok(ctr(["tasks", "resume", "target"]), "resume");
      assert.equal(taskRows().find((r) => r[0] === "target")?.[2], "RUNNING");
    } finally {
      ctr(["tasks", "kill", "--signal", "SIGKILL", "target"]);
      await waitUntil("target stops", () => !taskRows().some((r) => r[0] === "target" && r[2] !== "STOPPED"));
      ctr(["tasks", "delete", "target"]);
      ctr(["containers", "rm", "target"]);
    }
    assert.deepEqual(taskRows(), []);
  });
});

describe("events", () => {
  test("a task's life is published: create, start, exit, delete, exec-added, exec-started", async () => {
    const events = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    events.stdout.setEncoding("utf8").on("data", (text: string) => (seen += text));
    // A line: <time, with spaces> <namespace> <topic> <event>.
    const topics = () => [...seen.matchAll(new RegExp(` ${namespace} (\\S+)`, "g"))].map((m) => m[1]);
    try {
      // The subscription is live once an event of ours arrives; a container record's create is one.
      await waitUntil("the subscription delivers", () => {
        ctr(["containers", "create", image, "probe-subscription"]);
        ctr(["containers", "rm", "probe-subscription"]);
        return topics().includes("/containers/create");
      });
      ok(ctr(["run", "-d", image, "evented", "sleep", "300"]), "run -d");
      ok(ctr(["tasks", "exec", "--exec-id", "side", "evented", "true"]), "exec");
      ok(ctr(["tasks", "kill", "--signal", "SIGKILL", "evented"]), "kill");
      await waitUntil("the task stops", () => taskRows().some((r) => r[0] === "evented" && r[2] === "STOPPED"));
      ok(ctr(["tasks", "delete", "evented"]), "delete");
      ok(ctr(["containers", "rm", "evented"]), "containers rm");
      const expected = ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/delete"];
      // Two deletes: the exec's (ctr tasks exec removes it) and the task's.
      const count = (topic: string) => topics().filter((t) => t === topic).length;
      await waitUntil(`events ${expected.join(", ")}`, () => expected.every((topic) => topics().includes(topic)) && count("/tasks/delete") === 2);
      const order = topics().filter((topic) => topic.startsWith("/tasks/"));
      assert.ok(order.indexOf("/tasks/create") < order.indexOf("/tasks/start"), order.join(" "));
      assert.ok(order.lastIndexOf("/tasks/exit") < order.lastIndexOf("/tasks/delete"), order.join(" "));
      assert.ok(!order.includes("/tasks/oom"), `a SIGKILL from outside is no OOM kill: ${order.join(" ")}`);
    } finally {
      events.kill("SIGKILL");
    }
  });

  test("an OOM kill under a memory limit is published as /tasks/oom, before the task's /tasks/exit", async () => {
    const events = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    events.stdout.setEncoding("utf8").on("data", (text: string) => (seen += text));
    // ctr prints each event as: <time> <namespace> <topic> <event as JSON>.
    const ours = () => [...seen.matchAll(new RegExp(` ${namespace} (/tasks/\\S+) (.*)$`, "gm"))].filter((m) => m[2]!.includes('"oomer"')).map((m) => m[1]);
    try {
      await waitUntil("the subscription delivers", () => {
        ctr(["containers", "create", image, "probe-oom-subscription"]);
        ctr(["containers", "rm", "probe-oom-subscription"]);
        return seen.includes(" /containers/create ");
      });
      // 8 MiB, and a shell that holds 64 MiB of text: the kernel kills the shell, the init.
      const r = ctr(["run", "--rm", "--memory-limit", String(8 << 20), image, "oomer", "sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"]);
      assert.equal(r.code, 137, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /survived/);
      await waitUntil("the oom and exit events", () => ours().includes("/tasks/oom") && ours().includes("/tasks/exit"));
      const order = ours();
      assert.ok(order.indexOf("/tasks/oom") < order.indexOf("/tasks/exit"), order.join(" "));
      assert.match(seen, new RegExp(` ${namespace} /tasks/oom \\{"container_id":"oomer"\\}`));
    } finally {
      events.kill("SIGKILL");
    }
  });
});

describe("metrics", () => {
  test("tasks metrics prints the cgroup's memory, cpu and pids as ctr decodes them", async () => {
    const id = "metered";
    // 16 MiB in the container's /dev/shm is charged to its memory cgroup; three processes stay.
    const script = "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; sleep 300 & sleep 300 & wait";
    ok(ctr(["run", "-d", image, id, "sh", "-c", script]), "run -d");
    try {
      const tasks = freshClient(TasksDefinition, d.address);
      const meta = inNamespace(namespace);
      let table = "";
      const value = (name: string) => Number(new RegExp(`^${name.replaceAll(".", "\\.")}\\s+(\\d+)`, "m").exec(table)?.[1] ?? NaN);
      await waitUntil("the container has filled /dev/shm and started both sleeps", () => {
        table = ok(ctr(["tasks", "metrics", id]), "tasks metrics").stdout;
        return value("memory.usage_in_bytes") >= 16 << 20 && value("pids.current") === 3;
      });
      assert.match(table, /^METRIC\s+VALUE/m, table);
      assert.ok(value("memory.limit_in_bytes") > 0, table);
      assert.ok(value("memory.stat.cache") >= 16 << 20, `the tmpfs pages count as cache: ${table}`);
      assert.ok(value("cpuacct.usage") > 0, table);
      assert.match(table, /^cpuacct\.usage_percpu\s+\[\d+( \d+)*\]/m, table);

      const all = await tasks.metrics({ filters: [] }, meta);
      assert.deepEqual(all.metrics.map((m) => [m.id, m.data?.typeUrl]), [[id, "io.containerd.cgroups.v1.Metrics"]]);
      assert.deepEqual((await tasks.metrics({ filters: ["id==no-such"] }, meta)).metrics, [], "a filter naming no task matches nothing");
      const badFilter = await grpcError(tasks.metrics({ filters: ["id=="] }, meta));
      assert.equal(badFilter.code, Status.INVALID_ARGUMENT);
      assert.match(badFilter.details, /filter/);

      ok(ctr(["tasks", "kill", "--signal", "SIGKILL", id]), "kill");
      await waitUntil("the task stops", () => taskRows().some((r) => r[0] === id && r[2] === "STOPPED"));
      const stopped = ctr(["tasks", "metrics", id]);
      assert.notEqual(stopped.code, 0, "a stopped task has no cgroup usage to report");
      assert.match(stopped.stderr, /no metrics/);
    } finally {
      ctr(["tasks", "kill", "--signal", "SIGKILL", id]);
      await waitUntil(`${id} stops`, () => !taskRows().some((r) => r[0] === id && r[2] !== "STOPPED"));
      ctr(["tasks", "delete", id]);
      ctr(["containers", "rm", id]);
    }
  });
});
