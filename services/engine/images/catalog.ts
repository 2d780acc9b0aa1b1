// The engine's view of the image store: Docker lists images by ID (the config digest),
// each with every name that points at it, while the store has one record per name.
// This groups the records, reads each image's config once (content is immutable per
// digest, so what was read is kept), and finds an image the ways Docker accepts a
// reference: name[:tag], name@digest, full ID, or a unique ID prefix.
import type { Image } from "../../../core/gen/containerd/services/images/v1/images.ts";
import { readBlobBytes } from "../../../core/content-client.ts";
import { chainIds } from "../../../core/image/chain-id.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { defaultPlatformMatcher } from "../../../core/image/platform.ts";
import { resolveImage } from "../../../core/image/resolve.ts";
import { callOptions, type ImageServices } from "../../../core/image/services.ts";
import { isNotFound } from "../../../core/grpc-status.ts";
import type { Logger } from "../../../core/log.ts";
import { notFoundError } from "../http.ts";
import type { RegistrySettings } from "../../../core/registry/settings.ts";
import { defaultRegistryName } from "./default-registry.ts";
import { familiarRef, fullImageIdPattern, imageIdPrefix, normalizeImageRef, splitStoreName } from "../references.ts";

/** Docker's image config JSON (the fields the engine shows; the rest is kept as it is). */
export interface DockerImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  author?: string;
  comment?: string;
  container?: string;
  docker_version?: string;
  config?: Record<string, unknown> | null;
  container_config?: Record<string, unknown> | null;
  rootfs?: { type?: string; diff_ids?: string[] };
  history?: { created?: string; created_by?: string; author?: string; comment?: string; empty_layer?: boolean }[];
  [key: string]: unknown;
}

/** What one image (one target) is made of; immutable, so cached by the target's digest. */
export interface ImageContent {
  /** The config digest: Docker's image ID. */
  id: string;
  target: Descriptor;
  manifestDigest: string;
  configDescriptor: Descriptor;
  config: DockerImageConfig;
  layers: Descriptor[];
  diffIds: string[];
}

export interface EngineImage extends ImageContent {
  /** Every store name that points at this image. */
  names: string[];
  /** Familiar `repo:tag` forms, sorted. */
  repoTags: string[];
  /** Familiar `repo@digest` forms, sorted. */
  repoDigests: string[];
  /** Store labels of the first record (docker shows config labels, not these). */
  records: Image[];
}

/** Store names that are no Docker reference but keep an image alive without a tag (as Docker's containerd store does). */
export const danglingPrefix = "moby-dangling@";

export class ImageCatalog {
  private readonly svc: ImageServices;
  private readonly log: Logger;
  private readonly contents = new Map<string, Promise<ImageContent>>();
  private readonly sizes = new Map<string, Promise<number>>();

  private readonly defaultRegistry: string | undefined;

  constructor(svc: ImageServices, log: Logger, defaultRegistry?: string) {
    this.svc = svc;
    this.log = log;
    this.defaultRegistry = defaultRegistry;
  }

  get services(): ImageServices {
    return this.svc;
  }

  /** The image a target names for this host (resolved once per digest). */
  content(target: Descriptor): Promise<ImageContent> {
    let found = this.contents.get(target.digest);
    if (!found) {
      found = this.readContent(target);
      this.contents.set(target.digest, found);
      found.catch(() => this.contents.get(target.digest) === found && this.contents.delete(target.digest));
    }
    return found;
  }

  private async readContent(target: Descriptor): Promise<ImageContent> {
    const resolved = await resolveImage(this.svc, target, defaultPlatformMatcher());
    const bytes = await readBlobBytes(this.svc.content, resolved.configDescriptor.digest, callOptions(this.svc), { limit: 8 << 20 });
    const config = JSON.parse(bytes.toString("utf8")) as DockerImageConfig;
    return {
      id: resolved.configDescriptor.digest,
      target,
      manifestDigest: resolved.descriptor.digest,
      configDescriptor: resolved.configDescriptor,
      config,
      layers: resolved.manifest.layers,
      diffIds: resolved.config.diffIds,
    };
  }

  /** Every image, newest record first, grouped by ID. Records that do not resolve (another platform, missing content) are left out. */
  async list(): Promise<EngineImage[]> {
    const { images: records } = await this.svc.images.list({ filters: [] }, callOptions(this.svc));
    const byId = new Map<string, EngineImage>();
    for (const record of records) {
      if (!record.target) continue;
      let content: ImageContent;
      try {
        content = await this.content(toDescriptor(record));
      } catch (err) {
        this.log.debug(`image ${record.name} left out of the list: ${(err as Error).message}`);
        continue;
      }
      let image = byId.get(content.id);
      if (!image) {
        image = { ...content, names: [], repoTags: [], repoDigests: [], records: [] };
        byId.set(content.id, image);
      }
      image.names.push(record.name);
      image.records.push(record);
      const split = splitStoreName(record.name);
      if (split?.tag) image.repoTags.push(familiarRef(record.name));
      else if (split?.digest) image.repoDigests.push(familiarRef(record.name));
    }
    for (const image of byId.values()) {
      image.repoTags.sort();
      image.repoDigests.sort();
    }
    this.forgetRemoved(records, [...byId.values()]);
    return [...byId.values()];
  }

  /**
   * The image `ref` names, Docker's way: a full ID, a name (normalized), then a unique ID
   * prefix. Not found is Docker's 404 `No such image: <ref>`.
   */
  async find(ref: string): Promise<EngineImage> {
    const found = await this.lookup(ref);
    if (!found) throw notFoundError(`No such image: ${displayRef(ref)}`);
    return found;
  }

  /** As find(), undefined when there is no such image. */
  async lookup(ref: string): Promise<EngineImage | undefined> {
    if (fullImageIdPattern.test(ref)) return (await this.list()).find((image) => image.id === ref);
    const prefix = imageIdPrefix(ref);
    let name: string | undefined;
    try {
      name = normalizeImageRef(ref);
    } catch (err) {
      // Not a name; it may still be an ID prefix (sha256:966f).
      if (!prefix) throw err;
    }
    // A short name not in the store as Docker Hub's may be there as a default registry pull stored it.
    const candidates = name === undefined ? [] : [name, defaultRegistryName(ref, this.defaultRegistry)];
    for (const candidate of candidates) {
      if (candidate === undefined) continue;
      try {
        const { image: record } = await this.svc.images.get({ name: candidate }, callOptions(this.svc));
        if (record?.target) {
          const content = await this.content(toDescriptor(record));
          return (await this.list()).find((image) => image.id === content.id);
        }
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (!prefix) return undefined;
    const matches = (await this.list()).filter((image) => image.id.startsWith(prefix));
    return matches.length === 1 ? matches[0] : undefined;
  }

  /** Drops what was cached for images no longer in the store, so a long-running engine's caches stay the size of the store. */
  private forgetRemoved(records: Image[], images: ImageContent[]): void {
    const targets = new Set(records.map((r) => r.target?.digest));
    for (const digest of this.contents.keys()) if (!targets.has(digest)) this.contents.delete(digest);
    const chains = new Set(images.flatMap((image) => chainIds(image.diffIds)));
    for (const chain of this.sizes.keys()) if (!chains.has(chain)) this.sizes.delete(chain);
  }

  /** Bytes the image takes unpacked (the sum of its layers' snapshots), or its compressed layers when not unpacked. */
  async size(image: ImageContent): Promise<number> {
    const chains = chainIds(image.diffIds);
    let total = 0;
    for (const [i, chain] of chains.entries()) total += await this.layerSize(chain, image.layers[i]?.size ?? 0);
    return total;
  }

  private layerSize(chain: string, fallback: number): Promise<number> {
    let size = this.sizes.get(chain);
    if (!size) {
      size = this.svc.snapshots
        .usage({ snapshotter: "overlayfs", key: chain }, callOptions(this.svc))
        .then((usage) => Number(usage.size))
        .catch((err: unknown) => {
          // Not unpacked (yet): the compressed size, and ask again next time.
          this.sizes.delete(chain);
          if (!isNotFound(err)) this.log.debug(`usage of snapshot ${chain}: ${(err as Error).message}`);
          return fallback;
        });
      this.sizes.set(chain, size);
    }
    return size;
  }
}

export function toDescriptor(record: Image): Descriptor {
  const t = record.target!;
  return { mediaType: t.mediaType, digest: t.digest, size: Number(t.size), ...(Object.keys(t.annotations ?? {}).length ? { annotations: t.annotations } : {}) };
}

/** How Docker names a missing image in its 404: the familiar form with its tag (busybox:latest), or the ref as given. */
export function displayRef(ref: string): string {
  if (fullImageIdPattern.test(ref) || /^[a-f0-9]{1,64}$/.test(ref)) return ref;
  try {
    return familiarRef(normalizeImageRef(ref));
  } catch {
    return ref;
  }
}

const catalogs = new WeakMap<object, ImageCatalog>();

/** The one catalog of a backend (its caches shared by every route module that looks images up). */
export function imageCatalog(backend: { images: ImageServices; log: Logger; options?: { registry?: RegistrySettings } }): ImageCatalog {
  let catalog = catalogs.get(backend);
  if (!catalog) {
    catalog = new ImageCatalog(backend.images, backend.log, backend.options?.registry?.defaultRegistry);
    catalogs.set(backend, catalog);
  }
  return catalog;
}
