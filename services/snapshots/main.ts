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

await runService("snapshots", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const root = (name: string) => join(ctx.root, "snapshots", name);
  // "overlayfs" is the name every containerd client asks for by default.
  const snapshotters = new Map<string, Snapshotter>([
    ["overlayfs", new NamespacedSnapshotter("overlayfs", db, new OverlayBackend(root("overlayfs"), ctx.log))],
    ["native", new NamespacedSnapshotter("native", db, new NativeBackend(root("native"), ctx.log))],
  ]);
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
