// Apply from a download still under way: the pull's layer job names the blob's ingest
// (an Apply payload), and the native applier reads the ingest's data file as the
// content process appends to it, so the layer is extracted while it downloads instead
// of after. The bytes are hashed as they are read and checked against the descriptor's
// digest and size once all have come; an ingest removed before then (the download
// failed and was aborted) fails the apply. Either way the caller's target is emptied
// again on failure, so the snapshot is never committed with unverified content.
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Descriptor } from "../../core/gen/containerd/types/descriptor.ts";
import { layerCompression, resolveCompression } from "../../core/tar/compression.ts";
import { ingestDirOf } from "../content/layout.ts";
import { applyNative, type NativeApplyDeps, type NativeTarget } from "./native-apply.ts";

/** Bytes the compression is told by (gzip's magic is 2, zstd's 4; xz's 6). */
const headBytes = 6;

/** How long the first bytes of a download whose ingest exists are waited for. */
const headWaitMs = 30_000;

/**
 * The blob's first bytes, once written: an extraction may start as its download does,
 * before they are (and the stored blob it would fall back to does not exist yet). undefined
 * when the ingest goes first (its download failed, or it was committed meanwhile), or
 * nothing comes for headWaitMs.
 */
async function readHead(handle: FileHandle, size: number, signal: AbortSignal): Promise<Buffer | undefined> {
  const want = Math.min(headBytes, size);
  const buffer = Buffer.alloc(want);
  const deadline = Date.now() + headWaitMs;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, want, 0);
    if (bytesRead === want) return buffer;
    if ((await handle.stat()).nlink === 0 || Date.now() > deadline) return undefined;
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export interface IngestApply {
  deps: NativeApplyDeps;
  contentRoot: string;
  namespace: string;
  ref: string;
}

/**
 * Extracts the blob of `desc` from the ingest `ref` as it grows. undefined when the
 * ingest is not there to read (not started, or already committed: the caller applies
 * the stored blob instead), or cannot be streamed (zstd, or it went before its first
 * bytes came); nothing was written then. On failure the caller must empty the target.
 */
export async function applyFromIngest(source: IngestApply, desc: Descriptor, target: NativeTarget, signal: AbortSignal) {
  const declared = layerCompression(desc.mediaType);
  if (declared === "zstd") return undefined;
  const size = Number(desc.size);
  const dataPath = join(ingestDirOf(source.contentRoot, source.namespace, source.ref), "data");
  // Held open: the commit renames the file into the blob store, which must not end the read.
  const handle = await open(dataPath, "r").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!handle) return undefined;
  try {
    const head = await readHead(handle, size, signal);
    if (!head) return undefined;
    const compression = resolveCompression(declared, head, `layer ${desc.digest}`);
    if (compression === "zstd") return undefined;
    return await applyNative(source.deps, `/proc/self/fd/${handle.fd}`, desc, target, { digest: desc.digest, size }, signal, { compression, size });
  } finally {
    await handle.close();
  }
}
