// Apply through the native layer applier (native/src/layer_apply.c): the content
// store's blob file is inflated, hashed and extracted on a libuv pool thread, so layers
// of several pulls extract at once and the event loop stays free. Used for gzip and
// plain layers whose blob file is at hand; anything else (zstd, a blob only the content
// service can read, a kernel without openat2, a media type the bytes contradict) is
// left to the JS applier by returning undefined, before anything is written.
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { CallOptions } from "nice-grpc";
import { BerthError, type ErrorKind } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import type { Logger } from "../../core/log.ts";
import { layerCompression, resolveCompression, type Compression } from "../../core/tar/compression.ts";
import { byteString } from "../../core/tar/byte-fs.ts";
import type { ContentClient } from "../../core/gen/containerd/services/content/v1/content.ts";
import type { Descriptor } from "../../core/gen/containerd/types/descriptor.ts";
import type { ApplyLayerOptions, ApplyLayerResult } from "../../native/index.ts";
import { integrityFailure, storedSize } from "./content-io.ts";

export type LayerApplier = (options: ApplyLayerOptions) => Promise<ApplyLayerResult>;

export interface NativeTarget {
  root: string;
  whiteouts: "overlay" | "delete";
  lowers: readonly string[];
}

const errorKinds: Record<"invalid" | "system" | "cancelled", ErrorKind> = { invalid: "invalid argument", system: "unknown", cancelled: "canceled" };

let unsupportedLogged = false;

/** The compression the native applier can take for this blob file, or undefined (JS path). */
async function nativeCompression(file: string, desc: Descriptor): Promise<Exclude<Compression, "zstd"> | undefined> {
  let head: Buffer;
  try {
    const handle = await open(file, "r");
    try {
      const buffer = Buffer.alloc(6);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      head = buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
  try {
    const compression = resolveCompression(layerCompression(desc.mediaType), head, `layer ${desc.digest}`);
    return compression === "zstd" ? undefined : compression;
  } catch {
    // The JS path reports it, after checking the bytes against their digest first.
    return undefined;
  }
}

export interface NativeApplyDeps {
  applyLayer: LayerApplier;
  log: Logger;
}

/**
 * Extracts `file` (a layer blob) into target.root. undefined: not applied, nothing
 * written (the caller uses the JS path). `expected` (the store's digest and size of the
 * file) makes the bytes be checked: a mismatch is reported before any extraction error,
 * since corrupt bytes may be what made extraction fail. On failure the caller must
 * clear what was written.
 */
export async function applyNative(
  deps: NativeApplyDeps,
  file: string,
  desc: Descriptor,
  target: NativeTarget,
  expected: { digest: string; size: number } | undefined,
  signal: AbortSignal,
  growing?: { compression: Exclude<Compression, "zstd">; size: number },
): Promise<{ digest: string; size: number; copyUpDirs: string[] } | undefined> {
  // A file still being written may not hold its head yet: its caller sniffed it once it did.
  const compression = growing?.compression ?? (await nativeCompression(file, desc));
  if (compression === undefined) return undefined;
  // As the JS applier, stop between entries once the caller went away.
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(cancel, 0, 1);
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  let result: ApplyLayerResult;
  try {
    result = await deps.applyLayer({ blob: file, compression, root: target.root, whiteouts: target.whiteouts, lowers: target.lowers, cancel, ...(growing ? { growingSize: growing.size } : {}) });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  const error = result.error;
  if (error?.kind === "cancelled") signal.throwIfAborted();
  if (error?.kind === "unsupported") {
    if (!unsupportedLogged) deps.log.info({ reason: error.message }, "apply: native layer applier unavailable, using the JS one");
    unsupportedLogged = true;
    return undefined;
  }
  if (expected && result.blobDigest !== "") {
    const failure = integrityFailure(expected.digest, result.blobSize, expected.size, result.blobDigest);
    if (failure) throw failure;
  }
  for (const warning of result.warnings) deps.log.warn({ layer: desc.digest }, warning);
  if (error) {
    const kind = errorKinds[error.kind];
    const message = error.message.includes(desc.digest) ? error.message : `layer ${desc.digest}: ${error.message}`;
    throw new BerthError(kind, message);
  }
  return { digest: result.diffId, size: result.size, copyUpDirs: result.copyUpDirs.map(byteString) };
}

/** The blob file of `digest` in the content store's directory, after the store says the caller's namespace holds it. */
export async function storeBlobFile(
  content: ContentClient,
  blobDir: string,
  desc: Descriptor,
  options: CallOptions,
): Promise<{ file: string; expected: { digest: string; size: number } }> {
  const digest = parseDigest(desc.digest);
  const stored = await storedSize(content, { digest, size: Number(desc.size) }, digest, options);
  return { file: join(blobDir, digest.slice(digest.indexOf(":") + 1)), expected: { digest, size: stored } };
}
