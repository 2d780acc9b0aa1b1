// Layer sharing across namespaces (docs/snapshotters.md): an unpack in a second
// namespace of a chain id another namespace unpacked gets rows of its own over the same
// layer directories instead of extracting again; each namespace's view stays its own
// (labels, removal, collection), and a directory goes with the last row naming it. On a
// real berthd, with the real overlayfs snapshotter, overlay mounts and ctr.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { gzipSync } from "node:zlib";
import { Status } from "nice-grpc";
import { startDaemon, grpcError, ok, sleep, tableRows, type Daemon } from "./harness.ts";
import { blobOf, imageFromLayers, type ImageParts } from "./fixtures/archives.ts";
import { writeBusyboxArchive } from "./fixtures/busybox-daemon.ts";
import { encodeHeader, endOfArchive, padding } from "../core/tar/writer.ts";
import { sha256Digest } from "../core/digest.ts";
import { chainIds } from "../core/image/chain-id.ts";
import { writeBlob } from "../core/content-client.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { removeSnapshots, unpackImage, type UnpackResult } from "../core/image/unpack.ts";
import { withChainView } from "./fixtures/trees.ts";

const sn = "overlayfs";

function fileEntry(name: string, data: string): Buffer {
  const body = Buffer.from(data);
  return Buffer.concat([encodeHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, size: body.length }), body, padding(body.length)]);
}

/** A gzip image of `files` per layer (later layers overwrite earlier files). */
function imageOf(layers: Record<string, string>[]): ImageParts {
  const tars = layers.map((files) => Buffer.concat([...Object.entries(files).map(([name, data]) => fileEntry(name, data)), endOfArchive]));
  return imageFromLayers(
    tars.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar+gzip", gzipSync(t))),
    tars.map((t) => sha256Digest(t)),
  );
}

const image = imageOf([{ "etc/base": "base", "etc/over": "from layer 1" }, { "etc/over": "from layer 2", "app/bin": "app" }, { "app/conf": "conf" }]);
const layerCount = image.layers.length;

let work = "";
const daemons: Daemon[] = [];

before(() => {
  work = mkdtempSync(join(tmpdir(), "berth-layer-share-"));
});

after(async () => {
  for (const d of daemons) await d.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function daemon(env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const d = await startDaemon({ env });
  daemons.push(d);
  return d;
}

let leases = 0;

interface Unpacked extends UnpackResult {
  svc: ImageServices;
  lease: string;
  namespace: string;
}

/** Stores the image's blobs in `namespace` under a lease of its own and unpacks it there. */
async function unpackIn(d: Daemon, namespace: string, parts = image, namespaceLabels: Record<string, string> = {}, snapshotter = sn): Promise<Unpacked> {
  const svc = connectImageServices(d.address, namespace);
  if (Object.keys(namespaceLabels).length > 0) await svc.namespaces.create({ namespace: { name: namespace, labels: namespaceLabels } }, callOptions(svc));
  const lease = (await svc.leases.create({ id: `share-test-${namespace}-${++leases}`, labels: {} }, callOptions(svc))).lease!.id;
  for (const blob of parts.blobs) {
    await writeBlob(svc.content, blob.data, { ref: `test-${blob.digest}`, expected: blob.digest, total: blob.size }, callOptions(svc, lease));
  }
  const target = { mediaType: parts.manifest.mediaType, digest: parts.manifest.digest, size: parts.manifest.size };
  const result = await unpackImage(svc, target, { snapshotter, lease });
  return { ...result, svc, lease, namespace };
}

/** An image's diff ids, from its config. */
const diffIdsOf = (parts: ImageParts) => (JSON.parse(parts.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;

const withView = <T>(u: Unpacked, fn: (layers: string[], merged: string) => T): Promise<T> => withChainView(u, sn, work, fn);

/** What a container on the image sees. */
const filesOf = (merged: string) => ["etc/base", "etc/over", "app/bin", "app/conf"].map((f) => readFileSync(join(merged, f), "utf8"));
const expectedFiles = ["base", "from layer 2", "app", "conf"];

/** Snapshot rows ever made in the daemon (AUTOINCREMENT's counter): an extraction makes one. */
function rowsEverMade(d: Daemon): number {
  const db = new DatabaseSync(join(d.root, "metadata.db"), { readOnly: true });
  try {
    return Number((db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'snapshots'").get() as { seq: number } | undefined)?.seq ?? 0);
  } finally {
    db.close();
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

/** Runs `call` until the restarted service answers it (the gateway may first see the dead process's socket). */
async function whenServing<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if ((err as { code?: number }).code !== Status.UNAVAILABLE || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

const snapshotRows = (d: Daemon, ns: string) => tableRows(ok(d.ctr(["snapshots", "--snapshotter", sn, "ls"], undefined, ns), "snapshots ls").stdout);

describe("layer sharing across namespaces", () => {
  let d: Daemon;
  before(async () => {
    d = await daemon();
  });

  test("a second namespace's unpack extracts nothing: it stacks the first's layer dirs, and its containers see the image", async () => {
    const a = await unpackIn(d, "share-a");
    assert.equal(a.created.length, layerCount);
    const madeBefore = rowsEverMade(d);
    const b = await unpackIn(d, "share-b");
    assert.equal(b.chainId, a.chainId);
    assert.deepEqual(b.created, [], "no layer extracted or committed by b's unpack");
    assert.deepEqual(b.added, chainIds(b.diffIds), "every layer taken from a");
    assert.equal(rowsEverMade(d) - madeBefore, layerCount, "one row per layer in b, no extraction snapshot");
    const dirsA = await withView(a, (layers, merged) => (assert.deepEqual(filesOf(merged), expectedFiles), layers));
    const dirsB = await withView(b, (layers, merged) => (assert.deepEqual(filesOf(merged), expectedFiles), layers));
    assert.equal(dirsB.length, layerCount);
    assert.deepEqual(dirsB, dirsA, "the same layer directories");

    // ctr sees b's own committed chain, with its usage.
    const rowsB = snapshotRows(d, "share-b");
    assert.deepEqual(rowsB.map((r) => r.at(-1)), Array(layerCount).fill("Committed"));
    assert.deepEqual(rowsB.map((r) => r[0]).sort(), snapshotRows(d, "share-a").map((r) => r[0]).sort());
    const usage = (ns: string) => tableRows(ok(d.ctr(["snapshots", "--snapshotter", sn, "usage", a.chainId], undefined, ns), "usage").stdout);
    assert.deepEqual(usage("share-b"), usage("share-a"));

    // Labels are b's own.
    ok(d.ctr(["snapshots", "--snapshotter", sn, "label", a.chainId, "mine=b"], undefined, "share-b"), "label");
    const info = (ns: string) => JSON.parse(ok(d.ctr(["snapshots", "--snapshotter", sn, "info", a.chainId], undefined, ns), "info").stdout) as { Labels?: Record<string, string> };
    assert.equal(info("share-b").Labels?.mine, "b");
    assert.equal(info("share-a").Labels?.mine, undefined);
  });

  test("removing the chain from one namespace keeps the other's working; removing it from both frees the dirs", async () => {
    const a = await unpackIn(d, "rm-a", imageOf([{ "x/one": "1" }, { "x/two": "2" }]));
    const b = await unpackIn(d, "rm-b", imageOf([{ "x/one": "1" }, { "x/two": "2" }]));
    assert.deepEqual(b.created, []);
    const dirs = await withView(a, (layers) => layers);
    // A layer with a child cannot go, in b as anywhere, and nothing changes.
    const err = await grpcError(b.svc.snapshots.remove({ snapshotter: sn, key: chainIds(b.diffIds)[0]! }, callOptions(b.svc)));
    assert.equal(err.code, Status.FAILED_PRECONDITION);
    assert.equal(snapshotRows(d, "rm-b").length, 2);

    await removeSnapshots(b.svc, sn, chainIds(b.diffIds), b.lease);
    assert.deepEqual(snapshotRows(d, "rm-b"), []);
    for (const dir of dirs) assert.ok(existsSync(dir), `${dir} stays while rm-a names it`);
    await withView(a, (_layers, merged) => assert.equal(readFileSync(join(merged, "x/two"), "utf8"), "2"));

    await removeSnapshots(a.svc, sn, chainIds(a.diffIds), a.lease);
    await until("the last namespace's removal frees the dirs", () => dirs.every((dir) => !existsSync(dir)));
  });

  test("the first namespace going first leaves the second's dirs in place", async () => {
    const parts = imageOf([{ "y/one": "1" }, { "y/two": "2" }]);
    const a = await unpackIn(d, "first-a", parts);
    const b = await unpackIn(d, "first-b", parts);
    await removeSnapshots(a.svc, sn, chainIds(a.diffIds), a.lease);
    assert.deepEqual(snapshotRows(d, "first-a"), []);
    // A cleanup runs the sweep: it must keep the dirs b names though their first rows are gone.
    await b.svc.snapshots.cleanup({ snapshotter: sn }, callOptions(b.svc));
    await withView(b, (_layers, merged) => assert.equal(readFileSync(join(merged, "y/one"), "utf8"), "1"));
    // And a re-unpack in a takes them back from b.
    const again = await unpackIn(d, "first-a", parts);
    assert.deepEqual(again.created, []);
  });

  test("the native snapshotter (layers unpacked one on the other) shares whole trees the same way", async () => {
    const parts = imageOf([{ "n/1": "1" }, { "n/2": "2" }]);
    const a = await unpackIn(d, "native-a", parts, {}, "native");
    const b = await unpackIn(d, "native-b", parts, {}, "native");
    assert.equal(a.created.length, 2);
    assert.deepEqual([b.created, b.added], [[], chainIds(b.diffIds)]);
    const viewOf = async (u: Unpacked) => (await u.svc.snapshots.view({ snapshotter: "native", key: "look", parent: u.chainId, labels: {} }, callOptions(u.svc, u.lease))).mounts[0]!.source;
    const [sourceA, sourceB] = [await viewOf(a), await viewOf(b)];
    assert.equal(sourceB, sourceA, "the same tree");
    assert.equal(readFileSync(join(sourceB, "n/1"), "utf8"), "1");
    // A container's rootfs in b is a copy of that tree of b's own.
    const { mounts } = await b.svc.snapshots.prepare({ snapshotter: "native", key: "rootfs", parent: b.chainId, labels: {} }, callOptions(b.svc, b.lease));
    assert.notEqual(mounts[0]!.source, sourceA);
    assert.equal(readFileSync(join(mounts[0]!.source, "n/2"), "utf8"), "2");
  });

  test("five namespaces unpacking at once extract each layer once", async () => {
    const parts = imageOf([{ "z/1": "1" }, { "z/2": "2" }, { "z/3": "3" }, { "z/4": "4" }]);
    const madeBefore = rowsEverMade(d);
    const all = await Promise.all(["c1", "c2", "c3", "c4", "c5"].map((ns) => unpackIn(d, ns, parts)));
    assert.equal(all.flatMap((u) => u.created).length, parts.layers.length, "every layer committed by exactly one unpack");
    assert.equal(rowsEverMade(d) - madeBefore, 5 * parts.layers.length, "no extraction beyond one per layer");
    const stacks = await Promise.all(all.map((u) => withView(u, (layers, merged) => ({ layers, top: readFileSync(join(merged, "z/4"), "utf8") }))));
    for (const stack of stacks) assert.deepEqual(stack, stacks[0]);
  });

  test("a namespace labelled containerd.io/namespace.shareable=false extracts its own layers and lends none", async () => {
    const parts = imageOf([{ "iso/1": "1" }]);
    const shared = await unpackIn(d, "iso-shared", parts);
    const isolated = await unpackIn(d, "iso-own", parts, { "containerd.io/namespace.shareable": "false" });
    assert.equal(isolated.created.length, 1, "isolated extracts");
    const dirs = await Promise.all([shared, isolated].map((u) => withView(u, (layers) => layers)));
    assert.notDeepEqual(dirs[0], dirs[1]);
    await removeSnapshots(shared.svc, sn, [shared.chainId], shared.lease);
    const isoTaker = await unpackIn(d, "iso-taker", parts);
    assert.equal(isoTaker.created.length, 1, "nothing left to share but the isolated namespace's layer, which it keeps");
  });

  test("only unpacked layers are shared: a hand-committed snapshot of the same name, or a Prepare on another parent, gets a snapshot of its own", async () => {
    const a = connectImageServices(d.address, "hand-a");
    const b = connectImageServices(d.address, "hand-b");
    const name = `sha256:${"ab".repeat(32)}`;
    await a.snapshots.prepare({ snapshotter: sn, key: "hand", parent: "", labels: {} }, callOptions(a));
    await a.snapshots.commit({ snapshotter: sn, name, key: "hand", labels: {} }, callOptions(a));
    const { mounts } = await b.snapshots.prepare({ snapshotter: sn, key: "mine", parent: "", labels: { "containerd.io/snapshot.ref": name } }, callOptions(b));
    assert.equal(mounts.length, 1, "an extraction snapshot of b's own");
    await b.snapshots.remove({ snapshotter: sn, key: "mine" }, callOptions(b));

    const u = await unpackIn(d, "parent-a", imageOf([{ "p/1": "1" }, { "p/2": "2" }]));
    const other = connectImageServices(d.address, "parent-b");
    await other.snapshots.prepare({ snapshotter: sn, key: "base", parent: "", labels: {} }, callOptions(other));
    await other.snapshots.commit({ snapshotter: sn, name: "unrelated-base", key: "base", labels: {} }, callOptions(other));
    // The top chain id's layer lies on chain(0), not on "unrelated-base": no sharing.
    await other.snapshots.prepare({ snapshotter: sn, key: "on-other", parent: "unrelated-base", labels: { "containerd.io/snapshot.ref": u.chainId } }, callOptions(other));
    const err = await grpcError(other.snapshots.stat({ snapshotter: sn, key: u.chainId }, callOptions(other)));
    assert.equal(err.code, Status.NOT_FOUND);
  });

  test("an unpack that fails above shared layers takes them out of its namespace again, and leaves the lender's alone", async () => {
    const good = imageOf([{ "f/1": "1" }, { "f/2": "2" }]);
    const a = await unpackIn(d, "fail-a", good);
    const wrongTop = imageFromLayers(good.layers, [diffIdsOf(good)[0]!, sha256Digest("not the layer")]);
    await assert.rejects(unpackIn(d, "fail-b", wrongTop), /wrong diff id calculated on extraction/);
    assert.deepEqual(snapshotRows(d, "fail-b"), [], "the shared bottom layer is rolled back with the failed unpack");
    await withView(a, (_layers, merged) => assert.equal(readFileSync(join(merged, "f/1"), "utf8"), "1"));
  });

  test("ctr's own unpacks (images import: no snapshot.ref label) extract in each namespace as before", async () => {
    const archive = await writeBusyboxArchive(work);
    ok(d.ctr(["images", "import", archive], undefined, "ctr-a"), "import in ctr-a");
    ok(d.ctr(["images", "import", archive], undefined, "ctr-b"), "import in ctr-b");
    const [rowA] = snapshotRows(d, "ctr-a");
    const [rowB] = snapshotRows(d, "ctr-b");
    assert.equal(rowB![0], rowA![0]);
    const mountsOf = (ns: string) => ok(d.ctr(["snapshots", "--snapshotter", sn, "mounts", "/target", `look-${ns}`], undefined, ns), "mounts").stdout;
    ok(d.ctr(["snapshots", "--snapshotter", sn, "view", `look-ctr-a`, rowA![0]!], undefined, "ctr-a"), "view");
    ok(d.ctr(["snapshots", "--snapshotter", sn, "view", `look-ctr-b`, rowB![0]!], undefined, "ctr-b"), "view");
    assert.notEqual(mountsOf("ctr-a"), mountsOf("ctr-b"), "each namespace extracted its own");
    // ctr's views are on its own short leases: a collection (images rm --sync) takes them.
    for (const ns of ["ctr-a", "ctr-b"]) ok(d.ctr(["snapshots", "--snapshotter", sn, "rm", `look-${ns}`], undefined, ns), "rm view");
    for (const ns of ["ctr-a", "ctr-b"]) ok(d.ctr(["images", "rm", "--sync", "docker.io/library/busybox:latest"], undefined, ns), "images rm");
    assert.deepEqual(snapshotRows(d, "ctr-b"), []);
  });

  test("collecting one namespace keeps the other's layers", async () => {
    const parts = imageOf([{ "g/1": "1" }, { "g/2": "2" }]);
    const a = await unpackIn(d, "gc-a", parts);
    const b = await unpackIn(d, "gc-b", parts);
    const dirs = await withView(a, (layers) => layers);
    // Only b's lease held b's rows: dropping it with --sync collects them.
    ok(d.ctr(["leases", "rm", "--sync", b.lease], undefined, "gc-b"), "leases rm --sync");
    assert.deepEqual(snapshotRows(d, "gc-b"), []);
    assert.equal(snapshotRows(d, "gc-a").length, 2);
    for (const dir of dirs) assert.ok(existsSync(dir), `${dir} stays for gc-a`);
    await withView(a, (_layers, merged) => assert.equal(readFileSync(join(merged, "g/2"), "utf8"), "2"));
    ok(d.ctr(["leases", "rm", "--sync", a.lease], undefined, "gc-a"), "leases rm --sync");
    await until("the collection of the last namespace frees the dirs", () => dirs.every((dir) => !existsSync(dir)));
  });

  test("a Prepare waiting for another namespace's extraction of its chain id: killed with the snapshots process, it leaves nothing; retried, it shares", async () => {
    const a = connectImageServices(d.address, "wait-a");
    const b = connectImageServices(d.address, "wait-b");
    const target = `sha256:${"cd".repeat(32)}`;
    const ref = { "containerd.io/snapshot.ref": target };
    const { mounts } = await a.snapshots.prepare({ snapshotter: sn, key: "extract-a", parent: "", labels: ref }, callOptions(a));
    // Killed while waiting, the call fails; if the kill came before the call reached the
    // process, a fresh one (no claims) made b an extraction snapshot of its own instead.
    // The outcome is taken at once: a failure arriving while the test still waits for the
    // process to go would otherwise be an unhandled rejection, failing the test.
    const outcome = b.snapshots.prepare({ snapshotter: sn, key: "extract-b", parent: "", labels: ref }, callOptions(b)).then(
      () => "made",
      () => "failed",
    );
    const pid = d.servicePid("snapshots")!;
    process.kill(pid, "SIGKILL");
    await until("the snapshots process is gone", () => d.servicePid("snapshots") !== pid);
    await whenServing(() => a.snapshots.usage({ snapshotter: sn, key: "extract-a" }, callOptions(a)));
    if ((await outcome) === "made") await b.snapshots.remove({ snapshotter: sn, key: "extract-b" }, callOptions(b));
    const err = await grpcError(b.snapshots.stat({ snapshotter: sn, key: "extract-b" }, callOptions(b)));
    assert.equal(err.code, Status.NOT_FOUND, "no half-made snapshot in b");
    // The extraction survives in a; "applied" by hand, then committed.
    writeFileSync(join(mounts[0]!.source, "applied"), "by a");
    await a.snapshots.commit({ snapshotter: sn, name: target, key: "extract-a", labels: {} }, callOptions(a));
    const shared = await grpcError(b.snapshots.prepare({ snapshotter: sn, key: "extract-b2", parent: "", labels: ref }, callOptions(b)));
    assert.equal(shared.code, Status.ALREADY_EXISTS);
    const listed = (await b.snapshots.stat({ snapshotter: sn, key: target }, callOptions(b))).info!;
    assert.equal(listed.name, target);
    const view = await b.snapshots.view({ snapshotter: sn, key: "look", parent: target, labels: {} }, callOptions(b));
    assert.equal(readFileSync(join(view.mounts[0]!.source, "applied"), "utf8"), "by a");
    await b.snapshots.remove({ snapshotter: sn, key: "look" }, callOptions(b));
  });
});

describe("a crash between the last row's removal and its directory's", () => {
  test("the next start deletes the directory; a directory another namespace still names stays", async () => {
    const marker = join(work, "crashed-after-remove");
    // The marker disarms the crash point until the removal under test.
    writeFileSync(marker, "");
    const d = await daemon({ BERTH_SNAPSHOTS_CRASH_AT: `after-remove:${marker}` });
    const parts = imageOf([{ "k/1": "1" }, { "k/2": "2" }]);
    const a = await unpackIn(d, "crash-a", parts);
    const b = await unpackIn(d, "crash-b", parts);
    const [bottom, top] = chainIds(a.diffIds) as [string, string];
    const dirs = await withView(a, (layers) => layers);
    await removeSnapshots(b.svc, sn, [top], b.lease);
    assert.ok(existsSync(dirs[0]!), "crash-a still names the top layer's dir");
    rmSync(marker);
    const err = await grpcError(a.svc.snapshots.remove({ snapshotter: sn, key: top }, callOptions(a.svc, a.lease)));
    assert.notEqual(err.code, Status.OK);
    assert.ok(existsSync(marker), "the snapshots process crashed after the row's removal");
    assert.ok(existsSync(dirs[0]!), "the crash left the freed dir on disk");
    // Any call starts the process again, whose start-up sweep deletes what no row names.
    assert.deepEqual(snapshotRows(d, "crash-a").map((r) => r[0]), [bottom]);
    await until("the freed top layer's dir is gone", () => !existsSync(dirs[0]!));
    assert.ok(existsSync(dirs[1]!), "the bottom layer both namespaces name stays");
    for (const u of [a, b]) await withView({ ...u, chainId: bottom }, (_layers, merged) => assert.equal(readFileSync(join(merged, "k/1"), "utf8"), "1"));
  });
});
