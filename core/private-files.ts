// What berthd keeps under its root and state (image layers, metadata, redis' files,
// pid files) is for its owner only, as containerd's 0700 root is: no other local user
// may read a layer or the metadata. The modes are set explicitly rather than left to
// the umask, and an entry left by an older, laxer version is tightened on start-up.
import { chmodSync, closeSync, constants, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";

const privateDirMode = 0o700;
export const privateFileMode = 0o600;

/** Creates `dir` (and missing parents, which the umask can only make stricter) as 0700; an existing one is set to 0700. */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: privateDirMode });
  chmodSync(dir, privateDirMode);
}

/**
 * Creates `dir` (and missing parents) with exactly `mode` when it is missing. An existing
 * one keeps its mode: a root or state dir the administrator made is theirs to set.
 */
export function makeTopDir(dir: string, mode: number): void {
  if (mkdirSync(dir, { recursive: true, mode }) !== undefined) chmodSync(dir, mode);
}

/** Creates `file` empty as 0600 when it is missing; an existing one is set to 0600. Its content is left alone. */
export function ensurePrivateFile(file: string): void {
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, privateFileMode);
  try {
    fchmodSync(fd, privateFileMode);
  } finally {
    closeSync(fd);
  }
}

/** Sets `file` to 0600 if it exists. */
export function tightenIfPresent(file: string): void {
  if (existsSync(file)) chmodSync(file, privateFileMode);
}

/**
 * Replaces `file` with `data` crash-safely (temp file, fsync, rename), as 0600.
 * `durable: false` skips the fsync, for a file nothing reads after a crash of the machine
 * (a reader still sees the old file or the whole new one while the machine runs).
 */
export function writePrivateFile(file: string, data: string | Buffer, options: { durable?: boolean } = {}): void {
  const temp = `${file}.tmp`;
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, privateFileMode);
  try {
    // The temp file may be a leftover of a crash, with whatever mode it had.
    fchmodSync(fd, privateFileMode);
    for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    if (options.durable !== false) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
}
