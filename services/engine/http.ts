// The Engine API's HTTP plumbing over node:http: a small router (with greedy `*name`
// params, since image names carry slashes), the request context handlers get, Docker's
// error body, JSON-message streams, and the socket takeover attach and exec need.
// node:http rather than fastify: the API needs byte-exact status lines and headers
// (`101 UPGRADED`, `Content-Type: application/json` with no charset) and takes the socket
// over even without an Upgrade header, which a framework works against; and fastify
// measured 16 MiB more resident memory in a process that loads it (docs/engine.md).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { BerthError, httpStatusOf, messageWithoutKind } from "../../core/errors.ts";
import { ClientError } from "nice-grpc-common";
import { kindOfGrpcStatus } from "../../core/errors.ts";
import { apiVersion, versionAtLeast } from "./version.ts";

/** An error with the status and the exact message Docker's daemon gives (tools match on the text). */
export class EngineError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export const badRequest = (message: string) => new EngineError(400, message);
export const notFoundError = (message: string) => new EngineError(404, message);
export const conflict = (message: string) => new EngineError(409, message);
export const serverError = (message: string) => new EngineError(500, message);

/** The status and message of any error: ours as they are, a service's by its kind without containerd's suffix. */
export function httpErrorOf(err: unknown): { status: number; message: string } {
  if (err instanceof EngineError) return { status: err.status, message: err.message };
  if (err instanceof BerthError) return { status: httpStatusOf(err.kind), message: messageWithoutKind(err) };
  if (err instanceof ClientError) {
    const kind = kindOfGrpcStatus(err.code);
    return { status: kind === "unknown" ? 500 : httpStatusOf(kind), message: err.details.replace(new RegExp(`: ${kind}$`), "") };
  }
  return { status: 500, message: (err as Error)?.message ?? String(err) };
}

export class RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The path without its /v1.xx prefix. */
  readonly path: string;
  /** The API version the client asked for (the prefix), or the server's own. */
  readonly version: string;
  readonly query: URLSearchParams;
  params: Record<string, string> = {};
  /**
   * For a request that asked to upgrade (attach, exec start): the bytes read past its
   * headers. Node's parser stops at the headers, so the body is split off here by
   * Content-Length; what follows it is early stdin, left here for the stream.
   */
  head: Buffer;
  readonly upgrade: boolean;

  constructor(req: IncomingMessage, res: ServerResponse, path: string, version: string, query: URLSearchParams, upgradeHead?: Buffer) {
    this.req = req;
    this.res = res;
    this.path = path;
    this.version = version;
    this.query = query;
    this.upgrade = upgradeHead !== undefined;
    this.head = upgradeHead ?? Buffer.alloc(0);
  }

  /** The request body, at most `limit` bytes (a bigger one is a 400, not a memory spike). */
  async body(limit = maxJsonBody): Promise<Buffer> {
    if (this.upgrade) return this.upgradeBody(limit);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.req) {
      size += (chunk as Buffer).length;
      if (size > limit) throw badRequest(`request body is larger than ${limit} bytes`);
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  private async upgradeBody(limit: number): Promise<Buffer> {
    const length = Number(this.req.headers["content-length"] ?? 0);
    if (!Number.isInteger(length) || length < 0) throw badRequest("invalid Content-Length");
    if (length > limit) throw badRequest(`request body is larger than ${limit} bytes`);
    const socket = this.req.socket;
    while (this.head.length < length) {
      const chunk = await new Promise<Buffer | null>((resolve) => {
        const onData = (data: Buffer) => done(data);
        const onEnd = () => done(null);
        const done = (data: Buffer | null) => {
          socket.off("data", onData).off("end", onEnd).off("close", onEnd);
          socket.pause();
          resolve(data);
        };
        socket.on("data", onData).once("end", onEnd).once("close", onEnd);
        socket.resume();
      });
      if (!chunk) throw badRequest("request body ended early");
      this.head = Buffer.concat([this.head, chunk]);
    }
    const body = this.head.subarray(0, length);
    this.head = this.head.subarray(length);
    return body;
  }

  /** The JSON body as an object; empty is `{}` (clients send POSTs without bodies). */
  async json<T = Record<string, unknown>>(): Promise<T> {
    const text = (await this.body()).toString("utf8").trim();
    if (!text) return {} as T;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw badRequest(`invalid JSON in request body: ${(err as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest("request body must be a JSON object");
    return value as T;
  }

  send(status: number, body?: unknown): void {
    if (body === undefined) {
      this.res.writeHead(status, { "Content-Length": "0" }).end();
      return;
    }
    const text = JSON.stringify(body);
    this.res.writeHead(status, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) }).end(text);
  }

  noContent(): void {
    this.res.writeHead(204).end();
  }

  /**
   * Starts a stream of JSON messages (pull, push, load, events): headers go out at once,
   * then one JSON object per write, each followed by \r\n, as Docker's daemon writes them.
   */
  jsonStream(status = 200): JsonMessageStream {
    this.res.writeHead(status, { "Content-Type": "application/json" });
    this.res.flushHeaders();
    return new JsonMessageStream(this.res);
  }
}

export class JsonMessageStream {
  private readonly res: ServerResponse;
  constructor(res: ServerResponse) {
    this.res = res;
  }
  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }
  write(message: unknown): void {
    if (!this.closed) this.res.write(`${JSON.stringify(message)}\r\n`);
  }
  /** A failure after the 200: Docker's clients read `errorDetail`; `error` alone is ignored. */
  fail(err: unknown): void {
    const { message } = httpErrorOf(err);
    this.write({ errorDetail: { message }, error: message });
    this.end();
  }
  end(): void {
    if (!this.closed) this.res.end();
  }
}

export const maxJsonBody = 8 * 1024 * 1024;

/**
 * Takes the connection over for a raw stream (attach, exec start): `101 UPGRADED` when the
 * client asked to upgrade (the Docker CLI accepts nothing else), else `200 OK` with a
 * body that lasts until the connection closes (dockerode without hijack, testcontainers).
 * Bytes already read past the request (stdin sent early) are in ctx.head; after a
 * takeover without an upgrade, input is not read (no client sends stdin that way).
 */
export function takeOver(ctx: RequestContext): Duplex {
  const socket = ctx.req.socket;
  const upgrade = ctx.upgrade;
  const contentType = versionAtLeast(ctx.version, "1.42") ? "application/vnd.docker.multiplexed-stream" : "application/vnd.docker.raw-stream";
  // The response object must not write anything more on this socket.
  ctx.res.detachSocket(socket);
  socket.setTimeout(0);
  socket.write(
    upgrade
      ? `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`
      : `HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\n\r\n`,
  );
  return socket;
}

/** Docker's framing of a non-TTY stream: [stream, 0, 0, 0, size (u32 BE)] then the bytes. */
export function frame(stream: 0 | 1 | 2 | 3, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  handler: Handler;
}

/** `:name` matches one path segment, `*name` one or more (image names contain slashes). */
function compile(path: string): { pattern: RegExp; names: string[] } {
  const names: string[] = [];
  const source = path.replace(/[:*](\w+)/g, (whole, name: string) => {
    names.push(name);
    return whole.startsWith("*") ? "(.+)" : "([^/]+)";
  });
  return { pattern: new RegExp(`^${source}$`), names };
}

export class Router {
  private readonly routes: Route[] = [];

  on(method: string, path: string, handler: Handler): this {
    this.routes.push({ method, ...compile(path), handler });
    return this;
  }
  get(path: string, handler: Handler) {
    return this.on("GET", path, handler);
  }
  post(path: string, handler: Handler) {
    return this.on("POST", path, handler);
  }
  put(path: string, handler: Handler) {
    return this.on("PUT", path, handler);
  }
  delete(path: string, handler: Handler) {
    return this.on("DELETE", path, handler);
  }
  head(path: string, handler: Handler) {
    return this.on("HEAD", path, handler);
  }

  /** The first route that matches (routes registered first win, so specific before greedy). */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const m = route.pattern.exec(path);
      if (!m) continue;
      const params: Record<string, string> = {};
      route.names.forEach((name, i) => (params[name] = decodeURIComponent(m[i + 1]!)));
      return { handler: route.handler, params };
    }
    return undefined;
  }
}

/** Headers Docker's daemon puts on every response; clients read Api-Version and Ostype. */
export function commonHeaders(res: ServerResponse, serverVersion: string): void {
  res.setHeader("Api-Version", apiVersion);
  res.setHeader("Server", `Berth/${serverVersion} (linux)`);
  res.setHeader("Ostype", "linux");
  res.setHeader("Docker-Experimental", "false");
}
