// One `ctr run --rm IMAGE ID true`, taken apart: the RPCs ctr makes, in its order,
// made here one at a time and timed, so a benchmark can say which step costs what on
// each engine. stdio is null (ctr's --null-io); everything made is removed again.
import { ContainersDefinition } from "../core/gen/containerd/services/containers/v1/containers.ts";
import { LeasesDefinition } from "../core/gen/containerd/services/leases/v1/leases.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { TasksDefinition } from "../core/gen/containerd/services/tasks/v1/tasks.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { chainId } from "../core/image/chain-id.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { defaultPlatformMatcher } from "../core/image/platform.ts";
import { resolveImage } from "../core/image/resolve.ts";
import { containerSpec } from "../core/oci/spec.ts";

export interface TimedStep {
  name: string;
  ms: number;
}

export async function rpcTimeline(address: string, namespace: string, imageName: string, id: string): Promise<TimedStep[]> {
  const meta = inNamespace(namespace);
  const svc = connectImageServices(address, namespace);
  const snapshots = grpcClient(SnapshotsDefinition, address);
  const containers = grpcClient(ContainersDefinition, address);
  const tasks = grpcClient(TasksDefinition, address);
  const leases = grpcClient(LeasesDefinition, address);
  const steps: TimedStep[] = [];
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const value = await fn();
    steps.push({ name, ms: performance.now() - t0 });
    return value;
  };
  // A first call on a fresh connection pays for the connection; ctr pays it too, but once.
  await svc.namespaces.list({}, meta);
  const { image } = await step("images.Get", () => svc.images.get({ name: imageName }, meta));
  const target = image!.target!;
  const resolved = await step("content: manifest + config (Info, Read)", () =>
    resolveImage(svc, { mediaType: target.mediaType, digest: target.digest, size: Number(target.size) }, defaultPlatformMatcher()),
  );
  const parent = chainId(resolved.config.diffIds);
  await step("snapshots.Stat (is it unpacked?)", () => snapshots.stat({ snapshotter: "overlayfs", key: parent }, meta));
  const { lease } = await step("leases.Create", () => leases.create({ id: `bench-${id}`, labels: {} }, meta));
  const withLease = inNamespace(namespace, lease!.id);
  const { mounts } = await step("snapshots.Prepare", () => snapshots.prepare({ snapshotter: "overlayfs", key: id, parent, labels: {} }, withLease));
  const spec = { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Buffer.from(JSON.stringify(containerSpec({ namespace, id, args: ["true"] }))) };
  await step("containers.Create", () =>
    containers.create({ container: { id, image: imageName, runtime: { name: "io.containerd.runc.v2" }, spec, snapshotter: "overlayfs", snapshotKey: id } }, withLease),
  );
  await step("snapshots.Mounts", () => snapshots.mounts({ snapshotter: "overlayfs", key: id }, meta));
  await step("tasks.Create (shim + runc create)", () => tasks.create({ containerId: id, rootfs: mounts }, meta));
  const exited = tasks.wait({ containerId: id }, meta);
  await step("tasks.Start (runc start)", () => tasks.start({ containerId: id }, meta));
  await step("tasks.Wait (true runs, its exit is noticed)", () => exited);
  await step("tasks.Delete (runc delete, unmount)", () => tasks.delete({ containerId: id }, meta));
  await step("containers.Delete", () => containers.delete({ id }, meta));
  await step("snapshots.Remove", () => snapshots.remove({ snapshotter: "overlayfs", key: id }, meta));
  await step("leases.Delete", () => leases.delete({ id: lease!.id, sync: false }, meta));
  return steps;
}
