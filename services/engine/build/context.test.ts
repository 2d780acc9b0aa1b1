// Where a build context is extracted: on a tmpfs while it fits, on disk when the tmpfs has
// too little room (a small or shared /dev/shm must not fail a build with ENOSPC).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeHeader, endOfArchive, padding } from "../../../core/tar/writer.ts";
import { extractContext, removeContext } from "./context.ts";

const needsRoot = process.getuid?.() !== 0 && "needs root (mounts a tmpfs)";

function tarOf(files: Record<string, Buffer>): Buffer[] {
  const parts: Buffer[] = [];
  for (const [name, data] of Object.entries(files)) {
    parts.push(encodeHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0 }), data, padding(data.length));
  }
  return [...parts, endOfArchive];
}

test("a context larger than half the tmpfs's free space goes to disk whole", { skip: needsRoot }, async (t) => {
  const base = mkdtempSync(join(tmpdir(), "berth-context-"));
  const shm = join(base, "shm");
  mkdirSync(shm);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", shm]);
  const saved = process.env.BERTH_BUILD_CONTEXT_MEMORY_DIR;
  process.env.BERTH_BUILD_CONTEXT_MEMORY_DIR = shm;
  t.after(() => {
    if (saved === undefined) delete process.env.BERTH_BUILD_CONTEXT_MEMORY_DIR;
    else process.env.BERTH_BUILD_CONTEXT_MEMORY_DIR = saved;
    execFileSync("umount", [shm]);
    rmSync(base, { recursive: true, force: true });
  });
  const files = { Dockerfile: Buffer.from("FROM scratch\n"), a: Buffer.alloc(400 << 10, 1), b: Buffer.alloc(400 << 10, 2), c: Buffer.alloc(400 << 10, 3) };

  const small = await extractContext(tarOf({ Dockerfile: files.Dockerfile }), "Dockerfile", join(base, "small"));
  assert.ok(realpathSync(small).startsWith(`${shm}/`), "a small context stays on the tmpfs");
  removeContext(small);

  const big = await extractContext(tarOf(files), "Dockerfile", join(base, "big"));
  assert.ok(!realpathSync(big).startsWith(`${shm}/`), "a context the tmpfs cannot hold is on disk");
  for (const name of ["a", "b", "c"] as const) assert.deepEqual(readFileSync(join(big, name)), files[name], `${name} complete`);
  removeContext(big);
  assert.deepEqual(execFileSync("ls", ["-A", shm], { encoding: "utf8" }), "", "nothing left on the tmpfs");
});

/** `whole` cut into pieces of the given sizes in turn (the upload's HTTP chunks are small and fall anywhere). */
function* cut(whole: Buffer, sizes: number[]): Generator<Buffer> {
  for (let offset = 0, i = 0; offset < whole.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield whole.subarray(offset, offset + size);
    offset += size;
  }
}

test("a context arriving in chunks of any size, cut across entries and headers, extracts the same files", async (t) => {
  const base = mkdtempSync(join(tmpdir(), "berth-context-"));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const files = { Dockerfile: Buffer.from("FROM scratch\n"), big: Buffer.alloc((1 << 20) + 777, 5), small: Buffer.from("small\n"), other: Buffer.alloc(300 << 10, 7) };
  const whole = Buffer.concat(tarOf(files));
  for (const [i, sizes] of [[1, 4093], [7, 13_400, 511], [13_400], [whole.length]].entries()) {
    const dir = await extractContext(cut(whole, sizes), "Dockerfile", join(base, `c${i}`));
    for (const [name, data] of Object.entries(files)) assert.deepEqual(readFileSync(join(dir, name)), data, `${name} with pieces of ${sizes.join(", ")} bytes`);
    removeContext(dir);
  }
});

test("bad input: a context over the size limit, in small chunks, is refused with the limit named and leaves nothing", async (t) => {
  const base = mkdtempSync(join(tmpdir(), "berth-context-"));
  const saved = process.env.BERTH_BUILD_CONTEXT_MAX_BYTES;
  process.env.BERTH_BUILD_CONTEXT_MAX_BYTES = String(200 << 10);
  t.after(() => {
    if (saved === undefined) delete process.env.BERTH_BUILD_CONTEXT_MAX_BYTES;
    else process.env.BERTH_BUILD_CONTEXT_MAX_BYTES = saved;
    rmSync(base, { recursive: true, force: true });
  });
  const whole = Buffer.concat(tarOf({ Dockerfile: Buffer.from("FROM scratch\n"), a: Buffer.alloc(150 << 10, 1), b: Buffer.alloc(150 << 10, 2) }));
  await assert.rejects(extractContext(cut(whole, [13_400]), "Dockerfile", join(base, "over")), /larger than the 204800 bytes this daemon accepts/);
  assert.deepEqual(readdirSync(base), [], "no context directory or link left");
});
