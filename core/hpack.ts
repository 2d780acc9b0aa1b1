// HPACK (RFC 7541), as much as a client of our own gRPC sockets needs: a decoder for
// whatever the server sends (static and dynamic table, Huffman strings) and an encoder
// that writes plain literals (never indexed, never Huffman), which every decoder
// accepts and which keeps no state. Used by the direct gRPC client, which exists so
// that a short-lived CLI does not have to load node:http2 (and tls, crypto, http).

export class HpackError extends Error {
  override name = "HpackError";
}

export type HeaderList = Array<[name: string, value: string]>;

// RFC 7541 Appendix A.
const staticTable: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""],
  ["etag", ""], ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""],
  ["if-modified-since", ""], ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""],
  ["last-modified", ""], ["link", ""], ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""],
  ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""], ["retry-after", ""],
  ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""], ["transfer-encoding", ""],
  ["user-agent", ""], ["vary", ""], ["via", ""], ["www-authenticate", ""],
];

// The Huffman code's bit length for each symbol 0..256 (256 = EOS), RFC 7541
// Appendix B. The code is canonical (codes ordered by length, then symbol), so the
// lengths alone define it. Two base-36 digits per symbol would waste space: lengths
// are 5..30, written here as one character each ('a' + length - 5).
const huffmanLengths =
  "isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhfibccccccccccccccccccccccdcdioijbkabababb" +
  "baccbbbabcbaabccccckgjixprpprrrsrssssststtrstssssqrsrsstrqprrssqsrrtqrssqqrqsrssprrrsrrsvvporsruvvvwwvtu" +
  "oqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwvz";

interface CanonicalCode {
  /** Symbols ordered by code (by length, then value). */
  symbols: Uint16Array;
  /** Per bit length: how many codes have it, the first of them, and its place in `symbols`. */
  count: Int32Array;
  first: Int32Array;
  offset: Int32Array;
}

let canonical: CanonicalCode | undefined;

/** The code's tables, built on first use: a few hundred steps, no tree. */
function canonicalCode(): CanonicalCode {
  if (canonical) return canonical;
  const lengths = Array.from(huffmanLengths, (c) => c.charCodeAt(0) - 97 + 5);
  const count = new Int32Array(31);
  for (const length of lengths) count[length]!++;
  const first = new Int32Array(31);
  const offset = new Int32Array(31);
  let code = 0;
  let placed = 0;
  for (let length = 1; length <= 30; length++) {
    first[length] = code;
    offset[length] = placed;
    placed += count[length]!;
    code = (code + count[length]!) * 2;
  }
  const symbols = new Uint16Array(lengths.length);
  const next = offset.slice();
  lengths.forEach((length, symbol) => (symbols[next[length]!++] = symbol));
  canonical = { symbols, count, first, offset };
  return canonical;
}

/** A Huffman-coded string (RFC 7541 §5.2): padding must be a prefix of EOS, at most 7 bits. */
export function huffmanDecode(data: Uint8Array): string {
  const { symbols, count, first, offset } = canonicalCode();
  let out = "";
  let code = 0;
  let length = 0;
  for (const byte of data) {
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      length++;
      // In a canonical code a prefix of a longer code is never below `first`, so one
      // range check per length tells whether `code` is complete.
      const index = code - first[length]!;
      if (index >= 0 && index < count[length]!) {
        const symbol = symbols[offset[length]! + index]!;
        if (symbol === 256) throw new HpackError("Huffman string contains EOS");
        out += String.fromCharCode(symbol);
        code = 0;
        length = 0;
      } else if (length === 30) {
        throw new HpackError("invalid Huffman code");
      }
    }
  }
  if (length > 7 || code !== 2 ** length - 1) throw new HpackError("Huffman string has invalid padding");
  return out;
}

/** Reads one header block. Keeps the dynamic table between blocks, as a connection must. */
export class HpackDecoder {
  private dynamic: Array<[string, string]> = [];
  private dynamicSize = 0;
  /** What our SETTINGS allow (HEADER_TABLE_SIZE): the ceiling for size updates. */
  private readonly maxAllowed: number;
  private maxSize: number;

  constructor(maxTableSize = 4096) {
    this.maxAllowed = maxTableSize;
    this.maxSize = maxTableSize;
  }

  decode(block: Uint8Array): HeaderList {
    const headers: HeaderList = [];
    const reader = { pos: 0 };
    let fieldsSeen = false;
    while (reader.pos < block.length) {
      const first = block[reader.pos]!;
      if (first & 0x80) {
        headers.push(this.entry(readInteger(block, reader, 7)));
      } else if (first & 0x40) {
        const field = this.literal(block, reader, 6);
        this.insert(field);
        headers.push(field);
      } else if (first & 0x20) {
        // A table size update is only allowed before the block's first field.
        if (fieldsSeen) throw new HpackError("dynamic table size update after a header field");
        const size = readInteger(block, reader, 5);
        if (size > this.maxAllowed) throw new HpackError(`dynamic table size update to ${size} exceeds ${this.maxAllowed}`);
        this.maxSize = size;
        this.evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001): 4-bit index prefix.
        headers.push(this.literal(block, reader, 4));
      }
      fieldsSeen = true;
    }
    return headers;
  }

  private entry(index: number): [string, string] {
    if (index === 0) throw new HpackError("header index 0");
    if (index <= staticTable.length) {
      const [name, value] = staticTable[index - 1]!;
      return [name, value];
    }
    const entry = this.dynamic[index - staticTable.length - 1];
    if (!entry) throw new HpackError(`header index ${index} is outside the tables`);
    return [entry[0], entry[1]];
  }

  private literal(block: Uint8Array, reader: { pos: number }, prefixBits: number): [string, string] {
    const index = readInteger(block, reader, prefixBits);
    const name = index === 0 ? readString(block, reader) : this.entry(index)[0];
    return [name, readString(block, reader)];
  }

  private insert(field: [string, string]): void {
    const size = field[0].length + field[1].length + 32;
    this.evict(size);
    // An entry larger than the whole table empties it and is not added (§4.4).
    if (size <= this.maxSize) {
      this.dynamic.unshift(field);
      this.dynamicSize += size;
    }
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.dynamic.length > 0 && this.dynamicSize + room > this.maxSize) {
      const [name, value] = this.dynamic.pop()!;
      this.dynamicSize -= name.length + value.length + 32;
    }
  }
}

function readInteger(block: Uint8Array, reader: { pos: number }, prefixBits: number): number {
  if (reader.pos >= block.length) throw new HpackError("header block ends inside an integer");
  const mask = (1 << prefixBits) - 1;
  let value = block[reader.pos++]! & mask;
  if (value < mask) return value;
  for (let shift = 0; ; shift += 7) {
    if (reader.pos >= block.length) throw new HpackError("header block ends inside an integer");
    // Anything near 2^31 is an attack or garbage, never a real header length or index.
    if (shift > 21) throw new HpackError("header integer too large");
    const byte = block[reader.pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (!(byte & 0x80)) return value;
  }
}

function readString(block: Uint8Array, reader: { pos: number }): string {
  const huffman = (block[reader.pos] ?? 0) & 0x80;
  const length = readInteger(block, reader, 7);
  if (reader.pos + length > block.length) throw new HpackError("header block ends inside a string");
  const bytes = block.subarray(reader.pos, reader.pos + length);
  reader.pos += length;
  // Header octets are not UTF-8 in HTTP/2; latin1 keeps every byte as one character.
  return huffman ? huffmanDecode(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
}

function writeInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(flags | value);
    return;
  }
  out.push(flags | mask);
  value -= mask;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

function writeString(out: number[], value: string): void {
  const bytes = Buffer.from(value, "latin1");
  writeInteger(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

const staticNameIndex = new Map<string, number>();
staticTable.forEach(([name], i) => {
  if (!staticNameIndex.has(name)) staticNameIndex.set(name, i + 1);
});

/** A header block of literals without indexing (§6.2.2), names from the static table where it has them. */
export function encodeHeaders(headers: HeaderList): Buffer {
  const out: number[] = [];
  for (const [name, value] of headers) {
    const index = staticNameIndex.get(name);
    if (index !== undefined) {
      writeInteger(out, index, 4, 0);
    } else {
      out.push(0);
      writeString(out, name);
    }
    writeString(out, value);
  }
  return Buffer.from(out);
}
