// Moving blob bytes over the Content service: reading a blob (Info, then Read, as
// ctr's ReaderAt does) and writing one through the lockstep Write protocol.
import { ContentDefinition, WriteAction, type WriteContentRequest, type WriteContentResponse } from "../../core/gen/containerd/services/content/v1/content.ts";
import type { DeepPartial } from "../../core/gen/containerd/services/content/v1/content.ts";
import { Status } from "nice-grpc";
import { CommandError, grpcCode, isAlreadyExists, messageOf } from "./output.ts";
import type { Session } from "./session.ts";

const chunkSize = 1024 * 1024;

/** Streams a blob's bytes in the order the server sends them. */
export async function* readBlob(session: Session, digest: string): AsyncGenerator<Buffer> {
  const content = session.client(ContentDefinition);
  const { info } = await content.info({ digest }, session.call());
  const size = info?.size ?? 0n;
  if (size === 0n) return;
  for await (const chunk of content.read({ digest, offset: 0n, size }, session.call())) yield chunk.data;
}

export async function readWholeBlob(session: Session, digest: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of readBlob(session, digest)) parts.push(part);
  return Buffer.concat(parts);
}

/** A request stream the caller feeds one message at a time. */
class RequestQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
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

/** Re-cuts a byte stream into pieces of at most `size` bytes, after dropping `skip` bytes. */
async function* rechunk(input: AsyncIterable<Buffer | string>, skip: bigint, size: number): AsyncGenerator<Buffer> {
  let toSkip = skip;
  let pending: Buffer[] = [];
  let pendingLength = 0;
  for await (const raw of input) {
    let piece = typeof raw === "string" ? Buffer.from(raw) : raw;
    if (toSkip > 0n) {
      const drop = toSkip >= BigInt(piece.length) ? piece.length : Number(toSkip);
      piece = piece.subarray(drop);
      toSkip -= BigInt(drop);
      if (piece.length === 0) continue;
    }
    pending.push(piece);
    pendingLength += piece.length;
    while (pendingLength >= size) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, size);
      pending = [all.subarray(size)];
      pendingLength = all.length - size;
    }
  }
  if (pendingLength > 0) yield Buffer.concat(pending);
}

export interface IngestOptions {
  ref: string;
  /** 0 = unknown. */
  expectedSize: bigint;
  expectedDigest: string;
}

interface WriteStream {
  send(request: DeepPartial<WriteContentRequest>): Promise<WriteContentResponse>;
  /** Ends the request side and waits for the server to end the stream. */
  finish(): Promise<void>;
  /** Drops the stream (the ingest stays on the server for a later resume). */
  cancel(): void;
}

function openStream(session: Session, ref: string): WriteStream {
  const abort = new AbortController();
  const requests = new RequestQueue<DeepPartial<WriteContentRequest>>();
  const responses = session.client(ContentDefinition).write(requests, session.call(undefined, abort.signal))[Symbol.asyncIterator]();
  return {
    async send(request) {
      requests.push(request);
      const next = await responses.next();
      if (next.done) throw new CommandError(`content write for ref ${JSON.stringify(ref)} ended early`);
      return next.value;
    },
    async finish() {
      requests.close();
      // containerd may repeat the commit reply before it ends the stream.
      while (!(await responses.next()).done);
    },
    cancel() {
      requests.close();
      abort.abort();
    },
  };
}

const lockRetryLimitMs = 30_000;

/**
 * Opens the ref. Another stream holding it answers UNAVAILABLE; like ctr's
 * OpenWriter we retry with a growing random backoff (bounded here, so a daemon that
 * stays unavailable does not hang the command forever).
 */
async function openWriter(session: Session, options: IngestOptions): Promise<WriteStream | undefined> {
  const started = Date.now();
  let backoff = 16;
  while (true) {
    const stream = openStream(session, options.ref);
    try {
      await stream.send({ action: WriteAction.STAT, ref: options.ref, total: options.expectedSize, expected: options.expectedDigest });
      return stream;
    } catch (err) {
      stream.cancel();
      if (isAlreadyExists(err)) return undefined;
      if (grpcCode(err) !== Status.UNAVAILABLE || Date.now() - started > lockRetryLimitMs) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * backoff));
      backoff = Math.min(backoff * 2, 2048);
    }
  }
}

/**
 * content.WriteBlob as ctr runs it: open the ref, ask its status, skip what the
 * server already holds (resume), write the rest in 1 MiB messages, commit. A blob
 * that is already committed counts as success.
 */
export async function ingest(session: Session, input: AsyncIterable<Buffer | string>, options: IngestOptions): Promise<void> {
  const stream = await openWriter(session, options);
  if (!stream) return;
  try {
    const status = await stream.send({ action: WriteAction.STAT });
    let offset = status.offset;
    const resumedAt = offset;
    for await (const data of rechunk(input, resumedAt, chunkSize)) {
      const reply = await stream.send({ action: WriteAction.WRITE, offset, data });
      offset = reply.offset;
    }
    const copied = offset - resumedAt;
    if (options.expectedSize !== 0n && copied < options.expectedSize - resumedAt) {
      throw new CommandError("failed to read expected number of bytes: unexpected EOF");
    }
    let committed: WriteContentResponse;
    try {
      committed = await stream.send({ action: WriteAction.COMMIT, total: options.expectedSize, offset, expected: options.expectedDigest });
    } catch (err) {
      if (isAlreadyExists(err)) return;
      throw new CommandError(`failed commit on ref ${JSON.stringify(options.ref)}: commit failed: ${messageOf(err)}`);
    }
    if (options.expectedSize !== 0n && committed.offset !== options.expectedSize) {
      throw new CommandError(`unexpected size: ${committed.offset} != ${options.expectedSize}`);
    }
    if (options.expectedDigest !== "" && committed.digest !== options.expectedDigest) {
      throw new CommandError(`unexpected digest: ${committed.digest} != ${options.expectedDigest}`);
    }
    await stream.finish();
  } finally {
    stream.cancel();
  }
}
