// Live restore through the engine: kill -9 of berthd and every process it runs (the
// services, redis) while containers run; the shims go on, so a new berthd on the same
// root and state finds them: `docker ps` shows them running, `docker logs` has all their
// output (what they wrote while nothing of Berth ran too), `docker exec` and `docker stop`
// work, and a container that exited meanwhile has its exit recorded and its restart
// policy applied;
// a containerd container a create left without a record is removed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { childPids, Daemon, ok } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { isRunning } from "../core/process.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon;
let restarted: Daemon | undefined;

before(async () => {
  d = await startEngineWithBusybox();
});

after(async () => {
  const live = restarted ?? d;
  if (live) await removeEveryContainer(live);
  await restarted?.stop();
  await d?.destroy();
});

const waitFor = (what: string, check: () => boolean, timeoutMs = 30_000) => waitUntil(what, check, timeoutMs);

const ticks = (text: string) => text.split("\n").filter((l) => l.startsWith("tick "));
/** The tick lines of the json log file as the shim wrote it. */
const fileTicks = (path: string) => ticks(readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { log: string }).log.trimEnd()).join("\n"));

test("kill -9 of every Berth process: containers run on, and a new berthd takes them back", async () => {
  const ticker = ok(d.docker(["run", "-d", "--name", "ticker", "busybox", "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"])).stdout.trim();
  // Both end while no engine runs: one has a policy that brings it back, one does not.
  const flaky = ok(d.docker(["run", "-d", "--name", "flaky", "--restart", "on-failure", "busybox", "sh", "-c", "sleep 2; exit 3"])).stdout.trim();
  const ender = ok(d.docker(["run", "-d", "--name", "ender", "busybox", "sh", "-c", "sleep 2; exit 5"])).stdout.trim();
  // What a create that died halfway leaves: a containerd container (and snapshot) with no record.
  ok(d.ctr(["containers", "create", "docker.io/library/busybox:latest", "half-made", "true"], undefined, "moby"), "an orphan containerd container");
  const log = join(d.root, "engine", "containers", ticker, `${ticker}-json.log`);
  await waitFor("the ticker's first lines", () => existsSync(log) && fileTicks(log).length >= 3);

  // berthd and everything under it (services, redis); the shims are no one's children.
  const berthd = d.pid!;
  const processes = [berthd, ...childPids(berthd)];
  for (const pid of processes) process.kill(pid, "SIGKILL");
  await waitFor("every Berth process gone", () => !processes.some(isRunning));
  const atKill = fileTicks(log).length;
  for (const id of [flaky, ender]) await waitFor(`${id} to exit while nothing runs`, () => existsSync(join(d.state, "shims", "moby", id, "exit")));
  await waitFor("output written while nothing of Berth runs", () => fileTicks(log).length >= atKill + 5);

  restarted = await new Daemon({ base: d.base }).start();
  const ps = ok(restarted.docker(["ps", "--format", "{{.Names}} {{.State}}"])).stdout;
  assert.match(ps, /^ticker running$/m);

  const logged = ticks(ok(restarted.docker(["logs", "ticker"])).stdout);
  assert.ok(logged.length >= atKill + 5, `docker logs has the output written during the outage (${logged.length} lines, ${atKill} at the kill)`);
  assert.deepEqual(logged, logged.map((_, i) => `tick ${i}`), "every line, in order, none lost");

  const inspect = (ref: string) => JSON.parse(ok(restarted!.docker(["inspect", ref])).stdout)[0] as { RestartCount: number; State: { Status: string; ExitCode: number } };
  await waitFor("ender's exit recorded", () => inspect("ender").State.Status === "exited");
  assert.equal(inspect("ender").State.ExitCode, 5);
  await waitFor("flaky restarted by its policy", () => inspect("flaky").RestartCount >= 1);

  await waitFor("the half-made container removed", () => !restarted!.ctr(["containers", "ls", "-q"], undefined, "moby").stdout.split("\n").includes("half-made"));
  assert.ok(!restarted.ctr(["snapshots", "ls"], undefined, "moby").stdout.includes("half-made"), "its snapshot went with it");
  assert.equal(ok(restarted.docker(["exec", "ticker", "sh", "-c", "echo exec-ok"]), "docker exec after the restore").stdout, "exec-ok\n");
  ok(restarted.docker(["stop", "-t", "1", "ticker"]), "docker stop after the restore");
  assert.equal(inspect("ticker").State.Status, "exited");
  ok(restarted.docker(["rm", "-f", "ticker", "flaky", "ender"]));
  assert.equal(restarted.docker(["ps", "-aq"]).stdout, "");
});
