// Empty files made ahead of time, for COPY steps to fill and rename into a snapshot's upper
// dir. Making a file is the costly part of writing a small one on the shared ext4 disk here
// (its inode's allocation: 0.3–2 ms a create under load, where a rename is ~0.02 ms), so
// 200 small files cost a COPY 60–400 ms; files made between builds take that off the
// build's path. The pool lives under the engine's root, on the snapshots' filesystem
// (a rename from elsewhere fails and the step makes its files itself). A file left by a
// daemon killed while it was being filled is truncated when taken.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";

/** The most empty files a pool keeps (BERTH_BUILD_INODE_POOL, default 1024; 0: no pool). */
function poolLimit(): number {
  const text = process.env.BERTH_BUILD_INODE_POOL;
  return text && /^\d+$/.test(text) ? Number(text) : 1024;
}

/** What a pool holds before any step took from it. */
const initialTarget = 64;

export class InodePool {
  private readonly dir: string;
  private readonly limit: number;
  /**
   * Four times the most files one step took, within the limit: builds that follow each
   * other closely find enough while the files taken are being made again.
   */
  private target: number;
  private readonly free: string[] = [];
  private filling: Promise<void> | undefined;
  /** A rename from here failed across filesystems: no file of this pool can be used. */
  private unusable = false;

  constructor(dir: string, limit = poolLimit()) {
    this.dir = dir;
    this.limit = limit;
    this.target = Math.min(initialTarget, limit);
    if (limit === 0) return;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) this.free.push(join(dir, name));
  }

  /** An empty (or to be truncated) file's path, now the caller's; undefined when none is left. */
  take(): string | undefined {
    if (this.unusable) return undefined;
    return this.free.pop();
  }

  /** A step wanted `count` files: later refills keep enough for four such steps. */
  wanted(count: number): void {
    this.target = Math.min(this.limit, Math.max(this.target, 4 * count));
  }

  /** The files of this pool cannot reach the snapshots (EXDEV): none is handed out any more. */
  disable(): void {
    this.unusable = true;
  }

  /** Makes files until the pool holds its target again, one at a time (a build running meanwhile keeps the disk's attention). */
  refill(): Promise<void> {
    if (this.unusable || this.limit === 0) return Promise.resolve();
    this.filling ??= (async () => {
      try {
        while (this.free.length < this.target) {
          const path = join(this.dir, randomBytes(8).toString("hex"));
          const file = await open(path, "wx", 0o600);
          await file.close();
          this.free.push(path);
        }
      } finally {
        this.filling = undefined;
      }
    })();
    return this.filling;
  }

  get size(): number {
    return this.free.length;
  }
}

const pools = new Map<string, InodePool>();

/** The pool of the engine whose root is `root` (made at first use). */
export function inodePoolOf(root: string): InodePool {
  let pool = pools.get(root);
  if (!pool) {
    pool = new InodePool(join(root, "engine", "build-inodes"));
    pools.set(root, pool);
  }
  return pool;
}
