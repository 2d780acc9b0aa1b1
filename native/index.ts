// Typed access to Berth's Node-API addon (native/src/berth_native.c): the syscalls Node's fs
// lacks. The addon is loaded on first use, so a process that never calls it never maps it.
// Failures throw fs-style errors: { code: "ENOENT", errno: -2, syscall: "mount", path }.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const MOUNT_FLAGS = [
  "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_SYNCHRONOUS", "MS_REMOUNT", "MS_MANDLOCK", "MS_DIRSYNC",
  "MS_NOATIME", "MS_NODIRATIME", "MS_BIND", "MS_MOVE", "MS_REC", "MS_SILENT", "MS_POSIXACL", "MS_UNBINDABLE",
  "MS_PRIVATE", "MS_SLAVE", "MS_SHARED", "MS_RELATIME", "MS_STRICTATIME", "MS_LAZYTIME",
] as const;
const UMOUNT_FLAGS = ["MNT_FORCE", "MNT_DETACH", "MNT_EXPIRE", "UMOUNT_NOFOLLOW"] as const;
const XATTR_FLAGS = ["XATTR_CREATE", "XATTR_REPLACE"] as const;
const FS_MAGIC = [
  "TMPFS_MAGIC", "RAMFS_MAGIC", "OVERLAYFS_SUPER_MAGIC", "EXT4_SUPER_MAGIC", "BTRFS_SUPER_MAGIC", "XFS_SUPER_MAGIC",
  "SQUASHFS_MAGIC", "FUSE_SUPER_MAGIC", "NFS_SUPER_MAGIC", "PROC_SUPER_MAGIC", "SYSFS_MAGIC", "CGROUP2_SUPER_MAGIC",
] as const;

const NAMESPACE_TYPES = [
  "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWNET", "CLONE_NEWPID", "CLONE_NEWUSER", "CLONE_NEWCGROUP", "CLONE_NEWTIME",
] as const;
const PIDFD_FLAGS = ["PIDFD_NONBLOCK"] as const;

type Constants<K extends string> = Readonly<Record<K, number>>;

/** A path as text, or as the raw bytes of a name that is not valid UTF-8 (as Node's fs accepts). */
export type PathArg = string | Uint8Array;

/** The raw binding, exactly as the C module exports it. Every argument is required. */
export interface NativeAddon {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount(target: string, flags: number): void;
  mknod(path: PathArg, mode: number, major: number, minor: number): void;
  statfsType(path: string): number;
  lsetxattr(path: PathArg, name: string, value: Uint8Array, flags: number): void;
  lgetxattr(path: PathArg, name: string): Buffer | null;
  llistxattr(path: PathArg): string[];
  lremovexattr(path: PathArg, name: string): void;
  mallocTrim(): boolean;
  mountFlags: Constants<(typeof MOUNT_FLAGS)[number]>;
  umountFlags: Constants<(typeof UMOUNT_FLAGS)[number]>;
  xattrFlags: Constants<(typeof XATTR_FLAGS)[number]>;
  fsMagic: Constants<(typeof FS_MAGIC)[number]>;
  pidfdOpen(pid: number, flags: number): number;
  pidfdSendSignal(fd: number, signal: number): void;
  pidfdExited(fd: number): boolean;
  pidfdWait(fd: number): Promise<void>;
  setns(fd: number, nstype: number): void;
  pipe(): [number, number];
  spawn(file: string, argv: string[], envp: string[], fds: number[]): number;
  reap(pid: number, block: boolean): ChildExit | null;
  namespaceTypes: Constants<(typeof NAMESPACE_TYPES)[number]>;
  pidfdFlags: Constants<(typeof PIDFD_FLAGS)[number]>;
  applyLayer(options: ApplyLayerOptions): Promise<ApplyLayerResult>;
  sha256Create(): Sha256;
  sha256Write(hash: Sha256, fd: number, chunks: readonly Uint8Array[]): Promise<number>;
  sha256Update(hash: Sha256, chunks: readonly Uint8Array[]): Promise<number>;
  sha256Digest(hash: Sha256): string;
}

/** A running sha256 held by the addon (an opaque handle; freed with it). */
export type Sha256 = { readonly __sha256: unique symbol };

/** How a child ended: its exit code, or the signal that killed it (code null). */
export interface ChildExit {
  code: number | null;
  /** The signal number, or 0 when it exited. */
  signal: number;
}

export interface ApplyLayerOptions {
  /** The layer blob file. */
  blob: PathArg;
  compression: "gzip" | "none";
  /** Existing directory the layer is extracted into; nothing outside it is written. */
  root: PathArg;
  /** As core/tar/apply.ts: "overlay" = root is an overlayfs upper dir. */
  whiteouts: "overlay" | "delete";
  /** overlay mode: lower dirs, topmost first, whose metadata a created parent dir takes. */
  lowers: readonly PathArg[];
  /**
   * Checked between entries: once element 0 is non-zero (Atomics.store), the apply stops
   * with error kind "cancelled". Back it with a SharedArrayBuffer, which never moves.
   */
  cancel?: Int32Array;
  /**
   * The blob file is still being written (a download's ingest) and will hold this many
   * bytes: the applier reads up to there, waiting at the file's end for more (woken by
   * inotify). The file losing its last link (the download was aborted), shrinking, or
   * `cancel` ends the wait with an error. Absent or 0: the file is complete.
   */
  growingSize?: number;
}

export interface ApplyLayerResult {
  /** "sha256:<hex>" of the blob file's bytes ("" when it could not be read to the end). */
  blobDigest: string;
  blobSize: number;
  /** "sha256:<hex>" of the uncompressed tar, trailing bytes included (the diff id). */
  diffId: string;
  size: number;
  entries: number;
  /** xattrs skipped (as the JS applier warns of them); at most 64. */
  warnings: string[];
  /** Overlay mode: as core/tar/apply.ts's ApplyResult.copyUpDirs, each name's bytes. */
  copyUpDirs: Buffer[];
  /**
   * Set when the layer was not applied. kind "invalid": the layer is bad or does not fit
   * the target; "system": the system refused; "unsupported": the kernel lacks openat2,
   * nothing was read or written; "cancelled": options.cancel was set.
   */
  error?: { kind: "invalid" | "system" | "unsupported" | "cancelled"; code: string; message: string };
}

const BUILT_ADDON = join("native", "build", "Release", "berth_native.node");

/**
 * Where the addon is: $BERTH_NATIVE_ADDON (the sanitizer build in tests), else the Release
 * build under the repository root. Walking up from this module finds the root both from
 * native/index.ts (tests run the .ts directly) and from a bundle in dist/.
 */
export function addonPath(): string {
  const override = process.env.BERTH_NATIVE_ADDON;
  if (override) return resolve(override);
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, BUILT_ADDON);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(`berth native addon not found: no ${BUILT_ADDON} in ${start} or above (npm run build builds it)`);
}

let loaded: NativeAddon | undefined;

/** The raw binding, loaded on first call. */
export function nativeAddon(): NativeAddon {
  loaded ??= createRequire(import.meta.url)(addonPath()) as NativeAddon;
  return loaded;
}

// Constant objects whose values come from the C headers, read on first property access.
function lazyConstants<K extends string>(keys: readonly K[], pick: (addon: NativeAddon) => Constants<K>): Constants<K> {
  const object = {} as Record<K, number>;
  for (const key of keys) Object.defineProperty(object, key, { enumerable: true, get: () => pick(nativeAddon())[key] });
  return Object.freeze(object);
}

/** mount(2) flags (MS_*). */
export const mountFlags = lazyConstants(MOUNT_FLAGS, (addon) => addon.mountFlags);
/** umount2(2) flags. */
export const umountFlags = lazyConstants(UMOUNT_FLAGS, (addon) => addon.umountFlags);
/** lsetxattr(2) flags. */
export const xattrFlags = lazyConstants(XATTR_FLAGS, (addon) => addon.xattrFlags);
/** statfs(2) f_type values, to tell what a path lives on. */
export const fsMagic = lazyConstants(FS_MAGIC, (addon) => addon.fsMagic);

/** mount(2). source, fstype and data may be null (bind mounts, remounts, propagation changes). */
export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  nativeAddon().mount(source, target, fstype, flags, data);
}

/** umount2(2). */
export function umount(target: string, flags = 0): void {
  nativeAddon().umount(target, flags);
}

/** mknod(2); mode includes the type bits (fs.constants.S_IFCHR, S_IFBLK, S_IFIFO). */
export function mknod(path: PathArg, mode: number, major = 0, minor = 0): void {
  nativeAddon().mknod(path, mode, major, minor);
}

/** statfs(2) f_type of the filesystem holding path (follows symlinks); compare with fsMagic. */
export function statfsType(path: string): number {
  return nativeAddon().statfsType(path);
}

/** lsetxattr(2): on the path itself, never a symlink's target. flags: xattrFlags or 0. */
export function lsetxattr(path: PathArg, name: string, value: Uint8Array, flags = 0): void {
  nativeAddon().lsetxattr(path, name, value, flags);
}

/** lgetxattr(2); null when the attribute does not exist. */
export function lgetxattr(path: PathArg, name: string): Buffer | null {
  return nativeAddon().lgetxattr(path, name);
}

/** llistxattr(2): the attribute names visible to this process. */
export function llistxattr(path: PathArg): string[] {
  return nativeAddon().llistxattr(path);
}

/** lremovexattr(2); ENODATA when absent. */
export function lremovexattr(path: PathArg, name: string): void {
  nativeAddon().lremovexattr(path, name);
}

// ---- pidfds and namespaces: for watching and signalling processes this one did not start
// (shims after a daemon restart), and entering a container's namespaces.

/** setns(2) nstype values (CLONE_NEW*). */
export const namespaceTypes = lazyConstants(NAMESPACE_TYPES, (addon) => addon.namespaceTypes);
/** pidfd_open(2) flags. */
export const pidfdFlags = lazyConstants(PIDFD_FLAGS, (addon) => addon.pidfdFlags);

/** pidfd_open(2): a close-on-exec fd naming the process (no pid-reuse race); close it with fs.closeSync. */
export function pidfdOpen(pid: number, flags = 0): number {
  return nativeAddon().pidfdOpen(pid, flags);
}

/** pidfd_send_signal(2); signal as a number (os.constants.signals). */
export function pidfdSendSignal(fd: number, signal: number): void {
  nativeAddon().pidfdSendSignal(fd, signal);
}

/** Whether the process has exited (its pidfd polls readable); never blocks. Works for any process, not only children. */
export function pidfdExited(fd: number): boolean {
  return nativeAddon().pidfdExited(fd);
}

/**
 * Resolves once the process has exited: a libuv poll handle on the event loop (no thread
 * per wait), on a duplicate of fd, so the caller may close fd meanwhile. A pending wait
 * keeps the event loop alive.
 */
export function pidfdWait(fd: number): Promise<void> {
  return nativeAddon().pidfdWait(fd);
}

/**
 * setns(2): moves the calling thread (Node's main thread) into the namespace fd refers to
 * (e.g. fs.openSync("/proc/<pid>/ns/net")). nstype 0 accepts any type. The kernel refuses
 * mount and user namespaces to a multi-threaded process, which Node always is.
 */
export function setns(fd: number, nstype = 0): void {
  nativeAddon().setns(fd, nstype);
}

/** pipe2(2) with O_CLOEXEC: [read end, write end]. */
export function pipe(): [number, number] {
  return nativeAddon().pipe();
}

/**
 * posix_spawn(3) (clone with CLONE_VM | CLONE_VFORK: no copy of this process's page
 * tables, unlike child_process's fork). Child fd i is fds[i], or /dev/null for -1; it
 * inherits no other fd, and starts with default signal dispositions and no blocked
 * signal. argv includes argv[0]; a file without "/" is looked up in PATH. Returns the
 * pid; collect the exit with reap() (native/spawn.ts does both).
 */
export function spawn(file: string, argv: string[], envp: string[], fds: number[]): number {
  return nativeAddon().spawn(file, argv, envp, fds);
}

/** waitpid(2) for a child from spawn(): its exit, or null while it runs (block false). */
export function reap(pid: number, block: boolean): ChildExit | null {
  return nativeAddon().reap(pid, block);
}

/**
 * Applies a layer blob (gzip or plain tar) to a directory on a libuv pool thread:
 * inflates it, hashes the blob and the tar, and extracts with core/tar/apply.ts's rules,
 * every path resolved by the kernel inside the root (openat2 RESOLVE_IN_ROOT). Failures
 * of the layer resolve with `error` set (the blob digest is still reported); only bad
 * arguments throw.
 */
export function applyLayer(options: ApplyLayerOptions): Promise<ApplyLayerResult> {
  return nativeAddon().applyLayer(options);
}

// ---- running sha256 hashes: the content store's ingests append and hash on a pool thread.

/** A sha256 of no bytes yet. */
export function sha256Create(): Sha256 {
  return nativeAddon().sha256Create();
}

/**
 * Appends the chunks to fd (one writev per call, short writes carried on) and adds them
 * to the hash, both on a libuv pool thread; resolves with the bytes appended. A failed
 * write rejects with an fs-style error whose `bytesWritten` says how many bytes reached
 * the file: the hash has taken exactly those. One call at a time per hash.
 */
export function sha256Write(hash: Sha256, fd: number, chunks: readonly Uint8Array[]): Promise<number> {
  return nativeAddon().sha256Write(hash, fd, chunks);
}

/** Adds the chunks to the hash on a pool thread (nothing written). */
export function sha256Update(hash: Sha256, chunks: readonly Uint8Array[]): Promise<number> {
  return nativeAddon().sha256Update(hash, chunks);
}

/** "sha256:<hex>" of the bytes so far; the hash goes on. Not while a write or update runs. */
export function sha256Digest(hash: Sha256): string {
  return nativeAddon().sha256Digest(hash);
}

/** malloc_trim(0): hands glibc's free pages back to the system; true when some were. */
export function mallocTrim(): boolean {
  return nativeAddon().mallocTrim();
}
