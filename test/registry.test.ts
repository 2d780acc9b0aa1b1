// The distribution client against a real docker-registry over plain HTTP (loopback),
// with a real berthd so blobs go through the real content service: push from one
// namespace, pull into another, the four manifest media types and platform choice,
// cross-repository mounts, chunked uploads, and interop with the real skopeo.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { blobInfo } from "../core/content-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { BerthError } from "../core/errors.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { mediaTypes } from "../core/image/media-types.ts";
import { RegistryClient, pullImage, pushImage, resolve, parseRegistryReference, referenceString, fetchManifest, type PushEvent } from "../core/registry/index.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { blobOf, descriptor, imageFromLayers, multiPlatformArchive, skopeo, skopeoArchives, type Blob } from "./fixtures/archives.ts";
import { TestRegistry, storeImage } from "./fixtures/registry.ts";

let d: Daemon;
let registry: TestRegistry;
let work: string;
let busybox: BuiltImage;
const clients: RegistryClient[] = [];

function client(options: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient {
  const c = new RegistryClient({ certsDir: join(work, "no-certs"), credentials: async () => undefined, ...options });
  clients.push(c);
  return c;
}

const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);

/** A synchronous garbage collection in a namespace (ctr leases rm --sync of a lease made for it). */
function collectNow(namespace: string): void {
  const lease = ok(d.ctr(["leases", "create"], undefined, namespace), "leases create").stdout.trim();
  ok(d.ctr(["leases", "rm", "--sync", lease], undefined, namespace), "leases rm --sync");
}

async function assertHasBlobs(svc: ImageServices, blobs: { digest: string; size: number }[]): Promise<void> {
  for (const b of blobs) {
    const info = await blobInfo(svc.content, b.digest, callOptions(svc));
    assert.ok(info, `${b.digest} is in namespace ${svc.namespace}`);
    assert.equal(Number(info.size), b.size);
  }
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-registry-"));
  busybox = await buildBusyboxImage();
  d = await startDaemon();
  registry = await TestRegistry.start(join(work, "registry"));
  await storeImage(ns("default"), busybox.blobs, "docker.io/library/busybox:latest", busybox.manifest);
});

after(async () => {
  for (const c of clients) await c.close();
  closeChannels();
  await registry?.stop();
  await d?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe("references", () => {
  test("short names go to docker.io/library, or to the configured default registry", () => {
    assert.deepEqual(parseRegistryReference("busybox"), { registry: "docker.io", repository: "library/busybox", tag: "latest" });
    assert.deepEqual(parseRegistryReference("user/app:1"), { registry: "docker.io", repository: "user/app", tag: "1" });
    assert.deepEqual(parseRegistryReference("busybox", "127.0.0.1:5000"), { registry: "127.0.0.1:5000", repository: "busybox", tag: "latest" });
    assert.deepEqual(parseRegistryReference("127.0.0.1:5000/a/b:t"), { registry: "127.0.0.1:5000", repository: "a/b", tag: "t" });
    assert.deepEqual(parseRegistryReference("localhost/x"), { registry: "localhost", repository: "x", tag: "latest" });
    const digest = sha256Digest("x");
    assert.deepEqual(parseRegistryReference(`h.io/x@${digest}`), { registry: "h.io", repository: "x", digest });
    assert.equal(referenceString(parseRegistryReference(`h.io/x:1@${digest}`)), `h.io/x:1@${digest}`);
  });

  test("bad references are refused with invalid argument, naming the problem", () => {
    for (const [bad, message] of [
      ["Busybox", /must be lowercase/],
      ["a b", /invalid reference format/],
      [`x@sha512:${"a".repeat(128)}`, /unsupported digest/],
      ["", /invalid reference format/],
    ] as const) {
      assert.throws(() => parseRegistryReference(bad), (err: unknown) => err instanceof BerthError && err.kind === "invalid argument" && message.test(err.message), bad);
    }
  });
});

describe("push and pull over plain HTTP", () => {
  test("an image pushed from one namespace is pulled into a fresh one with the same digests", async () => {
    const c = client();
    const ref = `${registry.host}/test/busybox:1`;
    const events: PushEvent[] = [];
    const pushed = await pushImage(c, ns("default"), "docker.io/library/busybox:latest", ref, { onProgress: (e) => events.push(e) });
    assert.equal(pushed.root.digest, busybox.manifest.digest);
    assert.deepEqual(pushed.uploaded.sort(), [busybox.config.digest, busybox.layers[0]!.digest].sort());
    assert.deepEqual(events.filter((e) => e.type === "manifest").map((e) => e.type === "manifest" && e.object), ["1"]);

    const layer = busybox.layers[0]!;
    const sent = events.flatMap((e) => (e.type === "progress" && e.descriptor.digest === layer.digest ? [e.sent] : []));
    assert.ok(sent.length > 1 && sent.every((n, i) => i === 0 || n > sent[i - 1]!), "upload progress rises");
    assert.equal(sent.at(-1), layer.size);

    const fresh = ns("pulled");
    const pulled = await pullImage(client(), fresh, ref);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);
    assert.equal(pulled.image.root.mediaType, mediaTypes.ociManifest);
    assert.deepEqual(pulled.fetched.sort(), [busybox.config.digest, busybox.layers[0]!.digest].sort());
    await assertHasBlobs(fresh, busybox.blobs);
    const { image } = await fresh.images.get({ name: ref }, callOptions(fresh));
    assert.equal(image?.target?.digest, busybox.manifest.digest);
    const manifestInfo = await blobInfo(fresh.content, busybox.manifest.digest, callOptions(fresh));
    assert.equal(manifestInfo?.labels["containerd.io/gc.ref.content.config"], busybox.config.digest);
    assert.equal(manifestInfo?.labels["containerd.io/gc.ref.content.l.0"], busybox.layers[0]!.digest);
    const layerInfo = await blobInfo(fresh.content, busybox.layers[0]!.digest, callOptions(fresh));
    assert.equal(layerInfo?.labels[`containerd.io/distribution.source.${registry.host}`], "test/busybox");

    // The real ctr sees the pulled image in that namespace.
    const ls = d.ctr(["images", "ls", "-q"], undefined, "pulled");
    assert.equal(ls.stdout, `${ref}\n`, ls.stderr);

    // The gc.ref labels hold the blobs: a collection keeps them while the image is named.
    collectNow("pulled");
    await assertHasBlobs(fresh, busybox.blobs);

    const again = await pushImage(client(), ns("default"), "docker.io/library/busybox:latest", ref);
    assert.deepEqual(again.uploaded, [], "nothing is uploaded twice");
    assert.equal(again.existed.length, 2);
    const repull = await pullImage(client(), fresh, ref);
    assert.deepEqual(repull.fetched, [], "blobs the namespace has are not downloaded again");
  });

  test("a push to another repository mounts the blobs from where they already are", async () => {
    const events: PushEvent[] = [];
    const pushed = await pushImage(client(), ns("pulled"), `${registry.host}/test/busybox:1`, `${registry.host}/other/busybox:2`, { onProgress: (e) => events.push(e) });
    assert.deepEqual(pushed.uploaded, []);
    assert.deepEqual(pushed.mounted.sort(), [busybox.config.digest, busybox.layers[0]!.digest].sort());
    assert.ok(events.every((e) => e.type !== "mounted" || e.from === "test/busybox"));
    const image = await resolve(client(), `${registry.host}/other/busybox:2`);
    assert.equal(image.root.digest, busybox.manifest.digest);
  });

  test("a chunked upload (PATCH with Content-Range, then PUT ?digest=) is pulled back by digest", async () => {
    // A namespace whose blobs carry no source label: nothing to mount from, so everything is uploaded.
    await storeImage(ns("unlabelled"), busybox.blobs, "busybox:chunked", busybox.manifest);
    const pushed = await pushImage(client(), ns("unlabelled"), "busybox:chunked", `${registry.host}/chunked/busybox:1`, { chunkSize: 64 * 1024 });
    assert.equal(pushed.uploaded.length, 2);
    assert.ok(busybox.layers[0]!.size > 3 * 64 * 1024, "the layer takes several chunks");
    const byDigest = `${registry.host}/chunked/busybox@${busybox.manifest.digest}`;
    const pulled = await pullImage(client(), ns("chunked"), byDigest);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);
    await assertHasBlobs(ns("chunked"), busybox.blobs);
  });

  test("a reference with a tag and a digest pushes under the tag; a digest that is not the image's is refused", async () => {
    const ref = `${registry.host}/both/busybox:t@${busybox.manifest.digest}`;
    const pushed = await pushImage(client(), ns("default"), "docker.io/library/busybox:latest", ref);
    assert.equal(pushed.name, ref);
    assert.equal((await resolve(client(), `${registry.host}/both/busybox:t`)).root.digest, busybox.manifest.digest);
    await assert.rejects(pushImage(client(), ns("default"), "docker.io/library/busybox:latest", `${registry.host}/both/busybox:u@${busybox.config.digest}`), /cannot push sha256:[0-9a-f]+ as .*: the reference names another digest: invalid argument/);
    await assert.rejects(pushImage(client(), ns("default"), "no/such:image", `${registry.host}/both/busybox:v`), /image "no\/such:image": not found/);
  });

  test("a tag the registry does not have is not found (and not retried)", async () => {
    const c = client();
    await assert.rejects(fetchManifest(c, parseRegistryReference(`${registry.host}/test/busybox:nope`), "nope"), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, "not found");
      assert.match(err.message, /GET http:\/\/127\.0\.0\.1:\d+\/v2\/test\/busybox\/manifests\/nope: 404 Not Found: MANIFEST_UNKNOWN/);
      return true;
    });
  });
});

/** The busybox image under Docker schema 2 media types, for amd64 and (a fake) arm64. */
function dockerImages(): { amd64: ReturnType<typeof imageFromLayers>; arm64: ReturnType<typeof imageFromLayers>; list: Blob } {
  const layer = blobOf(mediaTypes.dockerLayerGzip, busybox.layers[0]!.data);
  const diffId = JSON.parse(busybox.config.data.toString()).rootfs.diff_ids[0] as string;
  const retype = (img: ReturnType<typeof imageFromLayers>) => {
    const config = blobOf(mediaTypes.dockerConfig, img.config.data);
    const manifest = blobOf(mediaTypes.dockerManifest, JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.dockerManifest,
      config: descriptor(config),
      layers: [descriptor(layer)],
    }));
    return { manifest, config, layers: [layer], blobs: [manifest, config, layer] };
  };
  const amd64 = retype(imageFromLayers([layer], [diffId], { architecture: "amd64" }));
  const arm64 = retype(imageFromLayers([layer], [diffId], { architecture: "arm64", variant: "v8" }));
  const list = blobOf(mediaTypes.dockerManifestList, JSON.stringify({
    schemaVersion: 2,
    mediaType: mediaTypes.dockerManifestList,
    manifests: [
      descriptor(amd64.manifest, { platform: { architecture: "amd64", os: "linux" } }),
      descriptor(arm64.manifest, { platform: { architecture: "arm64", os: "linux", variant: "v8" } }),
    ],
  }));
  return { amd64, arm64, list };
}

describe("manifest lists and indexes", () => {
  test("Docker schema 2 lists and OCI indexes round-trip; the platform picks the manifest", async () => {
    const docker = dockerImages();
    const oci = await multiPlatformArchive(busybox.layers[0]!, JSON.parse(busybox.config.data.toString()).rootfs.diff_ids[0], "v1");
    const cases = [
      { name: "docker", index: docker.list, amd64: docker.amd64, arm64: docker.arm64, manifestType: mediaTypes.dockerManifest },
      { name: "oci", index: oci.index, amd64: oci.amd64, arm64: oci.arm64, manifestType: mediaTypes.ociManifest },
    ];
    for (const c of cases) {
      const local = `local/${c.name}:multi`;
      await storeImage(ns("default"), [c.index, ...c.amd64.blobs, ...c.arm64.blobs], local, c.index);
      const ref = `${registry.host}/multi/${c.name}:1`;
      const pushed = await pushImage(client(), ns("default"), local, ref);
      assert.equal(pushed.root.digest, c.index.digest);

      const host = await pullImage(client(), ns(`multi-${c.name}`), ref);
      assert.equal(host.image.root.digest, c.index.digest, `${c.name}: the tag names the index`);
      assert.equal(host.image.root.mediaType, c.index.mediaType);
      assert.equal(host.image.manifest.descriptor.digest, c.amd64.manifest.digest, `${c.name}: this host's platform`);
      assert.equal(host.image.manifest.descriptor.mediaType, c.manifestType);
      const pulledNs = ns(`multi-${c.name}`);
      const indexInfo = await blobInfo(pulledNs.content, c.index.digest, callOptions(pulledNs));
      assert.equal(indexInfo?.labels["containerd.io/gc.ref.content.m.0"], c.amd64.manifest.digest);
      collectNow(pulledNs.namespace);
      await assertHasBlobs(pulledNs, [c.index, ...c.amd64.blobs]);
      // Removing the name frees everything the pull stored.
      ok(d.ctr(["images", "rm", "--sync", ref], undefined, pulledNs.namespace), "images rm --sync");
      for (const b of [c.index, ...c.amd64.blobs]) assert.equal(await blobInfo(pulledNs.content, b.digest, callOptions(pulledNs)), undefined, `${b.digest} collected`);

      const arm = await resolve(client(), ref, { platform: "linux/arm64" });
      assert.equal(arm.manifest.descriptor.digest, c.arm64.manifest.digest, `${c.name}: explicit platform`);
      assert.equal(arm.blobs[0]!.digest, c.arm64.config.digest);

      await assert.rejects(resolve(client(), ref, { platform: "linux/s390x" }), (err: unknown) => {
        assert.ok(err instanceof BerthError && err.kind === "not found");
        assert.match(err.message, /no manifest for platform linux\/s390x \(the index offers linux\/amd64, linux\/arm64\/v8\)/);
        return true;
      });
      await assert.rejects(resolve(client(), ref, { platform: "linux/*" }), /invalid argument/);

      // With a platform, only that platform's manifest is pushed, under the tag.
      const single = await pushImage(client(), ns("default"), local, `${registry.host}/multi/${c.name}:arm`, { platform: "linux/arm64/v8" });
      assert.equal(single.root.digest, c.arm64.manifest.digest);
      assert.equal((await resolve(client(), `${registry.host}/multi/${c.name}:arm`)).root.mediaType, c.manifestType);
    }
  });
});

describe("interop with skopeo", () => {
  test("an image skopeo pushed is pulled with identical digests", async () => {
    const dir = join(work, "skopeo-in");
    const { layout } = skopeoArchives(dir, busybox);
    const digestFile = join(dir, "digest");
    const r = skopeo(dir, ["copy", "--dest-tls-verify=false", "--digestfile", digestFile, `oci:${layout}:v1`, `docker://${registry.host}/skopeo/busybox:1`]);
    assert.equal(r.code, 0, r.stderr);
    const skopeoDigest = readFileSync(digestFile, "utf8").trim();
    const pulled = await pullImage(client(), ns("from-skopeo"), `${registry.host}/skopeo/busybox:1`);
    assert.equal(pulled.image.root.digest, skopeoDigest);
    assert.equal(pulled.image.manifest.descriptor.digest, busybox.manifest.digest);
    await assertHasBlobs(ns("from-skopeo"), busybox.blobs);
  });

  test("an image we pushed is copied by skopeo with identical digests", async () => {
    const dir = join(work, "skopeo-out");
    mkdirSync(dir);
    const ref = `${registry.host}/for-skopeo/busybox:1`;
    const pushed = await pushImage(client(), ns("default"), "docker.io/library/busybox:latest", ref);
    const r = skopeo(dir, ["copy", "--src-tls-verify=false", `docker://${ref}`, `oci:${join(dir, "out")}:v1`]);
    assert.equal(r.code, 0, r.stderr);
    const index = JSON.parse(readFileSync(join(dir, "out", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    assert.equal(index.manifests[0]!.digest, pushed.root.digest);
    for (const b of busybox.blobs) {
      const copied = readFileSync(join(dir, "out", "blobs", "sha256", b.digest.slice(7)));
      assert.equal(sha256Digest(copied), b.digest);
    }
  });
});
