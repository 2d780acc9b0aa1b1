// The COPY's placement of new small files straight into an overlay's upper dir, on a real
// overlay mount: what it places reads through the overlay as a file written there would,
// and whatever the overlay would treat differently (a name a layer has, a directory only a
// lower has, a symlinked directory) is left to the caller.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { InodePool } from "./inode-pool.ts";
import { upperPlacer } from "./upper-placer.ts";

const meta = { uid: 1234, gid: 5678, mode: 0o640, atime: new Date(1_000_000), mtime: new Date(2_000_000) };

describe("placing small files in an overlay's upper dir", () => {
  let base: string;
  let lower: string;
  let upper: string;
  let mountPoint: string;
  let mounted = false;
  let pool: InodePool;
  let poolDir: string;

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "berth-upper-placer-"));
    [lower, upper, mountPoint] = ["lower", "upper", "mnt"].map((name) => join(base, name)) as [string, string, string];
    for (const dir of [lower, upper, mountPoint, join(base, "work")]) mkdirSync(dir);
    mkdirSync(join(lower, "etc"));
    writeFileSync(join(lower, "etc", "taken"), "lower\n");
    mkdirSync(join(lower, "real"));
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${join(base, "work")}`, mountPoint]);
    mounted = true;
    poolDir = join(base, "pool");
    pool = new InodePool(poolDir, 8);
    pool.wanted(4);
    await pool.refill();
  });

  after(() => {
    if (mounted) execFileSync("umount", [mountPoint]);
    rmSync(base, { recursive: true, force: true });
  });

  const placer = () => upperPlacer(mountPoint, [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${join(base, "work")}`] }], pool)!;

  test("a new name in a directory of the upper dir is placed, and reads through the overlay with its content, owner, mode and times", () => {
    mkdirSync(join(mountPoint, "data"));
    const before = pool.size;
    const p = placer();
    assert.equal(p.place(join(mountPoint, "data", "new.txt"), Buffer.from("hello\n"), meta), true);
    assert.equal(pool.size, before - 1, "one file of the pool was used");
    const seen = lstatSync(join(mountPoint, "data", "new.txt"));
    assert.equal(readFileSync(join(mountPoint, "data", "new.txt"), "utf8"), "hello\n");
    assert.deepEqual([seen.uid, seen.gid, seen.mode & 0o7777, seen.mtimeMs, seen.atimeMs], [1234, 5678, 0o640, 2_000_000, 1_000_000]);
    assert.ok(existsSync(join(upper, "data", "new.txt")), "the file is in the upper dir");
  });

  test("a name a lower layer has, a directory only a lower has, a symlinked directory: left to the caller, the pool untouched", () => {
    mkdirSync(join(mountPoint, "etc", "sub"), { recursive: true }); // copies etc up
    symlinkSync("/tmp", join(mountPoint, "link"));
    const before = pool.size;
    const p = placer();
    assert.equal(p.place(join(mountPoint, "etc", "taken"), Buffer.from("x"), meta), false, "the lower's file is replaced through the overlay");
    assert.equal(p.place(join(mountPoint, "real", "f"), Buffer.from("x"), meta), false, "real/ is only in the lower");
    assert.equal(p.place(join(mountPoint, "link", "f"), Buffer.from("x"), meta), false, "link/ is a symlink");
    assert.equal(p.place(join(base, "elsewhere"), Buffer.from("x"), meta), false, "outside the mount point");
    assert.equal(pool.size, before);
    assert.deepEqual([p.placed, p.asked], [0, 4]);
  });

  test("an empty pool places nothing", () => {
    const empty = new InodePool(join(base, "empty-pool"), 0);
    const p = upperPlacer(mountPoint, [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${lower}`, `upperdir=${upper}`] }], empty)!;
    assert.equal(p.place(join(mountPoint, "data", "other.txt"), Buffer.from("x"), meta), false);
    assert.equal(existsSync(join(upper, "data", "other.txt")), false);
  });

  test("a pool file a killed daemon left half-filled is truncated when used", async () => {
    const dir = join(base, "left-pool");
    mkdirSync(dir);
    writeFileSync(join(dir, "leftover"), "bytes of a file that was never renamed\n");
    const left = new InodePool(dir, 1);
    const p = upperPlacer(mountPoint, [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${lower}`, `upperdir=${upper}`] }], left)!;
    assert.equal(p.place(join(mountPoint, "data", "short.txt"), Buffer.from("ok\n"), meta), true);
    assert.equal(readFileSync(join(mountPoint, "data", "short.txt"), "utf8"), "ok\n");
    assert.deepEqual(readdirSync(dir), []);
  });
});
