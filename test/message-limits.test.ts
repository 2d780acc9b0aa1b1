// Label maps and gRPC replies are bounded. One object's labels are at most 256 KiB in
// all (containerd's 4096 bytes per label still holds), and no service sends a reply over
// 16 MiB (containerd's message limit, which ctr receives at most): before, a List grew
// without bound with the records behind it. Against the real images service of a
// real berthd, through the gateway.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createChannel, createClient, Status, type Channel } from "nice-grpc";
import { grpcError, startDaemon, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { sha256Digest } from "../core/digest.ts";

let d: Daemon;
let images: ReturnType<typeof grpcClient<typeof ImagesDefinition>>;
let wideChannel: Channel | undefined;

before(async () => {
  d = await startDaemon();
  images = grpcClient(ImagesDefinition, d.address);
});

after(async () => {
  wideChannel?.close();
  await d?.destroy();
});

const target = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256Digest("manifest"), size: 100n, annotations: {} };

/** `count` labels of 4096 bytes each (key and value), keys starting with `prefix`. */
function labels(prefix: string, count: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => {
    const key = `${prefix}${String(i).padStart(4, "0")}`;
    return [key, "v".repeat(4096 - key.length)];
  }));
}

test("an image whose labels total more than 256 KiB is refused at create", async () => {
  const ns = inNamespace("labels-create");
  await images.create({ image: { name: "ok", labels: labels("a", 64), target } }, ns);
  const err = await grpcError(images.create({ image: { name: "too-many", labels: labels("a", 65), target } }, ns));
  assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /labels total 266240 bytes \(keys and values\), greater than maximum size \(262144 bytes\)/);
  const { images: listed } = await images.list({ filters: [] }, ns);
  assert.deepEqual(listed.map((i) => i.name), ["ok"]);
});

test("labels added by masked updates count with the ones already there", async () => {
  const ns = inNamespace("labels-update");
  await images.create({ image: { name: "grows", labels: labels("a", 40), target } }, ns);
  const more = labels("b", 30);
  const err = await grpcError(
    images.update({ image: { name: "grows", labels: more, target }, updateMask: Object.keys(more).map((k) => `labels.${k}`) }, ns),
  );
  assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /labels total \d+ bytes/);
  const { image } = await images.get({ name: "grows" }, ns);
  assert.equal(Object.keys(image!.labels).length, 40, "the image is unchanged");
});

test("a List reply over 16 MiB fails on the server with RESOURCE_EXHAUSTED instead of being sent", async () => {
  const ns = inNamespace("big-list");
  // 72 images of 61 labels of 4096 bytes: each within its limit, together some 18 MB.
  for (let i = 0; i < 72; i++) {
    await images.create({ image: { name: `img-${i}`, labels: labels("l", 61), target } }, ns);
  }
  // A client that would accept 64 MiB, so the limit seen is the server's.
  wideChannel = createChannel(`unix://${d.address}`, undefined, { "grpc.max_receive_message_length": 64 * 1024 * 1024 });
  const wide = createClient(ImagesDefinition, wideChannel);
  const err = await grpcError(wide.list({ filters: [] }, ns));
  assert.equal(err.code, Status.RESOURCE_EXHAUSTED, err.details);
  // A filtered list that fits is still answered.
  const { images: some } = await wide.list({ filters: ["name==img-1"] }, ns);
  assert.deepEqual(some.map((i) => i.name), ["img-1"]);
});
