// The gateway's front door: an HTTP/2 (h2c) server on the public socket that forwards
// each gRPC call, by the service name in its path, to the owning process's socket.
// Messages are never decoded: request and response bodies are piped as bytes, headers
// and trailers copied, so every call kind (unary and streams) passes unchanged.
//
// Under load it holds its bounds end to end: each public connection takes at most
// maxStreamsPerConnection calls at once (advertised, so clients queue the rest), each
// service process at most upstreamMaxStreams from the gateway (the rest wait in a
// bounded queue, services/gateway/upstream.ts), a call ends when its client resets
// it or its grpc-timeout passes (cancelling the service's stream), idle connections
// are closed, and connections beyond maxConnections are refused.
import { constants, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type http2 from "node:http2";
import { context as otelContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { extractContext, injectContext, telemetryEnabled, tracer } from "../../core/telemetry.ts";
import type { Logger } from "../../core/log.ts";
import { grpcStatusText } from "../../core/errors.ts";
import { createWideServer } from "../../core/flow-control.ts";
import { gatewayLimits, type GatewayLimits } from "./limits.ts";
import { grpcTimeoutMs } from "./deadline.ts";
import { UpstreamPool, type OpenUpstream } from "./upstream.ts";
import { Status, type CallContext } from "nice-grpc-common";
import { frameResponse, grpcMessageEncoding, localCallContext, maxLocalRequestBytes, metadataOf, unframeRequest, statusOfError, type LocalMethod, type LocalMethods } from "./local-calls.ts";

export interface ProxyRoutes {
  /** The socket path serving a fully qualified gRPC service name, if any. */
  socketFor(service: string): string | undefined;
  /** A promise when the process serving it must first be started (on demand). */
  ready?(service: string): Promise<void> | undefined;
  /** Methods answered in this process (local-calls.ts), by gRPC path. */
  local?: LocalMethods;
}

const grpcUnimplemented = grpcStatusText("not implemented");
const grpcUnavailable = grpcStatusText("unavailable");
const grpcInvalidArgument = grpcStatusText("invalid argument");
const grpcDeadlineExceeded = grpcStatusText("deadline exceeded");

/** A closed connection still not gone after its GOAWAY (a peer that does not read) is dropped after this. */
const closeGraceMs = 5000;
/** At most one log line per this long for a repeated refusal (a flood must not flood the log). */
const refusalLogEveryMs = 10_000;

function trailersOnly(stream: ServerHttp2Stream, status: string, message: string, encodeMessage: (message: string) => string = encodeURIComponent): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": status, "grpc-message": encodeMessage(message) },
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

/** Logs `message` at most once per refusalLogEveryMs, with how many times it happened meanwhile. */
function throttledWarning(log: Logger, message: string) {
  let count = 0;
  let last = -Infinity;
  return (fields: Record<string, unknown>) => {
    count++;
    const now = performance.now();
    if (now - last < refusalLogEveryMs) return;
    log.warn({ ...fields, times: count }, message);
    last = now;
    count = 0;
  };
}

/** Closes (GOAWAY) a public connection once it has had no open call for `idleMs`. */
function closeWhenIdle(session: ServerHttp2Session, idleMs: number, log: Logger): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      log.debug({ idleMs }, "closing an idle client connection");
      session.close();
      setTimeout(() => session.destroy(), closeGraceMs).unref();
    }, idleMs);
    timer.unref();
  };
  arm();
  session.on("stream", (stream: ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed && !session.destroyed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
}

/** What ends a call when its deadline passes; replaced as the call moves on (waiting, forwarded). */
interface CallDeadline {
  onExpiry: () => void;
}

export function createGrpcProxy(routes: ProxyRoutes, log: Logger, limits: GatewayLimits = gatewayLimits()) {
  const upstreams = new UpstreamPool(limits.upstreamMaxStreams, limits.upstreamMaxQueued);
  const server = createWideServer({ maxSessionMemory: 64, settings: { maxConcurrentStreams: limits.maxStreamsPerConnection } });
  const tracing = telemetryEnabled();

  // Node closes connections beyond the cap as it accepts them.
  server.maxConnections = limits.maxConnections;
  const connectionRefused = throttledWarning(log, "gateway connection cap reached: refusing new client connections");
  server.on("drop", () => connectionRefused({ maxConnections: limits.maxConnections, env: "BERTH_GATEWAY_MAX_CONNECTIONS" }));
  const callShed = throttledWarning(log, "gateway queue for a service is full: answering new calls UNAVAILABLE");

  // Open client connections, for close() to end.
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    closeWhenIdle(session, limits.idleConnectionMs, log);
  });

  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"] ?? "");
    const service = path.split("/")[1] ?? "";
    const socket = routes.socketFor(service);
    if (!socket) {
      trailersOnly(stream, grpcUnimplemented, `unknown service ${service}: berth does not implement it (yet): not implemented`);
      return;
    }
    let timeoutMs: number | undefined;
    try {
      timeoutMs = grpcTimeoutMs(headers["grpc-timeout"]);
    } catch (err) {
      trailersOnly(stream, grpcInvalidArgument, (err as Error).message);
      return;
    }
    const deadline: CallDeadline = {
      onExpiry: () => trailersOnly(stream, grpcDeadlineExceeded, `deadline exceeded: ${path} did not complete within its grpc-timeout`),
    };
    if (timeoutMs !== undefined) {
      const timer = setTimeout(() => deadline.onExpiry(), timeoutMs);
      stream.once("close", () => clearTimeout(timer));
    }
    const local = routes.local?.get(path);
    if (local && isPlainGrpc(headers)) {
      answerLocally(stream, headers, path, local, deadline, (body) => route(stream, headers, path, service, socket, deadline, body));
      return;
    }
    route(stream, headers, path, service, socket, deadline);
  });

  /** Forwards the call to the process serving it, starting that process first when it runs on demand. */
  function route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string, service: string, socket: string, deadline: CallDeadline, body?: Buffer): void {
    const ready = routes.ready?.(service);
    if (!ready) return admit(stream, headers, path, service, socket, deadline, body);
    ready.then(
      () => admit(stream, headers, path, service, socket, deadline, body),
      (err: Error) => trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${err.message}`),
    );
  }

  /**
   * Answers a call in berthd (local-calls.ts): reads the request, runs the method and
   * sends its messages, or hands the call (with the body read) to `forward` when the
   * method declines it.
   */
  function answerLocally(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    path: string,
    local: LocalMethod,
    deadline: CallDeadline,
    forward: (body: Buffer) => void,
  ): void {
    const abort = new AbortController();
    const expire = deadline.onExpiry;
    deadline.onExpiry = () => {
      abort.abort();
      expire();
    };
    stream.once("close", () => abort.abort());
    for (const warm of local.warms ?? []) routes.ready?.(warm)?.catch(() => {});
    const span = tracing
      ? tracer().startSpan(path, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.method": path } }, extractContext(headerBag(headers)))
      : undefined;
    readRequestBody(stream, (body) => {
      if (body === undefined) return span?.end();
      let ctx: CallContext;
      let request: unknown;
      try {
        request = local.decode(unframeRequest(body));
        ctx = localCallContext(metadataOf(headers), abort.signal);
        if (!local.accepts(request, ctx)) {
          span?.end();
          return forward(body);
        }
      } catch (err) {
        return fail(err);
      }
      const run = () => local.answer(request, ctx);
      (span ? otelContext.with(trace.setSpan(otelContext.active(), span), run) : run()).then((messages) => {
        span?.end();
        // Answered already (its deadline passed) or gone: nothing more to send.
        if (stream.destroyed || stream.closed || stream.headersSent) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        for (const message of messages) stream.write(frameResponse(message));
        stream.end();
      }, fail).catch((err: Error) => log.warn({ err: err.message, path }, "cannot send a local answer"));
    });
    function fail(err: unknown): void {
      const { code, message } = statusOfError(err, log, path);
      span?.setStatus({ code: SpanStatusCode.ERROR, message });
      span?.end();
      trailersOnly(stream, String(code), message, grpcMessageEncoding);
    }
  }

  /** Takes a slot on the service's connection, or waits for one; the request body waits (unread) meanwhile. */
  function admit(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string, service: string, socket: string, deadline: CallDeadline, body?: Buffer): void {
    if (stream.destroyed || stream.closed) return;
    const admission = upstreams.admit(socket, (open, release) => forward(stream, headers, path, service, open, release, deadline, body));
    if (!admission) {
      callShed({ service, queued: limits.upstreamMaxQueued, env: "BERTH_GATEWAY_UPSTREAM_MAX_QUEUED" });
      trailersOnly(stream, grpcUnavailable, `gateway overloaded: ${limits.upstreamMaxQueued} calls already wait for ${service}; retry later`);
      return;
    }
    stream.once("close", () => admission.cancel());
    const expire = deadline.onExpiry;
    deadline.onExpiry = () => {
      admission.cancel();
      expire();
    };
  }

  /** Passes one call to the service's socket through the stream `open` makes. */
  function forward(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    path: string,
    service: string,
    open: OpenUpstream,
    release: () => void,
    deadline: CallDeadline,
    body?: Buffer,
  ): void {
    if (stream.destroyed || stream.closed) return release();
    const outgoing = passOn(headers);
    const span = tracing
      ? tracer().startSpan(`gateway ${path}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.method": path } }, extractContext(headerBag(headers)))
      : undefined;
    if (span) injectContext(headerBag(outgoing), trace.setSpan(otelContext.active(), span));

    let upstream: http2.ClientHttp2Stream;
    try {
      upstream = open({ ...outgoing, ":method": "POST", ":path": path, ":authority": "localhost", ":scheme": "http" });
    } catch (err) {
      release();
      span?.end();
      trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${(err as Error).message}`);
      return;
    }

    let trailers: OutgoingHttpHeaders | undefined;
    let expired = false;
    const expire = deadline.onExpiry;
    deadline.onExpiry = () => {
      expired = true;
      if (stream.headersSent && !stream.destroyed && !stream.closed) {
        // Answered in part: end it with the deadline's status in place of the service's trailers.
        upstream.unpipe(stream);
        trailers = { "grpc-status": grpcDeadlineExceeded, "grpc-message": encodeURIComponent(`deadline exceeded: ${path} did not complete within its grpc-timeout`) };
        stream.end();
      } else {
        expire();
      }
      upstream.close(constants.NGHTTP2_CANCEL);
    };
    upstream.on("response", (resHeaders, flags) => {
      if (expired || stream.destroyed || stream.closed) return;
      if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
        stream.respond(passOn(resHeaders, ":status"), { endStream: true });
        return;
      }
      stream.respond(passOn(resHeaders, ":status"), { waitForTrailers: true });
      upstream.pipe(stream);
    });
    upstream.on("trailers", (t) => {
      if (expired) return;
      trailers = passOn(t);
      const status = trailers["grpc-status"];
      if (span && status !== undefined && status !== "0") span.setStatus({ code: SpanStatusCode.ERROR, message: `grpc-status ${status}` });
    });
    stream.on("wantTrailers", () => {
      stream.sendTrailers(trailers ?? { "grpc-status": grpcUnavailable, "grpc-message": encodeURIComponent(`service for ${service} closed the call`) });
    });
    upstream.on("error", (err) => {
      if (expired) return;
      log.warn({ err: err.message, path }, "upstream call failed");
      trailersOnly(stream, grpcUnavailable, `service for ${service} is unavailable: ${err.message}`);
    });
    upstream.on("close", () => {
      release();
      span?.end();
      // The service went away mid-call without sending trailers.
      if (!stream.headersSent && !stream.destroyed && upstream.rstCode !== constants.NGHTTP2_NO_ERROR) {
        trailersOnly(stream, grpcUnavailable, `service for ${service} closed the call`);
      }
    });
    // The client reset the call or went away: the service's stream goes too (RST_STREAM CANCEL).
    stream.on("close", () => {
      if (!upstream.closed) upstream.close(constants.NGHTTP2_CANCEL);
    });
    stream.on("error", () => upstream.close(constants.NGHTTP2_CANCEL));
    // A call a local method declined comes with its body already read.
    if (body) upstream.end(body);
    else stream.pipe(upstream);
  }

  server.on("sessionError", (err) => log.debug({ err: err.message }, "client session error"));

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

/** Only calls without compression are answered locally (ctr and berthctl send none). */
function isPlainGrpc(headers: IncomingHttpHeaders): boolean {
  const encoding = headers["grpc-encoding"];
  return encoding === undefined || encoding === "identity";
}

/**
 * Reads a request body of at most one message's worth; undefined (the call reset) when
 * the client went away or sent more than a request may hold.
 */
function readRequestBody(stream: ServerHttp2Stream, done: (body: Buffer | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (body: Buffer | undefined) => {
    if (finished) return;
    finished = true;
    done(body);
  };
  stream.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxLocalRequestBytes + 5) {
      trailersOnly(stream, String(Status.RESOURCE_EXHAUSTED), `request larger than the ${maxLocalRequestBytes}-byte limit`);
      finish(undefined);
      return;
    }
    chunks.push(chunk);
  });
  stream.once("end", () => finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
  stream.once("close", () => finish(undefined));
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
