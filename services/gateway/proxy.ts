// The gateway's front door: an HTTP/2 (h2c) server on the public socket that forwards
// each gRPC call, by the service name in its path, to the owning process's socket.
// Messages are never decoded: request and response bodies are piped as bytes, headers
// and trailers copied, so every call kind (unary and streams) passes unchanged.
import http2, { constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import net from "node:net";
import { context as otelContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { extractContext, injectContext, telemetryEnabled, tracer } from "../../core/telemetry.ts";
import type { Logger } from "../../core/log.ts";
import { grpcStatusText } from "../../core/errors.ts";
import { createWideServer, flowControlWindow, widenSessionWindow } from "../../core/flow-control.ts";

export interface ProxyRoutes {
  /** The socket path serving a fully qualified gRPC service name, if any. */
  socketFor(service: string): string | undefined;
  /** A promise when the process serving it must first be started (on demand). */
  ready?(service: string): Promise<void> | undefined;
}

const grpcUnimplemented = grpcStatusText("not implemented");
const grpcUnavailable = grpcStatusText("unavailable");

function trailersOnly(stream: ServerHttp2Stream, status: string, message: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": status, "grpc-message": encodeURIComponent(message) },
    { endStream: true },
  );
}

/** Headers to pass on: all but the pseudo-headers (each hop sets its own), except `keep`. */
function passOn(headers: IncomingHttpHeaders, keep?: ":status"): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (value !== undefined && (key === keep || !key.startsWith(":"))) out[key] = value;
  }
  return out;
}

class UpstreamSessions {
  private readonly sessions = new Map<string, ClientHttp2Session>();

  get(socketPath: string): ClientHttp2Session {
    const existing = this.sessions.get(socketPath);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = http2.connect("http://localhost", {
      createConnection: () => net.connect(socketPath),
      settings: { initialWindowSize: flowControlWindow },
    });
    widenSessionWindow(session);
    const forget = () => {
      if (this.sessions.get(socketPath) === session) this.sessions.delete(socketPath);
    };
    session.on("error", forget);
    session.on("close", forget);
    // The service is shutting down: let calls in flight finish, then close, so
    // the service's graceful shutdown is not held up by our idle connection.
    session.on("goaway", () => {
      forget();
      session.close();
    });
    this.sessions.set(socketPath, session);
    return session;
  }

  closeAll(): void {
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }
}

export function createGrpcProxy(routes: ProxyRoutes, log: Logger) {
  const upstreams = new UpstreamSessions();
  const server = createWideServer({ maxSessionMemory: 64 });
  const tracing = telemetryEnabled();

  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"] ?? "");
    const service = path.split("/")[1] ?? "";
    const socket = routes.socketFor(service);
    if (!socket) {
      trailersOnly(stream, grpcUnimplemented, `unknown service ${service}: berth does not implement it (yet): not implemented`);
      return;
    }
    const ready = routes.ready?.(service);
    if (!ready) return forward(stream, headers, path, service, socket);
    ready.then(
      () => forward(stream, headers, path, service, socket),
      (err: Error) => trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${err.message}`),
    );
  });

  /** Passes one call to the upstream socket; the request body waits (buffered) until then. */
  function forward(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string, service: string, socket: string): void {
    if (stream.destroyed) return;
    const outgoing = passOn(headers);
    const span = tracing
      ? tracer().startSpan(`gateway ${path}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.method": path } }, extractContext(headerBag(headers)))
      : undefined;
    if (span) injectContext(headerBag(outgoing), trace.setSpan(otelContext.active(), span));

    let upstream: http2.ClientHttp2Stream;
    try {
      upstream = upstreams.get(socket).request(
        { ...outgoing, ":method": "POST", ":path": path, ":authority": "localhost", ":scheme": "http" },
        { endStream: false },
      );
    } catch (err) {
      span?.end();
      trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${(err as Error).message}`);
      return;
    }

    let trailers: OutgoingHttpHeaders | undefined;
    upstream.on("response", (resHeaders, flags) => {
      if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
        if (!stream.destroyed) stream.respond(passOn(resHeaders, ":status"), { endStream: true });
        return;
      }
      if (stream.destroyed) return;
      stream.respond(passOn(resHeaders, ":status"), { waitForTrailers: true });
      upstream.pipe(stream);
    });
    upstream.on("trailers", (t) => {
      trailers = passOn(t);
      const status = trailers["grpc-status"];
      if (span && status !== undefined && status !== "0") span.setStatus({ code: SpanStatusCode.ERROR, message: `grpc-status ${status}` });
    });
    stream.on("wantTrailers", () => {
      stream.sendTrailers(trailers ?? { "grpc-status": grpcUnavailable, "grpc-message": encodeURIComponent(`service for ${service} closed the call`) });
    });
    upstream.on("error", (err) => {
      log.warn({ err: err.message, path }, "upstream call failed");
      trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${err.message}`);
    });
    upstream.on("close", () => {
      span?.end();
      // The service went away mid-call without sending trailers.
      if (!stream.headersSent && !stream.destroyed && upstream.rstCode !== constants.NGHTTP2_NO_ERROR) {
        trailersOnly(stream, grpcUnavailable, `service for ${service} closed the call`);
      }
    });
    stream.on("close", () => {
      if (!upstream.closed) upstream.close(constants.NGHTTP2_CANCEL);
    });
    stream.on("error", () => upstream.close(constants.NGHTTP2_CANCEL));
    stream.pipe(upstream);
  }

  server.on("sessionError", (err) => log.debug({ err: err.message }, "client session error"));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  return {
    server,
    /**
     * Stops taking connections, tells every client to go away (GOAWAY: calls under way
     * may finish), and after a short grace cuts what is still open: a client's
     * long-lived stream (ctr events) must not hold the daemon's shutdown.
     */
    close(graceMs = 500): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const cut = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, graceMs);
      return closed.finally(() => {
        clearTimeout(cut);
        upstreams.closeAll();
      });
    },
  };
}

/** Adapts plain header objects to the get/set shape the propagator helpers use. */
function headerBag(headers: Record<string, unknown>) {
  return {
    get: (key: string) => headers[key],
    set: (key: string, value: string) => {
      headers[key] = value;
    },
  };
}
