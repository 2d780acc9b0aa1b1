// Mount records (containerd.types.Mount) as the diff service meets them: which shape
// can be written or read in place (a bind's source dir, an overlay's upper dir), and
// mounting the rest on temporary directories with mount(2), the way containerd's
// mount.All parses options.
import { mkdir, mkdtemp, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../../core/errors.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";

export interface MountSys {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount(target: string, flags: number): void;
  mountFlags: Readonly<Record<string, number>>;
  umountFlags: Readonly<Record<string, number>>;
}

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

/** containerd's option table: name → [clear?, flag name]. */
const flagOptions: Record<string, [boolean, string[]]> = {
  async: [true, ["MS_SYNCHRONOUS"]],
  atime: [true, ["MS_NOATIME"]],
  bind: [false, ["MS_BIND"]],
  defaults: [false, []],
  dev: [true, ["MS_NODEV"]],
  diratime: [true, ["MS_NODIRATIME"]],
  dirsync: [false, ["MS_DIRSYNC"]],
  exec: [true, ["MS_NOEXEC"]],
  mand: [false, ["MS_MANDLOCK"]],
  noatime: [false, ["MS_NOATIME"]],
  nodev: [false, ["MS_NODEV"]],
  nodiratime: [false, ["MS_NODIRATIME"]],
  noexec: [false, ["MS_NOEXEC"]],
  nomand: [true, ["MS_MANDLOCK"]],
  norelatime: [true, ["MS_RELATIME"]],
  nostrictatime: [true, ["MS_STRICTATIME"]],
  nosuid: [false, ["MS_NOSUID"]],
  rbind: [false, ["MS_BIND", "MS_REC"]],
  relatime: [false, ["MS_RELATIME"]],
  remount: [false, ["MS_REMOUNT"]],
  ro: [false, ["MS_RDONLY"]],
  rw: [true, ["MS_RDONLY"]],
  strictatime: [false, ["MS_STRICTATIME"]],
  suid: [true, ["MS_NOSUID"]],
  sync: [false, ["MS_SYNCHRONOUS"]],
};

const propagationOptions = new Set(["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"]);

export function parseMountOptions(options: string[], flagValues: Readonly<Record<string, number>>): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const option of options) {
    const known = flagOptions[option];
    if (known) {
      const [clear, names] = known;
      const value = names.reduce((acc, name) => acc | (flagValues[name] ?? 0), 0);
      flags = clear ? flags & ~value : flags | value;
    } else if (!propagationOptions.has(option)) {
      data.push(option);
    }
  }
  return { flags, data: data.join(",") };
}

/** Mounts one record at target (bind + ro needs the remount containerd also does). */
export function mountOne(sys: MountSys, m: Mount, target: string): void {
  const { flags, data } = parseMountOptions(m.options, sys.mountFlags);
  const f = sys.mountFlags;
  sys.mount(m.source, target, m.type, flags & ~f.MS_REMOUNT!, data === "" ? null : data);
  if ((flags & f.MS_BIND!) !== 0 && (flags & f.MS_RDONLY!) !== 0) {
    sys.mount(null, target, null, flags | f.MS_REMOUNT!, null);
  }
}

/** Unmounts, retrying busy mounts briefly, then detaching. */
export async function unmountAll(sys: MountSys, target: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      sys.umount(target, 0);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EINVAL") return; // nothing (more) mounted there
      if (code === "EBUSY" && attempt < 20) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      if (code === "EBUSY") {
        sys.umount(target, sys.umountFlags.MNT_DETACH!);
        return;
      }
      throw err;
    }
  }
}

/** Temp mount points under one directory of the service's own. */
export class TempMounts {
  private readonly base: string;
  private readonly sys: MountSys;

  constructor(base: string, sys: MountSys) {
    this.base = base;
    this.sys = sys;
  }

  /** Detaches and removes mount points a crashed run left behind. */
  async sweep(): Promise<number> {
    await mkdir(this.base, { recursive: true, mode: 0o700 });
    let swept = 0;
    for (const name of await readdir(this.base)) {
      const dir = join(this.base, name);
      await unmountAll(this.sys, dir).catch(() => {});
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
          mountOne(this.sys, m, dir);
        } catch (err) {
          throw invalidArgument(`mount ${m.type} ${m.source} [${m.options.join(",")}]: ${(err as Error).message}`);
        }
        mounted++;
      }
      return await fn(dir);
    } finally {
      if (mounted > 0) await unmountAll(this.sys, dir);
      await rmdir(dir).catch(() => {});
    }
  }
}
