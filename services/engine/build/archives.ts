// ADD of a local archive: a file is unpacked when, decompressed, it starts with a tar
// header (as Docker decides: gzip, bzip2, xz, zstd or none; anything else is copied as
// a file, a `.tar.gz` name or not). gzip and zstd are Node's; bzip2 and xz run Debian's
// own tools, as Docker's daemon runs `xz` (Node has neither).
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import type { Readable } from "node:stream";
import { applyTar } from "../../../core/tar/apply.ts";
import { readTar } from "../../../core/tar/reader.ts";
import { decompressor, sniffCompression } from "../../../core/tar/compression.ts";
import * as native from "../../../native/index.ts";

export type ArchiveFormat = "none" | "gzip" | "zstd" | "bzip2" | "xz";

const tools: Record<"bzip2" | "xz", string[]> = { bzip2: ["bzip2", "-d", "-c", "-q"], xz: ["xz", "-d", "-c", "-q"] };

/** An archive that cannot be read (a decompressor's failure, a broken tar). */
export class ArchiveError extends Error {
  override name = "ArchiveError";
}

/** The decompressor a format needs is not installed: the file cannot even be told apart from a plain one. */
export class MissingDecompressor extends ArchiveError {
  override name = "MissingDecompressor";
}

interface Decompressed {
  stream: Readable;
  /** Settles when the decompressor is done; rejects with its failure. */
  finished(): Promise<void>;
  /** No more output is wanted: a decompressor that was still writing ends (its broken pipe is no failure). */
  close(): void;
}

function decompressed(host: string, format: ArchiveFormat): Decompressed {
  const file = createReadStream(host);
  if (format === "none") return { stream: file, finished: async () => undefined, close: () => file.destroy() };
  if (format === "gzip" || format === "zstd") {
    const stream = file.pipe(decompressor(format));
    file.on("error", (err) => stream.destroy(err));
    return { stream, finished: async () => undefined, close: () => (file.destroy(), stream.destroy()) };
  }
  const [command, ...args] = tools[format];
  const child: ChildProcess = spawn(command!, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  // A child that ended early (its output no longer wanted) closes its stdin under the file's pipe.
  child.stdin!.on("error", () => undefined);
  file.pipe(child.stdin!);
  const exit = new Promise<void>((resolve, reject) => {
    child.once("error", (err) => reject(new MissingDecompressor(`cannot run ${command} to decompress the archive (is it installed? scripts/setup.sh installs it): ${err.message}`)));
    child.once("close", (code, signal) => {
      file.destroy();
      // Ended by the closed pipe of output nobody reads any more: not the archive's fault.
      if (code === 0 || signal === "SIGPIPE" || /broken pipe/i.test(stderr)) resolve();
      else reject(new ArchiveError(`${command} could not decompress the archive (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
  exit.catch(() => undefined);
  return { stream: child.stdout!, finished: () => exit, close: () => child.stdout!.destroy() };
}

/** Whether a 512-byte block is a tar header: its checksum holds (an all-zero block is an empty archive, not one). */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156).toString("latin1").replace(/[\0 ]+$/, "").trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === Number.parseInt(field, 8);
}

/** The first `n` bytes the format decompresses to (fewer when the data ends or is corrupt). */
async function head(host: string, format: ArchiveFormat, n: number): Promise<Buffer> {
  const source = decompressed(host, format);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of source.stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= n) break;
    }
  } catch {
    // corrupt data: whatever came out before decides
  } finally {
    source.close();
  }
  // A decompressor that fails on the head leaves fewer bytes than a tar header: no archive.
  await source.finished().catch((err: unknown) => {
    if (err instanceof MissingDecompressor) throw err;
  });
  return Buffer.concat(chunks).subarray(0, n);
}

/** The archive format of a file ADD unpacks, or undefined when it is to be copied as it is. */
export async function archiveFormat(host: string): Promise<ArchiveFormat | undefined> {
  const fd = openSync(host, "r");
  const start = Buffer.alloc(512);
  let n: number;
  try {
    n = readSync(fd, start, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  const format: ArchiveFormat = sniffCompression(start.subarray(0, n));
  return isTarHeader(format === "none" ? start.subarray(0, n) : await head(host, format, 512)) ? format : undefined;
}

/** ADD of a local archive: its entries extracted into the directory `dir`. */
export async function unpackArchive(host: string, format: ArchiveFormat, dir: string): Promise<void> {
  const source = decompressed(host, format);
  try {
    await applyTar(readTar(source.stream as AsyncIterable<Uint8Array>), { root: dir, whiteouts: "delete", sys: native });
  } catch (err) {
    source.close();
    // The decompressor's own failure says more than the tar reader's truncated input.
    await source.finished();
    throw err;
  }
  // What follows the end-of-archive blocks (a tar's record padding) is not needed.
  source.close();
  await source.finished();
}
