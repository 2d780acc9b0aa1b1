// Client side of the Content/Write protocol (open/stat → write → commit), shared by
// the CLIs and anything that stores blobs. Resumes: when the open reply says the
// service already holds `offset` bytes for the ref, only the rest is sent.
import { Status } from "nice-grpc";
import { WriteAction, type ContentClient, type WriteContentRequest, type WriteContentResponse } from "./gen/containerd/services/content/v1/content.ts";
import type { CallOptions } from "nice-grpc";

const chunkSize = 1024 * 1024;

export interface WriteBlobOptions {
  ref: string;
  expected?: string;
  total?: number;
  labels?: Record<string, string>;
}

/** A request queue the bidi stream reads from, so each request waits for the previous reply. */
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

/**
 * Writes `data` under `ref`.
 * Returns the committed digest; an already-present blob counts as success.
 */
export async function writeBlob(
  client: ContentClient,
  data: Buffer,
  options: WriteBlobOptions,
  callOptions: CallOptions = {},
): Promise<{ digest: string; skipped: boolean }> {
  const requests = new RequestQueue();
  const replies = client.write(requests, callOptions)[Symbol.asyncIterator]();
  const send = async (request: Partial<WriteContentRequest>): Promise<WriteContentResponse> => {
    requests.push(request);
    const reply = await replies.next();
    if (reply.done) throw new Error(`content write of ${options.ref}: stream ended early`);
    return reply.value;
  };
  const total = BigInt(options.total ?? data.length);
  try {
    const opened = await send({ action: WriteAction.STAT, ref: options.ref, total, expected: options.expected ?? "" });
    let offset = Number(opened.offset);
    if (offset > data.length) offset = 0;
    while (offset < data.length) {
      const end = Math.min(offset + chunkSize, data.length);
      const reply = await send({ action: WriteAction.WRITE, ref: options.ref, offset: BigInt(offset), data: data.subarray(offset, end) });
      offset = Number(reply.offset);
    }
    const committed = await send({
      action: WriteAction.COMMIT,
      ref: options.ref,
      total,
      offset: BigInt(offset),
      expected: options.expected ?? "",
      labels: options.labels ?? {},
    });
    requests.push(null);
    return { digest: committed.digest, skipped: false };
  } catch (err) {
    requests.push(null);
    if ((err as { code?: Status }).code === Status.ALREADY_EXISTS && options.expected) {
      return { digest: options.expected, skipped: true };
    }
    throw err;
  }
}
