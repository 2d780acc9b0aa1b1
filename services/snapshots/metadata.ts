// The snapshots service's calls to the metadata service: implicit namespaces, lease
// resources (`snapshots/<snapshotter>`, id = key) and the /snapshot/* events. The
// metadata service's answers keep their class (a missing lease stays NOT_FOUND).
import { ClientError, Status } from "nice-grpc";
import { BerthError, kindOfGrpcStatus } from "../../core/errors.ts";
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from "../../core/gen/containerd/events/snapshot.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";

function asBerthError(err: unknown, what: string): unknown {
  if (err instanceof ClientError) {
    const kind = kindOfGrpcStatus(err.code);
    return new BerthError(kind, kind === "unknown" ? `${what}: ${err.details}` : err.details || what);
  }
  return err;
}

const leaseResourceType = (snapshotter: string) => `snapshots/${snapshotter}`;

export class SnapshotMetadata {
  private readonly client: MetadataClient;

  constructor(client: MetadataClient) {
    this.client = client;
  }

  async ensureNamespace(namespace: string): Promise<void> {
    try {
      await this.client.ensureNamespace(namespace);
    } catch (err) {
      throw asBerthError(err, `namespace ${namespace}`);
    }
  }

  /** The namespace may be deleted now; the next write must create it again. */
  forgetNamespace(namespace: string): void {
    this.client.forgetNamespace(namespace);
  }

  async addToLease(namespace: string, lease: string, snapshotter: string, key: string): Promise<void> {
    try {
      await this.client.addLeaseResource(namespace, lease, leaseResourceType(snapshotter), key);
    } catch (err) {
      if (err instanceof ClientError && err.code === Status.NOT_FOUND) throw new BerthError("not found", `lease "${lease}"`);
      throw asBerthError(err, `lease "${lease}"`);
    }
  }

  /**
   * A committed or removed key no longer needs its lease entry (containerd drops it in
   * the same transaction). Best effort, in the background: a stale entry names a key
   * that is gone.
   */
  dropFromLease(namespace: string, lease: string, snapshotter: string, key: string): void {
    this.client.removeLeaseResource(namespace, lease, leaseResourceType(snapshotter), key);
  }

  // Events are best effort and go out in the background (in order).
  prepared(namespace: string, key: string, parent: string): void {
    this.client.publish(namespace, "/snapshot/prepare", "containerd.events.SnapshotPrepare", SnapshotPrepare, { key, parent });
  }

  committed(namespace: string, key: string, name: string): void {
    this.client.publish(namespace, "/snapshot/commit", "containerd.events.SnapshotCommit", SnapshotCommit, { key, name });
  }

  removed(namespace: string, key: string): void {
    this.client.publish(namespace, "/snapshot/remove", "containerd.events.SnapshotRemove", SnapshotRemove, { key });
  }

  /** Waits for what is still being sent in the background. */
  flush(): Promise<void> {
    return this.client.flush();
  }
}
