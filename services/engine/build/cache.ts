// The build cache as `docker system df` shows it and `docker builder prune` empties it.
// An entry is a step's image (the untagged name image-store.ts gives it, labelled with its
// cache key). It is in use while a container runs from it, shared while it is (an
// ancestor of) an image the user can see — tagged, a build's result, or a container's —
// and kept outright when it is such an image itself. Without `all` prune removes what is
// neither in use nor shared; with `all` also the shared steps, never the visible images.
import type { Backend } from "../backend.ts";
import { millisFromTimestamp } from "../../../core/timestamp.ts";
import { cacheUsage } from "./cache-usage.ts";
import { callOptions } from "../../../core/image/services.ts";
import { isNotFound } from "../../../core/grpc-status.ts";
import { badRequest } from "../http.ts";
import { labelsMatch, type Filters } from "../query.ts";
import { versionAtLeast } from "../version.ts";
import { imageCatalog, type EngineImage } from "../images/catalog.ts";
import { timeFilterValue } from "../images/filters.ts";
import { imageLabels } from "../images/views.ts";
import { buildResultLabel, cacheKeyLabel } from "./image-store.ts";

/** Docker's builder prune filters: `until` (or its old name `unused-for`), `label`, and the cache record's fields. */
export const buildPruneFilterNames = ["until", "unused-for", "label", "id", "parent", "type", "description", "inuse", "shared", "private"] as const;

/** The filters on a record's fields: one value each, as Docker allows. */
const fieldFilters = ["id", "parent", "type", "description", "inuse", "shared", "private"] as const;

interface CacheEntry {
  image: EngineImage;
  /** The store name carrying the cache key. */
  name: string;
  size: number;
  inUse: boolean;
  shared: boolean;
  /** A tagged image, a build's result or a container's image: never pruned. */
  visible: boolean;
  createdAt: number;
  lastUsedAt: number | undefined;
  usageCount: number;
  description: string;
  /** The ID (no `sha256:`) of the entry this step was built on, when that is an entry too. */
  parent: string | undefined;
}

/** A build reused the entry whose image is `image`: `system df -v` shows LastUsedAt and UsageCount, prune's `until` reads them. */
export function recordCacheUse(backend: Backend, image: { id: string }): void {
  cacheUsage(backend).record(image.id);
}

/** Whether `step`'s image is `image` or one of its ancestors: its layers and history a prefix of the image's. */
function isAncestorOrSelf(step: EngineImage, image: EngineImage): boolean {
  if (step.diffIds.length > image.diffIds.length || step.diffIds.some((d, i) => image.diffIds[i] !== d)) return false;
  const a = step.config.history ?? [];
  const b = image.config.history ?? [];
  return a.length <= b.length && a.every((h, i) => h.created === b[i]!.created && h.created_by === b[i]!.created_by);
}

async function cacheEntries(backend: Backend): Promise<{ entries: CacheEntry[]; images: EngineImage[] }> {
  const images = await imageCatalog(backend).list();
  const containerImages = new Set(backend.store.list().map((c) => c.Image));
  const visible = (image: EngineImage) => image.repoTags.length > 0 || containerImages.has(image.id) || image.records.some((r) => r.labels[buildResultLabel] || !r.labels[cacheKeyLabel]);
  const kept = images.filter(visible);
  const entries: CacheEntry[] = [];
  for (const image of images) {
    const record = image.records.find((r) => r.labels[cacheKeyLabel]);
    if (!record) continue;
    const history = image.config.history ?? [];
    const last = history.at(-1);
    const addedLayer = last !== undefined && !last.empty_layer;
    const usage = cacheUsage(backend).get(image.id);
    entries.push({
      image,
      name: record.name,
      size: addedLayer ? (image.layers.at(-1)?.size ?? 0) : 0,
      inUse: containerImages.has(image.id),
      shared: kept.some((k) => isAncestorOrSelf(image, k)),
      visible: visible(image),
      createdAt: millisFromTimestamp(record.createdAt) ?? (Date.parse(image.config.created ?? "") || 0),
      lastUsedAt: usage?.lastUsed,
      usageCount: usage?.count ?? 0,
      description: last?.created_by ?? "",
      parent: undefined,
    });
  }
  // A step's parent is the entry one history entry shorter whose layers and history it
  // extends (each step adds one history entry, with its own created time).
  for (const e of entries) {
    const length = e.image.config.history?.length ?? 0;
    const parent = entries.find((p) => p !== e && (p.image.config.history?.length ?? 0) === length - 1 && isAncestorOrSelf(p.image, e.image));
    e.parent = parent?.image.id.replace(/^sha256:/, "");
  }
  cacheUsage(backend).retain(new Set(entries.map((e) => e.image.id)));
  return { entries, images };
}

/** The BuildCache rows of GET /system/df and the size it reports for them (what is not shared with images). */
export async function buildCacheUsage(backend: Backend, apiVersion = "1.41"): Promise<{ BuildCache: Record<string, unknown>[]; BuilderSize: number }> {
  const { entries } = await cacheEntries(backend);
  // API 1.42 replaced `Parent` with `Parents` (both omitted when empty, as Docker's omitempty);
  // older clients get `Parent` and `Parents` both, the array being what newer tools read.
  const legacyParent = !versionAtLeast(apiVersion, "1.42");
  const rows = entries.map((e) => ({
    ID: e.image.id.replace(/^sha256:/, ""),
    ...(e.parent && legacyParent ? { Parent: e.parent } : {}),
    ...(e.parent ? { Parents: [e.parent] } : {}),
    Type: "regular",
    Description: e.description,
    InUse: e.inUse,
    Shared: e.shared,
    Size: e.size,
    CreatedAt: new Date(e.createdAt).toISOString(),
    LastUsedAt: e.lastUsedAt === undefined ? null : new Date(e.lastUsedAt).toISOString(),
    UsageCount: e.usageCount,
  }));
  return { BuildCache: rows, BuilderSize: entries.filter((e) => !e.shared).reduce((n, e) => n + e.size, 0) };
}

export interface BuildPruneOptions {
  all: boolean;
  filters: Filters;
  /** Bytes of cache to keep (the most recently used entries); 0 keeps nothing. */
  keepStorage: number;
}

/** POST /build/prune: removes the entries the options select; replies with their ids and the bytes freed. */
export async function pruneBuildCache(backend: Backend, options: BuildPruneOptions): Promise<{ CachesDeleted: string[] | null; SpaceReclaimed: number }> {
  const untilValues = options.filters.get("until") ?? [];
  const unusedFor = options.filters.get("unused-for") ?? [];
  if (untilValues.length > 0 && unusedFor.length > 0) throw badRequest('conflicting filters: "until" and "unused-for"');
  untilValues.push(...unusedFor);
  if (untilValues.length > 1) throw badRequest("filters: only one until filter is allowed");
  const until = untilValues[0] === undefined ? undefined : timeFilterValue(untilValues[0]) * 1000;
  const matchesFields = fieldMatcher(options.filters);
  const { entries, images } = await cacheEntries(backend);
  const lastTouched = (e: CacheEntry) => e.lastUsedAt ?? e.createdAt;
  let candidates = entries.filter(
    (e) =>
      !e.visible &&
      !e.inUse &&
      (options.all || !e.shared) &&
      (until === undefined || lastTouched(e) < until) &&
      labelsMatch(imageLabels(e.image), options.filters.get("label")) &&
      matchesFields(e),
  );
  if (options.keepStorage > 0) {
    // Oldest first, until what is left fits in keep-storage.
    let total = entries.filter((e) => !e.shared).reduce((n, e) => n + e.size, 0);
    const chosen: CacheEntry[] = [];
    for (const e of [...candidates].sort((a, b) => lastTouched(a) - lastTouched(b))) {
      if (total <= options.keepStorage) break;
      chosen.push(e);
      if (!e.shared) total -= e.size;
    }
    candidates = chosen;
  }
  const removed = new Set(candidates.map((e) => e.image.id));
  const remainingLayers = new Set(images.filter((i) => !removed.has(i.id)).flatMap((i) => i.layers.map((l) => l.digest)));
  const freed = new Map<string, number>();
  const deleted: string[] = [];
  for (const [i, e] of candidates.entries()) {
    try {
      // The last delete waits for the garbage collector, so the space is free when the reply goes.
      await backend.images.images.delete({ name: e.name, sync: i === candidates.length - 1 }, callOptions(backend.images));
    } catch (err) {
      if (!isNotFound(err)) {
        backend.log.warn({ err: (err as Error).message, name: e.name }, "build cache prune: could not remove an entry");
        continue;
      }
    }
    deleted.push(e.image.id.replace(/^sha256:/, ""));
    for (const layer of e.image.layers) if (!remainingLayers.has(layer.digest)) freed.set(layer.digest, layer.size);
  }
  return { CachesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: [...freed.values()].reduce((a, b) => a + b, 0) };
}

/** A filter's boolean value: empty, `true` or `1` is true, `false` or `0` false. */
function booleanFilter(name: string, value: string): boolean {
  if (value === "" || value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw badRequest(`invalid filter value for ${name}: ${JSON.stringify(value)} is not a boolean (true or false)`);
}

/**
 * The record-field filters as one test: `id` a regular expression on the ID (Docker hands
 * it to BuildKit as `id~=`), `parent`, `type` and `description` exact, `inuse`, `shared`
 * and `private` (not shared) booleans. More than one value for a field is Docker's 400.
 */
function fieldMatcher(filters: Filters): (e: CacheEntry) => boolean {
  const tests: ((e: CacheEntry) => boolean)[] = [];
  for (const name of fieldFilters) {
    const values = filters.get(name);
    if (!values || values.length === 0) continue;
    if (values.length > 1) throw badRequest("filters expect only one value");
    const value = values[0]!;
    switch (name) {
      case "id": {
        let pattern: RegExp;
        try {
          pattern = new RegExp(value);
        } catch (err) {
          throw badRequest(`invalid filter value for id: ${(err as Error).message}`);
        }
        tests.push((e) => pattern.test(e.image.id.replace(/^sha256:/, "")));
        break;
      }
      case "parent":
        tests.push((e) => e.parent === value.replace(/^sha256:/, ""));
        break;
      case "type":
        tests.push(() => value === "regular");
        break;
      case "description":
        tests.push((e) => e.description === value);
        break;
      case "inuse": {
        const want = booleanFilter(name, value);
        tests.push((e) => e.inUse === want);
        break;
      }
      case "shared": {
        const want = booleanFilter(name, value);
        tests.push((e) => e.shared === want);
        break;
      }
      case "private": {
        const want = booleanFilter(name, value);
        tests.push((e) => e.shared !== want);
        break;
      }
    }
  }
  return (e) => tests.every((t) => t(e));
}
