// Query parameters as Docker's daemon reads them: booleans in every spelling clients send
// (1, true, True), integers, and `filters` in both the map-of-sets form (the CLI) and the
// older list form (dockerode, docker-py).
import { badRequest } from "./http.ts";

/** "", 0, no, false and none are false (case-insensitive, trimmed); anything else is true; absent is `fallback`. */
export function queryBool(query: URLSearchParams, name: string, fallback = false): boolean {
  const value = query.get(name);
  if (value === null) return fallback;
  return !["", "0", "no", "false", "none"].includes(value.trim().toLowerCase());
}

export function queryInt(query: URLSearchParams, name: string, fallback: number): number {
  const value = query.get(name);
  if (value === null || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw badRequest(`invalid value for ${name}: ${JSON.stringify(value)} is not an integer`);
  return n;
}

/** filter name → its values (OR'ed within a name, AND'ed across names). */
export type Filters = Map<string, string[]>;

export function parseFilters(query: URLSearchParams, allowed: readonly string[]): Filters {
  const filters: Filters = new Map();
  const text = query.get("filters");
  if (!text) return filters;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw badRequest(`invalid filters: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw badRequest("invalid filters: must be a JSON object");
  for (const [name, value] of Object.entries(parsed)) {
    if (!allowed.includes(name)) throw badRequest(`Invalid filter '${name}'`);
    if (Array.isArray(value)) filters.set(name, value.map(String));
    else if (typeof value === "object" && value !== null) filters.set(name, Object.entries(value).filter(([, on]) => on).map(([v]) => v));
    else throw badRequest(`invalid filters: the values of '${name}' must be a list or a map`);
  }
  return filters;
}

/** `label` filters: "k" tests presence, "k=v" the value; every one must hold. */
export function labelsMatch(labels: Record<string, string> | null | undefined, wanted: readonly string[] | undefined): boolean {
  if (!wanted || wanted.length === 0) return true;
  return wanted.every((w) => {
    const eq = w.indexOf("=");
    if (eq < 0) return labels?.[w] !== undefined;
    return labels?.[w.slice(0, eq)] === w.slice(eq + 1);
  });
}
