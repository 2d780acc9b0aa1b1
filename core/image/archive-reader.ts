// Reading an image archive (a tar, optionally gzip'd) entry by entry. Entry names
// are checked before anything else sees them: absolute paths and ".." components
// are refused, although nothing is ever written to disk by an entry's name.
import { pipeline, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { extract, type Extract } from "tar-stream";
import { writeChunk } from "../stream-write.ts";

/** tar-stream's (streamx) entry stream; the package does not export its name. */
type Entry = Extract extends AsyncIterable<infer S> ? S : never;

export class ArchiveError extends Error {
  override name = "ArchiveError";
}

/** A clean archive-relative path ("./a//b/" → "a/b"), or an ArchiveError. */
export function archivePath(name: string): string {
  if (name.startsWith("/")) throw new ArchiveError(`archive entry "${name}": absolute paths are not allowed`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new ArchiveError(`archive entry "${name}": path escapes the archive ("..")`);
  return parts.join("/");
}

/** Where a symlink inside the archive points, as an archive path (it may not leave the archive). */
export function symlinkTarget(entryPath: string, linkname: string): string {
  if (linkname.startsWith("/")) throw new ArchiveError(`archive entry "${entryPath}": symlink to absolute path "${linkname}" is not allowed`);
  const parts = entryPath.split("/").slice(0, -1);
  for (const part of linkname.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) throw new ArchiveError(`archive entry "${entryPath}": symlink "${linkname}" escapes the archive`);
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  return parts.join("/");
}

export type EntryType = "file" | "directory" | "symlink" | "link" | "other";

export interface ArchiveEntry {
  path: string;
  type: EntryType;
  size: number;
  linkname: string;
  /** The entry's bytes; must be consumed (or drained) before the next entry comes. */
  stream: Entry;
}

function entryType(type: string | null | undefined): EntryType {
  switch (type) {
    case "file":
    case "contiguous-file":
    case undefined:
    case null:
      return "file";
    case "directory":
      return "directory";
    case "symlink":
      return "symlink";
    case "link":
      return "link";
    default:
      return "other";
  }
}

/** Passes the bytes through, gunzipping when they start with the gzip magic. */
async function* decompressIfGzip(input: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  const iterator = input[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let done = false;
  while (head.length < 3) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    head = Buffer.concat([head, typeof next.value === "string" ? Buffer.from(next.value) : next.value]);
  }
  async function* rest(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    while (true) {
      const next = await iterator.next();
      if (next.done) return;
      yield typeof next.value === "string" ? Buffer.from(next.value) : next.value;
    }
  }
  if (head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) {
    const gunzip = createGunzip();
    const source = Readable.from(rest());
    const out = pipeline(source, gunzip, () => undefined);
    try {
      for await (const chunk of out) yield chunk as Buffer;
    } catch (err) {
      throw new ArchiveError(`archive is not a valid gzip stream: ${(err as Error).message}`);
    }
    return;
  }
  yield* rest();
}

function archiveFailure(err: unknown): Error {
  if (err instanceof ArchiveError) return err;
  const message = (err as Error)?.message ?? String(err);
  if (message === "Unexpected end of data") return new ArchiveError("archive is truncated: unexpected end of data");
  if (/Invalid tar header|Invalid header|unknown format/.test(message)) return new ArchiveError(`not a valid tar archive: ${message}`);
  return err instanceof Error ? err : new Error(message);
}

/**
 * The archive's entries in order. A truncated or corrupt tar ends the iteration
 * with an ArchiveError (also from inside an entry's stream).
 */
export async function* readArchive(input: AsyncIterable<Buffer | string>): AsyncGenerator<ArchiveEntry> {
  const tar = extract();
  const source = decompressIfGzip(input);
  // tar-stream is streamx-based: feed it by hand, with backpressure.
  void (async () => {
    for await (const chunk of source) {
      if (tar.destroyed) return;
      await writeChunk(tar, chunk);
    }
    if (!tar.destroyed) tar.end(undefined);
  })().catch((err: unknown) => tar.destroy(err as Error));
  try {
    for await (const entry of tar) {
      const header = entry.header;
      const path = archivePath(header.name);
      yield { path, type: entryType(header.type), size: header.size ?? 0, linkname: header.linkname ?? "", stream: entry };
      // Whatever the consumer left unread is skipped.
      entry.resume();
    }
  } catch (err) {
    throw archiveFailure(err);
  } finally {
    tar.destroy();
  }
}

/** Reads an entry's stream, translating a truncated archive into an ArchiveError. */
export async function* entryChunks(entry: ArchiveEntry): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of entry.stream) yield chunk as Buffer;
  } catch (err) {
    throw archiveFailure(err);
  }
}

/** A small entry (JSON documents) read whole, refused beyond `limit` bytes. */
export async function entryBytes(entry: ArchiveEntry, limit = 20 * 1024 * 1024): Promise<Buffer> {
  if (entry.size > limit) throw new ArchiveError(`archive entry "${entry.path}" is ${entry.size} bytes, more than the ${limit} allowed`);
  const parts: Buffer[] = [];
  for await (const chunk of entryChunks(entry)) parts.push(chunk);
  return Buffer.concat(parts);
}
