// jobs: the BullMQ workers, started on demand by berthd when there is work and gone
// again once idle with nothing queued (BullMQ and its Redis client cost ~20 MiB, which
// an idle daemon need not pay). Today: garbage collection (berth.internal.v1.Collector).
import { CollectorDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { runService } from "../../core/grpc-server.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { startCollector } from "./gc/service.ts";

await runService("jobs", (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const collector = startCollector(db, ctx.root, ctx.state, process.env.BERTH_REDIS_URL, ctx.log);
  server.add(CollectorDefinition, collector.service);
  return {
    afterListen() {
      collector.scheduler.start();
    },
    busy: () => collector.scheduler.busy(),
    async close() {
      await collector.scheduler.close();
      db.close();
    },
  };
});
