// The snapshots service's calls to the metadata service: implicit namespaces, lease
// resources (`snapshots/<snapshotter>`, id = key) and the /snapshot/* events. The
// metadata service's answers keep their class (a missing lease stays NOT_FOUND).
import { ClientError, Status } from "nice-grpc";
import { BerthError, kindOfGrpcStatus } from "../../core/errors.ts";
import { grpcClient, inNamespace } from "../../core/grpc-client.ts";
import { serviceSocketPath } from "../../core/config.ts";
import { LeasesDefinition } from "../../core/gen/containerd/services/leases/v1/leases.ts";
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from "../../core/gen/containerd/events/snapshot.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import type { Logger } from "../../core/log.ts";

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
  private readonly state: string;
  private readonly log: Logger;

  constructor(client: MetadataClient, state: string, log: Logger) {
    this.client = client;
    this.state = state;
    this.log = log;
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
   * the same transaction). Best effort: a stale entry names a key that is gone.
   */
  async dropFromLease(namespace: string, lease: string, snapshotter: string, key: string): Promise<void> {
    try {
      await grpcClient(LeasesDefinition, serviceSocketPath(this.state, "metadata")).deleteResource(
        { id: lease, resource: { id: key, type: leaseResourceType(snapshotter) } },
        inNamespace(namespace),
      );
    } catch (err) {
      this.log.debug({ err: (err as Error).message, lease, key }, "cannot drop lease resource");
    }
  }

  async prepared(namespace: string, key: string, parent: string): Promise<void> {
    await this.client.publish(namespace, "/snapshot/prepare", "containerd.events.SnapshotPrepare", SnapshotPrepare, { key, parent });
  }

  async committed(namespace: string, key: string, name: string): Promise<void> {
    await this.client.publish(namespace, "/snapshot/commit", "containerd.events.SnapshotCommit", SnapshotCommit, { key, name });
  }

  async removed(namespace: string, key: string): Promise<void> {
    await this.client.publish(namespace, "/snapshot/remove", "containerd.events.SnapshotRemove", SnapshotRemove, { key });
  }
}
