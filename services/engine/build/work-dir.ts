// Each build's own directory under the daemon's root, <root>/engine/builds/<id>: its
// context and the mount points of its COPY steps. Under the root (not /tmp) so that a
// build the daemon was killed in the middle of is found at the next start, and its
// leftovers removed (build/recovery.ts). Only node:fs here: berthd checks for such
// directories at start without loading the engine.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, renameSync } from "node:fs";
import { basename, join } from "node:path";

/** A build's job id: its directory's id, so each names the other. */
export const buildJobId = (dirId: string) => `build-${dirId}`;

export function buildsDir(root: string): string {
  return join(root, "engine", "builds");
}

/**
 * The /etc files of the builds' RUN networks, `net-<id>` each (build/run-network.ts): beside
 * the builds' directories rather than in them, since a build's networks are released after
 * its client has the outcome and its directory is gone.
 */
export function buildNetworksDir(root: string): string {
  return join(root, "engine", "build-networks");
}

/**
 * Finished builds' directories, moved here (one rename) when their build ended so that
 * their removal (mostly freeing the context's memory on the tmpfs: 4–12 ms for the bench's
 * 21 MB, load 5–19) waits until the client has the outcome. Beside the builds' directories,
 * where a client that saw the end looks for none; one a killed daemon left goes at the next
 * start (recovery.ts).
 */
export function buildTrashDir(root: string): string {
  return join(root, "engine", "build-trash");
}

/** Moves a finished build's directory (nothing mounted under it) to the trash; returns where it is now. */
export function moveToTrash(root: string, dir: string): string {
  mkdirSync(buildTrashDir(root), { recursive: true, mode: 0o700 });
  const moved = join(buildTrashDir(root), basename(dir));
  renameSync(dir, moved);
  return moved;
}

/** The trash's directories. */
export function listTrash(root: string): string[] {
  try {
    return readdirSync(buildTrashDir(root)).map((id) => join(buildTrashDir(root), id));
  } catch {
    return [];
  }
}

function hasEntries(dir: string): boolean {
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** Whether a build's directory or a RUN's network is left: a build runs, or one was interrupted. */
export function hasBuildDirs(root: string): boolean {
  return hasEntries(buildsDir(root)) || hasEntries(buildNetworksDir(root)) || hasEntries(buildTrashDir(root));
}

/** A new, empty build directory (0700, as the root is). */
export function newBuildDir(root: string): { id: string; dir: string } {
  mkdirSync(buildsDir(root), { recursive: true, mode: 0o700 });
  const id = randomBytes(12).toString("hex");
  const dir = join(buildsDir(root), id);
  mkdirSync(dir, { mode: 0o700 });
  return { id, dir };
}

/** The build directories there are now, by id. */
export function listBuildDirs(root: string): Map<string, string> {
  try {
    return new Map(readdirSync(buildsDir(root)).map((id) => [id, join(buildsDir(root), id)]));
  } catch {
    return new Map();
  }
}
