// Containers through the Engine API, driven by the real docker CLI (and raw HTTP where the
// wire matters): run in its forms (--rm, exit codes, -d, -i, -it under a terminal),
// the lifecycle verbs, ps/inspect/top/logs, options that reach the OCI spec (env, user,
// binds, tmpfs, read-only, limits, network), restart policies, log rotation, and bad input.
import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { api, removeEveryContainer, type ApiReply } from "./engine-net-helpers.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-containers-"));
  d = await startEngineWithBusybox();
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

// A test that fails midway leaves its containers (its own clean-up never ran): the later
// tests that list every container or reuse a name would fail too, showing one failure
// as several. They start clean instead.
afterEach(async (t) => {
  // A test's context has `passed` at run time (@types/node declares it for suites only).
  if (d && !("passed" in t && t.passed)) await removeEveryContainer(d);
});

/** Raw HTTP on docker.sock, a body sent as JSON (an object is serialized). */
const http = (method: string, path: string, body?: unknown) => api(d, method, path, body);

const message = (r: ApiReply) => (JSON.parse(r.body) as { message: string }).message;

function docker(args: string[], input?: string): RunResult {
  return d.docker(args, input);
}

/** Every container's full id, through docker and in the engine's containerd namespace. */
const containerIds = () => ({
  docker: docker(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean).sort(),
  containerd: d.ctr(["containers", "ls", "-q"], undefined, "moby").stdout.split("\n").filter(Boolean).sort(),
});

/** The snapshots of containers (keyed by a container id) in the engine's namespace. */
const containerSnapshots = () =>
  d
    .ctr(["snapshots", "ls"], undefined, "moby")
    .stdout.split("\n")
    .map((line) => /^([0-9a-f]{64})\s/.exec(line)?.[1])
    .filter(Boolean)
    .sort();

function inspect(ref: string): { Id: string; Name: string; State: { Status: string; Running: boolean; Paused: boolean; ExitCode: number; Restarting: boolean }; RestartCount: number; Config: Record<string, unknown>; HostConfig: Record<string, unknown> } {
  return JSON.parse(ok(docker(["inspect", "--type", "container", ref]), `inspect ${ref}`).stdout)[0];
}


/** The value of a cgroup file of a container, under cgroup v2 or v1. */
function cgroupValue(id: string, v2File: string, v1: [string, string]): string {
  const v2 = join("/sys/fs/cgroup/moby", id, v2File);
  if (existsSync(v2)) return readFileSync(v2, "utf8").trim();
  return readFileSync(join("/sys/fs/cgroup", v1[0], "moby", id, v1[1]), "utf8").trim();
}

describe("docker run", () => {
  test("run --rm prints the output, exits 0 and leaves no container", () => {
    const r = ok(docker(["run", "--rm", "busybox", "echo", "hi"]), "run --rm");
    assert.equal(r.stdout, "hi\n");
    assert.equal(docker(["ps", "-aq"]).stdout, "");
  });

  test("the exit code of the process is docker run's; stdout and stderr stay apart", () => {
    const r = docker(["run", "--name", "exit3", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
    const rows = ok(docker(["ps", "-a", "--filter", "name=exit3", "--format", "{{.Names}}|{{.Status}}|{{.Command}}"])).stdout.trim();
    assert.match(rows, /^exit3\|Exited \(3\) .* ago\|"sh -c 'echo out; ec…"$/);
    ok(docker(["rm", "exit3"]));
  });

  test("run -d, ps shows it up, stop (twice: the second is a no-op), rm", () => {
    const id = ok(docker(["run", "-d", "--name", "x", "busybox", "sleep", "300"]), "run -d").stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    const ps = ok(docker(["ps", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Image}}"])).stdout;
    assert.match(ps, new RegExp(`^${id.slice(0, 12)} x Up (Less than a second|\\d+ seconds?) busybox$`, "m"));
    ok(docker(["stop", "-t", "1", "x"]), "stop");
    assert.equal(inspect("x").State.Status, "exited");
    ok(docker(["stop", "x"]), "stop of a stopped container is a 304, which the CLI takes as success");
    ok(docker(["rm", "x"]), "rm");
    assert.equal(docker(["ps", "-aq"]).stdout, "");
  });

  test("stdin: -i relays input and its end closes the container's stdin", () => {
    const r = ok(docker(["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"], "line one\nline two\n"), "run -i");
    assert.equal(r.stdout, "line one\nline two\ndone\n");
  });

  test("docker attach streams what a running container writes from then on and exits with its code; start -a too", async () => {
    const id = ok(docker(["run", "-d", "busybox", "sh", "-c", "echo early; sleep 3; echo late; echo late-err >&2; exit 2"])).stdout.trim();
    await waitUntil("the early line in the log", () => docker(["logs", id]).stdout === "early\n");
    const attached = docker(["attach", id]);
    assert.equal(attached.code, 2);
    assert.equal(attached.stdout, "late\n", "only output written after the attach");
    assert.equal(attached.stderr, "late-err\n");
    const again = docker(["start", "-a", id]);
    assert.equal(again.code, 2);
    assert.equal(again.stdout, "early\nlate\n");
    ok(docker(["rm", id]));
  });

  test("a missing executable is exit 127 with runc's words; --rm still removes the container", () => {
    const r = docker(["run", "--rm", "busybox", "nosuchcmd"]);
    assert.equal(r.code, 127, r.stderr);
    assert.match(r.stderr, /executable file not found/);
    assert.equal(docker(["ps", "-aq"]).stdout, "");
  });

  test("-it under a terminal: a TTY inside, input typed reaches the shell, its exit code comes back", async () => {
    const r = await runInTerminal("docker run -it --rm busybox sh -c 'tty; read line; echo got:$line; exit 4'", "hello\n");
    assert.equal(r.code, 4, r.stdout);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    assert.match(r.stdout, /got:hello/);
  });
});

/** Runs `command` under `script` (a pseudo-terminal), typing `input`; stdin stays open until it ends. */
function runInTerminal(command: string, input: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      resolve({ code: code ?? 128, stdout, stderr });
    });
    child.stdin.write(input);
  });
}

describe("what reaches the container", () => {
  test("-e, -w, -u, --hostname, and the generated /etc/hosts", () => {
    const r = ok(docker(["run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "--hostname", "myhost", "busybox", "sh", "-c", "echo $FOO; pwd; id; hostname; grep myhost /etc/hosts"]));
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines.slice(0, 4), ["bar", "/tmp", "uid=65534(nobody) gid=65534(nogroup)", "myhost"]);
    // on the default bridge network the hostname names the container's address, as Docker writes it
    assert.match(lines[4]!, /^\d+\.\d+\.\d+\.\d+\tmyhost$/);
  });

  test("-v binds (read-only too), --tmpfs, --read-only", () => {
    const dir = join(work, "bind");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "f"), "from the host\n");
    const script = "cat /data/f; touch /data/x 2>/dev/null || echo data-ro; echo hi > /rw/out; touch /scratch/y && echo tmpfs-ok; touch /z 2>/dev/null || echo root-ro";
    const rw = join(work, "rw");
    const r = ok(docker(["run", "--rm", "-v", `${dir}:/data:ro`, "-v", `${rw}:/rw`, "--tmpfs", "/scratch", "--read-only", "busybox", "sh", "-c", script]));
    assert.deepEqual(r.stdout.trim().split("\n"), ["from the host", "data-ro", "tmpfs-ok", "root-ro"]);
    assert.equal(readFileSync(join(rw, "out"), "utf8"), "hi\n", "a missing bind source is made, and writes land on the host");
  });

  test("-m, --cpus and --pids-limit reach the container's cgroup", () => {
    const id = ok(docker(["run", "-d", "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sleep", "60"])).stdout.trim();
    try {
      assert.equal(cgroupValue(id, "memory.max", ["memory", "memory.limit_in_bytes"]), String(64 * 1024 * 1024));
      assert.equal(cgroupValue(id, "pids.max", ["pids", "pids.max"]), "20");
      const quota = existsSync(join("/sys/fs/cgroup/moby", id, "cpu.max"))
        ? cgroupValue(id, "cpu.max", ["cpu", ""])
        : `${cgroupValue(id, "", ["cpu", "cpu.cfs_quota_us"])} ${cgroupValue(id, "", ["cpu", "cpu.cfs_period_us"])}`;
      assert.equal(quota, "50000 100000");
    } finally {
      ok(docker(["rm", "-f", id]));
    }
  });

  test("--network none has loopback only; --network host is the host's network namespace", () => {
    const none = ok(docker(["run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev"])).stdout;
    const interfaces = (text: string) => text.split("\n").slice(2).filter(Boolean).map((l) => l.trim().split(":")[0]);
    assert.deepEqual(interfaces(none), ["lo"]);
    // The namespace itself is compared: the host's interface list moves while other tests make veths.
    const host = ok(docker(["run", "--rm", "--network", "host", "busybox", "busybox", "readlink", "/proc/self/ns/net"])).stdout.trim();
    assert.equal(host, readlinkSync("/proc/self/ns/net"));
  });
});

describe("lifecycle verbs", () => {
  test("kill by signal name reaches the process's trap; WINCH is accepted; kill of a stopped one is 409", async () => {
    const id = ok(docker(["run", "-d", "busybox", "sh", "-c", "trap 'echo got-usr1; exit 7' USR1; while true; do sleep 0.1; done"])).stdout.trim();
    ok(docker(["kill", "-s", "WINCH", id]), "kill -s WINCH");
    ok(docker(["kill", "-s", "USR1", id]), "kill -s USR1");
    assert.equal(ok(docker(["wait", id])).stdout.trim(), "7");
    assert.equal(ok(docker(["logs", id])).stdout, "got-usr1\n");
    const again = await http("POST", `/containers/${id}/kill`);
    assert.equal(again.status, 409);
    assert.equal(message(again), `Cannot kill container: ${id}: Container ${id} is not running`);
    assert.equal((await http("POST", `/containers/${id}/kill?signal=NOPE`)).status, 400);
    ok(docker(["rm", id]));
  });

  test("pause and unpause, rename, restart, top", () => {
    ok(docker(["run", "-d", "--name", "life", "busybox", "sleep", "300"]));
    ok(docker(["pause", "life"]));
    assert.match(ok(docker(["ps", "--filter", "name=life", "--format", "{{.Status}}"])).stdout, /\(Paused\)/);
    assert.equal(inspect("life").State.Paused, true);
    ok(docker(["unpause", "life"]));
    assert.equal(inspect("life").State.Paused, false);
    ok(docker(["rename", "life", "life2"]));
    assert.equal(inspect("life2").Name, "/life2");
    assert.equal(docker(["inspect", "--type", "container", "life"]).code, 1);
    const top = ok(docker(["top", "life2"])).stdout.split("\n");
    assert.match(top[0]!, /^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD/);
    assert.match(top[1]!, /^root\s+\d+\s+\d+\s+\d+\s+\S+\s+\?\s+\d\d:\d\d:\d\d\s+sleep 300$/);
    const withArgs = ok(docker(["top", "life2", "-o", "pid,args"])).stdout.trim().split("\n");
    assert.match(withArgs[0]!, /^PID\s+COMMAND$/);
    assert.match(withArgs[1]!, /^\d+\s+sleep 300$/);
    assert.equal(withArgs.length, 2, "only the container's processes");
    const before = inspect("life2").State;
    ok(docker(["restart", "-t", "0", "life2"]));
    const after = inspect("life2").State as typeof before & { StartedAt: string };
    assert.equal(after.Running, true);
    assert.notEqual(after.StartedAt, (before as typeof after).StartedAt);
    const rm = docker(["rm", "life2"]);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /You cannot remove a running container [0-9a-f]{64}\. Stop the container before attempting removal or force remove/);
    ok(docker(["rm", "-f", "life2"]));
    assert.equal(docker(["ps", "-aq"]).stdout, "");
  });

  test("wait conditions: headers at once, next-exit and removed carry the exit code", async () => {
    const id = ok(docker(["create", "busybox", "sh", "-c", "exit 9"])).stdout.trim();
    const nextExit = waitBody(`/containers/${id}/wait?condition=next-exit`);
    const removed = waitBody(`/containers/${id}/wait?condition=removed`);
    assert.equal((await nextExit.headers).status, 200, "headers before the container even started");
    await removed.headers;
    ok(docker(["start", id]));
    assert.deepEqual(JSON.parse(await nextExit.body), { Error: null, StatusCode: 9 });
    // not-running on a stopped container answers at once
    assert.deepEqual(JSON.parse((await http("POST", `/containers/${id}/wait`)).body), { Error: null, StatusCode: 9 });
    ok(docker(["rm", id]));
    assert.deepEqual(JSON.parse(await removed.body), { Error: null, StatusCode: 9 });
    const other = ok(docker(["create", "busybox", "true"])).stdout.trim();
    const bad = await http("POST", `/containers/${other}/wait?condition=sometime`);
    assert.equal(bad.status, 400);
    assert.match(message(bad), /invalid condition/);
    ok(docker(["rm", other]));
  });

  test("ps filters: status, name, id, label, ancestor, exited, before/since; -n", () => {
    assert.equal(docker(["ps", "-aq"]).stdout, "", "earlier tests left nothing");
    assert.equal(docker(["run", "--name", "fa", "--label", "tier=web", "busybox", "sh", "-c", "exit 2"]).code, 2);
    const b = ok(docker(["run", "-d", "--name", "fb", "--label", "tier=db", "busybox", "sleep", "300"])).stdout.trim();
    const c = ok(docker(["create", "--name", "fc", "busybox", "true"])).stdout.trim();
    const names = (...filters: string[]) =>
      ok(docker(["ps", "-a", ...filters.flatMap((f) => ["--filter", f]), "--format", "{{.Names}}"])).stdout.split("\n").filter(Boolean);
    assert.deepEqual(names(), ["fc", "fb", "fa"], "newest first");
    assert.deepEqual(names("status=running"), ["fb"]);
    assert.deepEqual(names("status=created"), ["fc"]);
    assert.deepEqual(names("status=exited", "status=created"), ["fc", "fa"]);
    assert.deepEqual(names("name=fb"), ["fb"]);
    assert.deepEqual(names(`id=${b.slice(0, 10)}`), ["fb"]);
    assert.deepEqual(names("label=tier"), ["fb", "fa"]);
    assert.deepEqual(names("label=tier=db"), ["fb"]);
    assert.deepEqual(names("ancestor=busybox"), ["fc", "fb", "fa"]);
    assert.deepEqual(names("ancestor=docker.io/library/busybox:latest"), ["fc", "fb", "fa"]);
    assert.deepEqual(names("exited=2"), ["fa"]);
    assert.deepEqual(names("before=fb"), ["fa"]);
    assert.deepEqual(names("since=fb"), ["fc"]);
    assert.deepEqual(ok(docker(["ps", "--format", "{{.Names}}"])).stdout.trim(), "fb", "running only without -a");
    assert.deepEqual(ok(docker(["ps", "-n", "1", "--format", "{{.Names}}"])).stdout.trim(), "fc");
    const badRegex = docker(["ps", "--filter", "name=["]);
    assert.equal(badRegex.code, 1);
    assert.match(badRegex.stderr, /Invalid filter 'name=\['/);
    const bad = docker(["ps", "--filter", "colour=red"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Invalid filter 'colour'/);
    const list = JSON.parse(ok(docker(["ps", "-a", "--filter", "name=fb", "--format", "{{json .}}"])).stdout) as Record<string, string>;
    assert.equal(list.Command, '"sleep 300"');
    assert.equal(list.Labels, "tier=db");
    ok(docker(["rm", "-f", "fa", b, c]));
  });

  test("inspect has Docker's shape: State, Config with image defaults, HostConfig defaults", () => {
    const id = ok(docker(["create", "--name", "shape", "-e", "A=1", "--restart", "on-failure:3", "busybox", "sleep", "1"])).stdout.trim();
    const info = JSON.parse(ok(docker(["inspect", "shape"])).stdout)[0];
    assert.equal(info.Id, id);
    assert.equal(info.Name, "/shape");
    assert.equal(info.Path, "sleep");
    assert.deepEqual(info.Args, ["1"]);
    assert.equal(info.State.Status, "created");
    assert.equal(info.State.StartedAt, "0001-01-01T00:00:00Z");
    assert.match(info.Image, /^sha256:[0-9a-f]{64}$/);
    assert.equal(info.Config.Hostname, id.slice(0, 12));
    assert.ok(info.Config.Env.includes("A=1") && info.Config.Env.some((e: string) => e.startsWith("PATH=")), "the image's env is merged in");
    assert.deepEqual(info.Config.Cmd, ["sleep", "1"]);
    assert.equal(info.Config.Image, "busybox");
    assert.deepEqual(info.HostConfig.RestartPolicy, { Name: "on-failure", MaximumRetryCount: 3 });
    assert.equal(info.HostConfig.LogConfig.Type, "json-file");
    assert.ok("NetworkSettings" in info && "Mounts" in info && "GraphDriver" in info);
    assert.equal(ok(docker(["inspect", "-f", "{{.State.Running}}", id.slice(0, 8)])).stdout.trim(), "false", "an id prefix resolves");
    ok(docker(["rm", "shape"]));
  });

  test("container prune removes stopped containers only, by label when asked", () => {
    const keep = ok(docker(["run", "-d", "busybox", "sleep", "300"])).stdout.trim();
    const gone = ok(docker(["create", "--label", "p=1", "busybox", "true"])).stdout.trim();
    const other = ok(docker(["create", "busybox", "true"])).stdout.trim();
    const r = ok(docker(["container", "prune", "-f", "--filter", "label=p=1"]));
    assert.match(r.stdout, new RegExp(gone));
    assert.deepEqual(docker(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean).sort(), [keep, other].sort());
    ok(docker(["container", "prune", "-f"]));
    assert.deepEqual(docker(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean), [keep]);
    ok(docker(["rm", "-f", keep]));
  });

  test("resize is accepted before the process exists and while it runs", async () => {
    const id = ok(docker(["create", "-t", "busybox", "sleep", "300"])).stdout.trim();
    assert.equal((await http("POST", `/containers/${id}/resize?h=30&w=100`)).status, 200);
    ok(docker(["start", id]));
    assert.equal((await http("POST", `/containers/${id}/resize?h=40&w=120`)).status, 200);
    assert.equal((await http("POST", `/containers/${id}/resize?h=-1&w=120`)).status, 400);
    ok(docker(["rm", "-f", id]));
  });
});

/** A POST whose headers and body arrive separately (wait). */
function waitBody(path: string): { headers: Promise<{ status: number }>; body: Promise<string> } {
  let resolveHeaders!: (v: { status: number }) => void;
  const headers = new Promise<{ status: number }>((r) => (resolveHeaders = r));
  const body = new Promise<string>((resolve, reject) => {
    const req = request({ socketPath: d.dockerSocket, method: "POST", path }, (res) => {
      resolveHeaders({ status: res.statusCode! });
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => resolve(data));
    });
    req.on("error", reject);
    req.end();
  });
  return { headers, body };
}

describe("logs across rotation", () => {
  test("logs -f follows the log through its rotations, every line in order", async () => {
    const id = ok(
      docker(["run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=5", "busybox", "sh", "-c", "sleep 0.5; i=0; while [ $i -lt 150 ]; do echo line-$i; i=$((i+1)); sleep 0.02; done"]),
    ).stdout.trim();
    const followed = ok(docker(["logs", "-f", id])).stdout.trim().split("\n");
    assert.deepEqual(followed, followed.map((_, i) => `line-${i}`));
    assert.equal(followed.length, 150);
    assert.ok(existsSync(join(d.root, "engine", "containers", id, `${id}-json.log.1`)), "the log was rotated");
    ok(docker(["rm", id]));
  });
});

describe("events", () => {
  test("container events carry labels, image and name, and each action's extra", () => {
    const since = String(Math.floor(Date.now() / 1000) - 1);
    const id = ok(docker(["create", "--name", "ev", "--label", "team=a", "busybox", "sleep", "300"])).stdout.trim();
    ok(docker(["start", "ev"]));
    ok(docker(["pause", "ev"]));
    ok(docker(["unpause", "ev"]));
    ok(docker(["rename", "ev", "ev2"]));
    ok(docker(["kill", "ev2"]));
    ok(docker(["rm", "ev2"]));
    // The CLI sends whole seconds: an `until` a second ahead covers every event so far.
    const until = String(Math.floor(Date.now() / 1000) + 1);
    const lines = ok(docker(["events", "--since", since, "--until", until, "--filter", `container=${id}`, "--format", "{{json .}}"])).stdout.trim().split("\n");
    const events = lines.map((l) => JSON.parse(l) as { Action: string; Actor: { Attributes: Record<string, string> } });
    assert.deepEqual(
      events.map((e) => e.Action),
      ["create", "start", "pause", "unpause", "rename", "kill", "die", "destroy"],
    );
    const by = (action: string) => events.find((e) => e.Action === action)!.Actor.Attributes;
    assert.deepEqual(by("create"), { team: "a", image: "busybox", name: "ev" });
    assert.equal(by("rename").oldName, "/ev");
    assert.equal(by("rename").name, "ev2");
    assert.equal(by("kill").signal, "9");
    assert.equal(by("die").exitCode, "137");
  });
});

describe("logs", () => {
  test("stdout/stderr selection, --tail, --timestamps, --since, and -f until the container exits", () => {
    const id = ok(docker(["run", "-d", "busybox", "sh", "-c", "echo a; echo b >&2; echo c; sleep 1; echo d"])).stdout.trim();
    const followed = ok(docker(["logs", "-f", id]));
    assert.equal(followed.stdout, "a\nc\nd\n");
    assert.equal(followed.stderr, "b\n");
    // stdout and stderr are relayed apart, so only lines of one stream keep their order.
    assert.equal(ok(docker(["logs", "--tail", "1", id])).stdout, "d\n");
    const two = ok(docker(["logs", "--tail", "2", id]));
    assert.equal((two.stdout + two.stderr).split("\n").filter(Boolean).length, 2);
    assert.equal(ok(docker(["logs", "--tail", "0", id])).stdout, "");
    const stamped = ok(docker(["logs", "-t", id])).stdout.split("\n").filter(Boolean);
    assert.equal(stamped.length, 3);
    for (const line of stamped) assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z [acd]$/);
    assert.equal(ok(docker(["logs", "--since", "2100-01-01T00:00:00Z", id])).stdout, "");
    ok(docker(["rm", id]));
  });

  test("logs with neither stream is Docker's 400; of an unknown container a 404", async () => {
    const id = ok(docker(["create", "busybox", "true"])).stdout.trim();
    const r = await http("GET", `/containers/${id}/logs`);
    assert.equal(r.status, 400);
    assert.equal(message(r), "Bad parameters: you must choose at least one stream");
    assert.equal((await http("GET", "/containers/nosuch/logs?stdout=1")).status, 404);
    ok(docker(["rm", id]));
  });

  test("json-file rotation: max-size and max-file keep the newest output in rotated files", async () => {
    const id = ok(
      docker(["run", "-d", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "busybox", "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done"]),
    ).stdout.trim();
    ok(docker(["wait", id]));
    const dir = join(d.root, "engine", "containers", id);
    const files = readdirSync(dir).filter((f) => f.includes("-json.log")).sort();
    assert.deepEqual(files, [`${id}-json.log`, `${id}-json.log.1`, `${id}-json.log.2`]);
    const lines = ok(docker(["logs", id])).stdout.trim().split("\n");
    assert.equal(lines.at(-1), "line-399");
    // What is kept is in order and ends with the newest line.
    const numbers = lines.map((l) => Number(l.slice("line-".length)));
    assert.deepEqual(numbers, [...numbers].sort((x, y) => x - y));
    assert.ok(numbers.length < 400, "the oldest output was rotated away");
    ok(docker(["rm", id]));
  });
});

describe("the tasks service restarting", () => {
  test("an exit while the tasks service is down is still recorded, and the container runs again", async () => {
    const id = ok(docker(["run", "-d", "busybox", "sh", "-c", "sleep 2; exit 4"])).stdout.trim();
    const tasks = d.servicePid("tasks");
    assert.ok(tasks, "the tasks service runs");
    process.kill(tasks, "SIGKILL");
    await d.waitForRestart("tasks", tasks);
    assert.equal(ok(docker(["wait", id])).stdout.trim(), "4");
    assert.equal(inspect(id).State.Status, "exited");
    assert.equal(docker(["start", "-a", id]).code, 4, "it starts again: the old task was deleted");
    ok(docker(["rm", id]));
  });
});

describe("restart policies", () => {
  test("on-failure:2 restarts twice, then stays exited", async () => {
    const id = ok(docker(["run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"])).stdout.trim();
    await waitUntil("two restarts and the end", () => {
      const s = inspect(id);
      return s.RestartCount === 2 && s.State.Status === "exited";
    });
    assert.equal(ok(docker(["logs", id])).stdout, "run\nrun\nrun\n");
    ok(docker(["rm", id]));
  });

  test("always restarts a container that exits; docker stop leaves it stopped", async () => {
    const id = ok(docker(["run", "-d", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2"])).stdout.trim();
    await waitUntil("a restart", () => inspect(id).RestartCount >= 1);
    ok(docker(["stop", "-t", "1", id]));
    const count = inspect(id).RestartCount;
    assert.equal(inspect(id).State.Status, "exited");
    // Long enough for a restart the policy would have made (the backoff is far shorter).
    ok(docker(["run", "--rm", "busybox", "sleep", "1"]));
    assert.equal(inspect(id).State.Status, "exited");
    assert.equal(inspect(id).RestartCount, count);
    ok(docker(["rm", id]));
  });
});

describe("bad input", () => {
  test("malformed JSON, unknown image, invalid reference, no command, bad names: clear errors, nothing created", async () => {
    const before = containerIds();
    const malformed = await http("POST", "/containers/create", "{not json");
    assert.equal(malformed.status, 400);
    assert.match(message(malformed), /invalid JSON/);
    const unknown = await http("POST", "/containers/create", { Image: "nosuch" });
    assert.equal(unknown.status, 404);
    assert.equal(message(unknown), "No such image: docker.io/library/nosuch:latest");
    const upper = await http("POST", "/containers/create", { Image: "BusyBox" });
    assert.equal(upper.status, 400);
    assert.match(message(upper), /^invalid reference format: repository name must be lowercase/);
    const noCmd = await http("POST", "/containers/create", { Image: "busybox", Cmd: [] });
    assert.equal(noCmd.status, 400);
    assert.equal(message(noCmd), "No command specified");
    const badName = await http("POST", "/containers/create?name=bad%20name", { Image: "busybox" });
    assert.equal(badName.status, 400);
    assert.match(message(badName), /Invalid container name \(bad name\)/);
    const badType = await http("POST", "/containers/create", { Image: "busybox", Cmd: "echo", Env: [1] });
    assert.equal(badType.status, 400);
    assert.match(message(badType), /Env must be a list of strings/);
    const badBind = await http("POST", "/containers/create", { Image: "busybox", HostConfig: { Binds: ["./relative:/x"] } });
    assert.equal(badBind.status, 400);
    const badPolicy = await http("POST", "/containers/create", { Image: "busybox", HostConfig: { RestartPolicy: { Name: "sometimes" } } });
    assert.equal(badPolicy.status, 400);
    assert.deepEqual(containerIds(), before, "nothing was created");
    const r = docker(["run", "--rm", "nosuch:1"]);
    assert.equal(r.code, 125);
  });

  test("every refused create option is a 400 (404 for an unknown network) naming the problem, and nothing is made", async () => {
    const [before, snapshotsBefore] = [containerIds(), containerSnapshots()];
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ WorkingDir: "relative" }, 400, /working directory 'relative' is invalid/],
      [{ HostConfig: { Memory: 1024 } }, 400, /Minimum memory limit allowed is 6MB/],
      [{ HostConfig: { NanoCpus: -1 } }, 400, /NanoCpus/],
      [{ HostConfig: { AutoRemove: true, RestartPolicy: { Name: "always" } } }, 400, /AutoRemove/],
      [{ HostConfig: { RestartPolicy: { Name: "always", MaximumRetryCount: 2 } } }, 400, /maximum retry count/],
      [{ HostConfig: { LogConfig: { Type: "syslog" } } }, 400, /logging driver "syslog"/],
      [{ HostConfig: { LogConfig: { Type: "json-file", Config: { "max-size": "lots" } } } }, 400, /invalid max-size/],
      [{ HostConfig: { LogConfig: { Type: "json-file", Config: { colour: "red" } } } }, 400, /unknown log opt 'colour'/],
      [{ HostConfig: { Tmpfs: { relative: "" } } }, 400, /invalid tmpfs mount/],
      [{ HostConfig: { Mounts: [{ Type: "npipe", Target: "/v" }] } }, 400, /mount type "npipe"/],
      [{ HostConfig: { Mounts: [{ Type: "volume", Source: "bad/name", Target: "/v" }] } }, 400, /includes invalid characters for a local volume name/],
      [{ HostConfig: { Mounts: [{ Type: "bind", Source: join(work, "missing"), Target: "/m" }] } }, 400, /bind source path does not exist/],
      [{ HostConfig: { NetworkMode: "mynet" } }, 404, /network mynet not found/],
      [{ HostConfig: "yes" }, 400, /HostConfig must be an object/],
      [{ User: "nosuchuser" }, 400, /unable to find user nosuchuser/],
    ];
    for (const [extra, status, text] of cases) {
      const r = await http("POST", "/containers/create", { Image: "busybox", Cmd: ["true"], ...extra });
      assert.equal(r.status, status, JSON.stringify(extra));
      assert.match(message(r), text, JSON.stringify(extra));
    }
    assert.deepEqual(containerIds(), before, "nothing was created, no containerd container left");
    assert.deepEqual(containerSnapshots(), snapshotsBefore, "no container snapshot left");
  });

  test("verbs on a container in the wrong state are 409s; bad parameters 400s", async () => {
    const id = ok(docker(["create", "--name", "idle", "busybox", "sleep", "300"])).stdout.trim();
    const cases: [string, string, number, RegExp][] = [
      ["POST", "/containers/idle/pause", 409, /is not running/],
      ["POST", "/containers/idle/unpause", 409, /is not paused/],
      ["GET", "/containers/idle/top", 409, /is not running/],
      ["POST", "/containers/idle/rename?name=idle", 400, /same name/],
      ["POST", "/containers/idle/rename", 400, /names may be empty/],
      ["GET", "/containers/idle/logs?stdout=1&tail=some", 400, /tail/],
      ["GET", "/containers/idle/logs?stdout=1&since=yesterday", 400, /since/],
      ["GET", "/containers/json?filters=%7B%22status%22%3A%5B%22sleeping%22%5D%7D", 400, /Invalid filter 'status=sleeping'/],
      ["POST", "/containers/prune?filters=%7B%22until%22%3A%5B%22soon%22%5D%7D", 400, /until=soon/],
      ["POST", "/containers/idle/stop?t=soon", 400, /invalid value for t/],
    ];
    for (const [method, path, status, text] of cases) {
      const r = await http(method, path);
      assert.equal(r.status, status, `${method} ${path}`);
      assert.match(message(r), text, `${method} ${path}`);
    }
    ok(docker(["start", "idle"]));
    ok(docker(["pause", "idle"]));
    const twice = await http("POST", "/containers/idle/pause");
    assert.equal(twice.status, 409);
    assert.match(message(twice), /already paused/);
    ok(docker(["rm", "-f", id]));
  });

  test("a taken name is Docker's 409, and the second container is not made", async () => {
    const before = containerIds().docker;
    const id = ok(docker(["create", "--name", "taken", "busybox", "true"])).stdout.trim();
    const r = await http("POST", "/containers/create?name=taken", { Image: "busybox" });
    assert.equal(r.status, 409);
    assert.equal(message(r), `Conflict. The container name "/taken" is already in use by container "${id}". You have to remove (or rename) that container to be able to reuse that name.`);
    const rename = ok(docker(["create", "busybox", "true"])).stdout.trim();
    assert.equal((await http("POST", `/containers/${rename}/rename?name=taken`)).status, 409);
    assert.deepEqual(containerIds().docker, [...before, id, rename].sort(), "the two containers made, no third");
    ok(docker(["rm", id, rename]));
  });

  test("an unknown container is a 404 naming it, for every verb", async () => {
    for (const [method, path] of [
      ["GET", "/containers/x/json"],
      ["POST", "/containers/x/start"],
      ["POST", "/containers/x/stop"],
      ["POST", "/containers/x/kill"],
      ["POST", "/containers/x/wait"],
      ["DELETE", "/containers/x"],
      ["GET", "/containers/x/top"],
    ] as const) {
      const r = await http(method, path);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(message(r), "No such container: x");
    }
    const rm = docker(["rm", "-f", "x"]);
    assert.equal(rm.code, 0, "rm -f of a missing container: the CLI prints the 404 and succeeds");
  });
});
