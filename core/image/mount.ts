// Mounting an image's rootfs at a host path, as ctr's `images mount` does: a lease
// named after the target keeps a read-only View of the top chain id alive, and the
// client mounts the snapshot's mounts itself (reference §1.10: mounts are valid
// mount(2) input on this host). `unmount --rm` drops lease and view.
import type { Mount } from "../gen/containerd/types/mount.ts";
import { MountError, mountAll, unmountAll } from "../mounts.ts";
import { createLease, deleteLease } from "./lease.ts";
import { labels as wellKnown } from "./media-types.ts";
import type { Descriptor } from "./manifest.ts";
import { onlyPlatform, hostPlatform, parsePlatform, type Platform } from "./platform.ts";
import { errorMessage, isNotFound } from "../grpc-client.ts";
import { prepareRootfs } from "../rootfs.ts";
import { callOptions, type ImageServices } from "./services.ts";
import { resolveSnapshotter, unpackImage } from "./unpack.ts";

export interface MountImageOptions {
  snapshotter?: string;
  /** Default: this host. */
  platform?: Platform | string;
  /** A writable (Prepare) snapshot instead of a read-only View. */
  rw?: boolean;
}

export interface MountImageResult {
  chainId: string;
  snapshotter: string;
  mounts: Mount[];
}

/**
 * images mount: lease id = target (labels gc.ref.snapshot.<sn>=target and
 * gc.expire), unpack if needed, View(key=target, parent=top chain id), mount it.
 * The lease stays until `unmountImage(..., {remove: true})`.
 */
export async function mountImage(svc: ImageServices, image: string | Descriptor, target: string, options: MountImageOptions = {}): Promise<MountImageResult> {
  const snapshotter = await resolveSnapshotter(svc, options.snapshotter);
  const lease = await createLease(svc, { id: target, labels: { [`${wellKnown.gcRefSnapshotPrefix}${snapshotter}`]: target }, reuse: true });
  try {
    let descriptor: Descriptor;
    if (typeof image === "string") {
      const { image: record } = await svc.images.get({ name: image }, callOptions(svc, lease));
      const t = record!.target!;
      descriptor = { mediaType: t.mediaType, digest: t.digest, size: Number(t.size), annotations: t.annotations };
    } else {
      descriptor = image;
    }
    const platform = options.platform === undefined ? hostPlatform() : typeof options.platform === "string" ? parsePlatform(options.platform) : options.platform;
    let unpacked;
    try {
      unpacked = await unpackImage(svc, descriptor, { snapshotter, platform: onlyPlatform(platform), lease });
    } catch (err) {
      throw new MountError(`error unpacking image: ${errorMessage(err)}`);
    }
    const mounts = await prepareRootfs(svc.snapshots, {
      namespace: svc.namespace,
      snapshotter,
      key: target,
      parent: unpacked.chainId,
      lease,
      readOnly: !options.rw,
      reuse: true,
      ...(svc.signal ? { signal: svc.signal } : {}),
    });
    try {
      await mountAll(mounts, target);
    } catch (err) {
      try {
        await svc.snapshots.remove({ snapshotter, key: target }, callOptions(svc, lease));
      } catch (removeErr) {
        if (!isNotFound(removeErr)) throw new MountError(`${(err as Error).message} (and removing snapshot ${target} failed: ${errorMessage(removeErr)})`);
      }
      throw err;
    }
    return { chainId: unpacked.chainId, snapshotter, mounts };
  } catch (err) {
    await deleteLease(svc, lease).catch(() => undefined);
    throw err;
  }
}

/** images unmount [--rm]: unmount; with `remove`, delete the lease and the snapshot too. */
export async function unmountImage(svc: ImageServices, target: string, options: { remove?: boolean; snapshotter?: string } = {}): Promise<void> {
  await unmountAll(target);
  if (!options.remove) return;
  const snapshotter = await resolveSnapshotter(svc, options.snapshotter);
  try {
    await deleteLease(svc, target);
  } catch (err) {
    throw new MountError(`error deleting lease: ${errorMessage(err)}`);
  }
  try {
    await svc.snapshots.remove({ snapshotter, key: target }, callOptions(svc));
  } catch (err) {
    if (!isNotFound(err)) throw new MountError(`error removing snapshot: ${errorMessage(err)}`);
  }
}
