// Pulling an image into the content store: resolve the reference for a platform,
// fetch config and layers (a few at a time), then store the manifest and indexes with
// the gc.ref labels that keep their children alive, and name the image. All under a
// lease, so a half-done pull is collected rather than left behind.
import { blobInfo, updateBlobLabels, writeBlob } from "../content-client.ts";
import type { Descriptor } from "../image/manifest.ts";
import { childGcLabel } from "../image/media-types.ts";
import { withLease } from "../image/lease.ts";
import { saveImage } from "../image/import.ts";
import { callOptions, type ImageServices } from "../image/services.ts";
import type { RegistryClient } from "./client.ts";
import { fetchBlob, ingestRef } from "./blobs.ts";
import { resolve, type RemoteImage, type ResolveOptions } from "./resolve.ts";
import type { RegistryReference } from "./reference.ts";

export type PullEvent =
  | { type: "resolved"; image: RemoteImage }
  | { type: "blob"; descriptor: Descriptor; existed: boolean }
  | { type: "resume"; descriptor: Descriptor; offset: number }
  | { type: "progress"; descriptor: Descriptor; received: number };

export interface PullOptions extends ResolveOptions {
  /** The image record's name (default: the normalised reference). */
  name?: string;
  /** Run under this lease instead of a new one. */
  lease?: string;
  /** Blobs fetched at once (default 3). */
  concurrency?: number;
  onProgress?: (event: PullEvent) => void;
}

export interface PullResult {
  image: RemoteImage;
  /** Blobs downloaded (the rest were already in the namespace). */
  fetched: string[];
}

/** containerd.io/distribution.source.<registry> = repository: where a blob can be mounted from on a later push. */
export function distributionSourceLabel(registry: string): string {
  return `containerd.io/distribution.source.${registry}`;
}

export function addSource(existing: string | undefined, repository: string): string {
  const repos = new Set((existing ?? "").split(",").filter(Boolean));
  repos.add(repository);
  return [...repos].sort().join(",");
}

/**
 * `fn` over the items, `limit` at a time. After a failure no new item starts, and the
 * ones running are waited for: the caller's cleanup must not race a write still going.
 */
export async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = results.find((r) => r.status === "rejected");
  if (rejected) throw rejected.reason;
}

/** A document (manifest, index) with its gc labels; an existing one gets the labels added. */
async function storeDocument(svc: ImageServices, lease: string, desc: Descriptor, data: Buffer, labels: Record<string, string>): Promise<void> {
  const call = callOptions(svc, lease);
  const written = await writeBlob(svc.content, data, { ref: ingestRef(desc), expected: desc.digest, total: desc.size, labels }, call);
  if (written.existed) await updateBlobLabels(svc.content, desc.digest, labels, call);
}

export async function pullImage(client: RegistryClient, svc: ImageServices, reference: string | RegistryReference, options: PullOptions = {}): Promise<PullResult> {
  const image = await resolve(client, reference, options);
  options.onProgress?.({ type: "resolved", image });
  const { registry, repository } = image.reference;
  const sourceKey = distributionSourceLabel(registry);
  const fetched: string[] = [];
  await withLease(svc, options.lease, async (lease) => {
    const call = callOptions(svc, lease);
    // A layer may repeat in a manifest (empty layers do): fetched once.
    const blobs = [...new Map(image.blobs.map((b) => [b.digest, b])).values()];
    await runLimited(blobs, options.concurrency ?? 3, async (desc) => {
      const known = await blobInfo(svc.content, desc.digest, call);
      const labels = { [sourceKey]: addSource(known?.labels[sourceKey], repository) };
      const written = await fetchBlob(client, image.reference, desc, svc.content, {
        call,
        labels,
        onResume: (offset) => options.onProgress?.({ type: "resume", descriptor: desc, offset }),
        onData: (received) => options.onProgress?.({ type: "progress", descriptor: desc, received }),
      });
      if (written.existed) await updateBlobLabels(svc.content, desc.digest, labels, call);
      else fetched.push(desc.digest);
      options.onProgress?.({ type: "blob", descriptor: desc, existed: written.existed });
    });
    const { descriptor, manifest } = image.manifest;
    const manifestLabels: Record<string, string> = { [childGcLabel(manifest.config.mediaType)]: manifest.config.digest };
    manifest.layers.forEach((layer, i) => (manifestLabels[`${childGcLabel(layer.mediaType)}${i}`] = layer.digest));
    await storeDocument(svc, lease, descriptor, image.documents.get(descriptor.digest)!, manifestLabels);
    for (const { descriptor: indexDesc, index, chosen } of [...image.indexes].reverse()) {
      const position = index.manifests.findIndex((m) => m.digest === chosen.digest);
      await storeDocument(svc, lease, indexDesc, image.documents.get(indexDesc.digest)!, { [`${childGcLabel(chosen.mediaType)}${position}`]: chosen.digest });
    }
    await saveImage(svc, { name: options.name ?? image.name, target: image.root }, lease);
  });
  return { image, fetched };
}
