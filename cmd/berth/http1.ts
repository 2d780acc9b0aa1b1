// A minimal HTTP/1.1 client on node:net, for the Engine API only: one connection per
// request (Connection: close, or Upgrade for attach/exec), bodies by Content-Length,
// chunked encoding or the connection's end. Not node:http: measured on this machine,
// loading node:http and making its first request cost 30-50 ms of a short command's
// time, against 3-6 ms for the same request over node:net, and `berth ps` has to stay
// within 3× `docker ps`.
import { createConnection, type Socket } from "node:net";
import { Readable } from "node:stream";

export type Endpoint = { socketPath: string } | { host: string; port: number };

export interface HttpResponse {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Readable;
  /** The connection: after a 101 it is the raw stream (its first bytes are in `head`). */
  socket: Socket;
  head: Buffer;
}

export interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer | Readable;
  upgrade?: boolean;
}

const headerEnd = Buffer.from("\r\n\r\n");

/** Decodes a body as it arrives into `out`: fixed length, chunked, or until close. */
class BodyDecoder {
  private readonly out: Readable;
  private mode: "length" | "chunked" | "close";
  private remaining: number;
  private pending: Buffer = Buffer.alloc(0);
  /** Chunked state: bytes left in the current chunk, or -1 when a size line is next. */
  private chunkLeft = -1;
  done = false;

  constructor(out: Readable, headers: Record<string, string>, empty: boolean) {
    this.out = out;
    if (empty) {
      this.mode = "length";
      this.remaining = 0;
    } else if ((headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) {
      this.mode = "chunked";
      this.remaining = 0;
    } else if (headers["content-length"] !== undefined) {
      this.mode = "length";
      this.remaining = Number(headers["content-length"]);
    } else {
      this.mode = "close";
      this.remaining = 0;
    }
    if (this.mode === "length" && this.remaining === 0) this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.out.push(null);
  }

  feed(data: Buffer): void {
    if (this.done || data.length === 0) return;
    if (this.mode === "close") {
      this.out.push(data);
      return;
    }
    if (this.mode === "length") {
      const take = data.subarray(0, this.remaining);
      this.remaining -= take.length;
      if (take.length) this.out.push(take);
      if (this.remaining === 0) this.finish();
      return;
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    while (!this.done) {
      if (this.chunkLeft < 0) {
        const nl = this.pending.indexOf("\r\n");
        if (nl < 0) return;
        const size = parseInt(this.pending.subarray(0, nl).toString("latin1").split(";")[0]!.trim(), 16);
        if (Number.isNaN(size)) {
          this.out.destroy(new Error("malformed chunked response from the engine"));
          this.done = true;
          return;
        }
        this.pending = this.pending.subarray(nl + 2);
        if (size === 0) {
          this.finish();
          return;
        }
        this.chunkLeft = size;
      }
      if (this.chunkLeft > 0) {
        if (this.pending.length === 0) return;
        const take = this.pending.subarray(0, this.chunkLeft);
        this.chunkLeft -= take.length;
        this.pending = this.pending.subarray(take.length);
        this.out.push(take);
      }
      if (this.chunkLeft === 0) {
        if (this.pending.length < 2) return;
        this.pending = this.pending.subarray(2);
        this.chunkLeft = -1;
      }
    }
  }

  /** The connection ended: a close-delimited body is complete, any other is cut short. */
  end(): void {
    if (this.done) return;
    if (this.mode === "close") this.finish();
    else {
      this.done = true;
      this.out.destroy(new Error("the engine closed the connection before the response was complete"));
    }
  }
}

function parseHead(text: string): { status: number; headers: Record<string, string> } {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(m[1]), headers };
}

function writeBody(socket: Socket, body: Readable): void {
  body.on("data", (chunk: Buffer) => {
    if (chunk.length === 0) return;
    // All three parts always go out: a chunk must never be left without its framing.
    socket.write(`${chunk.length.toString(16)}\r\n`);
    socket.write(chunk);
    if (!socket.write("\r\n")) {
      body.pause();
      socket.once("drain", () => body.resume());
    }
  });
  body.once("end", () => socket.write("0\r\n\r\n"));
  body.once("error", (err) => socket.destroy(err));
}

/** Sends one request; resolves once the status line and headers are in (the body streams after). */
export function send(endpoint: Endpoint, request: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const socket = "socketPath" in endpoint ? createConnection(endpoint.socketPath) : createConnection(endpoint.port, endpoint.host);
    const streamed = request.body !== undefined && !Buffer.isBuffer(request.body);
    const headers: Record<string, string> = { ...request.headers, Connection: request.upgrade ? "Upgrade" : "close" };
    if (request.upgrade) headers.Upgrade = "tcp";
    if (streamed) headers["Transfer-Encoding"] = "chunked";
    else if (request.body !== undefined || ["POST", "PUT"].includes(request.method)) headers["Content-Length"] = String((request.body as Buffer | undefined)?.length ?? 0);
    let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    // Head and a buffered body in one write: a server that answers without reading the
    // body (an unknown route) and closes must not turn our late write into EPIPE.
    if (streamed) {
      socket.write(`${head}\r\n`);
      writeBody(socket, request.body as Readable);
    } else socket.write(Buffer.concat([Buffer.from(`${head}\r\n`, "latin1"), (request.body as Buffer | undefined) ?? Buffer.alloc(0)]));

    let received: Buffer = Buffer.alloc(0);
    let decoder: BodyDecoder | undefined;
    let settled = false;
    const body = new Readable({
      read() {
        socket.resume();
      },
    });
    const onData = (data: Buffer) => {
      if (decoder) {
        decoder.feed(data);
        // Backpressure: read() resumes the socket once the consumer has caught up.
        if (body.readableLength > body.readableHighWaterMark) socket.pause();
        return;
      }
      received = received.length ? Buffer.concat([received, data]) : data;
      const end = received.indexOf(headerEnd);
      if (end < 0) return;
      let parsed: ReturnType<typeof parseHead>;
      try {
        parsed = parseHead(received.subarray(0, end).toString("latin1"));
      } catch (err) {
        settled = true;
        socket.destroy();
        reject(err);
        return;
      }
      const rest = received.subarray(end + 4);
      settled = true;
      if (parsed.status === 101) {
        socket.off("data", onData);
        socket.pause();
        resolve({ status: 101, headers: parsed.headers, body: Readable.from([]), socket, head: rest });
        return;
      }
      const empty = request.method === "HEAD" || parsed.status === 204 || parsed.status === 304;
      decoder = new BodyDecoder(body, parsed.headers, empty);
      resolve({ status: parsed.status, headers: parsed.headers, body, socket, head: Buffer.alloc(0) });
      decoder.feed(rest);
      if (decoder.done) socket.end();
    };
    socket.on("data", onData);
    socket.once("end", () => {
      decoder?.end();
      if (!settled) {
        settled = true;
        reject(new Error("the engine closed the connection without a response"));
      }
    });
    socket.once("error", (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      } else if (decoder && !decoder.done) body.destroy(err);
    });
    socket.once("close", () => decoder?.end());
  });
}
