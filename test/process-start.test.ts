// What berthd gives each process it starts so that the start is short: Node's compile
// cache (NODE_COMPILE_CACHE, the CLIs' private directory), the same for an always-on
// process and one started on demand; and the caller's Ready returns with the process
// listening.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { compileCacheEnv } from "../core/compile-cache.ts";
import { ProcessesDefinition } from "../core/gen/berth/internal/v1/processes.ts";
import { closeChannels, grpcClient } from "../core/grpc-client.ts";
import { socketAccepts } from "../core/socket.ts";
import { serviceSocketPath } from "../core/config.ts";
import { inProcess } from "../core/routes.ts";
import { startDaemon, type Daemon } from "./harness.ts";

let d: Daemon;
before(async () => {
  d = await startDaemon();
});
after(async () => {
  closeChannels();
  await d?.destroy();
});

const environ = (pid: number) => new Map(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));

test("an on-demand process and an always-on one run with the private compile cache", async () => {
  const expected = compileCacheEnv().NODE_COMPILE_CACHE;
  assert.ok(expected, "this user has a private cache directory");
  assert.equal(statSync(expected).mode & 0o077, 0);
  await grpcClient(ProcessesDefinition, serviceSocketPath(d.state, inProcess)).ready({ name: "jobs" });
  // Ready returned: the process listens (a watch woke berthd, or its poll did).
  assert.equal(await socketAccepts(serviceSocketPath(d.state, "jobs")), true);
  for (const name of ["jobs", "tasks"]) {
    const pid = d.servicePid(name);
    assert.ok(pid, `${name} runs`);
    assert.equal(environ(pid).get("NODE_COMPILE_CACHE"), expected, `${name}'s environment`);
  }
});
