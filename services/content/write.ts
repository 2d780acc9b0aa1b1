// Content/Write: one bidi stream drives one ingest, one reply per request
// (containerd's protocol, reference §1.9). The stream owns its ref until it ends;
// the ingest itself stays on disk for a later stream to resume, until it is
// committed or aborted.
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import type { CallContext } from "nice-grpc-common";
import { BerthError, alreadyExists, failedPrecondition, invalidArgument, notFound, outOfRange } from "../../core/errors.ts";
import { parseDigest, sha256Digest } from "../../core/digest.ts";
import { leaseOf, namespaceOf } from "../../core/grpc-server.ts";
import { applyLabelMask, validateLabels } from "../../core/labels.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import { WriteAction, type WriteContentRequest, type WriteContentResponse } from "../../core/gen/containerd/services/content/v1/content.ts";
import type { ContentStore } from "./store.ts";
import type { FileIngest, IngestStore } from "./ingest.ts";
import type { RefLock, RefLocks } from "./locks.ts";
import type { NamespacedWrites } from "../../core/metadata-db.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";

export interface WriteDeps {
  store: ContentStore;
  ingests: IngestStore;
  locks: RefLocks;
  writes: NamespacedWrites;
  metadata: MetadataClient;
}

type Reply = Partial<WriteContentResponse>;

/** The labels a commit stores: validated, without the empty values (as containerd). */
const commitLabels = (labels: Record<string, string>) => validateLabels(applyLabelMask({}, labels, ["labels"]));

/**
 * The blob is already in the shared store but not in this namespace: the session
 * starts "complete" (offset = size) so the client commits without sending data,
 * and commit only links the namespace's row. Writing turns it into a real ingest.
 */
interface SharedBlob {
  digest: string;
  size: number;
  startedAt: number;
  /** Lets the collector's sweep unlink the file again. */
  release: () => void;
}

class WriteSession {
  private readonly deps: WriteDeps;
  private readonly namespace: string;
  private readonly ref: string;
  private readonly lease: string | undefined;
  private readonly lock: RefLock;
  private total: number;
  private expected: string;
  private file: FileIngest | undefined;
  private shared: SharedBlob | undefined;

  constructor(deps: WriteDeps, namespace: string, ref: string, lease: string | undefined, lock: RefLock, total: number, expected: string) {
    this.deps = deps;
    this.namespace = namespace;
    this.ref = ref;
    this.lease = lease;
    this.lock = lock;
    this.total = total;
    this.expected = expected;
  }

  async open(): Promise<void> {
    const { writes } = this.deps;
    // The lease must hold before the ingest is made or touched: a missing lease fails
    // the call and leaves nothing behind.
    if (this.lease) writes.lease(this.namespace, this.lease, { type: "ingests", id: this.ref });
    else writes.ensureNamespace(this.namespace);
    return this.openIngest();
  }

  private async openIngest(): Promise<void> {
    const { store, ingests } = this.deps;
    if (this.expected !== "") {
      const size = store.sharedSize(this.expected);
      if (size !== undefined && (this.total === 0 || this.total === size)) {
        this.shared = { digest: this.expected, size, startedAt: Date.now(), release: store.claim(this.expected) };
        this.total = size;
        return;
      }
    }
    this.file = await ingests.open(this.namespace, this.ref, this.total, this.expected, this.lease);
    if (this.total === 0) this.total = this.file.total;
  }

  async close(): Promise<void> {
    this.shared?.release();
    await this.file?.close();
    this.lock.release();
  }

  private get offset(): number {
    return this.shared ? this.shared.size : this.file!.offset;
  }

  private digest(): string {
    return this.shared ? this.shared.digest : this.file!.digest();
  }

  private reply(action: WriteAction): Reply {
    const startedAt = this.shared ? this.shared.startedAt : this.file!.startedAt;
    const updatedAt = this.shared ? this.shared.startedAt : this.file!.updatedAt;
    return {
      action,
      startedAt: timestampFromMillis(startedAt),
      updatedAt: timestampFromMillis(updatedAt),
      offset: BigInt(this.offset),
      total: BigInt(this.total),
      digest: this.digest(),
    };
  }

  /** Turns a shared session into a file ingest: empty, or holding a copy of the blob. */
  private async unshare(keepAll: boolean): Promise<FileIngest> {
    const shared = this.shared!;
    try {
      const file = await this.deps.ingests.open(this.namespace, this.ref, 0, "");
      this.file = file;
      this.shared = undefined;
      if (file.offset > 0) await file.truncate();
      if (keepAll) {
        for await (const chunk of createReadStream(this.deps.store.blobPath(shared.digest), { highWaterMark: 1024 * 1024 })) {
          await file.write(chunk as Buffer);
        }
        if (file.offset !== shared.size) throw failedPrecondition(`content ${shared.digest} changed while it was copied`);
      }
      return file;
    } finally {
      shared.release();
    }
  }

  /**
   * Appends bytes at the current offset, as WRITE requests would, in one go (the blob
   * fetcher's batches). A shared session becomes a file ingest first.
   */
  async append(chunks: Buffer[]): Promise<void> {
    if (this.lock.aborted) throw notFound(`ingest ref "${this.ref}" was aborted`);
    const file = this.shared ? await this.unshare(true) : this.file!;
    await file.writeAll(chunks);
  }

  /** Handles one request; returns the reply and whether the stream is finished. */
  async step(req: WriteContentRequest): Promise<{ reply: Reply; done: boolean }> {
    if (this.lock.aborted) throw notFound(`ingest ref "${this.ref}" was aborted`);
    if (req.expected !== "") {
      this.expected = parseDigest(req.expected);
      if (this.deps.store.has(this.namespace, this.expected)) {
        await this.finish();
        throw alreadyExists(`blob with expected digest ${this.expected} exists`);
      }
    }
    if (req.total > 0n) this.total = Number(req.total);

    switch (req.action) {
      case WriteAction.STAT:
        return { reply: this.reply(req.action), done: false };
      case WriteAction.WRITE:
      case WriteAction.COMMIT: {
        const offset = Number(req.offset);
        if (offset > 0 && offset !== this.offset) {
          throw outOfRange(`write @${offset} must occur at current offset ${this.offset}`);
        }
        if (offset === 0 && this.offset > 0) {
          if (this.shared) await this.unshare(false);
          else await this.file!.truncate();
        }
        if (req.data.length > 0) {
          const file = this.shared ? await this.unshare(true) : this.file!;
          await file.write(req.data);
        }
        if (req.action === WriteAction.COMMIT) {
          const reply = this.reply(req.action);
          await this.commit(req.labels);
          return { reply, done: true };
        }
        return { reply: this.reply(req.action), done: false };
      }
      default:
        throw invalidArgument(`unknown write action ${req.action}`);
    }
  }

  private async commit(labels: Record<string, string>): Promise<void> {
    const { store, writes } = this.deps;
    const kept = commitLabels(labels);
    const file = this.file;
    const size = this.shared ? this.shared.size : file!.offset;
    const digest = this.shared ? this.shared.digest : file!.digest();
    const dataFile = this.shared ? undefined : file!.dataPath;
    if (this.total > 0 && size !== this.total) {
      throw failedPrecondition(`unexpected commit size ${size}, expected ${this.total}`);
    }
    if (this.expected !== "" && digest !== this.expected) {
      throw failedPrecondition(`unexpected commit digest ${digest}, expected ${this.expected}`);
    }
    // Lease first: if the lease is gone the ingest stays intact and the call fails.
    if (this.lease) writes.lease(this.namespace, this.lease, { type: "content", id: digest });
    const onDisk = await file?.sync();
    // The running hash covers exactly the bytes we appended; anything else on disk
    // means the file was changed behind our back.
    if (file && onDisk !== size) throw failedPrecondition(`ingest ref "${this.ref}": data changed on disk`);
    try {
      await store.commit(this.namespace, digest, size, kept, dataFile, this.lease);
    } catch (err) {
      if (err instanceof BerthError && err.kind === "already exists") await this.finish();
      throw err;
    }
    await this.finish();
  }

  /**
   * The ingest is done with (committed or superseded): its dir goes, and its lease entry.
   */
  private async finish(): Promise<void> {
    await this.file?.close(false);
    this.file = undefined;
    await this.deps.ingests.remove(this.namespace, this.ref);
    if (this.lease) this.deps.writes.release(this.namespace, this.lease, { type: "ingests", id: this.ref });
  }
}

/** A first request that carries a whole blob and commits it, and will succeed (see oneShotCommit). */
interface OneShot {
  digest: string;
  data: Buffer;
  labels: Record<string, string>;
}

/**
 * The whole Write in its first request — COMMIT at offset 0 with all the data (what
 * berthctl sends for a blob up to 1 MiB) — when nothing can make the commit fail but
 * the lease or a concurrent writer. Such a blob needs no ingest at all: no ingest dir
 * and `ref` file, no "ingests" lease entry to add and drop again, no resumable state; measured, a third of a small Write's cost. Anything else,
 * a stale ingest under the ref included, takes the ingest path, so every failure
 * (a digest or size mismatch keeps the ingest for Status and Abort) is as before.
 */
function oneShotCommit(deps: WriteDeps, namespace: string, req: WriteContentRequest, expected: string): OneShot | undefined {
  if (req.action !== WriteAction.COMMIT || req.offset !== 0n || req.data.length === 0) return undefined;
  if (req.total > 0n && req.total !== BigInt(req.data.length)) return undefined;
  let labels: Record<string, string>;
  try {
    labels = commitLabels(req.labels);
  } catch {
    return undefined;
  }
  const digest = sha256Digest(req.data);
  if (expected !== "" && digest !== expected) return undefined;
  if (deps.ingests.exists(namespace, req.ref)) return undefined;
  return { digest, data: req.data, labels };
}

async function commitOneShot(deps: WriteDeps, namespace: string, lease: string | undefined, shot: OneShot): Promise<Reply> {
  const { store, ingests, writes } = deps;
  const now = Date.now();
  const size = shot.data.length;
  // Lease first, as on the ingest path: a missing lease fails the call before anything is stored.
  if (lease) writes.lease(namespace, lease, { type: "content", id: shot.digest });
  // Bytes the shared store holds already (another namespace's blob) need no copy.
  const dataFile = store.sharedSize(shot.digest) === size ? undefined : await ingests.writeTemp(shot.data);
  try {
    await store.commit(namespace, shot.digest, size, shot.labels, dataFile, lease);
  } finally {
    // Gone already when the commit moved it into the store.
    if (dataFile) await rm(dataFile, { force: true });
  }
  const at = timestampFromMillis(now);
  return { action: WriteAction.COMMIT, startedAt: at, updatedAt: at, offset: BigInt(size), total: BigInt(size), digest: shot.digest };
}

/**
 * A Write session driven inside this process (services/content/fetch.ts), with the
 * checks a Write stream's first request gets: "already exists" (the blob then leased)
 * when the namespace holds the expected digest, UNAVAILABLE while another writer holds
 * the ref. The caller steps it and must close() it.
 */
export async function openWriteSession(deps: WriteDeps, namespace: string, lease: string | undefined, ref: string, total: number, expected: string): Promise<WriteSession> {
  if (deps.store.has(namespace, expected)) {
    if (lease) deps.writes.lease(namespace, lease, { type: "content", id: expected });
    throw alreadyExists(`content ${expected}`);
  }
  const session = new WriteSession(deps, namespace, ref, lease, deps.locks.acquire(namespace, ref), total, expected);
  try {
    await session.open();
  } catch (err) {
    await session.close();
    throw err;
  }
  return session;
}

export type { WriteSession };

export async function* writeContent(
  deps: WriteDeps,
  requests: AsyncIterable<WriteContentRequest>,
  ctx: CallContext,
): AsyncGenerator<Reply, void, undefined> {
  const namespace = namespaceOf(ctx);
  let session: WriteSession | undefined;
  try {
    for await (const req of requests) {
      if (!session) {
        if (req.ref === "") throw invalidArgument("first message must have a reference");
        const expected = req.expected === "" ? "" : parseDigest(req.expected);
        // Checked before taking the lock: a finished blob is not an ingest conflict.
        if (expected !== "" && deps.store.has(namespace, expected)) {
          // containerd leases the existing blob so a concurrent removal cannot take it.
          const lease = leaseOf(ctx);
          if (lease) deps.writes.lease(namespace, lease, { type: "content", id: expected });
          throw alreadyExists(`content ${expected}`);
        }
        const lock = deps.locks.acquire(namespace, req.ref);
        const oneShot = oneShotCommit(deps, namespace, req, expected);
        if (oneShot) {
          try {
            yield await commitOneShot(deps, namespace, leaseOf(ctx), oneShot);
            return;
          } finally {
            lock.release();
          }
        }
        session = new WriteSession(deps, namespace, req.ref, leaseOf(ctx), lock, Number(req.total > 0n ? req.total : 0n), expected);
        try {
          await session.open();
        } catch (err) {
          await session.close();
          session = undefined;
          throw err;
        }
      }
      const { reply, done } = await session.step(req);
      yield reply;
      if (done) return;
    }
  } finally {
    await session?.close();
  }
}
