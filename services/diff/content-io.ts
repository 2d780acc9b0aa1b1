// The diff service's two conversations with the content service: fetch a layer blob
// into a local spool file, verified against its descriptor before anything uses it,
// and stream a new blob in through Content/Write without holding it in memory.
import { createHash, randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { ClientError, Status, type CallOptions } from "nice-grpc";
import { BerthError, failedPrecondition, kindOfGrpcStatus, notFound } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { WriteAction, type ContentClient, type WriteContentRequest, type WriteContentResponse } from "../../core/gen/containerd/services/content/v1/content.ts";

/** A content-service failure as our own error kind, so its status code passes through. */
export function fromContentError(err: unknown, what: string): unknown {
  if (!(err instanceof ClientError)) return err;
  if (err.code === Status.NOT_FOUND) return notFound(what);
  return new BerthError(kindOfGrpcStatus(err.code), `${what}: ${err.details}`);
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
export async function spoolBlob(client: ContentClient, ref: BlobRef, file: string, options: CallOptions): Promise<number> {
  const digest = parseDigest(ref.digest);
  const what = `content digest ${digest}`;
  let stored: number;
  try {
    const { info } = await client.info({ digest }, options);
    stored = Number(info?.size ?? 0);
  } catch (err) {
    throw fromContentError(err, what);
  }
  if (ref.size > 0 && ref.size !== stored) {
    throw failedPrecondition(`layer ${digest}: descriptor size ${ref.size} does not match the stored size ${stored}`);
  }
  const hash = createHash("sha256");
  let received = 0;
  const handle = await open(file, "wx", 0o600);
  try {
    for await (const chunk of client.read({ digest, offset: 0n, size: 0n }, options)) {
      if (Number(chunk.offset) !== received) throw failedPrecondition(`layer ${digest}: content read out of order`);
      hash.update(chunk.data);
      received += chunk.data.length;
      await handle.write(chunk.data);
    }
  } catch (err) {
    throw fromContentError(err, what);
  } finally {
    await handle.close();
  }
  const actual = `sha256:${hash.digest("hex")}`;
  if (received !== stored) throw failedPrecondition(`layer ${digest}: read ${received} bytes, the store records ${stored}`);
  if (actual !== digest) throw failedPrecondition(`layer ${digest}: content digest mismatch: the stored bytes hash to ${actual}`);
  return received;
}

/** Requests for the bidi stream, released one at a time as replies arrive. */
class RequestQueue {
  private readonly pending: (Partial<WriteContentRequest> | null)[] = [];
  private wake: (() => void) | undefined;

  push(request: Partial<WriteContentRequest> | null): void {
    this.pending.push(request);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Partial<WriteContentRequest>> {
    while (true) {
      while (this.pending.length === 0) await new Promise<void>((r) => (this.wake = r));
      const next = this.pending.shift()!;
      if (next === null) return;
      yield next;
    }
  }
}

/** containerd's uniqueRef(): "<unix nanos>-<base64url of 9 random bytes>". */
export function uniqueRef(): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
  return `${nanos}-${randomBytes(9).toString("base64url")}`;
}

export interface StreamWriteOptions {
  ref: string;
  /** Labels for the commit; called once the data is complete (so they may name digests computed on the way). */
  labels: () => Record<string, string>;
}

const chunkSize = 1024 * 1024;

/**
 * Writes a stream of unknown length and digest through Content/Write (open, WRITE
 * chunks of ≤1 MiB in lockstep, COMMIT with the computed digest). A blob that already
 * exists counts as success (`existed`). On failure the ingest is aborted.
 */
export async function writeStream(
  client: ContentClient,
  source: AsyncIterable<Uint8Array>,
  options: StreamWriteOptions,
  callOptions: CallOptions,
): Promise<{ digest: string; size: number; existed: boolean }> {
  const requests = new RequestQueue();
  const replies = client.write(requests, callOptions)[Symbol.asyncIterator]();
  const send = async (request: Partial<WriteContentRequest>): Promise<WriteContentResponse> => {
    requests.push(request);
    const reply = await replies.next();
    if (reply.done) throw new Error(`content write of ${options.ref}: stream ended early`);
    return reply.value;
  };
  const ref = options.ref;
  const hash = createHash("sha256");
  let offset = 0;
  let digest = "";
  try {
    await send({ action: WriteAction.STAT, ref });
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = async () => {
      if (batched === 0) return;
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batched);
      batch = [];
      batched = 0;
      // Offset 0 also truncates whatever an earlier, abandoned ingest left under this ref.
      const reply = await send({ action: WriteAction.WRITE, ref, offset: BigInt(offset), data });
      offset += data.length;
      if (Number(reply.offset) !== offset) throw new Error(`content write of ${ref}: service is at offset ${reply.offset}, expected ${offset}`);
    };
    for await (const chunk of source) {
      let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      hash.update(buf);
      while (buf.length > 0) {
        const take = Math.min(buf.length, chunkSize - batched);
        batch.push(buf.subarray(0, take));
        batched += take;
        buf = buf.subarray(take);
        if (batched === chunkSize) await flush();
      }
    }
    await flush();
    digest = `sha256:${hash.digest("hex")}`;
    const size = offset;
    if (size === 0) {
      // An empty blob: no WRITE went out, so reset anything a previous ingest left.
      await send({ action: WriteAction.WRITE, ref, offset: 0n, data: Buffer.alloc(0) });
    }
    await send({ action: WriteAction.COMMIT, ref, total: BigInt(size), offset: BigInt(size), expected: digest, labels: options.labels() });
    requests.push(null);
    return { digest, size, existed: false };
  } catch (err) {
    requests.push(null);
    if (err instanceof ClientError && err.code === Status.ALREADY_EXISTS && digest !== "") return { digest, size: offset, existed: true };
    await client.abort({ ref }, callOptions).catch(() => {});
    throw fromContentError(err, `content write of ${ref}`);
  }
}
