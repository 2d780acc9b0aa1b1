// Parallel unpack on overlayfs (core/image/unpack.ts: every layer extracted without its
// parents, then committed on them) against the sequential unpack, on a real berthd with
// the native applier and on one with the JS applier: a layer that leaves out its parent
// directories must end up exactly as when extracted on top of its parent (the directory
// keeps the lower layer's owner, mode, times and xattrs instead of the applier's 0755
// root defaults). Layer dirs are compared file by file, and the merged view is mounted.
// Also Commit's copy_up_dirs on its own: the copy, and the bad requests it refuses.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Metadata, Status } from "nice-grpc";
import { startDaemon, grpcError, type Daemon } from "./harness.ts";
import { treeOf, withChainView } from "./fixtures/trees.ts";
import { blobOf, imageFromLayers, type ImageParts } from "./fixtures/archives.ts";
import { encodeHeader, endOfArchive, padding, type TarWriteHeader } from "../core/tar/writer.ts";
import { sha256Digest } from "../core/digest.ts";
import { writeBlob } from "../core/content-client.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { unpackImage } from "../core/image/unpack.ts";
import { isAlreadyExists } from "../core/grpc-status.ts";
import type { Mount } from "../core/gen/containerd/types/mount.ts";
import * as native from "../native/index.ts";

type Spec = Partial<TarWriteHeader> & { name: string | Buffer; data?: string };

function entry(spec: Spec): Buffer {
  const data = spec.data === undefined ? undefined : Buffer.from(spec.data);
  const type = spec.type ?? (data !== undefined ? "file" : "directory");
  const header = encodeHeader({ mode: type === "directory" ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, ...spec, type, size: data?.length ?? 0 });
  return data ? Buffer.concat([header, data, padding(data.length)]) : header;
}

const x = (name: string, value: string) => new Map([[name, Buffer.from(value)]]);
const cafe = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9": not UTF-8

/** Layers whose later ones leave out parent dirs the earlier ones carry with their own metadata. */
const layerEntries: Buffer[][] = [
  [
    entry({ name: "tmp/", mode: 0o1777, uid: 1000, gid: 1000, mtime: 1_500_000_000, xattrs: x("user.x", "from layer 1") }),
    entry({ name: "a/", mode: 0o750, uid: 5, gid: 6, mtime: 1_400_000_000 }),
    entry({ name: "a/b/", mode: 0o711, uid: 7, gid: 8, mtime: 1_400_000_100, xattrs: x("user.ab", "ab") }),
    entry({ name: "opq/", mode: 0o700, uid: 9, gid: 9, mtime: 1_400_000_200 }),
    entry({ name: "opq/old", data: "hidden by the opaque dir above" }),
    entry({ name: "wh/", mode: 0o770, uid: 3, gid: 3, mtime: 1_400_000_300 }),
    entry({ name: "wh/gone", data: "whited out above" }),
    entry({ name: "wh/kept", data: "kept" }),
    entry({ name: Buffer.concat([cafe, Buffer.from("/")]), mode: 0o701, uid: 11, gid: 12, mtime: 1_400_000_400 }),
    entry({ name: "file-below", data: "a file where a later layer wants a dir" }),
  ],
  [
    entry({ name: "tmp/x", data: "x" }),
    entry({ name: "a/b/c/f", data: "f" }),
    entry({ name: "opq/.wh..wh..opq", data: "" }),
    entry({ name: "opq/new", data: "new" }),
    entry({ name: "wh/.wh.gone", data: "" }),
    entry({ name: Buffer.concat([cafe, Buffer.from("/inner")]), data: "byte name" }),
    entry({ name: "file-below/y", data: "y" }),
    entry({ name: "fresh/deep/z", data: "in no lower layer" }),
  ],
  [
    entry({ name: "tmp/sub/z", data: "z" }),
    entry({ name: "a/b/c/g", data: "g" }),
  ],
];

const tarOf = (entries: Buffer[]) => Buffer.concat([...entries, endOfArchive]);
const tars = layerEntries.map(tarOf);
const image = imageFromLayers(
  tars.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar+gzip", gzipSync(t))),
  tars.map((t) => sha256Digest(t)),
);

const daemons: Daemon[] = [];
let work = "";

before(() => {
  work = mkdtempSync(join(tmpdir(), "berth-unpack-parallel-"));
});

after(async () => {
  for (const d of daemons) await d.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The image's blobs in a namespace, under a new lease (the caller removes it). */
async function stored(d: Daemon, namespace: string, parts: ImageParts, leaseId = `unpack-test-${namespace}`): Promise<{ svc: ImageServices; lease: string }> {
  const svc = connectImageServices(d.address, namespace);
  // Each namespace extracts its own layers (they are compared), instead of sharing those
  // another namespace unpacked (docs/snapshotters.md).
  await svc.namespaces.create({ namespace: { name: namespace, labels: { "containerd.io/namespace.shareable": "false" } } }, callOptions(svc)).catch((err: unknown) => {
    if (!isAlreadyExists(err)) throw err;
  });
  const lease = (await svc.leases.create({ id: leaseId, labels: {} }, callOptions(svc))).lease!.id;
  for (const blob of parts.blobs) {
    await writeBlob(svc.content, blob.data, { ref: `test-${blob.digest}`, expected: blob.digest, total: blob.size }, callOptions(svc, lease));
  }
  return { svc, lease };
}

const targetOf = (parts: ImageParts) => ({ mediaType: parts.manifest.mediaType, digest: parts.manifest.digest, size: parts.manifest.size });

/** Unpacks the image in a namespace of its own, parallel or not, under a lease the caller removes. */
async function unpackIn(d: Daemon, namespace: string, parallel: boolean, parts = image): Promise<{ svc: ImageServices; lease: string; chainId: string }> {
  const { svc, lease } = await stored(d, namespace, parts);
  const before = process.env.BERTH_UNPACK_PARALLEL;
  process.env.BERTH_UNPACK_PARALLEL = parallel ? "1" : "0";
  try {
    const result = await unpackImage(svc, targetOf(parts), { snapshotter: "overlayfs", lease });
    assert.equal(result.created.length, parts.layers.length);
    return { svc, lease, chainId: result.chainId };
  } finally {
    if (before === undefined) delete process.env.BERTH_UNPACK_PARALLEL;
    else process.env.BERTH_UNPACK_PARALLEL = before;
  }
}

async function snapshotNames(svc: ImageServices): Promise<string[]> {
  const names: string[] = [];
  for await (const page of svc.snapshots.list({ snapshotter: "overlayfs", filters: [] }, callOptions(svc))) names.push(...page.info.map((i) => i.name));
  return names.sort();
}

const withView = <T>(u: { svc: ImageServices; lease: string; chainId: string }, fn: (layers: string[], merged: string) => T): Promise<T> => withChainView(u, "overlayfs", work, fn);

for (const applier of ["native", "js"] as const) {
  describe(`parallel unpack with the ${applier} applier`, () => {
    let d: Daemon;
    before(async () => {
      d = await startDaemon(applier === "js" ? { env: { BERTH_LAYER_APPLY: "js" } } : {});
      daemons.push(d);
    });

    test("a layer that leaves out its parent dirs ends up as when extracted on its parent: owner, mode, times, xattrs; whiteouts and opaque dirs as before", async () => {
      const sequential = await unpackIn(d, "sequential", false);
      const parallel = await unpackIn(d, "parallel", true);
      try {
        const seen = await withView(sequential, (layers, merged) => ({ layers: layers.map(treeOf), merged: treeOf(merged) }));
        await withView(parallel, (layers, merged) => {
          assert.deepEqual(layers.map(treeOf), seen.layers, "every layer dir as the sequential unpack made it");
          assert.deepEqual(treeOf(merged), seen.merged);
          // What the container sees, spelled out (the bug showed /tmp as 0755 root:root without user.x).
          const tmp = lstatSync(join(merged, "tmp"));
          assert.deepEqual([tmp.mode & 0o7777, tmp.uid, tmp.gid, tmp.mtimeMs], [0o1777, 1000, 1000, 1_500_000_000_000]);
          assert.equal(native.lgetxattr(join(merged, "tmp"), "user.x")?.toString(), "from layer 1");
          assert.equal(native.lgetxattr(join(merged, "tmp/sub"), "user.x"), null, "a dir no lower has keeps the defaults");
          assert.equal(lstatSync(join(merged, "tmp/sub")).mode & 0o7777, 0o755);
          const ab = lstatSync(join(merged, "a/b"));
          assert.deepEqual([ab.mode & 0o7777, ab.uid, ab.gid], [0o711, 7, 8]);
          assert.deepEqual(readdirSync(join(merged, "a/b/c")).sort(), ["f", "g"]);
          assert.deepEqual(readdirSync(join(merged, "opq")), ["new"]);
          assert.deepEqual([lstatSync(join(merged, "opq")).mode & 0o7777, lstatSync(join(merged, "opq")).uid], [0o700, 9]);
          assert.deepEqual(readdirSync(join(merged, "wh")), ["kept"]);
          const byteDir = lstatSync(Buffer.concat([Buffer.from(`${merged}/`), cafe]));
          assert.deepEqual([byteDir.mode & 0o7777, byteDir.uid], [0o701, 11]);
          assert.equal(lstatSync(join(merged, "file-below")).mode & 0o7777, 0o755, "a file below hides nothing to copy");
          // In the layer dirs themselves: the opaque marker is the layer's, never copied from below.
          const middle = layers[1]!;
          assert.equal(native.lgetxattr(join(middle, "opq"), "trusted.overlay.opaque")?.toString(), "y");
          assert.equal(native.lgetxattr(join(middle, "tmp"), "trusted.overlay.opaque"), null);
        });
      } finally {
        for (const u of [sequential, parallel]) await u.svc.leases.delete({ id: u.lease, sync: true }, callOptions(u.svc));
      }
    });

    test("more made dirs than one Commit may name: that layer is extracted again on its parent, with the same result", { skip: applier === "js" && "the fallback does not depend on the applier" }, async () => {
      // 60 chains of 12 dirs of 250 bytes: about 1.2 MB of names, over the 1 MiB a reply lists.
      const component = (chain: number, depth: number) => `${String(chain).padStart(2, "0")}-${depth}-`.padEnd(250, "d");
      const chains = Array.from({ length: 60 }, (_, c) => Array.from({ length: 12 }, (_, k) => component(c, k)).join("/"));
      const deep = [
        tarOf([entry({ name: `${component(0, 0)}/`, mode: 0o700, uid: 42, gid: 42, mtime: 1_300_000_000 })]),
        tarOf(chains.map((dirs) => entry({ name: `${dirs}/f`, data: "f" }))),
      ];
      const parts = imageFromLayers(
        deep.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar", t)),
        deep.map((t) => sha256Digest(t)),
      );
      const sequential = await unpackIn(d, "overflow-sequential", false, parts);
      const parallel = await unpackIn(d, "overflow-parallel", true, parts);
      try {
        const seen = await withView(sequential, (layers) => layers.map(treeOf));
        await withView(parallel, (layers, merged) => {
          assert.deepEqual(layers.map(treeOf), seen);
          const top = lstatSync(join(merged, component(0, 0)));
          assert.deepEqual([top.mode & 0o7777, top.uid, top.mtimeMs], [0o700, 42, 1_300_000_000_000]);
        });
      } finally {
        for (const u of [sequential, parallel]) await u.svc.leases.delete({ id: u.lease, sync: true }, callOptions(u.svc));
      }
    });

    test("a layer whose diff id does not match leaves no snapshot; two unpacks at once commit each layer once", { skip: applier === "js" && "independent of the applier" }, async () => {
      const diffIds = tars.map((t) => sha256Digest(t));
      const wrong = imageFromLayers(image.layers, [diffIds[0]!, sha256Digest(Buffer.from("not the layer")), diffIds[2]!]);
      const bad = await stored(d, "bad-diff-id", wrong);
      try {
        await assert.rejects(unpackImage(bad.svc, targetOf(wrong), { snapshotter: "overlayfs", lease: bad.lease }), /wrong diff id calculated on extraction/);
        assert.deepEqual(await snapshotNames(bad.svc), []);
      } finally {
        await bad.svc.leases.delete({ id: bad.lease, sync: true }, callOptions(bad.svc));
      }

      const first = await stored(d, "twice", image, "first");
      const second = await stored(d, "twice", image, "second");
      try {
        const [a, b] = await Promise.all([first, second].map((u) => unpackImage(u.svc, targetOf(image), { snapshotter: "overlayfs", lease: u.lease })));
        assert.equal(a!.chainId, b!.chainId);
        const committed = [...a!.created, ...b!.created].sort();
        assert.deepEqual(committed, [...new Set(committed)], "no chain id committed twice");
        assert.equal(committed.length, 3);
        const names = await snapshotNames(first.svc);
        assert.deepEqual(names, committed, "no extraction snapshot left behind");
      } finally {
        for (const u of [first, second]) await u.svc.leases.delete({ id: u.lease, sync: true }, callOptions(u.svc));
      }
    });
  });
}

describe("Commit with copy_up_dirs", () => {
  let d: Daemon;
  let svc: ImageServices;
  const sn = "overlayfs";
  const ns = { metadata: Metadata({ "containerd-namespace": "copy-up" }) };
  const pinned = { "containerd.io/gc.root": "pinned by the test" };
  const fsOf = (mounts: Mount[]) => mounts[0]!.source;

  before(async () => {
    d = await startDaemon();
    daemons.push(d);
    svc = connectImageServices(d.address, "copy-up");
    const { mounts } = await svc.snapshots.prepare({ snapshotter: sn, key: "base-active", parent: "", labels: pinned }, ns);
    const base = fsOf(mounts);
    mkdirSync(join(base, "d/e"), { recursive: true });
    chownSync(join(base, "d"), 1000, 1001);
    chmodSync(join(base, "d"), 0o1777);
    native.lsetxattr(join(base, "d"), "user.x", Buffer.from("from the parent"), 0);
    native.lsetxattr(join(base, "d"), "trusted.overlay.origin", Buffer.from("overlayfs' own"), 0);
    utimesSync(join(base, "d"), 1_234_567_890, 1_234_567_890);
    mkdirSync(join(base, "target"));
    chmodSync(join(base, "target"), 0o1777);
    await svc.snapshots.commit({ snapshotter: sn, name: "base", key: "base-active", labels: pinned }, ns);
  });

  /** A parentless active snapshot with `d/` (0755 root, opaque) and whatever `extra` makes. */
  async function upper(key: string, extra?: (fs: string) => void): Promise<string> {
    const { mounts } = await svc.snapshots.prepare({ snapshotter: sn, key, parent: "", labels: pinned }, ns);
    const fs = fsOf(mounts);
    mkdirSync(join(fs, "d"), { mode: 0o755 });
    native.lsetxattr(join(fs, "d"), "trusted.overlay.opaque", Buffer.from("y"), 0);
    extra?.(fs);
    return fs;
  }

  test("each listed dir takes the parent's owner, mode, times and xattrs, keeps its own opaque marker, gets none of overlayfs' xattrs", async () => {
    const fs = await upper("copy-active");
    await svc.snapshots.commit({ snapshotter: sn, name: "copied", key: "copy-active", labels: pinned, parent: "base", copyUpDirs: [Buffer.from("d")] }, ns);
    const st = lstatSync(join(fs, "d"));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs], [0o1777, 1000, 1001, 1_234_567_890_000]);
    assert.equal(native.lgetxattr(join(fs, "d"), "user.x")?.toString(), "from the parent");
    assert.equal(native.lgetxattr(join(fs, "d"), "trusted.overlay.opaque")?.toString(), "y");
    assert.equal(native.lgetxattr(join(fs, "d"), "trusted.overlay.origin"), null);
    assert.equal((await svc.snapshots.stat({ snapshotter: sn, key: "copied" }, ns)).info?.parent, "base");
  });

  test("a listed dir reached through a symlink in the layer is left alone (the link is not followed)", async () => {
    const outside = mkdtempSync(join(work, "outside-"));
    mkdirSync(join(outside, "e"), { mode: 0o700 });
    await upper("link-active", (fs) => symlinkSync(outside, join(fs, "target")));
    await svc.snapshots.commit({ snapshotter: sn, name: "linked", key: "link-active", labels: pinned, parent: "base", copyUpDirs: [Buffer.from("target/e")] }, ns);
    assert.equal(lstatSync(join(outside, "e")).mode & 0o7777, 0o700);
    assert.equal(lstatSync(join(outside, "e")).uid, 0);
  });

  test("bad copy_up_dirs: INVALID_ARGUMENT naming the problem, and the snapshot stays active and unchanged", async () => {
    const fs = await upper("bad-active");
    const cases: [string, Buffer[], RegExp][] = [
      ["", [Buffer.from("d")], /copy-up dirs are given only with a parent/],
      ["base", [Buffer.from("../d")], /copy-up dir "\.\.\/d" is not a clean relative path/],
      ["base", [Buffer.from("/d")], /copy-up dir "\/d" is not a clean relative path/],
      ["base", [Buffer.from("d//e")], /not a clean relative path/],
      ["base", [Buffer.from("d/./e")], /not a clean relative path/],
      ["base", [Buffer.from("")], /not a clean relative path/],
      ["base", [Buffer.from("d\0e")], /not a clean relative path/],
    ];
    for (const [parent, copyUpDirs, message] of cases) {
      const e = await grpcError(svc.snapshots.commit({ snapshotter: sn, name: "bad", key: "bad-active", labels: pinned, parent, copyUpDirs }, ns));
      assert.equal(e.code, Status.INVALID_ARGUMENT, e.details);
      assert.match(e.details, message);
    }
    const info = (await svc.snapshots.stat({ snapshotter: sn, key: "bad-active" }, ns)).info!;
    assert.equal(info.parent, "");
    assert.deepEqual([lstatSync(join(fs, "d")).mode & 0o7777, lstatSync(join(fs, "d")).uid], [0o755, 0]);
    await assert.rejects(svc.snapshots.stat({ snapshotter: sn, key: "bad" }, ns));
  });
});
