// The build context's way to disk: extracted into memory (a tmpfs dir) while it fits
// BERTH_BUILD_CONTEXT_MEMORY_BYTES, moved to disk with the rest extracted after it once
// it passes that, and gone from both places after every build, failed ones too. Driven by
// the real docker CLI (DOCKER_BUILDKIT=0) and raw HTTP for broken bodies. Also: a RUN's
// rootfs is mounted volatile (services/engine/build/unsynced-mounts.ts).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, sleep, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { classicBuild, endBuildTests } from "./fixtures/build.ts";
import { volatileSupported } from "../services/engine/build/unsynced-mounts.ts";

let d: Daemon;
let work: string;
/** Where the daemon keeps contexts in memory, and its temp dir (contexts on disk): both the test's own. */
let memoryDir: string;
let diskDir: string;
const memoryBudget = 16 << 10;
const contextLimit = 4 << 20;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-build-context-"));
  memoryDir = join(work, "memory");
  diskDir = join(work, "tmp");
  mkdirSync(memoryDir);
  mkdirSync(diskDir);
  d = await startEngineWithBusybox({
    env: {
      BERTH_BUILD_CONTEXT_MEMORY_DIR: memoryDir,
      BERTH_BUILD_CONTEXT_MEMORY_BYTES: String(memoryBudget),
      BERTH_BUILD_CONTEXT_MAX_BYTES: String(contextLimit),
      TMPDIR: diskDir,
    },
  });
});

after(() => endBuildTests(d, work));

/** Contexts in memory or in the temp dir, and builds' own directories (a context moved to disk is in one). */
const contexts = () => [
  ...[...readdirSync(memoryDir), ...readdirSync(diskDir)].filter((n) => n.startsWith("berth-build-context-")),
  ...(existsSync(join(d.root, "engine", "builds")) ? readdirSync(join(d.root, "engine", "builds")) : []),
];

/** The contexts left once the daemon is done with them: it removes a context after the reply ends, so this polls (up to 10 s). */
async function contextsLeft(): Promise<string[]> {
  for (let i = 0; i < 200 && contexts().length > 0; i++) await sleep(50);
  return contexts();
}

const build = (dir: string, args: string[]) => classicBuild(d, dir, args);

function runIn(image: string, script: string): string {
  return ok(d.docker(["run", "--rm", image, "sh", "-c", script]), `run ${script}`).stdout;
}

/** POST /build with a raw body. */
function post(body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.dockerSocket, method: "POST", path: "/v1.41/build?t=broken", headers: { "Content-Type": "application/x-tar" } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A ustar header for a regular file of `size` bytes. */
function fileHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
  h.write("00000000000\0", 136);
  h.write("0", 156);
  h.write("ustar\0", 257);
  h.write("00", 263);
  h.fill(" ", 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return h;
}

describe("build context in memory and on disk, unsynced step mounts", () => {
  test("a context within the memory budget builds, and leaves no context or lease behind", async () => {
    const dir = join(work, "small");
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox\nCOPY . /ctx/\n");
    writeFileSync(join(dir, "a.txt"), "alpha\n");
    ok(build(dir, ["-t", "ctx:small"]), "build");
    assert.equal(runIn("ctx:small", "cat /ctx/a.txt"), "alpha\n");
    assert.deepEqual(await contextsLeft(), []);
    // The build's one lease is gone with it.
    assert.equal(ok(d.ctr(["leases", "ls", "-q"], undefined, "moby"), "ctr leases ls").stdout.trim(), "");
  });

  test("a context over the memory budget moves to disk mid-way: every file, mode, link and the cache come out as from memory", async () => {
    const dir = join(work, "large");
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/sub/late.txt > /late\n");
    writeFileSync(join(dir, "a-first.txt"), "first\n");
    const big = randomBytes(memoryBudget * 3);
    writeFileSync(join(dir, "big.bin"), big);
    writeFileSync(join(dir, "sub", "late.txt"), "late\n");
    chmodSync(join(dir, "sub", "late.txt"), 0o640);
    chmodSync(join(dir, "sub"), 0o750);
    linkSync(join(dir, "a-first.txt"), join(dir, "hard.txt"));
    symlinkSync("sub/late.txt", join(dir, "z-link"));
    const first = ok(build(dir, ["-t", "ctx:large"]), "build");
    assert.doesNotMatch(first.stdout, /Using cache/);
    const seen = runIn("ctx:large", "cat /ctx/a-first.txt /ctx/hard.txt /late; stat -c '%n %a' /ctx/sub; stat -c '%n %a %s' /ctx/sub/late.txt /ctx/big.bin; readlink /ctx/z-link; md5sum /ctx/big.bin");
    const lines = seen.split("\n");
    assert.deepEqual(lines.slice(0, 7), ["first", "first", "late", "/ctx/sub 750", "/ctx/sub/late.txt 640 5", `/ctx/big.bin 644 ${big.length}`, "sub/late.txt"]);
    assert.match(lines[7]!, /^[0-9a-f]{32}\s+\/ctx\/big\.bin$/);
    assert.deepEqual(await contextsLeft(), []);
    // The docker CLI sends the files in name order: big.bin and everything after it went to disk.
    // The same context again hashes the same (the moved files kept what the cache key covers).
    const second = ok(build(dir, ["-t", "ctx:large"]), "rebuild");
    assert.equal((second.stdout.match(/ ---> Using cache/g) ?? []).length, 2, second.stdout);
    assert.deepEqual(await contextsLeft(), []);
  });

  test("a RUN's rootfs is mounted volatile where the kernel has it (its unmount does not sync the disk)", { skip: !volatileSupported() && "kernel before 5.10" }, () => {
    const dir = join(work, "run-mount");
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox\nRUN grep '^overlay / ' /proc/mounts\n");
    const r = ok(build(dir, ["--no-cache"]), "build");
    const rootLine = r.stdout.split("\n").find((l) => l.startsWith("overlay / "));
    assert.ok(rootLine, r.stdout);
    // Shown as "volatile" or, by newer kernels, "fsync=volatile".
    assert.match(rootLine, /[ ,](fsync=)?volatile[ ,]/);
  });

  test("bad input: a COPY onto symlinks the base image has at the destination replaces them, never writes where they point on the host", () => {
    const dir = join(work, "symlink-target");
    mkdirSync(dir);
    const hostSmall = join(work, "host-small.txt");
    const hostBig = join(work, "host-big.bin");
    writeFileSync(hostSmall, "host\n");
    writeFileSync(hostBig, "host\n");
    writeFileSync(join(dir, "small.txt"), "from the context\n");
    const big = randomBytes(2 << 20);
    writeFileSync(join(dir, "big.bin"), big);
    writeFileSync(join(dir, "Dockerfile"), `FROM busybox\nRUN mkdir /data && ln -s ${hostSmall} /data/small.txt && ln -s ${hostBig} /data/big.bin\nCOPY small.txt big.bin /data/\n`);
    ok(build(dir, ["-t", "ctx:symlinks"]), "build");
    assert.equal(readFileSync(hostSmall, "utf8"), "host\n");
    assert.equal(readFileSync(hostBig, "utf8"), "host\n");
    assert.equal(runIn("ctx:symlinks", "test ! -L /data/small.txt && test ! -L /data/big.bin && cat /data/small.txt && stat -c %s /data/big.bin"), `from the context\n${big.length}\n`);
  });

  test("bad input: a tree COPY onto a directory symlink the base image has follows it inside the rootfs, never on the host", () => {
    const dir = join(work, "symlinked-dir");
    mkdirSync(join(dir, "tree", "conf", "deeper"), { recursive: true });
    const hostDir = join(work, "host-dir");
    mkdirSync(hostDir);
    writeFileSync(join(dir, "tree", "conf", "marker.txt"), "from the context\n");
    writeFileSync(join(dir, "tree", "conf", "deeper", "more.txt"), "more\n");
    writeFileSync(join(dir, "Dockerfile"), `FROM busybox\nRUN mkdir /app && ln -s ${hostDir} /app/conf\nCOPY tree/ /app/\n`);
    ok(build(dir, ["-t", "ctx:dir-symlink"]), "build");
    assert.deepEqual(readdirSync(hostDir), [], "nothing was written in the host's directory the link names");
    assert.equal(runIn("ctx:dir-symlink", `test -L /app/conf && cat /app/conf/marker.txt ${hostDir}/deeper/more.txt`), "from the context\nmore\n");
  });

  test("bad input: a body cut off after the move to disk is a 400 and leaves neither copy behind", async () => {
    const data = randomBytes(memoryBudget * 2);
    const body = Buffer.concat([fileHeader("Dockerfile", 13), Buffer.from("FROM busybox\n"), Buffer.alloc(512 - 13), fileHeader("big.bin", data.length), data, fileHeader("cut.bin", 4096), Buffer.alloc(100)]);
    const r = await post(body);
    assert.equal(r.status, 400, r.body);
    assert.match(r.body, /cannot read the build context/);
    assert.deepEqual(await contextsLeft(), []);
  });

  test("bad input: a context over BERTH_BUILD_CONTEXT_MAX_BYTES after the move to disk is a 400 naming the limit, nothing left behind", async () => {
    const data = randomBytes(contextLimit + 1024);
    const r = await post(Buffer.concat([fileHeader("big.bin", data.length), data, Buffer.alloc(1024)]));
    assert.equal(r.status, 400, r.body);
    assert.match(r.body, new RegExp(`the build context is larger than the ${contextLimit} bytes`));
    assert.deepEqual(await contextsLeft(), []);
  });
});
