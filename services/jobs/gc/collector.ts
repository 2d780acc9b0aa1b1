// Mark and sweep over the shared metadata database, with containerd's reference
// model (docs/metadata.md):
// - roots: images, containers, unexpired leases, and blobs or snapshots labelled
//   containerd.io/gc.root;
// - edges: an image's target; a container's snapshot; a lease's resources; every
//   containerd.io/gc.ref.content[.*] label (value: a digest) and
//   containerd.io/gc.ref.snapshot.<snapshotter>[/*] label (value: a key) on any
//   object; a snapshot's parent;
// - a lease labelled containerd.io/gc.flat keeps its own resources but not what they
//   reference; one whose containerd.io/gc.expire time has passed is deleted first.
// References stay inside their namespace. Everything unreachable is deleted from its
// namespace in the same transaction as the mark, so a crash in between loses nothing
// and the next run does the work; the owners of the files (content, snapshots) then
// unlink what no row refers to any more.
import { freeingTransaction, parseLabels, type Database } from "../../../core/sqlite.ts";

const labelPrefix = "containerd.io/gc.";
const contentRefPrefix = "containerd.io/gc.ref.content";
const snapshotRefPrefix = "containerd.io/gc.ref.snapshot.";
const rootLabel = "containerd.io/gc.root";
const flatLabel = "containerd.io/gc.flat";
const expireLabel = "containerd.io/gc.expire";

export interface CollectionResult {
  blobs: number;
  snapshots: number;
  leases: number;
}

interface SnapshotRow {
  id: bigint;
  namespace: string;
  snapshotter: string;
  key: string;
  parent_id: bigint | null;
  labels: string;
  created_at: bigint;
}

/** Where a node's outgoing edges point: content digests and snapshot keys, in the node's namespace. */
interface Refs {
  content: string[];
  snapshots: { snapshotter: string; key: string }[];
}

/** The gc.ref labels of an object. */
function labelRefs(labels: Record<string, string>): Refs {
  const refs: Refs = { content: [], snapshots: [] };
  for (const [name, value] of Object.entries(labels)) {
    if (!name.startsWith(labelPrefix) || value === "") continue;
    if (name === contentRefPrefix || name.startsWith(`${contentRefPrefix}.`)) refs.content.push(value);
    else if (name.startsWith(snapshotRefPrefix)) {
      const snapshotter = name.slice(snapshotRefPrefix.length).split("/")[0]!;
      if (snapshotter !== "") refs.snapshots.push({ snapshotter, key: value });
    }
  }
  return refs;
}

/** True when the RFC 3339 time in the label has passed (an unparsable one never expires, as containerd). */
function expired(labels: Record<string, string>, now: number): boolean {
  const at = labels[expireLabel];
  if (at === undefined) return false;
  const ms = Date.parse(at);
  return !Number.isNaN(ms) && ms <= now;
}

const blobKey = (namespace: string, digest: string) => `${namespace}\0${digest}`;
const snapshotKey = (namespace: string, snapshotter: string, key: string) => `${namespace}\0${snapshotter}\0${key}`;

export interface CollectOptions {
  now?: number;
  /**
   * Blobs and snapshots created at or after this time are kept as if they were roots.
   * Background collections pass "a little while ago", so a client that writes an object
   * and references it in a second call, without a lease, is not raced by a collection
   * someone else's deletion started; synchronous ones (rm --sync) spare nothing.
   */
  spareCreatedSince?: number;
  /** Runs between the mark and the deletes, told how many records are to go (a crash-test hook). */
  afterMark?: (doomed: number) => void;
}

/** One collection: deletes expired leases and every unreachable blob and snapshot record. */
export function collect(db: Database, options: CollectOptions = {}): CollectionResult {
  const { now = Date.now(), spareCreatedSince = Infinity, afterMark } = options;
  return freeingTransaction(db, () => {
    // Expired leases go first: what only they held is then unreachable.
    const leases = db.prepare("SELECT namespace, id, labels FROM leases").all() as { namespace: string; id: string; labels: string }[];
    const deleteLease = db.prepare("DELETE FROM leases WHERE namespace = ? AND id = ?");
    let expiredLeases = 0;
    const liveLeases: { namespace: string; id: string; labels: Record<string, string> }[] = [];
    for (const lease of leases) {
      const labels = parseLabels(lease.labels);
      if (expired(labels, now)) {
        deleteLease.run(lease.namespace, lease.id);
        expiredLeases++;
      } else liveLeases.push({ namespace: lease.namespace, id: lease.id, labels });
    }

    const blobs = new Map<string, Record<string, string>>();
    const freshBlobs: [string, string][] = [];
    const blobRows = db.prepare("SELECT namespace, digest, labels, created_at FROM blobs").all() as {
      namespace: string;
      digest: string;
      labels: string;
      created_at: number;
    }[];
    for (const row of blobRows) {
      blobs.set(blobKey(row.namespace, row.digest), parseLabels(row.labels));
      if (Number(row.created_at) >= spareCreatedSince) freshBlobs.push([row.namespace, row.digest]);
    }
    const snapshotRows = db.prepare("SELECT id, namespace, snapshotter, key, parent_id, labels, created_at FROM snapshots");
    snapshotRows.setReadBigInts(true);
    const snapshots = new Map<string, SnapshotRow>();
    const snapshotById = new Map<bigint, SnapshotRow>();
    for (const row of snapshotRows.all() as unknown as SnapshotRow[]) {
      snapshots.set(snapshotKey(row.namespace, row.snapshotter, row.key), row);
      snapshotById.set(row.id, row);
    }

    const markedBlobs = new Set<string>();
    const markedSnapshots = new Set<bigint>();
    const pending: { namespace: string; refs: Refs }[] = [];
    const follow = (namespace: string, refs: Refs) => pending.push({ namespace, refs });

    const markBlob = (namespace: string, digest: string, flat = false) => {
      const key = blobKey(namespace, digest);
      const labels = blobs.get(key);
      if (labels === undefined || markedBlobs.has(key)) return;
      markedBlobs.add(key);
      if (!flat) follow(namespace, labelRefs(labels));
    };
    const markSnapshot = (row: SnapshotRow | undefined, flat = false) => {
      if (!row || markedSnapshots.has(row.id)) return;
      markedSnapshots.add(row.id);
      if (flat) return;
      follow(row.namespace, labelRefs(parseLabels(row.labels)));
      // A snapshot cannot exist without its parents.
      if (row.parent_id !== null) markSnapshot(snapshotById.get(row.parent_id));
    };

    // Roots.
    for (const image of db.prepare("SELECT namespace, digest, labels FROM images").all() as { namespace: string; digest: string; labels: string }[]) {
      markBlob(image.namespace, image.digest);
      follow(image.namespace, labelRefs(parseLabels(image.labels)));
    }
    const containers = db.prepare("SELECT namespace, snapshotter, snapshot_key, labels FROM containers").all() as {
      namespace: string;
      snapshotter: string;
      snapshot_key: string;
      labels: string;
    }[];
    for (const container of containers) {
      if (container.snapshot_key !== "") markSnapshot(snapshots.get(snapshotKey(container.namespace, container.snapshotter, container.snapshot_key)));
      follow(container.namespace, labelRefs(parseLabels(container.labels)));
    }
    const resources = db.prepare("SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ?");
    for (const lease of liveLeases) {
      const flat = lease.labels[flatLabel] !== undefined;
      for (const resource of resources.all(lease.namespace, lease.id) as { type: string; id: string }[]) {
        if (resource.type === "content") markBlob(lease.namespace, resource.id, flat);
        else if (resource.type.startsWith("snapshots/")) {
          markSnapshot(snapshots.get(snapshotKey(lease.namespace, resource.type.slice("snapshots/".length), resource.id)), flat);
        }
      }
      if (!flat) follow(lease.namespace, labelRefs(lease.labels));
    }
    for (const [key, labels] of blobs) {
      if (labels[rootLabel] !== undefined) {
        const [namespace, digest] = key.split("\0") as [string, string];
        markBlob(namespace, digest);
      }
    }
    for (const row of snapshots.values()) {
      if (parseLabels(row.labels)[rootLabel] !== undefined || Number(row.created_at) >= spareCreatedSince) markSnapshot(row);
    }
    for (const [namespace, digest] of freshBlobs) markBlob(namespace, digest);

    // Edges, breadth first.
    while (pending.length > 0) {
      const { namespace, refs } = pending.pop()!;
      for (const digest of refs.content) markBlob(namespace, digest);
      for (const { snapshotter, key } of refs.snapshots) markSnapshot(snapshots.get(snapshotKey(namespace, snapshotter, key)));
    }

    const unmarked = [...snapshotById.keys()].filter((id) => !markedSnapshots.has(id)).sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    afterMark?.(blobs.size - markedBlobs.size + unmarked.length + expiredLeases);

    // Sweep the rows; children before parents (a child's id is always the larger).
    const deleteBlob = db.prepare("DELETE FROM blobs WHERE namespace = ? AND digest = ?");
    let sweptBlobs = 0;
    for (const key of blobs.keys()) {
      if (markedBlobs.has(key)) continue;
      const [namespace, digest] = key.split("\0") as [string, string];
      deleteBlob.run(namespace, digest);
      sweptBlobs++;
    }
    const deleteSnapshot = db.prepare("DELETE FROM snapshots WHERE id = ?");
    for (const id of unmarked) deleteSnapshot.run(id);
    return { blobs: sweptBlobs, snapshots: unmarked.length, leases: expiredLeases };
  });
}
