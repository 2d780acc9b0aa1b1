// The content service process: content-addressed blobs and ingests under <root>/content,
// their rows in the shared metadata database.
import { idleExitMs, runService } from "../../core/grpc-server.ts";
import { warmUp } from "../../core/warm-up.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { NamespacedWrites, openMetadataDatabase } from "../../core/metadata-db.ts";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { SweeperDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { BlobFetcherDefinition } from "../../core/gen/berth/internal/v1/fetch.ts";
import { contentRootOf } from "./layout.ts";
import { SqliteContentStore } from "./store.ts";
import { IngestStore } from "./ingest.ts";
import { RefLocks } from "./locks.ts";
import { contentService, sweepContent, sweeperService } from "./service.ts";

await runService("content", (server, ctx) => {
  const root = contentRootOf(ctx.root);
  const db = openMetadataDatabase(ctx.root);
  const writes = new NamespacedWrites(db);
  const store = new SqliteContentStore(root, writes);
  const ingests = new IngestStore(root);
  const swept = ingests.sweep();
  if (swept > 0) ctx.log.info({ swept }, "removed unfinished ingest dirs");
  const deps = { store, ingests, locks: new RefLocks(), writes, metadata: new MetadataClient(ctx.state, ctx.log) };
  // Blob files a crash left between a collection's row deletes and their unlink, and
  // ingests their writers abandoned.
  const orphans = sweepContent(deps);
  if (orphans.length > 0) ctx.log.info({ removed: orphans.length }, "removed unreferenced blob files and abandoned ingests");
  server.add(BulkContentDefinition, contentService(deps));
  server.add(SweeperDefinition, sweeperService(deps));
  // The registry client (undici, auth, TLS) loads with the first fetch: a content
  // process started for anything else does not pay for it.
  server.add(BlobFetcherDefinition, {
    async *fetch(request, callCtx) {
      const { fetchBlob } = await import("./fetch.ts");
      yield* fetchBlob(deps, request, callCtx);
    },
  });
  return {
    // Kept running (berthd --keep-processes: no idle exit), it is there to answer the next
    // pull at once: the registry client loads and runs once now (core/registry/warm-up.ts),
    // not in the first download's time.
    afterListen() {
      if (idleExitMs() === undefined) void warmUp(ctx.log, async () => (await import("./fetch.ts")).warmUpFetch());
    },
    async close() {
      await deps.metadata.flush();
      db.close();
    },
  };
});
