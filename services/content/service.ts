// containerd.services.content.v1.Content over the content and ingest stores, and
// berth.internal.v1.Sweeper (the garbage collector's request to unlink blob files no
// namespace refers to any more).
import { closeSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import type { CallContext } from "nice-grpc-common";
import { notFound, outOfRange } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import { ContentDelete } from "../../core/gen/containerd/events/content.ts";
import type {
  ContentServiceImplementation,
  Info,
  ReadContentRequest,
  ReadContentResponse,
  Status,
} from "../../core/gen/containerd/services/content/v1/content.ts";
import type { SweeperServiceImplementation } from "../../core/gen/berth/internal/v1/gc.ts";
import type { BlobInfo, ContentStore } from "./store.ts";
import type { IngestStatus } from "./ingest.ts";
import { writeContent, type WriteDeps } from "./write.ts";

const listBatch = 100;
const readChunk = 1024 * 1024;
/**
 * Reads up to this size (manifests, configs, indexes: what ctr reads ten times per
 * `run`) are made with synchronous calls: microseconds, where the thread pool's open,
 * read and close took ~0.5 ms per Read on a loaded machine. Larger ones stay async.
 */
const syncReadBytes = 64 * 1024;

function infoToProto(info: BlobInfo): Info {
  return {
    digest: info.digest,
    size: BigInt(info.size),
    createdAt: timestampFromMillis(info.createdAt),
    updatedAt: timestampFromMillis(info.updatedAt),
    labels: info.labels,
  };
}

function statusToProto(status: IngestStatus): Status {
  return {
    ref: status.ref,
    offset: BigInt(status.offset),
    total: BigInt(status.total),
    expected: status.expected,
    startedAt: timestampFromMillis(status.startedAt),
    updatedAt: timestampFromMillis(status.updatedAt),
  };
}

/** True when a gc.ref label was removed or changed. */
function droppedReference(before: Record<string, string>, after: Record<string, string>): boolean {
  return Object.entries(before).some(([name, value]) => name.startsWith("containerd.io/gc.ref.") && after[name] !== value);
}

/** The requested range of a Read, clamped to the blob's size (OUT_OF_RANGE past its end). */
function readRange(info: BlobInfo, request: ReadContentRequest): { offset: number; end: number } {
  const offset = request.offset > 0n ? Number(request.offset) : 0;
  if (offset > info.size) throw outOfRange(`read past object length ${info.size} bytes`);
  const wanted = Number(request.size);
  const end = wanted <= 0 || offset + wanted > info.size ? info.size : offset + wanted;
  return { offset, end };
}

/**
 * Whether a Read is small enough for berthd to answer itself (the sizes a manifest,
 * config or index has: one synchronous read); a read that fails its checks is answered
 * there too, with the same error. Larger reads stream from the content process.
 */
export function isSmallRead(store: ContentStore, namespace: string, request: ReadContentRequest): boolean {
  try {
    const { offset, end } = readRange(store.info(namespace, parseDigest(request.digest)), request);
    return end - offset <= syncReadBytes;
  } catch {
    return true;
  }
}

/** Info and Read: read-only, so berthd also answers them itself (services/gateway/store-reads.ts). */
export function contentReads(store: ContentStore): Pick<ContentServiceImplementation, "info" | "read"> {
  return {
    async info(request, ctx) {
      const namespace = namespaceOf(ctx);
      return { info: infoToProto(store.info(namespace, parseDigest(request.digest))) };
    },

    async *read(request, ctx) {
      const namespace = namespaceOf(ctx);
      const digest = parseDigest(request.digest);
      const info = store.info(namespace, digest);
      const { offset, end } = readRange(info, request);
      if (end - offset <= syncReadBytes) {
        if (end > offset) yield { offset: BigInt(offset), data: readSmall(store.blobPath(digest), digest, offset, end - offset, info.size) };
        return;
      }
      // The open handle keeps the bytes readable even if the blob is deleted meanwhile.
      const handle = await open(store.blobPath(digest), "r").catch(() => {
        throw notFound(`content digest ${digest}`);
      });
      try {
        for (let position = offset; position < end; ) {
          const length = Math.min(readChunk, end - position);
          const buffer = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buffer, 0, length, position);
          if (bytesRead === 0) throw outOfRange(`content ${digest} is shorter than its recorded size ${info.size}`);
          const chunk: ReadContentResponse = { offset: BigInt(position), data: buffer.subarray(0, bytesRead) };
          yield chunk;
          position += bytesRead;
        }
      } finally {
        await handle.close();
      }
    },
  };
}

export function contentService(deps: WriteDeps): ContentServiceImplementation {
  const { store, ingests, locks, metadata } = deps;
  return {
    ...contentReads(store),

    async update(request, ctx) {
      const namespace = namespaceOf(ctx);
      const digest = parseDigest(request.info?.digest ?? "");
      const paths = request.updateMask ?? [];
      const before = store.info(namespace, digest).labels;
      const info = store.update(namespace, digest, request.info?.labels ?? {}, paths);
      // A dropped reference is a deletion: what it held may be free now (ctr content prune references).
      if (droppedReference(before, info.labels)) metadata.scheduleCollection();
      return { info: infoToProto(info) };
    },

    async *list(request, ctx) {
      const namespace = namespaceOf(ctx);
      const filter = parseFilters(request.filters);
      let batch: Info[] = [];
      for (const info of store.list(namespace)) {
        if (!filter(fieldsAndLabels({ digest: info.digest, size: String(info.size) }, info.labels))) continue;
        batch.push(infoToProto(info));
        if (batch.length >= listBatch) {
          yield { info: batch };
          batch = [];
        }
      }
      if (batch.length > 0) yield { info: batch };
    },

    async delete(request, ctx) {
      const namespace = namespaceOf(ctx);
      const digest = parseDigest(request.digest);
      store.delete(namespace, digest);
      metadata.publish(namespace, "/content/delete", "containerd.events.ContentDelete", ContentDelete, { digest });
      return {};
    },

    async status(request, ctx) {
      const namespace = namespaceOf(ctx);
      return { status: statusToProto(ingests.status(namespace, request.ref)) };
    },

    async listStatuses(request, ctx) {
      const namespace = namespaceOf(ctx);
      const filter = parseFilters(request.filters);
      const statuses = ingests
        .list(namespace)
        .filter((s) => filter(fieldsAndLabels({ ref: s.ref, expected: s.expected }, {})))
        .map(statusToProto);
      return { statuses };
    },

    write(requests, ctx: CallContext) {
      return writeContent(deps, requests, ctx);
    },

    async abort(request, ctx) {
      const namespace = namespaceOf(ctx);
      const lock = locks.get(namespace, request.ref);
      if (!lock && !ingests.exists(namespace, request.ref)) throw notFound(`ingest ref "${request.ref}"`);
      // A stream still writing this ref fails on its next message.
      if (lock) lock.aborted = true;
      await ingests.remove(namespace, request.ref);
      return {};
    },
  };
}

/** How long an ingest no lease holds may sit untouched before a collection removes it. */
const ingestExpiryMs = Number(process.env.BERTH_INGEST_EXPIRY_MS) || 6 * 60 * 60_000;

/** Blob files no row refers to, and ingests their writer abandoned (see IngestStore.expire). */
export function sweepContent(deps: WriteDeps): string[] {
  const leased = deps.writes.db.prepare("SELECT 1 FROM lease_resources WHERE namespace = ? AND type = 'ingests' AND id = ? LIMIT 1");
  const lease = deps.writes.db.prepare("SELECT 1 FROM leases WHERE namespace = ? AND id = ?");
  const ingests = deps.ingests.expire(
    Date.now() - ingestExpiryMs,
    (namespace, ref) => leased.get(namespace, ref) !== undefined,
    (namespace, id) => lease.get(namespace, id) !== undefined,
  );
  return [...deps.store.sweep(), ...ingests.map((ref) => `ingest ${ref}`)];
}

export function sweeperService(deps: WriteDeps): SweeperServiceImplementation {
  return {
    async sweep() {
      return { removed: sweepContent(deps) };
    },
  };
}

/** `length` bytes of the blob at `offset`, with synchronous calls (see syncReadBytes). */
function readSmall(path: string, digest: string, offset: number, length: number, recordedSize: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    throw notFound(`content digest ${digest}`);
  }
  try {
    const buffer = Buffer.allocUnsafe(length);
    for (let filled = 0; filled < length; ) {
      const bytesRead = readSync(fd, buffer, filled, length - filled, offset + filled);
      if (bytesRead === 0) throw outOfRange(`content ${digest} is shorter than its recorded size ${recordedSize}`);
      filled += bytesRead;
    }
    return buffer;
  } finally {
    closeSync(fd);
  }
}
