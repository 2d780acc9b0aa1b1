// A build step's own rootfs (a COPY's snapshot, a RUN's container) mounted with overlayfs's
// `volatile`: unmounting an overlay otherwise syncs its whole upper filesystem, measured at
// 5–90 ms per unmount on a busy disk. Nothing relies on that sync: the step's result is
// the layer the diff service stores (and fsyncs), and a snapshot the diff service unpacks
// is not synced either. Kernels before 5.10 do not know the option: left as they are there.
import { release } from "node:os";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";

/** Whether a kernel release string (uname -r) is 5.10 or later. */
export function volatileSupported(kernel: string = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 10);
}

/** The mounts with `volatile` added to each overlay (unchanged where the kernel lacks it). */
export function unsynced(mounts: readonly Mount[], kernel: string = release()): Mount[] {
  if (!volatileSupported(kernel)) return [...mounts];
  return mounts.map((m) => (m.type === "overlay" && !m.options.includes("volatile") ? { ...m, options: [...m.options, "volatile"] } : m));
}
