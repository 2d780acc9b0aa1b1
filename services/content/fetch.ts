// berth.internal.v1.BlobFetcher: a registry blob downloaded by the content process
// itself, straight into its ingest. The pull jobs used to receive each blob over HTTP
// and stream it here through Content/Write: every byte crossed a process boundary and
// was copied 3-4 times in each process, and both processes spent much of a pull in
// garbage collections of those copies. Here undici's chunks go to the ingest file as
// they come (hashed on the way), and the jobs process only orchestrates.
//
// The write itself is the Write protocol's own session (write.ts), driven from here
// with one request per chunk: leases, a blob the shared store already holds, a stale
// ingest to resume, size and digest checked at commit are all the same code as ctr's
// writes. A transient failure (5xx, a dropped connection) and a cancelled call keep
// the ingest for the next attempt, which asks the registry with Range for the rest;
// any other failure aborts it, so nothing half-written stays.
import type { CallContext } from "nice-grpc-common";
import { RequestQueue } from "../../core/content-client.ts";
import { parseDigest } from "../../core/digest.ts";
import { BerthError, invalidArgument, messageWithoutKind, unavailable } from "../../core/errors.ts";
import type { FetchBlobProgress, FetchBlobRequest } from "../../core/gen/berth/internal/v1/fetch.ts";
import { WriteAction, type WriteContentRequest, type WriteContentResponse } from "../../core/gen/containerd/services/content/v1/content.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import type { Descriptor } from "../../core/image/manifest.ts";
import { registryClient, type RegistryAccess } from "../../core/registry/access.ts";
import { blobStream } from "../../core/registry/blobs.ts";
import { parseRegistryReference } from "../../core/registry/reference.ts";
import { isRetryable } from "../../core/registry/retry.ts";
import { writeContent, type WriteDeps } from "./write.ts";

/** How often progress goes back to the caller while bytes arrive. */
const progressEveryMs = 100;

function accessOf(request: FetchBlobRequest): RegistryAccess {
  const creds = request.registry?.credentials;
  return {
    plainHttp: request.registry?.plainHttp ?? false,
    insecure: request.registry?.insecure ?? false,
    ...(creds && creds.username !== "" ? { credentials: { username: creds.username, password: creds.password } } : {}),
  };
}

function descriptorOf(request: FetchBlobRequest): Descriptor {
  const digest = parseDigest(request.digest);
  if (request.size < 0n || request.size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument(`blob ${digest}: size ${request.size} is out of range`);
  return { mediaType: request.mediaType, digest, size: Number(request.size) };
}

/** One Write session driven request by request, in this process. */
class LocalWriter {
  private readonly queue = new RequestQueue<WriteContentRequest>();
  private readonly replies: AsyncIterator<Partial<WriteContentResponse>>;

  constructor(deps: WriteDeps, ctx: CallContext) {
    this.replies = writeContent(deps, this.queue, ctx)[Symbol.asyncIterator]();
  }

  async send(request: Partial<WriteContentRequest> & { action: WriteAction; ref: string }): Promise<Partial<WriteContentResponse>> {
    this.queue.push({ offset: 0n, total: 0n, expected: "", labels: {}, data: empty, ...request });
    const next = await this.replies.next();
    if (next.done) throw unavailable(`ingest ${request.ref}: the write session ended early`);
    return next.value;
  }

  /** Ends the session: the ref's lock and file handle are let go (the ingest stays unless committed). */
  async close(): Promise<void> {
    this.queue.close();
    await this.replies.return?.(undefined);
  }
}

const empty = Buffer.alloc(0);

export async function* fetchBlob(deps: WriteDeps, request: FetchBlobRequest, ctx: CallContext): AsyncGenerator<Partial<FetchBlobProgress>> {
  const namespace = namespaceOf(ctx);
  const desc = descriptorOf(request);
  if (request.ingestRef === "") throw invalidArgument(`blob ${desc.digest}: ingest_ref is empty`);
  const ref = parseRegistryReference(request.ref);
  const ingest = request.ingestRef;
  const total = BigInt(desc.size);
  const what = `blob ${desc.digest} from ${ref.registry}/${ref.repository}`;
  const writer = new LocalWriter(deps, ctx);
  // One try per request: the job retries the whole fetch with backoff, resuming.
  const client = registryClient(accessOf(request), ref.registry, { attempts: 1 }, ctx.signal);
  let opened = false;
  try {
    let status: Partial<WriteContentResponse>;
    try {
      status = await writer.send({ action: WriteAction.STAT, ref: ingest, total, expected: desc.digest });
    } catch (err) {
      if (err instanceof BerthError && err.kind === "already exists") {
        yield { done: total, total, committed: true, existed: true };
        return;
      }
      throw err;
    }
    opened = true;
    let offset = Number(status.offset ?? 0n);
    let reported = 0;
    // offset === size: the shared store holds the bytes (another namespace's blob), or
    // an earlier attempt received them all; the commit alone is left.
    if (offset < desc.size) {
      for await (const chunk of blobStream(client, ref, desc, { start: offset, verifyDigest: false })) {
        await writer.send({ action: WriteAction.WRITE, ref: ingest, offset: BigInt(offset), data: chunk });
        offset += chunk.length;
        const now = Date.now();
        if (now - reported >= progressEveryMs) {
          reported = now;
          yield { done: BigInt(offset), total };
        }
      }
    }
    try {
      await writer.send({ action: WriteAction.COMMIT, ref: ingest, offset: BigInt(offset), total, expected: desc.digest, labels: request.labels });
    } catch (err) {
      // The session's own check of the whole blob (size, digest: after a resumed download).
      if (err instanceof BerthError && err.kind === "failed precondition") throw new BerthError(err.kind, `${what}: ${messageWithoutKind(err)}; nothing was committed`);
      throw err;
    }
    yield { done: total, total, committed: true, existed: false };
  } catch (err) {
    await writer.close();
    // Kept for the next attempt: what was received is good as far as it goes.
    if (ctx.signal.aborted || isRetryable(err) || (err instanceof BerthError && err.kind === "canceled")) throw err;
    // Another stream holds the ref (UNAVAILABLE, retried above) is not ours to abort; any
    // other failure leaves nothing half-written.
    if (opened) await deps.ingests.remove(namespace, ingest);
    throw err;
  } finally {
    await writer.close();
    await client.close();
  }
}
