// Blobs on the wire. Fetching streams into the content service's writer (never a
// whole layer in memory), picks up after a dropped connection with a Range request,
// and checks size and digest before the commit: a mismatch aborts the ingest, so
// nothing is committed. Pushing asks first (HEAD), mounts across repositories where
// the registry allows, and uploads in one PUT or in PATCH chunks.
import { createHash } from "node:crypto";
import { ClientError, type CallOptions } from "nice-grpc";
import { writeBlob, type WrittenBlob } from "../content-client.ts";
import { BerthError, errorKind, failedPrecondition, invalidArgument } from "../errors.ts";
import type { ContentClient } from "../gen/containerd/services/content/v1/content.ts";
import { errorMessage } from "../grpc-client.ts";
import type { Descriptor } from "../image/manifest.ts";
import { isConfigType, isIndexType, isManifestType } from "../image/media-types.ts";
import { headerValue, pullScope, pushScope, type RegistryClient, type RegistryResponse } from "./client.ts";
import { discardBody } from "./errors.ts";
import type { Endpoint } from "./hosts.ts";
import { onPullEndpoints } from "./manifests.ts";
import type { RegistryReference } from "./reference.ts";
import { isRetryable } from "./retry.ts";

export interface BlobStreamOptions {
  /** Range requests after lost connections or short bodies (default 5). */
  maxResumes?: number;
  onResume?: (offset: number) => void;
  /** Bytes of the blob held so far (with what an earlier attempt left), after each chunk. */
  onData?: (received: number) => void;
  /**
   * Hash the bytes and fail at the end when they are not the digest (default true).
   * Off for a consumer that checks the digest itself: the content service at commit.
   */
  verifyDigest?: boolean;
}

interface OpenBlob {
  endpoint: Endpoint;
  res: RegistryResponse;
  /** Bytes at the start of the body to drop (a server that ignored the Range). */
  skip: number;
}

async function openBlob(client: RegistryClient, ref: RegistryReference, desc: Descriptor, offset: number, endpoint?: Endpoint, direct = false): Promise<OpenBlob> {
  const path = `/v2/${ref.repository}/blobs/${desc.digest}`;
  const get = async (ep: Endpoint): Promise<OpenBlob> => {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await client.send(ep, ref.registry, { method: "GET", path, headers, scopes: [pullScope(ref.repository)], direct });
    if (offset === 0 || res.status === 200) return { endpoint: ep, res, skip: res.status === 200 ? offset : 0 };
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(headerValue(res, "content-range") ?? "");
    if (res.status !== 206 || !range || Number(range[1]) !== offset) {
      discardBody(res.body);
      throw failedPrecondition(`GET ${res.url}: asked for bytes from ${offset}, got ${res.status} with Content-Range ${JSON.stringify(headerValue(res, "content-range") ?? "")}`);
    }
    return { endpoint: ep, res, skip: 0 };
  };
  return endpoint ? get(endpoint) : onPullEndpoints(client, ref.registry, get);
}

/** Takes each run of blob bytes; done with them when its promise settles (they may be reused). */
export type BlobSink = (chunks: Buffer[]) => Promise<void>;

/** A failure of the sink's own (a write), told apart from a lost connection: never resumed. */
class SinkFailure {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

/**
 * The blob's bytes from `start` on, verified, into `sink` (one call at a time):
 * resumed with Range requests where the connection drops, and throwing at the end
 * (before the consumer can commit) when the size is not the descriptor's, or — from
 * byte 0 — the digest is not. (From a later start the earlier bytes are not here to
 * hash: the content service checks the digest of the whole blob at commit.)
 * `direct` reads the body straight off the socket (direct-get.ts): the views the sink
 * gets are reused once its promise settles.
 */
export async function readBlobInto(
  client: RegistryClient,
  ref: RegistryReference,
  desc: Descriptor,
  sink: BlobSink,
  options: BlobStreamOptions & { start?: number; direct?: boolean; signal?: AbortSignal } = {},
): Promise<void> {
  const maxResumes = options.maxResumes ?? 5;
  const start = options.start ?? 0;
  if (start > desc.size) throw invalidArgument(`blob ${desc.digest}: cannot start at byte ${start} of ${desc.size}`);
  if (start === desc.size) return;
  const hash = start === 0 && options.verifyDigest !== false ? createHash("sha256") : undefined;
  let received = start;
  let resumes = 0;
  let open = await openBlob(client, ref, desc, start, undefined, options.direct);
  const what = () => `blob ${desc.digest} from ${open.res.url}`;
  // A reader that stops (signal) drops the body under way at once, not at its next bytes.
  const stop = () => discardBody(open.res.body);
  options.signal?.addEventListener("abort", stop);
  try {
    while (true) {
      const before = received;
      let failure: unknown;
      let skip = open.skip;
      const take = async (chunks: Buffer[]) => {
        const kept: Buffer[] = [];
        let bytes = 0;
        for (let chunk of chunks) {
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            chunk = chunk.subarray(drop);
            skip -= drop;
          }
          if (chunk.length === 0) continue;
          kept.push(chunk);
          bytes += chunk.length;
        }
        if (bytes === 0) return;
        if (received + bytes > desc.size) throw failedPrecondition(`${what()}: more than the ${desc.size} bytes its descriptor names; nothing was committed`);
        for (const chunk of kept) hash?.update(chunk);
        try {
          await sink(kept);
        } catch (err) {
          throw new SinkFailure(err);
        }
        received += bytes;
        options.onData?.(received);
      };
      try {
        const body = open.res.body;
        if ("pipeTo" in body) await body.pipeTo(take);
        else for await (const raw of body) await take([raw as Buffer]);
      } catch (err) {
        if (err instanceof SinkFailure) throw err.error;
        if (err instanceof BerthError) throw err;
        if (options.signal?.aborted) throw new BerthError("canceled", `${what()}: the reader stopped`);
        failure = err;
      }
      discardBody(open.res.body);
      if (received === desc.size) break;
      // A resume that brings nothing new will not bring it next time either.
      if (resumes >= maxResumes || (received === before && resumes > 0)) {
        const detail = `${received} of ${desc.size} bytes after ${resumes} resumes`;
        if (failure) throw new BerthError("unavailable", `${what()}: connection lost at ${detail}: ${(failure as Error).message ?? String(failure)}`);
        throw failedPrecondition(`${what()}: truncated: the registry sent ${detail}; nothing was committed`);
      }
      resumes++;
      options.onResume?.(received);
      open = await openBlob(client, ref, desc, received, open.endpoint, options.direct);
    }
    const digest = hash ? `sha256:${hash.digest("hex")}` : desc.digest;
    if (digest !== desc.digest) throw failedPrecondition(`${what()}: digest mismatch: the ${received} bytes received hash to ${digest}; nothing was committed`);
  } finally {
    options.signal?.removeEventListener("abort", stop);
    discardBody(open.res.body);
  }
}

/**
 * readBlobInto as a stream of chunks the consumer may keep: for a consumer that pulls
 * (a gRPC write stream). A generator cannot yield from the sink, so each chunk waits
 * in a hand-over until the consumer asks for it.
 */
export async function* blobStream(client: RegistryClient, ref: RegistryReference, desc: Descriptor, options: BlobStreamOptions & { start?: number } = {}): AsyncGenerator<Buffer> {
  let handOver: { chunks: Buffer[]; taken: () => void } | undefined;
  let wake: (() => void) | undefined;
  const stopped = new AbortController();
  const reading = readBlobInto(
    client,
    ref,
    desc,
    (chunks) =>
      new Promise<void>((taken, refused) => {
        if (stopped.signal.aborted) return refused(new BerthError("canceled", `blob ${desc.digest}: the reader stopped`));
        handOver = { chunks, taken };
        wake?.();
      }),
    { ...options, signal: stopped.signal },
  );
  let done = false;
  const ended = reading.finally(() => {
    done = true;
    wake?.();
  });
  try {
    while (true) {
      if (handOver) {
        const { chunks } = handOver;
        yield* chunks;
        const { taken } = handOver;
        handOver = undefined;
        taken();
      } else if (done) {
        await ended;
        return;
      } else await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    if (!done) {
      // The consumer stopped early: the body under way is dropped, the reading ends.
      stopped.abort();
      handOver?.taken();
      await ended.catch(() => undefined);
    }
  }
}

/** containerd's ref for an ingest: "<kind>-<digest>", so one download of a digest holds the ref. */
export function ingestRef(desc: Descriptor): string {
  const kind = isManifestType(desc.mediaType) ? "manifest" : isIndexType(desc.mediaType) ? "index" : isConfigType(desc.mediaType) ? "config" : "layer";
  return `${kind}-${desc.digest}`;
}

export interface FetchBlobOptions extends BlobStreamOptions {
  /** Namespace, lease and signal for the content service. */
  call: CallOptions;
  ref?: string;
  labels?: Record<string, string>;
}

/**
 * GET a blob into the content store; `existed` when the namespace already had it (then
 * nothing is downloaded). An ingest an earlier attempt left under the ref is carried
 * on from its offset with a Range request. A transient failure (connection lost, 5xx)
 * keeps the ingest for the next attempt; any other failure (digest or size wrong)
 * aborts it, so nothing of it stays.
 */
export async function fetchBlob(client: RegistryClient, ref: RegistryReference, desc: Descriptor, content: ContentClient, options: FetchBlobOptions): Promise<WrittenBlob> {
  const ingest = options.ref ?? ingestRef(desc);
  try {
    // The content service checks the digest at commit (expected below), and aborts the
    // commit on a mismatch: hashing here too cost a pull's jobs process ~5% of its CPU.
    return await writeBlob(content, (offset) => blobStream(client, ref, desc, { ...options, start: Number(offset), verifyDigest: false }), {
      ref: ingest,
      expected: desc.digest,
      total: desc.size,
      ...(options.labels ? { labels: options.labels } : {}),
      resume: true,
    }, options.call);
  } catch (err) {
    // Kept for the next attempt: what was received is good as far as it goes.
    if (isRetryable(err) || (err instanceof BerthError && err.kind === "canceled")) throw err;
    await content.abort({ ref: ingest }, options.call).catch(() => undefined);
    // The content service's own check of the whole blob (after a resumed download).
    if (err instanceof ClientError && errorKind(err) === "failed precondition") throw failedPrecondition(`blob ${desc.digest} from ${ref.registry}/${ref.repository}: ${errorMessage(err)}; nothing was committed`);
    throw err;
  }
}

function pushEndpoint(client: RegistryClient, registry: string): Endpoint {
  return client.endpoints(registry, "push")[0]!;
}

/** HEAD /v2/<repo>/blobs/<digest>: does the repository have it (with the right size)? */
export async function blobExists(client: RegistryClient, ref: RegistryReference, desc: Descriptor): Promise<boolean> {
  const res = await client.send(pushEndpoint(client, ref.registry), ref.registry, {
    method: "HEAD",
    path: `/v2/${ref.repository}/blobs/${desc.digest}`,
    scopes: [pushScope(ref.repository)],
    accept: [404],
  });
  discardBody(res.body);
  if (res.status === 404) return false;
  const length = headerValue(res, "content-length");
  return length === undefined || Number(length) === desc.size;
}

export type MountResult = { mounted: true } | { mounted: false; uploadUrl: string };

function locationOf(res: RegistryResponse): string {
  const location = headerValue(res, "location");
  if (!location) throw failedPrecondition(`${res.url}: ${res.status} without a Location for the upload`);
  return new URL(location, res.url).href;
}

/**
 * POST ?mount=<digest>&from=<repo>: 201 means the registry linked the blob from the
 * other repository; 202 means it would not (another registry's blob, no access) and
 * started an ordinary upload instead, whose URL is returned for the caller to use.
 */
export async function mountBlob(client: RegistryClient, ref: RegistryReference, desc: Descriptor, fromRepository: string): Promise<MountResult> {
  const query = new URLSearchParams({ mount: desc.digest, from: fromRepository });
  const res = await client.send(pushEndpoint(client, ref.registry), ref.registry, {
    method: "POST",
    path: `/v2/${ref.repository}/blobs/uploads/?${query}`,
    headers: { "content-length": "0" },
    scopes: [pushScope(ref.repository), pullScope(fromRepository)],
  });
  discardBody(res.body);
  if (res.status === 201) return { mounted: true };
  return { mounted: false, uploadUrl: locationOf(res) };
}

export async function startUpload(client: RegistryClient, ref: RegistryReference): Promise<string> {
  const res = await client.send(pushEndpoint(client, ref.registry), ref.registry, {
    method: "POST",
    path: `/v2/${ref.repository}/blobs/uploads/`,
    headers: { "content-length": "0" },
    scopes: [pushScope(ref.repository)],
  });
  discardBody(res.body);
  if (res.status !== 202) throw failedPrecondition(`POST ${res.url}: expected 202 for a new upload, got ${res.status}`);
  return locationOf(res);
}

function withDigest(url: string, digest: string): string {
  const u = new URL(url);
  u.searchParams.set("digest", digest);
  return u.href;
}

/** Counts the bytes going out and refuses a source that gives more or fewer than the descriptor says. */
async function* exactly(source: AsyncIterable<Uint8Array>, desc: Descriptor, onData?: (sent: number) => void): AsyncGenerator<Uint8Array> {
  let sent = 0;
  for await (const chunk of source) {
    sent += chunk.length;
    if (sent > desc.size) throw invalidArgument(`blob ${desc.digest}: the source has more than the ${desc.size} bytes its descriptor names`);
    yield chunk;
    onData?.(sent);
  }
  if (sent !== desc.size) throw invalidArgument(`blob ${desc.digest}: the source ended after ${sent} of ${desc.size} bytes`);
}

/** Re-cuts a stream into pieces of exactly `size` bytes (the last may be shorter). */
async function* pieces(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    length += chunk.length;
    while (length >= size) {
      const all = Buffer.concat(pending, length);
      yield all.subarray(0, size);
      pending = [all.subarray(size)];
      length -= size;
    }
  }
  if (length > 0) yield Buffer.concat(pending, length);
}

export interface PushBlobOptions {
  /** Upload in PATCH requests of this many bytes (default: one monolithic PUT). */
  chunkSize?: number;
  /** An upload already started (what a refused mount returns). */
  uploadUrl?: string;
  /** Bytes handed to the connection so far, after each chunk. */
  onData?: (sent: number) => void;
}

/** Uploads a blob from a stream; the registry checks the digest on the final PUT. */
export async function pushBlob(client: RegistryClient, ref: RegistryReference, desc: Descriptor, source: AsyncIterable<Uint8Array>, options: PushBlobOptions = {}): Promise<void> {
  const ep = pushEndpoint(client, ref.registry);
  const scopes = [pushScope(ref.repository)];
  let url = options.uploadUrl ?? (await startUpload(client, ref));
  const data = exactly(source, desc, options.onData);
  try {
    let res: RegistryResponse;
    if (!options.chunkSize || desc.size <= options.chunkSize) {
      res = await client.send(ep, ref.registry, {
        method: "PUT",
        path: withDigest(url, desc.digest),
        headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
        body: () => data,
        scopes,
      });
    } else {
      let offset = 0;
      for await (const piece of pieces(data, options.chunkSize)) {
        const patched = await client.send(ep, ref.registry, {
          method: "PATCH",
          path: url,
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(piece.length),
            "content-range": `${offset}-${offset + piece.length - 1}`,
          },
          body: piece,
          scopes,
          retry: false,
        });
        discardBody(patched.body);
        offset += piece.length;
        url = locationOf(patched);
      }
      res = await client.send(ep, ref.registry, { method: "PUT", path: withDigest(url, desc.digest), headers: { "content-length": "0" }, scopes, retry: false });
    }
    discardBody(res.body);
    if (res.status !== 201) throw failedPrecondition(`PUT ${res.url}: expected 201 Created for blob ${desc.digest}, got ${res.status}`);
  } catch (err) {
    await cancelUpload(client, ref, url);
    throw err;
  }
}

/** DELETE an upload session (best effort): the registry would expire it in time, this frees its temp space now. */
export async function cancelUpload(client: RegistryClient, ref: RegistryReference, uploadUrl: string): Promise<void> {
  await client
    .send(pushEndpoint(client, ref.registry), ref.registry, { method: "DELETE", path: uploadUrl, scopes: [pushScope(ref.repository)], accept: [404], retry: false })
    .then((r) => discardBody(r.body), () => undefined);
}
