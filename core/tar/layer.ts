// One layer blob → a root directory: settle the compression (media type + magic bytes),
// decompress, hash every uncompressed byte (the diff id covers the whole stream,
// trailing padding included), parse and apply.
import { createHash } from "node:crypto";
import { pipeline, Readable } from "node:stream";
import { invalidArgument } from "../errors.ts";
import { applyTar, type ApplyOptions } from "./apply.ts";
import { asyncIteratorOf, ByteReader, type ByteSource } from "./byte-reader.ts";
import { decompressor, resolveCompression, type Compression } from "./compression.ts";
import { readTar } from "./reader.ts";

export interface UnpackResult {
  /** sha256 of the uncompressed tar: the layer's diff id. */
  digest: string;
  /** Size of the uncompressed tar. */
  size: number;
  compression: Compression;
  entries: number;
  /** See ApplyResult.copyUpDirs. */
  copyUpDirs: string[];
}

/** Splits the first `n` bytes off a chunk source, returning them and the whole source again. */
export async function peekBytes(source: ByteSource, n: number): Promise<{ head: Buffer; source: AsyncIterable<Buffer> }> {
  const iterator = asyncIteratorOf(source);
  const seen: Buffer[] = [];
  let have = 0;
  let done = false;
  while (have < n) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    seen.push(chunk);
    have += chunk.length;
  }
  const head = Buffer.concat(seen).subarray(0, n);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      yield* seen;
      if (done) return;
      while (true) {
        const next = await iterator.next();
        if (next.done) return;
        yield Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      }
    } finally {
      if (!done) await iterator.return?.();
    }
  }
  return { head, source: replay() };
}

/** The decompressed bytes of a source; codec failures become invalid-argument errors naming `what`. */
export function decompressed(source: AsyncIterable<Buffer>, compression: Compression, what: string): AsyncIterable<Buffer> {
  if (compression === "none") return source;
  const codec = decompressor(compression);
  pipeline(Readable.from(source, { objectMode: false }), codec, () => {});
  return (async function* () {
    try {
      for await (const chunk of codec) yield chunk as Buffer;
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? "");
      if (code.startsWith("Z_") || code.startsWith("ZSTD_") || code === "ERR_ZSTD_INVALID_PARAM") {
        throw invalidArgument(`${what}: corrupt ${compression} data: ${(err as Error).message}`);
      }
      throw err;
    } finally {
      codec.destroy();
    }
  })();
}

/**
 * Applies a (possibly compressed) layer stream to options.root. `declared` comes from
 * layerCompression(mediaType). `what` names the layer in error messages.
 */
export async function unpackLayer(
  source: ByteSource,
  declared: Compression | "detect",
  options: ApplyOptions & {
    what: string;
    /**
     * The source's own digest, when the caller verifies the source against it: an
     * uncompressed layer's diff id is that digest, so the bytes are not hashed twice
     * (a second sha256 over every byte of a plain layer). The result is only as good as
     * the caller's check, which must come before the result is used.
     */
    sourceDigest?: string;
  },
): Promise<UnpackResult> {
  const { head, source: whole } = await peekBytes(source, 6);
  const compression = resolveCompression(declared, head, options.what);
  const hash = compression === "none" && options.sourceDigest ? undefined : createHash("sha256");
  let size = 0;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of decompressed(whole, compression, options.what)) {
      hash?.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  }
  const reader = new ByteReader(hashed());
  try {
    const { entries, copyUpDirs } = await applyTar(readTar(reader), options);
    // The diff id covers everything the decompressor yields, padding after the end marker too.
    await reader.drain();
    return { digest: hash ? `sha256:${hash.digest("hex")}` : options.sourceDigest!, size, compression, entries, copyUpDirs };
  } finally {
    await reader.close();
  }
}
