// A build step's layer: the diff service's Diff of the step's snapshot over its parent,
// with the parent side given as a read-only view of the overlay's own lower dirs. The
// diff service then reads the changes from the upper dir as it does for a snapshot view,
// and the step saves what diffLayer spends on finding both sides: a snapshot stat, its
// mounts, and a parent view made and removed (four round trips, two of them writes).
import { randomBytes } from "node:crypto";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import type { Backend } from "../backend.ts";
import { serverError } from "../http.ts";
import { diffLayer } from "../archive/commit.ts";

/** The parent side of an overlay with upper dir: its lower dirs, read-only (a single one as a bind). */
export function parentView(mounts: readonly Mount[]): Mount[] | undefined {
  if (mounts.length !== 1 || mounts[0]!.type !== "overlay") return undefined;
  const options = mounts[0]!.options;
  if (!options.some((o) => o.startsWith("upperdir="))) return undefined;
  const lowers = options.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length).split(":").filter(Boolean) ?? [];
  if (lowers.length === 0) return undefined;
  if (lowers.length === 1) return [{ type: "bind", source: lowers[0]!, target: "", options: ["ro", "rbind"] }];
  return [{ type: "overlay", source: "overlay", target: "", options: ["ro", `lowerdir=${lowers.join(":")}`] }];
}

/** The layer of snapshot `key`, whose mounts are `mounts` when the caller has them. */
export async function stepLayer(backend: Backend, snapshotter: string, key: string, mounts: readonly Mount[] | undefined, lease: string, mediaType: string): Promise<{ mediaType: string; digest: string; size: number }> {
  const left = mounts && parentView(mounts);
  if (!mounts || !left) return diffLayer(backend, snapshotter, key, lease, mediaType);
  const right = mounts.map((m) => ({ ...m, options: [...m.options] }));
  const { diff } = await backend.images.diff.diff({ left, right, mediaType, ref: `build-layer-${randomBytes(8).toString("hex")}`, labels: {} }, backend.call(lease));
  if (!diff) throw serverError("the diff service returned no layer");
  return { mediaType: diff.mediaType, digest: diff.digest, size: Number(diff.size) };
}
