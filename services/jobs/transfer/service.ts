// berth.services.transfer.v1.Transfer: a Pull resolves the reference (here, so a bad
// name or a missing tag fails the call at once), then adds the pull's flow — or finds
// the same pull under way and attaches to it — and streams the progress its jobs
// publish until the image is stored. Push is one job, streamed the same way.
import { randomBytes } from "node:crypto";
import { Job } from "bullmq";
import type { CallContext } from "nice-grpc";
import { blobInfo } from "../../../core/content-client.ts";
import { fromClientError, invalidArgument, unavailable } from "../../../core/errors.ts";
import {
  LayerStatus,
  type BlobProgress,
  type PullProgress,
  type PullRequest,
  type PushProgress,
  type PushRequest,
  type TransferServiceImplementation,
  type TransferredImage,
} from "../../../core/gen/berth/services/transfer/v1/transfer.ts";
import { createLease } from "../../../core/image/lease.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { callOptions } from "../../../core/image/services.ts";
import { rebasingSnapshotters, resolveSnapshotter } from "../../../core/image/unpack.ts";
import { namespaceOf } from "../../../core/grpc-server.ts";
import { parseRegistryReference, platformMatcher, referenceString, resolve } from "../../../core/registry/index.ts";
import { snapshotterNames } from "../../../core/routes.ts";
import { accessOf, registryClient, registrySettings } from "./access.ts";
import {
  blobAttempts,
  errorFromReason,
  retryBackoff,
  storedImage,
  type BlobJobData,
  type LayerJobData,
  type BlobProgressData,
  type BlobResult,
  type PullJobData,
  type PullProgressData,
  type PullResult,
} from "./pull-jobs.ts";
import type { PullCancellations } from "./cancel.ts";
import type { PushBlobStatus, PushJobData, PushProgressData } from "./push-job.ts";
import { blobJobId, layerJobId, pullJobId, pushJobId, queueNames, type TransferQueues } from "./queues.ts";
import type { ServicesFor } from "./services.ts";
import { Watch } from "./watch.ts";

const pullAttempts = 3;

function transferred(result: PullResult): TransferredImage {
  return { ...result, size: BigInt(result.size) };
}

/**
 * A finished pull or push stays a while, so a watcher that missed its last event (a
 * reader that was not listening yet) still finds the outcome; a new request for the same
 * work replaces it (liveJob).
 */
const keepOutcome = { removeOnComplete: { age: 600 }, removeOnFail: { age: 600 } };
const outcomeCheckMs = 1000;

/** Settles the watch from the job's state, for events the watch did not see. */
function checkOutcome(queue: TransferQueues["queues"]["pulls"], id: string, watch: Watch<PullResult>): NodeJS.Timeout {
  const timer = setInterval(() => {
    void (async () => {
      const state = await queue.getJobState(id);
      // The job is read after its state: one read before could predate the outcome (the
      // job ending in between), with no result or reason yet ("berthctl: failed").
      const job = state === "completed" || state === "failed" ? await Job.fromId(queue, id) : undefined;
      if (state === "completed" && job) watch.finish(job.returnvalue as PullResult);
      else if (state === "failed" && job) watch.fail(errorFromReason(job.failedReason || "failed"));
      else if (state === "unknown" || ((state === "completed" || state === "failed") && !job)) watch.fail(unavailable(`${id}: the job is gone without an outcome; ask again`));
    })().catch(() => undefined);
  }, outcomeCheckMs);
  timer.unref();
  return timer;
}

/** A job that is still going (not finished, not gone). */
async function liveJob(queue: TransferQueues["queues"]["pulls"], id: string): Promise<boolean> {
  const job = await Job.fromId(queue, id);
  if (!job) return false;
  const state = await job.getState();
  if (state === "completed" || state === "failed" || state === "unknown") {
    await job.remove().catch(() => undefined);
    return false;
  }
  return true;
}

function validatePlatform(platform: string): void {
  if (platform !== "") platformMatcher(platform);
}

/** Failures of the services called on the way keep their status (a NOT_FOUND stays one). */
async function* keepingStatus<T>(what: string, stream: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    return yield* stream;
  } catch (err) {
    throw fromClientError(err, what);
  }
}

/** A cancelled pull under way ends within moments (its jobs stop waiting); a new one waits that long at most. */
const cancelledPullEndMs = 30_000;

export function transferService(queues: TransferQueues, services: ServicesFor, cancels: PullCancellations): TransferServiceImplementation {
  return {
    pull: (request, ctx) => keepingStatus("pull", pull(request, ctx)),
    push: (request, ctx) => keepingStatus("push", push(request, ctx)),
  };

  async function* pull(request: PullRequest, ctx: CallContext): AsyncGenerator<PullProgress> {
      const namespace = namespaceOf(ctx);
      if (request.ref === "") throw invalidArgument("pull: an image reference is required");
      if (request.snapshotter !== "" && !(snapshotterNames as readonly string[]).includes(request.snapshotter)) {
        throw invalidArgument(`pull: unknown snapshotter "${request.snapshotter}" (known: ${snapshotterNames.join(", ")})`);
      }
      validatePlatform(request.platform);
      const access = accessOf(request.registry);
      const ref = parseRegistryReference(request.ref, registrySettings().defaultRegistry);
      const client = registryClient(access, ref.registry);
      // The event readers' Redis connections (made once per process) are made while
      // the manifest GETs go out.
      const eventsReady = Promise.all([queues.eventsOf(queueNames.blobs), queues.eventsOf(queueNames.pulls)]);
      eventsReady.catch(() => undefined);
      let image;
      try {
        image = await resolve(client, ref, request.platform ? { platform: request.platform } : {});
      } finally {
        await client.close();
      }
      const svc = services(namespace);
      const pullId = pullJobId(namespace, image.name, image.root.digest, request.platform, request.unpack, request.snapshotter);
      // What the namespace holds before: those blobs read "exists", not "downloaded".
      const blobs = image.blobs.map((desc) => ({ desc, status: LayerStatus.LAYER_STATUS_WAITING as LayerStatus, done: 0, total: desc.size }));
      await Promise.all(
        blobs.map(async (b) => {
          if (await blobInfo(svc.content, b.desc.digest, callOptions(svc))) {
            b.status = LayerStatus.LAYER_STATUS_EXISTS;
            b.done = b.total;
          }
        }),
      );
      const byBlobJob = new Map(blobs.map((b) => [blobJobId(namespace, b.desc.digest), b]));
      const layerIndex = new Map(image.manifest.manifest.layers.map((l, i) => [l.digest, i]));
      let extracted = -1;

      const watch = new Watch<PullResult>();
      const [blobEvents, pullEvents] = await eventsReady;
      const onBlobProgress = ({ jobId, data }: { jobId: string; data: BlobProgressData }) => {
        const b = byBlobJob.get(jobId);
        if (!b || b.status === LayerStatus.LAYER_STATUS_EXISTS || typeof data !== "object") return;
        b.status = data.status === "verifying" ? LayerStatus.LAYER_STATUS_VERIFYING : LayerStatus.LAYER_STATUS_DOWNLOADING;
        b.done = data.done;
        watch.changed();
      };
      const onBlobDone = ({ jobId, returnvalue }: { jobId: string; returnvalue: BlobResult }) => {
        const b = byBlobJob.get(jobId);
        if (!b || b.status === LayerStatus.LAYER_STATUS_EXISTS) return;
        b.status = returnvalue?.existed ? LayerStatus.LAYER_STATUS_EXISTS : LayerStatus.LAYER_STATUS_DOWNLOADED;
        b.done = b.total;
        watch.changed();
      };
      watch.on(blobEvents, "progress", onBlobProgress as never);
      watch.on(blobEvents, "completed", onBlobDone as never);
      watch.on(pullEvents, `progress:${pullId}`, (({ data }: { data: PullProgressData }) => {
        for (const b of blobs) if (b.status !== LayerStatus.LAYER_STATUS_EXISTS) [b.status, b.done] = [LayerStatus.LAYER_STATUS_DOWNLOADED, b.total];
        if (data?.phase === "unpacking") extracted = data.extracted;
        watch.changed();
      }) as never);
      watch.on(pullEvents, `completed:${pullId}`, (({ returnvalue }: { returnvalue: PullResult }) => watch.finish(returnvalue)) as never);
      watch.on(pullEvents, `failed:${pullId}`, (({ failedReason }: { failedReason: string }) => watch.fail(errorFromReason(failedReason || "pull failed"))) as never);

      cancels.attach(pullId);
      try {
        // The same pull, cancelled a moment ago (ctrl-C, then the same command again):
        // it is let end first, then started afresh, rather than joined to fail.
        for (const until = Date.now() + cancelledPullEndMs; cancels.isCancelled(pullId) && Date.now() < until; ) {
          if (!(await liveJob(queues.queues.pulls, pullId))) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        if (await liveJob(queues.queues.pulls, pullId)) {
          // Attached to a pull under way: what its downloads have done so far.
          for (const id of byBlobJob.keys()) {
            const job = await Job.fromId(queues.queues.blobs, id);
            if (job && typeof job.progress === "object") onBlobProgress({ jobId: id, data: job.progress as BlobProgressData });
          }
        } else {
          const lease = await createLease(svc, { id: pullId, reuse: true, labels: { "berth.io/pull": image.name } });
          const flow = `${pullId}.${randomBytes(4).toString("hex")}`;
          const blobData = (desc: Descriptor): BlobJobData => ({ namespace, lease, ref: referenceString(image.reference), access, descriptor: desc });
          // Layers extract while they download into a snapshotter that rebases at commit (unpack.ts).
          const extractInto = request.unpack ? await resolveSnapshotter(svc, request.snapshotter).catch(() => "") : "";
          const streamable = new Set(rebasingSnapshotters.has(extractInto) ? image.manifest.manifest.layers.map((l) => l.digest) : []);
          const layerData = (desc: Descriptor): LayerJobData => ({ ...blobData(desc), ...(streamable.has(desc.digest) ? { extractInto } : {}) });
          const data: PullJobData = { namespace, lease, image: storedImage(image, referenceString(image.reference)), platform: request.platform, unpack: request.unpack, snapshotter: request.snapshotter };
          await queues.flows.add({
            name: "pull",
            queueName: queueNames.pulls,
            data,
            opts: { jobId: pullId, attempts: pullAttempts, backoff: retryBackoff, ...keepOutcome },
            children: [...new Map(image.blobs.map((d) => [d.digest, d])).values()].map((desc) => ({
              name: "layer",
              queueName: queueNames.layers,
              data: layerData(desc),
              opts: { jobId: layerJobId(flow, desc.digest), attempts: blobAttempts, backoff: retryBackoff, ignoreDependencyOnFailure: true, removeOnComplete: true, removeOnFail: { age: 3600 } },
            })),
          });
        }
        const outcome = checkOutcome(queues.queues.pulls, pullId, watch);
        watch.onClose(() => clearInterval(outcome));
        const view = (result?: PullResult): PullProgress => ({
          name: image.name,
          blobs: blobs.map((b): BlobProgress => {
            let status = b.status;
            const index = layerIndex.get(b.desc.digest);
            if (result) status = status === LayerStatus.LAYER_STATUS_EXISTS ? status : LayerStatus.LAYER_STATUS_DONE;
            else if (extracted >= 0 && index !== undefined && status !== LayerStatus.LAYER_STATUS_EXISTS) {
              status = index < extracted ? LayerStatus.LAYER_STATUS_DONE : index === extracted ? LayerStatus.LAYER_STATUS_EXTRACTING : status;
            }
            return { digest: b.desc.digest, mediaType: b.desc.mediaType, status, done: BigInt(b.done), total: BigInt(b.total) };
          }),
          image: result ? transferred(result) : undefined,
        });
        yield* watch.stream(view, ctx.signal);
      } finally {
        watch.close();
        cancels.detach(pullId, ctx.signal.aborted && !watch.settled);
      }
  }

  async function* push(request: PushRequest, ctx: CallContext): AsyncGenerator<PushProgress> {
      const namespace = namespaceOf(ctx);
      if (request.source === "") throw invalidArgument("push: the local image to push is required");
      validatePlatform(request.platform);
      const target = referenceString(parseRegistryReference(request.ref || request.source, registrySettings().defaultRegistry));
      const svc = services(namespace);
      // Fails the call at once (NOT_FOUND) rather than a job later.
      await svc.images.get({ name: request.source }, callOptions(svc));
      const id = pushJobId(namespace, request.source, target, request.platform);
      const watch = new Watch<PullResult>();
      const events = await queues.eventsOf(queueNames.pushes);
      let blobs: PushProgressData["blobs"] = [];
      watch.on(events, `progress:${id}`, (({ data }: { data: PushProgressData }) => {
        blobs = data?.blobs ?? blobs;
        watch.changed();
      }) as never);
      watch.on(events, `completed:${id}`, (({ returnvalue }: { returnvalue: PullResult }) => watch.finish(returnvalue)) as never);
      watch.on(events, `failed:${id}`, (({ failedReason }: { failedReason: string }) => watch.fail(errorFromReason(failedReason || "push failed"))) as never);
      try {
        if (!(await liveJob(queues.queues.pushes, id))) {
          const data: PushJobData = { namespace, source: request.source, ref: target, platform: request.platform, access: accessOf(request.registry) };
          await queues.queues.pushes.add("push", data, { jobId: id, attempts: pullAttempts, backoff: retryBackoff, ...keepOutcome });
        }
        const outcome = checkOutcome(queues.queues.pushes, id, watch);
        watch.onClose(() => clearInterval(outcome));
        const statuses: Record<PushBlobStatus, LayerStatus> = {
          waiting: LayerStatus.LAYER_STATUS_WAITING,
          uploading: LayerStatus.LAYER_STATUS_UPLOADING,
          exists: LayerStatus.LAYER_STATUS_EXISTS,
          mounted: LayerStatus.LAYER_STATUS_MOUNTED,
          done: LayerStatus.LAYER_STATUS_DONE,
        };
        yield* watch.stream(
          (result?: PullResult): PushProgress => ({
            name: target,
            blobs: blobs.map((b) => ({ digest: b.digest, mediaType: b.mediaType, status: statuses[b.status], done: BigInt(b.done), total: BigInt(b.total) })),
            image: result ? transferred(result) : undefined,
          }),
          ctx.signal,
        );
      } finally {
        watch.close();
      }
  }
}
