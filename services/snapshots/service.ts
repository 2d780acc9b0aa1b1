// containerd.services.snapshots.v1.Snapshots over the loaded snapshotters, plus the
// internal Sweeper the garbage collector calls after it removed snapshot records.
// This layer owns what containerd's service layer does around a snapshotter: the
// snapshotter name, label limits, events, and asking for a collection after removals.
import type { CallContext } from "nice-grpc";
import { invalidArgument } from "../../core/errors.ts";
import { parseFilters, fieldsAndLabels, type FieldAdaptor } from "../../core/filters.ts";
import { leaseOf, namespaceOf } from "../../core/grpc-server.ts";
import { validateLabels } from "../../core/labels.ts";
import type { Logger } from "../../core/log.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from "../../core/gen/containerd/events/snapshot.ts";
import { Kind, type Info, type SnapshotsServiceImplementation } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import type { SweeperServiceImplementation } from "../../core/gen/berth/internal/v1/gc.ts";
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

function snapshotterIn(snapshotters: ReadonlyMap<string, Snapshotter>, name: string): Snapshotter {
  if (name === "") throw invalidArgument("snapshotter argument missing");
  const snapshotter = snapshotters.get(name);
  if (!snapshotter) throw invalidArgument(`snapshotter not loaded: ${name}`);
  return snapshotter;
}

/**
 * Stat and Mounts: read-only (rows and the paths named by them), so berthd also
 * answers them itself (services/gateway/store-reads.ts).
 */
export function snapshotReads(snapshotters: ReadonlyMap<string, Snapshotter>): Pick<SnapshotsServiceImplementation, "stat" | "mounts"> {
  return {
    async mounts(request, ctx) {
      const snapshotter = snapshotterIn(snapshotters, request.snapshotter);
      return { mounts: snapshotter.mounts(namespaceOf(ctx), request.key) };
    },

    async stat(request, ctx) {
      const snapshotter = snapshotterIn(snapshotters, request.snapshotter);
      return { info: infoOf(snapshotter.stat(namespaceOf(ctx), request.key)) };
    },
  };
}

export function snapshotsService(
  snapshotters: ReadonlyMap<string, Snapshotter>,
  metadata: MetadataClient,
  log: Logger,
): SnapshotsServiceImplementation {
  const snapshotterOf = (name: string) => snapshotterIn(snapshotters, name);

  /** Prepare and View: the snapshot, its namespace and the caller's lease entry, in one step. */
  const create = async (kind: "prepare" | "view", request: CreateRequest, ctx: CallContext) => {
    const snapshotter = snapshotterOf(request.snapshotter);
    const namespace = namespaceOf(ctx);
    const key = requireName(request.key, "snapshot key");
    const mounts = await snapshotter[kind](namespace, key, request.parent, validateLabels({ ...request.labels }), leaseOf(ctx));
    return { namespace, key, mounts };
  };

  return {
    ...snapshotReads(snapshotters),

    async prepare(request, ctx) {
      const { namespace, key, mounts } = await create("prepare", request, ctx);
      // Events are best effort and go out in the background (in order).
      metadata.publish(namespace, "/snapshot/prepare", "containerd.events.SnapshotPrepare", SnapshotPrepare, { key, parent: request.parent });
      return { mounts };
    },

    async view(request, ctx) {
      return { mounts: (await create("view", request, ctx)).mounts };
    },

    async commit(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      const name = requireName(request.name, "snapshot name");
      const labels = validateLabels({ ...request.labels });
      await snapshotter.commit(namespace, name, request.key, labels, leaseOf(ctx), request.parent, request.copyUpDirs);
      metadata.publish(namespace, "/snapshot/commit", "containerd.events.SnapshotCommit", SnapshotCommit, { key: request.key, name });
      return {};
    },

    async remove(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      await snapshotter.remove(namespace, request.key, leaseOf(ctx));
      metadata.publish(namespace, "/snapshot/remove", "containerd.events.SnapshotRemove", SnapshotRemove, { key: request.key });
      return {};
    },

    async update(request, ctx) {
      const snapshotter = snapshotterOf(request.snapshotter);
      const namespace = namespaceOf(ctx);
      const name = requireName(request.info?.name ?? "", "snapshot name");
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

export function sweeperService(snapshotters: ReadonlyMap<string, Snapshotter>, log: Logger): SweeperServiceImplementation {
  return {
    async sweep() {
      const removed: string[] = [];
      for (const snapshotter of snapshotters.values()) removed.push(...(await snapshotter.cleanup()));
      if (removed.length > 0) log.debug({ removed }, "removed collected snapshot directories");
      return { removed };
    },
  };
}
