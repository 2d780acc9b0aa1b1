// Walking an image in the content store: a descriptor's children, and the one
// manifest (and config) that serves a platform — containerd's images.Children,
// images.Manifest and images.RootFS over gRPC.
import { BlobTooLargeError, readBlobBytes } from "../content-client.ts";
import { isConfigType, isIndexType, isManifestType } from "./media-types.ts";
import { parseConfig, parseIndex, parseManifest, ImageFormatError, type Descriptor, type ImageConfig, type ImageManifest } from "./manifest.ts";
import { normalizePlatform, type PlatformMatcher, type Platform } from "./platform.ts";
import { callOptions, type ImageServices } from "./services.ts";

/**
 * The most bytes a JSON document of an image may have; each is read whole into memory.
 * Registries refuse manifests and indexes over 4 MiB (Docker Hub, distribution); a
 * config's history can make it bigger, but not by megabytes.
 */
export const documentLimits = { manifest: 4 << 20, index: 4 << 20, config: 8 << 20 } as const;

type DocumentKind = keyof typeof documentLimits;

/** A JSON document's bytes, refused beyond its kind's limit (whatever the descriptor claims). */
async function readDocument(svc: ImageServices, desc: Descriptor, kind: DocumentKind, lease?: string): Promise<Buffer> {
  const limit = documentLimits[kind];
  const tooLarge = (size?: number) =>
    new ImageFormatError(`${kind} ${desc.digest} ${size === undefined ? "is larger" : `is ${size} bytes`}: an image ${kind} may have at most ${limit} bytes`);
  if (desc.size > limit) throw tooLarge(desc.size);
  let bytes: Buffer;
  try {
    bytes = await cachedBlob(svc, desc.digest, limit, lease);
  } catch (err) {
    if (err instanceof BlobTooLargeError) throw tooLarge();
    throw err;
  }
  // A cached read may have been made for a kind with a higher limit.
  if (bytes.length > limit) throw tooLarge(bytes.length);
  return bytes;
}

/** A blob's bytes, through the services' document cache when they have one. */
function cachedBlob(svc: ImageServices, digest: string, limit: number, lease?: string): Promise<Buffer> {
  const cache = svc.documents;
  if (!cache) return readBlobBytes(svc.content, digest, callOptions(svc, lease), { limit });
  let bytes = cache.get(digest);
  if (!bytes) {
    bytes = readBlobBytes(svc.content, digest, callOptions(svc, lease), { limit });
    cache.set(digest, bytes);
    // A failed read is not remembered: the next reader asks the store again.
    bytes.catch(() => cache.get(digest) === bytes && cache.delete(digest));
  }
  return bytes;
}

export async function readManifest(svc: ImageServices, desc: Descriptor, lease?: string): Promise<ImageManifest> {
  return parseManifest(await readDocument(svc, desc, "manifest", lease), `manifest ${desc.digest}`, desc.mediaType);
}

export async function readIndex(svc: ImageServices, desc: Descriptor, lease?: string) {
  return parseIndex(await readDocument(svc, desc, "index", lease), `index ${desc.digest}`, desc.mediaType);
}

export async function readConfig(svc: ImageServices, desc: Descriptor, lease?: string): Promise<ImageConfig> {
  return parseConfig(await readDocument(svc, desc, "config", lease), `config ${desc.digest}`);
}

/** images.Children: a manifest's config and layers, an index's manifests. */
export async function childrenOf(svc: ImageServices, desc: Descriptor, lease?: string): Promise<Descriptor[]> {
  if (isManifestType(desc.mediaType)) {
    const m = await readManifest(svc, desc, lease);
    return [m.config, ...m.layers];
  }
  if (isIndexType(desc.mediaType)) return (await readIndex(svc, desc, lease)).manifests;
  return [];
}

/** Keeps the descriptors without a platform and those the matcher accepts (images.FilterPlatforms). */
export function filterPlatforms(descs: Descriptor[], matcher: PlatformMatcher | undefined): Descriptor[] {
  if (!matcher) return descs;
  return descs.filter((d) => !d.platform || matcher.match(d.platform));
}

/** Matching descriptors first by preference, those without a platform last (stable). */
export function sortByPlatform(descs: Descriptor[], matcher: PlatformMatcher): Descriptor[] {
  return descs
    .map((d, i) => ({ d, i }))
    .sort((a, b) => {
      if (!a.d.platform && !b.d.platform) return a.i - b.i;
      if (!a.d.platform) return 1;
      if (!b.d.platform) return -1;
      if (matcher.less(a.d.platform, b.d.platform)) return -1;
      if (matcher.less(b.d.platform, a.d.platform)) return 1;
      return a.i - b.i;
    })
    .map(({ d }) => d);
}

export class NoMatchingManifestError extends Error {
  override name = "NoMatchingManifestError";
}

export interface ResolvedManifest {
  descriptor: Descriptor;
  manifest: ImageManifest;
}

/** images.Manifest: the first manifest under `target` that serves the platform. */
export async function resolveManifest(svc: ImageServices, target: Descriptor, matcher: PlatformMatcher, lease?: string): Promise<ResolvedManifest> {
  let wasIndex = false;
  const visit = async (desc: Descriptor): Promise<ResolvedManifest | undefined> => {
    if (isManifestType(desc.mediaType)) {
      const manifest = await readManifest(svc, desc, lease);
      if (desc.digest !== target.digest) {
        if (desc.platform && !matcher.match(desc.platform)) return undefined;
        if (!desc.platform) {
          const config = await readConfig(svc, manifest.config, lease);
          if (!matcher.match(normalizePlatform({ os: config.os, architecture: config.architecture }))) return undefined;
        }
      }
      return { descriptor: desc, manifest };
    }
    if (isIndexType(desc.mediaType)) {
      wasIndex = true;
      const index = await readIndex(svc, desc, lease);
      for (const child of sortByPlatform(filterPlatforms(index.manifests, matcher), matcher).slice(0, 1)) {
        const found = await visit(child);
        if (found) return found;
      }
      return undefined;
    }
    throw new ImageFormatError(`unexpected media type ${desc.mediaType} for ${desc.digest}: not found`);
  };
  const found = await visit(target);
  if (!found) {
    throw new NoMatchingManifestError(
      wasIndex ? `no match for platform in manifest ${target.digest}: not found (platform ${matcher.description})` : `manifest ${target.digest}: not found`,
    );
  }
  return found;
}

export interface ResolvedImage extends ResolvedManifest {
  configDescriptor: Descriptor;
  config: ImageConfig;
}

/** The manifest, config and diff ids of `target` for a platform (images.Config + images.RootFS). */
export async function resolveImage(svc: ImageServices, target: Descriptor, matcher: PlatformMatcher, lease?: string): Promise<ResolvedImage> {
  const resolved = await resolveManifest(svc, target, matcher, lease);
  const configDescriptor = resolved.manifest.config;
  if (!isConfigType(configDescriptor.mediaType)) {
    throw new ImageFormatError(`manifest ${resolved.descriptor.digest}: config has unknown media type ${JSON.stringify(configDescriptor.mediaType)}`);
  }
  const config = await readConfig(svc, configDescriptor, lease);
  return { ...resolved, configDescriptor, config };
}

/**
 * images.Platforms: what an index names, or what a manifest's config declares.
 * Entries for `unknown` platforms (the attestation manifests build tools add to an
 * index) name no runnable platform and are skipped, as containerd does.
 */
export async function imagePlatforms(svc: ImageServices, target: Descriptor, lease?: string): Promise<Platform[]> {
  const found: Platform[] = [];
  const visit = async (desc: Descriptor): Promise<void> => {
    if (desc.platform) {
      if (desc.platform.os !== "unknown" && desc.platform.architecture !== "unknown") found.push(desc.platform);
      return;
    }
    if (isConfigType(desc.mediaType)) {
      const config = await readConfig(svc, desc, lease);
      found.push(normalizePlatform({ os: config.os, architecture: config.architecture }));
      return;
    }
    for (const child of await childrenOf(svc, desc, lease)) await visit(child);
  };
  await visit(target);
  return found;
}

export interface ImageSize {
  /** Bytes counted; when the walk stopped early, what was counted up to there (ctr prints that). */
  size: number;
  /** Why the walk stopped early, if it did. */
  error?: unknown;
}

/**
 * images.Size: the target's bytes plus everything below it for one platform — under an
 * index only the preferred matching manifest, then that manifest's config and layers.
 */
export async function imageSize(svc: ImageServices, target: Descriptor, matcher: PlatformMatcher, lease?: string): Promise<ImageSize> {
  let size = 0;
  const visit = async (desc: Descriptor): Promise<void> => {
    size += desc.size;
    let children = filterPlatforms(await childrenOf(svc, desc, lease), matcher);
    if (isIndexType(desc.mediaType)) {
      children = sortByPlatform(children, matcher).slice(0, 1);
      if (children.length === 0) throw new NoMatchingManifestError("no match for platform in manifest: not found");
    }
    for (const child of children) await visit(child);
  };
  try {
    await visit(target);
    return { size };
  } catch (error) {
    return { size, error };
  }
}
