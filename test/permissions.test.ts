// Nothing berthd keeps is readable by other local users: image layers, metadata
// databases, redis' files, ingests. A real berthd, started under umask 000 (so only the
// modes the code sets count), imports and unpacks the busybox image; then every entry
// under root and state is checked. Exceptions, each for a stated reason: snapshot
// contents (fs/ of each snapshot) carry the image's own modes; the public socket is 0660
// for its group; <state> itself is 0711 so that group can reach that socket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { descriptor, layoutEntries, tarOf } from "./fixtures/archives.ts";

let d: Daemon;
let work: string;
let savedUmask: number;

before(async () => {
  savedUmask = process.umask(0);
  try {
    d = await startDaemon();
  } finally {
    process.umask(savedUmask);
  }
  work = mkdtempSync(join(tmpdir(), "berth-permissions-"));
  const image = await buildBusyboxImage();
  const archive = join(work, "busybox.tar");
  const manifests = [descriptor(image.manifest, { annotations: { "io.containerd.image.name": "docker.io/library/busybox:latest", "org.opencontainers.image.ref.name": "latest" } })];
  writeFileSync(archive, await tarOf(layoutEntries(image.blobs, manifests)));
  ok(d.berthctl(["images", "import", archive]), "berthctl images import");
});

after(async () => {
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Entry {
  path: string;
  mode: number;
  type: "dir" | "file" | "socket" | "other";
}

/** Every entry below `dir`, not descending into snapshot contents (`snapshots/<id>/fs`). */
function walk(dir: string, out: Entry[] = []): Entry[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    const type = st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSocket() ? "socket" : "other";
    out.push({ path, mode: st.mode & 0o7777, type });
    const isSnapshotContent = name === "fs" && /\/snapshots\/[^/]+$/.test(dir);
    if (type === "dir" && !isSnapshotContent) walk(path, out);
  }
  return out;
}

const show = (entries: Entry[], base: string) => entries.map((e) => `${(e.mode).toString(8).padStart(4, "0")} ${e.type} ${relative(base, e.path)}`).join("\n");

test("the root is private to its owner (0700, as containerd's)", () => {
  assert.equal(lstatSync(d.root).mode & 0o777, 0o700);
});

test("the state dir lets others traverse (0711) but not list it", () => {
  assert.equal(lstatSync(d.state).mode & 0o777, 0o711);
});

test("no entry under the root has a permission bit for other users", () => {
  const entries = walk(d.root);
  // The walk saw what the import made: blobs, databases, the unpacked snapshot.
  assert.ok(entries.some((e) => e.path.includes(`${join("content", "blobs")}`) && e.type === "file"), show(entries, d.root));
  assert.ok(entries.some((e) => /\.db$/.test(e.path)), show(entries, d.root));
  assert.ok(entries.some((e) => /\/snapshots\/[^/]+\/fs$/.test(e.path)), show(entries, d.root));
  const open = entries.filter((e) => e.mode & 0o007 && !/\/snapshots\/[^/]+\/fs$/.test(e.path));
  assert.equal(show(open, d.root), "", "entries open to other users");
});

test("blobs and the files under content are 0600 or 0400", () => {
  const files = walk(join(d.root, "content")).filter((e) => e.type === "file");
  assert.ok(files.length >= 3, "manifest, config and layer blobs at least");
  const wrong = files.filter((e) => e.mode !== 0o600 && e.mode !== 0o400);
  assert.equal(show(wrong, d.root), "", "content files with other modes");
});

test("databases and their -wal/-shm files are 0600", () => {
  const dbFiles = walk(d.root).filter((e) => /\.db(-wal|-shm)?$/.test(e.path));
  assert.ok(dbFiles.some((e) => e.path.endsWith("-wal")), show(dbFiles, d.root));
  const wrong = dbFiles.filter((e) => e.mode !== 0o600);
  assert.equal(show(wrong, d.root), "", "database files not 0600");
});

test("no entry under the state dir has a permission bit for other users, but the public socket", () => {
  const entries = walk(d.state);
  assert.ok(entries.length > 0);
  const open = entries.filter((e) => e.mode & 0o007);
  assert.equal(show(open, d.state), "", "entries open to other users");
  assert.equal(lstatSync(d.address).mode & 0o777, 0o660, "the public socket is for its group");
});

test("files and dirs an older, laxer berthd left are tightened at start-up", async () => {
  const base = mkdtempSync(join(tmpdir(), "berth-permissions-old-"));
  const root = join(base, "root");
  mkdirSync(join(root, "content", "blobs", "sha256"), { recursive: true, mode: 0o755 });
  for (const dir of ["content", "content/blobs", "content/blobs/sha256"]) chmodSync(join(root, dir), 0o755);
  // An empty file is an empty SQLite database (and an empty WAL, no WAL to replay).
  for (const file of ["metadata.db", "metadata.db-wal"]) writeFileSync(join(root, file), "", { mode: 0o644 });
  chmodSync(root, 0o755);
  const old = await startDaemon({ base });
  try {
    // content tightens its dirs when it starts, which (on demand) is at the first call.
    ok(old.ctr(["content", "ls"]), "content ls");
    for (const path of ["content", "content/blobs", "content/blobs/sha256"]) assert.equal(lstatSync(join(root, path)).mode & 0o777, 0o700, path);
    for (const path of ["metadata.db", "metadata.db-wal"]) assert.equal(lstatSync(join(root, path)).mode & 0o777, 0o600, path);
    assert.equal(lstatSync(root).mode & 0o777, 0o755, "an existing root keeps the mode its administrator gave it");
  } finally {
    await old.destroy();
  }
});
