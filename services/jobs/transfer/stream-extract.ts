// A layer extracted while it downloads (docs/pull-jobs.md, "Extraction during the
// download"). Once the layer's blob job reports its first bytes, the layer job prepares
// a parentless snapshot and asks diff to apply the blob from its growing ingest; diff
// hashes the bytes as they come and refuses a mismatch. The pull's parent then only
// commits the snapshot onto its parent (core/image/unpack.ts `extracted`). Anything
// that goes wrong here leaves the layer to the parent's ordinary extraction: this is
// only ever a head start.
import type { QueueEvents } from "bullmq";
import type { Logger } from "../../../core/log.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { asUpperDir, type PreExtracted } from "../../../core/image/unpack.ts";
import { callOptions, type ImageServices } from "../../../core/image/services.ts";
import { ingestPayload } from "../../../core/image/ingest-payload.ts";
import { ingestRef } from "../../../core/registry/index.ts";
import { errorMessage } from "../../../core/grpc-client.ts";
import { leaseId } from "../../../core/ids.ts";
import type { HostLimit } from "./host-limit.ts";

/** A layer job's outcome for its pull: the snapshot its layer was extracted into, if any. */
export type StreamedLayer = PreExtracted & { digest: string };

export interface StreamedExtractionOptions {
  svc: ImageServices;
  lease: string;
  snapshotter: string;
  layer: Descriptor;
  /** The blob job whose progress says the download has begun. */
  blobJobId: string;
  blobEvents: QueueEvents;
  /** Extractions at once in this process (one key): they compete with the downloads for the CPU. */
  limit: HostLimit;
  log: Logger;
}

const limitKey = "extract";

export class StreamedExtraction {
  private readonly options: StreamedExtractionOptions;
  private readonly abort = new AbortController();
  private started: Promise<StreamedLayer | undefined> | undefined;
  /** The extraction holds a slot and runs (a start still waiting for one is dropped at close). */
  private running = false;
  private closed = false;

  /** Call before the blob job is added, so its first progress event cannot be missed. */
  constructor(options: StreamedExtractionOptions) {
    this.options = options;
    options.blobEvents.on("progress", this.onProgress);
  }

  private readonly onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
    if (jobId !== this.options.blobJobId || this.started || this.closed) return;
    if ((data as { status?: string } | undefined)?.status !== "downloading") return;
    this.started = this.options.limit.run(limitKey, () => (this.closed ? Promise.resolve(undefined) : this.extract()));
    this.started.catch(() => undefined);
  };

  private async extract(): Promise<StreamedLayer | undefined> {
    this.running = true;
    const { svc, lease, snapshotter, layer, log } = this.options;
    const call = { ...callOptions(svc, lease), signal: this.abort.signal };
    const key = `extract-${leaseId()} ${layer.digest}`;
    let mounts;
    try {
      mounts = (await svc.snapshots.prepare({ snapshotter, key, parent: "", labels: {} }, call)).mounts;
    } catch (err) {
      log.info({ layer: layer.digest, err: errorMessage(err) }, "no extraction during the download: prepare failed");
      return undefined;
    }
    try {
      const diff = { mediaType: layer.mediaType, digest: layer.digest, size: BigInt(layer.size), annotations: layer.annotations ?? {} };
      const { applied } = await svc.diff.apply({ diff, mounts: asUpperDir(mounts), payloads: ingestPayload(ingestRef(layer)) }, call);
      if (!applied) throw new Error("Apply replied without the applied descriptor");
      return { digest: layer.digest, snapshotter, key, diffId: applied.digest, annotations: applied.annotations };
    } catch (err) {
      await this.remove(key);
      if (!this.abort.signal.aborted) log.info({ layer: layer.digest, err: errorMessage(err) }, "extraction during the download failed: left to the unpack");
      return undefined;
    }
  }

  private async remove(key: string): Promise<void> {
    const { svc, lease, snapshotter } = this.options;
    await svc.snapshots.remove({ snapshotter, key }, callOptions(svc, lease)).catch(() => undefined);
  }

  private close(): void {
    this.closed = true;
    this.options.blobEvents.off("progress", this.onProgress);
  }

  /** The blob is stored: the extraction's snapshot once it is done, or undefined when none began. */
  async finish(): Promise<StreamedLayer | undefined> {
    this.close();
    return this.running ? await this.started : undefined;
  }

  /** The blob failed (or the pull went away): stops the extraction and removes its snapshot. */
  async discard(): Promise<void> {
    this.close();
    this.abort.abort();
    const extracted = this.running ? await this.started?.catch(() => undefined) : undefined;
    if (extracted) await this.remove(extracted.key);
  }
}
