// The Engine API over HTTP/1.1 (node:http on the UNIX socket; no client library: every
// command pays for what it loads). Requests go to /v1.41 paths without a /_ping first:
// Berth's engine serves 1.41 (and a newer daemon serves it too), which saves a round
// trip per command. Error replies become DaemonError with Docker's message, read the way
// Docker's client reads them.
import { request, type IncomingMessage, type ClientRequest } from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { CliError, DaemonError } from "./errors.ts";
import type { HostChoice } from "./host.ts";

export const apiPrefix = "/v1.41";
export const userAgent = "Berth-Client/0.1.0 (linux)";

export type QueryValue = string | number | boolean | undefined | readonly string[];
export type Query = Record<string, QueryValue>;

export interface RequestOptions {
  query?: Query;
  /** An object is sent as JSON; a Buffer or stream as it is. */
  body?: unknown;
  headers?: Record<string, string>;
}

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === false) continue;
    if (Array.isArray(value)) for (const v of value) params.append(key, v);
    else params.append(key, value === true ? "1" : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

const statusText: Record<number, string> = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable" };

async function readAll(res: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The error an error reply stands for (Docker's rules: JSON only with that exact Content-Type). */
async function errorOf(res: IncomingMessage, path: string): Promise<DaemonError> {
  const status = res.statusCode ?? 500;
  const text = (await readAll(res)).toString("utf8").trim();
  if (!text) return new DaemonError(status, `request returned ${status} ${statusText[status] ?? ""} for API route and version ${path}, check if the server supports the requested API version`);
  if (res.headers["content-type"] === "application/json") {
    try {
      const body = JSON.parse(text) as { message?: unknown };
      if (typeof body.message === "string") return new DaemonError(status, body.message);
      return new DaemonError(status, `API returned a ${status} (${statusText[status] ?? "error"}) but provided no error-message`);
    } catch {
      // not JSON after all: show it as text
    }
  }
  return new DaemonError(status, text);
}

export class EngineClient {
  readonly host: HostChoice;

  constructor(host: HostChoice) {
    this.host = host;
  }

  private open(method: string, path: string, options: RequestOptions, extraHeaders: Record<string, string> = {}): ClientRequest {
    const headers: Record<string, string> = { "User-Agent": userAgent, ...extraHeaders, ...options.headers };
    const target = `${apiPrefix}${path}${queryString(options.query)}`;
    const where = "socketPath" in this.host.endpoint ? { socketPath: this.host.endpoint.socketPath } : { host: this.host.endpoint.host, port: this.host.endpoint.port };
    return request({ ...where, method, path: target, headers: { Host: "api.moby.localhost", ...headers } });
  }

  private connectError(err: NodeJS.ErrnoException): CliError {
    if (["ENOENT", "ECONNREFUSED", "EACCES", "ENOTSOCK"].includes(err.code ?? "")) {
      const why = err.code === "EACCES" ? ": permission denied (is the user in the berth group?)" : ". Is berthd running?";
      return new CliError(`Cannot connect to the Berth engine at ${this.host.url}${why}`);
    }
    return new CliError(`error talking to the engine at ${this.host.url}: ${err.message}`);
  }

  private sendBody(req: ClientRequest, body: unknown): void {
    if (body === undefined) req.end();
    else if (body instanceof Readable) body.pipe(req);
    else if (Buffer.isBuffer(body) || typeof body === "string") req.end(body);
    else req.end(JSON.stringify(body));
  }

  private headersFor(body: unknown): Record<string, string> {
    if (body === undefined) return {};
    if (body instanceof Readable) return { "Content-Type": "application/x-tar", "Transfer-Encoding": "chunked" };
    if (Buffer.isBuffer(body) || typeof body === "string") return { "Content-Type": "text/plain" };
    return { "Content-Type": "application/json" };
  }

  /** The response, once its status is a success; an error status throws DaemonError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const req = this.open(method, path, options, this.headersFor(options.body));
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.once("response", resolve);
      req.once("error", (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      this.sendBody(req, options.body);
    });
    if ((res.statusCode ?? 500) >= 400) throw await errorOf(res, `${apiPrefix}${path}`);
    return res;
  }

  /** A request whose reply is JSON (or empty, which gives undefined). */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, options);
    const text = (await readAll(res)).toString("utf8");
    if (!text.trim()) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the engine sent a reply that is not JSON for ${method} ${path}: ${text.slice(0, 200)}`);
    }
  }

  /** A request whose reply body does not matter; returns the status (204, 304…). */
  async call(method: string, path: string, options: RequestOptions = {}): Promise<number> {
    const res = await this.request(method, path, options);
    res.resume();
    await new Promise((resolve) => res.once("end", resolve).once("close", resolve));
    return res.statusCode ?? 200;
  }

  /** A request that takes the connection over (attach, exec start): 101, then a raw duplex socket. */
  async hijack(path: string, options: RequestOptions = {}): Promise<{ socket: Socket; head: Buffer }> {
    const req = this.open("POST", path, options, { ...this.headersFor(options.body ?? ""), Connection: "Upgrade", Upgrade: "tcp" });
    return new Promise((resolve, reject) => {
      req.once("upgrade", (res: IncomingMessage, socket: Socket, head: Buffer) => {
        if (res.statusCode !== 101) {
          socket.destroy();
          reject(new CliError(`unable to upgrade to tcp, received ${res.statusCode}`));
          return;
        }
        resolve({ socket, head });
      });
      req.once("response", (res: IncomingMessage) => {
        if ((res.statusCode ?? 500) >= 400) errorOf(res, `${apiPrefix}${path}`).then(reject, reject);
        else {
          res.resume();
          reject(new CliError(`unable to upgrade to tcp, received ${res.statusCode}`));
        }
      });
      req.once("error", (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      this.sendBody(req, options.body);
    });
  }
}

/** Reads a stream of JSON values, one per line (events, stats, JSON-message streams). */
export async function* jsonLines<T>(res: Readable): AsyncGenerator<T> {
  let buffered = "";
  for await (const chunk of res) {
    buffered += (chunk as Buffer).toString("utf8");
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
  if (buffered.trim()) yield JSON.parse(buffered) as T;
}

export { readAll };
