// Each build's own directory under the daemon's root, <root>/engine/builds/<id>: its
// context and the mount points of its COPY steps. Under the root (not /tmp) so that a
// build the daemon was killed in the middle of is found at the next start, and its
// leftovers removed (build/recovery.ts). Only node:fs here: berthd checks for such
// directories at start without loading the engine.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

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

function hasEntries(dir: string): boolean {
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** Whether a build's directory or a RUN's network is left: a build runs, or one was interrupted. */
export function hasBuildDirs(root: string): boolean {
  return hasEntries(buildsDir(root)) || hasEntries(buildNetworksDir(root));
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
