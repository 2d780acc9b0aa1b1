// Tar header encoding (ustar, with PAX records only for what ustar cannot hold, as Go's
// archive/tar writes FormatPAX) and a streaming packer. PAX values are bytes, so binary
// xattrs (security.capability) survive, and so are names: a Buffer name is written as
// its exact bytes (in a PAX path record when not ASCII, as Go does), UTF-8 or not.
import { failedPrecondition, invalidArgument } from "../errors.ts";
import { byteString, displayPath } from "./byte-fs.ts";
import type { TarEntryType } from "./reader.ts";

export interface TarWriteHeader {
  /** Text (written as UTF-8) or the name's exact bytes. */
  name: string | Buffer;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Data size; only "file" entries carry data. */
  size?: number;
  /** Seconds since the epoch (the fraction, if any, is dropped: canonical layers use whole seconds). */
  mtime: number;
  /** Text (written as UTF-8) or the target's exact bytes. */
  linkname?: string | Buffer;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer>;
}

const block = 512;
const typeFlags: Record<TarEntryType, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  directory: "5",
  fifo: "6",
};

/** The two zero blocks that end an archive. */
export const endOfArchive: Buffer = Buffer.alloc(2 * block);

/** Zero bytes that pad `size` bytes of data up to the next block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((block - (size % block)) % block);
}

const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);
const isAsciiBytes = (b: Buffer) => b.every((byte) => byte < 0x80);
const asBytes = (value: string | Buffer): Buffer => (typeof value === "string" ? Buffer.from(value, "utf8") : value);

function octalFits(value: number, width: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value < 8 ** (width - 1);
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, "0") + "\0", offset, width, "latin1");
}

function writeString(buf: Buffer, offset: number, width: number, value: string): void {
  buf.write(value, offset, width, "utf8");
}

function checksum(buf: Buffer): void {
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < block; i++) sum += buf[i]!;
  buf.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
}

interface UstarName {
  prefix: Buffer;
  name: Buffer;
}

/** Splits a long name into ustar prefix (≤155) + name (≤100) at a slash; undefined if it cannot. */
function splitUstarName(name: Buffer): UstarName | undefined {
  if (name.length <= 100) return { prefix: Buffer.alloc(0), name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    const prefix = name.subarray(0, i);
    const rest = name.subarray(i + 1);
    if (rest.length > 0 && rest.length <= 100 && prefix.length <= 155) return { prefix, name: rest };
  }
  return undefined;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const tail = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), value, Buffer.from("\n")]);
  let length = tail.length + 1;
  while (String(length).length + tail.length !== length) length = String(length).length + tail.length;
  return Buffer.concat([Buffer.from(String(length), "latin1"), tail]);
}

function ustarBlock(h: TarWriteHeader, flag: string, name: UstarName, size: number, linkname: Buffer): Buffer {
  const buf = Buffer.alloc(block);
  name.name.copy(buf, 0, 0, Math.min(100, name.name.length));
  writeOctal(buf, 100, 8, h.mode & 0o7777);
  writeOctal(buf, 108, 8, octalFits(h.uid, 8) ? h.uid : 0);
  writeOctal(buf, 116, 8, octalFits(h.gid, 8) ? h.gid : 0);
  writeOctal(buf, 124, 12, octalFits(size, 12) ? size : 0);
  const mtime = Math.floor(h.mtime);
  writeOctal(buf, 136, 12, octalFits(mtime, 12) ? mtime : 0);
  buf.write(flag, 156, 1, "latin1");
  linkname.copy(buf, 157, 0, Math.min(100, linkname.length));
  buf.write("ustar\x0000", 257, 8, "latin1");
  const uname = h.uname ?? "";
  const gname = h.gname ?? "";
  if (isAscii(uname) && uname.length <= 32) writeString(buf, 265, 32, uname);
  if (isAscii(gname) && gname.length <= 32) writeString(buf, 297, 32, gname);
  if (h.type === "char" || h.type === "block") {
    writeOctal(buf, 329, 8, octalFits(h.devmajor ?? 0, 8) ? h.devmajor ?? 0 : 0);
    writeOctal(buf, 337, 8, octalFits(h.devminor ?? 0, 8) ? h.devminor ?? 0 : 0);
  }
  name.prefix.copy(buf, 345, 0, Math.min(155, name.prefix.length));
  checksum(buf);
  return buf;
}

/** An entry's name as error messages show it (built only when one is thrown). */
const shownName = (name: string | Buffer) => displayPath(byteString(asBytes(name)));

/** The header blocks of one entry: a PAX header first when ustar cannot hold a field. */
export function encodeHeader(h: TarWriteHeader): Buffer {
  const flag = typeFlags[h.type];
  if (flag === undefined) throw invalidArgument(`tar: cannot write entry type "${h.type}"`);
  const nameBytes = asBytes(h.name);
  if (nameBytes.length === 0 || nameBytes.includes(0)) throw invalidArgument(`tar: invalid entry name ${shownName(h.name)}`);
  const size = h.type === "file" ? (h.size ?? 0) : 0;
  const linkname = asBytes(h.linkname ?? "");
  if (linkname.includes(0)) throw invalidArgument(`tar: entry ${shownName(h.name)}: NUL byte in the link target`);
  const records = new Map<string, Buffer>();

  let name = isAsciiBytes(nameBytes) ? splitUstarName(nameBytes) : undefined;
  if (!name) {
    records.set("path", nameBytes);
    name = { prefix: Buffer.alloc(0), name: asciiTruncate(nameBytes, 100) };
  }
  let link = linkname;
  if (!isAsciiBytes(linkname) || linkname.length > 100) {
    records.set("linkpath", linkname);
    link = asciiTruncate(linkname, 100);
  }
  if (!octalFits(h.uid, 8)) records.set("uid", Buffer.from(String(h.uid)));
  if (!octalFits(h.gid, 8)) records.set("gid", Buffer.from(String(h.gid)));
  if (!octalFits(size, 12)) records.set("size", Buffer.from(String(size)));
  const mtime = Math.floor(h.mtime);
  if (!octalFits(mtime, 12)) records.set("mtime", Buffer.from(String(mtime)));
  if (h.uname && (!isAscii(h.uname) || h.uname.length > 32)) records.set("uname", Buffer.from(h.uname, "utf8"));
  if (h.gname && (!isAscii(h.gname) || h.gname.length > 32)) records.set("gname", Buffer.from(h.gname, "utf8"));
  if (h.type === "char" || h.type === "block") {
    if (!octalFits(h.devmajor ?? 0, 8) || !octalFits(h.devminor ?? 0, 8)) {
      throw invalidArgument(`tar: entry ${shownName(h.name)}: device number too large for a tar header`);
    }
  }
  for (const [key, value] of h.xattrs ?? []) records.set(`SCHILY.xattr.${key}`, value);

  const main = ustarBlock(h, flag, name, size, link);
  if (records.size === 0) return main;
  const body = Buffer.concat([...records.keys()].sort().map((key) => paxRecord(key, records.get(key)!)));
  // Same naming as Go: <dir>/PaxHeaders.0/<base>, cut to fit.
  const trimmed = byteString(nameBytes).replace(/\/$/, "");
  const slash = trimmed.lastIndexOf("/");
  const paxName = asciiTruncate(Buffer.from(`${trimmed.slice(0, slash + 1)}PaxHeaders.0/${trimmed.slice(slash + 1)}`, "latin1"), 100);
  const paxHeader = ustarBlock(
    { name: paxName, type: "file", mode: h.mode, uid: 0, gid: 0, mtime: 0 },
    "x",
    { prefix: Buffer.alloc(0), name: paxName },
    body.length,
    Buffer.alloc(0),
  );
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

/** The printable-ASCII stand-in ustar carries when the real name is in a PAX record. */
function asciiTruncate(name: Buffer, bytes: number): Buffer {
  // Decoded as UTF-8 so a multi-byte character stays one "_" (invalid bytes become one each).
  return Buffer.from(name.toString("utf8").replace(/[^\x20-\x7e]/g, "_").slice(0, bytes), "latin1");
}

export interface PackEntry {
  header: TarWriteHeader;
  /** Data of a "file" entry; must yield exactly header.size bytes. */
  body?: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Streams an archive: headers, data, padding, and the end-of-archive marker. */
export async function* packTar(entries: AsyncIterable<PackEntry> | Iterable<PackEntry>): AsyncGenerator<Buffer> {
  for await (const entry of entries) {
    const h = entry.header;
    yield encodeHeader(h);
    const size = h.type === "file" ? (h.size ?? 0) : 0;
    if (size === 0) continue;
    if (!entry.body) throw invalidArgument(`tar: entry ${shownName(h.name)} has ${size} bytes but no data`);
    let written = 0;
    for await (const chunk of entry.body()) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (written + buf.length > size) throw failedPrecondition(`tar: entry ${shownName(h.name)} grew beyond ${size} bytes while being archived`);
      written += buf.length;
      yield buf;
    }
    if (written !== size) throw failedPrecondition(`tar: entry ${shownName(h.name)} shrank to ${written} of ${size} bytes while being archived`);
    yield padding(size);
  }
  yield endOfArchive;
}
