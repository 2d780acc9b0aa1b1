// Pushing an image from the content store: every blob the registry lacks is mounted
// from a repository it is known to live in (the distribution.source label a pull or
// an earlier push left), else uploaded; then manifests, children before the index
// that names them, the root last under the tag.
import { blobInfo, readBlob, readBlobBytes, updateBlobLabels } from "../content-client.ts";
import { failedPrecondition, invalidArgument, notFound } from "../errors.ts";
import { isNotFound } from "../grpc-client.ts";
import { isIndexType, isManifestType } from "../image/media-types.ts";
import { parseIndex, parseManifest, type Descriptor } from "../image/manifest.ts";
import { parsed } from "./resolve.ts";
import { filterPlatforms, sortByPlatform } from "../image/resolve.ts";
import { callOptions, type ImageServices } from "../image/services.ts";
import type { RegistryClient } from "./client.ts";
import { blobExists, cancelUpload, mountBlob, pushBlob } from "./blobs.ts";
import { maxManifestBytes, pushManifest } from "./manifests.ts";
import { addSource, distributionSourceLabel, runLimited } from "./pull.ts";
import { platformMatcher, type ResolveOptions } from "./resolve.ts";
import { parseRegistryReference, referenceString, type RegistryReference } from "./reference.ts";
import { withRetry } from "./retry.ts";

export type PushEvent =
  | { type: "exists"; descriptor: Descriptor }
  | { type: "mounted"; descriptor: Descriptor; from: string }
  | { type: "uploaded"; descriptor: Descriptor }
  | { type: "progress"; descriptor: Descriptor; sent: number }
  | { type: "manifest"; descriptor: Descriptor; object: string };

/** Repositories tried for a cross-repository mount before uploading. */
const maxMountSources = 3;

export interface PushOptions {
  /** Push only the manifest for this platform (under the tag) instead of the whole index. */
  platform?: ResolveOptions["platform"];
  /** Upload blobs larger than this in PATCH chunks of this size (default: one PUT each). */
  chunkSize?: number;
  lease?: string;
  onProgress?: (event: PushEvent) => void;
}

export interface PushResult {
  reference: RegistryReference;
  name: string;
  /** What the tag now points at. */
  root: Descriptor;
  uploaded: string[];
  mounted: string[];
  existed: string[];
}


/** The image record's target, or the descriptor itself. */
async function sourceRoot(svc: ImageServices, source: string | Descriptor): Promise<Descriptor> {
  if (typeof source !== "string") return source;
  try {
    const { image } = await svc.images.get({ name: source }, callOptions(svc));
    const t = image!.target!;
    return { mediaType: t.mediaType, digest: t.digest, size: Number(t.size), ...(Object.keys(t.annotations).length ? { annotations: t.annotations } : {}) };
  } catch (err) {
    if (isNotFound(err)) throw notFound(`image "${source}"`);
    throw err;
  }
}

export async function pushImage(client: RegistryClient, svc: ImageServices, source: string | Descriptor, reference: string | RegistryReference, options: PushOptions = {}): Promise<PushResult> {
  const target = typeof reference === "string" ? parseRegistryReference(reference, client.defaultRegistry) : reference;
  const call = callOptions(svc, options.lease);
  const result: PushResult = { reference: target, name: referenceString(target), root: await sourceRoot(svc, source), uploaded: [], mounted: [], existed: [] };
  const sourceKey = distributionSourceLabel(target.registry);
  const documents = new Map<string, Buffer>();
  const read = async (desc: Descriptor) => {
    let data = documents.get(desc.digest);
    if (!data) {
      try {
        data = await readBlobBytes(svc.content, desc.digest, call, { limit: maxManifestBytes });
      } catch (err) {
        if (isNotFound(err)) throw failedPrecondition(`${desc.mediaType} ${desc.digest} is not in the content store of namespace "${svc.namespace}"`);
        throw err;
      }
      documents.set(desc.digest, data);
    }
    return data;
  };

  // With a platform, the tag gets that platform's manifest alone.
  if (options.platform !== undefined) {
    const matcher = platformMatcher(options.platform);
    while (isIndexType(result.root.mediaType)) {
      const root = result.root;
      const data = await read(root);
      const index = parsed(() => parseIndex(data, `index ${root.digest}`, root.mediaType));
      const chosen = sortByPlatform(filterPlatforms(index.manifests, matcher), matcher)[0];
      if (!chosen) throw notFound(`index ${root.digest}: no manifest for platform ${matcher.description}`);
      result.root = { mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size };
    }
  }
  if (target.digest && target.digest !== result.root.digest) {
    throw invalidArgument(`cannot push ${result.root.digest} as ${referenceString(target)}: the reference names another digest`);
  }

  // Manifests in push order (children before the index naming them); blobs once each.
  const order: Descriptor[] = [];
  const blobs = new Map<string, Descriptor>();
  const walk = async (desc: Descriptor, depth: number): Promise<void> => {
    if (depth > 4) throw invalidArgument(`${desc.digest}: indexes nested more than 4 deep`);
    const data = await read(desc);
    if (isManifestType(desc.mediaType)) {
      const m = parsed(() => parseManifest(data, `manifest ${desc.digest}`, desc.mediaType));
      for (const b of [m.config, ...m.layers]) blobs.set(b.digest, b);
    } else if (isIndexType(desc.mediaType)) {
      const index = parsed(() => parseIndex(data, `index ${desc.digest}`, desc.mediaType));
      for (const child of index.manifests) await walk(child, depth + 1);
    } else {
      throw invalidArgument(`${desc.digest}: cannot push media type ${JSON.stringify(desc.mediaType)} as a manifest`);
    }
    if (!order.some((d) => d.digest === desc.digest)) order.push(desc);
  };
  await walk(result.root, 0);

  const ensureBlob = async (desc: Descriptor): Promise<void> => {
    const info = await blobInfo(svc.content, desc.digest, call);
    if (!info) throw failedPrecondition(`blob ${desc.digest} is not in the content store of namespace "${svc.namespace}"`);
    const label = { [sourceKey]: addSource(info.labels[sourceKey], target.repository) };
    if (await blobExists(client, target, desc)) {
      result.existed.push(desc.digest);
      options.onProgress?.({ type: "exists", descriptor: desc });
      await updateBlobLabels(svc.content, desc.digest, label, call);
      return;
    }
    // Mount from a few of the repositories the blob is known in; a refusal starts an
    // upload session, kept for the upload (the one before it is cancelled).
    let uploadUrl: string | undefined;
    const sources = (info.labels[sourceKey] ?? "").split(",").filter((r) => r !== "" && r !== target.repository);
    for (const from of sources.slice(0, maxMountSources)) {
      const mount = await mountBlob(client, target, desc, from);
      if (mount.mounted) {
        if (uploadUrl) await cancelUpload(client, target, uploadUrl);
        result.mounted.push(desc.digest);
        options.onProgress?.({ type: "mounted", descriptor: desc, from });
        await updateBlobLabels(svc.content, desc.digest, label, call);
        return;
      }
      if (uploadUrl) await cancelUpload(client, target, uploadUrl);
      uploadUrl = mount.uploadUrl;
    }
    // A failed upload is started afresh (pushBlob cancels the session it used).
    await withRetry(
      (attempt) =>
        pushBlob(client, target, desc, readBlob(svc.content, desc.digest, call), {
          ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
          ...(attempt === 1 && uploadUrl ? { uploadUrl } : {}),
          onData: (sent) => options.onProgress?.({ type: "progress", descriptor: desc, sent }),
        }),
      client.retryOptions,
    );
    result.uploaded.push(desc.digest);
    options.onProgress?.({ type: "uploaded", descriptor: desc });
    await updateBlobLabels(svc.content, desc.digest, label, call);
  };
  await runLimited([...blobs.values()], 3, ensureBlob);

  for (const desc of order) {
    const object = desc.digest === result.root.digest ? (target.tag ?? desc.digest) : desc.digest;
    await pushManifest(client, target, object, desc, await read(desc));
    options.onProgress?.({ type: "manifest", descriptor: desc, object });
  }
  return result;
}
