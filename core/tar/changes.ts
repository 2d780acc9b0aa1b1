// What changed between two filesystem trees, in layer order (depth first, names sorted
// bytewise, a directory before its contents), and its encoding as a layer tar.
// Two sources: an overlayfs upper dir read directly (its whiteouts and opaque
// markers already say what was deleted), or a walk of both trees compared file by file
// (mode, owner, mtime, size, link target, device number, xattrs) like continuity's
// double-walk differ.
// Metadata syscalls are synchronous for the same reason as in apply.ts (thread-pool round
// trips dominated); file contents above a small size stream asynchronously.
// Names stay bytes from the disk to the tar: paths and names here are byte strings
// (./byte-fs.ts), turned into Buffers for the tar writer.
import { closeSync, constants, readSync, type BigIntStats } from "node:fs";
import { join } from "node:path";
import { byteStringOf, displayPath, lstatBig, open, rawPath, readdir, readlink, readStream } from "./byte-fs.ts";
import type { TarEntryType } from "./reader.ts";
import { overlayOpaqueXattr, overlayXattrPrefix, splitDevice, whiteoutOpaque, whiteoutPrefix, type LayerSys } from "./sys.ts";
import { packTar, type PackEntry } from "./writer.ts";

/** `name` (relative, in the layer) and `path` (on the host) are byte strings. */
export type LayerChange =
  /** Write this path as it is in the new tree (a directory's contents follow as their own changes). */
  | { kind: "entry"; name: string; path: string; stat: BigIntStats }
  /** `name` was deleted. */
  | { kind: "whiteout"; name: string }
  /** Directory `name` hides everything below it in older layers. */
  | { kind: "opaque"; name: string };

/** Thrown when an upper dir uses overlayfs features that a plain read cannot turn into a layer. */
export class UpperDirNotPortable extends Error {
  constructor(path: string, feature: string) {
    super(`overlay upper dir entry ${displayPath(path)} uses ${feature}`);
    this.name = "UpperDirNotPortable";
  }
}

// Byte strings compare char by char, which is byte by byte.
const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function sortedNames(dir: string): string[] {
  return readdir(dir).sort(byteOrder);
}

const joinRel = (rel: string, name: string) => (rel === "" ? name : `${rel}/${name}`);

/**
 * xattrs that belong in a layer: not overlayfs' own, and of the security namespace
 * only file capabilities (as docker and containerd record; labels are host policy).
 */
export function layerXattr(name: string): boolean {
  if (name.startsWith(overlayXattrPrefix)) return false;
  if (name.startsWith("security.")) return name === "security.capability";
  return true;
}

export function readXattrs(sys: LayerSys, path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const raw = rawPath(path);
  for (const name of sys.llistxattr(raw).sort()) {
    if (!layerXattr(name)) continue;
    const value = sys.lgetxattr(raw, name);
    if (value !== null) out.set(name, value);
  }
  return out;
}

/** Changes recorded in an overlayfs upper dir (whiteouts = 0:0 char devices, opaque xattr). */
export async function* overlayUpperChanges(upper: string, sys: LayerSys): AsyncGenerator<LayerChange> {
  const root = byteStringOf(upper);
  if (sys.lgetxattr(rawPath(root), overlayOpaqueXattr)?.toString() === "y") yield { kind: "opaque", name: "" };
  yield* walkUpper(root, "", sys);
}

async function* walkUpper(dir: string, rel: string, sys: LayerSys): AsyncGenerator<LayerChange> {
  for (const name of sortedNames(dir)) {
    const path = join(dir, name);
    const entryName = joinRel(rel, name);
    const stat = lstatBig(path);
    if (stat.isCharacterDevice() && stat.rdev === 0n) {
      yield { kind: "whiteout", name: entryName };
      continue;
    }
    if (!stat.isSymbolicLink()) {
      for (const attr of ["trusted.overlay.redirect", "trusted.overlay.metacopy"]) {
        if (sys.lgetxattr(rawPath(path), attr) !== null) throw new UpperDirNotPortable(path, attr);
      }
    }
    yield { kind: "entry", name: entryName, path, stat };
    if (stat.isDirectory()) {
      if (sys.lgetxattr(rawPath(path), overlayOpaqueXattr)?.toString() === "y") yield { kind: "opaque", name: entryName };
      yield* walkUpper(path, entryName, sys);
    }
  }
}

/** Changes that turn tree `lower` (undefined = empty) into tree `upper`. */
export async function* treeChanges(lower: string | undefined, upper: string, sys: LayerSys): AsyncGenerator<LayerChange> {
  yield* walkTrees(lower === undefined ? undefined : byteStringOf(lower), byteStringOf(upper), "", sys);
}

async function* addTree(path: string, name: string, stat: BigIntStats): AsyncGenerator<LayerChange> {
  yield { kind: "entry", name, path, stat };
  if (!stat.isDirectory()) return;
  for (const childName of sortedNames(path)) {
    const childPath = join(path, childName);
    yield* addTree(childPath, joinRel(name, childName), lstatBig(childPath));
  }
}

async function* walkTrees(lower: string | undefined, upper: string, rel: string, sys: LayerSys): AsyncGenerator<LayerChange> {
  const lowerNames = lower === undefined ? [] : sortedNames(lower);
  const upperNames = sortedNames(upper);
  let i = 0;
  let j = 0;
  while (i < lowerNames.length || j < upperNames.length) {
    const order = i >= lowerNames.length ? 1 : j >= upperNames.length ? -1 : byteOrder(lowerNames[i]!, upperNames[j]!);
    if (order < 0) {
      yield { kind: "whiteout", name: joinRel(rel, lowerNames[i++]!) };
      continue;
    }
    const name = upperNames[j++]!;
    const upperPath = join(upper, name);
    const upperStat = lstatBig(upperPath);
    if (order > 0) {
      yield* addTree(upperPath, joinRel(rel, name), upperStat);
      continue;
    }
    i++;
    const lowerPath = join(lower!, name);
    const lowerStat = lstatBig(lowerPath);
    if (lowerStat.isDirectory() && upperStat.isDirectory()) {
      if (!sameMetadata(sys, lowerPath, lowerStat, upperPath, upperStat)) {
        yield { kind: "entry", name: joinRel(rel, name), path: upperPath, stat: upperStat };
      }
      yield* walkTrees(lowerPath, upperPath, joinRel(rel, name), sys);
    } else if (!sameFile(sys, lowerPath, lowerStat, upperPath, upperStat)) {
      yield* addTree(upperPath, joinRel(rel, name), upperStat);
    }
  }
}

function sameXattrs(sys: LayerSys, a: string, b: string): boolean {
  const left = readXattrs(sys, a);
  const right = readXattrs(sys, b);
  if (left.size !== right.size) return false;
  for (const [name, value] of left) if (!right.get(name)?.equals(value)) return false;
  return true;
}

function sameMetadata(sys: LayerSys, a: string, as: BigIntStats, b: string, bs: BigIntStats): boolean {
  return as.mode === bs.mode && as.uid === bs.uid && as.gid === bs.gid && as.mtimeNs === bs.mtimeNs && sameXattrs(sys, a, b);
}

function sameContent(a: string, b: string): boolean {
  const fa = open(a, constants.O_RDONLY);
  try {
    const fb = open(b, constants.O_RDONLY);
    try {
      const bufA = Buffer.allocUnsafe(256 * 1024);
      const bufB = Buffer.allocUnsafe(256 * 1024);
      while (true) {
        const ra = readFull(fa, bufA);
        const rb = readFull(fb, bufB);
        if (ra !== rb) return false;
        if (ra === 0) return true;
        if (!bufA.subarray(0, ra).equals(bufB.subarray(0, rb))) return false;
      }
    } finally {
      closeSync(fb);
    }
  } finally {
    closeSync(fa);
  }
}

function readFull(fd: number, buf: Buffer): number {
  let filled = 0;
  while (filled < buf.length) {
    const n = readSync(fd, buf, filled, buf.length - filled, null);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

const smallFile = 256 * 1024;

/** A file's bytes: small files in one synchronous read, larger ones streamed. */
function fileBody(path: string, size: number): AsyncIterable<Uint8Array> | Iterable<Uint8Array> {
  if (size > smallFile) return readStream(path, smallFile);
  const fd = open(path, constants.O_RDONLY);
  try {
    const buf = Buffer.allocUnsafe(size);
    // A short read is passed on as is: the packer reports the size change.
    return [buf.subarray(0, readFull(fd, buf))];
  } finally {
    closeSync(fd);
  }
}

function sameFile(sys: LayerSys, a: string, as: BigIntStats, b: string, bs: BigIntStats): boolean {
  if (!sameMetadata(sys, a, as, b, bs)) return false;
  if (as.isSymbolicLink()) return readlink(a) === readlink(b);
  if (as.isCharacterDevice() || as.isBlockDevice()) return as.rdev === bs.rdev;
  if (!as.isFile()) return true;
  if (as.size !== bs.size) return false;
  // Same size and mtime. A whole-second mtime may come from a filesystem or tool that
  // drops the fraction, so only then the bytes decide (continuity does the same).
  if (as.mtimeNs % 1_000_000_000n !== 0n) return true;
  return sameContent(a, b);
}

function entryType(stat: BigIntStats): TarEntryType | undefined {
  if (stat.isFile()) return "file";
  if (stat.isDirectory()) return "directory";
  if (stat.isSymbolicLink()) return "symlink";
  if (stat.isCharacterDevice()) return "char";
  if (stat.isBlockDevice()) return "block";
  if (stat.isFIFO()) return "fifo";
  return undefined; // sockets are not archived (as containerd)
}

function whiteoutName(name: string, base: string): string {
  const slash = name.lastIndexOf("/");
  return slash === -1 ? base : `${name.slice(0, slash + 1)}${base}`;
}

export interface ChangesToTarOptions {
  /**
   * The mtime (seconds) of whiteout and opaque marker entries. containerd stamps them all
   * with the time the diff started (rounded to the second, as Go's tar writer does), so
   * that is the default.
   */
  whiteoutMtime?: number;
  /**
   * The new tree's root. When given, every entry's parent directories come before it
   * even when they did not change (a file rewritten in place, a deletion that left the
   * directory's mtime as it was), as containerd's change writer includes them, so a
   * layer always carries the metadata of the directories it writes into.
   */
  upper?: string;
}

/** A marker entry (whiteout or opaque): an empty regular file with mode 0 and root's ids, as containerd writes it. */
function markerEntry(name: string, mtime: number): PackEntry {
  return { header: { name: rawPath(name), type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime } };
}

/** The entry for `entryName` as it is at `path` (byte strings); undefined for what layers do not hold (sockets). */
function treeEntry(entryName: string, path: string, stat: BigIntStats, sys: LayerSys, firstName: Map<string, string>): PackEntry | undefined {
  const type = entryType(stat);
  if (!type) return undefined;
  const name = rawPath(entryName);
  const base = {
    mode: Number(stat.mode & 0o7777n),
    uid: Number(stat.uid),
    gid: Number(stat.gid),
    // Whole seconds, as containerd writes them: reproducible layers.
    mtime: Number(stat.mtimeNs / 1_000_000_000n),
    xattrs: readXattrs(sys, path),
  };
  // Files with several links are written once; later names become hard links to the first.
  if (type === "file" && stat.nlink > 1n) {
    const key = `${stat.dev}:${stat.ino}`;
    const first = firstName.get(key);
    if (first !== undefined) return { header: { ...base, name, type: "link", linkname: rawPath(first) } };
    firstName.set(key, entryName);
  }
  switch (type) {
    case "directory":
      return { header: { ...base, name: rawPath(`${entryName}/`), type } };
    case "symlink":
      return { header: { ...base, name, type, linkname: rawPath(readlink(path)) } };
    case "char":
    case "block": {
      const { major, minor } = splitDevice(stat.rdev);
      return { header: { ...base, name, type, devmajor: major, devminor: minor } };
    }
    case "file":
      return { header: { ...base, name, type, size: Number(stat.size) }, body: () => fileBody(path, Number(stat.size)) };
    default:
      return { header: { ...base, name, type } };
  }
}

async function* packEntries(changes: AsyncIterable<LayerChange>, sys: LayerSys, whiteoutMtime: number, upper: string | undefined): AsyncGenerator<PackEntry> {
  const firstName = new Map<string, string>();
  const writtenDirs = new Set<string>();
  /** Entries for the directories above `name` not written yet, outermost first. */
  function* parentsOf(name: string): Generator<PackEntry> {
    if (upper === undefined) return;
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (writtenDirs.has(dir)) continue;
      writtenDirs.add(dir);
      const path = join(upper, dir);
      const entry = treeEntry(dir, path, lstatBig(path), sys, firstName);
      if (entry) yield entry;
    }
  }
  for await (const change of changes) {
    if (change.kind === "whiteout") {
      yield* parentsOf(change.name);
      const slash = change.name.lastIndexOf("/");
      yield markerEntry(whiteoutName(change.name, `${whiteoutPrefix}${change.name.slice(slash + 1)}`), whiteoutMtime);
      continue;
    }
    if (change.kind === "opaque") {
      if (change.name !== "") yield* parentsOf(`${change.name}/${whiteoutOpaque}`);
      yield markerEntry(change.name === "" ? whiteoutOpaque : `${change.name}/${whiteoutOpaque}`, whiteoutMtime);
      continue;
    }
    yield* parentsOf(change.name);
    if (change.stat.isDirectory()) writtenDirs.add(change.name);
    const entry = treeEntry(change.name, change.path, change.stat, sys, firstName);
    if (entry) yield entry;
  }
}

/** A layer tar (uncompressed) of the changes. */
export function changesToTar(changes: AsyncIterable<LayerChange>, sys: LayerSys, options: ChangesToTarOptions = {}): AsyncGenerator<Buffer> {
  const upper = options.upper === undefined ? undefined : byteStringOf(options.upper);
  return packTar(packEntries(changes, sys, options.whiteoutMtime ?? Math.round(Date.now() / 1000), upper));
}
