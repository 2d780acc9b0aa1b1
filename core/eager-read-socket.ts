// A socket for an HTTP/2 session that keeps reading while the session writes.
//
// Node's HTTP/2 stops reading its socket while one of its own writes is pending. Two
// Node peers that both write more than the kernel buffers hold (a burst of calls one
// way, their answers the other) then wait on each other forever: full queues on both
// sides, 0% CPU. That wedged the gateway's connection to content under a burst of
// unary calls. Over this wrapper the session still pauses itself, but the bytes the
// peer sends keep being taken off the socket, so the peer's writes complete, it reads
// again, and ours complete in turn: no cycle. What piles up here meanwhile is bounded
// by what the peer may send unasked: DATA by our HTTP/2 flow-control windows, HEADERS
// by the streams we open (the proxy bounds those per upstream).
import { Duplex } from "node:stream";
import type net from "node:net";

export class EagerReadSocket extends Duplex {
  private readonly socket: net.Socket;

  constructor(socket: net.Socket) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    // push()'s answer is ignored on purpose: not pausing the socket is the point.
    socket.on("data", (chunk: Buffer) => this.push(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    // Done once flushed to the kernel: the session writes no further until then.
    this.socket.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
