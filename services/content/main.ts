// The content service process: content-addressed blobs and ingests under <root>/content.
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { NamespaceUsageDefinition } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import { SqliteContentStore } from "./store.ts";
import { IngestStore } from "./ingest.ts";
import { RefLocks } from "./locks.ts";
import { contentService, namespaceUsageService } from "./service.ts";

await runService("content", (server, ctx) => {
  const root = join(ctx.root, "content");
  const store = new SqliteContentStore(root);
  const ingests = new IngestStore(root);
  const swept = ingests.sweep();
  if (swept > 0) ctx.log.info({ swept }, "removed unfinished ingest dirs");
  const deps = {
    store,
    ingests,
    locks: new RefLocks(),
    metadata: new MetadataClient(ctx.state, ctx.log),
  };
  server.add(BulkContentDefinition, contentService(deps));
  server.add(NamespaceUsageDefinition, namespaceUsageService(deps));
  return {
    async close() {
      await deps.metadata.flush();
      store.close();
    },
  };
});
