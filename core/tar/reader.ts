// A streaming tar reader (ustar, GNU long names, PAX) over any async byte source.
// Own parser rather than tar-stream's: PAX values stay raw bytes, because
// `SCHILY.xattr.security.capability` and friends are binary and tar-stream decodes
// every PAX value as UTF-8. Semantics follow Go's archive/tar, which wrote and reads
// most layers in the wild: header-only types carry no data whatever their size field,
// a lone zero block or a clean EOF at a header boundary ends the archive.
import { invalidArgument } from "../errors.ts";
import { byteString, displayPath } from "./byte-fs.ts";
import { ByteReader, type ByteSource } from "./byte-reader.ts";

export type TarEntryType = "file" | "link" | "symlink" | "char" | "block" | "directory" | "fifo";

export interface TarHeader {
  /** Entry name as recorded (after PAX path / GNU long name), not yet cleaned, decoded as UTF-8: for messages. */
  name: string;
  /**
   * The name's exact bytes. Names are bytes on disk and need not be UTF-8 (even PAX
   * `path`, UTF-8 by the spec, holds whatever Go's archive/tar was given): two names
   * that decode to the same text are still two files.
   */
  rawName: Buffer;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (0 for every type but "file"). */
  size: number;
  /** Seconds since the epoch, with the PAX fraction when there is one. */
  mtime: number;
  atime?: number;
  linkname: string;
  /** The link target's exact bytes (see rawName). */
  rawLinkname: Buffer;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** `SCHILY.xattr.<name>` PAX records, values as raw bytes. */
  xattrs: Map<string, Buffer>;
  /** Every PAX record of the entry, values as raw bytes. */
  pax: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** The entry's data; optional to read — the reader skips what is left. Readable once. */
  body(): AsyncGenerator<Buffer>;
}

const block = 512;

export interface TarLimits {
  /**
   * Bytes of extended headers (PAX, global PAX, GNU long name and long link payloads)
   * in front of one entry, all of them together. Go's archive/tar caps each at 1 MiB
   * and keeps only the last of a kind; merging any number of them, as PAX allows, needs
   * a cap on their sum or a few MB of gzip claim gigabytes.
   */
  perEntry: number;
  /** The same bytes summed over the whole archive: parsing work that no data stands for. */
  perArchive: number;
}

export const defaultTarLimits: TarLimits = { perEntry: 1 << 20, perArchive: 256 << 20 };
const paxXattr = "SCHILY.xattr.";

const typeByFlag: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
};

/** A NUL-terminated field's bytes, copied (the block they come from is transient). */
function cBytes(buf: Buffer, start: number, length: number): Buffer {
  const field = buf.subarray(start, start + length);
  const nul = field.indexOf(0);
  return Buffer.from(nul === -1 ? field : field.subarray(0, nul));
}

function cString(buf: Buffer, start: number, length: number): string {
  return cBytes(buf, start, length).toString("utf8");
}

/** The entry's name for a message: quoted, and cut short (a PAX path may be a megabyte). */
const quoted = (header: TarHeader) => displayPath(byteString(header.rawName));

/** Octal (space/NUL padded) or GNU base-256 numeric field. */
function numeric(buf: Buffer, start: number, length: number, what: string): number {
  const field = buf.subarray(start, start + length);
  if (field[0]! & 0x80) {
    // base-256: the first byte's high bit marks it, 0xff starts a negative number
    const negative = field[0] === 0xff;
    let value = 0n;
    for (let i = 0; i < field.length; i++) {
      let byte = BigInt(field[i]!);
      if (i === 0) byte &= 0x7fn;
      if (negative) byte ^= i === 0 ? 0x7fn : 0xffn;
      value = (value << 8n) | byte;
    }
    const result = negative ? -(value + 1n) : value;
    if (result > BigInt(Number.MAX_SAFE_INTEGER) || result < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw invalidArgument(`tar header: ${what} out of range`);
    }
    return Number(result);
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw invalidArgument(`tar header: invalid ${what} field "${text}"`);
  return parseInt(text, 8);
}

function checksumMatches(buf: Buffer): boolean {
  const recorded = numeric(buf, 148, 8, "checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < block; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : buf[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return recorded === unsigned || recorded === signed;
}

function isZeroBlock(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** PAX records "<len> <key>=<value>\n"; values are kept as bytes. */
export function parsePaxRecords(data: Buffer, into = new Map<string, Buffer>()): Map<string, Buffer> {
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1 || space - pos > 20) throw invalidArgument("tar: malformed PAX record (no length)");
    const lengthText = data.subarray(pos, space).toString("latin1");
    if (!/^[0-9]+$/.test(lengthText)) throw invalidArgument(`tar: malformed PAX record length "${lengthText}"`);
    const length = parseInt(lengthText, 10);
    const end = pos + length;
    if (length <= space - pos + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw invalidArgument("tar: malformed PAX record (bad length)");
    }
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw invalidArgument("tar: malformed PAX record (no key)");
    const key = record.subarray(0, eq).toString("utf8");
    const value = Buffer.from(record.subarray(eq + 1));
    // An empty value deletes the record (POSIX), e.g. to unset a global default.
    if (value.length === 0) into.delete(key);
    else into.set(key, value);
    pos = end;
  }
  return into;
}

/** PAX time "seconds[.fraction]" as fractional seconds. */
function paxTime(value: Buffer, key: string): number {
  const text = value.toString("latin1");
  if (!/^-?[0-9]+(\.[0-9]+)?$/.test(text)) throw invalidArgument(`tar: invalid PAX ${key} "${text}"`);
  return Number(text);
}

function paxInteger(value: Buffer, key: string): number {
  const text = value.toString("latin1");
  if (!/^[0-9]+$/.test(text)) throw invalidArgument(`tar: invalid PAX ${key} "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw invalidArgument(`tar: PAX ${key} out of range`);
  return n;
}

function decodeHeader(buf: Buffer): { flag: string; header: TarHeader } {
  if (!checksumMatches(buf)) throw invalidArgument("tar: invalid header checksum (corrupt archive, or not a tar)");
  const flag = String.fromCharCode(buf[156]!);
  let rawName = cBytes(buf, 0, 100);
  const magic = buf.subarray(257, 263).toString("latin1");
  // POSIX ustar keeps a 155-byte prefix; GNU ("ustar  ") uses that space for times.
  if (magic === "ustar\0" && buf[345] !== 0) rawName = Buffer.concat([cBytes(buf, 345, 155), Buffer.from("/"), rawName]);
  const name = rawName.toString("utf8");
  const rawLinkname = cBytes(buf, 157, 100);
  let type = typeByFlag[flag];
  if ((flag === "0" || flag === "\0") && name.endsWith("/")) type = "directory";
  const header: TarHeader = {
    name,
    rawName,
    type: type ?? "file",
    mode: numeric(buf, 100, 8, "mode") & 0o7777,
    uid: numeric(buf, 108, 8, "uid"),
    gid: numeric(buf, 116, 8, "gid"),
    size: numeric(buf, 124, 12, "size"),
    mtime: numeric(buf, 136, 12, "mtime"),
    linkname: rawLinkname.toString("utf8"),
    rawLinkname,
    uname: cString(buf, 265, 32),
    gname: cString(buf, 297, 32),
    devmajor: numeric(buf, 329, 8, "devmajor"),
    devminor: numeric(buf, 337, 8, "devminor"),
    xattrs: new Map(),
    pax: new Map(),
  };
  if (header.size < 0) throw invalidArgument(`tar: entry "${name}": negative size`);
  return { flag, header };
}

function applyPax(header: TarHeader, pax: Map<string, Buffer>): void {
  header.pax = pax;
  for (const [key, value] of pax) {
    switch (key) {
      case "path":
        header.rawName = value;
        header.name = value.toString("utf8");
        break;
      case "linkpath":
        header.rawLinkname = value;
        header.linkname = value.toString("utf8");
        break;
      case "size":
        header.size = paxInteger(value, key);
        break;
      case "uid":
        header.uid = paxInteger(value, key);
        break;
      case "gid":
        header.gid = paxInteger(value, key);
        break;
      case "uname":
        header.uname = value.toString("utf8");
        break;
      case "gname":
        header.gname = value.toString("utf8");
        break;
      case "mtime":
        header.mtime = paxTime(value, key);
        break;
      case "atime":
        header.atime = paxTime(value, key);
        break;
      default:
        if (key.startsWith(paxXattr)) header.xattrs.set(key.slice(paxXattr.length), value);
        else if (key.startsWith("GNU.sparse.")) throw invalidArgument(`tar: entry ${quoted(header)}: sparse files are not supported`);
    }
  }
}

/**
 * Reads tar entries from `source`. Read each entry's body (or leave it) before asking
 * for the next entry. Stops at the end-of-archive marker without reading further: pass
 * a ByteReader and drain() it afterwards when the trailing bytes matter (a diff id).
 */
export async function* readTar(source: ByteSource | ByteReader, limits: TarLimits = defaultTarLimits): AsyncGenerator<TarEntry> {
  const reader = source instanceof ByteReader ? source : new ByteReader(source);
  let entryExtended = 0;
  let archiveExtended = 0;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  let pax: Map<string, Buffer> | undefined;
  while (true) {
    const raw = await reader.readExact(block, "tar header");
    if (raw === null) {
      if (longName !== undefined || longLink !== undefined || pax !== undefined) {
        throw invalidArgument("tar: unexpected end of archive after an extended header");
      }
      return;
    }
    if (isZeroBlock(raw)) {
      const next = await reader.readExact(block, "tar end-of-archive marker");
      if (next !== null && !isZeroBlock(next)) throw invalidArgument("tar: invalid header (zero block followed by data)");
      return;
    }
    const { flag, header } = decodeHeader(raw);
    const padded = header.size + ((block - (header.size % block)) % block);

    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      // Checked before reading, so the bytes are never buffered.
      entryExtended += header.size;
      archiveExtended += header.size;
      if (entryExtended > limits.perEntry) {
        throw invalidArgument(`tar: extended headers of one entry total more than ${limits.perEntry} bytes (the limit)`);
      }
      if (archiveExtended > limits.perArchive) {
        throw invalidArgument(`tar: extended headers of the archive total more than ${limits.perArchive} bytes (the limit)`);
      }
      const data = header.size === 0 ? Buffer.alloc(0) : await reader.readExact(padded, "tar extended header");
      if (data === null) throw invalidArgument("tar: unexpected end of archive in an extended header");
      const payload = data.subarray(0, header.size);
      if (flag === "x") pax = parsePaxRecords(payload, pax);
      // Global PAX headers are ignored, as containerd does.
      else if (flag === "L") longName = cBytes(payload, 0, payload.length);
      else if (flag === "K") longLink = cBytes(payload, 0, payload.length);
      continue;
    }

    if (longName !== undefined) {
      header.rawName = longName;
      header.name = longName.toString("utf8");
    }
    if (longLink !== undefined) {
      header.rawLinkname = longLink;
      header.linkname = longLink.toString("utf8");
    }
    if (pax !== undefined) applyPax(header, pax);
    longName = longLink = pax = undefined;
    entryExtended = 0;

    if (!(flag in typeByFlag)) {
      throw invalidArgument(`tar: entry ${quoted(header)}: unsupported entry type '${flag.replace(/[^\x20-\x7e]/g, "?")}'`);
    }
    if (header.type !== "file") header.size = 0;
    const dataPadded = header.size + ((block - (header.size % block)) % block);

    let remaining = header.size;
    let consumed = false;
    const entry: TarEntry = {
      header,
      body: async function* () {
        if (consumed) throw new Error(`tar entry ${quoted(header)}: body already read`);
        consumed = true;
        while (remaining > 0) {
          const chunk = await reader.readSome(remaining);
          if (chunk === null) throw invalidArgument(`tar: unexpected end of archive in the data of ${quoted(header)} (truncated layer)`);
          remaining -= chunk.length;
          yield chunk;
        }
      },
    };
    yield entry;
    // Skip whatever of the data the consumer left, then the padding.
    const left = remaining + (dataPadded - header.size);
    remaining = 0;
    consumed = true;
    if (left > 0 && !(await reader.skip(left))) {
      throw invalidArgument(`tar: unexpected end of archive in the data of ${quoted(header)} (truncated layer)`);
    }
  }
}
