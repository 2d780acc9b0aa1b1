// jobs: the BullMQ workers, started on demand by berthd when there is work and gone
// again once idle with nothing queued (BullMQ and its Redis client cost ~20 MiB, which
// an idle daemon need not pay): garbage collection (berth.internal.v1.Collector), and
// pulls and pushes (berth.services.transfer.v1.Transfer, public through the gateway).
import { CollectorDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { TransferDefinition } from "../../core/gen/berth/services/transfer/v1/transfer.ts";
import { idleExitMs, runService } from "../../core/grpc-server.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { warmUp } from "../../core/warm-up.ts";
import { startCollector } from "./gc/service.ts";
import { startTransfers } from "./transfer/index.ts";

await runService("jobs", (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const collector = startCollector(db, ctx.root, ctx.state, process.env.BERTH_REDIS_URL, ctx.log);
  server.add(CollectorDefinition, collector.service);
  const transfers = startTransfers(ctx.root, ctx.state, process.env.BERTH_REDIS_URL, ctx.log);
  server.add(TransferDefinition, transfers.service);
  return {
    afterListen() {
      collector.scheduler.start();
      transfers.start();
      // Kept running (berthd --keep-processes), it is there to make the first pull fast.
      if (idleExitMs() === undefined) void warmUp(ctx.log, () => transfers.warmUp());
    },
    busy: async () => (await collector.scheduler.busy()) || (await transfers.busy()),
    stopping: () => transfers.stopping(),
    async close() {
      await transfers.close();
      await collector.scheduler.close();
      db.close();
    },
  };
});
