// The images a build makes: each step's result is a full image (config + manifest) kept
// under an untagged name with its cache key as a label, so a later build finds it
// (across builds and Dockerfiles) and the store's garbage collector keeps its content.
import { createHash, randomBytes } from "node:crypto";
import { readBlobBytes, writeBlob } from "../../../core/content-client.ts";
import { descriptorJson, goJson, type Descriptor } from "../../../core/image/manifest.ts";
import { childGcLabel, mediaTypes } from "../../../core/image/media-types.ts";
import { isAlreadyExists, isNotFound } from "../../../core/grpc-status.ts";
import type { Backend } from "../backend.ts";
import { danglingPrefix, imageCatalog, toDescriptor } from "../images/catalog.ts";
import { findImage } from "../containers/image.ts";
import type { Image } from "../../../core/gen/containerd/services/images/v1/images.ts";
import { callOptions } from "../../../core/image/services.ts";
import { formatPlatform, hostPlatform, onlyPlatform, type Platform } from "../../../core/image/platform.ts";
import { imagePlatforms, NoMatchingManifestError, resolveImage } from "../../../core/image/resolve.ts";
import { documentPlatform } from "./platforms.ts";

/** The label a build step's image carries: the step's cache key. */
export const cacheKeyLabel = "berth.build.cache-key";

export interface ImageDocument {
  architecture?: string;
  os?: string;
  created?: string;
  config?: Record<string, unknown> & { Env?: string[]; Cmd?: string[] | null; Entrypoint?: string[] | null; WorkingDir?: string; User?: string; Labels?: Record<string, string> | null; ExposedPorts?: Record<string, object>; Volumes?: Record<string, object>; StopSignal?: string; Shell?: string[] };
  rootfs?: { type: string; diff_ids: string[] };
  history?: Record<string, unknown>[];
  [key: string]: unknown;
}

/** An image as a build step holds it: what the next step starts from. */
export interface BuildImage {
  /** The config digest ("" for scratch before any step). */
  id: string;
  document: ImageDocument;
  layers: Descriptor[];
  manifestType: string;
  configType: string;
  /** Its stored manifest (what a tag points at); none for scratch. */
  target: Descriptor | undefined;
}

/** An empty image of `platform` (this host's when none). */
export function scratchImage(platform: Platform = hostPlatform()): BuildImage {
  return {
    id: "",
    document: { architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}), config: {}, rootfs: { type: "layers", diff_ids: [] }, history: [] },
    layers: [],
    manifestType: mediaTypes.ociManifest,
    configType: mediaTypes.ociConfig,
    target: undefined,
  };
}

/**
 * The image a FROM (or COPY --from=image) names, by reference or id; Docker's 404 wording.
 * With a platform, the manifest of that platform (from an index), or an error naming it.
 */
export async function loadImage(backend: Backend, ref: string, platform?: Platform): Promise<BuildImage> {
  const found = await findImage(backend, ref);
  if (!platform) {
    const content = await imageCatalog(backend).content(found.target);
    return {
      id: content.id,
      document: JSON.parse(JSON.stringify(content.config)) as ImageDocument,
      layers: content.layers,
      manifestType: found.target.mediaType === mediaTypes.dockerManifest ? mediaTypes.dockerManifest : mediaTypes.ociManifest,
      configType: content.configDescriptor.mediaType,
      target: found.target,
    };
  }
  const matcher = onlyPlatform(platform);
  let resolved;
  try {
    resolved = await resolveImage(backend.images, found.target, matcher);
  } catch (err) {
    if (!(err instanceof NoMatchingManifestError)) throw err;
    const has = await imagePlatforms(backend.images, found.target).catch(() => []);
    throw new PlatformMismatch(`${ref} has no image for platform ${formatPlatform(platform)}${has.length > 0 ? ` (it has ${has.map(formatPlatform).join(", ")})` : ""}`);
  }
  const bytes = await readBlobBytes(backend.images.content, resolved.configDescriptor.digest, callOptions(backend.images), { limit: 8 << 20 });
  const document = JSON.parse(bytes.toString("utf8")) as ImageDocument;
  // A single manifest is not filtered by resolveImage: its config says what it runs on.
  const declared = documentPlatform(document);
  if (declared && !matcher.match(declared)) {
    throw new PlatformMismatch(`image with reference ${ref} was found but does not match the specified platform: wanted ${formatPlatform(platform)}, actual: ${formatPlatform(declared)}`);
  }
  return {
    id: resolved.configDescriptor.digest,
    document,
    layers: resolved.manifest.layers,
    manifestType: resolved.descriptor.mediaType === mediaTypes.dockerManifest ? mediaTypes.dockerManifest : mediaTypes.ociManifest,
    configType: resolved.configDescriptor.mediaType,
    // The platform's own manifest: unpacking it, or a tag on the result, needs no index.
    target: resolved.descriptor,
  };
}

/** The image is there but not for the platform asked for. */
export class PlatformMismatch extends Error {
  override name = "PlatformMismatch";
}

/** The image an earlier build stored for `key`, if it is still there. */
export async function findCached(backend: Backend, key: string): Promise<BuildImage | undefined> {
  return new CacheIndex(backend).find(key);
}

/**
 * The build cache's records, listed once for a build: each step's lookup then costs no
 * round trip (a list the images service filters over every record) but only the reads of
 * a hit's manifest and config, which the catalog keeps. An image stored by another build
 * after the listing is not seen: a miss, as if that build had come later.
 */
export class CacheIndex {
  private readonly backend: Backend;
  private records: Promise<Map<string, Image>> | undefined;

  constructor(backend: Backend) {
    this.backend = backend;
  }

  private list(): Promise<Map<string, Image>> {
    this.records ??= this.backend.images.images.list({ filters: [`labels."${cacheKeyLabel}"`] }, this.backend.call()).then(({ images }) => {
      const byKey = new Map<string, Image>();
      // The first record for a key wins, as the per-key lookup this replaces found it.
      for (const image of images) {
        const key = image.labels[cacheKeyLabel];
        if (key && image.target && !byKey.has(key)) byKey.set(key, image);
      }
      return byKey;
    });
    this.records.catch(() => (this.records = undefined));
    return this.records;
  }

  async find(key: string): Promise<BuildImage | undefined> {
    const record = (await this.list()).get(key);
    if (!record) return undefined;
    try {
      const content = await imageCatalog(this.backend).content(toDescriptor(record));
      return { id: content.id, document: content.config as ImageDocument, layers: content.layers, manifestType: record.target!.mediaType, configType: content.configDescriptor.mediaType, target: toDescriptor(record) };
    } catch {
      return undefined; // content gone: build the step again
    }
  }
}

/** Writes the image's config and manifest and names it (untagged, labelled with `key`); returns it with its id. */
export async function storeImage(backend: Backend, lease: string, image: BuildImage, key: string): Promise<BuildImage> {
  const { image: stored, written } = storeImageLater(backend, lease, image, key);
  await written;
  return stored;
}

/**
 * The image with its id and target, which depend only on its config and manifest, known at
 * once; `written` settles when they are stored and named, true if this call made the name
 * (its labels then are `{ [cacheKeyLabel]: key }`, and the build result's mark when `result`).
 * A build's next step need not wait for those writes.
 */
export function storeImageLater(backend: Backend, lease: string, image: BuildImage, key: string, layerStored?: Promise<unknown>, result = false): { image: BuildImage; written: Promise<boolean> } {
  const svc = backend.images;
  const call = backend.call(lease);
  const configBytes = Buffer.from(goJson(image.document));
  const configDigest = `sha256:${createHash("sha256").update(configBytes).digest("hex")}`;
  const configDesc: Descriptor = { mediaType: image.configType, digest: configDigest, size: configBytes.length };
  const manifest = { schemaVersion: 2, mediaType: image.manifestType, config: descriptorJson(configDesc), layers: image.layers.map(descriptorJson) };
  const manifestBytes = Buffer.from(goJson(manifest));
  const manifestDigest = `sha256:${createHash("sha256").update(manifestBytes).digest("hex")}`;
  const gcLabels: Record<string, string> = { [childGcLabel(configDesc.mediaType)]: configDesc.digest };
  image.layers.forEach((l, i) => (gcLabels[`${childGcLabel(l.mediaType)}${i}`] = l.digest));
  const target = { mediaType: image.manifestType, digest: manifestDigest, size: BigInt(manifestBytes.length), annotations: {} };
  // All three at once (the lease keeps the blobs until the name holds them): a name whose
  // content is not there yet reads as a missing image (a cache miss, left out of lists),
  // as one whose write failed does; the build fails then, with the write's error.
  const name = `${danglingPrefix}${manifestDigest}`;
  const blobs = Promise.all([
    writeBlob(svc.content, configBytes, { ref: `build-config-${randomBytes(8).toString("hex")}`, expected: configDigest }, call),
    writeBlob(svc.content, manifestBytes, { ref: `build-manifest-${randomBytes(8).toString("hex")}`, labels: gcLabels, expected: manifestDigest }, call),
  ]);
  // A layer still being stored (`layerStored`) is waited for: no name for an image whose layer may never be there.
  const named = (layerStored ?? Promise.resolve()).then(() => svc.images.create({ image: { name, labels: { [cacheKeyLabel]: key, ...(result ? { [buildResultLabel]: "true" } : {}) }, target, createdAt: undefined, updatedAt: undefined } }, backend.call())).then(
    () => true,
    (err: unknown) => {
      if (!isAlreadyExists(err)) throw err;
      return false;
    },
  );
  const written = Promise.all([blobs, named]).then(
    ([, created]) => created,
    async (err: unknown) => {
      // A name made here for content that was not written would be a broken image: it goes again.
      if (await named.catch(() => false)) await svc.images.delete({ name, sync: false }, backend.call()).catch(() => undefined);
      throw err;
    },
  );
  return { image: { ...image, id: configDesc.digest, target: { mediaType: image.manifestType, digest: manifestDigest, size: manifestBytes.length } }, written };
}

/** The label a build's result carries: it is listed by `docker images`, whereas the steps' images are not (as Docker hides intermediate images). */
export const buildResultLabel = "berth.build.result";

/**
 * Marks the image a build produced (its step image may have been cached from a build where
 * it was intermediate). `named`: the caller made its name just now (storeImageLater), so it
 * has no mark yet and the label is set without reading the record first.
 */
export async function markResult(backend: Backend, image: BuildImage, named = false): Promise<void> {
  if (!image.target) return;
  const name = `${danglingPrefix}${image.target.digest}`;
  if (named) {
    const only = { name, labels: { [buildResultLabel]: "true" }, target: undefined, createdAt: undefined, updatedAt: undefined };
    await backend.images.images.update({ image: only, updateMask: [`labels.${buildResultLabel}`] }, backend.call());
    return;
  }
  let record;
  try {
    record = (await backend.images.images.get({ name }, backend.call())).image;
  } catch (err) {
    if (isNotFound(err)) return; // not a build's image (FROM x alone): nothing to mark
    throw err;
  }
  if (!record || record.labels[buildResultLabel]) return;
  await backend.images.images.update({ image: { ...record, labels: { ...record.labels, [buildResultLabel]: "true" } }, updateMask: ["labels"] }, backend.call());
}

/** Whether an image is only a build step's (untagged, made by a build, never its result): left out of `docker images` unless -a. */
export function isBuildIntermediate(image: { repoTags: string[]; records: { labels: Record<string, string> }[] }): boolean {
  return image.repoTags.length === 0 && image.records.every((r) => r.labels[cacheKeyLabel] && !r.labels[buildResultLabel]);
}
