// snapshots: the Snapshots service with the overlayfs and native snapshotters, each
// under <root>/snapshots/<name>, their records in the shared metadata database.
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { SweeperDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { snapshotsService, sweeperService } from "./service.ts";
import { loadSnapshotters } from "./load.ts";

await runService("snapshots", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const snapshotters = loadSnapshotters(ctx.root, db, ctx.log);
  for (const snapshotter of snapshotters.values()) {
    const removed = await snapshotter.cleanup();
    if (removed.length > 0) ctx.log.info({ removed }, "removed orphan snapshot directories");
  }
  const metadata = new MetadataClient(ctx.state, ctx.log);
  server.add(SnapshotsDefinition, snapshotsService(snapshotters, metadata, ctx.log));
  server.add(SweeperDefinition, sweeperService(snapshotters, ctx.log));
  return {
    // Retiring on idle waits for the directory deletions Remove left under way.
    busy: () => [...snapshotters.values()].some((snapshotter) => snapshotter.removing()),
    async close() {
      await Promise.all([...snapshotters.values()].map((snapshotter) => snapshotter.settled()));
      await metadata.flush();
      db.close();
    },
  };
});
