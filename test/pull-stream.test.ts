// Layers extracted while they download (docs/pull-jobs.md): a real berthd pulls through
// berthctl from Debian's docker-registry behind FaultProxy, which holds a layer's blob
// half-sent. While it is held, the layer's extraction snapshot already has files (so
// the extraction runs on the growing ingest); once released, the unpacked image equals
// what the sequential unpack makes of the same blobs, layer dir by layer dir. A blob
// whose bytes turn out wrong, or whose download is cut and then refused, fails the pull
// clearly and leaves no snapshot, lease or image; a download cut and resumed with Range
// goes on extracting where it was.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { distDir, ok, sleep, startDaemon, type Daemon, type RunResult, runAsync } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { writeBlob } from "../core/content-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { unpackImage } from "../core/image/unpack.ts";
import { mountAll, unmountAll } from "../core/mounts.ts";
import { encodeHeader, endOfArchive, padding, type TarWriteHeader } from "../core/tar/writer.ts";
import { RegistryClient, parseRegistryReference, pushBlob, pushManifest } from "../core/registry/index.ts";
import { blobOf, imageFromLayers, type ImageParts } from "./fixtures/archives.ts";
import { startFaultyRegistry, type FaultProxy, type FaultyRegistry, type TestRegistry, type Fault } from "./fixtures/registry.ts";
import { layerDirs, treeOf } from "./fixtures/trees.ts";

let d: Daemon;
let registry: TestRegistry;
let proxy: FaultProxy;
let work: string;
let seedClient: RegistryClient;
let faulty: FaultyRegistry | undefined;

const snapshotter = "overlayfs";
const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);

function berthctl(args: string[], namespace: string): Promise<RunResult> {
  return runAsync(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", namespace, ...args]);
}

type Spec = Partial<TarWriteHeader> & { name: string; data?: Buffer };

function entry(spec: Spec): Buffer {
  const data = spec.data;
  const type = spec.type ?? (data !== undefined ? "file" : "directory");
  const header = encodeHeader({ mode: type === "directory" ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, ...spec, type, size: data?.length ?? 0 });
  return data ? Buffer.concat([header, data, padding(data.length)]) : header;
}

/**
 * Two gzip layers of many files, 6 MiB or so each (random bytes: gzip keeps their size),
 * the upper one leaving out parent dirs the lower carries with metadata of their own
 * (the commit copies those up), and whiting out a file.
 */
function streamImage(): ImageParts & { top: string; bottom: string } {
  const files = (dir: string) => Array.from({ length: 48 }, (_, i) => entry({ name: `${dir}/f${i}`, data: randomBytes(128 * 1024) }));
  const tars = [
    [entry({ name: "srv/", mode: 0o750, uid: 7, gid: 8, mtime: 1_500_000_000 }), entry({ name: "srv/data/", mode: 0o1777 }), ...files("srv/data"), entry({ name: "gone", data: Buffer.from("whited out above") })],
    [...files("srv/data/more"), entry({ name: ".wh.gone", data: Buffer.alloc(0) })],
  ].map((entries) => Buffer.concat([...entries, endOfArchive]));
  const diffIds = tars.map((t) => sha256Digest(t));
  const parts = imageFromLayers(
    tars.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar+gzip", gzipSync(t))),
    diffIds,
  );
  // Chain ids: the committed snapshots' names.
  return { ...parts, bottom: diffIds[0]!, top: sha256Digest(`${diffIds[0]} ${diffIds[1]}`) };
}

/** The image in the registry (not through the proxy, whose log stays the pulls'). */
async function seed(image: ImageParts, repository: string): Promise<string> {
  const target = parseRegistryReference(`${registry.host}/${repository}:1`);
  for (const blob of [image.config, ...image.layers]) {
    await pushBlob(seedClient, target, blob, (async function* () {
      yield blob.data;
    })());
  }
  await pushManifest(seedClient, target, "1", image.manifest, image.manifest.data);
  return `${proxy.host}/${repository}:1`;
}

interface SnapshotRow {
  name: string;
  kind: number;
}

async function snapshotsOf(namespace: string): Promise<SnapshotRow[]> {
  const svc = ns(namespace);
  const rows: SnapshotRow[] = [];
  for await (const page of svc.snapshots.list({ snapshotter, filters: [] }, callOptions(svc))) rows.push(...page.info.map((i) => ({ name: i.name, kind: i.kind })));
  return rows;
}

/** Files in the extraction snapshot of `layer`, once there is one (its key ends with the layer digest). */
async function extractedSoFar(namespace: string, layer: string): Promise<number> {
  const svc = ns(namespace);
  const key = (await snapshotsOf(namespace)).find((s) => s.name.startsWith("extract-") && s.name.endsWith(` ${layer}`))?.name;
  if (!key) return 0;
  const mounts = await svc.snapshots.mounts({ snapshotter, key }, callOptions(svc)).catch(() => undefined);
  const dir = mounts?.mounts[0]?.source;
  if (!dir) return 0;
  try {
    return readdirSync(join(dir, "srv/data")).length;
  } catch {
    return 0;
  }
}

async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) if (await condition()) return;
  assert.fail(`timed out waiting until ${what}`);
}

/** The layer's blob held after `pauseAfter` bytes, until the returned release is called. */
function holdLayer(layer: string, then: Extract<Fault, { pauseAfter: number }>["then"], afterwards?: Fault) {
  let release!: () => void;
  const resume = new Promise<void>((resolve) => (release = resolve));
  let held = false;
  proxy.rule = (req) => {
    if (!req.url?.endsWith(`/blobs/${layer}`) || req.method !== "GET") return undefined;
    if (held) return afterwards;
    held = true;
    return { pauseAfter: 3 * 1024 * 1024, resume, then };
  };
  return release;
}

const targetOf = (parts: ImageParts) => ({ mediaType: parts.manifest.mediaType, digest: parts.manifest.digest, size: parts.manifest.size });

/** The trees of each layer dir and the merged view of an unpacked chain. */
async function treesOf(svc: ImageServices, chainId: string): Promise<{ layers: Record<string, string>[]; merged: Record<string, string> }> {
  const key = `view-${chainId}-${randomBytes(4).toString("hex")}`;
  const lease = (await svc.leases.create({ id: key, labels: {} }, callOptions(svc))).lease!.id;
  try {
    const { mounts } = await svc.snapshots.view({ snapshotter, key, parent: chainId, labels: {} }, callOptions(svc, lease));
    const target = mkdtempSync(join(work, "view-"));
    try {
      await mountAll(mounts, target);
      try {
        return { layers: layerDirs(mounts).map(treeOf), merged: treeOf(target) };
      } finally {
        await unmountAll(target, { detachBusy: true });
      }
    } finally {
      await svc.snapshots.remove({ snapshotter, key }, callOptions(svc, lease));
    }
  } finally {
    await svc.leases.delete({ id: lease, sync: true }, callOptions(svc));
  }
}

/** The same blobs unpacked one layer after another on its parent (the reference result), in a namespace of its own. */
async function sequentialTrees(image: ImageParts, namespace: string) {
  const svc = ns(namespace);
  // Extracts its own layers instead of sharing the pull's (docs/snapshotters.md): they are compared.
  await svc.namespaces.create({ namespace: { name: namespace, labels: { "containerd.io/namespace.shareable": "false" } } }, callOptions(svc));
  const lease = (await svc.leases.create({ id: `sequential-${namespace}`, labels: {} }, callOptions(svc))).lease!.id;
  for (const blob of image.blobs) await writeBlob(svc.content, blob.data, { ref: `seq-${blob.digest}`, expected: blob.digest, total: blob.size }, callOptions(svc, lease));
  const before = process.env.BERTH_UNPACK_PARALLEL;
  process.env.BERTH_UNPACK_PARALLEL = "0";
  try {
    const { chainId } = await unpackImage(svc, targetOf(image), { snapshotter, lease });
    return await treesOf(svc, chainId);
  } finally {
    if (before === undefined) delete process.env.BERTH_UNPACK_PARALLEL;
    else process.env.BERTH_UNPACK_PARALLEL = before;
  }
}

async function leasesOf(namespace: string): Promise<string[]> {
  const svc = ns(namespace);
  return (await svc.leases.list({ filters: [] }, callOptions(svc))).leases.map((l) => l.id);
}

/** A failed pull left nothing behind: no snapshot, active or committed, no lease, no image. */
async function nothingLeft(namespace: string): Promise<void> {
  assert.deepEqual(await snapshotsOf(namespace), [], "no snapshot is left");
  assert.deepEqual(await leasesOf(namespace), [], "no lease is left");
  const svc = ns(namespace);
  assert.deepEqual((await svc.images.list({ filters: [] }, callOptions(svc))).images, [], "no image is named");
}

before(async () => {
  faulty = await startFaultyRegistry("berth-pull-stream-");
  ({ work, registry, proxy, seedClient } = faulty);
  // info: a streamed extraction that failed and was left to the unpack says so.
  d = await startDaemon({ env: { BERTH_LOG_LEVEL: "info" } });
});

after(async () => {
  closeChannels();
  await d?.destroy();
  await faulty?.close();
});

test("a layer extracts while its blob is still downloading; the unpacked image equals the sequential unpack's", async () => {
  const image = streamImage();
  const ref = await seed(image, "stream/ok");
  const held = image.layers[0]!.digest;
  const release = holdLayer(held, "rest");
  try {
    const pull = berthctl(["pull", "--plain-http", ref], "streamed");
    // Only the first 3 MiB of the layer's ~6 MiB have come: files are there already.
    await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar("streamed", held)) > 0);
    const partial = await extractedSoFar("streamed", held);
    assert.ok(partial < 48, `only part of the layer is extracted while its blob is held (${partial} of 48 files)`);
    release();
    ok(await pull, "pull");
  } finally {
    release();
    proxy.rule = undefined;
  }
  const rows = await snapshotsOf("streamed");
  assert.deepEqual(rows.filter((r) => r.name.startsWith("extract-")), [], "no extraction snapshot is left");
  assert.deepEqual(await leasesOf("streamed"), []);
  assert.deepEqual(rows.map((r) => r.name).sort(), [image.bottom, image.top].sort());
  assert.doesNotMatch(d.log, /extraction during the download failed/, "both layers were extracted as they downloaded");
  const expected = await sequentialTrees(image, "sequential-ok");
  const streamed = await treesOf(ns("streamed"), image.top);
  assert.deepEqual(streamed.layers, expected.layers, "every layer dir as the sequential unpack made it");
  assert.deepEqual(streamed.merged, expected.merged);
  assert.equal(streamed.merged["srv"], expected.merged["srv"]);
  assert.match(streamed.merged["srv"]!, /^dir 750 7:8 /, "the upper layer's implied srv/ keeps the lower layer's owner and mode");
  assert.equal(streamed.merged["gone"], undefined, "the whiteout hides the lower file");
});

/** The layer dirs a view of `chainId` in `namespace` stacks, bottom first. */
async function layerPathsOf(namespace: string, chainId: string): Promise<string[]> {
  const svc = ns(namespace);
  const key = `paths-${randomBytes(4).toString("hex")}`;
  const { mounts } = await svc.snapshots.view({ snapshotter, key, parent: chainId, labels: {} }, callOptions(svc));
  try {
    return layerDirs(mounts);
  } finally {
    await svc.snapshots.remove({ snapshotter, key }, callOptions(svc));
  }
}

test("layers extracted during their download are shared: the next namespace's pull of the image extracts nothing", async () => {
  const image = streamImage();
  const ref = await seed(image, "stream/shared");
  const held = image.layers[0]!.digest;
  const release = holdLayer(held, "rest");
  try {
    const pull = berthctl(["pull", "--plain-http", ref], "shared-a");
    await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar("shared-a", held)) > 0);
    release();
    ok(await pull, "pull into shared-a");
  } finally {
    release();
    proxy.rule = undefined;
  }
  ok(await berthctl(["pull", "--plain-http", ref], "shared-b"), "pull into shared-b");
  const a = await layerPathsOf("shared-a", image.top);
  assert.equal(a.length, 2);
  assert.deepEqual(await layerPathsOf("shared-b", image.top), a, "shared-b stacks shared-a's layer dirs");
});

test("a connection cut mid-blob while extracting: the download resumes with Range and the extraction carries on", async () => {
  const image = streamImage();
  const ref = await seed(image, "stream/cut");
  const held = image.layers[0]!.digest;
  const release = holdLayer(held, "cut");
  try {
    const pull = berthctl(["pull", "--plain-http", ref], "cut");
    await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar("cut", held)) > 0);
    release();
    ok(await pull, "pull");
  } finally {
    release();
    proxy.rule = undefined;
  }
  const gets = proxy.log.filter((r) => r.method === "GET" && r.url.includes("/stream/cut/") && r.url.endsWith(`/blobs/${held}`));
  assert.equal(gets.length, 2, "the cut GET and one for the rest");
  assert.match(gets[1]!.range ?? "", /^bytes=[1-9]\d*-$/);
  assert.deepEqual((await snapshotsOf("cut")).map((r) => r.name).sort(), [image.bottom, image.top].sort(), "no extraction snapshot is left");
  assert.doesNotMatch(d.log, /extraction during the download failed/, "the extraction waited out the cut and the retry");
  const expected = await sequentialTrees(image, "sequential-cut");
  assert.deepEqual((await treesOf(ns("cut"), image.top)).layers, expected.layers);
});

test("a wrong blob (right size, wrong bytes) while extracting: the pull fails naming the digest, and leaves no snapshot, lease or image", async () => {
  const image = streamImage();
  const ref = await seed(image, "stream/corrupt");
  const held = image.layers[0]!.digest;
  const release = holdLayer(held, "corrupt");
  try {
    const pull = berthctl(["pull", "--plain-http", ref], "corrupt");
    await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar("corrupt", held)) > 0);
    release();
    const failed = await pull;
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(failed.stderr, new RegExp(`berthctl: .*${held}.*(digest|mismatch)`, "i"));
    assert.match(failed.stderr, /nothing was committed/);
  } finally {
    release();
    proxy.rule = undefined;
  }
  await nothingLeft("corrupt");
});

test("a download cut while extracting, then refused (404): the pull fails naming the status, and leaves no snapshot, lease or image", async () => {
  const image = streamImage();
  const ref = await seed(image, "stream/gone");
  const held = image.layers[0]!.digest;
  const release = holdLayer(held, "cut", { respond: { status: 404, body: '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}', headers: { "content-type": "application/json" } } });
  try {
    const pull = berthctl(["pull", "--plain-http", ref], "gone");
    await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar("gone", held)) > 0);
    release();
    const failed = await pull;
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(failed.stderr, /berthctl: .*404/);
  } finally {
    release();
    proxy.rule = undefined;
  }
  await nothingLeft("gone");
});

for (const service of ["diff", "jobs"] as const) {
  test(`kill -9 of the ${service} process while a layer extracts from its download: the pull completes, equal to the sequential unpack, and no extraction snapshot stays`, async () => {
    const image = streamImage();
    const namespace = `killed-${service}`;
    const ref = await seed(image, `stream/killed-${service}`);
    const held = image.layers[0]!.digest;
    const release = holdLayer(held, "rest");
    try {
      const pull = berthctl(["pull", "--plain-http", ref], namespace);
      await until("the held layer's extraction snapshot has files", async () => (await extractedSoFar(namespace, held)) > 0);
      const pid = d.servicePid(service);
      assert.ok(pid, `the ${service} process runs`);
      process.kill(pid, "SIGKILL");
      release();
      ok(await pull, "pull across the kill");
    } finally {
      release();
      proxy.rule = undefined;
    }
    // What a killed process left was held by the pull's lease, and goes with the next
    // collection after it (a lease deleted with sync runs one now).
    const svc = ns(namespace);
    const lease = (await svc.leases.create({ id: `collect-${namespace}`, labels: {} }, callOptions(svc))).lease!.id;
    await svc.leases.delete({ id: lease, sync: true }, callOptions(svc));
    assert.deepEqual((await snapshotsOf(namespace)).map((r) => r.name).sort(), [image.bottom, image.top].sort());
    assert.deepEqual(await leasesOf(namespace), []);
    const expected = await sequentialTrees(image, `sequential-killed-${service}`);
    const pulled = await treesOf(ns(namespace), image.top);
    assert.deepEqual(pulled.layers, expected.layers);
    assert.deepEqual(pulled.merged, expected.merged);
  });
}
