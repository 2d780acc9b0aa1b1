// What `images ls` shows beyond the record: the image's size and platforms, found by
// walking its index/manifest/config blobs in the content store the way containerd's
// images.Size and images.Platforms do (one manifest per index for the host platform).
import { isConfigType, isIndexType, isManifestType } from "../../core/image/media-types.ts";
import { hostPlatform, normalizePlatform, type Platform } from "../../core/image/platform.ts";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: bigint;
  platform?: Platform;
}

/** Reads a whole blob by digest. */
export type BlobReader = (digest: string) => Promise<Buffer>;

function descriptorFromJson(value: unknown): Descriptor {
  const d = (value ?? {}) as Record<string, unknown>;
  const p = d.platform as Record<string, unknown> | undefined;
  return {
    mediaType: typeof d.mediaType === "string" ? d.mediaType : "",
    digest: typeof d.digest === "string" ? d.digest : "",
    size: typeof d.size === "number" ? BigInt(d.size) : 0n,
    platform:
      p && typeof p === "object"
        ? { os: String(p.os ?? ""), architecture: String(p.architecture ?? ""), variant: p.variant === undefined ? undefined : String(p.variant) }
        : undefined,
  };
}

async function readJson(read: BlobReader, desc: Descriptor): Promise<Record<string, unknown>> {
  return JSON.parse((await read(desc.digest)).toString("utf8")) as Record<string, unknown>;
}

/** images.Children: a manifest's config and layers, an index's manifests, nothing else. */
async function childrenOf(read: BlobReader, desc: Descriptor): Promise<Descriptor[]> {
  if (isManifestType(desc.mediaType)) {
    const manifest = await readJson(read, desc);
    const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
    return [descriptorFromJson(manifest.config), ...layers.map(descriptorFromJson)];
  }
  if (isIndexType(desc.mediaType)) {
    const index = await readJson(read, desc);
    return (Array.isArray(index.manifests) ? index.manifests : []).map(descriptorFromJson);
  }
  return [];
}

function matchesPlatform(want: Platform, p: Platform): boolean {
  const n = normalizePlatform(p);
  return n.os === want.os && n.architecture === want.architecture && (n.variant ?? "") === (want.variant ?? "");
}

export interface WalkResult<T> {
  value: T;
  /** Set when the walk stopped early (ctr logs it and prints what it had). */
  error?: unknown;
}

/** images.Size for the host platform: the target plus one manifest's config and layers. */
export async function imageSize(read: BlobReader, target: Descriptor, platform = hostPlatform()): Promise<WalkResult<bigint>> {
  let size = 0n;
  const walk = async (desc: Descriptor): Promise<void> => {
    size += desc.size;
    let children = (await childrenOf(read, desc)).filter((c) => !c.platform || matchesPlatform(platform, c.platform));
    if (isIndexType(desc.mediaType)) {
      // Matching manifests first (only exact matches remain), those without a platform last.
      children = [...children.filter((c) => c.platform), ...children.filter((c) => !c.platform)];
      if (children.length === 0) throw new Error("no match for platform in manifest: not found");
      children = children.slice(0, 1);
    }
    for (const child of children) await walk(child);
  };
  try {
    await walk(target);
    return { value: size };
  } catch (error) {
    return { value: size, error };
  }
}

/** images.Platforms: the platforms an index names, or a manifest's config declares. */
export async function imagePlatforms(read: BlobReader, target: Descriptor): Promise<WalkResult<Platform[]>> {
  const found: Platform[] = [];
  const walk = async (desc: Descriptor): Promise<void> => {
    if (desc.platform) {
      if (desc.platform.os !== "unknown" && desc.platform.architecture !== "unknown") found.push(desc.platform);
      return;
    }
    if (isConfigType(desc.mediaType)) {
      const config = await readJson(read, desc);
      found.push(normalizePlatform({ os: String(config.os ?? ""), architecture: String(config.architecture ?? "") }));
    }
    for (const child of await childrenOf(read, desc)) await walk(child);
  };
  try {
    await walk(target);
    return { value: found };
  } catch (error) {
    return { value: found, error };
  }
}
