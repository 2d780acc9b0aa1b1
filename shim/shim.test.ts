// berth-shim against real runc and a busybox container. Every check runs twice: with the
// release build (dist/berth-shim) and with the ASan/UBSan build (dist/berth-shim-sanitize),
// whose sanitizer reports go to files that must not exist at the end.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, watch, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { constants as os, tmpdir } from "node:os";
import { join } from "node:path";
import { isRunning } from "../core/process.ts";
import * as native from "../native/index.ts";
import { inspectShimState, readShimExit, readShimOom, sendShimCommand, shimGone, startShim, waitForShim, type ShimOptions, type ShimStarted } from "./client.ts";
import { cgroupLeftIn, kernelOomKills, makeBusyboxRootfs, processSpec, removeCgroup, writeBundle } from "./test-bundle.ts";

const distDir = new URL("../dist/", import.meta.url).pathname;
const RUNC = "runc";
const needsRoot = process.getuid?.() !== 0 && "needs root (runc)";

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A client FIFO's reading end, as ctr holds it; `ended` resolves when every writer has closed.
 * Opened before the shim starts, as ctr does: a FIFO nobody has open loses what it held,
 * and a reader that arrives after the last writer left never sees EOF.
 */
class FifoReader {
  text = "";
  readonly ended: Promise<void>;
  constructor(path: string) {
    // O_NONBLOCK: the open does not wait for a writer.
    const socket = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (this.text += chunk));
    this.ended = new Promise((resolve, reject) => {
      socket.on("end", resolve);
      socket.on("error", reject);
    });
  }
}

function writeFifo(path: string, data: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  try {
    writeFileSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

// Node's "pipe" stdio are socketpairs; both kinds count.
function pipeInodes(pid: number): string[] {
  const links: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      links.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return links.filter((link) => link.startsWith("pipe:") || link.startsWith("socket:"));
}

for (const variant of ["release", "sanitize"] as const) {
  const binary = join(distDir, variant === "release" ? "berth-shim" : "berth-shim-sanitize");

  describe(`berth-shim (${variant} build)`, { skip: needsRoot, concurrency: false }, () => {
    let base = "";
    let runcRoot = "";
    let rootfs = "";
    let sanitizerLogs = "";
    let env: NodeJS.ProcessEnv = process.env;
    const containers: { id: string; cgroup: string }[] = [];
    const shimPids: number[] = [];
    const starters: ChildProcess[] = [];
    let counter = 0;

    before(() => {
      assert.ok(existsSync(binary), `${binary} is missing: npm run build makes it`);
      base = mkdtempSync(join(tmpdir(), `berth-shim-${variant}-`));
      runcRoot = join(base, "runc");
      rootfs = join(base, "rootfs");
      sanitizerLogs = join(base, "sanitizer");
      mkdirSync(sanitizerLogs);
      makeBusyboxRootfs(rootfs);
      // The shim's stderr is /dev/null once detached: reports must go to files.
      env = {
        ...process.env,
        ASAN_OPTIONS: `log_path=${sanitizerLogs}/asan:detect_leaks=1:halt_on_error=1`,
        UBSAN_OPTIONS: `log_path=${sanitizerLogs}/ubsan:print_stacktrace=1:halt_on_error=1`,
      };
    });

    after(() => {
      for (const { id, cgroup } of containers) {
        spawnSync(RUNC, ["--root", runcRoot, "delete", "--force", id], { stdio: "ignore" });
        removeCgroup(cgroup);
      }
      for (const starter of starters) starter.kill("SIGKILL");
      for (const pid of shimPids) {
        if (isRunning(pid)) process.kill(pid, "SIGKILL");
      }
      if (base) rmSync(base, { recursive: true, force: true });
    });

    /** A fresh container: its bundle, state dir, FIFOs (those asked for) and log path. */
    function newContainer(args: string[], { terminal = false, fifos = ["stdin", "stdout", "stderr"], memoryLimit = 0 } = {}) {
      const id = `c${++counter}-${process.pid}`;
      const cgroup = `berth-shim-test-${variant}-${id}`;
      containers.push({ id, cgroup });
      const dir = join(base, id);
      const bundle = join(dir, "bundle");
      const stateDir = join(dir, "state");
      mkdirSync(stateDir, { recursive: true });
      writeBundle(bundle, { rootfs, cgroup, args, terminal, ...(memoryLimit ? { memoryLimit } : {}) });
      const paths: Record<string, string> = {};
      for (const name of fifos) {
        paths[name] = join(dir, name);
        execFileSync("mkfifo", [paths[name]]);
      }
      const options: ShimOptions = {
        binary,
        stateDir,
        runc: RUNC,
        runcRoot,
        id,
        bundle,
        terminal,
        stdin: paths.stdin,
        stdout: paths.stdout,
        stderr: paths.stderr,
        log: join(dir, "output.log"),
        env,
      };
      return { id, cgroup, dir, bundle, stateDir, options };
    }

    async function start(options: ShimOptions): Promise<ShimStarted> {
      const started = await startShim(options);
      shimPids.push(started.shimPid);
      return started;
    }

    const runc = (...args: string[]) => execFileSync(RUNC, ["--root", runcRoot, ...args], { encoding: "utf8" });

    async function waitForShimExit(shimPid: number): Promise<void> {
      await waitFor(`shim ${shimPid} to exit`, () => !isRunning(shimPid));
    }

    test("reports the pid, relays stdout and stderr to FIFOs and the log, records exit 3", async () => {
      const c = newContainer(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], { fifos: ["stdout", "stderr"] });
      const startedAt = Date.now();
      const out = new FifoReader(c.options.stdout!);
      const err = new FifoReader(c.options.stderr!);
      const started = await start(c.options);
      assert.ok(started.pid > 0 && started.shimPid > 0 && started.pid !== started.shimPid);
      assert.ok(isRunning(started.pid), "the created process waits for runc start");
      assert.equal(readFileSync(join(c.stateDir, "pid"), "utf8").trim(), String(started.pid));
      assert.equal(readShimExit(c.stateDir), undefined);
      // The shim adopted the process when runc create exited.
      const ppid = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${started.pid}/status`, "utf8"))?.[1];
      assert.equal(Number(ppid), started.shimPid);

      runc("start", c.id);
      await Promise.all([out.ended, err.ended]);
      const exit = readShimExit(c.stateDir);
      assert.ok(exit, "the exit file exists before the FIFOs close");
      assert.deepEqual({ pid: exit.pid, exitStatus: exit.exitStatus, signal: exit.signal }, { pid: started.pid, exitStatus: 3, signal: 0 });
      assert.match(exit.exitedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      const exitedAt = Date.parse(exit.exitedAt);
      assert.ok(startedAt <= exitedAt && exitedAt <= Date.now(), `exitedAt ${exit.exitedAt} is wall-clock time of the exit`);
      assert.equal(out.text, "to-stdout\n");
      assert.equal(err.text, "to-stderr\n");
      const log = readFileSync(c.options.log!, "utf8");
      assert.ok(log.includes("to-stdout\n") && log.includes("to-stderr\n"), log);
      await waitForShimExit(started.shimPid);
      assert.deepEqual(readdirSync(c.stateDir).sort(), ["exit", "pid", "runc.log", "shim.log", "shim.pid"]);
      assert.equal(readFileSync(join(c.stateDir, "shim.log"), "utf8"), "", "the shim had nothing to complain about");
      runc("delete", c.id);
      assert.deepEqual(cgroupLeftIn(c.cgroup), []);
    });

    test("survives kill -9 of its starter, holds none of its pipes, records a kill by signal", async () => {
      const c = newContainer(["sleep", "1000"], { fifos: [] });
      // The starter: a shell whose stdio are pipes to this test, as a service's are to its supervisor.
      const args = ["--state-dir", c.stateDir, "--runc", RUNC, "--runc-root", runcRoot, "--id", c.id, "--bundle", c.bundle];
      const starter = spawn("sh", ["-c", `"$0" "$@" --sync-fd 3 3>&1; exec sleep 1000`, binary, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
        env,
      });
      starters.push(starter);
      let verdict = "";
      starter.stdout.setEncoding("utf8").on("data", (text: string) => (verdict += text));
      const starterOutputEnded = new Promise((resolve) => starter.stdout.on("end", resolve));
      await waitFor("the shim's verdict", () => verdict.includes("\n"));
      const pid = Number(/^ok (\d+)\n$/.exec(verdict)?.[1]);
      assert.ok(pid > 0, verdict);
      const shimPid = Number(readFileSync(join(c.stateDir, "shim.pid"), "utf8"));
      shimPids.push(shimPid);
      const starterPipes = pipeInodes(starter.pid!);
      assert.ok(starterPipes.length >= 3);

      starter.kill("SIGKILL");
      await starterOutputEnded; // nobody else holds the starter's stdout pipe
      assert.ok(isRunning(shimPid), "the shim outlives its starter");
      const shimPipes = pipeInodes(shimPid);
      assert.deepEqual(shimPipes.filter((pipe) => starterPipes.includes(pipe)), [], "the shim closed every inherited fd");
      // All it holds: /dev/null as stdio, its state dir's files, its signalfd, the container's
      // stderr pipe, and its OOM watch (the memory cgroup's counter file, an eventfd on v1).
      for (const fd of readdirSync(`/proc/${shimPid}/fd`)) {
        const link = readlinkSync(`/proc/${shimPid}/fd/${fd}`);
        const oomWatch = link === "anon_inode:[eventfd]" || (link.startsWith("/sys/fs/cgroup/") && link.endsWith(`/${c.cgroup}/memory.oom_control`)) || link.endsWith(`/${c.cgroup}/memory.events`);
        const expected = link === "/dev/null" || link === c.stateDir || link.startsWith(`${c.stateDir}/`) || link === "anon_inode:[signalfd]" || link.startsWith("pipe:") || oomWatch;
        assert.ok(expected, `fd ${fd} -> ${link}`);
      }
      const status = readFileSync(`/proc/${shimPid}/status`, "utf8");
      assert.notEqual(Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]), starter.pid);
      const [sid, pgid] = (() => {
        const stat = readFileSync(`/proc/${shimPid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return [Number(fields[3]), Number(fields[2])];
      })();
      assert.notEqual(sid, shimPid, "not a session leader: it can never gain a controlling terminal");
      assert.notEqual(pgid, process.pid);
      const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)$/m.exec(status)?.[1]}`);
      for (const signal of [os.signals.SIGHUP, os.signals.SIGINT, os.signals.SIGPIPE]) {
        assert.ok(ignored & (1n << BigInt(signal - 1)), `signal ${signal} is ignored`);
      }

      runc("start", c.id);
      await waitFor("the container to run", () => runc("state", c.id).includes('"running"'));
      runc("kill", c.id, "KILL");
      await waitFor("the exit file", () => readShimExit(c.stateDir) !== undefined);
      assert.deepEqual({ ...readShimExit(c.stateDir), exitedAt: undefined }, { pid, exitStatus: 137, signal: 9, exitedAt: undefined });
      await waitForShimExit(shimPid);
      assert.equal(readShimOom(c.stateDir), undefined, "a SIGKILL from outside is no OOM kill");
      assert.ok(!existsSync(join(c.stateDir, "oom")));
      runc("delete", c.id);
    });

    test("an OOM kill in the init's memory cgroup is recorded in `oom`, before the exit", async () => {
      // 8 MiB (swap included) and a shell that holds 64 MiB of text: the kernel kills the shell.
      const c = newContainer(["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"], { fifos: [], memoryLimit: 8 << 20 });
      const started = await start(c.options);
      const seen: string[] = [];
      // Which record appears first: `oom` must already be there when `exit` is.
      const watcher = watch(c.stateDir, () => {
        if (!seen.includes("oom") && existsSync(join(c.stateDir, "oom"))) seen.push("oom");
        if (!seen.includes("exit") && readShimExit(c.stateDir)) seen.push("exit");
      });
      try {
        runc("start", c.id);
        await waitFor("the exit file", () => readShimExit(c.stateDir) !== undefined);
        if (!seen.includes("oom") && existsSync(join(c.stateDir, "oom"))) seen.push("oom");
      } finally {
        watcher.close();
      }
      const exit = readShimExit(c.stateDir)!;
      assert.deepEqual({ pid: exit.pid, exitStatus: exit.exitStatus, signal: exit.signal }, { pid: started.pid, exitStatus: 137, signal: 9 });
      const oom = readShimOom(c.stateDir);
      assert.ok(oom && oom.oomKills >= 1, `an oom record: ${JSON.stringify(oom)}`);
      assert.match(oom.lastOomAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      assert.equal(seen[0], "oom", `the oom record is there no later than the exit (${seen.join(", ")})`);
      assert.doesNotMatch(readFileSync(c.options.log!, "utf8"), /survived/);
      await waitForShimExit(started.shimPid);
      assert.equal(readFileSync(join(c.stateDir, "shim.log"), "utf8"), "", "the shim had nothing to complain about");
      runc("delete", c.id);
      assert.deepEqual(cgroupLeftIn(c.cgroup), []);
    });

    test("an OOM kill of a child is recorded while the init runs on; a later kill -9 adds none", async () => {
      // The kernel notifies v1 watchers before it has picked a victim: the count comes later.
      // The child makes itself the victim (oom_score_adj 1000): by size alone the kernel
      // picked the init instead once in a few runs.
      const script = "(echo 1000 > /proc/self/oom_score_adj; x=$(head -c 67108864 /dev/zero | tr '\\0' a)); echo child-gone; exec sleep 1000";
      const c = newContainer(["sh", "-c", script], { fifos: [], memoryLimit: 8 << 20 });
      const started = await start(c.options);
      runc("start", c.id);
      await waitFor("the oom record", () => readShimOom(c.stateDir) !== undefined);
      assert.equal(readShimExit(c.stateDir), undefined, "the init runs on");
      await waitFor("the shell to carry on", () => readFileSync(c.options.log!, "utf8").includes("child-gone"));
      // The pipeline may lose more than one process, each a notification of its own:
      // once the shell carries on every victim is dead, and the record catches up with
      // the kernel's count (read too early, it once missed the second kill).
      await waitFor("the record to reach the kernel's count", () => readShimOom(c.stateDir)?.oomKills === kernelOomKills(c.cgroup));
      const recorded = readShimOom(c.stateDir)!;
      assert.ok(recorded.oomKills >= 1);
      runc("kill", c.id, "KILL");
      await waitFor("the exit file", () => readShimExit(c.stateDir) !== undefined);
      assert.equal(readShimExit(c.stateDir)!.exitStatus, 137);
      assert.equal(readShimOom(c.stateDir)!.oomKills, recorded.oomKills);
      assert.equal(kernelOomKills(c.cgroup), recorded.oomKills, "a kill -9 is no OOM kill");
      await waitForShimExit(started.shimPid);
      assert.equal(readFileSync(join(c.stateDir, "shim.log"), "utf8"), "");
      runc("delete", c.id);
    });

    test("relays stdin until close-stdin, which ends cat", async () => {
      const c = newContainer(["cat"]);
      const out = new FifoReader(c.options.stdout!);
      const started = await start(c.options);
      writeFifo(c.options.stdin!, "before-start\n"); // waits in the FIFO until cat reads
      runc("start", c.id);
      await waitFor("the first line echoed", () => out.text === "before-start\n");
      writeFifo(c.options.stdin!, "second\n");
      await waitFor("the second line echoed", () => out.text === "before-start\nsecond\n");
      assert.ok(isRunning(started.pid), "cat still reads: the shim holds stdin open");
      // Written just before close-stdin: still delivered before the EOF.
      writeFifo(c.options.stdin!, "last\n");
      sendShimCommand(c.stateDir, "close-stdin");
      await out.ended;
      assert.equal(out.text, "before-start\nsecond\nlast\n");
      assert.equal(readShimExit(c.stateDir)?.exitStatus, 0);
      await waitForShimExit(started.shimPid);
      assert.throws(() => sendShimCommand(c.stateDir, "close-stdin"), /not running/);
      runc("delete", c.id);
    });

    test("runs an exec process in a running container", async () => {
      const c = newContainer(["sleep", "1000"], { fifos: [] });
      const init = await start(c.options);
      runc("start", c.id);
      const execDir = join(c.stateDir, "execs", "e1");
      mkdirSync(execDir, { recursive: true });
      const processJson = join(c.dir, "exec-process.json");
      // stderr without a final newline: it must arrive exactly as written, however early.
      writeFileSync(processJson, JSON.stringify(processSpec({ args: ["sh", "-c", "echo exec-out; printf exec-err >&2; [ $$ -ne 1 ] && exit 5"] })));
      for (const name of ["exec-stdout", "exec-stderr"]) execFileSync("mkfifo", [join(c.dir, name)]);
      const out = new FifoReader(join(c.dir, "exec-stdout"));
      const err = new FifoReader(join(c.dir, "exec-stderr"));
      const exec = await start({
        binary,
        stateDir: execDir,
        runc: RUNC,
        runcRoot,
        id: c.id,
        execProcess: processJson,
        stdout: join(c.dir, "exec-stdout"),
        stderr: join(c.dir, "exec-stderr"),
        log: join(c.dir, "exec.log"),
        env,
      });
      assert.notEqual(exec.pid, init.pid);
      assert.notEqual(exec.shimPid, init.shimPid);
      await waitFor("the exec's exit file", () => readShimExit(execDir) !== undefined);
      assert.equal(readShimExit(execDir)?.exitStatus, 5);
      await Promise.all([out.ended, err.ended]);
      assert.equal(out.text, "exec-out\n");
      assert.equal(err.text, "exec-err");
      await waitForShimExit(exec.shimPid);
      const log = readFileSync(join(c.dir, "exec.log"), "utf8");
      assert.ok(log.includes("exec-out\n") && log.includes("exec-err") && log.length === "exec-out\nexec-err".length, log);
      assert.ok(isRunning(init.pid) && isRunning(init.shimPid), "the init and its shim are untouched");
      assert.equal(readShimExit(c.stateDir), undefined);
      runc("kill", c.id, "KILL");
      await waitFor("the init's exit file", () => readShimExit(c.stateDir) !== undefined);
      assert.equal(readShimExit(c.stateDir)?.signal, 9);
      await waitForShimExit(init.shimPid);
      runc("delete", c.id);
    });

    test("a state dir is all a daemon that did not start the shim needs", async () => {
      const c = newContainer(["sh", "-c", "read line; exit 7"], { fifos: ["stdin"] });
      const { shimPid, pid } = await start(c.options);
      // From here on only the state dir is used, as after a daemon restart.
      const found = inspectShimState(c.stateDir);
      assert.deepEqual(found, { state: "running", shimPid, pid });
      const pidfd = native.pidfdOpen(found.state === "running" ? found.shimPid : 0);
      try {
        const shimGone = native.pidfdWait(pidfd);
        const finished = waitForShim(c.stateDir);
        runc("start", c.id);
        sendShimCommand(c.stateDir, "close-stdin");
        await shimGone;
        const final = await finished;
        assert.equal(final.state === "exited" && final.exit.exitStatus, 7);
        assert.ok(native.pidfdExited(pidfd));
      } finally {
        closeSync(pidfd);
      }
      const after = inspectShimState(c.stateDir);
      assert.equal(after.state, "exited");
      assert.deepEqual(await waitForShim(c.stateDir), after, "a finished shim is reported at once");
      assert.deepEqual(after.state === "exited" && { pid: after.exit.pid, exitStatus: after.exit.exitStatus }, { pid, exitStatus: 7 });
      runc("delete", c.id);
      // A shim that died without recording an exit is reported as lost, not as running.
      const lost = newContainer(["sleep", "1000"], { fifos: [] });
      const lostShim = await start(lost.options);
      const waited = waitForShim(lost.stateDir);
      process.kill(lostShim.shimPid, "SIGKILL");
      const reason = `shim ${lostShim.shimPid} is gone and recorded no exit`;
      assert.deepEqual(await waited, { state: "lost", reason });
      assert.deepEqual(inspectShimState(lost.stateDir), { state: "lost", reason });
      runc("delete", "--force", lost.id);
    });

    test("shimGone waits for the shim to leave, or until its bound when it does not", async () => {
      const c = newContainer(["sleep", "1000"], { fifos: [] });
      const started = await start(c.options);
      runc("start", c.id);
      // A shim that stays (here: its process runs on) holds the wait only as long as the bound.
      await shimGone(c.stateDir, started.shimPid, 50);
      assert.ok(isRunning(started.shimPid), "the shim still runs: the bound ended the wait");
      const gone = shimGone(c.stateDir, started.shimPid, 600_000);
      runc("kill", c.id, "KILL");
      await gone;
      assert.ok(!isRunning(started.shimPid), "the wait ended with the shim");
      runc("delete", c.id);
    });

    test("an exec whose leftover child holds its stdout: the exit is recorded, the shim still leaves", async () => {
      const c = newContainer(["sleep", "1000"], { fifos: [] });
      const init = await start(c.options);
      runc("start", c.id);
      const execDir = join(c.stateDir, "execs", "leftover");
      mkdirSync(execDir, { recursive: true });
      const processJson = join(c.dir, "exec-leftover.json");
      writeFileSync(processJson, JSON.stringify(processSpec({ args: ["sh", "-c", "sleep 1000 & echo started"] })));
      const exec = await start({ binary, stateDir: execDir, runc: RUNC, runcRoot, id: c.id, execProcess: processJson, log: join(c.dir, "leftover.log"), env });
      await waitFor("the exec's exit file", () => readShimExit(execDir) !== undefined);
      assert.equal(readShimExit(execDir)?.exitStatus, 0);
      await waitForShimExit(exec.shimPid);
      assert.match(readFileSync(join(execDir, "shim.log"), "utf8"), /output still open .* after the process exited/);
      assert.equal(readFileSync(join(c.dir, "leftover.log"), "utf8"), "started\n");
      runc("kill", c.id, "KILL");
      await waitForShimExit(init.shimPid);
      runc("delete", c.id);
    });

    test("an exec can have a terminal too", async () => {
      const c = newContainer(["sleep", "1000"], { fifos: [] });
      const init = await start(c.options);
      runc("start", c.id);
      const execDir = join(c.stateDir, "execs", "tty");
      mkdirSync(execDir, { recursive: true });
      const processJson = join(c.dir, "exec-tty.json");
      writeFileSync(processJson, JSON.stringify(processSpec({ args: ["sh", "-c", "[ -t 0 ] && echo exec-has-a-tty"], terminal: true })));
      execFileSync("mkfifo", [join(c.dir, "exec-tty-out")]);
      // An exec runs at once: its output would be gone with the FIFO if nobody had it open.
      const out = new FifoReader(join(c.dir, "exec-tty-out"));
      const exec = await start({ binary, stateDir: execDir, runc: RUNC, runcRoot, id: c.id, execProcess: processJson, terminal: true, stdout: join(c.dir, "exec-tty-out"), env });
      await out.ended;
      assert.match(out.text, /exec-has-a-tty\r?\n/);
      assert.equal(readShimExit(execDir)?.exitStatus, 0);
      await waitForShimExit(exec.shimPid);
      runc("kill", c.id, "KILL");
      await waitForShimExit(init.shimPid);
      runc("delete", c.id);
    });

    test("a terminal session gets a pty, and a resize reaches it", async () => {
      const c = newContainer(["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; read line; stty size"], {
        terminal: true,
        fifos: ["stdin", "stdout"],
      });
      const out = new FifoReader(c.options.stdout!);
      const started = await start(c.options);
      assert.ok(!existsSync(join(c.stateDir, "console.sock")), "the console socket is gone once the pty arrived");
      runc("start", c.id);
      await waitFor("the tty check", () => out.text.includes("is-a-tty"));
      // Control is read before stdin, so this resize applies before the line arrives.
      sendShimCommand(c.stateDir, "resize 123 45");
      writeFifo(c.options.stdin!, "go\n");
      await out.ended;
      assert.match(out.text, /^45 123\r?$/m, JSON.stringify(out.text));
      assert.equal(readShimExit(c.stateDir)?.exitStatus, 0);
      assert.ok(readFileSync(c.options.log!, "utf8").includes("45 123"));
      await waitForShimExit(started.shimPid);
      runc("delete", c.id);
    });

    test("runc's error reaches the starter, and the shim leaves nothing running", async () => {
      const c = newContainer(["true"], { fifos: [] });
      rmSync(join(c.bundle, "config.json"));
      await assert.rejects(start(c.options), (error: Error) => {
        assert.match(error.message, /^OCI runtime failed: runc create failed: JSON specification file config\.json not found/);
        return true;
      });
      assert.deepEqual(readdirSync(c.stateDir).sort(), ["runc.log", "shim.log"]);
      assert.match(readFileSync(join(c.stateDir, "shim.log"), "utf8"), /start failed: .*config\.json not found/);
      await waitFor("no process naming this state dir", () => spawnSync("pgrep", ["-f", c.stateDir]).status === 1);
    });

    test("a terminal flag that contradicts config.json is refused by runc, and reported", async () => {
      const noTty = newContainer(["true"], { fifos: [] });
      await assert.rejects(start({ ...noTty.options, terminal: true }), /runc create failed: cannot use console socket if runc will not detach or allocate tty/);
      const tty = newContainer(["true"], { terminal: true, fifos: [] });
      await assert.rejects(start({ ...tty.options, terminal: false }), /runc create failed: cannot allocate tty if runc will detach without setting console socket/);
      for (const dir of [noTty.stateDir, tty.stateDir]) {
        await waitFor("no process naming this state dir", () => spawnSync("pgrep", ["-f", dir]).status === 1);
        assert.ok(!existsSync(join(dir, "console.sock")) && !existsSync(join(dir, "control")));
      }
    });

    test("a runc that cannot run is reported too", async () => {
      const c = newContainer(["true"], { fifos: [] });
      await assert.rejects(start({ ...c.options, runc: join(base, "no-such-runc") }), /cannot run .*no-such-runc: No such file or directory/);
      await waitFor("no process naming this state dir", () => spawnSync("pgrep", ["-f", c.stateDir]).status === 1);
    });

    test("bad arguments are refused before anything starts, with the reason", async () => {
      const c = newContainer(["true"], { fifos: [] });
      const cases: [Partial<ShimOptions>, RegExp][] = [
        [{ stateDir: "relative/state" }, /--state-dir must be an absolute path/],
        [{ stateDir: join(base, "missing") }, /--state-dir .*missing: No such file or directory/],
        [{ bundle: undefined }, /--bundle is required/],
        [{ execProcess: join(c.dir, "p.json") }, /--bundle and --exec exclude each other/],
        [{ terminal: true, stderr: join(c.dir, "x") }, /--stderr cannot be used with --terminal/],
        [{ id: "a/b" }, /--id "a\/b" must not contain '\/'/],
        [{ log: "out.log" }, /--log must be an absolute path/],
        [{ logFormat: "xml" as "json" }, /--log-format must be raw or json, got "xml"/],
        [{ log: undefined, logFormat: "json" }, /--log-format needs --log/],
      ];
      for (const [change, message] of cases) {
        await assert.rejects(start({ ...c.options, ...change }), (error: Error & { kind?: string }) => {
          assert.match(error.message, message);
          assert.equal(error.kind, "invalid argument");
          return true;
        });
      }
      const unknown = spawnSync(binary, ["--state-dir", c.stateDir, "--bogus"], { encoding: "utf8", env });
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /unknown option --bogus/);
      assert.deepEqual(readdirSync(c.stateDir), [], "a refused start writes nothing");
    });

    test("a stdio path that is not a FIFO, and a state dir in use, are refused", async () => {
      const c = newContainer(["true"], { fifos: [] });
      const plain = join(c.dir, "plain-file");
      writeFileSync(plain, "");
      await assert.rejects(start({ ...c.options, stdout: plain }), /--stdout .*plain-file: not a FIFO/);
      assert.deepEqual(readdirSync(c.stateDir).sort(), ["shim.log"]);
      await assert.rejects(start({ ...c.options, log: join(c.dir, "missing", "out.log") }), /--log .*missing\/out\.log: No such file or directory/);
      assert.deepEqual(readdirSync(c.stateDir).sort(), ["shim.log"]);
      execFileSync("mkfifo", [join(c.stateDir, "control")]);
      await assert.rejects(start(c.options), /control: File exists \(is another shim using this state dir\?\)/);
      await waitFor("no process naming this state dir", () => spawnSync("pgrep", ["-f", c.stateDir]).status === 1);
    });

    test("a FIFO nobody reads yet holds the output back: a late reader gets every byte", async () => {
      // Far more than a pipe, the shim's buffer and the FIFO hold together.
      const lines = 6000;
      const c = newContainer(["sh", "-c", `i=0; while [ $i -lt ${lines} ]; do echo "line $i of the output, padded to some length"; i=$((i+1)); done`], {
        fifos: ["stdout"],
      });
      const started = await start(c.options);
      runc("start", c.id);
      // The reader comes late. (How much the FIFO holds varies: the kernel gives a new pipe a
      // single page once the user's pipe pages exceed pipe-user-pages-soft.)
      await waitFor("output in the log", () => existsSync(c.options.log!) && readFileSync(c.options.log!).length > 0);
      const out = new FifoReader(c.options.stdout!);
      await out.ended;
      const expected = Array.from({ length: lines }, (_, i) => `line ${i} of the output, padded to some length\n`).join("");
      assert.equal(out.text.length, expected.length);
      assert.ok(out.text === expected, "every byte, in order");
      assert.equal(readFileSync(c.options.log!, "utf8"), expected);
      assert.equal(readShimExit(c.stateDir)?.exitStatus, 0);
      await waitForShimExit(started.shimPid);
      runc("delete", c.id);
    });

    test("a JSON log keeps lines, streams and read times apart", async () => {
      const c = newContainer(["sh", "-c", `echo out-line; echo err-line >&2; printf 'two\\nlines\\n'; printf 'tab\\t"quote" \\\\ bell\\a no newline'`], {
        fifos: [],
      });
      const before = Date.now();
      const started = await start({ ...c.options, logFormat: "json" });
      runc("start", c.id);
      await waitForShimExit(started.shimPid);
      const records = readFileSync(c.options.log!, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { log: string; stream: string; time: string });
      const of = (stream: string) => records.filter((r) => r.stream === stream).map((r) => r.log);
      assert.deepEqual(of("stdout"), ["out-line\n", "two\n", "lines\n", 'tab\t"quote" \\ bell\u0007 no newline']);
      assert.deepEqual(of("stderr"), ["err-line\n"]);
      for (const { time } of records) {
        assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
        assert.ok(Date.parse(time) >= before);
      }
      runc("delete", c.id);
    });

    test("reopen-log starts a new log file after rotation", async () => {
      const c = newContainer(["cat"], { fifos: ["stdin", "stdout"] });
      const out = new FifoReader(c.options.stdout!);
      const started = await start(c.options);
      runc("start", c.id);
      writeFifo(c.options.stdin!, "before-rotation\n");
      await waitFor("the first line logged", () => existsSync(c.options.log!) && readFileSync(c.options.log!, "utf8") === "before-rotation\n");
      renameSync(c.options.log!, `${c.options.log}.1`);
      sendShimCommand(c.stateDir, "reopen-log");
      writeFifo(c.options.stdin!, "after-rotation\n");
      await waitFor("the second line echoed", () => out.text === "before-rotation\nafter-rotation\n");
      sendShimCommand(c.stateDir, "close-stdin");
      await out.ended;
      assert.equal(readFileSync(`${c.options.log}.1`, "utf8"), "before-rotation\n");
      assert.equal(readFileSync(c.options.log!, "utf8"), "after-rotation\n");
      await waitForShimExit(started.shimPid);
      runc("delete", c.id);
    });

    test("an unknown control command is logged and the shim carries on", async () => {
      const c = newContainer(["cat"], { fifos: ["stdin", "stdout"] });
      const out = new FifoReader(c.options.stdout!);
      const started = await start(c.options);
      runc("start", c.id);
      sendShimCommand(c.stateDir, "explode now");
      sendShimCommand(c.stateDir, "resize 80 24"); // no terminal: logged, ignored
      sendShimCommand(c.stateDir, "reopen-log");
      writeFifo(c.options.stdin!, "still-here\n");
      await waitFor("the echo", () => out.text === "still-here\n");
      const diagnostics = readFileSync(join(c.stateDir, "shim.log"), "utf8");
      assert.match(diagnostics, /control: unknown command "explode now"/);
      assert.match(diagnostics, /resize ignored, the process has no terminal/);
      assert.throws(() => sendShimCommand(c.stateDir, "close-stdin\nresize 1 1"), /must be one line/);
      sendShimCommand(c.stateDir, "close-stdin");
      await out.ended;
      await waitForShimExit(started.shimPid);
      assert.ok(readFileSync(c.options.log!, "utf8").includes("still-here"));
      runc("delete", c.id);
    });

    test("no shim, container or cgroup is left behind", () => {
      for (const pid of shimPids) assert.ok(!isRunning(pid), `shim ${pid} still runs`);
      for (const { cgroup } of containers) assert.deepEqual(cgroupLeftIn(cgroup), [], cgroup);
      assert.equal(runc("list", "-q").trim(), "");
      if (variant === "sanitize") {
        const reports = readdirSync(sanitizerLogs);
        const text = reports.map((name) => readFileSync(join(sanitizerLogs, name), "utf8")).join("\n");
        assert.deepEqual(reports, [], `sanitizer reports:\n${text}`);
      }
    });
  });
}

// The shim syncs `exit` after renaming it into place; a crash of the machine in between can
// leave it empty or cut short. Such a file is no record: with its shim gone, the process is lost.
describe("an exit file a crash of the machine left incomplete", () => {
  let dir = "";
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-shim-damaged-exit-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [what, content] of [
    ["empty", ""],
    ["cut short", '{"pid":123,"exitStatus":0,"sig'],
    ["missing a field", '{"pid":123,"exitStatus":0,"signal":0}\n'],
  ] as const) {
    test(`${what}: no exit is read, the process is lost`, async () => {
      // pid 1 is not a berth-shim of this dir, as after a reboot.
      writeFileSync(join(dir, "shim.pid"), "1\n");
      writeFileSync(join(dir, "exit"), content);
      assert.equal(readShimExit(dir), undefined);
      const reason = "shim 1 is gone and recorded no exit";
      assert.deepEqual(inspectShimState(dir), { state: "lost", reason });
      assert.deepEqual(await waitForShim(dir), { state: "lost", reason });
    });
  }

  test("a complete record is read", () => {
    writeFileSync(join(dir, "exit"), '{"pid":123,"exitStatus":137,"signal":9,"exitedAt":"2026-11-30T05:26:13.164770693Z"}\n');
    assert.deepEqual(readShimExit(dir), { pid: 123, exitStatus: 137, signal: 9, exitedAt: "2026-11-30T05:26:13.164770693Z" });
    assert.equal(inspectShimState(dir).state, "exited");
  });
});
