// snapshots: the Snapshots service with the overlayfs snapshotter, under <root>/snapshots.
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { NamespaceUsageDefinition } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import { OverlaySnapshotter } from "./overlay.ts";
import { namespaceUsageService, snapshotsService } from "./service.ts";
import type { Snapshotter } from "./snapshotter.ts";

await runService("snapshots", async (server, ctx) => {
  // "overlayfs" is the name every containerd client asks for by default.
  const overlay = new OverlaySnapshotter(join(ctx.root, "snapshots", "overlayfs"), ctx.log);
  const removed = await overlay.cleanup();
  if (removed.length > 0) ctx.log.info({ removed }, "removed orphan snapshot directories");
  const snapshotters = new Map<string, Snapshotter>([["overlayfs", overlay]]);
  const metadata = new MetadataClient(ctx.state, ctx.log);
  server.add(SnapshotsDefinition, snapshotsService(snapshotters, metadata, ctx.log));
  server.add(NamespaceUsageDefinition, namespaceUsageService(snapshotters, metadata));
  return {
    async close() {
      await metadata.flush();
      overlay.close();
    },
  };
});
