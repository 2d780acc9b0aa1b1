// When each build cache entry was last reused and how often, for `system df -v` and
// prune's `until`. Kept in memory and written to one small file under the engine's root
// a moment after the last hit (crash-safely, and when the engine closes): a cache hit
// must stay cheap, and a store update per hit (an fsync and a collection each) tripled
// the time of a fully cached build. A crash can lose the last second of counts: they are
// statistics, not state a build depends on.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writePrivateFile } from "../../../core/private-files.ts";
import type { Backend } from "../backend.ts";

export interface Usage {
  /** Unix milliseconds of the last reuse. */
  lastUsed: number;
  count: number;
}

const writeDelayMs = 1000;

export class CacheUsage {
  private readonly file: string;
  private readonly backend: Backend;
  private entries: Map<string, Usage> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(backend: Backend) {
    this.backend = backend;
    this.file = join(backend.options.root, "build-cache-usage.json");
    backend.onClose(() => this.flush());
  }

  private load(): Map<string, Usage> {
    if (this.entries) return this.entries;
    this.entries = new Map();
    try {
      if (existsSync(this.file)) {
        const parsed = JSON.parse(readFileSync(this.file, "utf8")) as Record<string, Usage>;
        for (const [id, usage] of Object.entries(parsed)) {
          if (Number.isFinite(usage?.lastUsed) && Number.isInteger(usage?.count)) this.entries.set(id, { lastUsed: usage.lastUsed, count: usage.count });
        }
      }
    } catch (err) {
      // Statistics only: an unreadable file starts the counts again.
      this.backend.log.warn({ err: (err as Error).message, file: this.file }, "build cache usage unreadable; starting afresh");
    }
    return this.entries;
  }

  get(id: string): Usage | undefined {
    return this.load().get(id);
  }

  /** A build reused the entry with image id `id`. */
  record(id: string, now = Date.now()): void {
    const entries = this.load();
    entries.set(id, { lastUsed: now, count: (entries.get(id)?.count ?? 0) + 1 });
    this.schedule();
  }

  /** Forgets entries that are gone (pruned, or their images removed). */
  retain(ids: ReadonlySet<string>): void {
    const entries = this.load();
    let changed = false;
    for (const id of entries.keys()) {
      if (!ids.has(id)) {
        entries.delete(id);
        changed = true;
      }
    }
    if (changed) this.schedule();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.flush(), writeDelayMs);
    this.timer.unref();
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.entries) return;
    try {
      writePrivateFile(this.file, JSON.stringify(Object.fromEntries(this.entries)));
    } catch (err) {
      this.backend.log.warn({ err: (err as Error).message, file: this.file }, "cannot write the build cache usage");
    }
  }
}

const usages = new WeakMap<object, CacheUsage>();

/** The one usage record of an engine (keyed by its options: a build may hold a wrapper of the backend that shares them). */
export function cacheUsage(backend: Backend): CacheUsage {
  let usage = usages.get(backend.options);
  if (!usage) {
    usage = new CacheUsage(backend);
    usages.set(backend.options, usage);
  }
  return usage;
}
