// berthctl's direct HTTP/2 client (core/grpc-direct.ts) against a second server
// implementation: a real containerd, i.e. Go's HTTP/2 and HPACK, on a temp root. The
// same commands through berthctl and ctr must print the same bytes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startContainerd, type RunningDaemon } from "../bench/daemons.ts";
import { sha256Digest } from "../core/digest.ts";
import { distDir, ok, run } from "./harness.ts";

describe("berthctl on containerd", { skip: !containerdInstalled() && "containerd is not installed" }, () => {
  let base: string;
  let containerd: RunningDaemon | undefined;
  const berthctl = (args: string[], input?: string | Buffer) => run(process.execPath, [join(distDir, "berthctl.js"), "--address", containerd!.address, ...args], input);
  const ctr = (args: string[], input?: string | Buffer) => run("ctr", ["--address", containerd!.address, ...args], input);

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "berth-direct-containerd-"));
    containerd = await startContainerd(base);
  });

  after(async () => {
    await containerd?.stop();
    rmSync(base, { recursive: true, force: true });
  });

  test("version: the server section is ctr's", () => {
    const section = (out: string) => out.slice(out.indexOf("Server:"));
    const mine = ok(berthctl(["version"]));
    assert.match(mine.stdout, /^Server:\n {2}Version: {2}\S+\n {2}Revision: \S+\n {2}UUID: [0-9a-f-]{36}\n/m);
    assert.equal(section(mine.stdout), section(ok(ctr(["version"])).stdout));
  });

  test("namespaces and their labels read back the same through both tools", () => {
    ok(berthctl(["namespaces", "create", "direct", "team=infra", "tier=gold"]));
    ok(ctr(["namespaces", "label", "direct", "owner=someone-with-a-long-name"]));
    const mine = ok(berthctl(["namespaces", "ls"])).stdout;
    assert.equal(mine, ok(ctr(["namespaces", "ls"])).stdout);
    assert.match(mine, /^direct +owner=someone-with-a-long-name,team=infra,tier=gold +$/m);
    // A status error from Go's server: the same message and exit code as ctr's.
    const mineAgain = berthctl(["namespaces", "create", "direct"]);
    const theirsAgain = ctr(["namespaces", "create", "direct"]);
    assert.deepEqual([mineAgain.code, mineAgain.stderr], [1, 'berthctl: namespace "direct": already exists\n']);
    assert.deepEqual([theirsAgain.code, theirsAgain.stderr], [1, 'ctr: namespace "direct": already exists\n']);
  });

  test("a blob larger than the stream window streams back whole", () => {
    const blob = randomBytes(20 * 1024 * 1024);
    ok(ctr(["content", "ingest", "direct-big"], blob));
    const digest = sha256Digest(blob);
    const { spawnSync } = process.getBuiltinModule("node:child_process");
    const got = spawnSync(process.execPath, [join(distDir, "berthctl.js"), "--address", containerd!.address, "content", "get", digest], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(got.status, 0, got.stderr.toString());
    assert.ok(got.stdout.equals(blob), `got ${got.stdout.length} bytes`);
    assert.equal(ok(berthctl(["content", "ls", "-q"])).stdout, ok(ctr(["content", "ls", "-q"])).stdout);
  });
});
