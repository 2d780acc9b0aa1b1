// A small RUN layer made in the engine instead of by the diff service. A RUN step mostly
// writes a few files, and the diff service's Diff spent ~20 ms of each RUN step on hops
// (engine → diff → content) and on finding the diff id only once the blob was stored:
// the step's snapshot can only be committed under its chain id, and the next step start,
// after that. Read here, the layer's digest is known before anything is stored, so the
// blob's write and the snapshot's commit go side by side.
//
// The tar is the diff service's own: the same reader of the overlay's upper dir and the
// same writer (core/tar/changes.ts), the same media type (uncompressed, so the digest is
// the diff id) and the same label. Only layers up to one content message are made here
// (one round trip to store); a larger one, or an upper dir a plain read cannot turn into
// a layer (redirects, metacopy), is left to the diff service (undefined).
import { createHash, randomBytes } from "node:crypto";
import type { CallOptions } from "nice-grpc";
import type { ContentClient } from "../../../core/gen/containerd/services/content/v1/content.ts";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { updateBlobLabels, writeBlob } from "../../../core/content-client.ts";
import { labels as wellKnown } from "../../../core/image/media-types.ts";
import { changesToTar, overlayUpperChanges, UpperDirNotPortable } from "../../../core/tar/changes.ts";
import type { LayerSys } from "../../../core/tar/sys.ts";
import { parentView } from "./step-layer.ts";

/** The most a layer made here may hold: one content message, stored in one round trip. */
export const engineLayerLimit = 1024 * 1024;

export interface EngineLayer {
  /** The uncompressed tar. */
  tar: Buffer;
  /** Its sha256: digest and diff id alike. */
  digest: string;
}

/**
 * The layer of a step whose rootfs is `mounts` (an overlay with an upper dir over the
 * parent's lower dirs), read from its upper dir; undefined when it is larger than
 * `limit` bytes or the upper dir is not plainly readable (the diff service then makes it).
 */
export async function upperDirLayer(mounts: readonly Mount[], sys: LayerSys, limit = engineLayerLimit): Promise<EngineLayer | undefined> {
  // parentView is what the step would give the diff service as the left side: with it the
  // service reads the upper dir alone, as here.
  if (!parentView(mounts)) return undefined;
  const upper = mounts[0]!.options.find((o) => o.startsWith("upperdir="))!.slice("upperdir=".length);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of changesToTar(overlayUpperChanges(upper, sys), sys, { upper })) {
      size += chunk.length;
      // Leaving the loop closes the generators (and a file they were reading).
      if (size > limit) return undefined;
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof UpperDirNotPortable) return undefined;
    throw err;
  }
  const tar = Buffer.concat(chunks, size);
  return { tar, digest: `sha256:${createHash("sha256").update(tar).digest("hex")}` };
}

/** Stores the layer in the content store (under the call's lease), labelled with its diff id as the diff service labels it. */
export async function storeEngineLayer(content: ContentClient, layer: EngineLayer, call: CallOptions): Promise<void> {
  const labels = { [wellKnown.uncompressed]: layer.digest };
  const written = await writeBlob(content, layer.tar, { ref: `build-layer-${randomBytes(8).toString("hex")}`, expected: layer.digest, labels, abortOnFailure: true }, call);
  // A blob stored before (the same RUN in another build) keeps its labels: it must still name its diff id.
  if (written.existed) await updateBlobLabels(content, layer.digest, labels, call);
}
