// dockerode (npm), as programs that drive Docker from Node use it: create → start → logs →
// wait → remove against Berth's Engine API, with no docker CLI involved.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeoArchives } from "./fixtures/archives.ts";

let d: Daemon;
let docker: Docker;
const workdir = mkdtempSync(join(tmpdir(), "berth-dockerode-"));

before(async () => {
  d = await startDaemon();
  const archive = skopeoArchives(workdir, await buildBusyboxImage()).dockerArchive;
  ok(d.docker(["load", "-i", archive]), "docker load");
  docker = new Docker({ socketPath: d.dockerSocket });
});

after(async () => {
  const left = d?.docker(["ps", "-aq"]).stdout.split("\n").filter(Boolean) ?? [];
  if (left.length > 0) d.docker(["rm", "-f", ...left]);
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

test("dockerode: create, start, logs, wait, remove", async () => {
  const container = await docker.createContainer({
    Image: "busybox:latest",
    Cmd: ["sh", "-c", "echo out-line; echo err-line >&2; exit 4"],
    Labels: { "test.berth": "dockerode" },
  });
  await container.start();
  const result = (await container.wait()) as { StatusCode: number };
  assert.equal(result.StatusCode, 4);
  const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  // Not a TTY: the logs are multiplexed frames; demultiplex them as dockerode users do.
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for (let at = 0; at + 8 <= logs.length; ) {
    const size = logs.readUInt32BE(at + 4);
    (logs[at] === 1 ? out : err).push(logs.subarray(at + 8, at + 8 + size));
    at += 8 + size;
  }
  assert.equal(Buffer.concat(out).toString(), "out-line\n");
  assert.equal(Buffer.concat(err).toString(), "err-line\n");
  const info = await container.inspect();
  assert.equal(info.State.ExitCode, 4);
  assert.equal(info.Config.Labels["test.berth"], "dockerode");
  const listed = await docker.listContainers({ all: true, filters: { label: ["test.berth=dockerode"] } });
  assert.equal(listed.length, 1);
  await container.remove();
  await assert.rejects(container.inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
});
