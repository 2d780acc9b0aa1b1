// --filter k=v flags as the Engine API's `filters` query: the map-of-sets form the
// docker CLI sends ({"status":{"exited":true}}), values of one key OR'ed by the engine.
import { CliError } from "./errors.ts";

export function filtersParam(list: readonly string[]): string | undefined {
  if (list.length === 0) return undefined;
  const filters: Record<string, Record<string, boolean>> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new CliError(`bad format of filter "${item}" (expected name=value)`, 125);
    const key = item.slice(0, eq).trim().toLowerCase();
    (filters[key] ??= {})[item.slice(eq + 1)] = true;
  }
  return JSON.stringify(filters);
}
