// The few syscalls layer code needs beyond node:fs, as an interface so core/tar does
// not load the native addon itself: a process passes native/index.ts (or a subset).
// Paths are Buffers: layer file names are bytes, not necessarily UTF-8 (./byte-fs.ts).
export interface LayerSys {
  /** mknod(2); mode includes the S_IF* type bits. */
  mknod(path: Buffer, mode: number, major: number, minor: number): void;
  lsetxattr(path: Buffer, name: string, value: Uint8Array, flags: number): void;
  /** null when the attribute is absent. */
  lgetxattr(path: Buffer, name: string): Buffer | null;
  llistxattr(path: Buffer): string[];
}

/** The overlayfs names: whiteout = char device 0:0, opaque dir = this xattr set to "y". */
export const overlayOpaqueXattr = "trusted.overlay.opaque";
export const overlayXattrPrefix = "trusted.overlay.";

/** OCI whiteout file names. */
export const whiteoutPrefix = ".wh.";
export const whiteoutMetaPrefix = ".wh..wh.";
export const whiteoutOpaque = ".wh..wh..opq";

export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/** Linux dev_t (as from stat's rdev) → major/minor, glibc's encoding. */
export function splitDevice(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major & 0xffffffffn), minor: Number(minor & 0xffffffffn) };
}
