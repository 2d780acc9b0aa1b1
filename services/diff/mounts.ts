// Mount records (containerd.types.Mount) as the diff service meets them: which shape
// can be written or read in place (a bind's source dir, an overlay's upper dir), and
// mounting the rest on temporary directories (core/mounts.ts does the mounting).
import { mkdir, mkdtemp, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../../core/errors.ts";
import { mountOne, unmountAll } from "../../core/mounts.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";

/** Options of an overlay mount record. */
export interface OverlayOptions {
  upperdir?: string;
  workdir?: string;
  lowerdirs: string[];
}

export function overlayOptions(mount: Mount): OverlayOptions {
  const out: OverlayOptions = { lowerdirs: [] };
  for (const option of mount.options) {
    if (option.startsWith("upperdir=")) out.upperdir = option.slice("upperdir=".length);
    else if (option.startsWith("workdir=")) out.workdir = option.slice("workdir=".length);
    else if (option.startsWith("lowerdir=")) out.lowerdirs = option.slice("lowerdir=".length).split(":").filter((d) => d !== "");
  }
  return out;
}

const isReadOnly = (mount: Mount) => mount.options.includes("ro");

/** Where Apply writes. */
export type ApplyTarget =
  | { kind: "dir"; root: string }
  | { kind: "overlay-upper"; root: string; lowers: string[] }
  | { kind: "mount"; mounts: Mount[] };

export function applyTarget(mounts: Mount[]): ApplyTarget {
  if (mounts.length === 0) throw invalidArgument("apply: no mounts given");
  if (mounts.length === 1) {
    const m = mounts[0]!;
    if (m.type === "bind") {
      if (isReadOnly(m)) throw invalidArgument(`apply: bind mount of ${m.source} is read-only`);
      if (!m.source.startsWith("/")) throw invalidArgument(`apply: bind mount source ${JSON.stringify(m.source)} is not an absolute path`);
      return { kind: "dir", root: m.source };
    }
    if (m.type === "overlay") {
      const o = overlayOptions(m);
      if (o.upperdir === undefined) throw invalidArgument("apply: overlay mount has no upperdir (read-only view)");
      if (!o.upperdir.startsWith("/")) throw invalidArgument(`apply: overlay upperdir ${JSON.stringify(o.upperdir)} is not an absolute path`);
      return { kind: "overlay-upper", root: o.upperdir, lowers: o.lowerdirs };
    }
  }
  return { kind: "mount", mounts };
}

/** The directories a mount set shows, topmost first; undefined for shapes other than bind/overlay. */
export function viewLayers(mounts: Mount[]): string[] | undefined {
  if (mounts.length === 0) return [];
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === "bind") return [m.source];
  if (m.type !== "overlay") return undefined;
  const o = overlayOptions(m);
  return o.upperdir === undefined ? o.lowerdirs : [o.upperdir, ...o.lowerdirs];
}

/**
 * The same view, read-only. An overlay loses its upper/work dirs (the upper becomes
 * the top lower dir) so mounting it cannot disturb, or be refused by, a writer
 * that still has it mounted.
 */
export function readOnlyMounts(mounts: Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type === "overlay") {
      const o = overlayOptions(m);
      const lowers = o.upperdir === undefined ? o.lowerdirs : [o.upperdir, ...o.lowerdirs];
      const rest = m.options.filter((opt) => !/^(upperdir|workdir|lowerdir)=/.test(opt) && opt !== "rw" && opt !== "ro");
      // A single lower dir is not a valid overlay: show it as a bind.
      if (lowers.length === 1) return { type: "bind", source: lowers[0]!, target: m.target, options: ["ro", "rbind"] };
      return { ...m, options: [...rest, "ro", `lowerdir=${lowers.join(":")}`] };
    }
    return { ...m, options: [...m.options.filter((opt) => opt !== "rw" && opt !== "ro"), "ro"] };
  });
}

/** Temp mount points under one directory of the service's own. */
export class TempMounts {
  private readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  /** Detaches and removes mount points a crashed run left behind. */
  async sweep(): Promise<number> {
    await mkdir(this.base, { recursive: true, mode: 0o700 });
    let swept = 0;
    for (const name of await readdir(this.base)) {
      const dir = join(this.base, name);
      await unmountAll(dir, { detachBusy: true }).catch(() => {});
      await rmdir(dir).then(() => swept++).catch(() => {});
    }
    return swept;
  }

  /** Mounts `mounts` (in order, stacked) on a fresh dir, runs fn on it, and unmounts. */
  async with<T>(mounts: Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
    await mkdir(this.base, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(this.base, "m-"));
    let mounted = 0;
    try {
      for (const m of mounts) {
        try {
          await mountOne(m, dir);
        } catch (err) {
          throw invalidArgument(`mount ${m.type} ${m.source} [${m.options.join(",")}]: ${(err as Error).message}`);
        }
        mounted++;
      }
      return await fn(dir);
    } finally {
      if (mounted > 0) await unmountAll(dir, { detachBusy: true });
      await rmdir(dir).catch(() => {});
    }
  }
}
