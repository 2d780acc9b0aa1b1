// Importing an image archive client-side, as ctr's `images import` does
// (containerd's archive.ImportIndex + Client.Import): every file of the tar goes
// into the content store (ref "tar-<path>"), an OCI layout's index.json — or, for
// a Docker archive, a synthesized Docker schema2 manifest per image plus an index —
// is walked to set the gc.ref labels, images are named from the annotations, and
// the images are unpacked.
//
// Streaming: blobs are hashed while they are written to the content service, so no
// layer is held in memory or copied to a temp file. A Docker layer's digest is not
// known up front, and needs not be: Content/Write commits without an expected
// digest and the server reports the one it computed (we check it against ours).
// Small files (JSON documents, Docker's legacy files) are read whole and written
// while the archive reading goes on: each Content/Write costs several round trips,
// which then overlap instead of adding up.
//
// Differences from ctr, on purpose (Berth has no garbage collector yet, and a
// refused archive must leave nothing behind):
// - image records are created only after every image unpacked;
// - on failure the blobs this import stored, and the snapshots it committed, are
//   removed again;
// - on success, blobs this import stored that no imported image references (the
//   archive's index.json, Docker's legacy <id>/json files, manifests of platforms
//   not selected) are deleted, which is what containerd's GC would do later;
// - every blob an image references must be present (containerd only notices a
//   missing layer at unpack time), with the size its descriptor states.
import { createHash } from "node:crypto";
import { readArchive, entryBytes, entryChunks, symlinkTarget, archivePath, ArchiveError, type ArchiveEntry } from "./archive-reader.ts";
import { blobInfo, readBlobBytes, updateBlobLabels, writeBlob } from "../content-client.ts";
import { withLease } from "./lease.ts";
import { annotations, childGcLabel, detectCompression, isIndexType, isManifestType, mediaTypes, labels as wellKnown, type Compression } from "./media-types.ts";
import { descriptorJson, goJson, parseDockerArchiveManifest, parseIndex, type Descriptor } from "./manifest.ts";
import { allPlatforms, defaultPlatformMatcher, onlyPlatformStrict, parsePlatform, type Platform, type PlatformMatcher } from "./platform.ts";
import { normalizeDockerRef, ociReferenceName, refTranslator, ReferenceError } from "./reference.ts";
import { childrenOf, documentLimits, filterPlatforms, imagePlatforms } from "./resolve.ts";
import { isAlreadyExists, isNotFound } from "../grpc-client.ts";
import { callOptions, withDocumentCache, type ImageServices } from "./services.ts";
import { removeSnapshots, resolveSnapshotter, unpackImage, type UnpackResult } from "./unpack.ts";
import { sha256Digest } from "../digest.ts";

export interface ImportOptions {
  /** Only this platform (strict), for labels and for unpacking. */
  platform?: Platform | string;
  /** Keep (label) the content of every platform; unpacking still uses `platform` or the host. */
  allPlatforms?: boolean;
  /**
   * ctr's --base-name: bare tags become "<prefix>:<tag>" and full names must start
   * with the prefix. Without it, bare tags get "import-<yyyy-mm-dd>".
   */
  namePrefix?: string;
  /** Also create "<prefix>@<digest>" images for every manifest of the archive's index. */
  digests?: boolean;
  /** With `digests`: not for manifests that already have a name. */
  skipDigestForNamed?: boolean;
  /** Also keep the archive's index as an image of this name. */
  indexName?: string;
  /** Default true. */
  unpack?: boolean;
  snapshotter?: string;
  /** Run the import under this lease instead of a fresh one. */
  lease?: string;
  onProgress?: (event: ImportProgress) => void;
}

export type ImportProgress =
  | { type: "unpack-start"; image: ImportedImage }
  | { type: "unpack-done"; image: ImportedImage; result: UnpackResult };

export interface ImportedImage {
  name: string;
  target: Descriptor;
}

export interface ImportResult {
  format: "oci" | "docker";
  /** The archive's index (OCI) or the one synthesized for a Docker archive. */
  index: Descriptor;
  images: ImportedImage[];
  unpacked: UnpackResult[];
}

interface ArchiveBlob {
  digest: string;
  size: number;
  compression: Compression;
}

interface ArchiveContents {
  ociLayout?: Buffer;
  dockerManifest?: Buffer;
  /** index.json's bytes: read from here, not back from the store (see TopIndex). */
  indexJson?: Buffer;
  blobs: Map<string, ArchiveBlob>;
  links: Map<string, string>;
}

/** What this import changed, to undo on failure and to prune on success. */
interface ImportState {
  svc: ImageServices;
  lease: string;
  fresh: Set<string>;
  reachable: Set<string>;
  snapshots: { snapshotter: string; chainIds: string[] }[];
}

const blobPathPattern = /^blobs\/([^/]+)\/([^/]+)$/;

/** The digest a blobs/<alg>/<hex> path promises ("" for other paths). */
function digestOfPath(path: string): string {
  const m = blobPathPattern.exec(path);
  if (!m) return "";
  if (m[1] !== "sha256") throw new ArchiveError(`archive entry "${path}": unsupported digest algorithm "${m[1]}"`);
  if (!/^[a-f0-9]{64}$/.test(m[2]!)) throw new ArchiveError(`archive entry "${path}": "${m[2]}" is not a sha256 digest`);
  return `sha256:${m[2]}`;
}

/** Archive files up to this size are read whole and written in the background. */
const smallBlob = 1024 * 1024;
/** Background writes of small files at a time. */
const writesInFlight = 8;

/** Stores a small archive file, already read, as a blob. */
async function ingestBytes(state: ImportState, path: string, bytes: Buffer): Promise<ArchiveBlob> {
  const expected = digestOfPath(path);
  if (expected !== "") {
    const digest = sha256Digest(bytes);
    if (digest !== expected) throw new ArchiveError(`blob "${path}": digest mismatch: its content hashes to ${digest}`);
  }
  const written = await writeBlob(state.svc.content, bytes, { ref: `tar-${path}`, total: bytes.length, expected, abortOnFailure: true }, callOptions(state.svc, state.lease));
  if (!written.existed) state.fresh.add(written.digest);
  return { digest: written.digest, size: bytes.length, compression: detectCompression(bytes.subarray(0, 16)) };
}

/** Streams one archive file into the store as a blob. */
async function ingestEntry(state: ImportState, entry: ArchiveEntry): Promise<ArchiveBlob> {
  const expected = digestOfPath(entry.path);
  // Without an expected digest the writer computes one; with it, the archive's bytes are checked here.
  const hash = expected !== "" ? createHash("sha256") : undefined;
  let head = Buffer.alloc(0);
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const chunk of entryChunks(entry)) {
      hash?.update(chunk);
      if (head.length < 16) head = Buffer.concat([head, chunk.subarray(0, 16 - head.length)]);
      yield chunk;
    }
    const digest = hash ? `sha256:${hash.digest("hex")}` : expected;
    if (digest !== expected) throw new ArchiveError(`blob "${entry.path}": digest mismatch: its content hashes to ${digest}`);
  }
  const source = chunks();
  const written = await writeBlob(state.svc.content, source, { ref: `tar-${entry.path}`, total: entry.size, expected, abortOnFailure: true }, callOptions(state.svc, state.lease));
  // A blob the store already has is not read by the writer; the archive still is.
  for await (const _ of source);
  if (!written.existed) state.fresh.add(written.digest);
  return { digest: written.digest, size: entry.size, compression: detectCompression(head) };
}

async function readContents(state: ImportState, input: AsyncIterable<Buffer | string>): Promise<ArchiveContents> {
  const contents: ArchiveContents = { blobs: new Map(), links: new Map() };
  // Every blob in archive order (a later entry of the same path wins, as before).
  const blobs: [string, Promise<ArchiveBlob>][] = [];
  const inFlight = new Set<Promise<unknown>>();
  try {
    for await (const entry of readArchive(input)) {
      if (entry.type === "symlink") {
        contents.links.set(entry.path, symlinkTarget(entry.path, entry.linkname));
        continue;
      }
      if (entry.type === "link") {
        contents.links.set(entry.path, archivePath(entry.linkname));
        continue;
      }
      if (entry.type !== "file") continue;
      if (entry.path === "oci-layout") contents.ociLayout = await entryBytes(entry, documentLimits.index);
      else if (entry.path === "manifest.json") contents.dockerManifest = await entryBytes(entry, documentLimits.manifest);
      else if (entry.path === "index.json") {
        contents.indexJson = await entryBytes(entry, documentLimits.index);
        blobs.push([entry.path, Promise.resolve(await ingestBytes(state, entry.path, contents.indexJson))]);
      } else if (entry.size <= smallBlob) {
        // A bad blob path fails here, in archive order, as it does for streamed entries.
        digestOfPath(entry.path);
        const bytes = await entryBytes(entry);
        while (inFlight.size >= writesInFlight) await Promise.race(inFlight);
        const write = ingestBytes(state, entry.path, bytes);
        const settled: Promise<unknown> = write.then(
          () => inFlight.delete(settled),
          () => inFlight.delete(settled),
        );
        inFlight.add(settled);
        blobs.push([entry.path, write]);
      } else blobs.push([entry.path, Promise.resolve(await ingestEntry(state, entry))]);
    }
  } finally {
    // Whatever happens, no write may still be running when the caller cleans up.
    await Promise.allSettled(blobs.map(([, write]) => write));
  }
  for (const [path, write] of blobs) contents.blobs.set(path, await write);
  return contents;
}

/** A path named inside the archive (manifest.json), following symlinks. */
function lookupBlob(contents: ArchiveContents, name: string): ArchiveBlob | undefined {
  let path = archivePath(name);
  for (let hops = 0; hops < 16; hops++) {
    const blob = contents.blobs.get(path);
    if (blob) return blob;
    const next = contents.links.get(path);
    if (next === undefined) return undefined;
    path = next;
  }
  return undefined;
}

/**
 * The archive's top index with its bytes. It is not referenced by any image, so
 * a concurrent import of the same archive may prune it from the store: the walk
 * reads these bytes, never the stored blob.
 */
interface TopIndex {
  descriptor: Descriptor;
  bytes: Buffer;
}

async function storeJson(state: ImportState, value: unknown, mediaType: string): Promise<TopIndex> {
  const bytes = Buffer.from(goJson(value));
  const digest = sha256Digest(bytes);
  const result = await writeBlob(state.svc.content, bytes, { ref: `manifest-${digest}`, expected: digest, abortOnFailure: true }, callOptions(state.svc, state.lease));
  if (!result.existed) state.fresh.add(digest);
  return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
}

/**
 * archive.resolveLayers: a layer stored uncompressed in the archive is replaced by
 * a compressed blob already in the store whose uncompressed label names it.
 */
async function resolveDockerLayers(state: ImportState, contents: ArchiveContents, files: string[], where: string): Promise<Descriptor[]> {
  const layers: Descriptor[] = files.map((file) => {
    const blob = lookupBlob(contents, file);
    if (!blob) throw new ArchiveError(`${where}: layer "${file}" is not in the archive`);
    return { mediaType: blob.compression === "none" ? mediaTypes.dockerLayer : mediaTypes.dockerLayerGzip, digest: blob.digest, size: blob.size };
  });
  if (layers.length === 0) return layers;
  const filters = layers.map((l) => `labels."${wellKnown.uncompressed}"==${l.digest}`);
  const replacements = new Map<string, { digest: string; size: number }>();
  for await (const batch of state.svc.content.list({ filters }, callOptions(state.svc, state.lease))) {
    for (const info of batch.info) {
      const uncompressed = info.labels[wellKnown.uncompressed];
      if (uncompressed && info.digest !== uncompressed) replacements.set(uncompressed, { digest: info.digest, size: Number(info.size) });
    }
  }
  for (const layer of layers) {
    const swap = replacements.get(layer.digest);
    if (!swap) continue;
    const head = await readBlobBytes(state.svc.content, swap.digest, callOptions(state.svc, state.lease), { size: 10 }).catch(() => undefined);
    if (!head) continue;
    layer.digest = swap.digest;
    layer.size = swap.size;
    layer.mediaType = detectCompression(head.subarray(0, 10)) === "none" ? mediaTypes.dockerLayer : mediaTypes.dockerLayerGzip;
  }
  return layers;
}

/** A Docker archive becomes Docker schema2 manifests and an OCI index naming them. */
async function dockerIndex(state: ImportState, contents: ArchiveContents): Promise<TopIndex> {
  const entries = parseDockerArchiveManifest(contents.dockerManifest!);
  const manifests: Descriptor[] = [];
  for (const [i, entry] of entries.entries()) {
    const where = `manifest.json[${i}]`;
    const config = lookupBlob(contents, entry.Config);
    if (!config) throw new ArchiveError(`${where}: image config "${entry.Config}" is not in the archive`);
    const layers = await resolveDockerLayers(state, contents, entry.Layers, where);
    const manifest = {
      schemaVersion: 2,
      mediaType: mediaTypes.dockerManifest,
      config: descriptorJson({ mediaType: mediaTypes.dockerConfig, digest: config.digest, size: config.size }),
      layers: layers.map(descriptorJson),
    };
    const desc = (await storeJson(state, manifest, mediaTypes.dockerManifest)).descriptor;
    const platforms = await imagePlatforms(state.svc, desc, state.lease);
    if (platforms[0]) desc.platform = platforms[0];
    if (entry.RepoTags.length === 0) {
      manifests.push(desc);
      continue;
    }
    for (const ref of entry.RepoTags) {
      let normalized: string;
      try {
        normalized = normalizeDockerRef(ref);
      } catch (err) {
        throw new ArchiveError(`${where}: normalize image ref "${ref}": ${(err as ReferenceError).message}`);
      }
      manifests.push({ ...desc, annotations: { [annotations.imageName]: normalized, [annotations.refName]: ociReferenceName(normalized) } });
    }
  }
  return storeJson(state, { schemaVersion: 2, manifests: manifests.map(descriptorJson) }, mediaTypes.ociIndex);
}

function ociIndex(contents: ArchiveContents): TopIndex | undefined {
  if (!contents.ociLayout) return undefined;
  let version = "";
  try {
    const layout = JSON.parse(contents.ociLayout.toString("utf8")) as { imageLayoutVersion?: unknown };
    if (typeof layout?.imageLayoutVersion === "string") version = layout.imageLayoutVersion;
  } catch (err) {
    throw new ArchiveError(`untar oci layout "oci-layout": ${(err as Error).message}`);
  }
  if (version === "") return undefined;
  if (version !== "1.0.0") throw new ArchiveError(`unsupported OCI version ${version}`);
  const index = contents.blobs.get("index.json");
  if (!index || !contents.indexJson) throw new ArchiveError("missing index.json in OCI layout 1.0.0");
  return { descriptor: { mediaType: mediaTypes.ociIndex, digest: index.digest, size: index.size }, bytes: contents.indexJson };
}

function todayPrefix(now: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `import-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** Imports.imageName: the containerd name annotation, else the OCI ref name (translated). */
function imageName(ann: Record<string, string> | undefined, translate: (ref: string) => string): string {
  const name = ann?.[annotations.imageName];
  if (name) return name;
  const ref = ann?.[annotations.refName];
  return ref ? translate(ref) : "";
}

async function requirePresent(state: ImportState, child: Descriptor, parent: Descriptor): Promise<void> {
  const info = await blobInfo(state.svc.content, child.digest, callOptions(state.svc, state.lease));
  if (!info) {
    throw new ArchiveError(`blob ${child.digest} (${child.mediaType || "no media type"}) referenced by ${parent.digest} is neither in the archive nor in the content store`);
  }
  if (Number(info.size) !== child.size) {
    throw new ArchiveError(`blob ${child.digest} referenced by ${parent.digest}: descriptor says ${child.size} bytes, the blob has ${info.size}`);
  }
}

/**
 * The walk of Client.Import: names from the top index, children filtered by
 * platform, and the gc.ref labels each parent needs (images.SetChildrenLabels).
 */
async function labelAndName(state: ImportState, top: TopIndex, matcher: PlatformMatcher, options: ImportOptions, prefix: string): Promise<ImportedImage[]> {
  const images: ImportedImage[] = [];
  const translate = refTranslator(prefix, options.namePrefix !== undefined && options.namePrefix !== "");
  const visited = new Set<string>();
  let empty = true;
  const visit = async (desc: Descriptor, isTop: boolean): Promise<void> => {
    let children: Descriptor[];
    if (isTop) {
      const idx = parseIndex(top.bytes, "index.json", desc.mediaType);
      for (const m of idx.manifests) {
        const name = imageName(m.annotations, translate);
        if (name) images.push({ name, target: m });
        if (options.digests && !(options.skipDigestForNamed && name)) images.push({ name: `${prefix}@${m.digest}`, target: m });
      }
      children = idx.manifests;
    } else {
      if (visited.has(desc.digest)) return;
      visited.add(desc.digest);
      children = await childrenOf(state.svc, desc, state.lease);
    }
    children = filterPlatforms(children, matcher);
    if (children.length === 0) return;
    empty = false;
    const labels: Record<string, string> = {};
    const counts = new Map<string, number>();
    for (const child of children) {
      const key = childGcLabel(child.mediaType);
      const n = counts.get(key) ?? 0;
      counts.set(key, n + 1);
      labels[n > 0 || key.endsWith(".") ? `${key}${n}` : key] = child.digest;
    }
    await Promise.all(children.map((child) => requirePresent(state, child, desc)));
    try {
      await updateBlobLabels(state.svc.content, desc.digest, labels, callOptions(state.svc, state.lease));
    } catch (err) {
      // An index no image keeps is pruned at the end (see TopIndex): a concurrent import
      // of the same archive may have pruned it already, and this one would too.
      if (!(isTop && !options.indexName && isNotFound(err))) throw err;
    }
    for (const child of children) {
      state.reachable.add(child.digest);
      if (isManifestType(child.mediaType) || isIndexType(child.mediaType)) await visit(child, false);
    }
  };
  const index = top.descriptor;
  await visit(index, true);
  if (empty) throw new ArchiveError(`no content to import for platform ${matcher.description}: image might be filtered out`);
  for (const image of images) state.reachable.add(image.target.digest);
  if (options.indexName) {
    images.unshift({ name: options.indexName, target: index });
    state.reachable.add(index.digest);
  }
  return images;
}

/** Names an image: create, or move an existing name to the new target (registry pulls use it too). */
export async function saveImage(svc: ImageServices, image: ImportedImage, lease: string): Promise<void> {
  const record = {
    name: image.name,
    labels: {},
    target: { mediaType: image.target.mediaType, digest: image.target.digest, size: BigInt(image.target.size), annotations: image.target.annotations ?? {} },
  };
  const create = () => svc.images.create({ image: record }, callOptions(svc, lease));
  // Create first, as containerd's client does: an import usually brings new names (one
  // round trip instead of two).
  try {
    await create();
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    try {
      await svc.images.update({ image: record, updateMask: ["target"] }, callOptions(svc, lease));
    } catch (updateErr) {
      // A concurrent removal deleted it between our Create and Update: create it after all.
      if (!isNotFound(updateErr)) throw updateErr;
      await create();
    }
  }
}

async function deleteBlobs(state: ImportState, digests: Iterable<string>): Promise<void> {
  // Independent of each other: all at once. Best effort.
  await Promise.all([...digests].map((digest) => state.svc.content.delete({ digest }, callOptions(state.svc, state.lease)).catch(() => undefined)));
}

function platformMatchers(options: ImportOptions): { label: PlatformMatcher; unpack: PlatformMatcher } {
  const strict = options.platform !== undefined && options.platform !== "" ? onlyPlatformStrict(typeof options.platform === "string" ? parsePlatform(options.platform) : options.platform) : undefined;
  const unpack = strict ?? defaultPlatformMatcher();
  return { label: options.allPlatforms ? allPlatforms : unpack, unpack };
}

/** Imports an archive from a stream. */
export async function importArchive(caller: ImageServices, input: AsyncIterable<Buffer | string>, options: ImportOptions = {}): Promise<ImportResult> {
  const svc = withDocumentCache(caller);
  const matchers = platformMatchers(options);
  const prefix = options.namePrefix || todayPrefix(new Date());
  return withLease(svc, options.lease, async (lease) => {
    const state: ImportState = { svc, lease, fresh: new Set(), reachable: new Set(), snapshots: [] };
    try {
      const contents = await readContents(state, input);
      let format: "oci" | "docker" = "oci";
      let top = ociIndex(contents);
      if (!top) {
        if (!contents.dockerManifest) {
          throw new ArchiveError("unrecognized image format: the archive has neither an OCI layout (oci-layout, index.json) nor a Docker manifest.json");
        }
        format = "docker";
        top = await dockerIndex(state, contents);
      }
      const images = await labelAndName(state, top, matchers.label, options, prefix);
      const unpacked: UnpackResult[] = [];
      if (options.unpack !== false && images.length > 0) {
        const snapshotter = await resolveSnapshotter(svc, options.snapshotter, lease);
        for (const image of images) {
          options.onProgress?.({ type: "unpack-start", image });
          // Under the import's lease, as containerd's client.WithLease reuses the lease in the context.
          const result = await unpackImage(svc, image.target, { snapshotter, platform: matchers.unpack, lease });
          state.snapshots.push({ snapshotter, chainIds: result.added });
          unpacked.push(result);
          options.onProgress?.({ type: "unpack-done", image, result });
        }
      }
      for (const image of images) await saveImage(svc, image, lease);
      await deleteBlobs(state, [...state.fresh].filter((d) => !state.reachable.has(d)));
      return { format, index: top.descriptor, images, unpacked };
    } catch (err) {
      for (const { snapshotter, chainIds } of [...state.snapshots].reverse()) await removeSnapshots(svc, snapshotter, chainIds, lease);
      await deleteBlobs(state, state.fresh);
      throw err;
    }
  });
}
