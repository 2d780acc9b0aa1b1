// The Content service with a leaner codec for the two messages that carry blob bytes
// (WriteContentRequest, ReadContentResponse). The generated code copies every `data`
// field on decode (Buffer.from) and, on encode, grows a zero-filled buffer by doubling,
// copies the bytes in and slices them out again: three copies and a 2 MiB allocation
// per 1 MiB message, in every process a layer passes through, and most of the content
// service's garbage collection while a layer streams. Here decode keeps a view of the
// received message (grpc-js gives each message a buffer of its own) and encode copies
// the bytes once. Same wire format, same message objects; every other message and
// method is the generated one.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  ContentDefinition,
  ReadContentResponse,
  WriteContentRequest,
} from "./gen/containerd/services/content/v1/content.ts";

const empty = Buffer.alloc(0);
const writeDataField = 6;
const readOffsetTag = (1 << 3) | WireType.Varint;
const readDataTag = (2 << 3) | WireType.LengthDelimited;

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    length++;
  }
  return length;
}

function putVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `head`, then `data` as a length-delimited field `tag`: one copy of the bytes. */
function appendBytesField(head: Uint8Array, tag: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(head.length + varintLength(tag) + varintLength(data.length) + data.length);
  out.set(head, 0);
  let at = putVarint(out, head.length, tag);
  at = putVarint(out, at, data.length);
  out.set(data, at);
  return out;
}

/**
 * nice-grpc hands grpc-js `Buffer.from(encoded)`, which copies a Buffer: a second copy
 * of every blob byte in the process that encodes. Buffer.from(object) takes
 * object.valueOf() when that is another object (documented), and Buffer.from of an
 * ArrayBuffer is a view: so a message that owns its whole ArrayBuffer (every one over
 * 4 KiB from allocUnsafe does) is handed over as it is.
 */
function withoutCopy(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    Object.defineProperty(bytes, "valueOf", { value: () => bytes.buffer });
  }
  return bytes;
}

const finished = (bytes: Uint8Array) => ({ finish: () => bytes });

function encodeWriteRequest(message: WriteContentRequest) {
  const head = WriteContentRequest.encode({ ...message, data: empty }).finish();
  if (message.data.length === 0) return finished(head);
  return finished(withoutCopy(appendBytesField(head, (writeDataField << 3) | WireType.LengthDelimited, message.data)));
}

function decodeWriteRequest(input: BinaryReader | Uint8Array, length?: number): WriteContentRequest {
  if (input instanceof BinaryReader) return WriteContentRequest.decode(input, length);
  const buf = asBuffer(input);
  const reader = new BinaryReader(buf);
  // Every field but `data` is decoded by the generated code; `data` stays a view.
  const rest: Buffer[] = [];
  let data: Buffer | undefined;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [field, wireType] = reader.tag();
    if (field === writeDataField && wireType === WireType.LengthDelimited) {
      data = asBuffer(reader.bytes());
      continue;
    }
    reader.skip(wireType, field);
    rest.push(buf.subarray(start, reader.pos));
  }
  const message = WriteContentRequest.decode(rest.length === 1 ? rest[0]! : Buffer.concat(rest));
  if (data) message.data = data;
  return message;
}

function encodeReadResponse(message: ReadContentResponse) {
  const offset = message.offset;
  if (offset < 0n || offset > BigInt(Number.MAX_SAFE_INTEGER)) return ReadContentResponse.encode(message);
  let head = empty;
  if (offset !== 0n) {
    head = Buffer.allocUnsafe(1 + varintLength(Number(offset)));
    putVarint(head, putVarint(head, 0, readOffsetTag), Number(offset));
  }
  if (message.data.length === 0) return finished(head);
  return finished(withoutCopy(appendBytesField(head, readDataTag, message.data)));
}

function decodeReadResponse(input: BinaryReader | Uint8Array, length?: number): ReadContentResponse {
  if (input instanceof BinaryReader) return ReadContentResponse.decode(input, length);
  const reader = new BinaryReader(asBuffer(input));
  const message: ReadContentResponse = { offset: 0n, data: empty };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) message.offset = reader.int64() as bigint;
    else if (field === 2 && wireType === WireType.LengthDelimited) message.data = asBuffer(reader.bytes());
    else reader.skip(wireType, field);
  }
  return message;
}

const writeRequestType = {
  ...WriteContentRequest,
  encode: encodeWriteRequest as unknown as typeof WriteContentRequest.encode,
  decode: decodeWriteRequest,
};

const readResponseType = {
  ...ReadContentResponse,
  encode: encodeReadResponse as unknown as typeof ReadContentResponse.encode,
  decode: decodeReadResponse,
};

/** ContentDefinition with the bulk codec: use it for the server and for clients that move blobs. */
export const BulkContentDefinition: ContentDefinition = {
  ...ContentDefinition,
  methods: {
    ...ContentDefinition.methods,
    read: { ...ContentDefinition.methods.read, responseType: readResponseType },
    write: { ...ContentDefinition.methods.write, requestType: writeRequestType },
  },
};
