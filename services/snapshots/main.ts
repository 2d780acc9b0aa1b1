// snapshots: the Snapshots service with the overlayfs and native snapshotters, each
// under <root>/snapshots/<name>, their records in the shared metadata database.
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { SweeperDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { NamespacedSnapshotter } from "./metadata-layer.ts";
import { NativeBackend } from "./native-backend.ts";
import { OverlayBackend } from "./overlay-backend.ts";
import { snapshotsService, sweeperService } from "./service.ts";
import type { Snapshotter } from "./snapshotter.ts";
import type { SnapshotBackend } from "./backend.ts";
import { snapshotterNames } from "../../core/routes.ts";

await runService("snapshots", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const root = (name: string) => join(ctx.root, "snapshots", name);
  const backends: Record<(typeof snapshotterNames)[number], (dir: string) => SnapshotBackend> = {
    overlayfs: (dir) => new OverlayBackend(dir, ctx.log),
    native: (dir) => new NativeBackend(dir, ctx.log),
  };
  const snapshotters = new Map<string, Snapshotter>(
    snapshotterNames.map((name) => [name, new NamespacedSnapshotter(name, db, backends[name](root(name)))]),
  );
  for (const snapshotter of snapshotters.values()) {
    const removed = await snapshotter.cleanup();
    if (removed.length > 0) ctx.log.info({ removed }, "removed orphan snapshot directories");
  }
  const metadata = new MetadataClient(ctx.state, ctx.log);
  server.add(SnapshotsDefinition, snapshotsService(snapshotters, metadata, ctx.log));
  server.add(SweeperDefinition, sweeperService(snapshotters, ctx.log));
  return {
    async close() {
      await metadata.flush();
      db.close();
    },
  };
});
