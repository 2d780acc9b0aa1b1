// The sha256 of each large file of a build context, taken while the upload is extracted:
// the bytes pass through the engine then anyway, mostly while it waits for the client's
// next chunk, whereas hashing them for a COPY's cache key afterwards read them all again
// on the build's path (a 20 MB file: 18 ms on the idle test machine, 100–190 ms under
// load). Kept in this process by context directory (the build job runs here too) until
// the context is removed; a file not found here is hashed from disk as before.
//
// Only a plain context is trusted: a symlink, hard link or path given twice in the upload
// could make a path's recorded bytes differ from what is on disk, so any of them drops the
// record for the whole context.
import { createHash } from "node:crypto";
import { lstatSync } from "node:fs";
import { join, posix, relative } from "node:path";
import type { TarEntry } from "../../../core/tar/reader.ts";
import { smallFile } from "./sources.ts";


interface Recorded {
  digest: Buffer;
  size: number;
  /** The file as extraction left it (checked again when the digest is used). */
  ino: number;
  mtimeMs: number;
}

export class ContextDigests {
  private readonly taken = new Map<string, { digest: Buffer; size: number }>();
  private readonly seen = new Set<string>();
  private plain = true;
  private recorded = new Map<string, Recorded>();
  /** The directory the context was extracted to (settle's). */
  private root = "";

  /** `source` with each large file's bytes hashed as they are read; the rest passes unchanged. */
  watch(source: AsyncIterator<TarEntry>): AsyncIterator<TarEntry> {
    return {
      next: async () => {
        const next = await source.next();
        if (!next.done) return { done: false, value: this.entry(next.value) };
        return next;
      },
      return: async (value?: unknown) => (source.return ? source.return(value) : { done: true, value: undefined }),
    };
  }

  private entry(entry: TarEntry): TarEntry {
    const name = posix.normalize(entry.header.name).replace(/^(\.\/)+/, "").replace(/\/+$/, "");
    if (this.seen.has(name) || name.startsWith("../") || name.startsWith("/") || entry.header.type === "symlink" || entry.header.type === "link") this.plain = false;
    this.seen.add(name);
    if (!this.plain || entry.header.type !== "file" || entry.header.size <= smallFile) return entry; // small files are hashed with their one read
    const taken = this.taken;
    return {
      header: entry.header,
      async *body() {
        const hash = createHash("sha256");
        let size = 0;
        for await (const chunk of entry.body()) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
        taken.set(name, { digest: hash.digest(), size });
      },
    };
  }

  /** Ends the recording once the context is on disk under `root` (and its .dockerignore applied). */
  settle(root: string): void {
    this.root = root;
    if (!this.plain) return;
    for (const [name, { digest, size }] of this.taken) {
      try {
        const stat = lstatSync(join(root, name));
        if (stat.isFile() && stat.size === size) this.recorded.set(name, { digest, size, ino: stat.ino, mtimeMs: stat.mtimeMs });
      } catch {
        // removed by .dockerignore
      }
    }
    this.taken.clear();
  }

  /** The recorded digest of the file at `host` under the context's root, if it is still the file extraction wrote. */
  digestOf(host: string, stat: { size: number; ino: number; mtimeMs: number }): Buffer | undefined {
    const found = this.recorded.get(relative(this.root, host));
    if (!found || found.size !== stat.size || found.ino !== stat.ino || found.mtimeMs !== stat.mtimeMs) return undefined;
    return found.digest;
  }
}

const byContext = new Map<string, ContextDigests>();

export function rememberDigests(contextDir: string, digests: ContextDigests): void {
  byContext.set(contextDir, digests);
}

export function digestsOf(contextDir: string): ContextDigests | undefined {
  return byContext.get(contextDir);
}

export function forgetDigests(...dirs: string[]): void {
  for (const dir of dirs) byContext.delete(dir);
}
