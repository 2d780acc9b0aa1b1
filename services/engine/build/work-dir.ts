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

/** Whether a build's directory is left: a build runs, or one was interrupted. */
export function hasBuildDirs(root: string): boolean {
  try {
    return readdirSync(buildsDir(root)).length > 0;
  } catch {
    return false;
  }
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
