// What the network and volume commands share: docker's natural name order, `k=v` flag
// lists, label columns, and inspect's printing (JSON array or --format per object, the
// failures after the output).
import type { Context } from "../command.ts";
import { err, out } from "../command.ts";
import { CliError } from "../errors.ts";
import { Template } from "../template.ts";

/** Name order with digit runs compared as numbers ("net2" before "net10"), as docker's lists sort. */
export function naturalLess(a: string, b: string): boolean {
  const chunks = (s: string) => s.match(/\d+|\D+/g) ?? [];
  const x = chunks(a);
  const y = chunks(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i]!;
    const q = y[i]!;
    if (p === q) continue;
    const pNum = /^\d/.test(p);
    const qNum = /^\d/.test(q);
    if (pNum && qNum) {
      const diff = BigInt(p) - BigInt(q);
      if (diff !== 0n) return diff < 0n;
      return p.length < q.length;
    }
    return p < q;
  }
  return x.length < y.length;
}

export const byName = <T extends { Name: string }>(a: T, b: T): number => (naturalLess(a.Name, b.Name) ? -1 : naturalLess(b.Name, a.Name) ? 1 : 0);

/** `--label k=v` / `--opt k=v` words as a map; a word without `=` is a key with an empty value. */
export function keyValues(words: readonly string[], flag: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const word of words) {
    const eq = word.indexOf("=");
    const key = eq < 0 ? word : word.slice(0, eq);
    if (!key) throw new CliError(`invalid argument "${word}" for "${flag}" flag: the key is empty`, 125);
    map[key] = eq < 0 ? "" : word.slice(eq + 1);
  }
  return map;
}

export function labelText(labels: Record<string, string> | null | undefined): string {
  return Object.entries(labels ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/** inspect for one kind of object: what was found, then each failure on stderr (exit 1 if any). */
export async function printInspected(ctx: Context, fetchOne: (name: string) => Promise<unknown>, forTemplate: (o: unknown) => unknown = (o) => o): Promise<number> {
  const format = ctx.flags.string("format");
  const template = format ? new Template(format === "json" ? "{{json .}}" : format) : undefined;
  const objects: unknown[] = [];
  const failures: string[] = [];
  for (const name of ctx.args) {
    try {
      objects.push(await fetchOne(name));
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      failures.push(e.message);
    }
  }
  if (template) out(objects.map((o) => `${template.render(forTemplate(o))}\n`).join(""));
  else out(`${JSON.stringify(objects, null, 4)}\n`);
  for (const f of failures) err(`${f}\n`);
  return failures.length ? 1 : 0;
}
