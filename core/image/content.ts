// Blob I/O over the Content service: reading (whole or streamed), label updates,
// and a streaming writer for the lockstep Content/Write protocol (reference §1.9)
// that never needs the whole blob in memory.
import { Status } from "nice-grpc";
import { WriteAction, type WriteContentRequest, type WriteContentResponse, type Info } from "../gen/containerd/services/content/v1/content.ts";
import type { DeepPartial } from "../gen/containerd/services/content/v1/content.ts";
import { callOptions, grpcCode, isNotFound, type ImageServices } from "./services.ts";

const messageSize = 1024 * 1024;

/** Streams `size` bytes of a blob from `offset` (size 0 = to the end). */
export async function* readBlob(svc: ImageServices, digest: string, options: { offset?: number; size?: number; lease?: string } = {}): AsyncGenerator<Buffer> {
  const request = { digest, offset: BigInt(options.offset ?? 0), size: BigInt(options.size ?? 0) };
  for await (const chunk of svc.content.read(request, callOptions(svc, options.lease))) {
    if (chunk.data.length > 0) yield chunk.data;
  }
}

export class BlobTooLargeError extends Error {
  override name = "BlobTooLargeError";
}

/** A whole blob (manifests, configs): refused beyond `limit` bytes. */
export async function readBlobBytes(svc: ImageServices, digest: string, limit = 20 * 1024 * 1024, lease?: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const part of readBlob(svc, digest, { lease })) {
    total += part.length;
    if (total > limit) throw new BlobTooLargeError(`blob ${digest} is larger than ${limit} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** The first bytes of a blob (compression sniffing). */
export async function readBlobHead(svc: ImageServices, digest: string, size: number, lease?: string): Promise<Buffer> {
  const info = await svc.content.info({ digest }, callOptions(svc, lease));
  const want = Math.min(size, Number(info.info?.size ?? 0));
  if (want === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for await (const part of readBlob(svc, digest, { size: want, ...(lease ? { lease } : {}) })) parts.push(part);
  return Buffer.concat(parts);
}

export async function blobInfo(svc: ImageServices, digest: string, lease?: string): Promise<Info | undefined> {
  try {
    return (await svc.content.info({ digest }, callOptions(svc, lease))).info;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Sets (or, with "", removes) the given labels and nothing else (mask `labels.<key>`). */
export async function updateBlobLabels(svc: ImageServices, digest: string, labels: Record<string, string>, lease?: string): Promise<void> {
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  await svc.content.update(
    { info: { digest, labels, size: 0n }, updateMask: keys.map((k) => `labels.${k}`) },
    callOptions(svc, lease),
  );
}

/** A request stream fed one message at a time (the protocol is lockstep). */
class RequestQueue implements AsyncIterable<DeepPartial<WriteContentRequest>> {
  private readonly items: DeepPartial<WriteContentRequest>[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: DeepPartial<WriteContentRequest>): void {
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<DeepPartial<WriteContentRequest>> {
    while (true) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

export interface OpenBlobWriterOptions {
  ref: string;
  /** Bytes expected; 0 = unknown. */
  total: number;
  /** Digest expected; "" = unknown (the server computes it at commit). */
  expected?: string;
  lease?: string;
  /** How long to retry while another stream holds the ref (UNAVAILABLE). */
  lockWaitMs?: number;
}

export interface CommitResult {
  digest: string;
  /** True when the namespace already had this blob (nothing new was stored). */
  existed: boolean;
}

/**
 * One ingest. open() returns "exists" when the namespace already holds the
 * expected digest (containerd answers ALREADY_EXISTS); the caller then only has
 * to drain its source. Data is always written from offset 0 (a stale partial
 * ingest under the same ref is truncated), as content.WriteBlob does for a
 * source it cannot seek.
 */
export class BlobWriter {
  private readonly svc: ImageServices;
  private readonly options: OpenBlobWriterOptions;
  private readonly requests = new RequestQueue();
  private readonly abort = new AbortController();
  private responses: AsyncIterator<WriteContentResponse> | undefined;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private offset = 0n;
  private serverOffset = 0n;
  private finished = false;
  /** The server already has every byte (shared store): only COMMIT is needed. */
  complete = false;

  private constructor(svc: ImageServices, options: OpenBlobWriterOptions) {
    this.svc = svc;
    this.options = options;
  }

  static async open(svc: ImageServices, options: OpenBlobWriterOptions): Promise<BlobWriter | "exists"> {
    const deadline = Date.now() + (options.lockWaitMs ?? 30_000);
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      const writer = new BlobWriter(svc, options);
      try {
        return (await writer.start()) ? writer : "exists";
      } catch (err) {
        writer.close();
        if (grpcCode(err) !== Status.UNAVAILABLE || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async send(request: DeepPartial<WriteContentRequest>): Promise<WriteContentResponse> {
    this.requests.push(request);
    const next = await this.responses!.next();
    if (next.done) throw new Error(`content write of ${this.options.ref}: stream ended early`);
    return next.value;
  }

  /** False when the blob already exists. */
  private async start(): Promise<boolean> {
    const { ref, total, expected = "", lease } = this.options;
    this.responses = this.svc.content.write(this.requests, callOptions(this.svc, lease, this.abort.signal))[Symbol.asyncIterator]();
    try {
      await this.send({ action: WriteAction.STAT, ref, total: BigInt(total), expected });
    } catch (err) {
      if (grpcCode(err) === Status.ALREADY_EXISTS) {
        this.close();
        return false;
      }
      throw err;
    }
    const status = await this.send({ action: WriteAction.STAT, ref });
    this.serverOffset = status.offset;
    this.complete = expected !== "" && total > 0 && status.offset === BigInt(total);
    return true;
  }

  async write(data: Buffer): Promise<void> {
    if (this.complete || data.length === 0) return;
    this.pending.push(data);
    this.pendingLength += data.length;
    while (this.pendingLength >= messageSize) {
      const all = Buffer.concat(this.pending);
      await this.flush(all.subarray(0, messageSize));
      this.pending = [all.subarray(messageSize)];
      this.pendingLength = all.length - messageSize;
    }
  }

  private async flush(data: Buffer): Promise<void> {
    const reply = await this.send({ action: WriteAction.WRITE, ref: this.options.ref, offset: this.offset, data });
    this.offset = reply.offset;
  }

  /**
   * Sends what is buffered and commits; ALREADY_EXISTS at commit counts as success.
   * `digest`: the digest the caller computed (when none was expected at open), so
   * the server checks it and an existing blob is recognised.
   */
  async commit(labels: Record<string, string> = {}, digest?: string): Promise<CommitResult> {
    const { ref, total } = this.options;
    const expected = this.options.expected || digest || "";
    try {
      if (this.complete) {
        this.offset = BigInt(total);
      } else {
        // A stale ingest under this ref must be truncated even when we send nothing.
        if (this.pendingLength > 0 || (this.offset === 0n && this.serverOffset > 0n)) await this.flush(Buffer.concat(this.pending));
        this.pending = [];
        this.pendingLength = 0;
      }
      let committed: WriteContentResponse;
      try {
        committed = await this.send({ action: WriteAction.COMMIT, ref, total: BigInt(total), offset: this.offset, expected, labels });
      } catch (err) {
        if (grpcCode(err) === Status.ALREADY_EXISTS && expected !== "") return { digest: expected, existed: true };
        throw err;
      }
      this.finished = true;
      return { digest: committed.digest, existed: false };
    } finally {
      this.close();
    }
  }

  /** Ends the stream and drops the partial ingest (no-op after a commit). */
  async cancel(): Promise<void> {
    this.close();
    if (this.finished) return;
    try {
      await this.svc.content.abort({ ref: this.options.ref }, callOptions(this.svc, this.options.lease));
    } catch {
      // nothing to abort (never started, or already gone)
    }
  }

  private close(): void {
    this.requests.close();
    this.abort.abort();
  }
}

/** Writes a small in-memory blob (manifests, indexes) with its digest known. */
export async function writeBlobBytes(svc: ImageServices, data: Buffer, options: { ref: string; expected: string; lease?: string; labels?: Record<string, string> }): Promise<CommitResult> {
  const writer = await BlobWriter.open(svc, { ref: options.ref, total: data.length, expected: options.expected, ...(options.lease ? { lease: options.lease } : {}) });
  if (writer === "exists") return { digest: options.expected, existed: true };
  try {
    await writer.write(data);
    return await writer.commit(options.labels);
  } catch (err) {
    await writer.cancel();
    throw err;
  }
}
