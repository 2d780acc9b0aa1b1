// The three workers of a pull (docs/pull-jobs.md):
// - blobs: one download into the content store, under the pull's lease, resumed from
//   what an earlier attempt (or a killed worker) left in the ingest; retried with
//   backoff when the registry or the link failed (5xx, reset), never on a 4xx;
// - layers: a pull's child per blob, which adds (or finds) the blob job and waits;
// - pulls: the flow's parent, run once every child is done: the manifest and indexes
//   stored with their gc labels, the image named, the layers unpacked, the lease gone.
import { UnrecoverableError, Worker, type Job } from "bullmq";
import { blobInfo, updateBlobLabels } from "../../../core/content-client.ts";
import { BerthError, errorKind, errorKinds } from "../../../core/errors.ts";
import { errorMessage } from "../../../core/grpc-client.ts";
import type { Descriptor, ImageIndex, ImageManifest } from "../../../core/image/manifest.ts";
import { deleteLease } from "../../../core/image/lease.ts";
import { isConfigType } from "../../../core/image/media-types.ts";
import { callOptions, type ImageServices } from "../../../core/image/services.ts";
import { saveImage } from "../../../core/image/import.ts";
import { unpackImage } from "../../../core/image/unpack.ts";
import { platformMatcher } from "../../../core/registry/resolve.ts";
import type { Logger } from "../../../core/log.ts";
import type { BlobFetcherClient } from "../../../core/gen/berth/internal/v1/fetch.ts";
import { addSource, distributionSourceLabel, ingestRef, parseRegistryReference, storePulledDocuments, type RemoteImage } from "../../../core/registry/index.ts";
import type { RegistryAccess } from "./access.ts";
import type { PullCancellations } from "./cancel.ts";
import { HostLimit } from "./host-limit.ts";
import { StreamedExtraction, type StreamedLayer } from "./stream-extract.ts";
import { blobJobId, queueNames, workerLock, type TransferQueues } from "./queues.ts";
import type { ServicesFor } from "./services.ts";

export interface BlobJobData {
  namespace: string;
  lease: string;
  /** registry/repository[:tag|@digest] the blob is fetched from. */
  ref: string;
  access: RegistryAccess;
  descriptor: Descriptor;
}

/** A layer job's data: its blob's, and the snapshotter to extract into while it downloads (none: the unpack extracts it). */
export interface LayerJobData extends BlobJobData {
  extractInto?: string;
}

export type BlobProgressData = { status: "downloading" | "verifying"; done: number; total: number };
export interface BlobResult {
  existed: boolean;
}

/** A layer's extraction during its download, still running or done, by `<lease> <layer digest>`: its pull's parent takes it. */
type InFlight = Map<string, Promise<StreamedLayer | undefined>>;
const inFlightKey = (lease: string, digest: string) => `${lease} ${digest}`;

export interface PullJobData {
  namespace: string;
  lease: string;
  image: StoredImage;
  platform: string;
  unpack: boolean;
  snapshotter: string;
}

/** The pull's own progress: how many layers are unpacked (the next one is being extracted). */
export type PullProgressData = { phase: "storing" | "unpacking"; extracted: number };

export interface PullResult {
  name: string;
  mediaType: string;
  digest: string;
  size: number;
  blobsPresent: number;
  blobsTotal: number;
  unpacked: boolean;
  snapshotter: string;
}

/** A resolved image as job data (JSON): documents in base64. */
export interface StoredImage {
  ref: string;
  name: string;
  root: Descriptor;
  indexes: { descriptor: Descriptor; index: ImageIndex; chosen: Descriptor }[];
  manifest: { descriptor: Descriptor; manifest: ImageManifest };
  documents: Record<string, string>;
  blobs: Descriptor[];
}

export function storedImage(image: RemoteImage, ref: string): StoredImage {
  return {
    ref,
    name: image.name,
    root: image.root,
    indexes: image.indexes,
    manifest: image.manifest,
    documents: Object.fromEntries([...image.documents].map(([digest, data]) => [digest, data.toString("base64")])),
    blobs: image.blobs,
  };
}

function remoteImage(stored: StoredImage, defaultRegistry?: string): RemoteImage {
  return {
    reference: parseRegistryReference(stored.ref, defaultRegistry),
    name: stored.name,
    root: stored.root,
    indexes: stored.indexes,
    manifest: stored.manifest,
    documents: new Map(Object.entries(stored.documents).map(([digest, data]) => [digest, Buffer.from(data, "base64")])),
    blobs: stored.blobs,
  };
}

const kinds = errorKinds.filter((kind) => kind !== "unknown");

/** A job's failure reason back as the BerthError it was (its kind is the message's suffix). */
export function errorFromReason(reason: string): BerthError {
  const kind = kinds.find((k) => reason.endsWith(`: ${k}`)) ?? "unknown";
  return new BerthError(kind, reason);
}

/** What a job throws: transient failures as they are (BullMQ retries), the rest never retried. */
export function jobFailure(err: unknown): Error {
  const kind = errorKind(err);
  const message = err instanceof BerthError ? err.message : `${errorMessage(err)}${kind === "unknown" ? "" : `: ${kind}`}`;
  if (kind === "unavailable") return new BerthError("unavailable", message);
  return new UnrecoverableError(message);
}

const progressEveryMs = 250;

/** Tries of one blob, and of one pull's final step; backoff doubles from 1 s. */
export const blobAttempts = 5;
export const retryBackoff = { type: "exponential", delay: 1000 } as const;

export interface PullWorkerOptions {
  queues: TransferQueues;
  services: ServicesFor;
  fetcher: BlobFetcherClient;
  log: Logger;
  /** Downloads at once per registry host. */
  perHost: number;
  /** Layers extracted at once while they download (0: none; the unpack does them all). */
  extractsWhileDownloading: number;
  cancels: PullCancellations;
}

async function fetchOne(job: Job<BlobJobData>, svc: ImageServices, fetcher: BlobFetcherClient, hosts: HostLimit, signal: AbortSignal): Promise<BlobResult> {
  const { descriptor: desc, lease, access } = job.data;
  const ref = parseRegistryReference(job.data.ref);
  const call = callOptions(svc, lease);
  const known = await blobInfo(svc.content, desc.digest, call);
  const sourceKey = distributionSourceLabel(ref.registry);
  const labels = { [sourceKey]: addSource(known?.labels[sourceKey], ref.repository) };
  if (known) {
    // Leased too (the pull's image will need it), as a write of an existing blob does.
    await svc.leases.addResource({ id: lease, resource: { id: desc.digest, type: "content" } }, callOptions(svc));
    await updateBlobLabels(svc.content, desc.digest, labels, call);
    return { existed: true };
  }
  // An image's config is one small document, as its manifest (fetched without a slot):
  // it takes no download slot, which the layers behind it would wait for.
  const slot = <T>(download: () => Promise<T>) => (isConfigType(desc.mediaType) ? download() : hosts.run(ref.registry, download));
  return slot(async () => {
    // Cancelled while it waited for a slot: the slot goes to the next download at once.
    signal.throwIfAborted();
    let last = 0;
    const report = (progress: BlobProgressData, force = false) => {
      const now = Date.now();
      if (!force && now - last < progressEveryMs) return;
      last = now;
      job.updateProgress(progress).catch(() => undefined);
    };
    // The content process downloads the blob into its ingest itself: only progress comes here.
    const request = {
      ref: job.data.ref,
      registry: { plainHttp: access.plainHttp, insecure: access.insecure, ...(access.credentials ? { credentials: access.credentials } : {}) },
      digest: desc.digest,
      mediaType: desc.mediaType,
      size: BigInt(desc.size),
      ingestRef: ingestRef(desc),
      labels,
    };
    try {
      for await (const progress of fetcher.fetch(request, { ...call, signal })) {
        const done = Number(progress.done);
        if (progress.committed) {
          if (progress.existed) await updateBlobLabels(svc.content, desc.digest, labels, call);
          else report({ status: "verifying", done, total: desc.size }, true);
          return { existed: progress.existed };
        }
        report({ status: "downloading", done, total: desc.size });
      }
    } catch (err) {
      // The job's own cancellation, as the signal's reason says (not the client's AbortError).
      if (signal.aborted) throw signal.reason;
      throw err;
    }
    throw new BerthError("unavailable", `fetch of ${desc.digest}: the content service ended the call without committing`);
  });
}

export function startPullWorkers(options: PullWorkerOptions): Worker[] {
  const { queues, services, log, cancels } = options;
  const hosts = new HostLimit(options.perHost);
  const extracts = new HostLimit(options.extractsWhileDownloading);
  const inFlight: InFlight = new Map();
  const common = { connection: queues.client, prefix: queues.prefix, autorun: false, ...workerLock };

  const blobs = new Worker<BlobJobData, BlobResult>(
    queueNames.blobs,
    async (job) => {
      const signal = cancels.startDownload(job.id!);
      try {
        return await fetchOne(job, services(job.data.namespace), options.fetcher, hosts, signal);
      } catch (err) {
        throw jobFailure(err);
      } finally {
        cancels.endDownload(job.id!);
      }
    },
    { ...common, concurrency: 8 },
  );

  const layers = new Worker<LayerJobData, BlobResult>(
    queueNames.layers,
    async (job) => {
      const id = blobJobId(job.data.namespace, job.data.descriptor.digest);
      const events = await queues.eventsOf(queueNames.blobs);
      const svc = services(job.data.namespace);
      const { extractInto, ...blobData } = job.data;
      // The blob job may have been added by another pull, under that pull's lease: ours
      // holds the blob as soon as it is there.
      const holdBlob = async (result: BlobResult) => {
        await svc.leases.addResource({ id: job.data.lease, resource: { id: job.data.descriptor.digest, type: "content" } }, callOptions(svc));
        return result;
      };
      // Its pull's caller went away: stop waiting (the pull then fails as canceled).
      const signal = job.parent?.id ? cancels.pullSignal(job.parent.id) : new AbortController().signal;
      const canceled = new Promise<never>((_, reject) => {
        const stop = () => reject(signal.reason as Error);
        if (signal.aborted) stop();
        else signal.addEventListener("abort", stop, { once: true });
      });
      canceled.catch(() => undefined);
      cancels.waitFor(id, job.id!);
      const streamed =
        extractInto && options.extractsWhileDownloading > 0 && !signal.aborted
          ? new StreamedExtraction({ svc, lease: job.data.lease, snapshotter: extractInto, layer: job.data.descriptor, blobJobId: id, blobEvents: events, limit: extracts, log })
          : undefined;
      try {
        const result = await waitForBlob();
        if (streamed) {
          // Left running, so the layer's pull can start on the other layers: its parent, in this process, waits for it.
          const extraction = streamed.finish();
          extraction.catch(() => undefined);
          inFlight.set(inFlightKey(job.data.lease, job.data.descriptor.digest), extraction);
        }
        return result;
      } catch (err) {
        await streamed?.discard();
        throw err;
      } finally {
        if (cancels.stopWaiting(id, job.id!, signal.aborted)) {
          // Not started yet: off the queue (a running one was aborted instead).
          await queues.queues.blobs.remove(id).catch(() => undefined);
        }
      }

      async function waitForBlob(): Promise<BlobResult> {
        // The blob job may finish and be removed between add and wait (then it reads as
        // failed with no reason that we know): the content store has the last word.
        for (let attempt = 0; ; attempt++) {
          signal.throwIfAborted();
          const blobJob = await queues.queues.blobs.add("fetch", blobData, {
            jobId: id,
            attempts: blobAttempts,
            backoff: retryBackoff,
            removeOnComplete: true,
            removeOnFail: true,
          });
          try {
            const result = (await Promise.race([blobJob.waitUntilFinished(events), canceled])) as BlobResult;
            return await holdBlob(result);
          } catch (err) {
            if (err instanceof BerthError || errorKind(err) !== "unknown") throw jobFailure(err);
            const reason = (err as Error).message;
            if (await blobInfo(svc.content, job.data.descriptor.digest, callOptions(svc)).catch(() => undefined)) return await holdBlob({ existed: false });
            if (/^(Missing key|Job .* (not found|does not exist))|^$/i.test(reason) && attempt < 3) continue;
            // Another pull's cancellation stopped the download just as this one came to wait for it.
            if (/: canceled$/.test(reason) && !signal.aborted && attempt < 3) continue;
            throw new UnrecoverableError(reason);
          }
        }
      }
    },
    // They only wait: many at once cost nothing.
    { ...common, concurrency: 64 },
  );

  const pulls = new Worker<PullJobData, PullResult>(
    queueNames.pulls,
    async (job) => {
      const svc = services(job.data.namespace);
      const final = () => job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // This pull's layers extracted (or being extracted) during their download; a retry finds none left.
      const extracted = new Map<string, Promise<StreamedLayer | undefined>>();
      for (const desc of job.data.image.manifest.manifest.layers) {
        const key = inFlightKey(job.data.lease, desc.digest);
        const extraction = inFlight.get(key);
        if (!extraction) continue;
        inFlight.delete(key);
        extracted.set(desc.digest, extraction);
      }
      try {
        const failures = Object.values(await job.getIgnoredChildrenFailures());
        if (failures.length > 0) throw new UnrecoverableError(failures[0]!);
        const result = await finishPull(job, svc, extracted);
        cancels.forget(job.id!);
        return result;
      } catch (err) {
        const failure = err instanceof UnrecoverableError ? err : jobFailure(err);
        // What the pull stored goes with its lease (collected once nothing else holds it).
        if (failure instanceof UnrecoverableError || final()) {
          // Extraction snapshots the unpack did not get to (removing one it removed or committed finds nothing).
          for (const extraction of extracted.values()) {
            const e = await extraction.catch(() => undefined);
            if (e) await svc.snapshots.remove({ snapshotter: e.snapshotter, key: e.key }, callOptions(svc, job.data.lease)).catch(() => undefined);
          }
          await deleteLease(svc, job.data.lease).catch(() => undefined);
          cancels.forget(job.id!);
        }
        log.warn({ job: job.id, err: failure.message }, "pull failed");
        throw failure;
      }
    },
    { ...common, concurrency: 2 },
  );
  return [blobs, layers, pulls];
}

async function finishPull(job: Job<PullJobData>, svc: ImageServices, streamed: ReadonlyMap<string, Promise<StreamedLayer | undefined>>): Promise<PullResult> {
  const { lease, unpack } = job.data;
  const image = remoteImage(job.data.image);
  const admin = callOptions(svc);
  // A blob another pull downloaded is held by that pull's lease: hold it by ours too.
  await Promise.all([
    ...image.blobs.map((desc) => svc.leases.addResource({ id: lease, resource: { id: desc.digest, type: "content" } }, admin)),
    job.updateProgress({ phase: "storing", extracted: 0 } satisfies PullProgressData),
  ]);
  await storePulledDocuments(svc, image, lease);
  // Named while its layers unpack (it was named before the unpack began, so a failed
  // unpack still fails the pull with the image named); both end before the pull does,
  // so a failure's clean-up never runs beside the other.
  const [named, unpacked] = await Promise.allSettled([saveImage(svc, { name: image.name, target: image.root }, lease), unpack ? unpackLayers() : undefined]);
  if (named.status === "rejected") throw named.reason;
  if (unpacked.status === "rejected") throw unpacked.reason;
  await deleteLease(svc, lease);
  return {
    name: image.name,
    mediaType: image.root.mediaType,
    digest: image.root.digest,
    size: image.blobs.reduce((sum, d) => sum + d.size, 0),
    // Every blob is in the store by now: each child job held it, or the pull failed before.
    blobsPresent: image.blobs.length,
    blobsTotal: image.blobs.length,
    unpacked: unpack,
    snapshotter: unpacked.value?.snapshotter ?? job.data.snapshotter,
  };

  async function unpackLayers() {
    let extracted = 0;
    await job.updateProgress({ phase: "unpacking", extracted } satisfies PullProgressData);
    return unpackImage(svc, image.root, {
      lease,
      ...(job.data.snapshotter ? { snapshotter: job.data.snapshotter } : {}),
      platform: platformMatcher(job.data.platform || undefined),
      extracted: streamed,
      onLayer: () => {
        extracted++;
        job.updateProgress({ phase: "unpacking", extracted } satisfies PullProgressData).catch(() => undefined);
      },
    });
  }
}
