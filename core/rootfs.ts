// A container's root filesystem as a snapshot: the one step every caller that runs
// something from an image takes (containerd's WithNewSnapshot / WithNewSnapshotView),
// over the Snapshots service's gRPC client, so any process can call it — images mount,
// and the tasks service for a container's rootfs. Unpacking the image first is
// core/image/unpack.ts (unpackImage), which yields the parent chain id.
import type { Client } from "nice-grpc";
import type { SnapshotsDefinition } from "./gen/containerd/services/snapshots/v1/snapshots.ts";
import type { Mount } from "./gen/containerd/types/mount.ts";
import { inNamespace, isAlreadyExists } from "./grpc-status.ts";

export interface RootfsRequest {
  namespace: string;
  /** "overlayfs", "native", …: the snapshotter the image was unpacked with. */
  snapshotter: string;
  /** The new snapshot's key (containerd uses the container id). */
  key: string;
  /** The image's top chain id; "" for an empty rootfs. */
  parent: string;
  /** The lease that holds the new snapshot until the caller records a reference to it. */
  lease?: string;
  /** A read-only View instead of a writable (Prepare) snapshot. */
  readOnly?: boolean;
  labels?: Record<string, string>;
  /** Use an existing snapshot under `key` as it is, instead of failing with ALREADY_EXISTS. */
  reuse?: boolean;
  signal?: AbortSignal;
}

/**
 * Creates the rootfs snapshot on top of `parent` and returns its mounts (valid mount(2)
 * input on this host). Errors are the Snapshots service's: NOT_FOUND for a missing
 * parent, ALREADY_EXISTS for a taken key (unless `reuse`), NOT_FOUND for a missing lease.
 */
export async function prepareRootfs(snapshots: Client<typeof SnapshotsDefinition>, request: RootfsRequest): Promise<Mount[]> {
  const options = inNamespace(request.namespace, request.lease, request.signal);
  const create = { snapshotter: request.snapshotter, key: request.key, parent: request.parent, labels: request.labels ?? {} };
  try {
    const created = request.readOnly ? await snapshots.view(create, options) : await snapshots.prepare(create, options);
    return created.mounts;
  } catch (err) {
    if (!(request.reuse && isAlreadyExists(err))) throw err;
    return (await snapshots.mounts({ snapshotter: request.snapshotter, key: request.key }, options)).mounts;
  }
}
