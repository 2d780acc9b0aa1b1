// The Engine API client. Requests go to /v1.41 paths without a /_ping first: Berth's
// engine serves 1.41 (and a newer daemon serves it too), which saves a round trip per
// command. Error replies become DaemonError with Docker's message, read the way Docker's
// client reads them (JSON only with exactly application/json).
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { CliError, DaemonError } from "./errors.ts";
import type { HostChoice } from "./host.ts";
import { send, type HttpResponse } from "./http1.ts";

export const apiPrefix = "/v1.41";
export const userAgent = "Berth-Client/0.1.0 (linux)";

export type QueryValue = string | number | boolean | undefined | null | readonly string[];
export type Query = Record<string, QueryValue>;

export interface RequestOptions {
  query?: Query;
  /** An object is sent as JSON; a Buffer or string as text; a stream chunked. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Response {
  statusCode: number;
  headers: Record<string, string>;
  body: Readable;
}

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === false) continue;
    if (Array.isArray(value)) for (const v of value) params.append(key, v);
    else params.append(key, value === true ? "1" : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

const statusText: Record<number, string> = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable" };

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The error an error reply stands for (Docker's rules: JSON only with that exact Content-Type). */
async function errorOf(res: HttpResponse, path: string): Promise<DaemonError> {
  const status = res.status;
  const text = (await readAll(res.body)).toString("utf8").trim();
  if (!text) return new DaemonError(status, `request returned ${status} ${statusText[status] ?? ""} for API route and version ${path}, check if the server supports the requested API version`);
  if (res.headers["content-type"] === "application/json") {
    try {
      const body = JSON.parse(text) as { message?: unknown };
      if (typeof body.message === "string") return new DaemonError(status, body.message);
      return new DaemonError(status, `API returned a ${status} (${statusText[status] ?? "error"}) but provided no error-message`);
    } catch {
      // not JSON after all: shown as text
    }
  }
  return new DaemonError(status, text);
}

export class EngineClient {
  readonly host: HostChoice;

  constructor(host: HostChoice) {
    this.host = host;
  }

  private connectError(err: NodeJS.ErrnoException): CliError {
    if (["ENOENT", "ECONNREFUSED", "ENOTSOCK"].includes(err.code ?? "")) return new CliError(`Cannot connect to the Berth engine at ${this.host.url}. Is berthd running?`);
    if (err.code === "EACCES") return new CliError(`permission denied while trying to connect to the Berth engine at ${this.host.url} (is this user in the berth group?)`);
    return new CliError(`error talking to the engine at ${this.host.url}: ${err.message}`);
  }

  private async exchange(method: string, path: string, options: RequestOptions, upgrade = false): Promise<HttpResponse> {
    const headers: Record<string, string> = { Host: "api.moby.localhost", "User-Agent": userAgent };
    let body: Buffer | Readable | undefined;
    const given = options.body;
    if (given instanceof Readable) {
      body = given;
      headers["Content-Type"] = "application/x-tar";
    } else if (Buffer.isBuffer(given) || typeof given === "string") {
      body = Buffer.from(given);
      headers["Content-Type"] = "text/plain";
    } else if (given !== undefined) {
      body = Buffer.from(JSON.stringify(given));
      headers["Content-Type"] = "application/json";
    }
    Object.assign(headers, options.headers);
    const target = `${apiPrefix}${path}${queryString(options.query)}`;
    let res: HttpResponse;
    try {
      res = await send(this.host.endpoint, { method, path: target, headers, body, upgrade });
    } catch (err) {
      throw this.connectError(err as NodeJS.ErrnoException);
    }
    if (res.status >= 400) throw await errorOf(res, target);
    return res;
  }

  /** The response, once its status is a success; an error status throws DaemonError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const res = await this.exchange(method, path, options);
    return { statusCode: res.status, headers: res.headers, body: res.body };
  }

  /** A request whose reply is JSON (or empty, which gives undefined). */
  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.exchange(method, path, options);
    const text = (await readAll(res.body)).toString("utf8");
    if (!text.trim()) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the engine sent a reply that is not JSON for ${method} ${path}: ${text.slice(0, 200)}`);
    }
  }

  /** A request whose reply body does not matter; returns the status (204, 304…). */
  async call(method: string, path: string, options: RequestOptions = {}): Promise<number> {
    const res = await this.exchange(method, path, options);
    await readAll(res.body);
    return res.status;
  }

  /** A request that takes the connection over (attach, exec start): 101, then a raw duplex socket. */
  async hijack(path: string, options: RequestOptions = {}): Promise<{ socket: Socket; head: Buffer }> {
    const res = await this.exchange("POST", path, { ...options, body: options.body ?? "" }, true);
    if (res.status !== 101) {
      res.socket.destroy();
      throw new CliError(`unable to upgrade to tcp, received ${res.status}`);
    }
    return { socket: res.socket, head: res.head };
  }
}
