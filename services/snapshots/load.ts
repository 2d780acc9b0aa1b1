// The snapshotters, each over its backend under <root>/snapshots/<name> and its rows in
// the shared metadata database: the snapshots process serves them, and berthd reads
// through the same objects for the calls it answers itself (Stat, Mounts).
import { join } from "node:path";
import type { Logger } from "../../core/log.ts";
import type { Database } from "../../core/metadata-db.ts";
import { snapshotterNames } from "../../core/routes.ts";
import type { SnapshotBackend } from "./backend.ts";
import { NamespacedSnapshotter } from "./metadata-layer.ts";
import { NativeBackend } from "./native-backend.ts";
import { OverlayBackend } from "./overlay-backend.ts";
import type { Snapshotter } from "./snapshotter.ts";

export function loadSnapshotters(root: string, db: Database, log: Logger): Map<string, Snapshotter> {
  const dir = (name: string) => join(root, "snapshots", name);
  const backends: Record<(typeof snapshotterNames)[number], (dir: string) => SnapshotBackend> = {
    overlayfs: (dir) => new OverlayBackend(dir, log),
    native: (dir) => new NativeBackend(dir, log),
  };
  return new Map<string, Snapshotter>(snapshotterNames.map((name) => [name, new NamespacedSnapshotter(name, db, backends[name](dir(name)))]));
}
