// One conformance suite run against every snapshotter berthd loads (overlayfs, native),
// end to end: the real ctr and a gRPC client against a real berthd, every mount
// mounted for real (as root) and checked file by file, the directories on disk
// checked after errors, removals, leases, collections, cleanups and a restart.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chownSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ClientError, Metadata, Status } from "nice-grpc";
import { extract, type Header } from "tar-stream";
import { startDaemon, closeFreshChannels, freshClient, grpcError, ok, run, tableRows, type Daemon } from "./harness.ts";
import { buildImage, skopeoArchives } from "./fixtures/archives.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { Kind, SnapshotsDefinition, type Info } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { LeasesDefinition } from "../core/gen/containerd/services/leases/v1/leases.ts";
import { prepareRootfs } from "../core/rootfs.ts";

const snapshotterNames = ["overlayfs", "native"] as const;
type SnapshotterName = (typeof snapshotterNames)[number];

let d: Daemon;
let workdir: string;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-conformance-"));
  d = await startDaemon();
});

after(async () => {
  closeFreshChannels();
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

const ns = (namespace: string, lease?: string) => ({
  metadata: Metadata({ "containerd-namespace": namespace, ...(lease ? { "containerd-lease": lease } : {}) }),
});

const snapshots = () => freshClient(SnapshotsDefinition, d.address);
const leases = () => freshClient(LeasesDefinition, d.address);

/** What a test pins so that the collections other steps trigger keep it (ctr sets the same label). */
const pinned = { "containerd.io/gc.root": "pinned by the conformance test" };

/** A synchronous collection: ctr leases rm --sync of a lease made for it. */
function collectNow(namespace = "default"): void {
  const lease = ok(d.ctr(["leases", "create"], undefined, namespace), "lease create").stdout.trim();
  ok(d.ctr(["leases", "rm", "--sync", lease], undefined, namespace), "leases rm --sync");
}

/** Makes an empty mount point under the daemon's temp dir. */
function mountPoint(): string {
  const dir = join(d.base, "mnt");
  mkdirSync(dir, { recursive: true });
  return mkdtempSync(join(dir, "t-"));
}

/** Every entry under `root` as "path type mode uid:gid [content|target]", for comparing trees. */
function treeOf(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const relPath = rel === "" ? name : `${rel}/${name}`;
      const st = lstatSync(path);
      const owner = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out.push(`${relPath}/ ${owner}`);
        walk(path, relPath);
      } else if (st.isSymbolicLink()) out.push(`${relPath} -> ${readlinkSync(path)}`);
      else out.push(`${relPath} ${owner} ${readFileSync(path, "utf8")}`);
    }
  };
  walk(root, "");
  return out;
}

/** Total bytes allocated under `dir` (du), each inode once. */
function allocatedBytes(dir: string): number {
  return Number(ok(run("du", ["-s", "-B1", dir]), "du").stdout.split(/\s/)[0]);
}

/** The header of every entry of an uncompressed tar. */
async function tarHeaders(tar: Buffer): Promise<Header[]> {
  const headers: Header[] = [];
  const ex = extract();
  ex.end(tar);
  for await (const entry of ex) {
    headers.push(entry.header);
    entry.resume();
  }
  return headers;
}

const sha256 = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

function conformance(sn: SnapshotterName): void {
  const sctr = (args: string[], namespace = "default") => d.ctr(["snapshots", "--snapshotter", sn, ...args], undefined, namespace);
  const sctrOk = (args: string[], namespace = "default") => ok(sctr(args, namespace), `ctr snapshots --snapshotter ${sn} ${args.join(" ")}`).stdout;
  const snapshotsDir = () => join(d.root, "snapshots", sn, "snapshots");
  const dirs = () => readdirSync(snapshotsDir()).sort();

  /** Pins `key` with a gc.root label (ctr's view does not set one), so collections keep it. */
  const pin = (key: string, namespace = "default") =>
    snapshots().update({ snapshotter: sn, info: { name: key, labels: pinned }, updateMask: ["labels.containerd.io/gc.root"] }, ns(namespace));

  /** The directory that holds snapshot `key`'s own files (its upper dir or its tree). */
  const ownDir = (mounts: { type: string; source: string; options: string[] }[]) => {
    const m = mounts[0]!;
    if (m.type === "bind") return m.source;
    return m.options.find((o) => o.startsWith("upperdir="))!.slice("upperdir=".length);
  };

  async function listInfos(namespace = "default"): Promise<Info[]> {
    const infos: Info[] = [];
    for await (const batch of snapshots().list({ snapshotter: sn, filters: [] }, ns(namespace))) infos.push(...batch.info);
    return infos;
  }

  /** Mounts what `ctr snapshots mounts` prints for `key`, runs fn, always unmounts. */
  async function withMount<T>(key: string, fn: (target: string) => Promise<T> | T, namespace = "default"): Promise<T> {
    const target = mountPoint();
    const printed = sctrOk(["mounts", target, key], namespace);
    const lines = printed.trim().split("\n");
    assert.equal(lines.length, 1, printed);
    ok(run("sh", ["-c", lines[0]!]), `sh -c ${lines[0]}`);
    try {
      return await fn(target);
    } finally {
      const r = run("umount", [target]);
      assert.equal(r.code, 0, `umount ${target}: ${r.stderr}`);
      rmSync(target, { recursive: true, force: true });
    }
  }

  describe(`${sn}: a chain of layers mounted for real`, () => {
    test("prepare, write, commit, stack three layers with deletions, view: every layer shows what it should", async () => {
      sctrOk(["prepare", "k1"]);
      const first = sctrOk(["mounts", "/tmp/x", "k1"]);
      const own = sn === "overlayfs" ? `${snapshotsDir()}/\\d+/fs` : `${snapshotsDir()}/\\d+`;
      assert.match(first, new RegExp(`^mount -t bind ${own} /tmp/x -o rw,rbind\\n$`));
      await withMount("k1", (t) => {
        writeFileSync(join(t, "a.txt"), "a");
        mkdirSync(join(t, "dir", "sub"), { recursive: true });
        writeFileSync(join(t, "dir", "b.txt"), "b");
        writeFileSync(join(t, "dir", "sub", "c.txt"), "c");
        chownSync(join(t, "dir", "b.txt"), 1000, 1001);
        linkSync(join(t, "a.txt"), join(t, "hardlink"));
        symlinkSync("a.txt", join(t, "symlink"));
      });
      sctrOk(["commit", "c1", "k1"]);

      sctrOk(["prepare", "k2", "c1"]);
      const second = sctrOk(["mounts", "/tmp/x", "k2"]);
      if (sn === "overlayfs") assert.match(second, /^mount -t overlay overlay \/tmp\/x -o (index=off,)?workdir=\S+\/work,upperdir=\S+\/fs,lowerdir=\S+\/fs\n$/);
      else assert.match(second, new RegExp(`^mount -t bind ${own} /tmp/x -o rw,rbind\\n$`), "a native snapshot is one tree");
      await withMount("k2", (t) => {
        assert.equal(readFileSync(join(t, "a.txt"), "utf8"), "a", "the parent's file is visible");
        assert.equal(lstatSync(join(t, "hardlink")).ino, lstatSync(join(t, "a.txt")).ino, "hard links stay linked");
        assert.equal(lstatSync(join(t, "dir", "b.txt")).uid, 1000, "owners are kept");
        rmSync(join(t, "a.txt"));
        rmSync(join(t, "dir", "sub"), { recursive: true });
        writeFileSync(join(t, "dir", "b.txt"), "b changed");
        writeFileSync(join(t, "new.txt"), "new");
      });
      sctrOk(["commit", "c2", "k2"]);

      sctrOk(["prepare", "k3", "c2"]);
      await withMount("k3", (t) => {
        assert.equal(existsSync(join(t, "a.txt")), false, "deleted one layer down stays deleted");
        assert.equal(existsSync(join(t, "dir", "sub")), false);
        // A directory deleted below and made again here must not show the old contents.
        mkdirSync(join(t, "dir", "sub"));
        writeFileSync(join(t, "dir", "sub", "d.txt"), "d");
        rmSync(join(t, "new.txt"));
      });
      const k3 = (await snapshots().mounts({ snapshotter: sn, key: "k3" }, ns("default"))).mounts;
      sctrOk(["commit", "c3", "k3"]);

      sctrOk(["view", "v3", "c3"]);
      await pin("v3");
      const view = sctrOk(["mounts", "/tmp/x", "v3"]);
      if (sn === "overlayfs") assert.match(view, /^mount -t overlay overlay \/tmp\/x -o (index=off,)?lowerdir=\S+\/fs:\S+\/fs:\S+\/fs\n$/);
      else assert.equal(view, `mount -t bind ${k3[0]!.source} /tmp/x -o ro,rbind\n`, "a native view binds its parent's tree, read-only");
      await withMount("v3", (t) => {
        assert.deepEqual(treeOf(t), [
          "dir/ 755 0:0",
          "dir/b.txt 644 1000:1001 b changed",
          "dir/sub/ 755 0:0",
          "dir/sub/d.txt 644 0:0 d",
          "hardlink 644 0:0 a",
          "symlink -> a.txt",
        ]);
        assert.throws(() => writeFileSync(join(t, "nope.txt"), "x"), /EROFS/, "a view is read-only");
      });

      // The layers below are untouched by what their children did.
      sctrOk(["view", "v1", "c1"]);
      await pin("v1");
      await withMount("v1", (t) => {
        assert.deepEqual(treeOf(t), [
          "a.txt 644 0:0 a",
          "dir/ 755 0:0",
          "dir/b.txt 644 1000:1001 b",
          "dir/sub/ 755 0:0",
          "dir/sub/c.txt 644 0:0 c",
          "hardlink 644 0:0 a",
          "symlink -> a.txt",
        ]);
      });
    });

    test("ls, tree and info show kinds and parents; labels are set and cleared", async () => {
      assert.deepEqual(tableRows(sctrOk(["ls"])), [
        ["c1", "Committed"],
        ["c2", "c1", "Committed"],
        ["c3", "c2", "Committed"],
        ["v1", "c1", "View"],
        ["v3", "c3", "View"],
      ]);
      assert.equal(sctrOk(["tree"]), " c1\n  \\_ c2\n    \\_ c3\n      \\_ v3\n  \\_ v1\n");
      const info = JSON.parse(sctrOk(["info", "c2"])) as { Kind: string; Parent: string; Labels: Record<string, string> };
      assert.equal(info.Kind, "Committed");
      assert.equal(info.Parent, "c1");
      assert.ok(info.Labels["containerd.io/gc.root"], "ctr pins what it commits");
      // ctr prints every label after the change; the pin is one of them.
      const printed = (out: string) => out.trim().split(",").filter((l) => !l.startsWith("containerd.io/gc.root=")).sort().join(",");
      assert.equal(printed(sctrOk(["label", "v1", "a=1", "b=2"])), "a=1,b=2");
      assert.equal(printed(sctrOk(["label", "v1", "a="])), "b=2");
      const { info: stat } = await snapshots().stat({ snapshotter: sn, key: "v1" }, ns("default"));
      assert.deepEqual(stat?.labels, { ...pinned, b: "2" });
      assert.equal(stat?.kind, Kind.VIEW);
      const filtered: string[] = [];
      for await (const batch of snapshots().list({ snapshotter: sn, filters: ["parent==c1"] }, ns("default"))) filtered.push(...batch.info.map((i) => i.name));
      assert.deepEqual(filtered, ["c2", "v1"]);
    });

    test("usage: an active snapshot follows its writes, a committed one keeps what commit measured, a view holds nothing", async () => {
      sctrOk(["prepare", "grow", "c3"]);
      try {
        const before = await snapshots().usage({ snapshotter: sn, key: "grow" }, ns("default"));
        await withMount("grow", (t) => writeFileSync(join(t, "big"), Buffer.alloc(64 * 1024, 1)));
        const grown = await snapshots().usage({ snapshotter: sn, key: "grow" }, ns("default"));
        assert.equal(grown.inodes, before.inodes + 1n);
        assert.ok(grown.size >= before.size + 64n * 1024n, `${before.size} -> ${grown.size}`);
        const committedBefore = await snapshots().usage({ snapshotter: sn, key: "c3" }, ns("default"));
        assert.ok(committedBefore.inodes > 0n && committedBefore.size > 0n);
        sctrOk(["commit", "grown", "grow"]);
        const committed = await snapshots().usage({ snapshotter: sn, key: "grown" }, ns("default"));
        assert.deepEqual(committed, grown, "commit records what the active snapshot held");
        assert.deepEqual(await snapshots().usage({ snapshotter: sn, key: "c3" }, ns("default")), committedBefore, "the parent's usage does not change");
        assert.deepEqual(await snapshots().usage({ snapshotter: sn, key: "v3" }, ns("default")), { size: 0n, inodes: 0n });
      } finally {
        sctr(["rm", "grow"]);
        sctr(["rm", "grown"]);
      }
    });
  });

  describe(`${sn}: bad requests fail with the code ctr expects and leave nothing behind`, () => {
    async function unchanged(call: () => Promise<unknown>, code: Status, message?: RegExp): Promise<void> {
      const infos = await listInfos();
      const onDisk = dirs();
      const err = await grpcError(call());
      assert.equal(err.code, code, `${Status[err.code]}: ${err.details}`);
      if (message) assert.match(err.details, message);
      assert.deepEqual(await listInfos(), infos, "the snapshot list is unchanged");
      assert.deepEqual(dirs(), onDisk, "no directory was left behind");
    }

    test("a missing parent: NOT_FOUND", async () => {
      await unchanged(() => snapshots().prepare({ snapshotter: sn, key: "orphan", parent: "no-such" }, ns("default")), Status.NOT_FOUND, /parent snapshot no-such/);
      await unchanged(() => snapshots().view({ snapshotter: sn, key: "orphan", parent: "no-such" }, ns("default")), Status.NOT_FOUND);
    });

    test("a parent that is not committed: INVALID_ARGUMENT", async () => {
      await unchanged(() => snapshots().prepare({ snapshotter: sn, key: "on-view", parent: "v3" }, ns("default")), Status.INVALID_ARGUMENT, /not committed/);
      sctrOk(["prepare", "active-parent", "c3"]);
      try {
        await unchanged(() => snapshots().view({ snapshotter: sn, key: "on-active", parent: "active-parent" }, ns("default")), Status.INVALID_ARGUMENT);
      } finally {
        sctrOk(["rm", "active-parent"]);
      }
    });

    test("an existing key, or an existing snapshot.ref target: ALREADY_EXISTS", async () => {
      await unchanged(() => snapshots().prepare({ snapshotter: sn, key: "c1" }, ns("default")), Status.ALREADY_EXISTS);
      await unchanged(() => snapshots().view({ snapshotter: sn, key: "v3", parent: "c1" }, ns("default")), Status.ALREADY_EXISTS);
      await unchanged(
        () => snapshots().prepare({ snapshotter: sn, key: "extract-1 c2", parent: "c1", labels: { "containerd.io/snapshot.ref": "c2" } }, ns("default")),
        Status.ALREADY_EXISTS,
        /target snapshot "c2"/,
      );
    });

    test("remove of a snapshot with children: FAILED_PRECONDITION", async () => {
      await unchanged(() => snapshots().remove({ snapshotter: sn, key: "c1" }, ns("default")), Status.FAILED_PRECONDITION, /cannot remove snapshot with child/);
      const r = sctr(["rm", "c2"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot remove snapshot with child: failed precondition/);
    });

    test("a missing key: NOT_FOUND for remove, stat, mounts, usage, commit, update", async () => {
      await unchanged(() => snapshots().remove({ snapshotter: sn, key: "missing" }, ns("default")), Status.NOT_FOUND);
      await unchanged(() => snapshots().stat({ snapshotter: sn, key: "missing" }, ns("default")), Status.NOT_FOUND);
      await unchanged(() => snapshots().mounts({ snapshotter: sn, key: "missing" }, ns("default")), Status.NOT_FOUND);
      await unchanged(() => snapshots().usage({ snapshotter: sn, key: "missing" }, ns("default")), Status.NOT_FOUND);
      await unchanged(() => snapshots().commit({ snapshotter: sn, name: "x", key: "missing" }, ns("default")), Status.NOT_FOUND);
      await unchanged(() => snapshots().update({ snapshotter: sn, info: { name: "missing" }, updateMask: ["labels"] }, ns("default")), Status.NOT_FOUND);
    });

    test("commit of a view or a committed snapshot, mounts of a committed one: FAILED_PRECONDITION", async () => {
      await unchanged(() => snapshots().commit({ snapshotter: sn, name: "from-view", key: "v3" }, ns("default")), Status.FAILED_PRECONDITION, /not active/);
      await unchanged(() => snapshots().commit({ snapshotter: sn, name: "again", key: "c1" }, ns("default")), Status.FAILED_PRECONDITION);
      await unchanged(() => snapshots().mounts({ snapshotter: sn, key: "c1" }, ns("default")), Status.FAILED_PRECONDITION, /not active or view/);
    });

    test("commit with a parent (rebase): a parentless overlay layer joins the chain; refused where it cannot", async () => {
      await snapshots().prepare({ snapshotter: sn, key: "rb-upper", labels: pinned }, ns("default"));
      try {
        if (sn === "native") {
          await unchanged(
            () => snapshots().commit({ snapshotter: sn, name: "rebased", key: "rb-upper", parent: "c3" }, ns("default")),
            Status.FAILED_PRECONDITION,
            /cannot set a parent at commit/,
          );
          return;
        }
        await unchanged(() => snapshots().commit({ snapshotter: sn, name: "rebased", key: "rb-upper", parent: "no-such" }, ns("default")), Status.NOT_FOUND, /parent snapshot no-such/);
        await unchanged(() => snapshots().commit({ snapshotter: sn, name: "rebased", key: "rb-upper", parent: "v3" }, ns("default")), Status.INVALID_ARGUMENT, /not committed/);
        sctrOk(["prepare", "rb-child", "c1"]);
        try {
          await unchanged(
            () => snapshots().commit({ snapshotter: sn, name: "rebased", key: "rb-child", parent: "c2" }, ns("default")),
            Status.FAILED_PRECONDITION,
            /has parent "c1" already/,
          );
        } finally {
          sctrOk(["rm", "rb-child"]);
        }
        await withMount("rb-upper", (t) => writeFileSync(join(t, "rebased.txt"), "r"));
        await snapshots().commit({ snapshotter: sn, name: "rebased", key: "rb-upper", parent: "c3", labels: pinned }, ns("default"));
        assert.equal((await snapshots().stat({ snapshotter: sn, key: "rebased" }, ns("default"))).info?.parent, "c3");
        sctrOk(["view", "rb-view", "rebased"]);
        try {
          await withMount("rb-view", (t) =>
            assert.deepEqual(treeOf(t), [
              "dir/ 755 0:0",
              "dir/b.txt 644 1000:1001 b changed",
              "dir/sub/ 755 0:0",
              "dir/sub/d.txt 644 0:0 d",
              "hardlink 644 0:0 a",
              "rebased.txt 644 0:0 r",
              "symlink -> a.txt",
            ]),
          );
        } finally {
          sctrOk(["rm", "rb-view"]);
        }
        sctrOk(["rm", "rebased"]);
      } finally {
        if (sctr(["info", "rb-upper"]).code === 0) sctrOk(["rm", "rb-upper"]);
      }
    });

    test("a parent whose directory is gone from disk: FAILED_PRECONDITION naming the directory, nothing made", async () => {
      const { mounts } = await snapshots().prepare({ snapshotter: sn, key: "to-break", labels: pinned }, ns("default"));
      const dir = sn === "overlayfs" ? dirname(ownDir(mounts)) : ownDir(mounts);
      await snapshots().commit({ snapshotter: sn, name: "broken", key: "to-break", labels: pinned }, ns("default"));
      rmSync(dir, { recursive: true });
      try {
        await unchanged(
          () => snapshots().prepare({ snapshotter: sn, key: "on-broken", parent: "broken" }, ns("default")),
          Status.FAILED_PRECONDITION,
          new RegExp(`parent snapshot directory ${dir} is missing`),
        );
      } finally {
        await snapshots().remove({ snapshotter: sn, key: "broken" }, ns("default"));
      }
    });

    test("a missing lease: NOT_FOUND, and the snapshot is not made", async () => {
      await unchanged(() => snapshots().prepare({ snapshotter: sn, key: "unleased", parent: "c3" }, ns("default", "no-such-lease")), Status.NOT_FOUND, /lease/);
    });
  });

  describe(`${sn}: namespaces, leases, removal, cleanup`, () => {
    test("the same key in two namespaces is two snapshots with their own files", async () => {
      for (const namespace of ["conf-a", "conf-b"]) sctrOk(["prepare", "shared-key"], namespace);
      await withMount("shared-key", (t) => writeFileSync(join(t, "only-in-a"), "a"), "conf-a");
      await withMount("shared-key", (t) => assert.deepEqual(readdirSync(t), [], "b's snapshot is its own"), "conf-b");
      const refused = d.ctr(["ns", "rm", "conf-a"]);
      assert.notEqual(refused.code, 0, "a namespace holding snapshots cannot be removed");
      assert.match(refused.stderr, /still has 1 snapshot/);
      for (const namespace of ["conf-a", "conf-b"]) {
        sctrOk(["rm", "shared-key"], namespace);
        ok(d.ctr(["ns", "rm", namespace]), `ns rm ${namespace}`);
      }
    });

    test("a lease holds what was made under it; deleting it (--sync) collects the snapshots and their directories", async () => {
      const lease = `conformance-${sn}`;
      await leases().create({ id: lease, labels: {} }, ns("default"));
      const { mounts } = await snapshots().prepare({ snapshotter: sn, key: "leased", parent: "c3" }, ns("default", lease));
      const dir = ownDir(mounts);
      await snapshots().commit({ snapshotter: sn, name: "leased done", key: "leased" }, ns("default", lease));
      await snapshots().view({ snapshotter: sn, key: "leased view", parent: "leased done" }, ns("default", lease));
      const { resources } = await leases().listResources({ id: lease }, ns("default"));
      assert.deepEqual(resources.map((r) => `${r.type}|${r.id}`).sort(), [`snapshots/${sn}|leased done`, `snapshots/${sn}|leased view`]);
      collectNow();
      assert.ok(existsSync(dir), "a collection keeps what a lease holds");
      ok(d.ctr(["leases", "rm", "--sync", lease]), "leases rm --sync");
      const names = (await listInfos()).map((i) => i.name);
      assert.ok(!names.includes("leased done") && !names.includes("leased view"), names.join(" "));
      assert.equal(existsSync(dir), false, "the directory went with the snapshot");
      assert.ok(names.includes("c3"), "the pinned parent stays");
    });

    test("remove frees the disk space the snapshot held (its directory is deleted right after the answer)", async () => {
      const { mounts } = await snapshots().prepare({ snapshotter: sn, key: "heavy", parent: "c3", labels: pinned }, ns("default"));
      await withMount("heavy", (t) => writeFileSync(join(t, "heavy"), Buffer.alloc(4 * 1024 * 1024, 7)));
      const dir = ownDir(mounts);
      // The snapshotter's whole root: the directory leaves snapshots/ at once, and its space goes a moment later.
      const root = dirname(snapshotsDir());
      const before = allocatedBytes(root);
      await snapshots().remove({ snapshotter: sn, key: "heavy" }, ns("default"));
      assert.equal(existsSync(dir), false);
      let freed = 0;
      await waitUntil("the removed snapshot's space is freed", () => (freed = before - allocatedBytes(root)) >= 4 * 1024 * 1024);
      assert.ok(freed >= 4 * 1024 * 1024, `freed ${freed} bytes`);
    });

    const files = 3000;

    /** A committed snapshot wide enough that building on it (a full copy for native) takes a while. */
    async function wideParent(name: string): Promise<void> {
      const { mounts } = await snapshots().prepare({ snapshotter: sn, key: `${name} active`, labels: pinned }, ns("default"));
      for (let i = 0; i < files; i++) writeFileSync(join(ownDir(mounts), `f${i}`), String(i));
      await snapshots().commit({ snapshotter: sn, name, key: `${name} active`, labels: pinned }, ns("default"));
    }

    const outcome = (call: Promise<unknown>) =>
      call.then(
        () => "ok" as const,
        (err: unknown) => err,
      );

    test("a snapshot being built is left alone by Cleanups running meanwhile", async () => {
      await wideParent("wide done");
      const building = snapshots().prepare({ snapshotter: sn, key: "on wide", parent: "wide done", labels: pinned }, ns("default"));
      let settled = false;
      void building.then(
        () => (settled = true),
        () => (settled = true),
      );
      let sweeps = 0;
      while (!settled) {
        await snapshots().cleanup({ snapshotter: sn }, ns("default"));
        sweeps++;
      }
      await building;
      assert.ok(sweeps > 0);
      await withMount("on wide", (t) => assert.equal(readdirSync(t).length, files, `complete after ${sweeps} Cleanups`));
      await snapshots().remove({ snapshotter: sn, key: "on wide" }, ns("default"));
      await snapshots().remove({ snapshotter: sn, key: "wide done" }, ns("default"));
    });

    test("a parent removed, or removed and made again, while a child is built on it: NOT_FOUND or a child of the new parent", async (t) => {
      const onDisk = dirs();
      await wideParent("racy parent");
      const building = outcome(snapshots().prepare({ snapshotter: sn, key: "racy child", parent: "racy parent", labels: pinned }, ns("default")));
      const removal = await outcome(snapshots().remove({ snapshotter: sn, key: "racy parent" }, ns("default")));
      let built: unknown;
      if (removal === "ok") {
        // Made again under the same key, holding one file only.
        const { mounts } = await snapshots().prepare({ snapshotter: sn, key: "racy next", labels: pinned }, ns("default"));
        writeFileSync(join(ownDir(mounts), "second-parent"), "2");
        await snapshots().commit({ snapshotter: sn, name: "racy parent", key: "racy next", labels: pinned }, ns("default"));
        built = await building;
        if (built !== "ok") {
          assert.ok(built instanceof ClientError && built.code === Status.NOT_FOUND, `the child fails as NOT_FOUND, not ${String(built)}`);
        } else {
          await withMount("racy child", (dir) => assert.deepEqual(readdirSync(dir), ["second-parent"], "built on the parent that exists now"));
        }
      } else {
        // The child's row came first: the parent has a child now.
        assert.ok(removal instanceof ClientError && removal.code === Status.FAILED_PRECONDITION, String(removal));
        built = await building;
        assert.equal(built, "ok");
        await withMount("racy child", (dir) => assert.equal(readdirSync(dir).length, files));
      }
      t.diagnostic(`removal: ${removal === "ok" ? "first" : "refused"}; child: ${built === "ok" ? "built" : "NOT_FOUND"}`);
      if (built === "ok") await snapshots().remove({ snapshotter: sn, key: "racy child" }, ns("default"));
      await snapshots().remove({ snapshotter: sn, key: "racy parent" }, ns("default"));
      assert.deepEqual(dirs(), onDisk, "nothing left on disk");
    });

    test("Cleanup and the collector's sweep remove directories no snapshot owns, and nothing else", async () => {
      // The last: a removed snapshot's directory whose deletion a crash cut short.
      const orphans = () => [join(snapshotsDir(), "999999"), join(snapshotsDir(), "new-crashed"), join(dirname(snapshotsDir()), "removed", "999998")];
      const plant = () => {
        for (const orphan of orphans()) {
          mkdirSync(join(orphan, "fs"), { recursive: true });
          writeFileSync(join(orphan, "fs", "junk"), "junk");
        }
      };
      const owned = dirs();
      plant();
      await snapshots().cleanup({ snapshotter: sn }, ns("default"));
      assert.deepEqual(dirs(), owned, "Cleanup removed the orphans only");
      assert.deepEqual(orphans().filter(existsSync), [], "Cleanup removed every orphan");
      plant();
      collectNow();
      assert.deepEqual(dirs(), owned, "a collection's sweep removed them too");
      assert.deepEqual(orphans().filter(existsSync), [], "the sweep removed every orphan");
      await withMount("v3", (t) => assert.ok(existsSync(join(t, "dir", "sub", "d.txt"))));
    });
  });

  describe(`${sn}: rootfs for a container, diffs, images`, () => {
    test("prepareRootfs makes a writable rootfs under a lease; reuse returns it again; a bad parent is NOT_FOUND", async () => {
      const lease = `rootfs-${sn}`;
      await leases().create({ id: lease, labels: {} }, ns("default"));
      try {
        const request = { namespace: "default", snapshotter: sn, key: "container-1", parent: "c3", lease };
        const mounts = await prepareRootfs(snapshots(), request);
        const { resources } = await leases().listResources({ id: lease }, ns("default"));
        assert.deepEqual(resources.map((r) => `${r.type}|${r.id}`), [`snapshots/${sn}|container-1`]);
        assert.deepEqual(await prepareRootfs(snapshots(), { ...request, reuse: true }), mounts);
        const taken = await grpcError(prepareRootfs(snapshots(), request));
        assert.equal(taken.code, Status.ALREADY_EXISTS);
        const missing = await grpcError(prepareRootfs(snapshots(), { ...request, key: "container-2", parent: "no-such-chain" }));
        assert.equal(missing.code, Status.NOT_FOUND);
        await withMount("container-1", (t) => {
          assert.equal(readFileSync(join(t, "dir", "sub", "d.txt"), "utf8"), "d");
          writeFileSync(join(t, "written-by-the-container"), "x");
        });
        const view = await prepareRootfs(snapshots(), { ...request, key: "container-ro", readOnly: true });
        assert.ok(view[0]!.options.includes("ro") || view[0]!.type === "overlay", JSON.stringify(view));
      } finally {
        ok(d.ctr(["leases", "rm", "--sync", lease]), "leases rm --sync");
      }
      assert.deepEqual((await listInfos()).map((i) => i.name).filter((n) => n.startsWith("container")), [], "the lease held them alone");
    });

    test("ctr snapshots diff: whiteouts with mode 0 and the diff's time; without --keep the blob is collected, with --keep it stays", async () => {
      sctrOk(["prepare", "diffed", "c1"]);
      await pin("diffed");
      await withMount("diffed", (t) => {
        rmSync(join(t, "a.txt"));
        writeFileSync(join(t, "added"), "added");
        // Neither changes dir's own metadata: the layer must still carry dir/ before them.
        writeFileSync(join(t, "dir", "b.txt"), "rewritten in place");
        rmSync(join(t, "dir", "sub", "c.txt"));
      });
      const diff = (extra: string[]): Buffer => {
        const args = ["--address", d.address, "--namespace", "default", "snapshots", "--snapshotter", sn, "diff", "--media-type", "application/vnd.oci.image.layer.v1.tar", ...extra, "diffed"];
        const r = spawnSync("ctr", args, { maxBuffer: 64 * 1024 * 1024 });
        assert.equal(r.status, 0, r.stderr.toString());
        return r.stdout;
      };
      const startedAt = Math.floor(Date.now() / 1000);
      const tar = diff([]);
      const endedAt = Math.ceil(Date.now() / 1000);
      const headers = await tarHeaders(tar);
      const byName = new Map(headers.map((h) => [h.name, h]));
      assert.deepEqual(
        headers.map((h) => h.name),
        [".wh.a.txt", "added", "dir/", "dir/b.txt", "dir/sub/", "dir/sub/.wh.c.txt"],
        "layer order, each entry's parent directories before it",
      );
      assert.deepEqual([byName.get("dir/")!.mode, byName.get("dir/b.txt")!.uid], [0o755, 1000], "parents and files keep their metadata");
      for (const name of [".wh.a.txt", "dir/sub/.wh.c.txt"]) {
        const h = byName.get(name)!;
        assert.equal(h.type, "file");
        assert.equal(h.mode, 0, `${name} has mode 0`);
        assert.equal(h.size, 0);
        assert.deepEqual([h.uid, h.gid], [0, 0]);
        const mtime = h.mtime!.getTime() / 1000;
        assert.ok(mtime >= startedAt && mtime <= endedAt, `${name}: mtime ${mtime} is the time of the diff (${startedAt}..${endedAt})`);
      }
      assert.equal(byName.get("added")!.mode, 0o644);
      const digest = sha256(tar);

      const contentLs = () => ok(d.ctr(["content", "ls", "-q"]), "content ls").stdout.split("\n");
      assert.ok(contentLs().includes(digest), "the diff is in content while nothing collected yet");
      collectNow();
      assert.ok(!contentLs().includes(digest), "without --keep the diff blob went with ctr's lease");

      const keptDigest = sha256(diff(["--keep"]));
      collectNow();
      const info = ok(d.ctr(["content", "ls"]), "content ls").stdout;
      const line = info.split("\n").find((l) => l.startsWith(keptDigest));
      assert.ok(line, `--keep keeps ${keptDigest}:\n${info}`);
      assert.match(line, /containerd\.io\/gc\.root=/);
      ok(d.ctr(["content", "rm", keptDigest]), "content rm");
      sctrOk(["rm", "diffed"]);
    });

    test("ctr images import --snapshotter unpacks layers with real deletions; images rm --sync frees the snapshots and their directories", async () => {
      const image = await buildImage([
        {
          entries: [
            { name: "etc/", type: "directory" },
            { name: "etc/old", data: "old" },
            { name: "etc/kept", data: "kept" },
            { name: "cache/", type: "directory" },
            { name: "cache/stale", data: "stale" },
            { name: "bin/", type: "directory" },
            { name: "bin/tool", data: "#!/bin/sh\n", mode: 0o755 },
            { name: "bin/alias", type: "link", linkname: "bin/tool" },
          ],
        },
        {
          entries: [
            { name: "etc/", type: "directory" },
            { name: "etc/.wh.old", data: "" },
            { name: "cache/", type: "directory" },
            { name: "cache/.wh..wh..opq", data: "" },
            { name: "cache/fresh", data: "fresh" },
          ],
        },
      ]);
      const dir = mkdtempSync(join(workdir, `import-${sn}-`));
      const archive = skopeoArchives(dir, image, `conformance-${sn}:latest`).dockerArchive;
      const namespace = `import-${sn}`;
      const name = `docker.io/library/conformance-${sn}:latest`;
      const before = dirs();
      ok(d.ctr(["images", "import", "--snapshotter", sn, archive], undefined, namespace), "images import");
      const chain = tableRows(sctrOk(["ls"], namespace));
      assert.equal(chain.length, 2, JSON.stringify(chain));
      const top = chain.find((row) => row.length === 3)!;
      assert.equal(top[2], "Committed");
      sctrOk(["view", "image-view", top[0]!], namespace);
      try {
        await withMount(
          "image-view",
          (t) => {
            assert.deepEqual(readdirSync(join(t, "etc")), ["kept"], "the whiteout deleted etc/old");
            assert.deepEqual(readdirSync(join(t, "cache")), ["fresh"], "the opaque dir hides the lower layer");
            assert.equal(lstatSync(join(t, "bin", "alias")).ino, lstatSync(join(t, "bin", "tool")).ino);
          },
          namespace,
        );
        if (sn === "native") {
          // No overlay markers on disk: the deletions are real in the top layer's own tree.
          const { mounts } = await snapshots().mounts({ snapshotter: sn, key: "image-view" }, ns(namespace));
          const tree = mounts[0]!.source;
          assert.deepEqual(readdirSync(join(tree, "etc")), ["kept"]);
          assert.deepEqual(readdirSync(join(tree, "cache")), ["fresh"]);
        }
      } finally {
        sctrOk(["rm", "image-view"], namespace);
      }
      // berthctl images mount: the image's rootfs through prepareRootfs, read-write on this snapshotter.
      const target = mountPoint();
      ok(d.berthctl(["images", "mount", "--rw", "--snapshotter", sn, name, target], undefined, namespace), "berthctl images mount");
      try {
        assert.deepEqual(readdirSync(target).sort(), ["bin", "cache", "etc"]);
        writeFileSync(join(target, "etc", "written"), "w");
        const { info } = await snapshots().stat({ snapshotter: sn, key: target }, ns(namespace));
        assert.equal(info?.kind, Kind.ACTIVE);
      } finally {
        ok(d.berthctl(["images", "unmount", "--rm", "--snapshotter", sn, target], undefined, namespace), "berthctl images unmount --rm");
        rmSync(target, { recursive: true, force: true });
      }
      ok(d.ctr(["images", "rm", "--sync", name], undefined, namespace), "images rm --sync");
      assert.deepEqual(tableRows(sctrOk(["ls"], namespace)), [], "the collection took the image's snapshots");
      assert.deepEqual(dirs(), before, "and their directories");
    });
  });

  describe(`${sn}: restart`, () => {
    test("the snapshots process killed (-9) while a snapshot is built: after its restart the snapshot is whole or absent, nothing else", async (t) => {
      const { mounts } = await snapshots().prepare({ snapshotter: sn, key: "crash parent active", labels: pinned }, ns("default"));
      const files = 3000;
      for (let i = 0; i < files; i++) writeFileSync(join(ownDir(mounts), `f${i}`), String(i));
      await snapshots().commit({ snapshotter: sn, name: "crash parent", key: "crash parent active", labels: pinned }, ns("default"));
      const onDisk = dirs();
      const pid = d.servicePid("snapshots");
      assert.ok(pid, "the snapshots process runs");
      let settled = false;
      const building = snapshots()
        .prepare({ snapshotter: sn, key: "crash child", parent: "crash parent", labels: pinned }, ns("default"))
        .then(
          () => "made",
          (err: unknown) => err,
        )
        .finally(() => (settled = true));
      // Kill it as soon as the build is under way (a native copy takes a while; an overlay build may be done by then).
      while (!settled && !dirs().some((name) => name.startsWith("new-"))) await new Promise((r) => setImmediate(r));
      process.kill(pid, "SIGKILL");
      await d.waitForRestart("snapshots", pid);
      const outcome = await building;
      const staging = dirs().filter((name) => name.startsWith("new-"));
      assert.deepEqual(staging, [], "start-up swept the half-made directory");
      const copies = run("pgrep", ["-af", `cp -a --reflink=auto -- ${snapshotsDir()}`]);
      assert.equal(copies.code, 1, `no copy outlived the process: ${copies.stdout}`);
      const child = (await listInfos()).find((i) => i.name === "crash child");
      t.diagnostic(child ? "the snapshot was made before the kill" : `killed while building: ${String(outcome)}`);
      if (child) {
        await withMount("crash child", (dir) => assert.equal(readdirSync(dir).length, files), "default");
        await snapshots().remove({ snapshotter: sn, key: "crash child" }, ns("default"));
      } else {
        assert.notEqual(outcome, "made", "a snapshot reported made must exist");
      }
      assert.deepEqual(dirs(), onDisk);
      await snapshots().remove({ snapshotter: sn, key: "crash parent" }, ns("default"));
    });

    test("after a restart the pinned snapshots are listed and mountable, and a crash's leftovers are gone", async () => {
      const infos = await listInfos();
      const tree = sctrOk(["tree"]);
      await d.stop();
      const leftover = join(snapshotsDir(), "new-left-by-a-crash");
      mkdirSync(leftover, { recursive: true });
      await d.start();
      assert.deepEqual(await listInfos(), infos);
      assert.equal(sctrOk(["tree"]), tree);
      assert.equal(existsSync(leftover), false, "start-up removes orphan directories");
      await withMount("v3", (t) => assert.equal(readFileSync(join(t, "dir", "b.txt"), "utf8"), "b changed"));
      sctrOk(["prepare", "after-restart", "c3"]);
      await withMount("after-restart", (t) => assert.deepEqual(readdirSync(t).sort(), ["dir", "hardlink", "symlink"]));
      sctrOk(["rm", "after-restart"]);
    });
  });
}

for (const sn of snapshotterNames) conformance(sn);
