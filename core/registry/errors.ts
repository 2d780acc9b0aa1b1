// What a failed registry call becomes: one BerthError whose message names the method,
// the URL and the status, and whose kind says what the caller can do about it
// (unavailable = try again; the rest will fail the same way again).
import { BerthError, type ErrorKind } from "../errors.ts";
import { setRetryAfter } from "./retry.ts";

/** Bytes of an error body worth reading: registries answer with a small JSON document. */
const errorBodyLimit = 64 * 1024;

const statusText: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Payload Too Large",
  416: "Range Not Satisfiable",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export function kindOfStatus(status: number): ErrorKind {
  if (status === 404) return "not found";
  if (status === 429 || status >= 500) return "unavailable";
  if (status === 400) return "invalid argument";
  if (status === 405) return "not implemented";
  if (status === 416) return "out of range";
  return "failed precondition";
}

/** The registry's own error list ({"errors":[{code, message}]}), or a description of whatever else came back. */
export function describeErrorBody(body: Buffer, contentType: string): string {
  const text = body.toString("utf8");
  if (/json/i.test(contentType) || /^\s*\{/.test(text)) {
    try {
      const doc = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
      if (Array.isArray(doc.errors) && doc.errors.length > 0) {
        return doc.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
      }
    } catch {
      // not JSON after all: described as text below
    }
  }
  if (/html/i.test(contentType) || /^\s*<(!doctype|html)/i.test(text)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.trim();
    return `the server answered with an HTML page, not a registry error${title ? ` ("${title}")` : ""}`;
  }
  const line = text.trim().split("\n")[0]?.slice(0, 200) ?? "";
  return line === "" ? "" : `"${line}"`;
}

export interface ErrorResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer | Uint8Array> & { destroy?: () => void };
}

export async function readCapped(body: AsyncIterable<Buffer | Uint8Array> & { destroy?: () => void }, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      parts.push(Buffer.from(chunk));
      total += chunk.length;
      if (total >= limit) break;
    }
  } catch {
    // an error body cut short still says something
  } finally {
    if (body.destroy) discardBody(body as never);
  }
  return Buffer.concat(parts).subarray(0, limit);
}

function header(headers: ErrorResponse["headers"], name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? (value[0] ?? "") : (value ?? "");
}

/** The BerthError for an unexpected status; consumes the body. */
export async function responseError(res: ErrorResponse, method: string, url: string): Promise<BerthError> {
  const body = await readCapped(res.body, errorBodyLimit);
  const detail = describeErrorBody(body, header(res.headers, "content-type"));
  const status = `${res.statusCode}${statusText[res.statusCode] ? ` ${statusText[res.statusCode]}` : ""}`;
  const prefix = res.statusCode === 401 || res.statusCode === 403 ? "unauthorized: " : "";
  const err = new BerthError(kindOfStatus(res.statusCode), `${prefix}${method} ${url}: ${status}${detail ? `: ${detail}` : ""}`);
  const wait = retryAfterMs(header(res.headers, "retry-after"));
  return (res.statusCode === 429 || res.statusCode === 503) && wait !== undefined ? setRetryAfter(err, wait) : err;
}

/** Retry-After: delay-seconds or an HTTP date. */
export function retryAfterMs(value: string, now = Date.now()): number | undefined {
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** A request that got no HTTP answer: refused, reset, timed out (retryable), or a TLS failure (not retryable). */
export function transportError(err: unknown, method: string, url: string): BerthError {
  if (err instanceof BerthError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  if (e?.name === "AbortError" || e?.code === "UND_ERR_ABORTED") return new BerthError("canceled", `${method} ${url}: canceled`);
  const detail = `${e?.code ? `${e.code}: ` : ""}${(e?.message ?? String(err)).replace(/\s+/g, " ").trim()}`;
  const certificate = /CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME|ALTNAME/.test(e?.code ?? "");
  // The server speaks TLS and refused the handshake (most often: it wants a client certificate).
  if (/^ERR_SSL_.*ALERT/.test(e?.code ?? "")) return new BerthError("failed precondition", `${method} ${url}: TLS handshake refused by the server (does it want a client certificate?): ${detail}`);
  if (certificate) return new BerthError("failed precondition", `${method} ${url}: TLS certificate not trusted: ${detail}`);
  return new BerthError("unavailable", `${method} ${url}: ${detail}`);
}

/** Drops a response body we are done with (undici reports a plain destroy() as an unhandled abort). */
export function discardBody(body: { on(event: "error", fn: () => void): unknown; destroy(): unknown }): void {
  body.on("error", () => {});
  body.destroy();
}
