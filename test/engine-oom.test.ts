// OOM kills through the Engine API, with the real docker CLI: a container whose memory limit
// the kernel's OOM killer enforces shows State.OOMKilled and exit 137, and `docker events`
// has its `oom` before its `die` (containerd's /tasks/oom under it, as `ctr events` shows);
// a process OOM-killed in a container that runs on is reported while it runs; a kill -9
// (docker kill) is exit 137 with OOMKilled false. cgroup v1 here: the shim watches
// memory.oom_control (shim/oom.c).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { ok, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon;
const children: ChildProcess[] = [];

before(async () => {
  d = await startEngineWithBusybox();
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (d) {
    await removeEveryContainer(d);
    await d.destroy();
  }
});

// A shell that holds 64 MiB of text: over an 8 MiB limit, the kernel kills whoever holds it.
const hog = "x=$(head -c 67108864 /dev/zero | tr '\\0' a)";

/** `docker inspect` of these State fields, space-separated. */
const state = (name: string, fields = ["Status", "OOMKilled", "ExitCode"]) =>
  ok(d.docker(["inspect", "--format", fields.map((f) => `{{.State.${f}}}`).join(" "), name]), `inspect ${name}`).stdout.trim();

/** The container's event actions since `since` (Unix seconds), from the engine's kept events. */
function actionsOf(name: string, since: number): string[] {
  const until = (Date.now() / 1000 + 1).toFixed(3);
  const r = ok(d.docker(["events", "--since", since.toFixed(3), "--until", until, "--filter", `container=${name}`, "--format", "{{.Action}}"]), "events");
  return r.stdout.split("\n").filter(Boolean);
}

/** `ctr events` in the engine's namespace, collected from now on. */
async function ctrEvents(): Promise<{ lines: () => string[]; stop: () => void }> {
  const child = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let text = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
  const lines = () => text.split("\n").filter((line) => line.includes(" moby "));
  // Live once an event of the engine's namespace arrives: a container's create is one.
  await waitUntil("ctr events delivers", () => {
    d.docker(["create", "--name", "probe-events", "busybox", "true"]);
    d.docker(["rm", "probe-events"]);
    return lines().some((line) => line.includes("/containers/create"));
  });
  return { lines, stop: () => child.kill("SIGKILL") };
}

describe("OOM kills", () => {
  test("docker run -m 8m of a memory hog: exit 137, OOMKilled true, oom before die, /tasks/oom in containerd's events", async () => {
    const since = Date.now() / 1000 - 1;
    const events = await ctrEvents();
    try {
      const r = d.docker(["run", "--name", "oomed", "-m", "8m", "busybox", "sh", "-c", `${hog}; echo survived`]);
      assert.equal(r.code, 137, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /survived/);
      assert.equal(state("oomed"), "exited true 137");
      const actions = actionsOf("oomed", since);
      assert.ok(actions.includes("oom") && actions.indexOf("oom") < actions.indexOf("die"), actions.join(" "));
      assert.equal(actions.filter((a) => a === "oom").length, 1, `one oom event: ${actions.join(" ")}`);
      const id = ok(d.docker(["inspect", "--format", "{{.Id}}", "oomed"]), "id").stdout.trim();
      await waitUntil("containerd's /tasks/oom", () => events.lines().some((line) => line.includes("/tasks/oom") && line.includes(id)));
      const topics = events.lines().filter((line) => line.includes(id)).map((line) => / moby (\S+)/.exec(line)?.[1]);
      assert.ok(topics.indexOf("/tasks/oom") < topics.indexOf("/tasks/exit"), topics.join(" "));
    } finally {
      events.stop();
    }
  });

  test("a child OOM-killed in a container that runs on: OOMKilled and the oom event while it runs; a new start clears it", async () => {
    const since = Date.now() / 1000 - 1;
    // Only the first run hogs (the rootfs keeps /ran across starts). The child makes itself
    // the victim (oom_score_adj 1000, which needs no privilege): by size alone the kernel
    // has been seen to pick the container's shell instead, which ends the container.
    const script = `if [ -e /ran ]; then echo second-run; exec sleep 300; fi; touch /ran; (echo 1000 > /proc/self/oom_score_adj; ${hog}); echo child-gone; exec sleep 300`;
    ok(d.docker(["run", "-d", "--name", "child-oom", "-m", "8m", "busybox", "sh", "-c", script]), "run -d");
    await waitUntil("the child's OOM kill is reported", () => state("child-oom", ["Status", "OOMKilled"]) === "running true");
    await waitUntil("the oom event", () => actionsOf("child-oom", since).includes("oom"));
    assert.ok(!actionsOf("child-oom", since).includes("die"));
    await waitUntil("the shell carries on", () => d.docker(["logs", "child-oom"]).stdout.includes("child-gone"));
    ok(d.docker(["kill", "child-oom"]), "kill");
    await waitUntil("the container exits", () => state("child-oom") === "exited true 137");
    const actions = actionsOf("child-oom", since);
    assert.equal(actions.filter((a) => a === "oom").length, 1, `one oom event per run: ${actions.join(" ")}`);
    ok(d.docker(["start", "child-oom"]), "start again");
    await waitUntil("the second run", () => d.docker(["logs", "child-oom"]).stdout.includes("second-run"));
    assert.equal(state("child-oom", ["Status", "OOMKilled"]), "running false");
    ok(d.docker(["rm", "-f", "child-oom"]), "rm");
    assert.equal(actionsOf("child-oom", since).filter((a) => a === "oom").length, 1, "no oom in the second run");
  });

  test("docker kill (SIGKILL) is exit 137 without OOMKilled and without an oom event", async () => {
    const since = Date.now() / 1000 - 1;
    ok(d.docker(["run", "-d", "--name", "killed", "-m", "64m", "busybox", "sleep", "300"]), "run -d");
    ok(d.docker(["kill", "killed"]), "kill");
    await waitUntil("the container exits", () => state("killed", ["Status"]) === "exited");
    assert.equal(state("killed"), "exited false 137");
    const actions = actionsOf("killed", since);
    assert.ok(actions.includes("die") && !actions.includes("oom"), actions.join(" "));
  });
});
