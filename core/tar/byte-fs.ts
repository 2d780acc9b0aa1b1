// File names on Linux are bytes, and layers carry names that are not valid UTF-8
// (`f\xff`, `f\xfe`): decoded to text, both would become the same "f\uFFFD" and two files
// one. Layer code therefore keeps every path as a byte string — one char per byte, the
// latin1 decoding, which is lossless — so path.join, split("/") and ordering work
// unchanged ("/" and "." are ASCII; comparing chars 0-255 is comparing bytes), and
// reaches the filesystem only through the functions here, which hand the kernel the
// exact bytes as a Buffer. Synchronous on purpose: see apply.ts.
import {
  chmodSync,
  createReadStream,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  type BigIntStats,
  type ReadStream,
  type Stats,
  type TimeLike,
} from "node:fs";

/** The byte string of raw name bytes. */
export const byteString = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");

/** The byte string of an ordinary (UTF-8) JS string, e.g. a root dir given by a caller. */
export const byteStringOf = (text: string): string => Buffer.from(text, "utf8").toString("latin1");

/** The bytes a byte string stands for, as the kernel gets them. */
export const rawPath = (path: string): Buffer => Buffer.from(path, "latin1");

/** A byte string as readable text for messages (invalid UTF-8 shows as U+FFFD), cut to a sane length. */
export function displayPath(path: string, max = 256): string {
  const text = rawPath(path).toString("utf8");
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

export function lstat(path: string): Stats | undefined {
  return lstatSync(rawPath(path), { throwIfNoEntry: false });
}

export function lstatBig(path: string): BigIntStats {
  return lstatSync(rawPath(path), { bigint: true });
}

export function readdir(path: string): string[] {
  return readdirSync(rawPath(path), { encoding: "buffer" }).map(byteString);
}

export function readlink(path: string): string {
  return byteString(readlinkSync(rawPath(path), { encoding: "buffer" }));
}

export function realpath(path: string): string {
  return byteString(realpathSync(rawPath(path), { encoding: "buffer" }));
}

export const mkdir = (path: string, mode: number): void => void mkdirSync(rawPath(path), mode);
export const open = (path: string, flags: number, mode?: number): number => openSync(rawPath(path), flags, mode);
export const symlink = (target: string, path: string): void => symlinkSync(rawPath(target), rawPath(path));
export const link = (existing: string, path: string): void => linkSync(rawPath(existing), rawPath(path));
export const lchown = (path: string, uid: number, gid: number): void => lchownSync(rawPath(path), uid, gid);
export const chmod = (path: string, mode: number): void => chmodSync(rawPath(path), mode);
export const lutimes = (path: string, atime: TimeLike, mtime: TimeLike): void => lutimesSync(rawPath(path), atime, mtime);
export const rm = (path: string): void => rmSync(rawPath(path), { recursive: true, force: true });
export const readStream = (path: string, highWaterMark: number): ReadStream => createReadStream(rawPath(path), { highWaterMark });
