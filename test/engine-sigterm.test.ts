// SIGTERM to berthd while Engine API connections are open: a build's RUN under way, a
// `docker run` attached to its container and a `docker exec` session. berthd must exit by
// itself (not at the harness's SIGKILL); the build's RUN (a child of berthd's, not a
// container) is killed by the stop and whatever the build left is undone by the next start
// at the latest, while the attached container and the exec'd process run on across the
// stop (live restore).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableRows, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { buildLeftovers, nothingLeft, runCgroupsLeft, runningBuildRuns } from "./fixtures/build.ts";
import { eventually, waitUntil } from "./fixtures/poll.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { isRunning } from "../core/process.ts";

let d: Daemon;
let work: string;
const clients: ChildProcess[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-sigterm-"));
  d = await startEngineWithBusybox();
});

after(async () => {
  for (const child of clients) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (d) {
    // A test that failed with the daemon stopped leaves containers that only it can remove.
    if (!d.pid) await d.start().catch(() => undefined);
    for (const pid of [...runningTasks().map(([, p]) => p), ...runningBuildRuns(d).map((r) => r.pid)]) {
      try {
        writeFileSync(`/proc/${pid}/root/gate`, "");
      } catch {
        // the process is gone already
      }
    }
    await removeEveryContainer(d);
    await d.destroy();
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A docker CLI command running in the background; `output()` is what it printed so far. */
function startDocker(args: string[]): { output: () => string; exit: Promise<number> } {
  const child = spawn("docker", args, {
    env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  clients.push(child);
  let text = "";
  child.stdout!.on("data", (c) => (text += c));
  child.stderr!.on("data", (c) => (text += c));
  // "close": after the exit and the end of its output, so output() holds all of it.
  const exit = new Promise<number>((resolve) => child.once("close", (code) => resolve(code ?? 128)));
  return { output: () => text, exit };
}

/** [task id, pid] of the engine's running tasks. */
function runningTasks(): [string, number][] {
  return tableRows(d.ctr(["tasks", "ls"], undefined, "moby").stdout)
    .filter((row) => row[2] === "RUNNING")
    .map((row) => [row[0]!, Number(row[1])]);
}

/** SIGTERM (the harness's stop); fails if berthd had to be SIGKILLed. */
async function stopBySigterm(): Promise<void> {
  await d.stop();
  assert.notEqual(d.lastExit?.signal, "SIGKILL", `berthd did not exit on SIGTERM:\n${d.log.slice(-4000)}`);
  assert.equal(d.lastExit?.code, 0, `berthd's exit code after SIGTERM:\n${d.log.slice(-4000)}`);
}

const leftovers = () => buildLeftovers(d);

test("SIGTERM during a build's RUN: berthd exits by itself having killed the RUN, the client is told, nothing is left after the next start", async () => {
  const dir = join(work, "gated");
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), "FROM busybox\nRUN while [ ! -e /gate ]; do sleep 0.05; done; echo gate passed\n");
  const build = startDocker(["build", dir]);
  const { pid: runPid } = await eventually("the RUN's process running", () => runningBuildRuns(d)[0]);

  await stopBySigterm();
  assert.equal(isRunning(runPid), false, "the stop killed the RUN");
  assert.notEqual(await build.exit, 0, "the interrupted build fails");
  assert.match(build.output(), /build interrupted: the daemon is stopping/);

  await d.start();
  let last = leftovers();
  await waitUntil("the interrupted build undone", () => JSON.stringify((last = leftovers())) === JSON.stringify(nothingLeft), 30_000).catch(() => {
    assert.deepEqual(last, nothingLeft, `left behind:\n${d.log.slice(-4000)}`);
  });
  assert.deepEqual(runCgroupsLeft(build.output()), []);
});

test("SIGTERM with an attached docker run and a docker exec: berthd exits by itself, both processes run on", async () => {
  const attached = startDocker(["run", "--name", "attached", "busybox", "sh", "-c", "echo started; while true; do sleep 0.1; done"]);
  await waitUntil("the attached container's output", () => attached.output().includes("started"));
  // A distinctive command line, to find the exec'd process among the host's.
  const execArgv = ["sleep", "86753"];
  const exec = startDocker(["exec", "attached", "sh", "-c", `echo exec-started; exec ${execArgv.join(" ")}`]);
  await waitUntil("the exec's output", () => exec.output().includes("exec-started"));
  const execPid = await eventually("the exec'd process on the host", () => {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/cmdline`, "utf8") === `${execArgv.join("\0")}\0`) return Number(entry);
      } catch {
        // exited meanwhile
      }
    }
    return undefined;
  });
  const containerPid = (JSON.parse(d.docker(["inspect", "attached"]).stdout) as { State: { Pid: number } }[])[0]!.State.Pid;
  assert.ok(containerPid > 0, "the container's pid");

  await stopBySigterm();
  // Their connections ended with the daemon; the processes behind them did not.
  await attached.exit;
  await exec.exit;
  assert.equal(isRunning(containerPid), true, "the container runs on while berthd is stopped");
  assert.equal(isRunning(execPid), true, "the exec'd process runs on while berthd is stopped");

  await d.start();
  assert.match(d.docker(["ps", "--format", "{{.Names}} {{.State}}"]).stdout, /^attached running$/m);
  assert.equal(d.docker(["exec", "attached", "echo", "still-here"]).stdout, "still-here\n");
  assert.equal(d.docker(["rm", "-f", "attached"]).code, 0);
  await waitUntil("the exec'd process gone with its container", () => !isRunning(execPid));
});
