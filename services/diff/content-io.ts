// The diff service's side of its conversations with the content service: a layer blob
// fetched into a local spool file, verified against its descriptor before anything
// uses it, or streamed and verified once read to the end; content-service failures as
// our own errors; refs for new blobs.
import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ClientError, type CallOptions } from "nice-grpc";
import { BerthError, errorKind, failedPrecondition, notFound } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { blobInfo, readBlob } from "../../core/content-client.ts";
import type { ContentClient } from "../../core/gen/containerd/services/content/v1/content.ts";

/** A content-service failure as our own error kind, so its status code passes through. */
export function fromContentError(err: unknown, what: string): unknown {
  if (!(err instanceof ClientError)) return err;
  const kind = errorKind(err);
  if (kind === "not found") return notFound(what);
  return new BerthError(kind, `${what}: ${err.details}`);
}

export interface BlobRef {
  digest: string;
  /** Expected size; 0 or less = not stated. */
  size: number;
}

/**
 * Copies blob `ref.digest` into `file`, hashing on the way; fails (failed precondition)
 * unless the bytes hash to the digest and match the stated size.
 */
export async function spoolBlob(client: ContentClient, ref: BlobRef, file: string, options: CallOptions, blobDir?: string): Promise<void> {
  const blob = await VerifiedBlobStream.open(client, ref, options, blobDir);
  try {
    const handle = await open(file, "wx", 0o600);
    try {
      for await (const data of blob.chunks()) await handle.write(data);
    } finally {
      await handle.close();
    }
    await blob.verify();
  } finally {
    await blob.close();
  }
}

/**
 * A blob streamed from the content service and hashed on the way, for callers that
 * consume it directly (Apply into an empty target, spoolBlob). The caller must not let anything
 * built from the bytes count as done before verify() passes: the bytes are checked
 * only once all of them have been read.
 */
export class VerifiedBlobStream {
  private readonly iterator: AsyncIterator<Buffer>;
  private readonly hash = createHash("sha256");
  private readonly digest: string;
  private readonly stored: number;
  private readonly what: string;
  private received = 0;
  private ended = false;
  /** A failed read: the bytes can no longer be checked. */
  private readError: unknown;

  private constructor(iterator: AsyncIterator<Buffer>, digest: string, stored: number) {
    this.iterator = iterator;
    this.digest = digest;
    this.stored = stored;
    this.what = `content digest ${digest}`;
  }

  /**
   * Checks the blob exists with the stated size (before any byte is read) and opens it:
   * the content store's file in `blobDir` when there is one (read here, not sent through
   * the content service: measured, that copy was a third of a pull's content-service
   * CPU), else through the content service. Either way the bytes are hashed.
   */
  static async open(client: ContentClient, ref: BlobRef, options: CallOptions, blobDir?: string): Promise<VerifiedBlobStream> {
    const digest = parseDigest(ref.digest);
    const stored = await storedSize(client, ref, digest, options);
    const file = blobDir ? await open(join(blobDir, digest.slice(digest.indexOf(":") + 1)), "r").catch(() => undefined) : undefined;
    const source = file ? fileChunks(file) : readBlob(client, digest, options);
    return new VerifiedBlobStream(source[Symbol.asyncIterator](), digest, stored);
  }

  private async next(): Promise<IteratorResult<Buffer, undefined>> {
    if (this.ended) return { done: true, value: undefined };
    let step: IteratorResult<Buffer>;
    try {
      step = await this.iterator.next();
    } catch (err) {
      this.ended = true;
      this.readError ??= fromContentError(err, this.what);
      throw this.readError;
    }
    if (step.done) {
      this.ended = true;
      return { done: true, value: undefined };
    }
    this.hash.update(step.value);
    this.received += step.value.length;
    return step;
  }

  /**
   * The bytes. A consumer that stops early (an error, the end-of-archive marker) leaves
   * the rest unread rather than closing the stream, so verify() can still hash it.
   */
  chunks(): AsyncIterable<Buffer> {
    return { [Symbol.asyncIterator]: () => ({ next: () => this.next(), return: async () => ({ done: true, value: undefined }) }) };
  }

  /** Reads whatever is left and fails (failed precondition) unless size and digest match. */
  async verify(): Promise<void> {
    const failure = await this.check();
    if (failure) throw failure;
  }

  /**
   * After a failed extraction: the integrity failure when the bytes are bad (it is the
   * one to report), undefined when they are good or can no longer be read.
   */
  async mismatch(): Promise<BerthError | undefined> {
    try {
      return await this.check();
    } catch {
      return undefined;
    }
  }

  private async check(): Promise<BerthError | undefined> {
    while (!(await this.next()).done);
    if (this.readError !== undefined) throw this.readError;
    return integrityFailure(this.digest, this.received, this.stored, `sha256:${this.hash.digest("hex")}`);
  }

  /** Stops the read (when the bytes are no longer wanted). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.iterator.return?.(undefined).catch(() => undefined);
  }
}

/** The failure to report when a blob's bytes are not what the store records: undefined when they are. */
export function integrityFailure(digest: string, received: number, stored: number, actual: string): BerthError | undefined {
  if (received !== stored) return failedPrecondition(`layer ${digest}: read ${received} bytes, the store records ${stored}`);
  if (actual !== digest) return failedPrecondition(`layer ${digest}: content digest mismatch: the stored bytes hash to ${actual}`);
  return undefined;
}

const fileChunkSize = 1024 * 1024;

/** A file's bytes in fresh 1 MiB buffers (a consumer may keep what it was given), closed at the end or when left. */
async function* fileChunks(file: FileHandle): AsyncGenerator<Buffer> {
  try {
    for (;;) {
      const buffer = Buffer.allocUnsafe(fileChunkSize);
      const { bytesRead } = await file.read(buffer, 0, fileChunkSize, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

/** The blob's stored size; not found, or failed precondition when the descriptor states another size. */
export async function storedSize(client: ContentClient, ref: BlobRef, digest: string, options: CallOptions): Promise<number> {
  const what = `content digest ${digest}`;
  const info = await blobInfo(client, digest, options).catch((err) => {
    throw fromContentError(err, what);
  });
  if (!info) throw notFound(what);
  const stored = Number(info.size);
  if (ref.size > 0 && ref.size !== stored) {
    throw failedPrecondition(`layer ${digest}: descriptor size ${ref.size} does not match the stored size ${stored}`);
  }
  return stored;
}
