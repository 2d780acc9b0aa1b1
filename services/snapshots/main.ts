// snapshots: the Snapshots service with the overlayfs snapshotter, under <root>/snapshots,
// its records in the shared metadata database.
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { SweeperDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { OverlaySnapshotter } from "./overlay.ts";
import { snapshotsService, sweeperService } from "./service.ts";
import type { Snapshotter } from "./snapshotter.ts";

await runService("snapshots", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  // "overlayfs" is the name every containerd client asks for by default.
  const overlay = new OverlaySnapshotter(join(ctx.root, "snapshots", "overlayfs"), db, ctx.log);
  const removed = await overlay.cleanup();
  if (removed.length > 0) ctx.log.info({ removed }, "removed orphan snapshot directories");
  const snapshotters = new Map<string, Snapshotter>([["overlayfs", overlay]]);
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
