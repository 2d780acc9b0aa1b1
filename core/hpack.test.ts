// HPACK against a real encoder and decoder: Node's HTTP/2 server (nghttp2) decodes the
// blocks encodeHeaders writes, and HpackDecoder reads what nghttp2 writes back —
// Huffman strings over every byte a header value may hold, dynamic table references
// on a connection that repeats itself, and evictions from a full table.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { encodeHeaders, HpackDecoder, HpackError, huffmanDecode, type HeaderList } from "./hpack.ts";

/** Every octet Node lets into a header value: tab, printable ASCII and 0x80-0xff. */
const allValueBytes = String.fromCharCode(9, ...Array.from({ length: 0x7f - 0x20 }, (_, i) => 0x20 + i), ...Array.from({ length: 0x80 }, (_, i) => 0x80 + i));

describe("HPACK with nghttp2 on the other side", () => {
  let dir: string;
  let socketPath: string;
  let server: http2.Http2Server;
  const seen: http2.IncomingHttpHeaders[] = [];
  /** What the server answers with for request n (by its x-n header). */
  const responseFor = (n: number): Record<string, string> => ({
    "x-all-bytes": allValueBytes,
    "x-repeated": "the same value every time",
    "x-counter": `value ${n}`,
    // From the third response on, larger than half the 4096-byte table: each one evicts what came before.
    ...(n >= 2 ? { "x-big": `${n}`.repeat(2200) } : {}),
    "content-type": "application/grpc",
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "berth-hpack-"));
    socketPath = join(dir, "h2.sock");
    server = http2.createServer();
    server.on("stream", (stream, headers) => {
      seen.push(headers);
      stream.respond({ ":status": 200, ...responseFor(Number(headers["x-n"])) }, { endStream: true });
    });
    server.listen(socketPath);
    await once(server, "listening");
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends HEADERS frames made by encodeHeaders on one connection; returns the response header blocks in order. */
  async function exchange(requests: HeaderList[]): Promise<Buffer[]> {
    const socket: Socket = connect(socketPath);
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(stream, 5);
      return Buffer.concat([head, payload]);
    };
    const out = [Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0, Buffer.alloc(0))];
    requests.forEach((headers, i) => out.push(frame(1, 0x5, 2 * i + 1, encodeHeaders(headers))));
    socket.write(Buffer.concat(out));
    const blocks: Buffer[] = [];
    let buffered = Buffer.alloc(0);
    try {
      for await (const chunk of socket) {
        buffered = Buffer.concat([buffered, chunk as Buffer]);
        while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
          const length = buffered.readUIntBE(0, 3);
          const [type, flags] = [buffered[3]!, buffered[4]!];
          const payload = buffered.subarray(9, 9 + length);
          buffered = buffered.subarray(9 + length);
          if (type === 4 && !(flags & 1)) socket.write(frame(4, 1, 0, Buffer.alloc(0)));
          // HEADERS with END_HEADERS (nghttp2 sends these small blocks whole)
          if (type === 1) {
            assert.ok(flags & 0x4, "expected a whole header block");
            blocks.push(payload);
          }
          if (blocks.length === requests.length) return blocks;
        }
      }
    } finally {
      socket.destroy();
    }
    throw new Error(`connection closed after ${blocks.length} of ${requests.length} responses`);
  }

  const request = (n: number): HeaderList => [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/pkg.Service/Method"],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
    ["x-n", String(n)],
    ["x-latin1", "caf\u00e9 \u00ff"],
  ];

  test("the server reads encodeHeaders' blocks; the decoder reads every response on one connection", async () => {
    seen.length = 0;
    const count = 6;
    const blocks = await exchange(Array.from({ length: count }, (_, n) => request(n)));
    assert.equal(seen.length, count);
    for (const [n, headers] of seen.entries()) {
      assert.equal(headers[":path"], "/pkg.Service/Method");
      assert.equal(headers["content-type"], "application/grpc");
      assert.equal(headers["x-n"], String(n));
      // Node hands header octets over as latin1.
      assert.equal(headers["x-latin1"], "caf\u00e9 \u00ff");
    }
    const decoder = new HpackDecoder();
    let huffmanSeen = false;
    blocks.forEach((block, n) => {
      // A Huffman string has the H bit on its length octet; nghttp2 uses it when shorter.
      huffmanSeen ||= block.some((b, i) => i > 0 && (b & 0x80) !== 0);
      const decoded = new Map(decoder.decode(block));
      assert.equal(decoded.get(":status"), "200");
      for (const [name, value] of Object.entries(responseFor(n))) assert.equal(decoded.get(name), value, `${name} in response ${n}`);
    });
    assert.ok(huffmanSeen);
    // The second block is a fraction of the first: its repeated fields came from the dynamic table.
    assert.ok(blocks[1]!.length < blocks[0]!.length / 4, `block sizes ${blocks.map((b) => b.length).join(", ")}`);
  });
});

describe("HPACK bad input", () => {
  test("Huffman strings: invalid padding, EOS, a code running past 30 bits", () => {
    // "0" is the 5-bit code 00000; the remaining three bits must be ones.
    assert.equal(huffmanDecode(Buffer.from([0x07])), "0");
    assert.throws(() => huffmanDecode(Buffer.from([0x00])), (err: unknown) => err instanceof HpackError && /padding/.test(err.message));
    // Eight one-bits of padding: more than 7 bits.
    assert.throws(() => huffmanDecode(Buffer.from([0x07, 0xff])), /padding/);
    // 30 one-bits are EOS.
    assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc])), /EOS/);
  });

  test("header blocks: index 0, an index past both tables, truncation, an oversized table update", () => {
    const decoder = () => new HpackDecoder();
    assert.throws(() => decoder().decode(Buffer.from([0x80])), /index 0/);
    assert.throws(() => decoder().decode(Buffer.from([0xbe])), /outside the tables/);
    assert.throws(() => decoder().decode(Buffer.from([0xff, 0x80])), /ends inside an integer/);
    assert.throws(() => decoder().decode(Buffer.from([0x00, 0x05, 0x61])), /ends inside a string/);
    assert.throws(() => decoder().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), /too large/);
    // Size update to 8192 (0x3f, then 8192 - 31 = 8161 as 0xe1 0x3f) beyond the 4096 we allow.
    assert.throws(() => decoder().decode(Buffer.from([0x3f, 0xe1, 0x3f])), /exceeds 4096/);
    // A size update after a field.
    assert.throws(() => decoder().decode(Buffer.from([0x88, 0x20])), /after a header field/);
  });

  test("a table size update to 0 empties the dynamic table", () => {
    const decoder = new HpackDecoder();
    // literal with incremental indexing, new name "a" = "b"; then index 62 refers to it
    assert.deepEqual(decoder.decode(Buffer.from([0x40, 0x01, 0x61, 0x01, 0x62, 0xbe])), [["a", "b"], ["a", "b"]]);
    assert.throws(() => decoder.decode(Buffer.from([0x20, 0xbe])), /outside the tables/);
  });
});
