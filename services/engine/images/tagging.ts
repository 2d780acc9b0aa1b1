// Naming images. When a tag moves to another image (docker tag, load or pull of a newer
// image under the same name), the image it left keeps existing untagged, as Docker's
// engine keeps it (`<none>` in `docker images`, removed by `docker image prune`): the
// store would otherwise forget it and its content at once.
import type { Image } from "../../../core/gen/containerd/services/images/v1/images.ts";
import { isAlreadyExists, isNotFound } from "../../../core/grpc-status.ts";
import { callOptions, type ImageServices } from "../../../core/image/services.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { createLease, deleteLease } from "../../../core/image/lease.ts";
import { danglingPrefix } from "./catalog.ts";

/** The store's records by name (what a later keepReplaced compares against). */
export async function snapshotNames(svc: ImageServices): Promise<Map<string, Image>> {
  const { images } = await svc.images.list({ filters: [] }, callOptions(svc));
  return new Map(images.map((image) => [image.name, image]));
}

/** Keeps, untagged, every image `before` had that no name points at any more. */
export async function keepReplaced(svc: ImageServices, before: Map<string, Image>): Promise<void> {
  const after = await snapshotNames(svc);
  const live = new Set([...after.values()].map((image) => image.target?.digest));
  for (const [name, old] of before) {
    const target = old.target;
    if (!target || live.has(target.digest)) continue;
    const now = after.get(name);
    if (!now || now.target?.digest === target.digest) continue;
    await createName(svc, `${danglingPrefix}${target.digest}`, target);
    live.add(target.digest);
  }
}

/** Creates a name for a target unless it exists. */
export async function createName(svc: ImageServices, name: string, target: Image["target"]): Promise<void> {
  try {
    await svc.images.create({ image: { name, labels: {}, target, createdAt: undefined, updatedAt: undefined } }, callOptions(svc));
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
}

/** The store's record of `name`, or undefined. */
export async function storeRecord(svc: ImageServices, name: string): Promise<Image | undefined> {
  try {
    return (await svc.images.get({ name }, callOptions(svc))).image;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Points `name` at `target` (a new name, or a moved one); the image a moved name left stays,
 * untagged. `current`: the record of `name` the caller just read (null: there was none).
 */
export async function setName(svc: ImageServices, name: string, target: Descriptor, current?: Image | null): Promise<void> {
  const wire = { mediaType: target.mediaType, digest: target.digest, size: BigInt(target.size), annotations: target.annotations ?? {} };
  const record = { name, labels: {}, target: wire, createdAt: undefined, updatedAt: undefined };
  // Listing every name (which grows with the build cache) is only needed when the move may
  // leave an image without any: a new name leaves none, and an image that has its untagged
  // name already keeps it.
  const before = current === undefined ? await storeRecord(svc, name) : (current ?? undefined);
  const left = before?.target?.digest;
  if (!left) {
    try {
      await svc.images.create({ image: record }, callOptions(svc));
      return;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err; // made meanwhile: moved below, keeping what it named
    }
  } else if (left === target.digest || (await storeRecord(svc, `${danglingPrefix}${left}`))) {
    try {
      await svc.images.update({ image: record, updateMask: ["target"] }, callOptions(svc));
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err; // removed meanwhile: made again below
    }
  }
  await preservingReplaced(svc, [name], async () => {
    try {
      await svc.images.create({ image: { name, labels: {}, target: wire, createdAt: undefined, updatedAt: undefined } }, callOptions(svc));
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await svc.images.update({ image: { name, labels: {}, target: wire, createdAt: undefined, updatedAt: undefined }, updateMask: ["target"] }, callOptions(svc));
    }
  });
}

/**
 * Runs `fn` (which may move names: tag, load, pull), then keeps untagged what it left
 * without a name. Until then a lease holds those images' content: the store's garbage
 * collector may run the moment a name moves.
 */
export async function preservingReplaced<T>(svc: ImageServices, names: string[] | "all", fn: () => Promise<T>): Promise<T> {
  const all = await snapshotNames(svc);
  const before = names === "all" ? all : new Map([...all].filter(([name]) => names.includes(name)));
  if (before.size === 0) return fn();
  const lease = await createLease(svc, { expireMs: 3600_000 });
  try {
    for (const digest of new Set([...before.values()].map((image) => image.target?.digest).filter(Boolean))) {
      await svc.leases.addResource({ id: lease, resource: { id: digest!, type: "content" } }, callOptions(svc));
    }
    const result = await fn();
    await keepReplaced(svc, before);
    return result;
  } finally {
    await deleteLease(svc, lease).catch(() => undefined);
  }
}

/** Whether a store name is one of the engine's untagged placeholders. */
export const isDanglingName = (name: string) => name.startsWith(danglingPrefix);
