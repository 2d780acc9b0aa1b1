// Where a build context is extracted: on a tmpfs while it fits, on disk when the tmpfs has
// too little room (a small or shared /dev/shm must not fail a build with ENOSPC).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
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
