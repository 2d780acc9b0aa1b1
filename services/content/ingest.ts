// Ingests in progress: <root>/content/ingest/<sha256(namespace "\0" ref)>/ holds
// `data` (the bytes received so far) and `ref` (JSON: who and what the ingest is,
// replaced atomically). Refs are arbitrary strings, so they are never file names
// themselves. An ingest outlives its stream and the process: reopening the ref
// resumes at the size of `data`. While a stream holds an ingest, its update time lives
// in memory (and Status reads it from there); `ref` gets it when the stream lets go.
import { tempName } from "../../core/ids.ts";
import { createReadStream, existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, writeFile, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ingestDirOf } from "./layout.ts";
import { failedPrecondition, notFound } from "../../core/errors.ts";
import { makePrivateDir, privateFileMode } from "../../core/private-files.ts";
import { sha256Create, sha256Digest, sha256Update, sha256Write, type Sha256 } from "../../native/index.ts";

/** The `ref` file. */
interface IngestRecord {
  ref: string;
  namespace: string;
  /** The lease the ingest was opened under, if any: when that lease is gone, so is the ingest. */
  lease?: string;
  total: number;
  expected: string;
  started_at: number;
  updated_at: number;
}

export interface IngestStatus {
  ref: string;
  offset: number;
  total: number;
  expected: string;
  startedAt: number;
  updatedAt: number;
}

function readRecord(dir: string): IngestRecord | undefined {
  try {
    const rec = JSON.parse(readFileSync(join(dir, "ref"), "utf8")) as IngestRecord;
    if (typeof rec.ref !== "string" || typeof rec.namespace !== "string") return undefined;
    return rec;
  } catch {
    return undefined;
  }
}

/**
 * Replaces `ref` atomically (temp name, rename). Not fsynced, as containerd does not
 * either: `data` is only fsynced at commit, so after a power loss an ingest may have
 * lost bytes anyway, and a `ref` lost or torn with it makes sweep() drop the ingest,
 * which a client then starts again. A process crash loses nothing (the kernel has it).
 */
async function writeRecord(dir: string, rec: IngestRecord): Promise<void> {
  const tmp = join(dir, "ref.tmp");
  await writeFile(tmp, JSON.stringify(rec), { mode: privateFileMode });
  await rename(tmp, join(dir, "ref"));
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function recordStatus(rec: IngestRecord, offset: number): IngestStatus {
  return { ref: rec.ref, offset, total: rec.total, expected: rec.expected, startedAt: rec.started_at, updatedAt: rec.updated_at };
}

function statusOf(dir: string, rec: IngestRecord, live: FileIngest | undefined): IngestStatus {
  return live ? live.status() : recordStatus(rec, sizeOf(join(dir, "data")));
}

async function hashFile(file: string, hash: Sha256): Promise<number> {
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) size += await sha256Update(hash, [chunk as Buffer]);
  return size;
}

/**
 * One open ingest: appends to `data` and keeps a running sha256 of it. Each append is
 * written and hashed on a pool thread (native sha256Write): hashing on this process's
 * one thread was what bounded a pull's downloads.
 */
export class FileIngest {
  readonly dir: string;
  readonly dataPath: string;
  private readonly record: IngestRecord;
  private handle: FileHandle;
  private hash: Sha256;
  private size: number;
  /** The append under way: close() waits for it, so its fd is never closed under it. */
  private appending: Promise<unknown> = Promise.resolve();
  /** updated_at changed since `ref` was written. */
  private touched = false;
  private readonly onClose: () => void;

  constructor(dir: string, record: IngestRecord, handle: FileHandle, hash: Sha256, size: number, onClose: () => void) {
    this.dir = dir;
    this.dataPath = join(dir, "data");
    this.record = record;
    this.handle = handle;
    this.hash = hash;
    this.size = size;
    this.onClose = onClose;
  }

  status(): IngestStatus {
    return recordStatus(this.record, this.size);
  }

  get offset(): number {
    return this.size;
  }

  get total(): number {
    return this.record.total;
  }

  get startedAt(): number {
    return this.record.started_at;
  }

  get updatedAt(): number {
    return this.record.updated_at;
  }

  /** sha256 of the bytes so far. */
  digest(): string {
    return sha256Digest(this.hash);
  }

  async write(data: Buffer): Promise<void> {
    await this.writeAll([data]);
  }

  /**
   * Appends several buffers with one writev (the blob fetcher's batches of HTTP
   * chunks: one call and one thread-pool hop where a write each cost ~90 µs of CPU).
   * A failed write still counts the bytes that reached the file: the hash took them.
   */
  async writeAll(chunks: Buffer[]): Promise<void> {
    const appended = sha256Write(this.hash, this.handle.fd, chunks);
    this.appending = appended.catch(() => undefined);
    try {
      this.size += await appended;
    } catch (err) {
      this.size += (err as { bytesWritten?: number }).bytesWritten ?? 0;
      throw err;
    } finally {
      this.touch();
    }
  }

  async truncate(): Promise<void> {
    await this.handle.truncate(0);
    this.hash = sha256Create();
    this.size = 0;
    this.touch();
  }

  /** Flushes `data` to disk and returns its size there. */
  async sync(): Promise<number> {
    await this.handle.sync();
    return (await this.handle.stat()).size;
  }

  /**
   * Lets go of the ingest; `keep` writes the update time into `ref` for a later
   * stream (not wanted when the ingest is about to be removed).
   */
  async close(keep = true): Promise<void> {
    this.onClose();
    await this.appending;
    await this.handle.close().catch(() => {});
    if (keep && this.touched) {
      this.touched = false;
      // Only the timestamp changes here; losing it in a crash costs nothing.
      try {
        await writeRecord(this.dir, this.record);
      } catch {
        // the ingest was aborted meanwhile
      }
    }
  }

  /** Per write: in memory only (a file write per 1 MiB message cost two more fs round trips). */
  private touch(): void {
    this.record.updated_at = Date.now();
    this.touched = true;
  }
}

export class IngestStore {
  private readonly root: string;
  /** Ingests a stream holds open, by dir: their status is in memory. */
  private readonly live = new Map<string, FileIngest>();

  constructor(contentRoot: string) {
    this.root = join(contentRoot, "ingest");
    makePrivateDir(this.root);
  }

  dirOf(namespace: string, ref: string): string {
    return ingestDirOf(dirname(this.root), namespace, ref);
  }

  /**
   * Start-up clean-up of what a crash can leave: a dir without a readable `ref`
   * (crash while creating it), a dir without `data` (crash after its commit renamed
   * the data into the blob store; it would resume at 0 anyway), stray temp files.
   */
  sweep(): number {
    let removed = 0;
    for (const name of readdirSync(this.root)) {
      const dir = join(this.root, name);
      if (!readRecord(dir) || !existsSync(join(dir, "data"))) {
        rmSync(dir, { recursive: true, force: true });
        removed++;
      } else {
        rmSync(join(dir, "ref.tmp"), { force: true });
      }
    }
    return removed;
  }

  /**
   * Removes ingests a dead or vanished writer abandoned (none open now): one opened
   * under a lease that is gone (deleted, or expired and collected), and one held by no
   * lease (`leased`) untouched since `cutoff` (ms); returns their refs.
   */
  expire(cutoff: number, leased: (namespace: string, ref: string) => boolean, leaseExists: (namespace: string, lease: string) => boolean): string[] {
    const removed: string[] = [];
    for (const name of readdirSync(this.root)) {
      const dir = join(this.root, name);
      const rec = readRecord(dir);
      if (!rec || this.live.has(dir)) continue;
      const abandoned = rec.lease ? !leaseExists(rec.namespace, rec.lease) : rec.updated_at < cutoff && !leased(rec.namespace, rec.ref);
      if (!abandoned) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(rec.ref);
    }
    return removed;
  }

  /**
   * Opens the ingest for a ref, creating it or resuming it: the offset is the size
   * of `data` and the digest is recomputed from it.
   */
  async open(namespace: string, ref: string, total: number, expected: string, lease?: string): Promise<FileIngest> {
    const dir = this.dirOf(namespace, ref);
    let record = readRecord(dir);
    if (record && (record.ref !== ref || record.namespace !== namespace)) record = undefined;
    if (record && total > 0 && record.total > 0 && total !== record.total) {
      throw failedPrecondition(`ref ${ref}: provided total differs from status: ${total} != ${record.total}`);
    }
    const now = Date.now();
    const fresh = !record;
    if (!record) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await rm(join(dir, "data"), { force: true });
      record = { ref, namespace, total, expected, started_at: now, updated_at: now, ...(lease ? { lease } : {}) };
      await writeRecord(dir, record);
    } else if ((total > 0 && record.total === 0) || (expected !== "" && expected !== record.expected)) {
      record = { ...record, total: total > 0 ? total : record.total, expected: expected || record.expected };
      await writeRecord(dir, record);
    }
    const handle = await open(join(dir, "data"), "a", privateFileMode);
    try {
      // The data file becomes the blob by rename: its mode is the blob's, whatever the umask.
      await handle.chmod(privateFileMode);
      const hash = sha256Create();
      // A new ingest's data file was just created empty: nothing to hash.
      const size = fresh ? 0 : await hashFile(join(dir, "data"), hash);
      const ingest: FileIngest = new FileIngest(dir, record, handle, hash, size, () => {
        if (this.live.get(dir) === ingest) this.live.delete(dir);
      });
      this.live.set(dir, ingest);
      return ingest;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  status(namespace: string, ref: string): IngestStatus {
    const dir = this.dirOf(namespace, ref);
    const rec = readRecord(dir);
    if (!rec || rec.ref !== ref || rec.namespace !== namespace) throw notFound(`ingest ref "${ref}"`);
    return statusOf(dir, rec, this.live.get(dir));
  }

  list(namespace: string): IngestStatus[] {
    const out: IngestStatus[] = [];
    for (const name of readdirSync(this.root)) {
      const dir = join(this.root, name);
      const rec = readRecord(dir);
      if (rec && rec.namespace === namespace) out.push(statusOf(dir, rec, this.live.get(dir)));
    }
    return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  }

  exists(namespace: string, ref: string): boolean {
    const rec = readRecord(this.dirOf(namespace, ref));
    return rec !== undefined && rec.ref === ref && rec.namespace === namespace;
  }

  /**
   * A blob's bytes in a temp file of their own (fsynced), for a commit that needs no
   * ingest. A crash leaves at most the file, which sweep() removes like any dir
   * without a readable `ref`.
   */
  async writeTemp(data: Buffer): Promise<string> {
    const file = join(this.root, tempName("tmp-"));
    await writeFile(file, data, { flag: "wx", mode: privateFileMode, flush: true });
    return file;
  }

  async remove(namespace: string, ref: string): Promise<void> {
    await rm(this.dirOf(namespace, ref), { recursive: true, force: true });
  }
}
