// Pulls and pushes as durable BullMQ jobs (docs/pull-jobs.md): the queues, the workers
// and the gRPC service of the jobs process.
import type { Worker } from "bullmq";
import type { TransferServiceImplementation } from "../../../core/gen/berth/services/transfer/v1/transfer.ts";
import type { Logger } from "../../../core/log.ts";
import { PullCancellations } from "./cancel.ts";
import { startPullWorkers } from "./pull-jobs.ts";
import { startPushWorker } from "./push-job.ts";
import { TransferQueues } from "./queues.ts";
import { transferService } from "./service.ts";
import { blobFetcher, jobServices } from "./services.ts";
import { warmUpPull } from "./warm-up.ts";

/**
 * Layer downloads at once per registry host, whichever pulls they serve
 * (BERTH_PULL_PER_HOST, default 4): a layer waiting for a slot downloads alone at the
 * end, after the others (docs/pull-jobs.md).
 */
const perHost = Number(process.env.BERTH_PULL_PER_HOST) || 4;

/**
 * Layers extracted at once while they download (BERTH_PULL_EXTRACTS, default: as many as
 * one registry's downloads; 0 turns it off): a layer left without a slot is extracted
 * only after every download, which is what the pull then waits for (docs/pull-jobs.md).
 */
const extractsWhileDownloading = process.env.BERTH_PULL_EXTRACTS === undefined || process.env.BERTH_PULL_EXTRACTS === "" ? perHost : Math.max(0, Number(process.env.BERTH_PULL_EXTRACTS) || 0);

export function startTransfers(root: string, state: string, redisUrl: string | undefined, log: Logger) {
  const queues = new TransferQueues(redisUrl, root);
  const services = jobServices(state);
  const cancels = new PullCancellations();
  const workers: Worker[] = [...startPullWorkers({ queues, services, fetcher: blobFetcher(state), log, perHost, extractsWhileDownloading, cancels }), startPushWorker(queues, services, log)];
  for (const worker of workers) worker.on("error", (err) => log.warn({ err: err.message, queue: worker.name }, "transfer queue error"));
  const service: TransferServiceImplementation = transferService(queues, services, cancels);
  return {
    service,
    start(): void {
      for (const worker of workers) void worker.run();
    },
    /** A kept process runs a pull's own steps once (warm-up.ts); failures only cost the first pull the time. */
    warmUp: () => warmUpPull(services),
    busy: () => queues.busy(),
    /** Calls are about to be cut: that is no caller going away, so no pull is cancelled. */
    stopping: () => cancels.stop(),
    async close(): Promise<void> {
      await Promise.allSettled(workers.map((w) => w.close(true)));
      await queues.close();
    },
  };
}
