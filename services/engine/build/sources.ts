// COPY/ADD sources: the paths a step selects (Docker's globs, one path segment at a time),
// checked to stay inside their root; a content hash of them for the cache key (contents,
// modes, ownership, link targets — not times); and the copy into a rootfs.
import { createHash } from "node:crypto";
import { chmodSync, closeSync, constants, copyFileSync, createReadStream, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, symlinkSync, unlinkSync, utimesSync, writeSync, type Stats } from "node:fs";
import { basename, join, posix, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { badRequest } from "../http.ts";
import { resolveContainerPath } from "../archive/copy.ts";
import { rawPath } from "../../../core/tar/byte-fs.ts";
import type { ContextDigests } from "./context-digests.ts";
import type { UpperPlacer } from "./upper-placer.ts";

export interface Selected {
  /** Host path of the source. */
  host: string;
  /** The path as selected (relative to its root), for messages and hashes. */
  relative: string;
  stat: Stats;
}

const globChars = /[*?[]/;

function segmentPattern(segment: string): RegExp {
  let out = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 1);
      if (end < 0) throw badRequest(`syntax error in pattern: ${segment}`);
      const body = segment.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
      out += `[${body}]`;
      i = end;
    } else out += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/** The paths `source` selects under `root`; none is Docker's "file not found" error, climbing out a "forbidden path". */
export function selectSources(root: string, source: string, what: string): Selected[] {
  const cleaned = posix.normalize(`/${source}`).slice(1);
  if (posix.normalize(source).startsWith("../") || source === "..") throw badRequest(`Forbidden path outside the build context: ${source} ()`);
  let matches = [""];
  for (const segment of cleaned.split("/").filter(Boolean)) {
    const next: string[] = [];
    for (const dir of matches) {
      if (!globChars.test(segment)) {
        next.push(dir ? `${dir}/${segment}` : segment);
        continue;
      }
      const pattern = segmentPattern(segment);
      let names: string[] = [];
      try {
        names = readdirSync(join(root, dir));
      } catch {
        continue;
      }
      for (const name of names.sort()) if (pattern.test(name)) next.push(dir ? `${dir}/${name}` : name);
    }
    matches = next;
  }
  const found: Selected[] = [];
  for (const relative of matches) {
    const host = join(root, relative);
    try {
      found.push({ host, relative, stat: lstatSync(host) });
    } catch {
      // a plain path that is not there: reported below when nothing matched
    }
  }
  if (found.length === 0) throw badRequest(`COPY failed: file not found in ${what}: stat ${source}: file does not exist`);
  return found;
}

/** Files up to this size are read in one synchronous call when hashed. */
export const smallFile = 1 << 20;

/**
 * A hash of what the sources hold: names, modes, owners, link targets and contents (never
 * times); a large file's contents stand in it by their sha256, which the context's
 * extraction may have taken already (`recorded`).
 */
export async function hashSources(sources: Selected[], recorded?: ContextDigests): Promise<string> {
  const hash = createHash("sha256");
  const visit = async (host: string, relative: string, stat: Stats) => {
    hash.update(`${relative}\0${stat.mode}\0${stat.uid}:${stat.gid}\0`);
    if (stat.isSymbolicLink()) hash.update(readlinkSync(host));
    // A stream per small file cost more than its read: 200 small files took ~80 ms that way.
    else if (stat.isFile() && stat.size <= smallFile) hash.update(readFileSync(host));
    else if (stat.isFile()) hash.update(recorded?.digestOf(host, stat) ?? (await fileDigest(host)));
    else if (stat.isDirectory()) for (const name of readdirSync(host).sort()) await visit(join(host, name), `${relative}/${name}`, lstatSync(join(host, name)));
    hash.update("\0");
  };
  for (const s of sources) await visit(s.host, s.relative, s.stat);
  return hash.digest("hex");
}

async function fileDigest(host: string): Promise<Buffer> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(host, { highWaterMark: smallFile }), async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) hash.update(chunk);
  });
  return hash.digest();
}

export interface Owner {
  uid: number;
  gid: number;
}

/**
 * Copies a file, link or tree to `target` (a path under the rootfs mounted at `root`), owned
 * by `owner` (or as the source is when none), with `mode` when given; `placer` puts the
 * small new files it can into the upper dir.
 */
export function copyTree(source: string, stat: Stats, target: string, owner: Owner | undefined, mode: number | undefined, root: string, placer?: UpperPlacer): void {
  const uid = owner?.uid ?? stat.uid;
  const gid = owner?.gid ?? stat.gid;
  if (stat.isDirectory()) {
    target = directoryAt(root, target);
    for (const name of readdirSync(source)) copyTree(join(source, name), lstatSync(join(source, name)), join(target, name), owner, mode, root, placer);
  } else if (stat.isSymbolicLink()) {
    symlinkSync(readlinkSync(source), target);
  } else if (stat.isFile() && stat.size <= smallFile) {
    writeSmallFile(source, target, uid, gid, mode ?? stat.mode & 0o7777, stat, placer);
    return;
  } else if (stat.isFile()) {
    clearFileTarget(target);
    copyFileSync(source, target, constants.COPYFILE_EXCL);
  } else {
    return; // devices, fifos and sockets of a context are not copied (as Docker skips them)
  }
  lchownSync(target, uid, gid);
  if (!stat.isSymbolicLink()) {
    chmodSync(target, mode ?? stat.mode & 0o7777);
    utimesSync(target, stat.atime, stat.mtime);
  }
}

/**
 * The directory a tree is copied into at `target`, made if missing. A symlink the image has
 * there is followed inside the rootfs, as Docker does: the kernel would follow it from the
 * host's root (an image's `/app/conf -> /etc` had the copy write the host's /etc).
 */
function directoryAt(root: string, target: string): string {
  try {
    mkdirSync(target);
    return target;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  if (lstatSync(target).isDirectory()) return target;
  const inRoot = destinationIn(root, `/${relative(root, target)}/`);
  mkdirSync(inRoot, { recursive: true });
  return inRoot;
}

/**
 * What a file is about to replace, removed (as Docker's copy replaces it): a symlink there
 * must not be followed, it may point anywhere on the host. A directory stays, for the
 * copy to fail on as it did.
 */
function clearFileTarget(target: string): void {
  let existing: Stats;
  try {
    existing = lstatSync(target);
  } catch {
    return;
  }
  if (!existing.isDirectory()) unlinkSync(target);
}

/**
 * A small file copied through one descriptor: owner, mode and times set on it, about half
 * the syscalls of copyFileSync with lchown/chmod/utimes by path, each of which looks the
 * path up again through the overlay (200 small files: ~60 ms that way on an idle disk).
 */
function writeSmallFile(source: string, target: string, uid: number, gid: number, mode: number, stat: Stats, placer: UpperPlacer | undefined): void {
  const data = readFileSync(source);
  if (placer?.place(target, data, { uid, gid, mode, atime: stat.atime, mtime: stat.mtime })) return;
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = openSync(target, flags, mode);
  } catch (err) {
    // Only a path that is taken is looked at first: a lookup through every layer of the overlay per new file was the rest.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    clearFileTarget(target);
    fd = openSync(target, flags, mode);
  }
  try {
    for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset);
    // chown first: it clears set-id bits that the mode may ask for.
    fchownSync(fd, uid, gid);
    fchmodSync(fd, mode);
    futimesSync(fd, stat.atime, stat.mtime);
  } finally {
    closeSync(fd);
  }
}

/** The host path of `dest` inside `root` (symlinks resolved within it), its parents made. */
export function destinationIn(root: string, dest: string): string {
  const resolved = rawPath(resolveContainerPath(root, dest, true).host).toString("utf8");
  return resolved;
}

export function mkdirsOwned(path: string): void {
  mkdirSync(path, { recursive: true });
}

export const baseName = (path: string) => basename(path);
