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
