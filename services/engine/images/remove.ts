// `docker rmi` and `docker image prune`. Removing a name only untags while another tag
// keeps the image; the last tag takes the image's digest names with it and deletes the
// image (the store's garbage collector frees its content and snapshots). An image a
// container uses is kept: without force that is Docker's 409; with force the names go
// and the image stays, untagged (dangling), for the container.
import { callOptions } from "../../../core/image/services.ts";
import { isNotFound } from "../../../core/grpc-status.ts";
import type { Backend } from "../backend.ts";
import { conflict, type EngineError } from "../http.ts";
import type { Filters } from "../query.ts";
import { familiarRef, normalizeImageRef, shortId, splitStoreName } from "../references.ts";
import type { ContainerRecord } from "../store.ts";
import { danglingPrefix, displayRef, imageCatalog, type EngineImage } from "./catalog.ts";
import { createName } from "./tagging.ts";
import { danglingFilter, filterImages } from "./filters.ts";
import { isBuildIntermediate } from "../build/image-store.ts";

export interface DeleteItem {
  Untagged?: string;
  Deleted?: string;
}

/** Containers whose image is `id`, running ones first. */
export function containersUsing(backend: Backend, id: string): ContainerRecord[] {
  return backend.store
    .list()
    .filter((c) => c.Image === id)
    .sort((a, b) => Number(b.State.Running) - Number(a.State.Running));
}

/** The store name `ref` spells, when it is one of the image's names (else the ref named the image by ID). */
function nameIn(image: EngineImage, ref: string): string | undefined {
  try {
    const name = normalizeImageRef(ref);
    return image.names.includes(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

export async function removeImage(backend: Backend, ref: string, options: { force: boolean }): Promise<DeleteItem[]> {
  const catalog = imageCatalog(backend);
  const image = await catalog.find(ref);
  const users = containersUsing(backend, image.id);
  const name = nameIn(image, ref);
  const tags = image.names.filter((n) => splitStoreName(n)?.tag);

  if (name !== undefined) {
    const otherTags = tags.filter((n) => n !== name);
    const isTag = Boolean(splitStoreName(name)?.tag);
    // Another tag (or, for a digest name, any tag) still names the image: only this name goes.
    if (otherTags.length > 0 || (!isTag && tags.length > 0)) return untag(backend, image, [name]);
    if (users.length > 0) {
      if (!options.force) {
        throw conflict(
          `conflict: unable to remove repository reference "${displayRef(ref)}" (must force) - container ${shortId(users[0]!.Id)} is using its referenced image ${shortId(image.id)}`,
        );
      }
      return keepDangling(backend, image, name);
    }
    return deleteImage(backend, image, name);
  }

  // By ID.
  const repositories = new Set(tags.map((n) => splitStoreName(n)!.repository));
  if (repositories.size > 1 && !options.force) {
    throw conflict(`conflict: unable to delete ${shortId(image.id)} (must be forced) - image is referenced in multiple repositories`);
  }
  const running = users.find((c) => c.State.Running);
  if (running) throw conflict(`conflict: unable to delete ${shortId(image.id)} (cannot be forced) - image is being used by running container ${shortId(running.Id)}`);
  if (users.length > 0) {
    if (!options.force) throw conflict(`conflict: unable to delete ${shortId(image.id)} (must be forced) - image is being used by stopped container ${shortId(users[0]!.Id)}`);
    return keepDangling(backend, image);
  }
  return deleteImage(backend, image);
}

/** The names with the one the client gave first (Docker reports it first). */
function askedFirst(names: string[], asked: string | undefined): string[] {
  return asked ? [asked, ...names.filter((n) => n !== asked)] : [...names];
}

/** Removes these names of the image (never all of them: the caller made sure another one stays). */
async function untag(backend: Backend, image: EngineImage, names: string[]): Promise<DeleteItem[]> {
  const items: DeleteItem[] = [];
  for (const name of names) {
    await deleteName(backend, name, false);
    if (name.startsWith(danglingPrefix)) continue;
    items.push({ Untagged: familiarRef(name) });
    backend.events.publish("image", "untag", image.id, { name: familiarRef(name) });
  }
  return items;
}

/** All names go, the image stays under a dangling name (a container still uses it). */
async function keepDangling(backend: Backend, image: EngineImage, asked?: string): Promise<DeleteItem[]> {
  const svc = backend.images;
  const record = image.records[0]!;
  const dangling = `${danglingPrefix}${image.target.digest}`;
  if (!image.names.includes(dangling)) await createName(svc, dangling, record.target);
  return untag(backend, image, askedFirst(image.names, asked).filter((n) => n !== dangling));
}

/** Every name, then the image itself (the last delete waits for the garbage collector, so the space is free when the reply goes). */
async function deleteImage(backend: Backend, image: EngineImage, asked?: string): Promise<DeleteItem[]> {
  const items: DeleteItem[] = [];
  const names = askedFirst(image.names, asked);
  for (const [i, name] of names.entries()) {
    await deleteName(backend, name, i === names.length - 1);
    if (name.startsWith(danglingPrefix)) continue;
    items.push({ Untagged: familiarRef(name) });
    backend.events.publish("image", "untag", image.id, { name: familiarRef(name) });
  }
  items.push({ Deleted: image.id });
  backend.events.publish("image", "delete", image.id, { name: image.id });
  return items;
}

async function deleteName(backend: Backend, name: string, sync: boolean): Promise<void> {
  try {
    await backend.images.images.delete({ name, sync }, callOptions(backend.images));
  } catch (err) {
    // Gone already (a concurrent rmi): the outcome is the same.
    if (!isNotFound(err)) throw err;
  }
}

export interface PruneReport {
  ImagesDeleted: DeleteItem[] | null;
  SpaceReclaimed: number;
}

/** `docker image prune`: dangling images (or, with dangling=false, every image) no container uses. The build cache's step images are not dangling images: `builder prune` removes them. */
export async function pruneImages(backend: Backend, filters: Filters): Promise<PruneReport> {
  const catalog = imageCatalog(backend);
  const danglingOnly = danglingFilter(filters) ?? true;
  const rest: Filters = new Map([...filters].filter(([k]) => k !== "dangling"));
  const candidates = (await filterImages(catalog, await catalog.list(), rest)).filter((image) => !danglingOnly || (image.repoTags.length === 0 && !isBuildIntermediate(image)));
  const used = new Set(backend.store.list().map((c) => c.Image));
  const deleted: DeleteItem[] = [];
  let reclaimed = 0;
  for (const image of candidates) {
    if (used.has(image.id)) continue;
    const size = await catalog.size(image);
    try {
      deleted.push(...(await deleteImage(backend, image)));
      reclaimed += size;
    } catch (err) {
      backend.log.warn({ err: (err as EngineError).message, image: image.id }, "image prune: could not delete an image");
    }
  }
  return { ImagesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
}
