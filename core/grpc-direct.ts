// Unary gRPC calls on a unix socket, speaking HTTP/2 (h2c, prior knowledge) directly
// over node:net. It exists for start-up time alone: grpc-js and node:http2 together
// take most of a short CLI command's run (node:http2 pulls in tls, crypto and http),
// while this needs net and a few hundred lines. It covers what a CLI's quick
// commands need — small unary requests, any number of concurrent calls on one
// connection — and leaves everything else (client streams, large requests) to grpc-js.
import type { Socket } from "node:net";
import { ClientError, Status } from "nice-grpc-common";
import { encodeHeaders, HpackDecoder, type HeaderList } from "./hpack.ts";

// Not `import … from "node:net"`: an ES module import of a builtin builds its whole
// namespace, which for node:net (and node:fs) loads a dozen more modules.
const { connect } = process.getBuiltinModule("node:net");

const frameType = { data: 0, headers: 1, rstStream: 3, settings: 4, pushPromise: 5, ping: 6, goaway: 7, windowUpdate: 8, continuation: 9 } as const;
const flag = { endStream: 0x1, ack: 0x1, endHeaders: 0x4, padded: 0x8, priority: 0x20 } as const;
const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** The largest window HTTP/2 allows: the server never waits for us to read. */
const maxWindow = 2 ** 31 - 1;
const defaultWindow = 65_535;
/** What a peer may send in one frame until its SETTINGS say otherwise (and what we send at most). */
const defaultMaxFrame = 16_384;
/** As grpc-client.ts allows on grpc-js channels. */
const maxMessageBytes = 16 * 1024 * 1024;
const errorCodeCancel = 0x8;

export class DirectGrpcError extends Error {
  override name = "DirectGrpcError";
}

function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

interface PendingCall {
  path: string;
  resolve(message: Buffer): void;
  reject(err: unknown): void;
  /** Header blocks seen so far: the response headers, then the trailers. */
  headerBlocks: HeaderList[];
  data: Buffer[];
  dataBytes: number;
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
  private socket: Socket | undefined;
  private readonly calls = new Map<number, PendingCall>();
  private nextStreamId = 1;
  private readonly decoder = new HpackDecoder();
  private buffered: Buffer = Buffer.alloc(0);
  /** Set once the connection failed or closed: every later call fails with it. */
  private failure: Error | undefined;
  /** A header block split over HEADERS and CONTINUATION frames, until END_HEADERS; nothing else may come between. */
  private headerBlock: { streamId: number; fragments: Buffer[]; endStream: boolean } | undefined;

  readonly address: string;

  constructor(address: string) {
    this.address = address;
  }

  /** Sends one request message and resolves with the response message, or rejects with a ClientError. */
  unary(path: string, request: Uint8Array, metadata: Record<string, string> = {}, signal?: AbortSignal): Promise<Buffer> {
    if (request.length + 5 > defaultWindow) {
      return Promise.reject(new DirectGrpcError(`${path}: a request of ${request.length} bytes is too large for the direct client`));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.failure) return Promise.reject(this.unavailable(path, this.failure));
    const socket = this.connection();
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => {
        if (!this.calls.delete(streamId)) return;
        const code = Buffer.alloc(4);
        code.writeUInt32BE(errorCodeCancel);
        socket.write(frame(frameType.rstStream, 0, streamId, code));
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = <T>(fn: (v: T) => void) => (v: T) => {
        signal?.removeEventListener("abort", onAbort);
        fn(v);
      };
      this.calls.set(streamId, { path, resolve: settle(resolve), reject: settle(reject), headerBlocks: [], data: [], dataBytes: 0 });
      const headers: HeaderList = [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", path],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ...Object.entries(metadata).map(([k, v]): [string, string] => [k.toLowerCase(), v]),
      ];
      const block = encodeHeaders(headers);
      if (block.length > defaultMaxFrame) {
        this.calls.delete(streamId);
        reject(new DirectGrpcError(`${path}: request metadata too large for the direct client`));
        return;
      }
      const message = Buffer.alloc(5 + request.length);
      message.writeUInt32BE(request.length, 1);
      message.set(request, 5);
      const out = [frame(frameType.headers, flag.endHeaders, streamId, block)];
      for (let off = 0; off < message.length; off += defaultMaxFrame) {
        const end = Math.min(off + defaultMaxFrame, message.length);
        out.push(frame(frameType.data, end === message.length ? flag.endStream : 0, streamId, message.subarray(off, end)));
      }
      socket.write(Buffer.concat(out));
    });
  }

  /** Ends the connection; calls still running fail. */
  close(): void {
    const socket = this.socket;
    if (!socket) return;
    this.fail(new DirectGrpcError("channel closed"));
    const goaway = Buffer.alloc(8);
    goaway.writeUInt32BE(0, 0);
    goaway.writeUInt32BE(0, 4);
    socket.end(frame(frameType.goaway, 0, 0, goaway));
    // Exiting need not wait for the server to close its side.
    socket.unref();
  }

  private connection(): Socket {
    if (this.socket) return this.socket;
    const socket = connect(this.address);
    this.socket = socket;
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(maxWindow, 8);
    const connectionWindow = Buffer.alloc(4);
    connectionWindow.writeUInt32BE(maxWindow - defaultWindow);
    // Written before the connection is up; net sends it once connected.
    socket.write(Buffer.concat([preface, frame(frameType.settings, 0, 0, settings), frame(frameType.windowUpdate, 0, 0, connectionWindow)]));
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

  private fail(err: Error): void {
    this.failure ??= err;
    for (const [id, call] of this.calls) {
      this.calls.delete(id);
      call.reject(err instanceof DirectGrpcError && err.message !== "connection closed by the server" ? err : this.unavailable(call.path, err));
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
        const code = payload.readUInt32BE(4);
        const err = new DirectGrpcError(`server sent GOAWAY (code ${code})`);
        this.failure ??= err;
        // Streams above lastStream were never processed; the ones below still finish.
        for (const [id, call] of this.calls) {
          if (id > lastStream) {
            this.calls.delete(id);
            call.reject(this.unavailable(call.path, err));
          }
        }
        return;
      }
      case frameType.rstStream: {
        const call = this.calls.get(streamId);
        if (!call) return;
        this.calls.delete(streamId);
        const code = payload.readUInt32BE(0);
        call.reject(new ClientError(call.path, code === errorCodeCancel ? Status.CANCELLED : Status.INTERNAL, `stream reset by the server (HTTP/2 error ${code})`));
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
    const call = this.calls.get(streamId);
    if (!call) return;
    let data = payload;
    if (flags & flag.padded) data = payload.subarray(1, payload.length - (payload[0] ?? 0));
    call.dataBytes += data.length;
    if (call.dataBytes > maxMessageBytes + 5) {
      this.calls.delete(streamId);
      call.reject(new ClientError(call.path, Status.RESOURCE_EXHAUSTED, `response larger than ${maxMessageBytes} bytes`));
      return;
    }
    call.data.push(data);
    if (flags & flag.endStream) this.finish(streamId, call);
  }

  private finish(streamId: number, call: PendingCall): void {
    this.calls.delete(streamId);
    const [first, ...rest] = call.headerBlocks;
    const trailers = rest.at(-1) ?? first ?? [];
    const httpStatus = headerValue(first ?? [], ":status");
    const status = headerValue(trailers, "grpc-status");
    if (status === undefined) {
      call.reject(new ClientError(call.path, httpStatus === "200" ? Status.INTERNAL : Status.UNKNOWN, `response without grpc-status (HTTP status ${httpStatus ?? "none"})`));
      return;
    }
    const code = Number(status);
    if (code !== Status.OK) {
      call.reject(new ClientError(call.path, Number.isInteger(code) ? code : Status.UNKNOWN, decodeGrpcMessage(headerValue(trailers, "grpc-message"))));
      return;
    }
    const body = Buffer.concat(call.data);
    if (body.length < 5) {
      call.reject(new ClientError(call.path, Status.INTERNAL, "response without a message"));
      return;
    }
    if (body[0] !== 0) {
      call.reject(new ClientError(call.path, Status.INTERNAL, "compressed response (the direct client asks for none)"));
      return;
    }
    const length = body.readUInt32BE(1);
    if (body.length !== 5 + length) {
      call.reject(new ClientError(call.path, Status.INTERNAL, `response framing: ${body.length - 5} bytes for a ${length}-byte message`));
      return;
    }
    call.resolve(body.subarray(5));
  }
}

/** What a ts-proto message type offers (generated code in core/gen). */
interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial(object: never): T;
}

interface UnaryMethod {
  name: string;
  requestType: MessageType<unknown>;
  responseType: MessageType<unknown>;
  requestStream: false;
  responseStream: false;
}

interface ServiceDefinition {
  fullName: string;
  methods: Record<string, { requestStream: boolean; responseStream: boolean }>;
}

type Request<M> = M extends { requestType: { fromPartial(object: infer P): unknown } } ? P : never;
type Response<M> = M extends { responseType: MessageType<infer R> } ? R : never;

export interface DirectCallOptions {
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

/** The unary methods of a generated service definition, typed, on a direct channel. */
export type DirectClient<D extends ServiceDefinition> = {
  [K in keyof D["methods"] as D["methods"][K] extends UnaryMethod ? K : never]: (
    request: Request<D["methods"][K]>,
    options?: DirectCallOptions,
  ) => Promise<Response<D["methods"][K]>>;
};

export function directClient<D extends ServiceDefinition>(definition: D, channel: DirectChannel): DirectClient<D> {
  const client: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods) as Array<[string, UnaryMethod]>) {
    if (method.requestStream || method.responseStream) continue;
    const path = `/${definition.fullName}/${method.name}`;
    client[key] = async (request: never, options: DirectCallOptions = {}) => {
      const bytes = method.requestType.encode(method.requestType.fromPartial(request)).finish();
      const response = await channel.unary(path, bytes, options.metadata, options.signal);
      return method.responseType.decode(response);
    };
  }
  return client as DirectClient<D>;
}
