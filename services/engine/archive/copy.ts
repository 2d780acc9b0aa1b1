// docker cp's server side: a path in the container resolved inside its root (symlinks
// followed as a chroot would, `..` that climbs above the root refused), its stat as
// Docker's X-Docker-Container-Path-Stat header, a tar of it, and a tar extracted into
// a directory of the container (core/tar's extraction keeps every entry inside it).
import type { BigIntStats } from "node:fs";
import { basename } from "node:path";
import * as native from "../../../native/index.ts";
import { applyTar } from "../../../core/tar/apply.ts";
import { byteString, byteStringOf, lstat, lstatBig, rawPath, readlink } from "../../../core/tar/byte-fs.ts";
import { changesToTar, treeChanges, type LayerChange } from "../../../core/tar/changes.ts";
import { readTar } from "../../../core/tar/reader.ts";
import { entryComponents, resolveInRoot } from "../../../core/tar/resolve.ts";
import type { ByteSource } from "../../../core/tar/byte-reader.ts";
import { errorMessage } from "../../../core/grpc-client.ts";
import { BerthError } from "../../../core/errors.ts";
import { badRequest, EngineError, notFoundError } from "../http.ts";

/** Go's os.FileMode type bits, which Docker's stat header carries. */
const goMode = { dir: 2 ** 31, symlink: 2 ** 27, device: 2 ** 26, namedPipe: 2 ** 25, socket: 2 ** 24, setuid: 2 ** 23, setgid: 2 ** 22, charDevice: 2 ** 21, sticky: 2 ** 20 };

export function goFileMode(stat: { mode: number }): number {
  const m = stat.mode;
  let mode = m & 0o777;
  const type = m & 0o170000;
  if (type === 0o040000) mode += goMode.dir;
  else if (type === 0o120000) mode += goMode.symlink;
  else if (type === 0o060000) mode += goMode.device;
  else if (type === 0o020000) mode += goMode.device + goMode.charDevice;
  else if (type === 0o010000) mode += goMode.namedPipe;
  else if (type === 0o140000) mode += goMode.socket;
  if (m & 0o4000) mode += goMode.setuid;
  if (m & 0o2000) mode += goMode.setgid;
  if (m & 0o1000) mode += goMode.sticky;
  return mode;
}

export interface ContainerPath {
  /** The path as the client gave it. */
  given: string;
  /** The resolved host path, a byte string (core/tar/byte-fs.ts). */
  host: string;
  /** The path inside the container after resolution, a byte string (for a symlink's linkTarget). */
  inContainer: string;
}

/**
 * Resolves a container path under `root`. The last component is not followed unless the
 * path ends in "/" or "/." (as docker cp treats a path to a symlink); a path that climbs
 * above the root is a 400.
 */
export function resolveContainerPath(root: string, given: string, followLast = /\/\.?$/.test(given)): ContainerPath {
  if (!given) throw badRequest("path is required");
  let components: string[];
  try {
    components = entryComponents(byteStringOf(given), "path");
  } catch (err) {
    throw badRequest(err instanceof Error ? err.message : String(err));
  }
  const rootBytes = byteStringOf(root);
  let host: string;
  try {
    host = resolveInRoot(rootBytes, components, followLast);
  } catch (err) {
    if (err instanceof BerthError) throw badRequest(err.message);
    throw err;
  }
  return { given, host, inContainer: `/${host.slice(rootBytes.length).replace(/^\/+/, "")}` };
}

export interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

/** The stat Docker reports for a container path; 404 with Docker's wording when missing. */
export function statContainerPath(root: string, path: ContainerPath, containerRef: string): { stat: PathStat; raw: BigIntStats } {
  const raw = lstat(path.host) ? lstatBig(path.host) : undefined;
  if (!raw) throw notFoundError(`Could not find the file ${path.given} in container ${containerRef}`);
  let linkTarget = "";
  if (raw.isSymbolicLink()) {
    // Where the link leads inside the container, as Docker resolves it.
    const target = readlink(path.host);
    const resolved = resolveInRoot(byteStringOf(root), entryComponents(target.startsWith("/") ? target : `${path.inContainer}/../${target}`, "link"));
    linkTarget = `/${rawPath(resolved.slice(byteStringOf(root).length).replace(/^\/+/, "")).toString("utf8")}`;
  }
  const mtimeNs = raw.mtimeNs;
  const mtime = new Date(Number(mtimeNs / 1_000_000n)).toISOString().replace(/\.\d+Z$/, `.${(mtimeNs % 1_000_000_000n).toString().padStart(9, "0")}Z`);
  const name = archiveBaseName(path.given);
  return { stat: { name, size: Number(raw.size), mode: goFileMode({ mode: Number(raw.mode) }), mtime, linkTarget }, raw };
}

/**
 * The name the path has in the stat and as the tar's top entry: the base name of the
 * path as given (a symlink keeps its own name), and "." for a path ending in "/." — the
 * client then copies the directory's contents rather than the directory.
 */
export function archiveBaseName(given: string): string {
  if (given === "." || given.endsWith("/.")) return ".";
  return basename(given.replace(/\/+$/, "")) || ".";
}

export const statHeader = (stat: PathStat): string => Buffer.from(JSON.stringify(stat)).toString("base64");

/** A tar of the path: its own entry named by its base name, then (for a directory) everything below it. */
export function tarOfPath(path: ContainerPath, raw: BigIntStats): AsyncGenerator<Buffer> {
  const hostText = rawPath(path.host).toString("utf8");
  const base = byteStringOf(archiveBaseName(path.given));
  async function* changes(): AsyncGenerator<LayerChange> {
    yield { kind: "entry", name: base, path: path.host, stat: raw };
    if (!raw.isDirectory()) return;
    for await (const change of treeChanges(undefined, hostText, native)) {
      if (change.kind === "entry") yield { ...change, name: `${base}/${change.name}` };
    }
  }
  return changesToTar(changes(), native);
}

/**
 * Checks every entry of the spooled tar before anything is written, so a bad archive
 * leaves the container as it was: no entry may climb out of the directory, carry a
 * whiteout name (not special in a copy: it would delete a file), or (with
 * noOverwriteDirNonDir) replace a directory with a non-directory or the other way round.
 */
export async function checkArchive(dir: ContainerPath, body: () => ByteSource, noOverwriteDirNonDir: boolean): Promise<void> {
  try {
    for await (const entry of readTar(body())) {
      const components = entryComponents(byteString(entry.header.rawName));
      if (components.length === 0) continue;
      const shown = rawPath(components.join("/")).toString("utf8");
      if (components[components.length - 1]!.startsWith(".wh.")) throw badRequest(`archive entry "${shown}": whiteout names cannot be copied into a container`);
      if (entry.header.type === "link") entryComponents(byteString(entry.header.rawLinkname), "hard link target");
      if (!noOverwriteDirNonDir) continue;
      const existing = lstat(resolveInRoot(dir.host, components, false));
      const isDir = entry.header.type === "directory";
      if (existing && existing.isDirectory() !== isDir) {
        throw badRequest(existing.isDirectory() ? `cannot overwrite directory "${shown}" with non-directory "${shown}"` : `cannot overwrite non-directory "${shown}" with directory "${shown}"`);
      }
    }
  } catch (err) {
    throw asBadArchive(err);
  }
}

function asBadArchive(err: unknown): Error {
  if (err instanceof EngineError) return err;
  if (err instanceof BerthError && err.kind === "invalid argument") return badRequest(`invalid archive: ${err.message}`);
  return badRequest(`cannot extract the archive: ${errorMessage(err)}`);
}

/** Extracts a checked tar (checkArchive) into the container directory `dir`; core/tar keeps every entry inside it. */
export async function extractInto(dir: ContainerPath, body: ByteSource): Promise<number> {
  try {
    const { entries } = await applyTar(readTar(body), { root: rawPath(dir.host).toString("utf8"), whiteouts: "delete", sys: native });
    return entries;
  } catch (err) {
    throw asBadArchive(err);
  }
}

/** The directory a PUT extracts into: it must exist and be a directory. */
export function requireDirectory(dir: ContainerPath, containerRef: string): void {
  const stat = lstat(dir.host);
  if (!stat) throw notFoundError(`Could not find the file ${dir.given} in container ${containerRef}`);
  if (!stat.isDirectory()) throw badRequest(`extraction point is not a directory: ${dir.given}`);
}
