// containerd.services.diff.v1.Diff: Apply extracts a layer blob into mounts (the
// unpack step of pull/import), Diff writes the changes between two mount sets into
// the content store as a layer (commit flows).
import { createReadStream } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { pipeline, Readable } from "node:stream";
import type { CallContext } from "nice-grpc-common";
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
import type { LayerSys } from "../../core/tar/sys.ts";
import { applyTarget, overlayOptions, readOnlyMounts, viewLayers, type ApplyTarget, type TempMounts } from "./mounts.ts";
import { updateBlobLabels, writeBlob } from "../../core/content-client.ts";
import { fromContentError, spoolBlob, uniqueRef } from "./content-io.ts";

export const uncompressedLabel = "containerd.io/uncompressed";

export interface DiffDeps {
  content: ContentClient;
  sys: LayerSys;
  mounts: TempMounts;
  /** Where blobs are spooled while they are verified and unpacked. */
  spoolDir: string;
  log: Logger;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** Applies the verified blob in `file` to the target the mounts describe. */
async function applyFile(deps: DiffDeps, file: string, desc: Descriptor, target: ApplyTarget, signal: AbortSignal): Promise<{ digest: string; size: number }> {
  const declared = layerCompression(desc.mediaType);
  const what = `layer ${desc.digest}`;
  const warn = (message: string) => deps.log.warn({ layer: desc.digest }, message);
  const unpack = (root: string, whiteouts: "delete" | "overlay", lowers: string[] = []) =>
    unpackLayer(createReadStream(file, { highWaterMark: 256 * 1024 }), declared, { root, whiteouts, lowers, sys: deps.sys, warn, what, signal });

  switch (target.kind) {
    case "dir":
      if (!(await isDirectory(target.root))) throw invalidArgument(`apply: bind source ${target.root} is not a directory`);
      return unpack(target.root, "delete");
    case "overlay-upper":
      if (!(await isDirectory(target.root))) throw invalidArgument(`apply: overlay upperdir ${target.root} is not a directory`);
      return unpack(target.root, "overlay", target.lowers);
    case "mount":
      return deps.mounts.with(target.mounts, (dir) => unpack(dir, "delete"));
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
async function withChanges<T>(deps: DiffDeps, left: Mount[], right: Mount[], consume: (changes: AsyncIterable<LayerChange>) => Promise<T>): Promise<T> {
  if (right.length === 0) throw invalidArgument("diff: no right (upper) mounts given");
  const r = right[0]!;
  if (right.length === 1 && r.type === "overlay") {
    const o = overlayOptions(r);
    if (o.upperdir !== undefined && sameList(o.lowerdirs, viewLayers(left))) {
      try {
        return await consume(overlayUpperChanges(o.upperdir, deps.sys));
      } catch (err) {
        if (!(err instanceof UpperDirNotPortable)) throw err;
        deps.log.info({ reason: err.message }, "diff: upper dir not portable, comparing trees");
      }
    }
  }
  return withReadableView(deps, left, (lower) => withReadableView(deps, right, (upper) => consume(treeChanges(lower, upper!, deps.sys))));
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
      await mkdir(deps.spoolDir, { recursive: true, mode: 0o700 });
      const file = join(deps.spoolDir, `${randomBytes(12).toString("hex")}.blob`);
      const started = Date.now();
      try {
        await spoolBlob(deps.content, { digest: desc.digest, size: Number(desc.size) }, file, { ...inNamespace(namespace), signal: ctx.signal });
        const applied = await applyFile(deps, file, desc, target, ctx.signal).catch((err) => {
          throw naming(err, desc.digest);
        });
        deps.log.debug({ layer: desc.digest, diffId: applied.digest, ms: Date.now() - started }, "layer applied");
        return { applied: { mediaType: layerMediaTypes.ociTar, digest: applied.digest, size: BigInt(applied.size), annotations: {} } };
      } finally {
        await rm(file, { force: true });
      }
    },

    async diff(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const compression = diffOutputCompression(request.mediaType);
      const mediaType = mediaTypeFor(compression);
      const ref = request.ref !== "" ? request.ref : uniqueRef();
      const callOptions = { ...inNamespace(namespace, leaseOf(ctx)), signal: ctx.signal };
      const written = await withChanges(deps, request.left, request.right, async (changes) => {
        let diffId = "";
        const hash = createHash("sha256");
        async function* uncompressed(): AsyncGenerator<Buffer> {
          for await (const chunk of changesToTar(changes, deps.sys)) {
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
          { ref, labels: () => ({ ...request.labels, [uncompressedLabel]: diffId }), abortOnFailure: true },
          callOptions,
        ).catch((err) => {
          throw fromContentError(err, `content write of ${ref}`);
        });
        return { ...result, diffId };
      });
      if (written.existed) {
        // containerd keeps the existing blob but makes sure it names its diff id.
        await updateBlobLabels(deps.content, written.digest, { [uncompressedLabel]: written.diffId }, callOptions).catch((err) => {
          throw fromContentError(err, `content digest ${written.digest}`);
        });
      }
      deps.log.debug({ digest: written.digest, diffId: written.diffId, size: written.size }, "diff written");
      return { diff: { mediaType, digest: written.digest, size: BigInt(written.size), annotations: {} } };
    },
  };
}
