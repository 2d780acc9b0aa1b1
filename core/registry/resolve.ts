// resolve(reference, platform): what the registry holds under a name, down to the
// one manifest that serves the platform — the documents on the way (bytes and
// parsed), and the blobs (config, layers) left to fetch.
import { invalidArgument, notFound } from "../errors.ts";
import { isIndexType, isManifestType } from "../image/media-types.ts";
import { ImageFormatError, parseIndex, parseManifest, type Descriptor, type ImageIndex, type ImageManifest } from "../image/manifest.ts";
import { defaultPlatformMatcher, formatPlatform, onlyPlatform, parsePlatform, PlatformError, type Platform, type PlatformMatcher } from "../image/platform.ts";
import { filterPlatforms, sortByPlatform } from "../image/resolve.ts";
import type { RegistryClient } from "./client.ts";
import { fetchManifest } from "./manifests.ts";
import { objectOf, parseRegistryReference, referenceString, type RegistryReference } from "./reference.ts";

export interface ResolvedIndex {
  descriptor: Descriptor;
  index: ImageIndex;
  /** The child chosen for the platform. */
  chosen: Descriptor;
}

export interface RemoteImage {
  reference: RegistryReference;
  /** registry/repository:tag (or @digest): the image record's name. */
  name: string;
  /** What the reference points at (an index or a manifest). */
  root: Descriptor;
  /** Indexes from the root down to the manifest (none when the root is a manifest). */
  indexes: ResolvedIndex[];
  manifest: { descriptor: Descriptor; manifest: ImageManifest };
  /** Every index and manifest fetched, by digest. */
  documents: Map<string, Buffer>;
  /** Config first, then layers in order. */
  blobs: Descriptor[];
}

export interface ResolveOptions {
  /** "os/arch[/variant]", a Platform, or a matcher; default this host. */
  platform?: string | Platform | PlatformMatcher;
}

/** Indexes nest rarely; a loop of them must not recurse forever. */
const maxDepth = 4;

export function platformMatcher(platform: ResolveOptions["platform"]): PlatformMatcher {
  if (platform === undefined) return defaultPlatformMatcher();
  if (typeof platform === "string") {
    try {
      return onlyPlatform(parsePlatform(platform));
    } catch (err) {
      if (err instanceof PlatformError) throw invalidArgument(`platform ${err.message}`);
      throw err;
    }
  }
  return "match" in platform ? platform : onlyPlatform(platform);
}

/** Runs a manifest/index parse, its format errors as INVALID_ARGUMENT. */
export function parsed<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ImageFormatError) throw invalidArgument(err.message);
    throw err;
  }
}

export async function resolve(client: RegistryClient, reference: string | RegistryReference, options: ResolveOptions = {}): Promise<RemoteImage> {
  const ref = typeof reference === "string" ? parseRegistryReference(reference, client.defaultRegistry) : reference;
  const matcher = platformMatcher(options.platform);
  const documents = new Map<string, Buffer>();
  const indexes: ResolvedIndex[] = [];
  const top = await fetchManifest(client, ref, objectOf(ref));
  documents.set(top.descriptor.digest, top.data);
  let current = top;
  for (let depth = 0; isIndexType(current.descriptor.mediaType); depth++) {
    const what = `index ${current.descriptor.digest} of ${referenceString(ref)}`;
    if (depth >= maxDepth) throw invalidArgument(`${what}: indexes nested more than ${maxDepth} deep`);
    const index = parsed(() => parseIndex(current.data, what, current.descriptor.mediaType));
    const candidates = sortByPlatform(filterPlatforms(index.manifests, matcher), matcher).filter((d) => isManifestType(d.mediaType) || isIndexType(d.mediaType));
    const chosen = candidates[0];
    if (!chosen) {
      const offered = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : "unknown")).join(", ");
      throw notFound(`${what}: no manifest for platform ${matcher.description} (the index offers ${offered || "nothing"})`);
    }
    indexes.push({ descriptor: current.descriptor, index, chosen });
    current = await fetchManifest(client, ref, chosen.digest, chosen);
    documents.set(current.descriptor.digest, current.data);
  }
  const descriptor = current.descriptor;
  const manifest = parsed(() => parseManifest(current.data, `manifest ${descriptor.digest} of ${referenceString(ref)}`, descriptor.mediaType));
  return {
    reference: ref,
    name: referenceString(ref),
    root: top.descriptor,
    indexes,
    manifest: { descriptor, manifest },
    documents,
    blobs: [manifest.config, ...manifest.layers],
  };
}
