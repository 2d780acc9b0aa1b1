// Calls the gateway answers in berthd itself, without a hop to another socket. `ctr run`
// makes ~35 small calls; forwarded, each crossed the gateway, a second HTTP/2 connection
// and a grpc-js server (a wake-up of a second process for content, images, snapshots),
// ~1-2.7 ms each on a loaded machine against containerd's 0.2-0.3 ms. The methods here
// are the implementations the owning service runs (the same functions over the same
// database and files), called with the decoded request and a call context built from
// the request headers, so the answer is the one the service would give.
//
// A method may decline a request (`accepts`): the call is then forwarded as usual,
// with the body already read (a large Content Read streams from the content process).
import { Metadata, ServerError, Status, type CallContext } from "nice-grpc-common";
import type { IncomingHttpHeaders } from "node:http2";
import { BerthError, grpcStatusOf } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";

/** A generated message codec (ts-proto). */
interface MessageType {
  decode(input: Uint8Array): unknown;
  encode(message: never): { finish(): Uint8Array };
  fromPartial?(object: never): unknown;
}

/** One method of a generated nice-grpc service definition. */
export interface MethodDefinition {
  name: string;
  requestType: MessageType;
  responseType: MessageType;
  requestStream: boolean;
  responseStream: boolean;
}

export interface ServiceDefinition {
  fullName: string;
  methods: Record<string, MethodDefinition>;
}

type Implementation = (request: never, ctx: CallContext) => unknown;

/** A call answered here: every response message, encoded. */
export interface LocalMethod {
  /** Whether to answer this request here; false forwards it to the owning process. */
  accepts(request: unknown, ctx: CallContext): boolean;
  decode(message: Uint8Array): unknown;
  answer(request: unknown, ctx: CallContext): Promise<Uint8Array[]>;
  /**
   * Services (on-demand processes) to start in the background when this is called,
   * because the client calls them next and would otherwise wait for their start.
   */
  warms?: readonly string[];
}

/** Local methods by gRPC path (/package.Service/Method). */
export type LocalMethods = Map<string, LocalMethod>;

export interface LocalOptions {
  /** Only these methods (by definition key); default every method without a request stream. */
  only?: readonly string[];
  /** Per method key: which requests are answered here (others are forwarded). */
  accepts?: Record<string, (request: never, ctx: CallContext) => boolean>;
  /** Per method key: services to start in the background (LocalMethod.warms). */
  warms?: Record<string, readonly string[]>;
}

/**
 * Adds `implementation`'s methods of `definition` to `into`. Client- and bidirectional
 * streams are never answered here (they stay with the owning process).
 */
export function addLocalMethods(into: LocalMethods, definition: ServiceDefinition, implementation: object, options: LocalOptions = {}): void {
  const impl = implementation as Record<string, Implementation | undefined>;
  for (const [key, method] of Object.entries(definition.methods)) {
    if (method.requestStream || (options.only && !options.only.includes(key))) continue;
    const fn = impl[key];
    if (!fn) continue;
    const call = fn.bind(implementation);
    // As nice-grpc's server does: implementations may answer partial messages.
    const { fromPartial } = method.responseType;
    const complete = fromPartial ? (message: unknown) => fromPartial(message as never) : (message: unknown) => message;
    const encode = (message: unknown) => method.responseType.encode(complete(message) as never).finish();
    const accepts = options.accepts?.[key] as ((request: unknown, ctx: CallContext) => boolean) | undefined;
    into.set(`/${definition.fullName}/${method.name}`, {
      accepts: accepts ?? (() => true),
      warms: options.warms?.[key],
      decode: (message) => {
        try {
          return method.requestType.decode(message);
        } catch (err) {
          // grpc-js answers a request it cannot deserialize with INTERNAL too.
          throw new ServerError(Status.INTERNAL, `cannot decode the request: ${(err as Error).message}`);
        }
      },
      answer: method.responseStream
        ? async (request, ctx) => {
            const out: Uint8Array[] = [];
            for await (const response of call(request as never, ctx) as AsyncIterable<unknown>) out.push(encode(response));
            return out;
          }
        : async (request, ctx) => [encode(await call(request as never, ctx))],
    });
  }
}

/** The request headers as gRPC metadata (what a grpc-js server hands its handlers). */
export function metadataOf(headers: IncomingHttpHeaders): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined || key.startsWith(":") || key === "content-type" || key === "te" || key === "grpc-timeout") continue;
    const values = Array.isArray(value) ? value : [value];
    // As grpc-js reads them: a binary header's values may come joined by commas.
    if (key.endsWith("-bin")) for (const one of values.flatMap((v) => v.split(","))) metadata.append(key, Buffer.from(one, "base64"));
    else for (const one of values) metadata.append(key, one);
  }
  return metadata;
}

/** A call context for a local call: its metadata, and a signal that aborts when the client goes away. */
export function localCallContext(metadata: Metadata, signal: AbortSignal): CallContext {
  return {
    metadata,
    peer: "local",
    header: new Metadata(),
    sendHeader() {},
    trailer: new Metadata(),
    signal,
  };
}

/** The gRPC status and message of a failed local call, as core/grpc-server.ts' error middleware maps them. */
export function statusOfError(err: unknown, log: Logger, path: string): { code: number; message: string } {
  if (err instanceof ServerError) return { code: err.code, message: err.details };
  if (err instanceof BerthError) return { code: grpcStatusOf(err.kind), message: err.message };
  if (err instanceof Error && err.name === "AbortError") return { code: Status.CANCELLED, message: "call canceled" };
  log.error({ err, method: path }, "unexpected error");
  return { code: Status.UNKNOWN, message: err instanceof Error ? err.message : String(err) };
}

/** Largest request message taken (grpc-js' default receive bound, which the services keep). */
export const maxLocalRequestBytes = 4 * 1024 * 1024;

/** The one message of a unary or server-streaming request body (5-byte gRPC frame). */
export function unframeRequest(body: Buffer): Uint8Array {
  if (body.length < 5) throw new ServerError(Status.INTERNAL, "malformed gRPC request: no message frame");
  if (body[0] !== 0) throw new ServerError(Status.UNIMPLEMENTED, "compressed gRPC requests are not supported");
  const length = body.readUInt32BE(1);
  if (length > maxLocalRequestBytes) throw new ServerError(Status.RESOURCE_EXHAUSTED, `request message of ${length} bytes exceeds the ${maxLocalRequestBytes}-byte limit`);
  if (body.length !== 5 + length) throw new ServerError(Status.INTERNAL, "malformed gRPC request: expected exactly one message");
  return body.subarray(5);
}

/** A response message framed for the wire (uncompressed). */
export function frameResponse(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/**
 * grpc-message as gRPC servers send it (the spec's percent-encoding: only bytes outside
 * printable ASCII, and "%"), which grpc-js clients decode with decodeURI: with
 * encodeURIComponent a ":" reached them as "%3A".
 */
export function grpcMessageEncoding(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
