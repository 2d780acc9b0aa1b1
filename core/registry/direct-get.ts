// A GET whose body goes from the socket to its consumer without a new Buffer per read.
// undici (and node:http alike) read a registry blob into a fresh Buffer of up to 64 KiB
// per socket read; page-faulting and collecting those cost four layer downloads of
// 200 MiB in all ~225 ms of CPU in the receiving process, where reading into reused
// buffers cost ~66 ms (`node bench/blob-body.ts`).
// Here reads land in a few recycled slabs (the socket's `onread` buffer) and the
// consumer gets views into them, a slab's worth at a time, which it must be done with
// when its promise settles; then the slab takes the next reads.
//
// HTTP/1.1, one request per connection (Connection: close): the blob GETs of a pull go
// to several hosts and redirects, each once. Bodies framed by Content-Length, chunked
// transfer coding, or the connection's end.
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";

/** Takes a slab's worth of body bytes; the views are reused once its promise settles. */
export type BodySink = (chunks: Buffer[]) => Promise<void>;

export interface DirectResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: DirectBody;
}

export interface DirectGetOptions {
  headers: Record<string, string>;
  /** For https: URLs (CA, client certificate, verification). */
  tls?: ConnectionOptions;
  signal?: AbortSignal;
}

const slabBytes = 1024 * 1024;
/** A slab with less room than this goes to the consumer: reads into a sliver are reads wasted. */
const minReadBytes = 64 * 1024;
/** Slabs handed to the consumer and not yet back: more and the socket pauses. */
const maxSlabsOut = 4;
const headLimitBytes = 64 * 1024;
/** As undici's headers and body timeouts: a connection silent this long is lost. */
const idleTimeoutMs = 300_000;

type Framing = { kind: "length"; left: number } | { kind: "chunked" } | { kind: "close" };

/** Where a chunked body's decoder is: in a chunk-size line, a chunk's data, its CRLF, or the trailer. */
type ChunkState = "size" | "extension" | "data" | "data-end" | "trailer";

class ProtocolError extends Error {
  readonly code = "ERR_BERTH_HTTP_PROTOCOL";
}

export class DirectBody implements AsyncIterable<Buffer> {
  private readonly socket: Socket;
  private framing: Framing = { kind: "close" };
  private chunkState: ChunkState = "size";
  private chunkLeft = 0;
  private sizeText = "";
  private trailerLineEmpty = true;
  /** Body bytes in `slab` not yet handed over. */
  private spans: Buffer[] = [];
  private slab: Buffer;
  private filled = 0;
  private readonly free: Buffer[] = [];
  /** Batches handed over before there was a consumer. */
  private readonly held: { spans: Buffer[]; slab: Buffer }[] = [];
  private slabsOut = 0;
  private sink: BodySink | undefined;
  /** The consumer's batches, one after another. */
  private writing: Promise<void> = Promise.resolve();
  private complete = false;
  private failure: Error | undefined;
  /** The sink threw: nothing more goes to it. */
  private sinkFailed = false;
  private settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private paused = false;

  /** @internal made by directGet */
  constructor(socket: Socket, slab: Buffer) {
    this.socket = socket;
    this.slab = slab;
  }

  /** The buffer the socket's next read goes into. */
  nextBuffer(): Buffer {
    return this.slab.subarray(this.filled);
  }

  /** @internal `n` bytes of the response head were read; returns the bytes read so far. */
  advance(n: number): Buffer {
    this.filled += n;
    return this.slab.subarray(0, this.filled);
  }

  /** @internal the head is parsed: the rest of the slab from `from` is body. */
  start(framing: Framing, from: number): void {
    this.framing = framing;
    const already = this.filled;
    this.filled = from;
    // Nothing more is read until a consumer is there.
    this.pause();
    if (framing.kind === "length" && framing.left === 0) {
      this.complete = true;
      this.finish();
    } else this.take(already - from);
  }

  /** @internal `n` bytes were read into the slab at `filled`. */
  take(n: number): void {
    let at = this.filled;
    const end = at + n;
    this.filled = end;
    while (at < end && !this.complete) {
      const f = this.framing;
      if (f.kind === "close") {
        this.spans.push(this.slab.subarray(at, end));
        at = end;
      } else if (f.kind === "length") {
        const k = Math.min(end - at, f.left);
        this.spans.push(this.slab.subarray(at, at + k));
        at += k;
        f.left -= k;
        if (f.left === 0) this.complete = true;
      } else {
        at = this.chunked(at, end);
      }
    }
    if (this.complete) this.finish();
    else if (this.slab.length - this.filled < minReadBytes) this.rotate();
  }

  /** Decodes chunked framing in slab[at, end); returns where it stopped. */
  private chunked(at: number, end: number): number {
    const slab = this.slab;
    while (at < end && !this.complete) {
      if (this.chunkState === "data") {
        const k = Math.min(end - at, this.chunkLeft);
        this.spans.push(slab.subarray(at, at + k));
        at += k;
        this.chunkLeft -= k;
        if (this.chunkLeft === 0) this.chunkState = "data-end";
        continue;
      }
      const byte = slab[at++]!;
      switch (this.chunkState) {
        case "size":
        case "extension":
          if (byte === 0x0a) {
            const size = /^[0-9a-fA-F]{1,12}$/.test(this.sizeText.trim()) ? parseInt(this.sizeText, 16) : NaN;
            if (Number.isNaN(size)) throw new ProtocolError(`bad chunk size ${JSON.stringify(this.sizeText.slice(0, 20))}`);
            this.sizeText = "";
            this.chunkLeft = size;
            this.chunkState = size === 0 ? "trailer" : "data";
            this.trailerLineEmpty = true;
          } else if (this.chunkState === "size") {
            if (byte === 0x3b) this.chunkState = "extension";
            else if (byte !== 0x0d) this.sizeText += String.fromCharCode(byte);
            if (this.sizeText.length > 20) throw new ProtocolError("chunk size line too long");
          }
          break;
        case "data-end":
          if (byte === 0x0a) this.chunkState = "size";
          else if (byte !== 0x0d) throw new ProtocolError("chunk data not followed by CRLF");
          break;
        case "trailer":
          // Trailer fields are skipped; an empty line ends the body.
          if (byte === 0x0a) {
            if (this.trailerLineEmpty) this.complete = true;
            this.trailerLineEmpty = true;
          } else if (byte !== 0x0d) this.trailerLineEmpty = false;
          break;
      }
    }
    return at;
  }

  /** The slab is (nearly) full: its body bytes go to the consumer, the reads to another slab. */
  private rotate(): void {
    this.handOver();
    // At most maxSlabsOut out and one taking reads: a slab is made only when none is free.
    this.slab = this.free.pop() ?? Buffer.allocUnsafeSlow(slabBytes);
    this.filled = 0;
    if (this.slabsOut >= maxSlabsOut) this.pause();
  }

  /**
   * The current slab's body bytes to the consumer (held until there is one); the slab
   * comes back when it is done. Only ever from a read's callback or once the socket is
   * gone: the next read's buffer is chosen right after the callback.
   */
  private handOver(): void {
    const spans = this.spans;
    this.spans = [];
    if (spans.length === 0) {
      this.free.push(this.slab);
      return;
    }
    this.slabsOut++;
    this.held.push({ spans, slab: this.slab });
    if (this.sink) this.submitHeld();
  }

  /** Queues the held batches for the sink, one call after the other. */
  private submitHeld(): void {
    const sink = this.sink!;
    for (const { spans, slab } of this.held.splice(0)) {
      this.writing = this.writing.then(() => (this.sinkFailed ? undefined : sink(spans))).then(
        () => this.slabBack(slab),
        (err: Error) => {
          this.sinkFailed = true;
          this.slabBack(slab);
          this.fail(err);
        },
      );
    }
  }

  private slabBack(slab: Buffer): void {
    this.slabsOut--;
    this.free.push(slab);
    if (this.paused && this.sink && this.slabsOut < maxSlabsOut && !this.complete && !this.failure) this.resume();
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  private resume(): void {
    this.paused = false;
    this.socket.resume();
  }

  private finish(): void {
    this.socket.destroy();
    this.handOver();
    this.settleWhenWritten();
  }

  /** Once the consumer has taken every batch handed over: pipeTo's outcome. */
  private settleWhenWritten(): void {
    const settle = this.settle;
    if (!settle) return; // a consumer that comes later settles then
    this.settle = undefined;
    void this.writing.then(() => (this.failure ? settle.reject(this.failure) : settle.resolve()));
  }

  /** @internal the connection ended (EOF) or failed. */
  ended(err?: Error): void {
    if (this.complete || this.failure) return;
    if (!err && this.framing.kind === "close") {
      this.complete = true;
      this.finish();
      return;
    }
    const left = this.framing.kind === "length" ? ` with ${this.framing.left} bytes of the body still to come` : " before the chunked body ended";
    // What came before the loss is good as far as it goes: the consumer gets it (a resume starts after it).
    this.handOver();
    this.fail(err ?? Object.assign(new Error(`other side closed${left}`), { code: "UND_ERR_SOCKET" }));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.socket.destroy();
    this.settleWhenWritten();
  }

  /**
   * Hands every body byte to `sink`, a slab at a time, one call after the other;
   * settles once the last call has. Rejects with a lost connection (after handing
   * over the bytes that came before it) or with the sink's own error (handing over
   * nothing more).
   */
  pipeTo(sink: BodySink): Promise<void> {
    if (this.sink) throw new Error("the body is already being read");
    this.sink = sink;
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.submitHeld();
      if (this.complete || this.failure) this.settleWhenWritten();
      else if (this.slabsOut < maxSlabsOut) this.resume();
    });
  }

  /** Copies of the body's bytes, for small bodies (an error document); no back-pressure. */
  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    const copies: Buffer[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    let error: Error | undefined;
    const piping = this.pipeTo(async (chunks) => {
      for (const c of chunks) copies.push(Buffer.from(c));
      wake?.();
    }).then(
      () => void (done = true),
      (err: Error) => void ((error = err), (done = true)),
    );
    void piping.then(() => wake?.());
    try {
      while (true) {
        const next = copies.shift();
        if (next) yield next;
        else if (done) {
          if (error) throw error;
          return;
        } else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      if (!done) this.destroy();
    }
  }

  /** undici's body has it; failures here come out of pipeTo and iteration instead. */
  on(_event: "error", _listener: () => void): this {
    return this;
  }

  destroy(): void {
    if (!this.complete && !this.failure) this.fail(Object.assign(new Error("the body was discarded"), { name: "AbortError" }));
  }
}

/** Parses a response head (the bytes before the blank line). */
function parseHead(text: string): { statusCode: number; headers: Record<string, string | string[]> } {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!status) throw new ProtocolError(`not an HTTP/1.1 status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new ProtocolError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return { statusCode: Number(status[1]), headers };
}

function framingOf(statusCode: number, headers: Record<string, string | string[]>): Framing {
  if (statusCode === 204 || statusCode === 304) return { kind: "length", left: 0 };
  const coding = headers["transfer-encoding"];
  if (coding !== undefined) {
    if (String(coding).toLowerCase().trim() !== "chunked") throw new ProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(coding)}`);
    return { kind: "chunked" };
  }
  const length = headers["content-length"];
  if (length === undefined) return { kind: "close" };
  if (Array.isArray(length) || !/^\d{1,15}$/.test(length)) throw new ProtocolError(`bad Content-Length ${JSON.stringify(length)}`);
  return { kind: "length", left: Number(length) };
}

function requestHead(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`header ${JSON.stringify(name)}: a line break is not allowed`);
    lines.push(`${name}: ${value}`);
  }
  lines.push("connection: close", "", "");
  return lines.join("\r\n");
}

/**
 * GET `url` over a connection of its own; resolves with the status and headers once
 * the head has arrived. The body waits (the socket paused) for pipeTo, iteration or
 * destroy. Connection and TLS failures reject with Node's own errors.
 */
export function directGet(url: URL, options: DirectGetOptions): Promise<DirectResponse> {
  return new Promise<DirectResponse>((resolve, reject) => {
    const head = requestHead(url, options.headers);
    let body: DirectBody | undefined;
    let responded = false;
    const slab = Buffer.allocUnsafeSlow(slabBytes);
    const onread = {
      buffer: () => (body ? body.nextBuffer() : slab),
      callback: (n: number) => {
        try {
          if (responded) body!.take(n);
          else readHead(n);
        } catch (err) {
          socket.destroy(err as Error);
        }
        return true;
      },
    };
    const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const socket: Socket =
      url.protocol === "https:"
        ? tlsConnect({ ...options.tls, host, port, ALPNProtocols: ["http/1.1"], ...(isIP(host) ? {} : { servername: host }), onread } as ConnectionOptions)
        : netConnect({ host, port, onread } as never);
    body = new DirectBody(socket, slab);
    const readHead = (n: number) => {
      const read = body!.advance(n);
      const end = read.indexOf("\r\n\r\n");
      if (end === -1 ? read.length >= headLimitBytes : end > headLimitBytes) throw new ProtocolError(`response head larger than ${headLimitBytes} bytes`);
      if (end === -1) return;
      const parsed = parseHead(read.subarray(0, end).toString("latin1"));
      const framing = framingOf(parsed.statusCode, parsed.headers);
      responded = true;
      resolve({ statusCode: parsed.statusCode, headers: parsed.headers, body: body! });
      // A framing error in the first body bytes fails the body, not the response.
      body!.start(framing, end + 4);
    };
    const connected = url.protocol === "https:" ? "secureConnect" : "connect";
    socket.once(connected, () => socket.write(head));
    socket.setTimeout(idleTimeoutMs, () => socket.destroy(Object.assign(new Error(`no data for ${idleTimeoutMs / 1000} s`), { code: "UND_ERR_BODY_TIMEOUT" })));
    socket.on("error", (err) => {
      if (responded) body!.ended(err);
      else reject(err);
    });
    socket.on("end", () => {
      if (responded) body!.ended();
      else reject(Object.assign(new Error("other side closed before the response head"), { code: "UND_ERR_SOCKET" }));
    });
    socket.on("close", () => {
      if (responded) body!.ended(new Error("the connection closed"));
      else reject(Object.assign(new Error("other side closed before the response head"), { code: "UND_ERR_SOCKET" }));
    });
    const signal = options.signal;
    if (signal) {
      const abort = () => socket.destroy(Object.assign(new Error("This operation was aborted"), { name: "AbortError" }));
      if (signal.aborted) abort();
      else {
        signal.addEventListener("abort", abort, { once: true });
        socket.once("close", () => signal.removeEventListener("abort", abort));
      }
    }
  });
}
