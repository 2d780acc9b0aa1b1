// `docker images --filter` and `docker image prune --filter`: dangling, label,
// reference (a glob over the familiar name, with or without the tag), before/since
// (another image, by creation time), until (a time).
import { badRequest } from "../http.ts";
import { labelsMatch, type Filters } from "../query.ts";
import { familiarName, splitStoreName } from "../references.ts";
import type { EngineImage, ImageCatalog } from "./catalog.ts";
import { imageLabels, unixSeconds } from "./views.ts";

export const listFilterNames = ["dangling", "label", "reference", "before", "since"] as const;
export const pruneFilterNames = ["dangling", "label", "until"] as const;

export function danglingFilter(filters: Filters): boolean | undefined {
  const values = filters.get("dangling");
  if (!values || values.length === 0) return undefined;
  const parsed = values.map((v) => {
    const lower = v.toLowerCase();
    if (lower === "true" || lower === "1") return true;
    if (lower === "false" || lower === "0") return false;
    throw badRequest(`Invalid filter 'dangling=${v}'`);
  });
  return parsed.includes(true);
}

/** Go's path.Match for the reference filter: `*` and `?` never cross a `/`. */
function globPattern(glob: string): RegExp {
  let source = "";
  for (const ch of glob) {
    if (ch === "*") source += "[^/]*";
    else if (ch === "?") source += "[^/]";
    else source += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/** The image's tags the patterns match (Docker lists only those when a reference filter is given); digests count for an untagged image. */
function matchingTags(image: EngineImage, patterns: string[]): { tags: string[]; any: boolean } {
  const regexes = patterns.map(globPattern);
  const tags: string[] = [];
  let any = false;
  for (const name of image.names) {
    const split = splitStoreName(name);
    if (!split) continue;
    const repo = familiarName(split.repository);
    const full = split.tag ? `${repo}:${split.tag}` : `${repo}@${split.digest}`;
    if (!regexes.some((re) => re.test(full) || re.test(repo))) continue;
    any = true;
    if (split.tag) tags.push(full);
  }
  return { tags: tags.sort(), any };
}

/** Unix seconds from `until`/`since` values: a timestamp (seconds[.nanos]), RFC 3339, or a duration before now (10m, 1h30m). */
export function timeFilterValue(value: string, now = Date.now()): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const duration = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/.test(value) ? goDurationMs(value) : undefined;
  if (duration !== undefined) return (now - duration) / 1000;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw badRequest(`invalid time value ${JSON.stringify(value)}: not a timestamp, RFC 3339 time or duration`);
  return ms / 1000;
}

function goDurationMs(value: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * units[m[2]!]!;
  return total;
}

/** The images `filters` keeps, in the order given. */
export async function filterImages(catalog: ImageCatalog, images: EngineImage[], filters: Filters): Promise<EngineImage[]> {
  const dangling = danglingFilter(filters);
  const references = filters.get("reference");
  const created = (image: EngineImage) => unixSeconds(image.config.created);
  const pivot = async (name: "before" | "since") => {
    const refs = filters.get(name);
    if (!refs || refs.length === 0) return undefined;
    return created(await catalog.find(refs[0]!));
  };
  const before = await pivot("before");
  const since = await pivot("since");
  const until = filters.get("until")?.map((v) => timeFilterValue(v));
  const kept: EngineImage[] = [];
  for (const image of images) {
    if (dangling !== undefined && (image.repoTags.length === 0) !== dangling) continue;
    if (!labelsMatch(imageLabels(image), filters.get("label"))) continue;
    if (references && references.length > 0) {
      const { tags, any } = matchingTags(image, references);
      if (!any) continue;
      kept.push({ ...image, repoTags: tags });
      continue;
    }
    kept.push(image);
  }
  return kept.filter((image) => {
    if (before !== undefined && !(created(image) < before)) return false;
    if (since !== undefined && !(created(image) > since)) return false;
    if (until && !until.every((t) => created(image) < t)) return false;
    return true;
  });
}
