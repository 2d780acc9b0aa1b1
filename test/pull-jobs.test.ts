// Pulls and pushes as the daemon's durable jobs (berth.services.transfer.v1.Transfer),
// driven by the real berthctl against a real berthd and Debian's docker-registry on
// loopback, behind FaultProxy (which counts the registry's blob GETs and injects
// faults): push then pull and unpack into a fresh namespace; two concurrent pulls
// sharing a big layer fetch it once; a pull whose callers all went away is cancelled;
// a kill -9 of the jobs process mid-pull loses
// nothing and fetches no committed blob again; a 4xx is not retried, a 5xx is.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createChannel, createClient } from "nice-grpc";
import { connectivityState } from "@grpc/grpc-js";
import { TransferDefinition } from "../core/gen/berth/services/transfer/v1/transfer.ts";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { distDir, ok, sleep, startDaemon, tableRows, type Daemon, type RunResult, runAsync } from "./harness.ts";
import { closeChannels, inNamespace } from "../core/grpc-client.ts";
import { blobInfo } from "../core/content-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { RegistryClient, parseRegistryReference, pushBlob, pushManifest } from "../core/registry/index.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { blobOf, imageFromLayers, tarOf, twoPlatformIndex, type Blob, type ImageParts } from "./fixtures/archives.ts";
import { startFaultyRegistry, storeImage, TestRegistry, writeHtpasswd, type FaultProxy, type FaultyRegistry } from "./fixtures/registry.ts";

let d: Daemon;
let registry: TestRegistry;
let proxy: FaultProxy;
let work: string;
let busybox: BuiltImage;
let seedClient: RegistryClient;
let faulty: FaultyRegistry | undefined;
/** Downloads at once per registry host, for this file's daemon. */
const perHost = 2;
const idleExitMs = 400;

const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);

/** berthctl, without blocking the event loop (the proxy and the test's own polling run meanwhile). */
function berthctl(args: string[], namespace = "default"): Promise<RunResult> {
  return runAsync(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", namespace, ...args]);
}

/** berthctl killed once `until` holds (a caller that goes away mid-pull). */
async function berthctlKilledWhen(args: string[], namespace: string, until: () => boolean): Promise<void> {
  const child = spawn(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", namespace, ...args], { stdio: "ignore" });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    for (let i = 0; i < 600 && !until(); i++) await sleep(25);
    assert.ok(until(), "the pull got under way");
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Reads a call's stream to its end. */
async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream);
}

/** GETs of a blob through the proxy (any repository). */
const blobGets = (digest: string) => proxy.log.filter((r) => r.method === "GET" && r.url.endsWith(`/blobs/${digest}`));

/** A layer tar of one file of random bytes (uncompressed, so unpacking it is plain copying). */
async function randomLayer(name: string, bytes: number): Promise<{ blob: Blob; diffId: string }> {
  const tar = await tarOf([{ name, data: randomBytes(bytes) }]);
  return { blob: blobOf("application/vnd.oci.image.layer.v1.tar", tar), diffId: sha256Digest(tar) };
}

function imageOf(layers: { blob: Blob; diffId: string }[]): ImageParts {
  return imageFromLayers(layers.map((l) => l.blob), layers.map((l) => l.diffId));
}

/**
 * Puts an image straight into the registry: not through the proxy (its log stays the
 * pulls'), and not through berthd (whose content store, shared by namespaces, would
 * then hold the blobs already).
 */
async function seed(image: ImageParts, repository: string): Promise<string> {
  return seedAll([image], repository);
}

/** Several images under one tag: the index names them (pushed by digest first). */
async function seedAll(images: ImageParts[], repository: string, index?: Blob): Promise<string> {
  const target = parseRegistryReference(`${registry.host}/${repository}:1`);
  for (const image of images) {
    for (const blob of [image.config, ...image.layers]) {
      await pushBlob(seedClient, target, blob, (async function* () {
        yield blob.data;
      })());
    }
    await pushManifest(seedClient, target, index ? image.manifest.digest : "1", image.manifest, image.manifest.data);
  }
  if (index) await pushManifest(seedClient, target, "1", index, index.data);
  return `${proxy.host}/${repository}:1`;
}

async function leasesOf(namespace: string): Promise<string[]> {
  const { leases } = await ns(namespace).leases.list({ filters: [] }, callOptions(ns(namespace)));
  return leases.map((l) => l.id);
}

/** The chain id of each layer (bottom first) as its snapshot's name. */
function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const id of diffIds) out.push(out.length === 0 ? id : sha256Digest(`${out.at(-1)} ${id}`));
  return out;
}

function committedSnapshots(namespace: string): string[] {
  return tableRows(ok(d.ctr(["snapshots", "ls"], undefined, namespace), "snapshots ls").stdout)
    // KEY PARENT KIND, PARENT empty for a bottom layer.
    .filter((row) => row.at(-1) === "Committed")
    .map((row) => row[0]!);
}

before(async () => {
  faulty = await startFaultyRegistry("berth-pull-jobs-");
  ({ work, registry, proxy, seedClient } = faulty);
  busybox = await buildBusyboxImage();
  // A short idle time: the jobs process must stay for its queued work, not for its callers.
  d = await startDaemon({ env: { BERTH_PULL_PER_HOST: String(perHost), BERTH_IDLE_EXIT_MS: String(idleExitMs) } });
  await storeImage(ns("default"), busybox.blobs, "docker.io/library/busybox:latest", busybox.manifest);
});

after(async () => {
  closeChannels();
  await d?.destroy();
  await faulty?.close();
});

test("berthctl push of a local image, then pull into a fresh namespace: stored, unpacked, no lease left", async () => {
  const remote = `${proxy.host}/test/busybox:1`;
  const pushed = ok(await berthctl(["push", "--plain-http", remote, "docker.io/library/busybox:latest"]), "push");
  assert.match(pushed.stdout, new RegExp(`${busybox.layers[0]!.digest.slice(7, 19)}: Pushed`));
  const [pushRow] = tableRows(pushed.stdout.slice(pushed.stdout.indexOf("REF")));
  assert.deepEqual(pushRow!.slice(0, 4), [remote, busybox.manifest.mediaType, busybox.manifest.digest, "complete"]);

  const pulled = ok(await berthctl(["pull", "--plain-http", remote], "fresh"), "pull");
  // Not a terminal: one line per status change, ending with the check table.
  assert.match(pulled.stdout, new RegExp(`${busybox.layers[0]!.digest.slice(7, 19)}: Waiting\n`));
  assert.match(pulled.stdout, new RegExp(`${busybox.layers[0]!.digest.slice(7, 19)}: Pull complete\n`));
  const [row] = tableRows(pulled.stdout.slice(pulled.stdout.indexOf("REF")));
  assert.deepEqual(row!.slice(0, 5), [remote, busybox.manifest.mediaType, busybox.manifest.digest, "complete", "(2/2)"]);
  assert.equal(row!.at(-1), "true", "unpacked");

  const image = ok(d.ctr(["images", "ls", "-q"], undefined, "fresh"), "images ls").stdout.trim();
  assert.equal(image, remote);
  const diffIds = (JSON.parse(busybox.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  assert.deepEqual(committedSnapshots("fresh").sort(), chainIds(diffIds).sort());
  assert.deepEqual(await leasesOf("fresh"), [], "the pull's lease is gone");
  // Pulled again: every blob exists, nothing is fetched.
  const before = proxy.log.length;
  const again = ok(await berthctl(["images", "pull", "--plain-http", remote], "fresh"), "second pull, as ctr spells it");
  assert.match(again.stdout, /: Already exists\n/);
  assert.deepEqual(proxy.log.slice(before).filter((r) => r.url.includes("/blobs/")), []);
});

test("two concurrent pulls of images sharing a big layer fetch that layer once", async () => {
  // About 50 MB (48 MiB), held at the registry while both pulls look for it.
  const big = await randomLayer("big.bin", 48 * 1024 * 1024);
  const a = imageOf([big, await randomLayer("a.txt", 1000)]);
  const b = imageOf([big, await randomLayer("b.txt", 1000)]);
  const [refA, refB] = [await seed(a, "shared/a"), await seed(b, "shared/b")];
  // The shared layer's download is held at the registry until both pulls fetched their
  // own layers: the second one must then find the first one's download under way.
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${big.blob.digest}`) ? { hold: held } : undefined);
  try {
    const pulls = Promise.all([berthctl(["pull", "--plain-http", refA], "shared"), berthctl(["pull", "--plain-http", refB], "shared")]);
    const ownLayersFetched = () => blobGets(a.layers[1]!.digest).length > 0 && blobGets(b.layers[1]!.digest).length > 0;
    for (let i = 0; i < 600 && !ownLayersFetched(); i++) await sleep(25);
    assert.ok(ownLayersFetched(), "both pulls are under way");
    release();
    const [pullA, pullB] = await pulls;
    ok(pullA, "pull a");
    ok(pullB, "pull b");
    // Both callers saw the one download's progress.
    for (const pull of [pullA, pullB]) assert.match(pull.stdout, new RegExp(`${big.blob.digest.slice(7, 19)}: Downloading\n`));
  } finally {
    proxy.rule = undefined;
    release();
  }
  assert.equal(blobGets(big.blob.digest).length, 1, "the shared layer was downloaded once");
  for (const image of [a, b]) {
    assert.equal(blobGets(image.layers[1]!.digest).length, 1);
    const diffIds = (JSON.parse(image.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    for (const chainId of chainIds(diffIds)) assert.ok(committedSnapshots("shared").includes(chainId), `snapshot ${chainId}`);
  }
  assert.deepEqual(await leasesOf("shared"), []);
});

test("kill -9 of the jobs process mid-pull: the pull completes, committed blobs are not fetched again", async () => {
  const big = await randomLayer("big.bin", 32 * 1024 * 1024);
  const small = await randomLayer("small.txt", 2000);
  const image = imageOf([small, big]);
  const ref = await seed(image, "crash/c");
  const stallAt = 8 * 1024 * 1024;
  let stalled = false;
  // The big layer's first GET stops after 8 MiB and hangs: the worker is mid-download.
  proxy.rule = (req) =>
    req.method === "GET" && req.url?.endsWith(`/blobs/${big.blob.digest}`) && !stalled ? { stallAfter: stallAt, onStall: () => (stalled = true) } : undefined;
  const pulling = berthctl(["pull", "--plain-http", ref], "crash");
  const svc = ns("crash");
  for (let i = 0; i < 600 && !(stalled && (await blobInfo(svc.content, small.blob.digest, callOptions(svc)))); i++) await sleep(50);
  assert.ok(stalled, "the big layer's download started");
  assert.ok(await blobInfo(svc.content, small.blob.digest, callOptions(svc)), "the small layer was committed before the kill");
  // Wait for the ingest to hold what the proxy sent, so the restart has something to resume.
  const ingestOffset = async () => {
    const { statuses } = await svc.content.listStatuses({ filters: [] }, callOptions(svc));
    return Number(statuses.find((s) => s.ref.includes(big.blob.digest))?.offset ?? 0n);
  };
  for (let i = 0; i < 400 && (await ingestOffset()) < stallAt; i++) await sleep(50);
  const jobs = d.servicePid("jobs");
  assert.ok(jobs, "the jobs process runs");
  process.kill(jobs, "SIGKILL");
  proxy.rule = undefined;

  const result = ok(await pulling, "pull across the restart");
  assert.match(result.stdout, /complete \(3\/3\)/);
  assert.notEqual(d.servicePid("jobs"), jobs);
  assert.equal(blobGets(small.blob.digest).length, 1, "the committed layer was not fetched again");
  assert.equal(blobGets(image.config.digest).length, 1, "the committed config was not fetched again");
  const bigGets = blobGets(big.blob.digest);
  assert.equal(bigGets.length, 2, "the big layer: the stalled GET and one resumed GET");
  const resumedFrom = Number(/^bytes=(\d+)-$/.exec(bigGets[1]!.range ?? "")?.[1]);
  assert.ok(resumedFrom >= stallAt, `resumed from the ingest's offset (Range ${bigGets[1]!.range})`);
  const diffIds = (JSON.parse(image.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  assert.deepEqual(committedSnapshots("crash").sort(), chainIds(diffIds).sort());
  assert.deepEqual(await leasesOf("crash"), []);
});

test("--platform picks the manifest of an index: only its blobs are fetched, the index is the image", async () => {
  const amd64Layer = await randomLayer("amd64.txt", 700);
  const arm64Layer = await randomLayer("arm64.txt", 800);
  const amd64 = imageFromLayers([amd64Layer.blob], [amd64Layer.diffId], { architecture: "amd64" });
  const arm64 = imageFromLayers([arm64Layer.blob], [arm64Layer.diffId], { architecture: "arm64", variant: "v8" });
  const index = twoPlatformIndex(amd64.manifest, arm64.manifest);
  const ref = await seedAll([amd64, arm64], "multi/arch", index);
  const r = ok(await berthctl(["pull", "--plain-http", "--platform", "linux/arm64", ref], "platform"), "pull");
  const [row] = tableRows(r.stdout.slice(r.stdout.indexOf("REF")));
  assert.deepEqual(row!.slice(0, 5), [ref, index.mediaType, index.digest, "complete", "(2/2)"]);
  assert.equal(blobGets(arm64Layer.blob.digest).length, 1);
  assert.equal(blobGets(amd64Layer.blob.digest).length, 0, "the other platform's layer is not fetched");
  assert.deepEqual(committedSnapshots("platform"), [arm64Layer.diffId]);
  const svc = ns("platform");
  assert.ok(await blobInfo(svc.content, index.digest, callOptions(svc)), "the index is stored");
  assert.equal(await blobInfo(svc.content, amd64.manifest.digest, callOptions(svc)), undefined);
});

test("a pull whose only caller goes away is cancelled: its download stops, nothing is named, no lease is left; the same pull later starts afresh", async () => {
  const layer = await randomLayer("alone.txt", 900);
  const image = imageOf([layer]);
  const ref = await seed(image, "alone/x");
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${layer.blob.digest}`) ? { hold: held } : undefined);
  const svc = ns("alone");
  try {
    await berthctlKilledWhen(["pull", "--plain-http", ref], "alone", () => blobGets(layer.blob.digest).length > 0);
    // The registry still holds the layer back: only the cancellation can end the pull.
    const gone = async () => (await leasesOf("alone")).length === 0;
    for (let i = 0; i < 400 && !(await gone()); i++) await sleep(50);
    assert.ok(await gone(), "the cancelled pull deleted its lease");
    assert.equal(ok(d.ctr(["images", "ls", "-q"], undefined, "alone")).stdout, "", "no image was named");
    assert.deepEqual(committedSnapshots("alone"), []);
    // With nothing left to do, the jobs process goes.
    for (let i = 0; i < 400 && d.servicePid("jobs") !== undefined; i++) await sleep(50);
    assert.equal(d.servicePid("jobs"), undefined, "the idle jobs process exited");
  } finally {
    proxy.rule = undefined;
    release();
  }
  assert.equal(await blobInfo(svc.content, layer.blob.digest, callOptions(svc)), undefined, "the held layer was never committed");
  assert.equal(blobGets(layer.blob.digest).length, 1, "the cancelled download was not tried again");
  ok(await berthctl(["pull", "--plain-http", ref], "alone"), "the same pull again");
  assert.equal(ok(d.ctr(["images", "ls", "-q"], undefined, "alone")).stdout.trim(), ref);
});

test("a pull that reached the jobs process in its retirement's grace is still cancelled when its caller goes away", async () => {
  const layer = await randomLayer("grace.txt", 900);
  const ref = await seed(imageOf([layer]), "grace/x");
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${layer.blob.digest}`) ? { hold: held } : undefined);
  const socket = join(d.state, "services", "jobs.sock");
  const request = { ref, platform: "", registry: { plainHttp: true, insecure: false }, unpack: true, snapshotter: "" };
  // The window is the retirement's short grace: a round whose shutdown had already sent
  // its GOAWAY before the process was held is tried again.
  let caught = false;
  try {
    for (let round = 0; round < 5 && !caught; round++) {
      // A bad reference: jobs is started (or kept) and answers at once.
      assert.equal((await berthctl(["pull", "--plain-http", "bad ref"], "grace")).code, 1);
      const channel = createChannel(`unix://${socket}`);
      try {
        const transfer = createClient(TransferDefinition, channel);
        await assert.rejects(drain(transfer.pull({ ...request, ref: "bad ref" }, inNamespace("grace"))), /invalid/);
        const pid = d.servicePid("jobs")!;
        while (existsSync(socket)) await new Promise((resolve) => setImmediate(resolve));
        // Retiring: held (as a loaded machine would leave it without a core) while the
        // pull goes out on the connection it still has.
        process.kill(pid, "SIGSTOP");
        const caller = new AbortController();
        let pulling: Promise<unknown> | undefined;
        let refused = false;
        try {
          await sleep(50);
          if (channel.getConnectivityState(false) !== connectivityState.READY) continue;
          pulling = drain(transfer.pull(request, { ...inNamespace("grace"), signal: caller.signal })).catch(() => (refused = true));
          await sleep(500);
        } finally {
          process.kill(pid, "SIGCONT");
        }
        for (let i = 0; i < 400 && blobGets(layer.blob.digest).length === 0 && !refused; i++) await sleep(25);
        // Refused: the shutdown had begun before the call came in.
        if (refused) continue;
        assert.ok(blobGets(layer.blob.digest).length > 0, "the pull got under way");
        caught = true;
        caller.abort();
        await pulling;
        const gone = async () => (await leasesOf("grace")).length === 0;
        for (let i = 0; i < 400 && !(await gone()); i++) await sleep(50);
        assert.ok(await gone(), `the cancelled pull deleted its lease:\n${d.log}`);
        for (let i = 0; i < 400 && d.servicePid("jobs") === pid; i++) await sleep(50);
        assert.notEqual(d.servicePid("jobs"), pid, "the retired process exited once its call ended");
      } finally {
        channel.close();
      }
    }
  } finally {
    proxy.rule = undefined;
    release();
  }
  assert.ok(caught, "a round held the jobs process in its grace");
});

test("cancel: a pull goes on while another caller waits for it; a layer shared with a live pull keeps downloading", async () => {
  const big = await randomLayer("shared.bin", 8 * 1024 * 1024);
  const ownA = await randomLayer("own-a.txt", 1200);
  const ownB = await randomLayer("own-b.txt", 1300);
  const a = imageOf([big, ownA]);
  const b = imageOf([big, ownB]);
  const [refA, refB] = [await seed(a, "cancel/a"), await seed(b, "cancel/b")];
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  // The shared layer and a's own layer are held by the registry until a's callers are gone.
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${big.blob.digest}`) || req.url?.endsWith(`/blobs/${ownA.blob.digest}`) ? { hold: held } : undefined);
  const svc = ns("cancel");
  try {
    const kept = berthctl(["pull", "--plain-http", refB], "cancel");
    // b's downloads first: with BERTH_PULL_PER_HOST=2, a's two held layers taking both
    // slots first would leave b's own layer waiting forever.
    const bStarted = () => blobGets(big.blob.digest).length > 0 && blobGets(ownB.blob.digest).length > 0;
    for (let i = 0; i < 600 && !bStarted(); i++) await sleep(25);
    assert.ok(bStarted(), "b's downloads got under way");
    const underWay = () => blobGets(big.blob.digest).length > 0 && blobGets(ownA.blob.digest).length > 0 && blobGets(ownB.blob.digest).length > 0;
    // a's only caller and one of b's two callers go away.
    await Promise.all([
      berthctlKilledWhen(["pull", "--plain-http", refA], "cancel", underWay),
      berthctlKilledWhen(["pull", "--plain-http", refB], "cancel", underWay),
    ]);
    // a ends (its lease goes) while the shared layer is still held: it was cancelled.
    const leaseCount = async () => (await leasesOf("cancel")).length;
    for (let i = 0; i < 400 && (await leaseCount()) !== 1; i++) await sleep(50);
    assert.equal(await leaseCount(), 1, "only b's pull is left");
    release();
    const pulled = ok(await kept, "b's remaining caller");
    assert.match(pulled.stdout, /complete \(3\/3\)/);
  } finally {
    proxy.rule = undefined;
    release();
  }
  assert.equal(blobGets(big.blob.digest).length, 1, "the shared layer was downloaded once, not stopped by a's cancellation");
  assert.equal(ok(d.ctr(["images", "ls", "-q"], undefined, "cancel")).stdout.trim(), refB, "b is named, a is not");
  assert.equal(await blobInfo(svc.content, ownA.blob.digest, callOptions(svc)), undefined, "a's own layer was not committed");
  const diffIds = (JSON.parse(b.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  assert.deepEqual(committedSnapshots("cancel").sort(), chainIds(diffIds).sort());
  assert.deepEqual(await leasesOf("cancel"), []);
});

test("layer downloads from one registry host run at most BERTH_PULL_PER_HOST at a time; the config takes no slot", async () => {
  const image = imageOf(await Promise.all([1, 2, 3, 4, 5].map((i) => randomLayer(`layer${i}.txt`, 1000 + i))));
  const ref = await seed(image, "limit/five");
  const layers = new Set(image.layers.map((l) => l.digest));
  const waiting: (() => void)[] = [];
  let held = 0;
  let mostHeld = 0;
  let releaseConfig = () => {};
  const configHeld = new Promise<void>((resolve) => (releaseConfig = resolve));
  // Every layer GET waits at the proxy until the test lets it through, one at a time; the
  // config's waits until the layers have taken every slot (were it given a slot, only one could).
  proxy.rule = (req) => {
    const digest = req.method === "GET" ? req.url?.split("/blobs/")[1] : undefined;
    if (digest === image.config.digest) return { hold: configHeld };
    if (!digest || !layers.has(digest)) return undefined;
    mostHeld = Math.max(mostHeld, ++held);
    return { hold: new Promise<void>((resolve) => waiting.push(() => (held--, resolve()))) };
  };
  try {
    const pulling = berthctl(["pull", "--plain-http", ref], "limit");
    for (let left = layers.size; left > 0; left--) {
      const expected = Math.min(perHost, left);
      for (let i = 0; i < 600 && held < expected; i++) await sleep(25);
      assert.equal(held, expected, `${expected} downloads wait at the registry`);
      if (left === layers.size) {
        assert.equal(blobGets(image.config.digest).length, 1, "the config is being fetched while the layers hold every slot");
        releaseConfig();
      }
      waiting.shift()!();
    }
    ok(await pulling, "pull");
    assert.equal(mostHeld, perHost, "never more layer downloads at once than the limit");
  } finally {
    proxy.rule = undefined;
    releaseConfig();
    for (const release of waiting.splice(0)) release();
  }
});

test("--user: the credentials reach the registry from the jobs (push and pull); without them, unauthorized", async () => {
  const htpasswd = join(work, "htpasswd");
  writeHtpasswd(htpasswd, "alice", "s3cret");
  const guarded = await TestRegistry.start(join(work, "guarded"), { auth: { htpasswd } });
  try {
    const remote = `${guarded.host}/private/busybox:1`;
    const refused = await berthctl(["push", "--plain-http", remote, "docker.io/library/busybox:latest"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^berthctl: unauthorized: .*there are no credentials for 127\.0\.0\.1:\d+/);
    const wrong = await berthctl(["push", "--plain-http", "--user", "alice:wrong", remote, "docker.io/library/busybox:latest"]);
    assert.match(wrong.stderr, /^berthctl: unauthorized: .*\(the registry refused the credentials it asked for\)/);
    ok(await berthctl(["push", "--plain-http", "--user", "alice:s3cret", remote, "docker.io/library/busybox:latest"]), "push with credentials");
    assert.match((await berthctl(["pull", "--plain-http", remote], "guarded")).stderr, /^berthctl: unauthorized: /);
    const pulled = ok(await berthctl(["pull", "--plain-http", "--user", "alice:s3cret", remote], "guarded"), "pull with credentials");
    assert.match(pulled.stdout, /complete \(2\/2\)/);
  } finally {
    await guarded.stop();
  }
});

test("a 4xx is not retried: the pull fails at once, naming the status, and leaves no image or lease", async () => {
  const image = imageOf([await randomLayer("denied.txt", 500)]);
  const ref = await seed(image, "fault/denied");
  const layer = image.layers[0]!.digest;
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${layer}`) ? { respond: { status: 403, headers: { "content-type": "application/json" }, body: '{"errors":[{"code":"DENIED","message":"access denied"}]}' } } : undefined);
  try {
    const r = await berthctl(["pull", "--plain-http", ref], "denied");
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^berthctl: unauthorized: GET http:\/\/127\.0\.0\.1:\d+\/v2\/fault\/denied\/blobs\/sha256:[0-9a-f]+: 403 Forbidden: DENIED: access denied/);
    assert.equal(blobGets(layer).length, 1, "a 403 is asked once");
    assert.equal(ok(d.ctr(["images", "ls", "-q"], undefined, "denied")).stdout, "");
    assert.deepEqual(await leasesOf("denied"), []);
  } finally {
    proxy.rule = undefined;
  }
});

test("a 5xx is retried with backoff until the registry answers", async () => {
  const image = imageOf([await randomLayer("flaky.txt", 500)]);
  const ref = await seed(image, "fault/flaky");
  const layer = image.layers[0]!.digest;
  let failures = 0;
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${layer}`) && failures++ < 2 ? { respond: { status: 503, body: "busy" } } : undefined);
  try {
    ok(await berthctl(["pull", "--plain-http", ref], "flaky"), "pull");
    assert.equal(blobGets(layer).length, 3, "two 503s, then the blob");
  } finally {
    proxy.rule = undefined;
  }
});

test("a connection reset mid-blob: the download carries on from where it stopped (Range)", async () => {
  const layer = await randomLayer("reset.bin", 3 * 1024 * 1024);
  const image = imageOf([layer]);
  const ref = await seed(image, "fault/reset");
  let cut = false;
  proxy.rule = (req) => (req.url?.endsWith(`/blobs/${layer.blob.digest}`) && !cut ? ((cut = true), { cutAfter: 1024 * 1024 }) : undefined);
  try {
    ok(await berthctl(["pull", "--plain-http", ref], "reset"), "pull");
    const gets = blobGets(layer.blob.digest);
    assert.equal(gets.length, 2, "the cut GET and one more");
    const from = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? "")?.[1]);
    assert.ok(from > 0 && from <= 1024 * 1024, `the second GET asks for the rest (Range ${gets[1]!.range})`);
  } finally {
    proxy.rule = undefined;
  }
});

test("bad requests fail with a message naming the problem", async () => {
  const missing = await berthctl(["pull", "--plain-http", `${proxy.host}/no/such:tag`], "bad");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^berthctl: .*\/v2\/no\/such\/manifests\/tag: 404 Not Found.*: not found\n$/);
  const user = await berthctl(["pull", "--user", "nopassword", "--plain-http", `${proxy.host}/test/busybox:1`], "bad");
  assert.equal(user.code, 1);
  assert.equal(user.stderr, 'berthctl: --user "nopassword": expected user:password\n');
  const snapshotter = await berthctl(["pull", "--snapshotter", "zfs", "--plain-http", `${proxy.host}/test/busybox:1`], "bad");
  assert.match(snapshotter.stderr, /^berthctl: pull: unknown snapshotter "zfs" \(known: overlayfs, native\): invalid argument\n$/);
  const platform = await berthctl(["pull", "--platform", "linux/amd64/v9/x", "--plain-http", `${proxy.host}/test/busybox:1`], "bad");
  assert.match(platform.stderr, /^berthctl: platform .*: invalid argument\n$/);
  const reference = await berthctl(["pull", "Not/A/Valid:Ref"], "bad");
  assert.match(reference.stderr, /^berthctl: .*must be lowercase.*: invalid argument\n$/);
  const local = await berthctl(["push", "--plain-http", `${proxy.host}/x/y:1`, "no-such-image"], "bad");
  assert.match(local.stderr, /^berthctl: image "no-such-image".*not found\n$/);
  assert.equal(ok(d.ctr(["images", "ls", "-q"], undefined, "bad")).stdout, "");
});
