// The demo's last step: run `echo` in a container over Berth's own gRPC services, as ctr
// would (snapshot, container record, task with a FIFO for stdout), so the demo needs
// nothing but Berth. Everything it makes is removed again, whatever fails.
import { spawnSync } from "node:child_process";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContainersDefinition } from "../core/gen/containerd/services/containers/v1/containers.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { TasksDefinition } from "../core/gen/containerd/services/tasks/v1/tasks.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { chainId } from "../core/image/index.ts";
import { prepareRootfs } from "../core/rootfs.ts";
import { containerSpec } from "../core/oci/spec.ts";

/** Runs `args` in a container of the unpacked image (its config's diff ids name the rootfs) and returns its stdout. */
export async function runInContainer(address: string, namespace: string, imageName: string, diffIds: string[], args: string[]): Promise<{ output: string; exitStatus: number }> {
  const id = `berth-demo-${process.pid}`;
  const meta = inNamespace(namespace);
  const snapshots = grpcClient(SnapshotsDefinition, address);
  const containers = grpcClient(ContainersDefinition, address);
  const tasks = grpcClient(TasksDefinition, address);
  const fifoDir = mkdtempSync(join(tmpdir(), "berth-demo-io-"));
  const stdout = join(fifoDir, "stdout");
  const undo: (() => Promise<unknown>)[] = [];
  try {
    const made = spawnSync("mkfifo", ["-m", "0600", stdout], { encoding: "utf8" });
    if (made.status !== 0) throw new Error(`mkfifo ${stdout}: ${made.stderr.trim()}`);
    const mounts = await prepareRootfs(snapshots, { namespace, snapshotter: "overlayfs", key: id, parent: chainId(diffIds) });
    undo.push(() => snapshots.remove({ snapshotter: "overlayfs", key: id }, meta));
    const spec = { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Buffer.from(JSON.stringify(containerSpec({ namespace, id, args, hostname: "berth-demo" }))) };
    await containers.create({ container: { id, image: imageName, runtime: { name: "io.containerd.runc.v2" }, spec, snapshotter: "overlayfs", snapshotKey: id } }, meta);
    undo.push(() => containers.delete({ id }, meta));
    // The reader's open completes once the shim opens its end; it ends when the shim lets go.
    let output = "";
    const read = new Promise<void>((resolve, reject) => {
      createReadStream(stdout, { encoding: "utf8" })
        .on("data", (chunk) => (output += chunk))
        .on("end", resolve)
        .on("error", reject);
    });
    await tasks.create({ containerId: id, rootfs: mounts, stdout }, meta);
    undo.push(() => tasks.delete({ containerId: id }, meta));
    const exited = tasks.wait({ containerId: id }, meta);
    await tasks.start({ containerId: id }, meta);
    const { exitStatus } = await exited;
    await read;
    return { output, exitStatus };
  } finally {
    for (const step of undo.reverse()) await step().catch(() => {});
    rmSync(fifoDir, { recursive: true, force: true });
  }
}
