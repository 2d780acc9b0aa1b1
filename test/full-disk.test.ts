// A full disk is recoverable through the API: with the root on a small tmpfs, an
// import that runs out of space fails naming the cause, and then deleting what it left
// works (SQLite's deletes take the database's reserve), and a collection gives the
// space back.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statfsSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Daemon, ok, run, tableRows } from "./harness.ts";
import { buildImage, descriptor, layoutEntries, tarOf } from "./fixtures/archives.ts";

const tmpfsBytes = 32 * 1024 * 1024;
let base: string;
let root: string;
let d: Daemon;
let archive: string;

const usedBytes = () => {
  const s = statfsSync(root);
  return (s.blocks - s.bfree) * s.bsize;
};

before(async () => {
  base = mkdtempSync(join(tmpdir(), "berth-full-disk-"));
  root = join(base, "root");
  mkdirSync(root);
  ok(run("mount", ["-t", "tmpfs", "-o", `size=${tmpfsBytes},mode=0700`, "tmpfs", root]), "mount tmpfs");
  // Two layers of random bytes (they do not compress): 2 × 20 MiB cannot fit in 32 MiB.
  const image = await buildImage([
    { entries: [{ name: "a.bin", data: randomBytes(20 * 1024 * 1024) }], gzip: false },
    { entries: [{ name: "b.bin", data: randomBytes(20 * 1024 * 1024) }], gzip: false },
  ]);
  archive = join(base, "big.tar");
  const annotations = { "org.opencontainers.image.ref.name": "berth.local/big:1", "io.containerd.image.name": "berth.local/big:1" };
  writeFileSync(archive, await tarOf(layoutEntries(image.blobs, [descriptor(image.manifest, { annotations })])));
  d = new Daemon({ base });
  await d.start();
});

after(async () => {
  await d?.stop();
  run("umount", ["-l", root]);
  rmSync(base, { recursive: true, force: true });
});

test("an import that fills the disk fails naming the cause; deletes still work and a collection frees the space", () => {
  const idle = usedBytes();
  const imported = d.ctr(["images", "import", archive]);
  assert.notEqual(imported.code, 0, "the import cannot fit");
  assert.match(imported.stderr, /no space left on device|disk is full/i);
  assert.doesNotMatch(imported.stderr, /cannot rollback/);

  // Whatever it stored is deletable through the API, however full the disk is: fill
  // what the failed import left free to the last byte.
  const filler = join(root, "filler");
  const fd = openSync(filler, "w");
  try {
    const chunk = Buffer.alloc(64 * 1024);
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    closeSync(fd);
  }
  const small = Buffer.alloc(512);
  try {
    for (;;) appendFileSync(filler, small);
  } catch {
    // the last bytes are taken too
  }
  for (const digest of ok(d.ctr(["content", "ls", "-q"]), "content ls").stdout.split("\n").filter(Boolean)) {
    const removed = d.ctr(["content", "rm", digest]);
    assert.equal(removed.code, 0, `content rm ${digest}: ${removed.stderr}`);
  }
  for (const [id] of tableRows(ok(d.ctr(["leases", "ls"]), "leases ls").stdout)) {
    const removed = d.ctr(["leases", "rm", id!]);
    assert.equal(removed.code, 0, `leases rm ${id}: ${removed.stderr}`);
  }
  for (const [ref] of tableRows(ok(d.ctr(["content", "active"]), "content active").stdout)) {
    const aborted = d.ctr(["content", "rm", ref!]);
    void aborted; // an ingest ref is not a digest: ctr refuses; the collection below removes it
  }
  rmSync(filler);
  // A synchronous collection: partial ingests of the dead import, snapshots and blobs go.
  const lease = ok(d.ctr(["leases", "create"]), "lease create").stdout.trim();
  ok(d.ctr(["leases", "rm", "--sync", lease]), "leases rm --sync");
  assert.deepEqual(tableRows(ok(d.ctr(["content", "active"]), "content active").stdout), [], "no ingest is left");
  assert.deepEqual(tableRows(ok(d.ctr(["snapshots", "ls"]), "snapshots ls").stdout), [], "no snapshot is left");
  assert.ok(usedBytes() <= idle + 1024 * 1024, `space is back: ${usedBytes()} bytes used, ${idle} before the import`);

  // And the disk works again: a small import succeeds.
  const again = d.ctr(["content", "ingest", "after-full"], "room again\n");
  assert.equal(again.code, 0, again.stderr);
});
