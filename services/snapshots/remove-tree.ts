// Deleting a snapshot's directory. Most are tiny (a container's upper dir and overlay
// work dir: four entries after `ctr run --rm … true`), and fs.promises.rm spends ~3 ms
// on one in thread-pool round trips, on every container removal. A tree of a few
// entries is therefore deleted with synchronous calls (microseconds each); a larger one
// still goes through the asynchronous rm, so a big snapshot does not stall the event
// loop that serves every other call.
import { readdirSync, rmdirSync, unlinkSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";

/** Trees with at most this many entries (files and directories below the top) are deleted synchronously. */
export const smallTreeEntries = 64;

/** The tree's entries, deepest first, or undefined once there are more than `budget`. */
function smallTree(path: string, budget: number): { files: string[]; dirs: string[] } | undefined {
  const files: string[] = [];
  const dirs: string[] = [];
  const pending = [path];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    dirs.push(dir);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (files.length + dirs.length > budget) return undefined;
      const child = join(dir, entry.name);
      if (entry.isDirectory()) pending.push(child);
      else files.push(child);
    }
  }
  // Parents were listed before their children: deleting in reverse empties each first.
  return { files, dirs: dirs.reverse() };
}

/** Deletes the tree at `path` (nothing when it is absent). */
export async function removeTree(path: string): Promise<void> {
  let tree: ReturnType<typeof smallTree>;
  try {
    tree = smallTree(path, smallTreeEntries);
  } catch (err) {
    // Only the top missing means nothing to do; a child gone meanwhile is a concurrent change.
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && (err as NodeJS.ErrnoException).path === path) return;
    tree = undefined;
  }
  if (tree && deletedAll(tree)) return;
  // Large, or changed under the quick path (it then stops where it failed): the thorough way.
  await rm(path, { recursive: true, force: true });
}

function deletedAll(tree: { files: string[]; dirs: string[] }): boolean {
  try {
    for (const file of tree.files) unlinkSync(file);
    for (const dir of tree.dirs) rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}
