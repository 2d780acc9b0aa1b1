// gRPC calls on a unix socket, speaking HTTP/2 (h2c, prior knowledge) directly over
// node:net. It exists for start-up time: grpc-js and node:http2 together take most of
// a short CLI command's run (node:http2 alone pulls in tls, crypto and http), while
// this needs net and a few hundred lines. It serves unary and server-streaming calls
// with requests of up to 64 KiB, any number at once on one connection; client and
// bidirectional streams (and larger requests) go to a fallback client (grpc-js).
// No trace context is sent: the CLIs that use it do not trace.
import { connect, type Socket } from "node:net";
import { ClientError, Status } from "nice-grpc-common";
import { encodeHeaders, HpackDecoder, type HeaderList } from "./hpack.ts";
import { maxMessageBytes } from "./grpc-status.ts";

const frameType = { data: 0, headers: 1, rstStream: 3, settings: 4, pushPromise: 5, ping: 6, goaway: 7, windowUpdate: 8, continuation: 9 } as const;
const flag = { endStream: 0x1, ack: 0x1, endHeaders: 0x4, padded: 0x8, priority: 0x20 } as const;
const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** The largest window HTTP/2 allows: the connection as a whole never holds the server back. */
const maxWindow = 2 ** 31 - 1;
/** What one stream may have unread: the limit on what a slow reader of a stream buffers. */
const streamWindow = 8 * 1024 * 1024;
/** Received bytes worth a WINDOW_UPDATE. */
const windowUpdateThreshold = 1024 * 1024;
/** The server's initial windows until its SETTINGS say otherwise: requests stay below. */
const defaultWindow = 65_535;
/** What a peer may send in one frame until its SETTINGS say otherwise (and what we send at most). */
const defaultMaxFrame = 16_384;
const errorCodeCancel = 0x8;

export class DirectGrpcError extends Error {
  override name = "DirectGrpcError";
}

/** Whether the direct client can send this request (larger ones go to the fallback). */
const fitsDirectRequest = (request: Uint8Array) => request.length + 5 <= defaultWindow;

function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment);
  return frame(frameType.windowUpdate, 0, streamId, payload);
}

/** Call metadata: plain pairs, or nice-grpc's Metadata (an iterable of [key, values]). */
type MetadataInput = Record<string, string> | Iterable<[string, Array<string | Uint8Array>]>;

function metadataHeaders(metadata: MetadataInput | undefined): HeaderList {
  if (!metadata) return [];
  const entries: Iterable<[string, Array<string | Uint8Array>]> =
    Symbol.iterator in metadata ? metadata : Object.entries(metadata).map(([k, v]): [string, string[]] => [k, [v]]);
  const headers: HeaderList = [];
  for (const [key, values] of entries) {
    const name = key.toLowerCase();
    // The request's own headers are ours to set.
    if (name.startsWith(":") || name === "content-type" || name === "te") continue;
    for (const value of values) headers.push([name, typeof value === "string" ? value : Buffer.from(value).toString("base64")]);
  }
  return headers;
}

interface CallHandlers {
  onMessage(message: Buffer): void;
  /** The call is over: successfully without `error`. */
  onEnd(error?: unknown): void;
  /** Return window as soon as bytes arrive (a unary call's reader takes everything at once). */
  acknowledgeOnReceipt: boolean;
}

interface PendingCall extends CallHandlers {
  path: string;
  /** Header blocks seen so far: the response headers, then the trailers. */
  headerBlocks: HeaderList[];
  /** Received bytes of messages not complete yet. */
  chunks: Buffer[];
  chunkBytes: number;
  /** Received bytes not yet returned to the server as stream window. */
  credit: number;
  cleanup(): void;
}

/** grpc-message is percent-encoded (gRPC over HTTP/2, "Status-Message"). */
function decodeGrpcMessage(value: string | undefined): string {
  if (!value) return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

const headerValue = (headers: HeaderList, name: string) => headers.find(([n]) => n === name)?.[1];

/** One HTTP/2 connection to a gRPC server on a unix socket; opened on the first call. */
export class DirectChannel {
  readonly address: string;
  private socket: Socket | undefined;
  private readonly calls = new Map<number, PendingCall>();
  private nextStreamId = 1;
  private readonly decoder = new HpackDecoder();
  private buffered: Buffer = Buffer.alloc(0);
  /** Set once the connection failed or closed: every later call fails with it. */
  private failure: Error | undefined;
  /** A header block split over HEADERS and CONTINUATION frames, until END_HEADERS; nothing else may come between. */
  private headerBlock: { streamId: number; fragments: Buffer[]; endStream: boolean } | undefined;
  /** Received bytes not yet returned to the server as connection window. */
  private connectionCredit = 0;

  constructor(address: string) {
    this.address = address;
  }

  /** Sends one request message and resolves with the response message, or rejects (ClientError for gRPC statuses). */
  unary(path: string, request: Uint8Array, metadata?: MetadataInput, signal?: AbortSignal): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const messages: Buffer[] = [];
      this.open(path, request, metadata, signal, {
        acknowledgeOnReceipt: true,
        onMessage: (message) => messages.push(message),
        onEnd: (error) => {
          if (error !== undefined) reject(error);
          else if (messages.length === 1) resolve(messages[0]!);
          else reject(new ClientError(path, Status.INTERNAL, `expected one response message, got ${messages.length}`));
        },
      });
    });
  }

  /**
   * Sends one request message and yields the response messages as they arrive. The
   * server is held back (stream window) while the reader lags; leaving the loop early
   * cancels the call.
   */
  async *serverStream(path: string, request: Uint8Array, metadata?: MetadataInput, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const queue: Buffer[] = [];
    let ended = false;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const streamId = this.open(path, request, metadata, signal, {
      acknowledgeOnReceipt: false,
      onMessage: (message) => {
        queue.push(message);
        wake?.();
      },
      onEnd: (error) => {
        ended = true;
        failure = error;
        wake?.();
      },
    });
    try {
      while (true) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (ended) {
          if (failure !== undefined) throw failure;
          return;
        }
        // The reader has caught up: let the server send more.
        this.acknowledge(streamId);
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      if (!ended) this.cancel(streamId);
    }
  }

  /** Ends the connection; calls still running fail. */
  close(): void {
    const socket = this.socket;
    if (!socket) return;
    this.fail(new DirectGrpcError("channel closed"), true);
    const goaway = Buffer.alloc(8);
    socket.end(frame(frameType.goaway, 0, 0, goaway));
    // Exiting need not wait for the server to close its side.
    socket.unref();
  }

  /** Starts a call: HEADERS and the request in DATA frames. Throws (before sending anything) when it cannot. */
  private open(path: string, request: Uint8Array, metadata: MetadataInput | undefined, signal: AbortSignal | undefined, handlers: CallHandlers): number {
    if (!fitsDirectRequest(request)) throw new DirectGrpcError(`${path}: a request of ${request.length} bytes is too large for the direct client`);
    if (signal?.aborted) throw signal.reason;
    if (this.failure) throw this.unavailable(path, this.failure);
    const block = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ...metadataHeaders(metadata),
    ]);
    if (block.length > defaultMaxFrame) throw new DirectGrpcError(`${path}: request metadata too large for the direct client`);
    const socket = this.connection();
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    const onAbort = () => {
      const call = this.calls.get(streamId);
      if (!call) return;
      this.cancel(streamId);
      call.onEnd(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.calls.set(streamId, {
      ...handlers,
      path,
      headerBlocks: [],
      chunks: [],
      chunkBytes: 0,
      credit: 0,
      cleanup: () => signal?.removeEventListener("abort", onAbort),
    });
    const message = Buffer.alloc(5 + request.length);
    message.writeUInt32BE(request.length, 1);
    message.set(request, 5);
    const out = [frame(frameType.headers, flag.endHeaders, streamId, block)];
    for (let off = 0; off < message.length; off += defaultMaxFrame) {
      const end = Math.min(off + defaultMaxFrame, message.length);
      out.push(frame(frameType.data, end === message.length ? flag.endStream : 0, streamId, message.subarray(off, end)));
    }
    socket.write(Buffer.concat(out));
    return streamId;
  }

  /** Drops a call and tells the server (RST_STREAM CANCEL); its handlers are not called. */
  private cancel(streamId: number): void {
    const call = this.calls.get(streamId);
    if (!call) return;
    this.end(streamId, call);
    if (this.failure) return;
    const code = Buffer.alloc(4);
    code.writeUInt32BE(errorCodeCancel);
    this.socket?.write(frame(frameType.rstStream, 0, streamId, code));
  }

  /** Returns what a stream's reader has taken to the server's window for it. */
  private acknowledge(streamId: number): void {
    const call = this.calls.get(streamId);
    if (!call || call.credit === 0 || this.failure) return;
    this.socket?.write(windowUpdate(streamId, call.credit));
    call.credit = 0;
  }

  private end(streamId: number, call: PendingCall): void {
    this.calls.delete(streamId);
    call.cleanup();
  }

  private connection(): Socket {
    if (this.socket) return this.socket;
    const socket = connect(this.address);
    this.socket = socket;
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(streamWindow, 8);
    // Written before the connection is up; net sends it once connected.
    socket.write(Buffer.concat([preface, frame(frameType.settings, 0, 0, settings), windowUpdate(0, maxWindow - defaultWindow)]));
    socket.on("data", (chunk: Buffer) => {
      try {
        this.receive(chunk);
      } catch (err) {
        this.fail(err as Error);
        socket.destroy();
      }
    });
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new DirectGrpcError("connection closed by the server")));
    return socket;
  }

  private unavailable(path: string, cause: Error): ClientError {
    return new ClientError(path, Status.UNAVAILABLE, cause.message);
  }

  /** Ends every call with err: as it is when `asIs`, else as UNAVAILABLE naming the call. */
  private fail(err: Error, asIs = false): void {
    this.failure ??= err;
    for (const [id, call] of this.calls) {
      this.end(id, call);
      call.onEnd(asIs ? err : this.unavailable(call.path, err));
    }
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    let offset = 0;
    while (this.buffered.length - offset >= 9) {
      const length = this.buffered.readUIntBE(offset, 3);
      // Our SETTINGS keep the default maximum frame size.
      if (length > defaultMaxFrame) throw new DirectGrpcError(`server sent a ${length}-byte frame (limit ${defaultMaxFrame})`);
      if (this.buffered.length - offset < 9 + length) break;
      const type = this.buffered[offset + 3]!;
      const flags = this.buffered[offset + 4]!;
      const streamId = this.buffered.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = this.buffered.subarray(offset + 9, offset + 9 + length);
      offset += 9 + length;
      this.onFrame(type, flags, streamId, payload);
    }
    this.buffered = this.buffered.subarray(offset);
    if (this.connectionCredit >= windowUpdateThreshold && !this.failure) {
      this.socket!.write(windowUpdate(0, this.connectionCredit));
      this.connectionCredit = 0;
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock && (type !== frameType.continuation || streamId !== this.headerBlock.streamId)) {
      throw new DirectGrpcError("header block interrupted by another frame");
    }
    switch (type) {
      case frameType.settings:
        if (!(flags & flag.ack)) this.socket!.write(frame(frameType.settings, flag.ack, 0));
        return;
      case frameType.ping:
        if (!(flags & flag.ack)) this.socket!.write(frame(frameType.ping, flag.ack, 0, payload));
        return;
      case frameType.goaway: {
        const lastStream = payload.readUInt32BE(0) & 0x7fffffff;
        const err = new DirectGrpcError(`server sent GOAWAY (code ${payload.readUInt32BE(4)})`);
        this.failure ??= err;
        // Streams above lastStream were never processed; the ones below still finish.
        for (const [id, call] of this.calls) {
          if (id > lastStream) {
            this.end(id, call);
            call.onEnd(this.unavailable(call.path, err));
          }
        }
        return;
      }
      case frameType.rstStream: {
        const call = this.calls.get(streamId);
        if (!call) return;
        this.end(streamId, call);
        const code = payload.readUInt32BE(0);
        call.onEnd(new ClientError(call.path, code === errorCodeCancel ? Status.CANCELLED : Status.INTERNAL, `stream reset by the server (HTTP/2 error ${code})`));
        return;
      }
      case frameType.pushPromise:
        throw new DirectGrpcError("server pushed a stream although push is disabled");
      case frameType.headers:
      case frameType.continuation:
        this.onHeaderFragment(type, flags, streamId, payload);
        return;
      case frameType.data:
        this.onData(flags, streamId, payload);
        return;
      default:
        // WINDOW_UPDATE (our requests fit the initial window), PRIORITY, unknown types.
        return;
    }
  }

  private onHeaderFragment(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (type === frameType.headers) {
      let start = 0;
      let end = payload.length;
      if (flags & flag.padded) {
        end -= payload[0] ?? 0;
        start = 1;
      }
      if (flags & flag.priority) start += 5;
      if (start > end) throw new DirectGrpcError("malformed HEADERS frame");
      this.headerBlock = { streamId, fragments: [payload.subarray(start, end)], endStream: Boolean(flags & flag.endStream) };
    } else {
      if (!this.headerBlock) throw new DirectGrpcError("CONTINUATION without HEADERS");
      this.headerBlock.fragments.push(payload);
    }
    if (!(flags & flag.endHeaders)) return;
    const block = this.headerBlock!;
    this.headerBlock = undefined;
    // The decoder must see every block, also for streams we gave up on, or its table goes out of sync.
    const headers = this.decoder.decode(Buffer.concat(block.fragments));
    const call = this.calls.get(streamId);
    if (!call) return;
    call.headerBlocks.push(headers);
    if (block.endStream) this.finish(streamId, call);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    // Flow control counts the whole payload, padding included, also on streams we dropped.
    this.connectionCredit += payload.length;
    const call = this.calls.get(streamId);
    if (!call) return;
    call.credit += payload.length;
    const data = flags & flag.padded ? payload.subarray(1, payload.length - (payload[0] ?? 0)) : payload;
    if (data.length > 0) {
      call.chunks.push(data);
      call.chunkBytes += data.length;
    }
    if (!this.takeMessages(streamId, call)) return;
    if (call.acknowledgeOnReceipt && call.credit >= windowUpdateThreshold) this.acknowledge(streamId);
    if (flags & flag.endStream) this.finish(streamId, call);
  }

  /** Hands over every complete gRPC message received; false when the call failed on one. */
  private takeMessages(streamId: number, call: PendingCall): boolean {
    while (call.chunkBytes >= 5) {
      const head = call.chunks[0]!.length >= 5 ? call.chunks[0]! : Buffer.concat(call.chunks);
      const compressed = head[0] !== 0;
      const length = head.readUInt32BE(1);
      const failure = compressed
        ? "compressed response (the direct client asks for none)"
        : length > maxMessageBytes
          ? `response message of ${length} bytes exceeds ${maxMessageBytes}`
          : undefined;
      if (failure) {
        this.cancel(streamId);
        call.onEnd(new ClientError(call.path, compressed ? Status.INTERNAL : Status.RESOURCE_EXHAUSTED, failure));
        return false;
      }
      if (call.chunkBytes < 5 + length) return true;
      const all = call.chunks.length === 1 ? call.chunks[0]! : Buffer.concat(call.chunks);
      const rest = all.subarray(5 + length);
      call.chunks = rest.length > 0 ? [rest] : [];
      call.chunkBytes = rest.length;
      call.onMessage(all.subarray(5, 5 + length));
      // onMessage may have ended the call (a reader that stopped).
      if (!this.calls.has(streamId)) return false;
    }
    return true;
  }

  private finish(streamId: number, call: PendingCall): void {
    this.end(streamId, call);
    const [first, ...rest] = call.headerBlocks;
    const trailers = rest.at(-1) ?? first ?? [];
    const httpStatus = headerValue(first ?? [], ":status");
    const status = headerValue(trailers, "grpc-status");
    if (status === undefined) {
      call.onEnd(new ClientError(call.path, httpStatus === "200" ? Status.INTERNAL : Status.UNKNOWN, `response without grpc-status (HTTP status ${httpStatus ?? "none"})`));
      return;
    }
    const code = Number(status);
    if (code !== Status.OK) {
      call.onEnd(new ClientError(call.path, Number.isInteger(code) ? code : Status.UNKNOWN, decodeGrpcMessage(headerValue(trailers, "grpc-message"))));
      return;
    }
    if (call.chunkBytes > 0) {
      call.onEnd(new ClientError(call.path, Status.INTERNAL, `response ends inside a message (${call.chunkBytes} bytes left over)`));
      return;
    }
    call.onEnd();
  }
}

/** What a ts-proto message type offers (generated code in core/gen). */
interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial(object: never): T;
}

interface Method {
  name: string;
  requestType: MessageType<unknown>;
  responseType: MessageType<unknown>;
  requestStream: boolean;
  responseStream: boolean;
}

interface UnaryMethod extends Method {
  requestStream: false;
  responseStream: false;
}

/** A generated (ts-proto, generic-definitions) service definition. */
export interface DirectServiceDefinition {
  fullName: string;
  methods: Record<string, { requestStream: boolean; responseStream: boolean }>;
}

type Request<M> = M extends { requestType: { fromPartial(object: infer P): unknown } } ? P : never;
type Response<M> = M extends { responseType: MessageType<infer R> } ? R : never;

interface DirectCallOptions {
  metadata?: MetadataInput;
  signal?: AbortSignal;
}

/** The unary methods of a generated service definition, typed, on a direct channel. */
export type DirectClient<D extends DirectServiceDefinition> = {
  [K in keyof D["methods"] as D["methods"][K] extends UnaryMethod ? K : never]: (
    request: Request<D["methods"][K]>,
    options?: DirectCallOptions,
  ) => Promise<Response<D["methods"][K]>>;
};

type AnyCall = (request: unknown, options?: DirectCallOptions) => unknown;

/**
 * A client for a generated service definition on a direct channel: unary and
 * server-streaming methods (with the shapes nice-grpc gives them: a promise, an async
 * iterable). Methods it cannot serve — streamed requests, requests over 64 KiB — go
 * to `fallback` when one is given (loaded on first need); without one they are absent
 * or fail with DirectGrpcError.
 */
export function directClient<D extends DirectServiceDefinition>(definition: D, channel: DirectChannel, fallback?: () => Promise<unknown>): DirectClient<D> {
  const client: Record<string, AnyCall> = {};
  // The grpc-js client is made once, on the first call that needs it.
  let loaded: Promise<unknown> | undefined;
  const viaFallback = async (key: string) => ((await (loaded ??= fallback!())) as Record<string, AnyCall>)[key]!;
  for (const [key, method] of Object.entries(definition.methods) as Array<[string, Method]>) {
    const path = `/${definition.fullName}/${method.name}`;
    const encode = (request: unknown) => method.requestType.encode(method.requestType.fromPartial(request as never)).finish();
    if (method.requestStream) {
      if (!fallback) continue;
      client[key] = method.responseStream
        ? async function* (request, options) {
            yield* (await viaFallback(key))(request, options) as AsyncIterable<unknown>;
          }
        : async (request, options) => (await viaFallback(key))(request, options);
    } else if (method.responseStream) {
      client[key] = async function* (request, options: DirectCallOptions = {}) {
        const bytes = encode(request);
        if (fallback && !fitsDirectRequest(bytes)) {
          yield* (await viaFallback(key))(request, options) as AsyncIterable<unknown>;
          return;
        }
        for await (const message of channel.serverStream(path, bytes, options.metadata, options.signal)) yield method.responseType.decode(message);
      };
    } else {
      client[key] = async (request, options: DirectCallOptions = {}) => {
        const bytes = encode(request);
        if (fallback && !fitsDirectRequest(bytes)) return (await viaFallback(key))(request, options);
        return method.responseType.decode(await channel.unary(path, bytes, options.metadata, options.signal));
      };
    }
  }
  return client as DirectClient<D>;
}
