// docker exec and docker stats against the Engine API, with the real docker CLI (and raw
// HTTP for what the CLI hides): output framing, exit codes, stdin and its half-close,
// TTYs, detached execs, start failures, Docker's errors; stats from the cgroup.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { connect } from "node:net";
import { Writable } from "node:stream";
import Docker from "dockerode";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { childPids, ok, run, type Daemon } from "./harness.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { engineConnectionsHeld, engineHttp, eventually, jsonOf, startEngineWithBusybox } from "./fixtures/engine-session.ts";

let d: Daemon;
let running = "";

before(async () => {
  d = await startEngineWithBusybox();
  running = ok(d.docker(["run", "-d", "--name", "box", "busybox", "sleep", "100000"]), "docker run -d").stdout.trim();
});

after(async () => {
  if (!d) return;
  try {
    await removeEveryContainer(d);
  } finally {
    await d.destroy();
  }
});

test("docker exec prints stdout and stderr apart and exits with the command's code", () => {
  const hi = ok(d.docker(["exec", "box", "echo", "hi"]), "exec echo");
  assert.equal(hi.stdout, "hi\n");
  const both = d.docker(["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
  assert.equal(both.code, 5);
  assert.equal(both.stdout, "out\n");
  assert.equal(both.stderr, "err\n");
});

test("docker exec -i relays stdin, and its end closes the process's stdin", () => {
  const r = ok(d.docker(["exec", "-i", "box", "cat"], "data\n"), "exec -i cat");
  assert.equal(r.stdout, "data\n");
  // More than the FIFO and socket buffers hold: back-pressure both ways, nothing lost.
  const big = Buffer.alloc(3 * 1024 * 1024, "0123456789abcdef");
  const counted = ok(d.docker(["exec", "-i", "box", "wc", "-c"], big), "exec -i wc");
  assert.equal(counted.stdout.trim(), String(big.length));
});

test("docker exec -it runs on a terminal (under script(1))", () => {
  const env = { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") };
  const r = run("script", ["-qec", "docker exec -it box sh -c 'tty; echo tty-ok; exit 3'", "/dev/null"], undefined, env);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stdout, /\/dev\/pts\/\d+/);
  assert.match(r.stdout, /tty-ok\r\n/);
  // The CLI resizes the exec's terminal after the start and complains when that fails.
  assert.doesNotMatch(r.stdout + r.stderr, /failed to resize tty/);
  const missing = run("script", ["-qec", "docker exec -it box no-such-command", "/dev/null"], undefined, env);
  assert.equal(missing.code, 127, missing.stdout + missing.stderr);
  assert.match(missing.stdout, /executable file not found/);
});

test("exec's user, working directory and environment apply", () => {
  const r = ok(d.docker(["exec", "-u", "nobody", "-w", "/etc", "-e", "GREETING=hello", "box", "sh", "-c", 'echo "$GREETING $(pwd) $(id -u)"']), "exec -u -w -e");
  assert.equal(r.stdout, "hello /etc 65534\n");
});

test("docker exec -d returns at once and the command runs on", async () => {
  ok(d.docker(["exec", "-d", "box", "sh", "-c", "echo done > /tmp/detached"]), "exec -d");
  await eventually("the detached exec's file", () => (d.docker(["exec", "box", "cat", "/tmp/detached"]).stdout === "done\n" ? true : undefined));
});

test("a missing command exits 127 and a non-executable one 126, with the runtime's reason", () => {
  const missing = d.docker(["exec", "box", "no-such-command"]);
  assert.equal(missing.code, 127);
  assert.match(missing.stdout + missing.stderr, /executable file not found/);
  const notExecutable = d.docker(["exec", "box", "/etc/passwd"]);
  assert.equal(notExecutable.code, 126);
  assert.match(notExecutable.stdout + notExecutable.stderr, /permission denied/);
  const badDir = d.docker(["exec", "-w", "/no/such/dir", "box", "true"]);
  assert.equal(badDir.code, 126);
});

test("exec into a container that is not running, or paused, is Docker's 409", async () => {
  const id = ok(d.docker(["create", "--name", "stopped", "busybox", "true"]), "create").stdout.trim();
  const r = d.docker(["exec", "stopped", "true"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`Container ${id} is not running`));
  const raw = await engineHttp(d, "POST", "/v1.41/containers/stopped/exec", JSON.stringify({ Cmd: ["true"] }));
  assert.equal(raw.status, 409);
  ok(d.docker(["pause", "box"]), "pause");
  try {
    const paused = d.docker(["exec", "box", "true"]);
    assert.notEqual(paused.code, 0);
    assert.match(paused.stderr, new RegExp(`Container ${running} is paused, unpause the container before exec`));
  } finally {
    ok(d.docker(["unpause", "box"]), "unpause");
  }
  const unknown = await engineHttp(d, "POST", "/v1.41/containers/no-such-box/exec", JSON.stringify({ Cmd: ["true"] }));
  assert.equal(unknown.status, 404);
  assert.equal(jsonOf(unknown).message, "No such container: no-such-box");
});

test("exec create without a command, bad fields, and unknown exec ids get Docker's errors", async () => {
  const noCmd = await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ AttachStdout: true }));
  assert.equal(noCmd.status, 400);
  assert.equal(jsonOf(noCmd).message, "No exec command specified");
  const badCmd = await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ Cmd: "echo hi" }));
  assert.equal(badCmd.status, 400);
  assert.match(String(jsonOf(badCmd).message), /Cmd must be a list of strings/);
  const badJson = await engineHttp(d, "POST", "/v1.41/containers/box/exec", "{not json");
  assert.equal(badJson.status, 400);
  for (const [method, path] of [
    ["GET", "/v1.41/exec/nope/json"],
    ["POST", "/v1.41/exec/nope/start"],
    ["POST", "/v1.41/exec/nope/resize?h=10&w=10"],
  ] as const) {
    const r = await engineHttp(d, method, path, method === "POST" ? "{}" : undefined);
    assert.equal(r.status, 404, path);
    assert.equal(jsonOf(r).message, "no such exec");
  }
});

test("exec inspect: ExitCode is null until the exec exits; a second start is a 409", async () => {
  const created = await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ Cmd: ["sh", "-c", "exit 7"] }));
  assert.equal(created.status, 201);
  const id = String(jsonOf(created).Id);
  assert.match(id, /^[0-9a-f]{64}$/);
  const before = jsonOf(await engineHttp(d, "GET", `/v1.41/exec/${id}/json`));
  assert.equal(before.ExitCode, null);
  assert.equal(before.Running, false);
  assert.equal(before.ContainerID, running);
  assert.deepEqual(before.ProcessConfig, { tty: false, entrypoint: "sh", arguments: ["-c", "exit 7"], privileged: false, user: "" });
  const listed = ok(d.docker(["inspect", "-f", "{{json .ExecIDs}}", "box"]), "inspect ExecIDs").stdout;
  assert.ok((JSON.parse(listed) as string[]).includes(id), listed);
  const start = await engineHttp(d, "POST", `/v1.41/exec/${id}/start`, JSON.stringify({ Detach: true }));
  assert.equal(start.status, 200);
  const ended = await eventually("the exit code", async () => {
    const state = jsonOf(await engineHttp(d, "GET", `/v1.41/exec/${id}/json`));
    return state.ExitCode === null ? undefined : state;
  });
  assert.equal(ended.ExitCode, 7);
  assert.equal(ended.Running, false);
  assert.ok(!ok(d.docker(["inspect", "-f", "{{json .ExecIDs}}", "box"]), "inspect ExecIDs").stdout.includes(id), "an ended exec is no longer listed");
  const resizeEnded = await engineHttp(d, "POST", `/v1.41/exec/${id}/resize?h=30&w=100`);
  assert.equal(resizeEnded.status, 409);
  const again = await engineHttp(d, "POST", `/v1.41/exec/${id}/start`, JSON.stringify({ Detach: true }));
  assert.equal(again.status, 409);
  assert.equal(jsonOf(again).message, `Error: Exec command ${id} is already running`);
});

test("exec start without an upgrade streams framed output until the process ends (dockerode, testcontainers)", async () => {
  const created = jsonOf(await engineHttp(d, "POST", "/containers/box/exec", JSON.stringify({ Cmd: ["sh", "-c", "echo one; echo two >&2"], AttachStdout: true, AttachStderr: true })));
  const reply = await engineHttp(d, "POST", `/exec/${String(created.Id)}/start`, JSON.stringify({ Detach: false, Tty: false }));
  assert.equal(reply.status, 200);
  const frames: [number, string][] = [];
  for (let at = 0; at < reply.body.length; ) {
    const size = reply.body.readUInt32BE(at + 4);
    frames.push([reply.body[at]!, reply.body.subarray(at + 8, at + 8 + size).toString()]);
    at += 8 + size;
  }
  assert.deepEqual(frames.filter(([s]) => s === 1).map(([, t]) => t).join(""), "one\n");
  assert.deepEqual(frames.filter(([s]) => s === 2).map(([, t]) => t).join(""), "two\n");
});

test("dockerode: exec with a hijacked stream, stdin and its end, demultiplexed output, the exit code", async () => {
  const docker = new Docker({ socketPath: d.dockerSocket });
  const exec = await docker.getContainer("box").exec({ Cmd: ["sh", "-c", "cat; echo to-stderr >&2; exit 6"], AttachStdin: true, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: true });
  let out = "";
  let err = "";
  docker.modem.demuxStream(
    stream,
    new Writable({ write: (chunk: Buffer, _enc, done) => ((out += chunk.toString()), done()) }),
    new Writable({ write: (chunk: Buffer, _enc, done) => ((err += chunk.toString()), done()) }),
  );
  const ended = new Promise<void>((resolve) => stream.on("end", resolve));
  stream.end("piped through\n");
  await ended;
  assert.equal(out, "piped through\n");
  assert.equal(err, "to-stderr\n");
  const state = await exec.inspect();
  assert.equal(state.ExitCode, 6);
  assert.equal(state.Running, false);
});

test("docker stats --no-stream shows a memory figure and a CPU percentage", () => {
  const r = ok(d.docker(["stats", "--no-stream", "box"]), "docker stats");
  const line = r.stdout.split("\n").find((l) => l.includes("box"));
  assert.ok(line, r.stdout);
  assert.match(line, /\d+(\.\d+)?%/);
  assert.match(line, /\d+(\.\d+)?[KMG]i?B \/ \d+(\.\d+)?[KMG]i?B/);
  assert.match(line, /\s1\s*$/, "one process (sleep)");
  const formatted = ok(d.docker(["stats", "--no-stream", "--format", "{{.MemUsage}}|{{.CPUPerc}}", "box"]), "stats --format").stdout.trim();
  assert.doesNotMatch(formatted, /^0B/, "the memory usage is the cgroup's, not zero");
});

test("a stats stream sends a sample a second with the previous one as precpu", async () => {
  const samples = await new Promise<Record<string, any>[]>((resolve, reject) => {
    const got: Record<string, any>[] = [];
    let buffered = "";
    const req = request({ socketPath: d.dockerSocket, method: "GET", path: "/v1.41/containers/box/stats?stream=1" }, (res) => {
      assert.equal(res.statusCode, 200);
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          got.push(JSON.parse(buffered.slice(0, nl)));
          buffered = buffered.slice(nl + 1);
          if (got.length === 2) {
            req.destroy();
            resolve(got);
          }
        }
      });
    });
    req.on("error", (err) => (got.length === 2 ? undefined : reject(err)));
    req.end();
  });
  const [first, second] = samples as [Record<string, any>, Record<string, any>];
  assert.equal(first.name, "/box");
  assert.equal(first.id, running);
  assert.equal(first.preread, "0001-01-01T00:00:00Z");
  assert.ok(first.memory_stats.usage > 0);
  assert.ok(first.memory_stats.limit > 0);
  assert.ok(first.cpu_stats.online_cpus >= 1);
  assert.equal(second.preread, first.read);
  assert.deepEqual(second.precpu_stats, first.cpu_stats);
  assert.ok(second.cpu_stats.system_cpu_usage > first.cpu_stats.system_cpu_usage);
  assert.equal(second.pids_stats.current, 1);
});

test("stats show a container's memory limit, and zeros for a container that is not running", async () => {
  ok(d.docker(["run", "-d", "--name", "limited", "-m", "64m", "busybox", "sleep", "100000"]), "run -m 64m");
  const limited = jsonOf(await engineHttp(d, "GET", "/v1.41/containers/limited/stats?stream=0&one-shot=1")) as Record<string, any>;
  assert.equal(limited.memory_stats.limit, 64 * 1024 * 1024);
  assert.equal(limited.preread, "0001-01-01T00:00:00Z", "one-shot takes a single sample");
  const line = ok(d.docker(["stats", "--no-stream", "limited"]), "docker stats").stdout;
  assert.match(line, /\/ 64MiB/);
  ok(d.docker(["create", "--name", "not-started", "busybox", "true"]), "create");
  const idle = jsonOf(await engineHttp(d, "GET", "/v1.41/containers/not-started/stats?stream=0&one-shot=1")) as Record<string, any>;
  assert.equal(idle.name, "/not-started");
  assert.equal(idle.cpu_stats.cpu_usage.total_usage, 0);
  assert.deepEqual(idle.memory_stats, {});
});

test("stats of an unknown container is a 404", async () => {
  const r = await engineHttp(d, "GET", "/v1.41/containers/no-such-box/stats?stream=0");
  assert.equal(r.status, 404);
  assert.equal(jsonOf(r).message, "No such container: no-such-box");
});

test("exec_create, exec_start and exec_die events name the exec and its exit code", () => {
  const since = (Date.now() / 1000 - 1).toFixed(3);
  assert.equal(d.docker(["exec", "box", "sh", "-c", "exit 4"]).code, 4);
  const until = (Date.now() / 1000 + 0.2).toFixed(3);
  const r = ok(d.docker(["events", "--since", since, "--until", until, "--filter", "container=box", "--format", "{{.Action}}|{{index .Actor.Attributes \"execID\"}}|{{index .Actor.Attributes \"exitCode\"}}"]), "docker events");
  const events = r.stdout.trim().split("\n").map((line) => line.split("|"));
  const actions = events.map(([action]) => action);
  assert.deepEqual(actions.slice(-3), ["exec_create: sh -c exit 4", "exec_start: sh -c exit 4", "exec_die"]);
  const [created, started, died] = events.slice(-3) as [string[], string[], string[]];
  assert.match(created[1]!, /^[0-9a-f]{64}$/);
  assert.equal(started[1], created[1]);
  assert.equal(died[1], created[1]);
  assert.equal(died[2], "4");
});

test("closing the hijacked connection detaches: the exec runs on and its exit is still recorded", async () => {
  const created = jsonOf(await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ Cmd: ["sh", "-c", "sleep 1; echo late; echo done > /tmp/after-detach; exit 3"], AttachStdout: true })));
  const id = String(created.Id);
  await new Promise<void>((resolve, reject) => {
    const socket = connect(d.dockerSocket);
    const body = JSON.stringify({ Detach: false, Tty: false });
    socket.on("error", reject);
    socket.write(`POST /v1.41/exec/${id}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) {
        assert.match(head, /^HTTP\/1\.1 101 UPGRADED\r\n/);
        socket.destroy();
        resolve();
      }
    });
  });
  await eventually("the detached exec's file", () => (d.docker(["exec", "box", "cat", "/tmp/after-detach"]).stdout === "done\n" ? true : undefined));
  const ended = await eventually("the exit code", async () => {
    const state = jsonOf(await engineHttp(d, "GET", `/v1.41/exec/${id}/json`));
    return state.ExitCode === null ? undefined : state;
  });
  assert.equal(ended.ExitCode, 3);
});

test("an exec start refused before the takeover is a plain HTTP error, also on an upgrade request", async () => {
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(d.dockerSocket);
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("end", () => {
      socket.destroy();
      resolve(text);
    });
    socket.on("error", reject);
    socket.write("POST /v1.41/exec/nope/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  });
  assert.match(reply, /^HTTP\/1\.1 404 /);
  assert.match(reply, /\{"message":"no such exec"\}$/);
});

test("a client that stops reading and then goes away does not leave the exec blocked on its output", async () => {
  const created = jsonOf(await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ Cmd: ["sh", "-c", "head -c 8000000 /dev/zero; echo done > /tmp/after-flood"], AttachStdout: true })));
  const id = String(created.Id);
  const socket = connect(d.dockerSocket);
  socket.on("error", () => {});
  const body = JSON.stringify({ Detach: false, Tty: false });
  socket.write(`POST /v1.41/exec/${id}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  // Not reading: every buffer on the way fills until the process blocks writing its pipe.
  socket.pause();
  const pid = await eventually("the exec's pid", async () => {
    const state = jsonOf(await engineHttp(d, "GET", `/v1.41/exec/${id}/json`));
    return state.Running ? Number(state.Pid) : undefined;
  });
  // The writer is the shell's child (head).
  const blockedWriting = (p: number) => {
    try {
      return readFileSync(`/proc/${p}/wchan`, "utf8").includes("pipe_write");
    } catch {
      return false;
    }
  };
  await eventually("the exec to block on its output", () => (childPids(pid).some(blockedWriting) ? true : undefined));
  socket.destroy();
  await eventually("the exec to finish after the client left", () => (d.docker(["exec", "box", "cat", "/tmp/after-flood"]).stdout === "done\n" ? true : undefined));
});

test("a running TTY exec can be resized; a bad size is a 400", async () => {
  const created = jsonOf(await engineHttp(d, "POST", "/v1.41/containers/box/exec", JSON.stringify({ Cmd: ["sleep", "2"], Tty: true })));
  const id = String(created.Id);
  assert.equal((await engineHttp(d, "POST", `/v1.41/exec/${id}/start`, JSON.stringify({ Detach: true, Tty: true }))).status, 200);
  const resized = await engineHttp(d, "POST", `/v1.41/exec/${id}/resize?h=40&w=120`);
  assert.equal(resized.status, 200, resized.body.toString());
  const bad = await engineHttp(d, "POST", `/v1.41/exec/${id}/resize?h=-1&w=abc`);
  assert.equal(bad.status, 400);
  await eventually("the exec to end", async () => (jsonOf(await engineHttp(d, "GET", `/v1.41/exec/${id}/json`)).ExitCode === 0 ? true : undefined));
});

test("no connection to docker.sock stays open once its client is gone", async () => {
  // Every client above has exited; a hijacked or errored connection the engine forgot to read would still be here.
  await eventually("the engine's connections to close", () => (engineConnectionsHeld(d.pid!, d.dockerSocket) === 0 ? true : undefined), 5_000);
});
