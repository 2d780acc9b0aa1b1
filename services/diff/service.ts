// containerd.services.diff.v1.Diff: Apply extracts a layer blob into mounts (the
// unpack step of pull/import), Diff writes the changes between two mount sets into
// the content store as a layer (commit flows).
import { createReadStream } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { pipeline, Readable } from "node:stream";
import type { CallContext } from "nice-grpc-common";
import type { CallOptions } from "nice-grpc";
import type { Logger } from "../../core/log.ts";
import { BerthError, invalidArgument } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { leaseOf, namespaceOf } from "../../core/grpc-server.ts";
import { inNamespace } from "../../core/grpc-client.ts";
import type { ContentClient } from "../../core/gen/containerd/services/content/v1/content.ts";
import type { DiffServiceImplementation } from "../../core/gen/containerd/services/diff/v1/diff.ts";
import type { Descriptor } from "../../core/gen/containerd/types/descriptor.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import { compressor, diffOutputCompression, layerCompression, layerMediaTypes, mediaTypeFor } from "../../core/tar/compression.ts";
import { changesToTar, overlayUpperChanges, treeChanges, UpperDirNotPortable, type LayerChange } from "../../core/tar/changes.ts";
import { unpackLayer } from "../../core/tar/layer.ts";
import { copyUpDirsAnnotations } from "../../core/tar/copy-up.ts";
import type { LayerSys } from "../../core/tar/sys.ts";
import type { ByteSource } from "../../core/tar/byte-reader.ts";
import { applyTarget, overlayOptions, readOnlyMounts, viewLayers, type ApplyTarget, type TempMounts } from "./mounts.ts";
import { updateBlobLabels, writeBlob } from "../../core/content-client.ts";
import { labels as wellKnown } from "../../core/image/media-types.ts";
import { fromContentError, spoolBlob, VerifiedBlobStream } from "./content-io.ts";
import { tempName, uniqueRef } from "../../core/ids.ts";
import { applyNative, storeBlobFile, type LayerApplier, type NativeTarget } from "./native-apply.ts";
import { applyFromIngest } from "./ingest-apply.ts";
import { ingestRefOf } from "../../core/image/ingest-payload.ts";

export interface DiffDeps {
  content: ContentClient;
  sys: LayerSys;
  mounts: TempMounts;
  /** Where blobs are spooled while they are verified and unpacked. */
  spoolDir: string;
  /** The content store's blob files (services/content/layout.ts), read directly when there. */
  blobDir?: string;
  /** The content store's root: a download's ingest is read from there while it grows (ingest-apply.ts). */
  contentRoot?: string;
  /** The native layer applier (native/index.ts applyLayer); without it every layer takes the JS path. */
  applyLayer?: LayerApplier;
  log: Logger;
}

function nativeTarget(target: Exclude<ApplyTarget, { kind: "mount" }>): NativeTarget {
  return target.kind === "dir" ? { root: target.root, whiteouts: "delete", lowers: [] } : { root: target.root, whiteouts: "overlay", lowers: target.lowers };
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function checkDirectory(target: Exclude<ApplyTarget, { kind: "mount" }>): Promise<void> {
  if (await isDirectory(target.root)) return;
  throw invalidArgument(target.kind === "dir" ? `apply: bind source ${target.root} is not a directory` : `apply: overlay upperdir ${target.root} is not a directory`);
}

/** Extracts a layer stream into the directory a dir or overlay-upper target names. */
function unpackInto(deps: DiffDeps, source: ByteSource, desc: Descriptor, target: Exclude<ApplyTarget, { kind: "mount" }>, signal: AbortSignal) {
  const warn = (message: string) => deps.log.warn({ layer: desc.digest }, message);
  const whiteouts = target.kind === "dir" ? "delete" : "overlay";
  const lowers = target.kind === "overlay-upper" ? target.lowers : [];
  // Both callers verify the blob against desc.digest before the result is used.
  const sourceDigest = desc.digest;
  return unpackLayer(source, layerCompression(desc.mediaType), { root: target.root, whiteouts, lowers, sys: deps.sys, warn, what: `layer ${desc.digest}`, signal, sourceDigest });
}

/**
 * Applies the verified blob in `file` to the target the mounts describe (a dir or
 * overlay-upper target was checked by emptyDirectory already).
 */
async function applyFile(deps: DiffDeps, file: string, desc: Descriptor, target: ApplyTarget, signal: AbortSignal): Promise<Applied> {
  const read = () => createReadStream(file, { highWaterMark: 256 * 1024 });
  // The spooled file is verified already: no digest to check again.
  const extract = async (into: Exclude<ApplyTarget, { kind: "mount" }>) =>
    (deps.applyLayer ? await applyNative({ applyLayer: deps.applyLayer, log: deps.log }, file, desc, nativeTarget(into), undefined, signal) : undefined) ??
    (await unpackInto(deps, read(), desc, into, signal));
  if (target.kind !== "mount") return extract(target);
  return deps.mounts.with(target.mounts, (dir) => extract({ kind: "dir", root: dir }));
}

/** An empty directory (a fresh snapshot's upper or bind dir): undefined when it is not. Throws when the target is not a directory. */
async function emptyDirectory(target: ApplyTarget): Promise<Exclude<ApplyTarget, { kind: "mount" }> | undefined> {
  if (target.kind === "mount") return undefined;
  await checkDirectory(target);
  return (await readdir(target.root)).length === 0 ? target : undefined;
}

/** Puts a directory that was empty back the way it was. */
async function emptyAgain(deps: DiffDeps, root: string): Promise<void> {
  try {
    for (const name of await readdir(root)) await rm(join(root, name), { recursive: true, force: true });
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, root }, "apply: cannot clear the target after a failure");
  }
}

/**
 * Streams the blob into an empty target, hashing it on the way, instead of spooling it
 * to disk first (a third copy of every layer, measured at a third of Apply's time).
 * Nothing unverified survives: when the bytes do not match their digest — checked once
 * all are read, and before any other failure is reported, since corrupt bytes may be
 * what made extraction fail — or anything else fails, the target is emptied again, and
 * the call fails, so the caller never commits the snapshot.
 */
async function applyStreaming(deps: DiffDeps, desc: Descriptor, target: Exclude<ApplyTarget, { kind: "mount" }>, options: CallOptions, signal: AbortSignal) {
  const blob = await VerifiedBlobStream.open(deps.content, { digest: desc.digest, size: Number(desc.size) }, options, deps.blobDir);
  try {
    let applied;
    try {
      applied = await unpackInto(deps, blob.chunks(), desc, target, signal);
    } catch (err) {
      throw (signal.aborted ? undefined : await blob.mismatch()) ?? naming(err, desc.digest);
    }
    await blob.verify();
    return applied;
  } catch (err) {
    await emptyAgain(deps, target.root);
    throw err;
  } finally {
    await blob.close();
  }
}

/**
 * The native applier over the content store's own blob file, checked against its digest
 * as it is read (the check is reported before any extraction error). Any failure empties
 * the target again, as applyStreaming does. undefined: the JS path must do it (nothing
 * was written).
 */
async function applyNativeInto(deps: DiffDeps, desc: Descriptor, target: Exclude<ApplyTarget, { kind: "mount" }>, options: CallOptions, signal: AbortSignal) {
  // zstd is the JS applier's: not even the blob's Info is asked for here.
  if (!deps.applyLayer || !deps.blobDir || layerCompression(desc.mediaType) === "zstd") return undefined;
  const { file, expected } = await storeBlobFile(deps.content, deps.blobDir, desc, options);
  try {
    return await applyNative({ applyLayer: deps.applyLayer, log: deps.log }, file, desc, nativeTarget(target), expected, signal);
  } catch (err) {
    await emptyAgain(deps, target.root);
    throw err;
  }
}

/**
 * The layer read from its download's ingest as it grows (ingest-apply.ts); undefined
 * when that cannot be done (nothing written: the stored blob is applied instead).
 */
async function applyFromIngestInto(deps: DiffDeps, namespace: string, ref: string, desc: Descriptor, target: Exclude<ApplyTarget, { kind: "mount" }>, signal: AbortSignal) {
  if (!deps.applyLayer || !deps.contentRoot) return undefined;
  try {
    return await applyFromIngest({ deps: { applyLayer: deps.applyLayer, log: deps.log }, contentRoot: deps.contentRoot, namespace, ref }, desc, nativeTarget(target), signal);
  } catch (err) {
    await emptyAgain(deps, target.root);
    throw naming(err, desc.digest);
  }
}

/** Names the layer in an error that does not yet. */
function naming(err: unknown, digest: string): unknown {
  if (err instanceof BerthError && !err.message.includes(digest)) return new BerthError(err.kind, `layer ${digest}: ${err.message}`);
  return err;
}

/**
 * Calls fn with readable directories for a mount set: a bind's source as it is, an
 * empty set as undefined (an empty tree), anything else mounted read-only.
 */
async function withReadableView<T>(deps: DiffDeps, mounts: Mount[], fn: (dir: string | undefined) => Promise<T>): Promise<T> {
  if (mounts.length === 0) return fn(undefined);
  if (mounts.length === 1 && mounts[0]!.type === "bind") return fn(mounts[0]!.source);
  return deps.mounts.with(readOnlyMounts(mounts), fn);
}

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Runs `consume` over the changes from left to right. An overlay right whose lower
 * dirs are exactly the left view is read from its upper dir; otherwise both sides
 * are walked and compared.
 */
async function withChanges<T>(deps: DiffDeps, left: Mount[], right: Mount[], consume: (changes: AsyncIterable<LayerChange>, upper: string) => Promise<T>): Promise<T> {
  if (right.length === 0) throw invalidArgument("diff: no right (upper) mounts given");
  const r = right[0]!;
  if (right.length === 1 && r.type === "overlay") {
    const o = overlayOptions(r);
    if (o.upperdir !== undefined && sameList(o.lowerdirs, viewLayers(left))) {
      try {
        return await consume(overlayUpperChanges(o.upperdir, deps.sys), o.upperdir);
      } catch (err) {
        if (!(err instanceof UpperDirNotPortable)) throw err;
        deps.log.info({ reason: err.message }, "diff: upper dir not portable, comparing trees");
      }
    }
  }
  return withReadableView(deps, left, (lower) => withReadableView(deps, right, (upper) => consume(treeChanges(lower, upper!, deps.sys), upper!)));
}

interface Applied {
  digest: string;
  size: number;
  copyUpDirs: string[];
}

function copyUpAnnotations(target: ApplyTarget, copyUpDirs: readonly string[]): Record<string, string> {
  if (target.kind !== "overlay-upper" || target.lowers.length > 0 || copyUpDirs.length === 0) return {};
  // Only a parentless upper dir lacks the metadata its lowers will give (Apply with lowers copied it already).
  return copyUpDirsAnnotations(copyUpDirs);
}

export function diffService(deps: DiffDeps): DiffServiceImplementation {
  return {
    async apply(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const desc = request.diff;
      if (!desc) throw invalidArgument("apply: no diff descriptor");
      parseDigest(desc.digest);
      // Refuse what cannot work before fetching anything.
      layerCompression(desc.mediaType);
      const target = applyTarget(request.mounts);
      const started = Date.now();
      const options = { ...inNamespace(namespace), signal: ctx.signal };
      const empty = await emptyDirectory(target);
      const ingest = ingestRefOf(request.payloads);
      if (ingest !== undefined && !empty) throw invalidArgument(`apply: layer ${desc.digest} from ingest "${ingest}": the target must be an empty directory or overlay upper dir`);
      let applied: Applied;
      // Which applier took a streamed layer (a spooled one may take either).
      let applier = "spooled";
      const fromIngest = empty && ingest !== undefined ? await applyFromIngestInto(deps, namespace, ingest, desc, empty, ctx.signal) : undefined;
      if (fromIngest) {
        applier = "native, from the ingest";
        applied = fromIngest;
      } else if (empty) {
        const native = await applyNativeInto(deps, desc, empty, options, ctx.signal);
        applier = native ? "native" : "js";
        applied = native ?? (await applyStreaming(deps, desc, empty, options, ctx.signal));
      } else {
        // A target with content of its own cannot be put back after a failure: verify first.
        await mkdir(deps.spoolDir, { recursive: true, mode: 0o700 });
        const file = join(deps.spoolDir, tempName("", ".blob"));
        try {
          await spoolBlob(deps.content, { digest: desc.digest, size: Number(desc.size) }, file, options, deps.blobDir);
          applied = await applyFile(deps, file, desc, target, ctx.signal).catch((err) => {
            throw naming(err, desc.digest);
          });
        } finally {
          await rm(file, { force: true });
        }
      }
      deps.log.debug({ layer: desc.digest, diffId: applied.digest, streamed: empty !== undefined, applier, ms: Date.now() - started }, "layer applied");
      const annotations = copyUpAnnotations(target, applied.copyUpDirs);
      return { applied: { mediaType: layerMediaTypes.ociTar, digest: applied.digest, size: BigInt(applied.size), annotations } };
    },

    async diff(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const compression = diffOutputCompression(request.mediaType);
      const mediaType = mediaTypeFor(compression);
      const ref = request.ref !== "" ? request.ref : uniqueRef();
      const callOptions = { ...inNamespace(namespace, leaseOf(ctx)), signal: ctx.signal };
      const written = await withChanges(deps, request.left, request.right, async (changes, upper) => {
        let diffId = "";
        const hash = createHash("sha256");
        async function* uncompressed(): AsyncGenerator<Buffer> {
          for await (const chunk of changesToTar(changes, deps.sys, { upper })) {
            hash.update(chunk);
            yield chunk;
          }
          diffId = `sha256:${hash.digest("hex")}`;
        }
        let source: AsyncIterable<Uint8Array> = uncompressed();
        if (compression !== "none") {
          const codec = compressor(compression);
          pipeline(Readable.from(source), codec, () => {});
          source = codec;
        }
        // Unknown length and digest: written from offset 0, hashed on the way, aborted on failure.
        const result = await writeBlob(
          deps.content,
          source,
          { ref, labels: () => ({ ...request.labels, [wellKnown.uncompressed]: diffId }), abortOnFailure: true },
          callOptions,
        ).catch((err) => {
          throw fromContentError(err, `content write of ${ref}`);
        });
        return { ...result, diffId };
      });
      if (written.existed) {
        // containerd keeps the existing blob but makes sure it names its diff id.
        await updateBlobLabels(deps.content, written.digest, { [wellKnown.uncompressed]: written.diffId }, callOptions).catch((err) => {
          throw fromContentError(err, `content digest ${written.digest}`);
        });
      }
      deps.log.debug({ digest: written.digest, diffId: written.diffId, size: written.size }, "diff written");
      return { diff: { mediaType, digest: written.digest, size: BigInt(written.size), annotations: {} } };
    },
  };
}
