// A snapshot's disk usage the way containerd measures it (continuity's fs.DiskUsage):
// every distinct inode under the root, the root included, counted once (hard links
// share one), and its allocated 512-byte blocks — what `du` adds up, not file lengths.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Usage } from "./store.ts";

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0n;
  const visit = async (path: string): Promise<void> => {
    const stat = await lstat(path, { bigint: true });
    const inode = `${stat.dev}:${stat.ino}`;
    if (!seen.has(inode)) {
      seen.add(inode);
      size += stat.blocks * 512n;
    }
    if (stat.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
    }
  };
  await visit(root);
  return { size, inodes: BigInt(seen.size) };
}
