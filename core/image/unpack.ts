// Unpacking an image into snapshots, client-side, exactly as containerd's client
// does it (image.Unpack + rootfs.ApplyLayer, reference §1.10): under a lease, per
// layer Stat(chain id) → Prepare(extract key) → Diff/Apply → Commit, then the
// uncompressed and gc.ref.snapshot labels.
import type { Mount } from "../gen/containerd/types/mount.ts";
import { chainIds } from "./chain-id.ts";
import { updateBlobLabels } from "../content-client.ts";
import { withLease } from "./lease.ts";
import { leaseId } from "../ids.ts";
import { labels as wellKnown } from "./media-types.ts";
import type { Descriptor } from "./manifest.ts";
import { defaultPlatformMatcher, type PlatformMatcher } from "./platform.ts";
import { resolveImage } from "./resolve.ts";
import { errorMessage, isAlreadyExists, isNotFound } from "../grpc-status.ts";
import { callOptions, type ImageServices } from "./services.ts";
import { copyUpDirsOf } from "../tar/copy-up.ts";
import { sharedNamesOf, snapshotRefLabel } from "./layer-share.ts";

export const defaultSnapshotter = "overlayfs";

export class UnpackError extends Error {
  override name = "UnpackError";
}

/** The snapshotter to use: the given name, else the namespace's default label, else overlayfs. */
export async function resolveSnapshotter(svc: ImageServices, name?: string, lease?: string): Promise<string> {
  if (name) return name;
  try {
    const { namespace } = await svc.namespaces.get({ name: svc.namespace }, callOptions(svc, lease));
    const label = namespace?.labels[wellKnown.defaultSnapshotter];
    if (label) return label;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return defaultSnapshotter;
}

export interface LayerEvent {
  index: number;
  diffId: string;
  chainId: string;
  /** "exists": the snapshot was already there; "applied": this call unpacked it. */
  state: "exists" | "applied";
}

export interface UnpackOptions {
  /** "" / undefined: the namespace default, else overlayfs. */
  snapshotter?: string;
  /** Which manifest of an index (default: this host, non-strict). */
  platform?: PlatformMatcher;
  /** Run under this lease instead of a fresh one (images mount). */
  lease?: string;
  onLayer?: (event: LayerEvent) => void;
  /**
   * Layers extracted into parentless snapshots by someone else (a pull's layer jobs,
   * while they downloaded), by layer digest, done or still under way: committed instead
   * of extracted again when their snapshotter and diff id fit; every one not used is
   * removed (once it ended).
   */
  extracted?: ReadonlyMap<string, PreExtracted | Promise<PreExtracted | undefined>>;
}

/** A layer extracted into a parentless snapshot of `snapshotter`, not yet committed. */
export interface PreExtracted {
  snapshotter: string;
  key: string;
  /** What Apply computed: checked against the image config's diff id. */
  diffId: string;
  /** Apply's reply annotations (the directories to copy up at commit). */
  annotations: Record<string, string>;
}

export interface UnpackResult {
  snapshotter: string;
  /** The top chain id: the snapshot holding the whole rootfs. */
  chainId: string;
  diffIds: string[];
  config: Descriptor;
  /** Chain ids this call committed, bottom first (the rest existed). */
  created: string[];
  /**
   * Chain ids this call put in the namespace, bottom first: those it committed and those
   * it took from another namespace's unpack (docs/snapshotters.md; their events say
   * "exists"). What a caller rolls back.
   */
  added: string[];
}

function protoDescriptor(d: Descriptor) {
  return { mediaType: d.mediaType, digest: d.digest, size: BigInt(d.size), annotations: d.annotations ?? {} };
}

interface ApplyContext {
  svc: ImageServices;
  snapshotter: string;
  lease: string;
  /** Chain ids a Prepare of this call took from another namespace's unpack. */
  shared?: Set<string>;
}

async function removeSnapshot(ctx: ApplyContext, key: string): Promise<void> {
  try {
    await ctx.svc.snapshots.remove({ snapshotter: ctx.snapshotter, key }, callOptions(ctx.svc, ctx.lease));
  } catch {
    // best effort: the caller reports the original failure
  }
}

/**
 * Prepares a fresh extraction snapshot on `parent` ("" for none) and applies the layer
 * into it (`asApplied` turns the snapshot's mounts into what Apply writes to), checking
 * the diff id. Returns the snapshot's key and Apply's reply, or undefined when the chain
 * id exists (now) without extracting; on failure the snapshot is gone again.
 */
async function prepareAndApply(ctx: ApplyContext, layer: Descriptor, diffId: string, chainId: string, parent: string, asApplied = (m: Mount[]) => m) {
  const { svc, snapshotter, lease } = ctx;
  let key = "";
  let mounts: Mount[] = [];
  for (let attempt = 0; ; attempt++) {
    key = `extract-${leaseId()} ${chainId}`;
    try {
      mounts = (await svc.snapshots.prepare({ snapshotter, key, parent, labels: { [snapshotRefLabel]: chainId } }, callOptions(svc, lease))).mounts;
      break;
    } catch (err) {
      // The label makes the service answer ALREADY_EXISTS once the chain id is in the
      // namespace, or once it took it from another namespace's unpack (docs/snapshotters.md).
      if (isAlreadyExists(err) && (await snapshotExists(ctx, chainId))) {
        for (const name of sharedNamesOf(errorMessage(err))) ctx.shared?.add(name);
        return undefined;
      }
      if (isAlreadyExists(err) && attempt < 5) continue;
      throw new UnpackError(`failed to prepare extraction snapshot "${key}": ${errorMessage(err)}`);
    }
  }
  try {
    let applied;
    try {
      applied = (await svc.diff.apply({ diff: protoDescriptor(layer), mounts: asApplied(mounts), payloads: {} }, callOptions(svc, lease))).applied;
    } catch (err) {
      throw new UnpackError(`failed to extract layer ${diffId}: ${errorMessage(err)}`);
    }
    if (applied?.digest !== diffId) {
      throw new UnpackError(`wrong diff id calculated on extraction "${applied?.digest ?? ""}" (layer ${layer.digest}, expected ${diffId})`);
    }
    return { key, applied };
  } catch (err) {
    await removeSnapshot(ctx, key);
    throw err;
  }
}

/** rootfs.applyLayers for one layer. Returns false when another unpack committed it first. */
async function applyLayer(ctx: ApplyContext, layer: Descriptor, diffId: string, chainId: string, parent: string): Promise<boolean> {
  const { svc, snapshotter, lease } = ctx;
  const extracted = await prepareAndApply(ctx, layer, diffId, chainId, parent);
  if (!extracted) return false;
  const { key } = extracted;
  try {
    await svc.snapshots.commit({ snapshotter, name: chainId, key, labels: {} }, callOptions(svc, lease));
  } catch (err) {
    await removeSnapshot(ctx, key);
    if (isAlreadyExists(err)) return false;
    throw new UnpackError(`failed to commit snapshot ${key}: ${errorMessage(err)}`);
  }
  return true;
}

/**
 * Snapshotters whose committed snapshot holds only its own layer (overlayfs: the upper
 * dir), so a layer can be extracted with no parent and chained at Commit.
 */
export const rebasingSnapshotters: ReadonlySet<string> = new Set(["overlayfs"]);

/**
 * The parentless snapshot's bind mount as the overlay upper dir it will be: Apply then
 * writes whiteouts as overlayfs does (char 0/0 devices, the opaque xattr) instead of
 * deleting what a parent would hold.
 */
export function asUpperDir(mounts: Mount[]): Mount[] {
  const m = mounts[0];
  if (mounts.length !== 1 || m?.type !== "bind") throw new UnpackError(`unexpected mounts for a parentless extraction snapshot: ${JSON.stringify(mounts)}`);
  const work = m.source.replace(/\/fs$/, "/work");
  return [{ type: "overlay", source: "overlay", target: "", options: [`upperdir=${m.source}`, `workdir=${work}`] }];
}

interface Extracted {
  key: string;
  /** Directories the layer lacks that must take the parent chain's metadata at commit; "overflow": too many, extract again on the parent. */
  copyUpDirs: Buffer[] | "overflow";
}

/** Prepare (no parent) and Apply of one layer (undefined: the chain id exists now); on failure its snapshot is gone again. */
async function extractParentless(ctx: ApplyContext, layer: Descriptor, diffId: string, chainId: string): Promise<Extracted | undefined> {
  const extracted = await prepareAndApply(ctx, layer, diffId, chainId, "", asUpperDir);
  if (!extracted) return undefined;
  const { key, applied } = extracted;
  try {
    return { key, copyUpDirs: copyUpDirsOf(applied.annotations) };
  } catch (err) {
    await removeSnapshot(ctx, key);
    throw new UnpackError(`layer ${diffId}: bad Apply reply: ${errorMessage(err)}`);
  }
}

async function snapshotExists(ctx: ApplyContext, chainId: string): Promise<boolean> {
  try {
    await ctx.svc.snapshots.stat({ snapshotter: ctx.snapshotter, key: chainId }, callOptions(ctx.svc, ctx.lease));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw new UnpackError(`failed to stat snapshot ${chainId}: ${errorMessage(err)}`);
  }
}

/**
 * Unpacks `target` (a manifest or an index) for one platform. Layers whose chain
 * id already exists are reused. On failure the extraction snapshot is removed,
 * and so are the layers this call committed (Berth has no garbage collector to
 * reclaim them), so a refused layer leaves nothing behind.
 */
export async function unpackImage(svc: ImageServices, target: Descriptor, options: UnpackOptions = {}): Promise<UnpackResult> {
  return withLease(svc, options.lease, async (lease) => {
    const resolved = await resolveImage(svc, target, options.platform ?? defaultPlatformMatcher(), lease);
    const layers = resolved.manifest.layers;
    const diffIds = resolved.config.diffIds;
    if (layers.length !== diffIds.length) {
      throw new UnpackError(`mismatched image rootfs and manifest layers: ${layers.length} layers, ${diffIds.length} diff ids (config ${resolved.configDescriptor.digest})`);
    }
    const snapshotter = await resolveSnapshotter(svc, options.snapshotter, lease);
    const ctx: ApplyContext = { svc, snapshotter, lease, shared: new Set() };
    const chain = chainIds(diffIds);
    const created: string[] = [];
    // Taken out as they are used; what is left at the end is removed.
    const offered = new Map(options.extracted ?? []);
    const added = () => chain.filter((chainId) => created.includes(chainId) || ctx.shared!.has(chainId));
    // Label updates run while the next layer unpacks; all must succeed before we return.
    const labelling: Promise<void>[] = [];
    try {
      if (rebasingSnapshotters.has(snapshotter) && process.env.BERTH_UNPACK_PARALLEL !== "0") {
        await unpackParallel(ctx, layers, diffIds, chain, created, labelling, options.onLayer, offered);
      } else for (let i = 0; i < layers.length; i++) {
        const chainId = chain[i]!;
        let applied = false;
        if (!(await snapshotExists(ctx, chainId))) {
          applied = await applyLayer(ctx, layers[i]!, diffIds[i]!, chainId, i === 0 ? "" : chain[i - 1]!);
        }
        if (applied) {
          created.push(chainId);
          // Set only once apply has verified the diff id.
          const labelled = updateBlobLabels(svc.content, layers[i]!.digest, { [wellKnown.uncompressed]: diffIds[i]! }, callOptions(svc, lease));
          labelled.catch(() => undefined);
          labelling.push(labelled);
        }
        options.onLayer?.({ index: i, diffId: diffIds[i]!, chainId, state: applied ? "applied" : "exists" });
      }
      // A layer taken from another namespace was verified there against this diff id
      // (the chain id); the blob is labelled as an extraction here would have.
      for (let i = 0; i < layers.length; i++) {
        if (!ctx.shared!.has(chain[i]!)) continue;
        const labelled = updateBlobLabels(svc.content, layers[i]!.digest, { [wellKnown.uncompressed]: diffIds[i]! }, callOptions(svc, lease));
        labelled.catch(() => undefined);
        labelling.push(labelled);
      }
      await Promise.all(labelling);
    } catch (err) {
      await Promise.allSettled(labelling);
      await removeSnapshots(svc, snapshotter, added(), lease);
      throw err;
    } finally {
      for (const offer of offered.values()) {
        const e = await Promise.resolve(offer).catch(() => undefined);
        if (e) await removeSnapshot({ svc, snapshotter: e.snapshotter, lease }, e.key);
      }
    }
    const top = chain.at(-1) ?? "";
    await updateBlobLabels(svc.content, resolved.configDescriptor.digest, { [`${wellKnown.gcRefSnapshotPrefix}${snapshotter}`]: top }, callOptions(svc, lease));
    return { snapshotter, chainId: top, diffIds, config: resolved.configDescriptor, created, added: added() };
  });
}

/**
 * Every missing layer extracted at once into a parentless snapshot, then committed
 * bottom-up on its real parent. A layer another unpack committed first is taken as it
 * is; a failure removes every extraction snapshot still uncommitted. Directories a
 * layer needs but lacks are made with default metadata by an extraction that cannot see
 * the layers below; Apply lists them and Commit gives them the parent chain's (see
 * core/tar/copy-up.ts), so the result is the sequential one.
 */
async function unpackParallel(
  ctx: ApplyContext,
  layers: readonly Descriptor[],
  diffIds: readonly string[],
  chain: readonly string[],
  created: string[],
  labelling: Promise<void>[],
  onLayer: UnpackOptions["onLayer"],
  offered: Map<string, PreExtracted | Promise<PreExtracted | undefined>>,
): Promise<void> {
  const { svc, snapshotter, lease } = ctx;
  const missing = await Promise.all(chain.map(async (chainId) => !(await snapshotExists(ctx, chainId))));
  const takenBefore = new Set<string>();
  // A layer extracted while it downloaded is taken as it is when its diff id is the
  // config's (once its extraction ended); else it is extracted here.
  const extract = async (layer: Descriptor, diffId: string, chainId: string): Promise<Extracted | undefined> => {
    const offer = offered.get(layer.digest);
    if (offer !== undefined) {
      offered.delete(layer.digest);
      const before = await Promise.resolve(offer).catch(() => undefined);
      if (before && before.snapshotter === snapshotter && before.diffId === diffId) {
        takenBefore.add(before.key);
        try {
          return { key: before.key, copyUpDirs: copyUpDirsOf(before.annotations) };
        } catch (err) {
          await removeSnapshot(ctx, before.key);
          throw new UnpackError(`layer ${diffId}: bad Apply reply: ${errorMessage(err)}`);
        }
      }
      if (before) await removeSnapshot({ ...ctx, snapshotter: before.snapshotter }, before.key);
    }
    return extractParentless(ctx, layer, diffId, chainId);
  };
  // Extraction snapshots made and not yet committed or removed.
  const pending = new Set<string>();
  const extractions = layers.map((layer, i) =>
    missing[i]
      ? extract(layer, diffIds[i]!, chain[i]!).then((extracted) => {
          if (extracted) pending.add(extracted.key);
          return extracted;
        })
      : Promise.resolve(undefined),
  );
  // Awaited in layer order below; a failure is seen there.
  for (const extraction of extractions) extraction.catch(() => undefined);
  try {
    // Each layer is committed as soon as it and those below are: a Prepare may wait for
    // another unpack's extraction of the same chain id, and that unpack commits bottom-up
    // too, so neither waits on a layer the other holds back.
    for (let i = 0; i < layers.length; i++) {
      const chainId = chain[i]!;
      const extracted = await extractions[i];
      let applied = false;
      const parent = i === 0 ? "" : chain[i - 1]!;
      // The bottom layer has nothing below to copy from: its made dirs keep the defaults.
      const copyUpDirs = i === 0 || !extracted ? [] : extracted.copyUpDirs;
      if (extracted && copyUpDirs === "overflow") {
        // Too many directories to name in one Commit: this layer goes the sequential way.
        pending.delete(extracted.key);
        await removeSnapshot(ctx, extracted.key);
        applied = await applyLayer(ctx, layers[i]!, diffIds[i]!, chainId, parent);
      } else if (extracted) {
        pending.delete(extracted.key);
        try {
          if (takenBefore.has(extracted.key)) {
            // Extracted during the download, before its chain id was known: named now, so the
            // committed layer is one other namespaces can share (docs/snapshotters.md).
            await svc.snapshots.update({ snapshotter, info: { name: extracted.key, labels: { [snapshotRefLabel]: chainId } }, updateMask: [`labels.${snapshotRefLabel}`] }, callOptions(svc, lease));
          }
          await svc.snapshots.commit({ snapshotter, name: chainId, key: extracted.key, labels: {}, parent, copyUpDirs: copyUpDirs === "overflow" ? [] : copyUpDirs }, callOptions(svc, lease));
          applied = true;
        } catch (err) {
          await removeSnapshot(ctx, extracted.key);
          if (isNotFound(err) && takenBefore.has(extracted.key)) {
            // Extracted during the download, then gone (an earlier run of this pull, killed, used it): extract again.
            applied = await applyLayer(ctx, layers[i]!, diffIds[i]!, chainId, parent);
          } else if (!isAlreadyExists(err)) throw new UnpackError(`failed to commit snapshot ${extracted.key}: ${errorMessage(err)}`);
        }
      }
      if (applied) {
        created.push(chainId);
        const labelled = updateBlobLabels(svc.content, layers[i]!.digest, { [wellKnown.uncompressed]: diffIds[i]! }, callOptions(svc, lease));
        labelled.catch(() => undefined);
        labelling.push(labelled);
      }
      onLayer?.({ index: i, diffId: diffIds[i]!, chainId, state: applied ? "applied" : "exists" });
    }
  } finally {
    // Every extraction settles before the uncommitted ones are rolled back.
    await Promise.allSettled(extractions);
    for (const key of pending) await removeSnapshot(ctx, key);
  }
}

/** Best-effort removal, top first (an unpack's rollback when a later step fails). */
export async function removeSnapshots(svc: ImageServices, snapshotter: string, chainIdsBottomFirst: readonly string[], lease?: string): Promise<void> {
  const ctx: ApplyContext = { svc, snapshotter, lease: lease ?? "" };
  for (const chainId of [...chainIdsBottomFirst].reverse()) await removeSnapshot(ctx, chainId);
}
