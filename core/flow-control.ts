// HTTP/2 flow-control windows on our own sockets. Node's default is 64 KiB per stream
// and per connection, so a 1 MiB Content Read or Write message stalls on about sixteen
// WINDOW_UPDATE round trips per hop (measured: a 2 MiB Content/Read took 19.6 ms with
// the default window, 11.1 ms with a large one). Go's gRPC grows its window to 16 MiB;
// a fixed few MiB gives the same effect here. Peers are local processes of Berth.
import http2 from "node:http2";

/** Bytes a peer may send on one stream (and one connection) before we read them. */
export const flowControlWindow = 8 * 1024 * 1024;

/**
 * Calls a service process takes at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS);
 * the gateway keeps at most this many open to each (services/gateway/limits.ts).
 */
export const serviceMaxConcurrentStreams = 1000;

/** Opens a session's connection-level window too (settings only cover streams). */
export function widenSessionWindow(session: http2.Http2Session, size = flowControlWindow): void {
  const widen = () => {
    try {
      session.setLocalWindowSize(size);
    } catch {
      // the session is already closing
    }
  };
  if (session.connecting) session.once("connect", widen);
  else widen();
}

const createServer = http2.createServer;

/** An h2c server whose peers may send flowControlWindow bytes per stream and per connection. */
export function createWideServer(options: http2.ServerOptions = {}, listener?: Parameters<typeof http2.createServer>[1]): http2.Http2Server {
  const server = createServer({ ...options, settings: { ...options.settings, initialWindowSize: flowControlWindow } }, listener);
  server.on("session", (session) => widenSessionWindow(session));
  return server;
}

/**
 * grpc-js takes no window option for servers (only for channels), so its
 * http2.createServer calls are made through createWideServer. Idempotent; affects only
 * servers created after it runs, in this process.
 */
export function widenGrpcServerWindows(): void {
  (http2 as { createServer: unknown }).createServer = createWideServer;
}
