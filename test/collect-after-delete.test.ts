// Containers/Delete asks for a collection in the background (berthd's CollectorFront
// passes it on after the answer, once for any number of deletes that come meanwhile):
// whatever only the deleted containers held is still collected, a burst included.
// Background collections spare objects younger than 30 s (services/jobs/gc/service.ts),
// so the tests age their snapshots in the database first.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { startDaemon, sleep, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace, closeChannels } from "../core/grpc-client.ts";
import { ContainersDefinition } from "../core/gen/containerd/services/containers/v1/containers.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { LeasesDefinition } from "../core/gen/containerd/services/leases/v1/leases.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { Status, type ClientError } from "nice-grpc";

let d: Daemon;
before(async () => {
  d = await startDaemon();
});
after(async () => {
  closeChannels();
  await d?.destroy();
});

const namespace = "collect-after-delete";
const snapshotter = "overlayfs";

/** A container whose snapshot nothing else holds (the lease it was made under is gone). */
async function containerWithSnapshot(id: string): Promise<void> {
  const leases = grpcClient(LeasesDefinition, d.address);
  const { lease } = await leases.create({ id: `make-${id}` }, inNamespace(namespace));
  await grpcClient(SnapshotsDefinition, d.address).prepare({ snapshotter, key: `snap-${id}`, parent: "" }, inNamespace(namespace, lease!.id));
  await grpcClient(ContainersDefinition, d.address).create(
    { container: { id, snapshotter, snapshotKey: `snap-${id}`, runtime: { name: "io.containerd.runc.v2" }, spec: { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Buffer.from("{}") } } },
    inNamespace(namespace),
  );
  await leases.delete({ id: lease!.id, sync: false }, inNamespace(namespace));
  const db = new DatabaseSync(join(d.root, "metadata.db"));
  try {
    db.prepare("UPDATE snapshots SET created_at = created_at - 3600000 WHERE namespace = ? AND key = ?").run(namespace, `snap-${id}`);
  } finally {
    db.close();
  }
}

async function snapshotExists(key: string): Promise<boolean> {
  try {
    await grpcClient(SnapshotsDefinition, d.address).stat({ snapshotter, key }, inNamespace(namespace));
    return true;
  } catch (err) {
    if ((err as ClientError).code === Status.NOT_FOUND) return false;
    throw err;
  }
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}\n${d.log.slice(-2000)}`);
    await sleep(100);
  }
}

test("a deleted container that leaves nothing behind (its snapshot removed, its image kept) asks for no collection", async () => {
  // First in this file: nothing has asked for a collection yet, so the jobs process (which runs them) is not running.
  assert.equal(d.servicePid("jobs"), undefined, "no collection asked for yet");
  const image = { name: "docker.io/library/kept:1", target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${"a".repeat(64)}`, size: 10n } };
  await grpcClient(ImagesDefinition, d.address).create({ image }, inNamespace(namespace));
  const containers = grpcClient(ContainersDefinition, d.address);
  const record = (id: string, imageName: string) => ({
    container: { id, image: imageName, snapshotter, snapshotKey: `removed-${id}`, runtime: { name: "io.containerd.runc.v2" }, spec: { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Buffer.from("{}") } },
  });
  // As after `ctr run --rm`: the snapshot is gone already, the image stays.
  await containers.create(record("clean", image.name), inNamespace(namespace));
  await containers.delete({ id: "clean" }, inNamespace(namespace));
  // A call after the delete's answer: a collection would have been passed on (starting jobs) by now.
  await grpcClient(ContainersDefinition, d.address).list({ filters: [] }, inNamespace(namespace));
  assert.equal(d.servicePid("jobs"), undefined, "no collection was asked for");
  // Its image deleted meanwhile, what the removed snapshot sat on may be garbage now: a collection is asked for.
  await containers.create(record("image-gone", "docker.io/library/gone:1"), inNamespace(namespace));
  await containers.delete({ id: "image-gone" }, inNamespace(namespace));
  await eventually("the jobs process started for a collection", async () => d.servicePid("jobs") !== undefined);
});

test("the snapshot a deleted container alone held is collected after Containers/Delete", async () => {
  await containerWithSnapshot("one");
  assert.equal(await snapshotExists("snap-one"), true, "the container keeps its snapshot");
  await grpcClient(ContainersDefinition, d.address).delete({ id: "one" }, inNamespace(namespace));
  await eventually("snap-one collected", async () => !(await snapshotExists("snap-one")));
});

test("a burst of deletes, some while a request is being passed on: every snapshot is collected", async () => {
  const ids = Array.from({ length: 8 }, (_, i) => `burst-${i}`);
  for (const id of ids) await containerWithSnapshot(id);
  const containers = grpcClient(ContainersDefinition, d.address);
  await Promise.all(ids.slice(0, 4).map((id) => containers.delete({ id }, inNamespace(namespace))));
  for (const id of ids.slice(4)) await containers.delete({ id }, inNamespace(namespace));
  for (const id of ids) await eventually(`snap-${id} collected`, async () => !(await snapshotExists(`snap-${id}`)));
});
