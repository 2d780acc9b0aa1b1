// Exporting images to a tar, as ctr's `images export` does (containerd 1.6's
// archive.Export): an OCI image layout (oci-layout, index.json naming each image
// with io.containerd.image.name and org.opencontainers.image.ref.name, blobs/)
// plus, for Docker tools, a manifest.json whose Config/Layers point into blobs/.
// Blobs stream from Content/Read into the tar and are verified against their digest.
import { createHash } from "node:crypto";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { pack } from "tar-stream";
import { digestHex } from "../digest.ts";
import { blobInfo, readBlob } from "../content-client.ts";
import { writeChunk } from "../stream-write.ts";
import { annotations, isIndexType, isManifestType } from "./media-types.ts";
import { descriptorJson, goJson, type Descriptor } from "./manifest.ts";
import { defaultStrictMatcher, orderedPlatforms, parsePlatform, type Platform, type PlatformMatcher } from "./platform.ts";
import { familiarizeRef, ociReferenceName } from "./reference.ts";
import { childrenOf, readIndex, readManifest, sortByPlatform } from "./resolve.ts";
import { errorMessage, isNotFound } from "../grpc-client.ts";
import { callOptions, withDocumentCache, type ImageServices } from "./services.ts";

export interface ExportOptions {
  /** The platform to export from an index (default: this host, strict). */
  platform?: Platform | string;
  /** Several platforms, in order of preference (ctr's repeated --platform). */
  platforms?: (Platform | string)[];
  /** Every manifest of an index (the blobs must all be present). */
  allPlatforms?: boolean;
  /** "docker" (default) adds manifest.json; "oci" writes the OCI layout only (ctr --skip-manifest-json). */
  format?: "oci" | "docker";
}

export class ExportError extends Error {
  override name = "ExportError";
}

interface TarRecord {
  name: string;
  mode: number;
  type: "file" | "directory";
  size: number;
  /** Static bytes, or a blob to copy from the content store. */
  data?: Buffer;
  blob?: Descriptor;
}

interface DockerManifestEntry {
  manifest: Descriptor;
  names: string[];
}

function blobPath(digest: string): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

function blobRecord(desc: Descriptor): TarRecord {
  return { name: blobPath(desc.digest), mode: 0o444, type: "file", size: desc.size, blob: desc };
}

function jsonRecord(name: string, value: unknown, mode = 0o644): TarRecord {
  const data = Buffer.from(goJson(value));
  return { name, mode, type: "file", size: data.length, data };
}

/** images.Walk with the children handler: the descriptor and everything below it. */
async function collectBlobs(svc: ImageServices, desc: Descriptor, records: TarRecord[]): Promise<void> {
  records.push(blobRecord(desc));
  for (const child of await childrenOf(svc, desc)) await collectBlobs(svc, child, records);
}

function withName(target: Descriptor, name: string): Descriptor {
  return { ...target, annotations: { ...target.annotations, [annotations.imageName]: name, [annotations.refName]: ociReferenceName(name) } };
}

function exportMatcher(options: ExportOptions): PlatformMatcher {
  const wanted = [...(options.platform ? [options.platform] : []), ...(options.platforms ?? [])];
  if (wanted.length > 0) return orderedPlatforms(...wanted.map((p) => (typeof p === "string" ? parsePlatform(p) : p)));
  return defaultStrictMatcher();
}

async function manifestJsonRecord(svc: ImageServices, entries: DockerManifestEntry[]): Promise<TarRecord> {
  const out: { Config: string; RepoTags: string[] | null; Layers: string[] | null }[] = [];
  for (const entry of entries) {
    const manifest = await readManifest(svc, entry.manifest);
    const layers = manifest.layers.map((l) => blobPath(l.digest));
    out.push({
      Config: blobPath(manifest.config.digest),
      RepoTags: entry.names.length > 0 ? entry.names.map(familiarizeRef) : null,
      Layers: layers.length > 0 ? layers : null,
    });
  }
  return jsonRecord("manifest.json", out);
}

/** Resolves every name and the blobs to write; nothing is written yet. */
async function planExport(svc: ImageServices, names: string[], options: ExportOptions): Promise<TarRecord[]> {
  const matcher = exportMatcher(options);
  const skipDocker = options.format === "oci";
  const manifests: Descriptor[] = [];
  for (const name of names) {
    let image;
    try {
      image = (await svc.images.get({ name }, callOptions(svc))).image;
    } catch (err) {
      if (isNotFound(err)) throw new ExportError(`image "${name}": not found`);
      throw err;
    }
    const t = image!.target!;
    manifests.push(withName({ mediaType: t.mediaType, digest: t.digest, size: Number(t.size), ...(Object.keys(t.annotations).length > 0 ? { annotations: t.annotations } : {}) }, name));
  }

  const records: TarRecord[] = [
    jsonRecord("oci-layout", { imageLayoutVersion: "1.0.0" }, 0o444),
    jsonRecord("index.json", { schemaVersion: 2, manifests: manifests.map(descriptorJson) }),
  ];
  const docker = new Map<string, DockerManifestEntry>();
  const resolvedIndex = new Map<string, string>();
  for (const desc of manifests) {
    const name = desc.annotations?.[annotations.imageName] ?? "";
    if (isManifestType(desc.mediaType)) {
      let entry = docker.get(desc.digest);
      if (!entry) {
        await collectBlobs(svc, desc, records);
        entry = { manifest: desc, names: [] };
        docker.set(desc.digest, entry);
      }
      if (name && !skipDocker) entry.names.push(name);
    } else if (isIndexType(desc.mediaType)) {
      let chosen = resolvedIndex.get(desc.digest);
      if (chosen === undefined) {
        records.push(blobRecord(desc));
        const index = await readIndex(svc, desc);
        const matching: Descriptor[] = [];
        for (const m of index.manifests) {
          if (!m.platform || matcher.match(m.platform)) matching.push(m);
          else if (!options.allPlatforms) continue;
          await collectBlobs(svc, m, records);
        }
        chosen = "";
        if (!skipDocker) {
          const first = sortByPlatform(matching, matcher)[0];
          if (first) {
            chosen = first.digest;
            docker.set(chosen, { manifest: first, names: [] });
          } else {
            throw new ExportError(`no manifest found for platform ${matcher.description} in ${desc.digest}: not found`);
          }
        }
        resolvedIndex.set(desc.digest, chosen);
      }
      if (chosen && name) docker.get(chosen)!.names.push(name);
    } else {
      throw new ExportError(`image ${desc.annotations?.[annotations.imageName] ?? desc.digest}: only manifests may be exported (media type ${desc.mediaType}): invalid argument`);
    }
  }
  // containerd 1.6 still writes manifest.json (without RepoTags) under --skip-manifest-json; 1.7 does not.
  if (docker.size > 0 && !skipDocker) records.push(await manifestJsonRecord(svc, [...docker.values()]));
  records.push({ name: "blobs/", mode: 0o755, type: "directory", size: 0 }, { name: "blobs/sha256/", mode: 0o755, type: "directory", size: 0 });

  records.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const unique = records.filter((r, i) => i === 0 || records[i - 1]!.name !== r.name);
  // Fail before the first byte is written when a blob is missing or its size is off.
  for (const r of unique) {
    if (!r.blob) continue;
    const info = await blobInfo(svc.content, r.blob.digest, callOptions(svc));
    if (!info) throw new ExportError(`blob ${r.blob.digest} (${r.blob.mediaType}) is not in the content store: not found`);
    if (Number(info.size) !== r.blob.size) throw new ExportError(`blob ${r.blob.digest}: descriptor says ${r.blob.size} bytes, the store has ${info.size}`);
  }
  return unique;
}

async function writeRecord(svc: ImageServices, tar: ReturnType<typeof pack>, record: TarRecord): Promise<void> {
  const header = { name: record.name, mode: record.mode, type: record.type, size: record.size, mtime: new Date(0) };
  if (record.type === "directory" || record.data) {
    await new Promise<void>((resolve, reject) => tar.entry(header, record.data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
    return;
  }
  const blob = record.blob!;
  let finished: (err?: Error | null) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => (finished = (err) => (err ? reject(err) : resolve())));
  const sink = tar.entry(header, (err) => finished(err));
  const hash = createHash("sha256");
  let copied = 0;
  try {
    for await (const chunk of readBlob(svc.content, blob.digest, callOptions(svc))) {
      hash.update(chunk);
      copied += chunk.length;
      await writeChunk(sink, chunk);
    }
  } catch (err) {
    sink.destroy(err as Error);
    throw new ExportError(`failed to copy ${blob.digest} to tar: ${errorMessage(err)}`);
  }
  const digest = `sha256:${hash.digest("hex")}`;
  if (digest !== blob.digest || copied !== blob.size) {
    sink.destroy(new Error("bad blob"));
    throw new ExportError(`unexpected digest ${digest} (${copied} bytes) copied for ${blob.digest}`);
  }
  sink.end(undefined);
  await done;
}

/**
 * Writes the archive to `output` (which is left open: the caller ends it). Every
 * image is resolved and every blob checked before the first byte goes out, so a
 * missing image or blob leaves `output` untouched.
 */
export async function exportImages(caller: ImageServices, output: Writable, names: string[], options: ExportOptions = {}): Promise<void> {
  if (names.length === 0) throw new ExportError("no image to export");
  // The walk reads each manifest again for manifest.json: from the cache then.
  const svc = withDocumentCache(caller);
  const records = await planExport(svc, names, options);
  const tar = pack();
  const producer = (async () => {
    for (const record of records) await writeRecord(svc, tar, record);
    tar.finalize();
  })();
  producer.catch((err: unknown) => tar.destroy(err as Error));
  try {
    for await (const chunk of tar) {
      if (!output.write(chunk)) await once(output, "drain");
    }
  } catch (err) {
    await producer.catch(() => undefined);
    throw err;
  }
  await producer;
}
