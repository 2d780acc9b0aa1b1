// The build context: the request's tar extracted into a private temp directory (core/tar
// keeps every entry inside it), then .dockerignore applied server-side too (the CLI applies
// it already; other clients may not), keeping the Dockerfile and .dockerignore themselves.
// A context is extracted into memory (tmpfs) while it fits a budget, and moves to disk
// once it passes it: on disk, writing, copying out of and removing a 20 MB, 200-file
// context took a few times longer (journal, block allocation) than on tmpfs. A context in
// memory for a given directory is a symlink there to it (removeContext removes both).
import { execFile } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, statfsSync, symlinkSync, unlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import dockerignore from "@balena/dockerignore";
import { applyTar } from "../../../core/tar/apply.ts";
import { readTar, type TarEntry } from "../../../core/tar/reader.ts";
import type { ByteSource } from "../../../core/tar/byte-reader.ts";
import * as native from "../../../native/index.ts";
import { badRequest } from "../http.ts";
import { ContextDigests, forgetDigests, rememberDigests } from "./context-digests.ts";

// A CommonJS module whose types declare an ES default export: at run time the import is the factory itself.
const ignore = dockerignore as unknown as typeof dockerignore.default;

/** The largest context a build accepts (BERTH_BUILD_CONTEXT_MAX_BYTES; 4 GiB by default). */
export function contextLimit(): number {
  const text = process.env.BERTH_BUILD_CONTEXT_MAX_BYTES;
  return text && /^\d+$/.test(text) ? Number(text) : 4 * 1024 ** 3;
}

class ContextTooLarge extends Error {}

/**
 * The body, ending in an error once it passed `limit` bytes. The rest is read and dropped
 * first, so the client, which is still sending, gets the error reply and not a reset.
 */
async function* limited(body: ByteSource, limit: number): AsyncGenerator<Uint8Array> {
  let total = 0;
  let over = false;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > limit) over = true;
    if (!over) yield chunk;
  }
  if (over) throw new ContextTooLarge(`the build context is larger than the ${limit} bytes this daemon accepts (BERTH_BUILD_CONTEXT_MAX_BYTES)`);
}

/** `err` or the error it was made from (an entry's error wraps the body's), if one is a `type`. */
function causeOf<T extends Error>(err: unknown, type: new (...args: never[]) => T): T | undefined {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof type) return e;
  return undefined;
}

/** File bytes of a context kept in memory (BERTH_BUILD_CONTEXT_MEMORY_BYTES; 256 MiB by default, 0 for none). */
export function contextMemoryBudget(): number {
  const text = process.env.BERTH_BUILD_CONTEXT_MEMORY_BYTES;
  return text && /^\d+$/.test(text) ? Number(text) : 256 * 1024 ** 2;
}

/** Where in-memory contexts go (BERTH_BUILD_CONTEXT_MEMORY_DIR; /dev/shm); undefined when there is none. */
function memoryDir(): string | undefined {
  const dir = process.env.BERTH_BUILD_CONTEXT_MEMORY_DIR || "/dev/shm";
  try {
    return statSync(dir).isDirectory() ? dir : undefined;
  } catch {
    return undefined;
  }
}

function freeBytes(dir: string): number {
  const fs = statfsSync(dir);
  return fs.bavail * fs.bsize;
}

interface Split {
  bytes: number;
  /** The source ran out within the budget. */
  ended: boolean;
  /** The entry that would have passed the budget: the first one on disk. */
  pending: TarEntry | undefined;
}

/** The entries of `source` while their file bytes stay within `budget` (an entry is never split: a big one goes to disk whole). */
function entriesWithin(source: AsyncIterator<TarEntry>, budget: number, split: Split): AsyncIterable<TarEntry> {
  return {
    async *[Symbol.asyncIterator]() {
      // next() by hand: ending this loop must not end the source, the rest goes to disk.
      for (;;) {
        const next = await source.next();
        if (next.done) {
          split.ended = true;
          return;
        }
        if (split.bytes + next.value.header.size > budget) {
          split.pending = next.value;
          return;
        }
        split.bytes += next.value.header.size;
        yield next.value;
      }
    },
  };
}

/** `pending`, then the rest of `source`. */
async function* after(pending: TarEntry | undefined, source: AsyncIterator<TarEntry>): AsyncGenerator<TarEntry> {
  if (pending) yield pending;
  for (let next = await source.next(); !next.done; next = await source.next()) yield next.value;
}

const run = promisify(execFile);

/**
 * Extracts the context into `into` (made here; a temp dir by default) and returns its path;
 * the caller removes it with removeContext.
 */
export async function extractContext(body: ByteSource, dockerfile: string, into?: string): Promise<string> {
  const digests = new ContextDigests();
  const entries = digests.watch(readTar(limited(body, contextLimit()), { perEntry: 1 << 20, perArchive: Number.MAX_SAFE_INTEGER })[Symbol.asyncIterator]());
  const memory = contextMemoryBudget() > 0 ? memoryDir() : undefined;
  // Builds share the tmpfs with each other and the host: a context takes at most half of
  // what is free there now, so running short sends it to disk rather than failing on ENOSPC.
  const budget = memory ? Math.min(contextMemoryBudget(), freeBytes(memory) / 2) : 0;
  const made: string[] = [];
  const dirIn = async (parent: string) => {
    made.push(await mkdtemp(join(parent, "berth-build-context-")));
    return made.at(-1)!;
  };
  /** A directory in memory, `into` linking to it (the link first: a kill in between leaves only a dangling link). */
  const memoryDirFor = (parent: string, link: string) => {
    const dir = join(parent, `berth-build-context-${randomBytes(6).toString("hex")}`);
    made.push(link);
    symlinkSync(dir, link);
    made.push(dir);
    mkdirSync(dir, { mode: 0o700 });
    return dir;
  };
  const diskDir = async () => {
    if (!into) return dirIn(tmpdir());
    made.push(into);
    mkdirSync(into, { mode: 0o700 });
    return into;
  };
  try {
    let pending: TarEntry | undefined;
    let inMemory: string | undefined;
    if (memory && budget > 0) {
      inMemory = into ? memoryDirFor(memory, into) : await dirIn(memory);
      const split: Split = { bytes: 0, ended: false, pending: undefined };
      await applyTar(entriesWithin(entries, budget, split), { root: inMemory, whiteouts: "delete", sys: native });
      // The directory itself, not the link: a source of "." must be a directory, not a symlink.
      if (split.ended) return finish(inMemory, dockerfile, digests);
      pending = split.pending;
      if (into) unlinkSync(into);
    }
    const onDisk = await diskDir();
    if (inMemory) {
      // Over the budget: what is there moves to disk (cp -a keeps owners, modes, times and hard links), the rest follows it there.
      await run("cp", ["-a", "--", `${inMemory}/.`, onDisk]);
      await rm(inMemory, { recursive: true, force: true });
    }
    await applyTar(after(pending, entries), { root: onDisk, whiteouts: "delete", sys: native });
    return finish(onDisk, dockerfile, digests);
  } catch (err) {
    await entries.return?.(undefined);
    for (const dir of made.reverse()) rmSync(dir, { recursive: true, force: true });
    const tooLarge = causeOf(err, ContextTooLarge);
    if (tooLarge) throw badRequest(tooLarge.message);
    throw badRequest(`cannot read the build context: ${(err as Error).message}`);
  }
}

/** Removes a context extractContext made: a link to one in memory takes that with it. */
export function removeContext(path: string): void {
  forgetContext(path);
  try {
    if (lstatSync(path).isSymbolicLink()) rmSync(readlinkSync(path), { recursive: true, force: true });
  } catch {
    // not there
  }
  rmSync(path, { recursive: true, force: true });
}

/** Drops what this process keeps of the context at `path` (its digests), for it is going. */
export function forgetContext(path: string): void {
  forgetDigests(path);
  try {
    if (lstatSync(path).isSymbolicLink()) forgetDigests(readlinkSync(path));
  } catch {
    // not there
  }
}

function finish(dir: string, dockerfile: string, digests: ContextDigests): string {
  applyDockerignore(dir, dockerfile);
  digests.settle(dir);
  rememberDigests(dir, digests);
  return dir;
}

function applyDockerignore(dir: string, dockerfile: string): void {
  const path = join(dir, ".dockerignore");
  if (!existsSync(path)) return;
  const rules = ignore().add(readFileSync(path, "utf8").split(/\r?\n/).filter((l) => l.trim() && !l.trimStart().startsWith("#")));
  const keep = new Set([".dockerignore", dockerfile.replace(/^\.?\//, "")]);
  const visit = (relative: string) => {
    for (const entry of readdirSync(join(dir, relative), { withFileTypes: true })) {
      const rel = relative ? `${relative}/${entry.name}` : entry.name;
      if (!keep.has(rel) && rules.ignores(rel)) {
        // A directory whose name is ignored may still hold re-included (!) paths.
        if (entry.isDirectory()) {
          visit(rel);
          if (readdirSync(join(dir, rel)).length === 0) rmSync(join(dir, rel), { recursive: true, force: true });
        } else rmSync(join(dir, rel), { force: true });
      } else if (entry.isDirectory()) visit(rel);
    }
  };
  visit("");
}
