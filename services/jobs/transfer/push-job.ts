// The push worker: one job per (namespace, source, target, platform) running the
// registry library's pushImage, its per-blob progress published as the job's progress.
// Transient failures (5xx, resets) are retried with backoff by BullMQ — blobs the
// registry got on an earlier attempt are found there (HEAD) and not sent again — and
// the rest fail at once.
import { Worker } from "bullmq";
import type { Logger } from "../../../core/log.ts";
import { parseRegistryReference, pushImage, type PushEvent } from "../../../core/registry/index.ts";
import { registryClient, type RegistryAccess } from "./access.ts";
import { jobFailure, type PullResult } from "./pull-jobs.ts";
import { queueNames, workerLock, type TransferQueues } from "./queues.ts";
import type { ServicesFor } from "./services.ts";

export interface PushJobData {
  namespace: string;
  source: string;
  ref: string;
  platform: string;
  access: RegistryAccess;
}

export type PushBlobStatus = "waiting" | "uploading" | "exists" | "mounted" | "done";
export interface PushBlobState {
  digest: string;
  mediaType: string;
  status: PushBlobStatus;
  done: number;
  total: number;
}
export type PushProgressData = { blobs: PushBlobState[] };

const progressEveryMs = 250;

export function startPushWorker(queues: TransferQueues, services: ServicesFor, log: Logger): Worker {
  return new Worker<PushJobData, PullResult>(
    queueNames.pushes,
    async (job) => {
      const { namespace, source, ref, platform, access } = job.data;
      const target = parseRegistryReference(ref);
      const client = registryClient(access, target.registry);
      const blobs = new Map<string, PushBlobState>();
      let last = 0;
      const publish = (force: boolean) => {
        const now = Date.now();
        if (!force && now - last < progressEveryMs) return;
        last = now;
        job.updateProgress({ blobs: [...blobs.values()] } satisfies PushProgressData).catch(() => undefined);
      };
      const onProgress = (e: PushEvent) => {
        if (e.type === "manifest") return;
        const d = e.descriptor;
        const state = blobs.get(d.digest) ?? { digest: d.digest, mediaType: d.mediaType, status: "waiting", done: 0, total: d.size };
        blobs.set(d.digest, state);
        const before = state.status;
        if (e.type === "progress") {
          state.status = "uploading";
          state.done = e.sent;
        } else {
          state.status = e.type === "uploaded" ? "done" : e.type;
          state.done = d.size;
        }
        publish(state.status !== before);
      };
      try {
        const result = await pushImage(client, services(namespace), source, target, { ...(platform ? { platform } : {}), onProgress });
        publish(true);
        const all = [...blobs.values()];
        return {
          name: result.name,
          mediaType: result.root.mediaType,
          digest: result.root.digest,
          size: all.reduce((sum, b) => sum + b.total, 0),
          blobsPresent: all.length,
          blobsTotal: all.length,
          unpacked: false,
          snapshotter: "",
        };
      } catch (err) {
        const failure = jobFailure(err);
        log.warn({ job: job.id, err: failure.message }, "push failed");
        throw failure;
      } finally {
        await client.close();
      }
    },
    { connection: queues.client, prefix: queues.prefix, autorun: false, concurrency: 2, ...workerLock },
  );
}
