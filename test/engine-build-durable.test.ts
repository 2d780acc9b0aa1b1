// Builds as durable jobs: berthd (and every process it runs) killed with SIGKILL in the
// middle of a RUN, restarted on the same root, undoes the build (nothing left: the RUN's
// process and cgroup, containers, tasks, active snapshots, leases, mounts, the build's directory) and a rerun reuses every
// step that had completed; a failing RUN and a client that goes away leave nothing either.
// The long RUNs wait, by polling, for a file the test writes into the container's rootfs.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { request, type ClientRequest } from "node:http";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { childPids, ok, sleep, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { buildLeftovers, cachedSteps, nothingLeft, runCgroupsLeft, runningBuildRuns, writeContext } from "./fixtures/build.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { queuePrefix } from "../services/jobs/transfer/queues.ts";
import { ownLayerLimit } from "../services/engine/build/step-layer.ts";

let d: Daemon;
let work: string;
const running: ChildProcess[] = [];
const requests: ClientRequest[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-durable-"));
  // The on-demand processes stay up between tests (one is stopped on purpose by a test).
  // One build at a time, so a second one waits in the queue.
  d = await startEngineWithBusybox({ env: { BERTH_IDLE_EXIT_MS: "600000", BERTH_BUILD_CONCURRENCY: "1" } });
});

after(async () => {
  for (const req of requests) req.destroy();
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (d) {
    // A RUN still waiting for its gate file (a test that failed midway) must end.
    for (const { pid } of runningBuildRuns(d)) writeGate(pid);
    await removeEveryContainer(d);
  }
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const context = (name: string, files: Record<string, string>): string => writeContext(work, name, files);

/** A RUN that ends once /gate exists (the test writes it through /proc/<pid>/root). */
const waitForGate = "RUN while [ ! -e /gate ]; do sleep 0.05; done; echo gate passed";

function writeGate(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/root/gate`, "");
  } catch {
    // the process is gone already
  }
}

async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, tries = 600): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await probe();
    if (value) return value;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}\n${d.log.slice(-4000)}`);
}

/** `docker build` running in the background; `output()` is what it printed so far. */
function startBuild(dir: string, args: string[] = []): { child: ChildProcess; output: () => string; exit: Promise<number> } {
  const child = spawn("docker", ["build", ...args, dir], {
    env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  let text = "";
  child.stdout!.on("data", (c) => (text += c));
  child.stderr!.on("data", (c) => (text += c));
  // "close": after the exit and the end of its output, so output() holds all of it.
  const exit = new Promise<number>((resolve) => child.once("close", (code) => resolve(code ?? 128)));
  return { child, output: () => text, exit };
}


const leftovers = () => buildLeftovers(d);


type BuildProgress = { step: string; inFlight: { containers: string[]; snapshots: { snapshotter: string; key: string }[]; leases: string[] } };

/** Runs `fn` on the build queue in berthd's private Redis, as a restarted engine reads it. */
async function withBuildQueue<T>(fn: (queue: Queue) => Promise<T>): Promise<T> {
  // berthd sets it for the processes it starts (its own environ predates it).
  const password = childPids(d.pid!)
    .flatMap((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      } catch {
        return [];
      }
    })
    .find((e) => e.startsWith("BERTH_REDIS_PASSWORD="))
    ?.slice("BERTH_REDIS_PASSWORD=".length);
  assert.ok(password, "a process of berthd's has the Redis password");
  const queue = new Queue("engine-builds", { connection: { path: join(d.state, "redis.sock"), password }, prefix: queuePrefix(d.root) });
  try {
    return await fn(queue);
  } finally {
    await queue.close();
  }
}

/** The active build jobs' progress. */
const activeBuildProgress = () => withBuildQueue(async (queue) => (await queue.getJobs(["active"])).map((job) => job.progress as BuildProgress));

describe("builds as durable jobs", { timeout: 180_000 }, () => {
  test("berthd killed mid-RUN: the restart removes what the build had in flight; the rerun reuses the completed steps", async () => {
    const dir = context("interrupted", { Dockerfile: `FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\n${waitForGate}\nENV DONE=yes\n`, "a.txt": "a\n" });
    const first = startBuild(dir, ["-t", "durable:1"]);
    await until("the waiting RUN to run", () => /Step 4\/5 : RUN[^]*Running in/.test(first.output()) && runningBuildRuns(d).length === 1);
    const run = runningBuildRuns(d)[0]!;
    assert.match(first.output(), new RegExp(`Running in ${run.id.slice(0, 12)}\n`), "the id shown is the RUN's own");
    assert.notDeepEqual(runCgroupsLeft(first.output()), [], "the RUN has its cgroup while it runs");
    const progress = await until("the job's record at the RUN", async () => {
      const jobs = await activeBuildProgress();
      return jobs.length === 1 && /^Step 4\/5 : RUN while/.test(jobs[0]!.step) ? jobs[0] : undefined;
    });
    assert.deepEqual(progress.inFlight.containers, [], "a RUN makes no container");
    // A second build waits in the queue (one build at a time on this daemon).
    const queued = startBuild(context("queued", { Dockerfile: "FROM busybox\nENV QUEUED=1\n" }));
    await until("the second build's job to wait", () => withBuildQueue(async (queue) => (await queue.getJobs(["waiting"])).length === 1));
    assert.equal(readdirSync(join(d.root, "engine", "builds")).length, 2, "each build has its directory under the root");

    await killEverything();
    assert.notEqual(await first.exit, 0, "the client's build ends in an error");
    assert.notEqual(await queued.exit, 0, "the queued build's client gets an error too");
    await restartAndWaitUndone();
    assert.ok(!existsProc(run.pid), "the RUN's process is gone");
    assert.deepEqual(runCgroupsLeft(first.output()), []);
    await until("berthd's log of the undone build", () => /removed what an interrupted build left; the build failed/.test(d.log));
    // The running build and the queued one both failed as interrupted.
    const reasons = await until("both jobs to fail", () =>
      withBuildQueue(async (queue) => {
        const failed = await queue.getJobs(["failed"]);
        return failed.length === 2 ? failed.map((job) => job.failedReason).sort() : undefined;
      }),
    );
    assert.deepEqual(reasons, ["build interrupted: daemon restarted", "build interrupted: daemon restarted (Step 4/5: RUN while [ ! -e /gate ]; do sleep 0.05; done; echo gate passed)"]);

    const rerun = startBuild(dir, ["-t", "durable:1"]);
    await until("the rerun's waiting RUN", () => /Step 4\/5 : RUN[^]*Running in/.test(rerun.output()) && runningBuildRuns(d).length === 1);
    writeGate(runningBuildRuns(d)[0]!.pid);
    assert.equal(await rerun.exit, 0, rerun.output());
    assert.match(rerun.output(), /gate passed/);
    assert.deepEqual(cachedSteps(rerun.output()), [2, 3], rerun.output());
    assert.equal(ok(d.docker(["run", "--rm", "durable:1", "cat", "/one", "/a.txt"])).stdout, "one\na\n");
    assert.deepEqual(leftovers(), nothingLeft);
  });

  test("berthd killed mid-COPY: its active snapshot and lease are in the job's record, and gone after the restart", async () => {
    // The COPY stops in its diff (the diff process is stopped), its snapshot and lease made.
    // Its layer is past what the engine reads itself (a small one never reaches the diff process).
    const large = "x".repeat(ownLayerLimit);
    const warm = context("warm-diff", { Dockerfile: "FROM busybox\nCOPY w.txt large.txt /w/\n", "w.txt": `${Date.now()}\n`, "large.txt": large });
    ok(d.docker(["build", "--no-cache", warm], undefined, { DOCKER_BUILDKIT: "0" }), "a build that starts the diff process");
    const diff = d.servicePid("diff");
    assert.ok(diff, "the diff process runs");
    process.kill(diff, "SIGSTOP");
    const dir = context("interrupted-copy", { Dockerfile: "FROM busybox\nENV STAGE=two\nCOPY b.txt large.txt /\nCMD [\"true\"]\n", "b.txt": "b\n", "large.txt": large });
    const first = startBuild(dir, ["-t", "durable:2"]);
    try {
      const progress = await until("the COPY's snapshot and lease in the job's record", async () => {
        const p = (await activeBuildProgress())[0];
        return p && /^Step 3\/4 : COPY/.test(p.step) && p.inFlight.snapshots.length > 0 && p.inFlight.leases.length > 0 ? p : undefined;
      });
      const active = leftovers();
      for (const lease of progress.inFlight.leases) assert.ok(active.leases.includes(lease), `the recorded lease ${lease} exists`);
      for (const s of progress.inFlight.snapshots) assert.ok(active.activeSnapshots.includes(s.key), `the recorded snapshot ${s.key} exists`);
      await killEverything();
    } finally {
      // A failure before the kill must not leave the diff process stopped.
      if (existsProc(diff)) process.kill(diff, "SIGCONT");
    }
    await first.exit;
    await restartAndWaitUndone();
    const rerun = startBuild(dir, ["-t", "durable:2"]);
    assert.equal(await rerun.exit, 0, rerun.output());
    assert.deepEqual(cachedSteps(rerun.output()), [2], rerun.output());
    assert.equal(ok(d.docker(["run", "--rm", "durable:2", "sh", "-c", "echo $STAGE; cat /b.txt"])).stdout, "two\nb\n");
    assert.deepEqual(leftovers(), nothingLeft);
  });

  test("a failing RUN names the step, the command and the exit code, and leaves nothing", async () => {
    const dir = context("failing", { Dockerfile: "FROM busybox\nCOPY a.txt /a.txt\nRUN echo said before; exit 7\nCMD [\"true\"]\n", "a.txt": "a\n" });
    const build = startBuild(dir);
    assert.equal(await build.exit, 7, build.output());
    assert.match(build.output(), /said before/);
    assert.match(build.output(), /The command '\/bin\/sh -c echo said before; exit 7' returned a non-zero code: 7 \(Step 3\/4: RUN echo said before; exit 7\)/);
    assert.deepEqual(leftovers(), nothingLeft);
    assert.deepEqual(runCgroupsLeft(build.output()), []);
  });

  test("a Dockerfile that does not parse is a 400 before any job, and leaves no build directory", () => {
    const dir = context("unparsable", { Dockerfile: "FROM busybox\nFROBNICATE now\n" });
    const r = d.docker(["build", dir], undefined, { DOCKER_BUILDKIT: "0" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /dockerfile parse error on line 2: unknown instruction: FROBNICATE/);
    assert.deepEqual(leftovers(), nothingLeft);
  });

  test("a client that goes away mid-RUN cancels the build, and nothing is left", async () => {
    const dir = context("abandoned", { Dockerfile: `FROM busybox\nCOPY a.txt /a.txt\n${waitForGate}\n`, "a.txt": "abandoned\n" });
    const tar = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const t = spawn("tar", ["-c", "-C", dir, "."], { stdio: ["ignore", "pipe", "inherit"] });
      t.stdout.on("data", (c: Buffer) => chunks.push(c));
      // "close", not "exit": tar's output may still be unread when it exits (a short tar
      // without the Dockerfile made this test time out: "Cannot locate specified Dockerfile").
      t.once("close", (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`tar exited ${code}`))));
    });
    let body = "";
    const req = request({ socketPath: d.dockerSocket, method: "POST", path: "/v1.41/build", headers: { "Content-Type": "application/x-tar" } }, (res) => {
      res.on("data", (c) => (body += c));
      res.on("error", () => undefined);
    });
    requests.push(req);
    req.on("error", () => undefined);
    req.end(tar);
    await until("the RUN to run", () => body.includes("Running in") && runningBuildRuns(d).length === 1).catch((err: Error) => {
      throw new Error(`${err.message}\nthe build's stream so far:\n${body}\nRUNs running: ${JSON.stringify(runningBuildRuns(d))}`);
    });
    const { pid } = runningBuildRuns(d)[0]!;
    req.destroy();
    await until("the cancelled build to be undone", () => {
      const left = leftovers();
      return left.buildDirs.length === 0 && left.runcProcesses.length === 0;
    });
    assert.ok(!existsProc(pid), "the RUN's process was killed");
    assert.deepEqual(leftovers(), nothingLeft);
    const shown = [...body.matchAll(/Running in ([0-9a-f]{12})/g)].map((m) => ` ---> Running in ${m[1]}`).join("\n");
    assert.notEqual(shown, "");
    assert.deepEqual(runCgroupsLeft(shown), []);
  });
});

/** SIGKILL berthd and every process it started (services, its redis) at once. */
async function killEverything(): Promise<void> {
  const victims = [d.pid!, ...childPids(d.pid!)];
  for (const pid of victims) process.kill(pid, "SIGKILL");
  await until("berthd and its processes to die", () => victims.every((pid) => !existsProc(pid)));
}

/** A daemon on the same root and state, once its engine removed the interrupted build. */
async function restartAndWaitUndone(): Promise<void> {
  await d.start();
  try {
    await until("the restarted engine to undo the build", () => {
      const left = leftovers();
      return left.buildDirs.length === 0 && left.containers.length === 0 && left.tasks.length === 0 && left.leases.length === 0 && left.activeSnapshots.length === 0;
    });
  } catch (err) {
    throw new Error(`${(err as Error).message}\nleft: ${JSON.stringify(leftovers())}`);
  }
  assert.deepEqual(leftovers(), nothingLeft);
}

function existsProc(pid: number): boolean {
  try {
    // A zombie still has /proc/<pid>, but no longer a command line.
    return readFileSync(`/proc/${pid}/cmdline`).length > 0;
  } catch {
    return false;
  }
}
