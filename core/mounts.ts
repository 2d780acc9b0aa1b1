// Mounting containerd Mount records on this host, as containerd's mount.All and
// mount.UnmountAll do: options split into mount(2) flags and filesystem data,
// propagation applied after, a read-only bind remounted read-only. The syscalls go
// through Berth's native addon; where the addon is not built, mount(8)/umount(8).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { promisify } from "node:util";
import type { Mount } from "./gen/containerd/types/mount.ts";
import { mount as sysMount, mountFlags, nativeAddon, umount as sysUmount, umountFlags } from "../native/index.ts";

const run = promisify(execFile);

export class MountError extends Error {
  override name = "MountError";
}

/** Whether `target` is a mount point now (by /proc/self/mountinfo). */
export function isMountPoint(target: string): boolean {
  const path = resolvePath(target);
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => {
      const mountPoint = line.split(" ")[4];
      return mountPoint !== undefined && unescape(mountPoint) === path;
    });
}

function nativeAvailable(): boolean {
  try {
    nativeAddon();
    return true;
  } catch {
    return false;
  }
}

type FlagName = keyof typeof mountFlags;

/** containerd's parseMountOptions table: option → [clears?, flags]. */
const optionFlags: Record<string, [boolean, FlagName[]]> = {
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

const propagation: Record<string, FlagName[]> = {
  private: ["MS_PRIVATE"],
  rprivate: ["MS_PRIVATE", "MS_REC"],
  shared: ["MS_SHARED"],
  rshared: ["MS_SHARED", "MS_REC"],
  slave: ["MS_SLAVE"],
  rslave: ["MS_SLAVE", "MS_REC"],
  unbindable: ["MS_UNBINDABLE"],
  runbindable: ["MS_UNBINDABLE", "MS_REC"],
};

function flagsOf(names: FlagName[]): number {
  return names.reduce((acc, name) => acc | mountFlags[name], 0);
}

function mountNative(m: Mount, target: string): void {
  let flags = 0;
  let pflags = 0;
  const data: string[] = [];
  for (const option of m.options) {
    const known = optionFlags[option];
    if (known) {
      const bits = flagsOf(known[1]);
      flags = known[0] ? flags & ~bits : flags | bits;
    } else if (propagation[option]) {
      pflags |= flagsOf(propagation[option]);
    } else {
      data.push(option);
    }
  }
  sysMount(m.source || null, target, m.type || null, flags, data.length > 0 ? data.join(",") : null);
  if (pflags !== 0) sysMount(null, target, null, pflags, null);
  const readOnlyBind = mountFlags.MS_BIND | mountFlags.MS_RDONLY;
  // A bind mount ignores MS_RDONLY until it is remounted.
  if ((flags & readOnlyBind) === readOnlyBind) sysMount(null, target, null, flags | mountFlags.MS_REMOUNT, null);
}

async function mountCommand(m: Mount, target: string): Promise<void> {
  const options = [...m.options];
  const args: string[] = [];
  if (m.type === "bind" || m.type === "rbind") {
    // mount(8) spells a bind mount as an option, not a type.
    if (!options.includes("bind") && !options.includes("rbind")) options.unshift(m.type);
  } else if (m.type) {
    args.push("-t", m.type);
  }
  if (options.length > 0) args.push("-o", options.join(","));
  args.push(m.source || "none", target);
  try {
    await run("mount", args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new MountError(`mount ${args.join(" ")}: ${stderr || (err as Error).message}`);
  }
}

/** Mounts one record on `target`. A failed mount(2) throws the addon's fs-style error (with its code). */
export async function mountOne(m: Mount, target: string): Promise<void> {
  if (nativeAvailable()) mountNative(m, target);
  else await mountCommand(m, target);
}

/** mount.All: each Mount on `target`, in order. */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  for (const m of mounts) {
    try {
      await mountOne(m, target);
    } catch (err) {
      if (err instanceof MountError) throw err;
      throw new MountError(`failed to mount ${target} (type ${m.type}, source ${m.source}, options ${m.options.join(",")}): ${(err as Error).message}`);
    }
  }
}

/**
 * mount.UnmountAll: unmount until nothing is mounted at `target` (a missing target is
 * fine). A busy mount is retried briefly; with `detachBusy` it is then detached (lazy
 * unmount) rather than reported.
 */
export async function unmountAll(target: string, options: { detachBusy?: boolean } = {}): Promise<void> {
  const native = nativeAvailable();
  for (let i = 0, busy = 0; i < 64; i++) {
    if (!native) {
      if (!isMountPoint(target)) return;
      try {
        await run("umount", [target]);
      } catch (err) {
        const stderr = (err as { stderr?: string }).stderr?.trim();
        throw new MountError(`umount ${target}: ${stderr || (err as Error).message}`);
      }
      continue;
    }
    try {
      sysUmount(target, 0);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // EINVAL: nothing (more) is mounted there.
      if (code === "EINVAL" || code === "ENOENT") return;
      if (code === "EBUSY" && busy++ < 20) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      if (code !== "EBUSY" || !options.detachBusy) throw new MountError(`failed to unmount ${target}: ${(err as Error).message}`);
      sysUmount(target, umountFlags.MNT_DETACH);
    }
  }
}
