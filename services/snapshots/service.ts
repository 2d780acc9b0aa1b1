// containerd.services.snapshots.v1.Snapshots over the loaded snapshotters, plus the
// internal NamespaceUsage check the metadata service asks before deleting a namespace.
// This layer owns what containerd's service and metadata layers do around a
// snapshotter: the snapshotter name, namespaces, label limits, leases and events.
import type { CallContext } from "nice-grpc";
import { alreadyExists, invalidArgument } from "../../core/errors.ts";
import { parseFilters, fieldsAndLabels, type FieldAdaptor } from "../../core/filters.ts";
import { leaseOf, namespaceOf } from "../../core/grpc-server.ts";
import { validateLabels } from "../../core/labels.ts";
import type { Logger } from "../../core/log.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from "../../core/gen/containerd/events/snapshot.ts";
import { Kind, type Info, type SnapshotsServiceImplementation } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import type { NamespaceUsageServiceImplementation } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import type { SnapshotRecord, Snapshotter } from "./snapshotter.ts";

/** Snapshots are streamed in blocks of this many, as containerd does. */
const listBatchSize = 100;

const kindNames: Record<number, string> = { [Kind.VIEW]: "view", [Kind.ACTIVE]: "active", [Kind.COMMITTED]: "committed" };

function infoOf(record: SnapshotRecord): Info {
  return {
    name: record.key,
    parent: record.parent,
    kind: record.kind,
    createdAt: timestampFromMillis(record.createdAt),
    updatedAt: timestampFromMillis(record.updatedAt),
    labels: record.labels,
  };
}

/** The fields List filters may name: kind, name, parent, labels.<key>. */
function snapshotAdaptor(record: SnapshotRecord): FieldAdaptor {
  return fieldsAndLabels({ kind: kindNames[record.kind], name: record.key, parent: record.parent }, record.labels);
}

/** A snapshot's lease resource type (the id is its key). */
const leaseResourceType = (snapshotter: string) => `snapshots/${snapshotter}`;

/** What Prepare and View are asked. */
interface CreateRequest {
  snapshotter: string;
  key: string;
  parent: string;
  labels: Record<string, string>;
}

function requireName(value: string, what: string): string {
  if (value === "") throw invalidArgument(`${what} must not be empty`);
  return value;
}

export function snapshotsService(
  snapshotters: ReadonlyMap<string, Snapshotter>,
  metadata: MetadataClient,
  log: Logger,
): SnapshotsServiceImplementation {
  const snapshotterOf = (name: string): Snapshotter => {
    if (name === "") throw invalidArgument("snapshotter argument missing");
    const snapshotter = snapshotters.get(name);
    if (!snapshotter) throw invalidArgument(`snapshotter not loaded: ${name}`);
    return snapshotter;
  };

  /**
   * Puts `key` on the caller's lease, or else makes sure the namespace exists: a lease
   * exists only in an existing namespace (see MetadataClient.addLeaseResource).
   */
  const claim = (namespace: string, lease: string | undefined, snapshotter: string, key: string): Promise<void> =>
    lease ? metadata.addLeaseResource(namespace, lease, leaseResourceType(snapshotter), key) : metadata.ensureNamespace(namespace);

  /**
   * A committed or removed key no longer needs its lease entry (containerd drops it in
   * the same transaction). Best effort, in the background: a stale entry names a key
   * that is gone.
   */
  const release = (namespace: string, lease: string | undefined, snapshotter: string, key: string): void => {
    if (lease) metadata.removeLeaseResource(namespace, lease, leaseResourceType(snapshotter), key);
  };

  /**
   * Prepare and View: creates the snapshot, then makes it known to the namespace and the
   * caller's lease; if either fails, the snapshot is taken back so the call leaves
   * nothing behind.
   */
  const create = async (kind: "prepare" | "view", request: CreateRequest, ctx: CallContext) => {
    const snapshotter = snapshotterOf(request.snapshotter);
    const namespace = namespaceOf(ctx);
    const key = requireName(request.key, "snapshot key");
    const mounts = snapshotter[kind](namespace, key, request.parent, validateLabels({ ...request.labels }));
    try {
      await claim(namespace, leaseOf(ctx), request.snapshotter, key);
    } catch (err) {
      await snapshotter.remove(namespace, key).catch((undo: unknown) => {
        log.warn({ err: (undo as Error).message, key }, "cannot take back snapshot");
      });
      throw err;
    }
    return { namespace, key, mounts };
  };

  return {
    async prepare(request, ctx) {
      const { namespace, key, mounts } = await create("prepare", request, ctx);
      // Events are best effort and go out in the background (in order).
      metadata.publish(namespace, "/snapshot/prepare", "containerd.events.SnapshotPrepare", SnapshotPrepare, { key, parent: request.parent });
      return { mounts };
    },

    async view(request, ctx) {
      return { mounts: (await create("view", request, ctx)).mounts };
    },

    async mounts(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      return { mounts: snapshotter.mounts(namespaceOf(ctx), request.key) };
    },

    async commit(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      const name = requireName(request.name, "snapshot name");
      const labels = validateLabels({ ...request.labels });
      // Fail before the lease learns the name (the commit checks again atomically).
      if (snapshotter.find(namespace, name)) throw alreadyExists(`snapshot ${JSON.stringify(name)}`);
      snapshotter.stat(namespace, request.key);
      const lease = leaseOf(ctx);
      // The lease must take the name before the commit; it runs while the usage is measured.
      const ready = claim(namespace, lease, request.snapshotter, name);
      // Reported through commit(); a commit that fails first must not leave it unhandled.
      ready.catch(() => undefined);
      await snapshotter.commit(namespace, name, request.key, labels, ready);
      release(namespace, lease, request.snapshotter, request.key);
      metadata.publish(namespace, "/snapshot/commit", "containerd.events.SnapshotCommit", SnapshotCommit, { key: request.key, name });
      return {};
    },

    async remove(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      await snapshotter.remove(namespace, request.key);
      release(namespace, leaseOf(ctx), request.snapshotter, request.key);
      metadata.publish(namespace, "/snapshot/remove", "containerd.events.SnapshotRemove", SnapshotRemove, { key: request.key });
      return {};
    },

    async stat(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      return { info: infoOf(snapshotter.stat(namespaceOf(ctx), request.key)) };
    },

    async update(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      const name = requireName(request.info?.name ?? "", "snapshot name");
      snapshotter.stat(namespace, name);
      await metadata.ensureNamespace(namespace);
      const updated = snapshotter.update(namespace, name, { ...request.info?.labels }, request.updateMask ?? []);
      return { info: infoOf(updated) };
    },

    async *list(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      const matches = parseFilters(request.filters);
      let batch: Info[] = [];
      for (const record of snapshotter.list(namespace)) {
        if (!matches(snapshotAdaptor(record))) continue;
        batch.push(infoOf(record));
        if (batch.length >= listBatchSize) {
          yield { info: batch };
          batch = [];
        }
      }
      if (batch.length > 0) yield { info: batch };
    },

    async usage(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const usage = await snapshotter.usage(namespaceOf(ctx), request.key);
      return { size: usage.size, inodes: usage.inodes };
    },

    async cleanup(request) {
      // Orphan directories belong to no namespace, so none is required here.
      const removed = await snapshotterOf(request.snapshotter).cleanup();
      if (removed.length > 0) log.info({ removed }, "removed orphan snapshot directories");
      return {};
    },
  };
}

export function namespaceUsageService(
  snapshotters: ReadonlyMap<string, Snapshotter>,
  metadata: MetadataClient,
): NamespaceUsageServiceImplementation {
  return {
    async check(request) {
      let count = 0;
      for (const snapshotter of snapshotters.values()) count += snapshotter.count(request.namespace);
      if (count === 0) {
        // The metadata service is about to delete it: the next write must recreate it.
        metadata.forgetNamespace(request.namespace);
        return { empty: true, detail: "" };
      }
      return { empty: false, detail: `namespace ${request.namespace} has ${count} snapshot${count === 1 ? "" : "s"}` };
    },
  };
}
