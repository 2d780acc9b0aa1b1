// A RUN step's process as services/engine/build/run-process.ts runs it: real runc on a
// busybox rootfs (a bind of a directory, where a build binds its snapshot's overlay),
// without an engine around it. Each test checks that nothing of the run is left: runc's
// state, the bundle, a mount, a cgroup in any hierarchy, a process.
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { containerSpec } from "../core/oci/spec.ts";
import { newRunId, releaseRuns, runcRootOf, runProcess, RunStartError, type RunRequest } from "../services/engine/build/run-process.ts";
import { readdirOrEmpty, removeCgroupParent } from "./fixtures/namespace-leftovers.ts";

// runc puts a run in the cgroup /<namespace>/<id> of every hierarchy.
const namespace = `berth-run-test-${process.pid}`;
let base = "";
let image = "";

const mountsUnderBase = () =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((target) => base !== "" && target.startsWith(base));

const runcProcessesOf = (id: string) =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(id);
      } catch {
        return false;
      }
    });

function leftovers(request: RunRequest) {
  return {
    runcState: existsSync(join(request.runcRoot, request.id)),
    bundle: existsSync(request.bundle),
    mounts: mountsUnderBase(),
    cgroups: readdirOrEmpty("/sys/fs/cgroup").filter((h) => existsSync(join("/sys/fs/cgroup", h, namespace, request.id))),
    processes: runcProcessesOf(request.id),
  };
}
const nothingLeft = { runcState: false, bundle: false, mounts: [], cgroups: [], processes: [] };

function runRequest(args: string[], output: string[], extra: Partial<RunRequest> = {}): RunRequest {
  const id = newRunId();
  return {
    runcRoot: runcRootOf(base),
    bundle: join(base, `run-${id.slice(0, 24)}`),
    id,
    rootfs: [{ type: "bind", source: image, target: "", options: ["rbind", "rw"] }],
    spec: () => containerSpec({ namespace, id, args, hostname: id.slice(0, 12) }),
    output: (text) => output.push(text),
    ...extra,
  };
}

describe("a RUN step's process (runc run)", () => {
  before(() => {
    base = mkdtempSync(join(tmpdir(), "berth-build-run-"));
    image = join(base, "image");
    for (const dir of ["bin", "proc", "dev", "sys", "etc", "tmp"]) mkdirSync(join(image, dir), { recursive: true });
    copyFileSync("/bin/busybox", join(image, "bin", "busybox"));
    for (const applet of ["sh", "echo", "sleep"]) symlinkSync("busybox", join(image, "bin", applet));
  });

  after(async () => {
    // What a failed test may have left: its runs, their mounts and cgroups, the directory.
    await releaseRuns(runcRootOf(base)).catch(() => undefined);
    for (const target of mountsUnderBase().reverse()) spawnSync("umount", ["-l", target]);
    removeCgroupParent(namespace);
    if (base && mountsUnderBase().length === 0) rmSync(base, { recursive: true, force: true });
  });

  test("runs the command to its end: its stdout and stderr, its exit code, and nothing left", async () => {
    const output: string[] = [];
    const request = runRequest(["/bin/sh", "-c", "echo out; echo err >&2; exit 7"], output);
    assert.equal(await runProcess(request), 7);
    const text = output.join("");
    assert.match(text, /^out$/m);
    assert.match(text, /^err$/m);
    assert.deepEqual(leftovers(request), nothingLeft);
  });

  test("bad input: a runc binary that cannot be started is a RunStartError naming it, and nothing is left", async () => {
    const missing = join(base, "no-such-runc");
    const saved = process.env.BERTH_RUNC;
    process.env.BERTH_RUNC = missing;
    const request = runRequest(["/bin/sh", "-c", "true"], []);
    try {
      await assert.rejects(runProcess(request), (err: Error) => err instanceof RunStartError && err.message.startsWith("cannot run runc: ") && err.message.includes("ENOENT"));
    } finally {
      if (saved === undefined) delete process.env.BERTH_RUNC;
      else process.env.BERTH_RUNC = saved;
    }
    assert.deepEqual(leftovers(request), nothingLeft);
  });

  test("bad input: a command the rootfs does not have is runc's error, and nothing is left", async () => {
    const request = runRequest(["/no/such/program", "x"], []);
    await assert.rejects(runProcess(request), (err: Error) => err instanceof RunStartError && /no such file or directory/i.test(err.message) && err.message.includes("/no/such/program"));
    assert.deepEqual(leftovers(request), nothingLeft);
  });

  test("an abort kills the process: it ends with 137, and nothing is left", async () => {
    const controller = new AbortController();
    const output: string[] = [];
    const request = runRequest(["/bin/sh", "-c", "echo started; exec sleep 600"], output, { signal: controller.signal });
    // Aborted once the process has shown it runs (not at a guessed time).
    request.output = (text) => {
      output.push(text);
      if (output.join("").includes("started")) controller.abort();
    };
    assert.equal(await runProcess(request), 137);
    assert.deepEqual(leftovers(request), nothingLeft);
  });
});
