// The JSON documents of an image (descriptor, manifest, index, config), parsed and
// checked for shape so that a malformed blob fails with a message naming the blob
// and the field, never with a TypeError halfway through an import.
import { isDigest } from "../digest.ts";
import { isIndexType, isManifestType } from "./media-types.ts";
import type { Platform } from "./platform.ts";

/** An OCI descriptor as it appears in JSON (size is a JSON number). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  os: string;
  architecture: string;
  variant?: string;
  diffIds: string[];
}

/** One entry of a Docker archive's manifest.json. */
export interface DockerArchiveManifest {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

export class ImageFormatError extends Error {
  override name = "ImageFormatError";
}

type Json = Record<string, unknown>;

function parseObject(data: Buffer | string, what: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === "string" ? data : data.toString("utf8"));
  } catch (err) {
    throw new ImageFormatError(`${what}: invalid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ImageFormatError(`${what}: expected a JSON object`);
  return value as Json;
}

function stringMap(value: unknown, what: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) throw new ImageFormatError(`${what}: expected an object of strings`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") throw new ImageFormatError(`${what}: value of "${k}" is not a string`);
  }
  return value as Record<string, string>;
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ImageFormatError(`${what}: expected a string`);
  return value;
}

export function parseDescriptor(value: unknown, what: string): Descriptor {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ImageFormatError(`${what}: expected a descriptor object`);
  const d = value as Json;
  if (typeof d.digest !== "string" || !isDigest(d.digest)) {
    throw new ImageFormatError(`${what}: invalid digest ${JSON.stringify(d.digest)} (expected sha256:<64 hex>)`);
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ImageFormatError(`${what}: invalid size ${JSON.stringify(d.size)}`);
  }
  const desc: Descriptor = { mediaType: optionalString(d.mediaType, `${what}.mediaType`) ?? "", digest: d.digest, size: d.size };
  if (Array.isArray(d.urls)) desc.urls = d.urls.map((u, i) => optionalString(u, `${what}.urls[${i}]`) ?? "");
  const ann = stringMap(d.annotations, `${what}.annotations`);
  if (ann) desc.annotations = ann;
  if (d.platform !== undefined && d.platform !== null) {
    const p = d.platform as Json;
    if (typeof p !== "object" || typeof p.os !== "string" || typeof p.architecture !== "string") {
      throw new ImageFormatError(`${what}.platform: expected {os, architecture} strings`);
    }
    desc.platform = { architecture: p.architecture, os: p.os };
    const variant = optionalString(p.variant, `${what}.platform.variant`);
    if (variant) desc.platform.variant = variant;
  }
  return desc;
}

function checkSchema(doc: Json, what: string): void {
  if (Array.isArray(doc.fsLayers)) throw new ImageFormatError(`${what}: schema 1 manifests are not supported`);
  if (doc.schemaVersion !== 2) throw new ImageFormatError(`${what}: unsupported schemaVersion ${JSON.stringify(doc.schemaVersion)} (expected 2)`);
}

/**
 * A manifest blob. `mediaType` is the type its descriptor claims: like
 * containerd's validateMediaType, an index posing as a manifest is refused.
 */
export function parseManifest(data: Buffer | string, what: string, mediaType?: string): ImageManifest {
  const doc = parseObject(data, what);
  checkSchema(doc, what);
  const own = optionalString(doc.mediaType, `${what}.mediaType`);
  if (Array.isArray(doc.manifests) || (own !== undefined && isIndexType(own))) {
    throw new ImageFormatError(`${what}: media-type: expected manifest but found index (${mediaType ?? own})`);
  }
  if (!Array.isArray(doc.layers)) throw new ImageFormatError(`${what}: "layers" must be an array`);
  return {
    schemaVersion: 2,
    ...(own !== undefined ? { mediaType: own } : {}),
    config: parseDescriptor(doc.config, `${what}: config`),
    layers: doc.layers.map((l, i) => parseDescriptor(l, `${what}: layers[${i}]`)),
    ...(doc.annotations ? { annotations: stringMap(doc.annotations, `${what}.annotations`) } : {}),
  };
}

export function parseIndex(data: Buffer | string, what: string, mediaType?: string): ImageIndex {
  const doc = parseObject(data, what);
  checkSchema(doc, what);
  const own = optionalString(doc.mediaType, `${what}.mediaType`);
  if (doc.config !== undefined || Array.isArray(doc.layers) || (own !== undefined && isManifestType(own))) {
    throw new ImageFormatError(`${what}: media-type: expected index but found manifest (${mediaType ?? own})`);
  }
  if (!Array.isArray(doc.manifests)) throw new ImageFormatError(`${what}: "manifests" must be an array`);
  return {
    schemaVersion: 2,
    ...(own !== undefined ? { mediaType: own } : {}),
    manifests: doc.manifests.map((m, i) => parseDescriptor(m, `${what}: manifests[${i}]`)),
    ...(doc.annotations ? { annotations: stringMap(doc.annotations, `${what}.annotations`) } : {}),
  };
}

/** The parts of an image config that unpacking needs: platform and diff ids. */
export function parseConfig(data: Buffer | string, what: string): ImageConfig {
  const doc = parseObject(data, what);
  const rootfs = doc.rootfs as Json | undefined;
  const diffIds = rootfs && typeof rootfs === "object" ? rootfs.diff_ids : undefined;
  if (diffIds !== undefined && diffIds !== null && !Array.isArray(diffIds)) throw new ImageFormatError(`${what}: rootfs.diff_ids must be an array`);
  const ids = (diffIds ?? []) as unknown[];
  ids.forEach((id, i) => {
    if (typeof id !== "string" || !isDigest(id)) throw new ImageFormatError(`${what}: rootfs.diff_ids[${i}] is not a sha256 digest: ${JSON.stringify(id)}`);
  });
  return {
    os: optionalString(doc.os, `${what}.os`) ?? "",
    architecture: optionalString(doc.architecture, `${what}.architecture`) ?? "",
    ...(typeof doc.variant === "string" && doc.variant !== "" ? { variant: doc.variant } : {}),
    diffIds: ids as string[],
  };
}

/** A Docker archive's manifest.json: [{Config, RepoTags, Layers}]. */
export function parseDockerArchiveManifest(data: Buffer | string, what = "manifest.json"): DockerArchiveManifest[] {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === "string" ? data : data.toString("utf8"));
  } catch (err) {
    throw new ImageFormatError(`${what}: invalid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(value)) throw new ImageFormatError(`${what}: expected a JSON array of {Config, RepoTags, Layers}`);
  return value.map((entry, i) => {
    const e = entry as Json;
    if (e === null || typeof e !== "object") throw new ImageFormatError(`${what}[${i}]: expected an object`);
    if (typeof e.Config !== "string" || e.Config === "") throw new ImageFormatError(`${what}[${i}]: "Config" must be a path`);
    if (!Array.isArray(e.Layers) || e.Layers.some((l) => typeof l !== "string")) throw new ImageFormatError(`${what}[${i}]: "Layers" must be an array of paths`);
    const tags = e.RepoTags ?? [];
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== "string")) throw new ImageFormatError(`${what}[${i}]: "RepoTags" must be an array of strings`);
    return { Config: e.Config, RepoTags: tags as string[], Layers: e.Layers as string[] };
  });
}

/** JSON the way Go's encoding/json writes it (HTML-safe escapes), so digests match containerd's. */
export function goJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

function sortedMap(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A descriptor with ocispec.Descriptor's field order and omitempty rules (Go sorts map keys). */
export function descriptorJson(d: Descriptor): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (d.mediaType) out.mediaType = d.mediaType;
  out.digest = d.digest;
  out.size = d.size;
  if (d.urls && d.urls.length > 0) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length > 0) out.annotations = sortedMap(d.annotations);
  if (d.platform) {
    const p: Record<string, unknown> = { architecture: d.platform.architecture, os: d.platform.os };
    if (d.platform.variant) p.variant = d.platform.variant;
    out.platform = p;
  }
  return out;
}
