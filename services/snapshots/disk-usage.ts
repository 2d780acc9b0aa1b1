// A snapshot's disk usage the way containerd measures it (continuity's fs.DiskUsage):
// every distinct inode under the root, the root included, counted once (hard links
// share one), and its allocated 512-byte blocks — what `du` adds up, not file lengths.
//
// The walk uses synchronous lstat/readdir in slices, yielding to the event loop between
// slices: each call is a few microseconds, and a thread-pool round trip per entry made
// the walk (on every Commit) ten times slower — 43-65 ms against 5 ms for a 608-entry layer.
import { join } from "node:path";
import { byteStringOf, lstatBig, readdir } from "../../core/tar/byte-fs.ts";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { Usage } from "./store.ts";

/** Entries visited between two turns of the event loop. */
const sliceSize = 256;

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0n;
  // Byte strings (core/tar/byte-fs.ts): a layer's names need not be UTF-8, and decoded
  // they would name files that do not exist.
  const pending = [byteStringOf(root)];
  let visited = 0;
  while (pending.length > 0) {
    const path = pending.pop()!;
    const stat = lstatBig(path);
    const inode = `${stat.dev}:${stat.ino}`;
    if (!seen.has(inode)) {
      seen.add(inode);
      size += stat.blocks * 512n;
    }
    if (stat.isDirectory()) {
      for (const name of readdir(path)) pending.push(join(path, name));
    }
    if (++visited % sliceSize === 0) await yieldToEventLoop();
  }
  return { size, inodes: BigInt(seen.size) };
}
