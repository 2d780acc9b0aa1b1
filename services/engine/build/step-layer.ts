// A build step's layer: the diff service's Diff of the step's snapshot over its parent,
// with the parent side given as a read-only view of the overlay's own lower dirs. The
// diff service then reads the changes from the upper dir as it does for a snapshot view,
// and the step saves what diffLayer spends on finding both sides: a snapshot stat, its
// mounts, and a parent view made and removed (four round trips, two of them writes).
//
// A small layer is made in the engine instead (ownLayer): the same walk of the upper dir
// and the same tar encoding the diff service runs (core/tar/changes.ts), so the bytes are
// the same, without the hop to the diff service and its three content round trips (open,
// write, commit): the blob goes to the content store in one commit. Its digest is known
// before it is stored, so the step's snapshot is committed under its chain id meanwhile.
import { createHash, randomBytes } from "node:crypto";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { blobInfo, updateBlobLabels, writeBlob } from "../../../core/content-client.ts";
import { labels as wellKnown } from "../../../core/image/media-types.ts";
import { changesToTar, overlayUpperChanges, UpperDirNotPortable } from "../../../core/tar/changes.ts";
import { diffOutputCompression, mediaTypeFor } from "../../../core/tar/compression.ts";
import type { LayerSys } from "../../../core/tar/sys.ts";
import * as native from "../../../native/index.ts";
import type { Backend } from "../backend.ts";
import { serverError } from "../http.ts";
import { diffLayer } from "../archive/commit.ts";

export interface LayerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function overlayOption(mount: Mount, name: string): string | undefined {
  return mount.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** The parent side of an overlay with upper dir: its lower dirs, read-only (a single one as a bind). */
export function parentView(mounts: readonly Mount[]): Mount[] | undefined {
  if (mounts.length !== 1 || mounts[0]!.type !== "overlay") return undefined;
  if (overlayOption(mounts[0]!, "upperdir") === undefined) return undefined;
  const lowers = overlayOption(mounts[0]!, "lowerdir")?.split(":").filter(Boolean) ?? [];
  if (lowers.length === 0) return undefined;
  if (lowers.length === 1) return [{ type: "bind", source: lowers[0]!, target: "", options: ["ro", "rbind"] }];
  return [{ type: "overlay", source: "overlay", target: "", options: ["ro", `lowerdir=${lowers.join(":")}`] }];
}

/** The layer of snapshot `key`, whose mounts are `mounts` when the caller has them. */
export async function stepLayer(backend: Backend, snapshotter: string, key: string, mounts: readonly Mount[] | undefined, lease: string, mediaType: string): Promise<LayerDescriptor> {
  const left = mounts && parentView(mounts);
  if (!mounts || !left) return diffLayer(backend, snapshotter, key, lease, mediaType);
  const right = mounts.map((m) => ({ ...m, options: [...m.options] }));
  const { diff } = await backend.images.diff.diff({ left, right, mediaType, ref: `build-layer-${randomBytes(8).toString("hex")}`, labels: {} }, backend.call(lease));
  if (!diff) throw serverError("the diff service returned no layer");
  return { mediaType: diff.mediaType, digest: diff.digest, size: Number(diff.size) };
}

/**
 * The most bytes a layer made in the engine may have: it is held in memory until stored.
 * A larger one stops being read there and goes to the diff service, which streams it.
 */
export const ownLayerLimit = 4 << 20;

/**
 * Tar pieces (a header, a file's bytes, its padding) read between two turns of the event
 * loop: the walk's syscalls are synchronous, and a layer of many small files would
 * otherwise hold the engine's API for the whole walk (~30 µs an entry).
 */
const piecesPerTurn = 768;

/** An uncompressed layer tar read in the engine: its bytes and their digest (its diff id too). */
export interface OwnLayer {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

/**
 * The layer of a step whose rootfs was `mounts` (unmounted now), read from the overlay's
 * upper dir as the diff service reads it; undefined where the diff service must make it:
 * no upper dir over lower dirs, a compressed media type, more than `limit` bytes, or an
 * upper dir only a comparison of both trees can describe (overlayfs redirects, metacopy).
 */
export async function ownLayer(mounts: readonly Mount[], mediaType: string, limit = ownLayerLimit, sys: LayerSys = native): Promise<OwnLayer | undefined> {
  if (!parentView(mounts) || diffOutputCompression(mediaType) !== "none") return undefined;
  const upper = overlayOption(mounts[0]!, "upperdir")!;
  const hash = createHash("sha256");
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of changesToTar(overlayUpperChanges(upper, sys), sys, { upper })) {
      size += chunk.length;
      if (size > limit) return undefined;
      hash.update(chunk);
      parts.push(chunk);
      if (parts.length % piecesPerTurn === 0) await new Promise((resolve) => setImmediate(resolve));
    }
  } catch (err) {
    if (err instanceof UpperDirNotPortable) return undefined;
    throw err;
  }
  return { mediaType: mediaTypeFor("none"), digest: `sha256:${hash.digest("hex")}`, bytes: Buffer.concat(parts, size) };
}

/** Stores a layer made in the engine, labelled with its diff id as the diff service labels the layers it writes. */
export async function storeOwnLayer(backend: Backend, layer: OwnLayer, lease: string): Promise<LayerDescriptor> {
  const call = backend.call(lease);
  const labels = { [wellKnown.uncompressed]: layer.digest };
  const ref = `build-layer-${randomBytes(8).toString("hex")}`;
  const written = await writeBlob(backend.images.content, layer.bytes, { ref, expected: layer.digest, labels, abortOnFailure: true }, call);
  // A blob stored before keeps its bytes; it must still name its diff id. Mostly it was a
  // build's (the same RUN output within a second), which set that label: then a read
  // answered in berthd (store-reads.ts) spares a write to the content process.
  if (written.existed && (await blobInfo(backend.images.content, layer.digest, call))?.labels[wellKnown.uncompressed] !== layer.digest) {
    await updateBlobLabels(backend.images.content, layer.digest, labels, call);
  }
  return { mediaType: layer.mediaType, digest: layer.digest, size: layer.bytes.length };
}
