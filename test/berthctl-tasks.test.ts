// berthctl run, containers and tasks against a real berthd (berth-shim, runc, overlayfs),
// with the real ctr beside it on the same daemon: where both print the same table, the
// bytes are the same. Everything runs in this file's own namespace, with FIFOs in its
// own temp dir, so the after hook can find and remove whatever a failure left behind.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { distDir, ok, tableRows, type Daemon } from "./harness.ts";
import { startDaemonWithBusybox } from "./fixtures/busybox-daemon.ts";
import { readdirOrEmpty, removeNamespaceLeftovers } from "./fixtures/namespace-leftovers.ts";
import { waitUntil } from "./fixtures/poll.ts";

const image = "docker.io/library/busybox:latest";
const namespace = `berthctl-tasks-${randomBytes(4).toString("hex")}`;
let workdir: string;
let fifoDir: string;
let d: Daemon;

const ctr = (args: string[], input?: string) => d.ctr(args, input, namespace);
const berthctl = (args: string[], input?: string) => d.berthctl(args, input, namespace);
/** `run`/`tasks start`/`tasks exec` flags that keep FIFOs in this test's directory. */
const fifoFlags = () => ["--fifo-dir", fifoDir];
const taskRows = () => tableRows(ok(berthctl(["tasks", "ls"]), "tasks ls").stdout);
const containerIds = () => tableRows(ok(berthctl(["containers", "ls"]), "containers ls").stdout).map((r) => r[0]);
const snapshotKeys = () => tableRows(ok(ctr(["snapshots", "ls"]), "snapshots ls").stdout).map((r) => r[0]);

/** Stops and removes a container whatever state it is in (finally blocks). */
async function removeContainer(id: string): Promise<void> {
  berthctl(["tasks", "kill", "-s", "SIGKILL", id]);
  await waitUntil(`${id} stops`, () => !taskRows().some((r) => r[0] === id && r[2] !== "STOPPED"));
  berthctl(["tasks", "delete", id]);
  berthctl(["containers", "rm", id]);
}

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-berthctl-tasks-"));
  fifoDir = join(workdir, "fifo");
  d = await startDaemonWithBusybox(namespace);
});

after(async () => {
  removeNamespaceLeftovers(d, namespace);
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

describe("berthctl run", () => {
  test("run --rm prints the output, exits with the task's status and leaves nothing", () => {
    const r = ok(berthctl(["run", "--rm", ...fifoFlags(), image, "echo-hi", "echo", "hi"]), "run --rm");
    assert.equal(r.stdout, "hi\n");
    assert.equal(r.stderr, "");
    const failing = berthctl(["run", "--rm", ...fifoFlags(), image, "exit-3", "sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert.equal(failing.code, 3, failing.stderr);
    assert.equal(failing.stderr, "to-stderr\n");
    assert.deepEqual(taskRows(), []);
    assert.deepEqual(containerIds(), []);
    assert.ok(!snapshotKeys().some((key) => key === "echo-hi" || key === "exit-3"), "the snapshots are removed");
    assert.deepEqual(readdirOrEmpty(fifoDir), [], "the FIFOs are removed");
  });

  test("stdin reaches the process and its end closes the process's stdin", () => {
    const r = ok(berthctl(["run", "--rm", ...fifoFlags(), image, "cat-stdin", "sh", "-c", "cat; echo done"], "line one\nline two\n"), "run with stdin");
    assert.equal(r.stdout, "line one\nline two\ndone\n");
  });

  test("--env, --cwd, --user, --mount and --net-host shape the container", () => {
    const shared = join(workdir, "shared");
    rmSync(shared, { recursive: true, force: true });
    spawnSync("mkdir", ["-p", shared]);
    writeFileSync(join(shared, "file"), "from the host\n");
    const script = 'echo "$GREETING"; pwd; id -u; id -g; cat /data/file; ls /sys/class/net | tr "\\n" " "';
    const r = ok(
      berthctl(["run", "--rm", ...fifoFlags(), "--env", "GREETING=hello there", "--cwd", "/tmp", "--user", "1234:99", "--mount", `type=bind,src=${shared},dst=/data,options=rbind:ro`, image, "shaped", "sh", "-c", script]),
      "run with flags",
    );
    const [greeting, cwd, uid, gid, file, interfaces] = r.stdout.split("\n");
    assert.equal(greeting, "hello there");
    assert.equal(cwd, "/tmp");
    assert.equal(uid, "1234");
    assert.equal(gid, "99");
    assert.equal(file, "from the host");
    assert.equal(interfaces!.trim(), "lo", "its own network namespace has loopback only");
    // The namespace itself, not a listing of interfaces: other tests add and remove veths on the host meanwhile.
    const host = ok(berthctl(["run", "--rm", ...fifoFlags(), "--net-host", image, "net-host", "ls", "-l", "/proc/self/ns/net"]), "run --net-host");
    assert.equal(/-> (net:\[\d+\])$/.exec(host.stdout.trim())?.[1], readlinkSync("/proc/self/ns/net"), "--net-host runs in the host's network namespace");
  });

  test("--user by name is looked up in the image's /etc/passwd", () => {
    const r = ok(berthctl(["run", "--rm", ...fifoFlags(), "--user", "nobody", image, "by-name", "id", "-u"]), "run --user nobody");
    assert.equal(r.stdout.trim(), "65534");
    const missing = berthctl(["run", "--rm", ...fifoFlags(), "--user", "no-such-user", image, "bad-user", "true"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /unable to find user no-such-user/);
    assert.deepEqual(containerIds(), [], "a refused user leaves no container");
    assert.ok(!snapshotKeys().includes("bad-user"), "and no snapshot");
  });

  test("run -t gives the process a pty (script(1) gives berthctl one)", () => {
    const command = [process.execPath, join(distDir, "berthctl.js"), "--address", d.address, "--namespace", namespace, "run", "-t", "--rm", ...fifoFlags(), image, "with-tty", "sh", "-c", "tty; exit 4"];
    const r = spawnSync("script", ["-qec", command.join(" "), "/dev/null"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 4, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\/dev\/pts\/\d+\r\r\n/);
    assert.deepEqual(taskRows(), []);
  });
});

describe("detached tasks", () => {
  test("run -d, tasks ls/ps/exec/pause/resume/kill/delete and containers ls/info/rm, tables as ctr prints them", async () => {
    const id = "sleeper";
    ok(berthctl(["run", "-d", ...fifoFlags(), image, id, "sleep", "300"]), "run -d");
    try {
      assert.deepEqual(
        taskRows().map((r) => [r[0], r[2]]),
        [[id, "RUNNING"]],
      );
      for (const args of [["tasks", "ls"], ["containers", "ls"], ["tasks", "ps", id], ["tasks", "ls", "-q"], ["containers", "ls", "-q"]]) {
        assert.equal(ok(berthctl(args), args.join(" ")).stdout, ok(ctr(args), `ctr ${args.join(" ")}`).stdout, `${args.join(" ")}: the same bytes as ctr`);
      }
      const info = JSON.parse(ok(berthctl(["containers", "info", id]), "containers info").stdout) as { ID: string; Image: string; Snapshotter: string; SnapshotKey: string; Spec: { process: { args: string[] } } };
      assert.equal(info.ID, id);
      assert.equal(info.Image, image);
      assert.equal(info.SnapshotKey, id);
      assert.deepEqual(info.Spec.process.args, ["sleep", "300"]);

      const exec = berthctl(["tasks", "exec", "--exec-id", "probe", ...fifoFlags(), id, "sh", "-c", "echo in-container; exit 7"]);
      assert.equal(exec.code, 7, exec.stderr);
      assert.equal(exec.stdout, "in-container\n");

      const busy = berthctl(["containers", "rm", id]);
      assert.notEqual(busy.code, 0, "a container with a running task is not removed");
      assert.match(busy.stderr, /non stopped container/);

      ok(berthctl(["tasks", "pause", id]), "pause");
      assert.equal(taskRows().find((r) => r[0] === id)?.[2], "PAUSED");
      ok(berthctl(["tasks", "resume", id]), "resume");
      assert.equal(taskRows().find((r) => r[0] === id)?.[2], "RUNNING");

      const metrics = ok(berthctl(["tasks", "metrics", id]), "tasks metrics").stdout;
      const names = (out: string) => [...out.matchAll(/^(\S+)\s+\S/gm)].map((m) => m[1]);
      assert.deepEqual(names(metrics), names(ok(ctr(["tasks", "metrics", id]), "ctr tasks metrics").stdout), "the same rows as ctr");
      assert.ok(Number(/^pids\.current\s+(\d+)/m.exec(metrics)?.[1]) >= 1, metrics);
      const json = JSON.parse(ok(berthctl(["tasks", "metrics", "--format", "json", id]), "metrics json").stdout) as { pids: { current: number } };
      assert.ok(json.pids.current >= 1);

      const running = berthctl(["tasks", "delete", id]);
      assert.notEqual(running.code, 0, "a running task is not deleted");
      assert.match(running.stderr, /must be stopped/);

      ok(berthctl(["tasks", "kill", "--signal", "SIGKILL", id]), "kill");
      await waitUntil("the task stops", () => taskRows().some((r) => r[0] === id && r[2] === "STOPPED"));
      const deleted = ok(berthctl(["tasks", "delete", id]), "tasks delete");
      assert.match(deleted.stderr, /exit with non-zero exit code 137/);
      assert.deepEqual(taskRows(), []);
      assert.deepEqual(readdirOrEmpty(fifoDir), [], "deleting the task removed its FIFOs");
      ok(berthctl(["containers", "rm", id]), "containers rm");
      assert.deepEqual(containerIds(), []);
      assert.ok(!snapshotKeys().includes(id), "containers rm removed the snapshot");
    } finally {
      await removeContainer(id);
    }
  });

  test("tasks attach relays stdin and output of a detached task and exits with its status", async () => {
    const id = "attachable";
    ok(berthctl(["run", "-d", ...fifoFlags(), image, id, "sh", "-c", "read line; echo got $line; exit 6"]), "run -d");
    try {
      const attached = berthctl(["tasks", "attach", id], "hello\n");
      assert.equal(attached.code, 6, attached.stderr);
      assert.equal(attached.stdout, "got hello\n");
    } finally {
      await removeContainer(id);
    }
  });

  test("containers create, then tasks start runs it attached; starting twice is refused", async () => {
    const id = "created";
    ok(berthctl(["containers", "create", "--env", "WHO=world", image, id, "sh", "-c", 'echo "hello $WHO"']), "containers create");
    try {
      assert.deepEqual(containerIds(), [id]);
      assert.deepEqual(taskRows(), [], "no task yet");
      const started = ok(berthctl(["tasks", "start", ...fifoFlags(), id]), "tasks start");
      assert.equal(started.stdout, "hello world\n");
      assert.deepEqual(taskRows(), [], "an attached start deletes its task");

      ok(berthctl(["tasks", "start", "-d", ...fifoFlags(), id]), "tasks start -d");
      const twice = berthctl(["tasks", "start", ...fifoFlags(), id]);
      assert.notEqual(twice.code, 0, "a second task for the container is refused");
      assert.match(twice.stderr, /already exists/);
    } finally {
      await removeContainer(id);
    }
    assert.deepEqual(containerIds(), []);
  });
});

describe("bad input", () => {
  test("an unknown image is refused and leaves no container, snapshot or FIFO", () => {
    const r = berthctl(["run", "--rm", ...fifoFlags(), "docker.io/library/no-such:latest", "no-image", "true"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berthctl: image "docker\.io\/library\/no-such:latest": not found/m);
    assert.deepEqual(containerIds(), []);
    assert.ok(!snapshotKeys().includes("no-image"));
    assert.deepEqual(readdirOrEmpty(fifoDir), []);
  });

  test("a command runc cannot start fails run -d with runc's reason and leaves no FIFOs", () => {
    const r = berthctl(["run", "-d", ...fifoFlags(), image, "no-binary", "/no/such/binary"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no\/such\/binary/);
    assert.deepEqual(readdirOrEmpty(fifoDir), [], "the FIFOs of the failed task are removed");
    assert.deepEqual(taskRows(), []);
    ok(berthctl(["containers", "rm", "no-binary"]), "containers rm");
  });

  test("attaching to a task whose output goes to a log file is refused", async () => {
    const id = "logged";
    const log = join(workdir, "logged.log");
    ok(ctr(["run", "-d", "--log-uri", `file://${log}`, image, id, "sleep", "300"]), "ctr run -d --log-uri");
    try {
      const r = berthctl(["tasks", "attach", id]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /writes its output to file:\/\/.*no stdio to attach to/);
    } finally {
      await removeContainer(id);
    }
  });

  test("an unknown container is not found, for tasks and containers alike", () => {
    for (const args of [["tasks", "start", "no-such"], ["containers", "info", "no-such"], ["containers", "rm", "no-such"], ["tasks", "exec", "--exec-id", "x", "no-such", "true"]]) {
      const r = berthctl(args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, /not found/, args.join(" "));
    }
    assert.match(berthctl(["tasks", "metrics", "no-such"]).stderr, /no metrics received/);
  });

  test("malformed flags are refused before anything is made", () => {
    const cases: [string[], RegExp][] = [
      [["run", "--rm", "-d", image, "both", "true"], /--detach and --rm cannot be specified together/],
      [["run", "--rm", "--mount", "type=bind,dst=/x", image, "bad-mount", "true"], /src must be an absolute path/],
      [["run", "--rm", "--mount", "type=bind,src=/tmp,dst=relative", image, "bad-mount", "true"], /dst must be an absolute path/],
      [["run", "--rm", "--mount", "src=/tmp,dst=/x,bogus=1", image, "bad-mount", "true"], /unknown key "bogus"/],
      [["run", "--rm", "--env", "NOEQUALS", image, "bad-env", "true"], /expected NAME=value/],
      [["run", "--rm", image, "../escape", "true"], /container id/],
      [["tasks", "kill", "--signal", "SIGNOPE", "x"], /invalid signal "SIGNOPE"/],
      [["tasks", "metrics", "--format", "xml", "x"], /unknown format/],
      [["tasks", "exec", "x", "true"], /exec-id must be provided/],
    ];
    for (const [args, message] of cases) {
      const r = berthctl(args);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
    }
    assert.deepEqual(containerIds(), []);
    assert.ok(!existsSync(join(d.state, "shims", namespace)) || readdirOrEmpty(join(d.state, "shims", namespace)).length === 0);
  });
});
