// The content service process: content-addressed blobs and ingests under <root>/content,
// their rows in the shared metadata database.
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { NamespacedWrites, openMetadataDatabase } from "../../core/metadata-db.ts";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { SweeperDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { SqliteContentStore } from "./store.ts";
import { IngestStore } from "./ingest.ts";
import { RefLocks } from "./locks.ts";
import { contentService, sweeperService } from "./service.ts";

await runService("content", (server, ctx) => {
  const root = join(ctx.root, "content");
  const db = openMetadataDatabase(ctx.root);
  const writes = new NamespacedWrites(db);
  const store = new SqliteContentStore(root, writes);
  const ingests = new IngestStore(root);
  const swept = ingests.sweep();
  if (swept > 0) ctx.log.info({ swept }, "removed unfinished ingest dirs");
  // Blob files a crash left between a collection's row deletes and their unlink.
  const orphans = store.sweep();
  if (orphans.length > 0) ctx.log.info({ removed: orphans.length }, "removed unreferenced blob files");
  const deps = { store, ingests, locks: new RefLocks(), writes, metadata: new MetadataClient(ctx.state, ctx.log) };
  server.add(BulkContentDefinition, contentService(deps));
  server.add(SweeperDefinition, sweeperService(deps));
  return {
    async close() {
      await deps.metadata.flush();
      db.close();
    },
  };
});
