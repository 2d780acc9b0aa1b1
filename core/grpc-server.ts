// Bootstrap shared by every service process: a nice-grpc server on
// <state>/services/<name>.sock with the cross-cutting middleware (trace span per
// call, error mapping), graceful SIGTERM, and exit when berthd (our parent) goes away.
import { createServer, ServerError, Status, type CallContext, type Server, type ServerMiddlewareCall } from "nice-grpc";
import { context as otelContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { BerthError, failedPrecondition, grpcStatusOf } from "./errors.ts";
import { createLogger, type Logger } from "./log.ts";
import { parseServicePaths, serviceSocketPath, type Paths } from "./config.ts";
import { extractContext, initTelemetry, stopTelemetry, telemetryEnabled, tracer } from "./telemetry.ts";
import { validateIdentifier } from "./identifiers.ts";
import { widenGrpcServerWindows } from "./flow-control.ts";
import { namespaceHeader, leaseHeader } from "./headers.ts";
import { listenOnSocket } from "./socket.ts";
import { maxMessageBytes } from "./grpc-client.ts";

/**
 * Message size bounds of every service. Sending: grpc-js has none, so a reply that no
 * client would accept (a List grown past 16 MiB) was still built and sent; now it fails
 * here with RESOURCE_EXHAUSTED. Receiving: grpc-js' 4 MiB, kept explicit — every request
 * Berth or ctr makes is far smaller (content moves in 1 MiB messages), and labels are
 * capped per object (core/labels.ts).
 */
const serverOptions = {
  "grpc.max_send_message_length": maxMessageBytes,
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
};

/** The call's namespace (containerd-namespace metadata), validated. */
export function namespaceOf(ctx: CallContext): string {
  const ns = ctx.metadata.get(namespaceHeader);
  if (typeof ns !== "string" || ns === "") throw failedPrecondition("namespace is required");
  return validateIdentifier(ns, "namespace");
}

/** The lease the call runs under, if any. */
export function leaseOf(ctx: CallContext): string | undefined {
  const lease = ctx.metadata.get(leaseHeader);
  return typeof lease === "string" && lease !== "" ? lease : undefined;
}

function toServerError(err: unknown, log: Logger, method: string): unknown {
  if (err instanceof ServerError) return err;
  if (err instanceof BerthError) return new ServerError(grpcStatusOf(err.kind), err.message);
  if (err instanceof Error && err.name === "AbortError") return new ServerError(Status.CANCELLED, "call canceled");
  log.error({ err, method }, "unexpected error");
  return new ServerError(Status.UNKNOWN, err instanceof Error ? err.message : String(err));
}

function errorMiddleware(log: Logger) {
  return async function* <Req, Res>(call: ServerMiddlewareCall<Req, Res>, ctx: CallContext) {
    try {
      return yield* call.next(call.request, ctx);
    } catch (err) {
      throw toServerError(err, log, call.method.path);
    }
  };
}

/** One server span per call, child of the trace context the caller sent. */
async function* tracingMiddleware<Req, Res>(call: ServerMiddlewareCall<Req, Res>, ctx: CallContext) {
  const parent = extractContext(ctx.metadata);
  const span = tracer().startSpan(
    call.method.path,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.method": call.method.path } },
    parent,
  );
  const spanContext = trace.setSpan(parent, span);
  const inner = call.next(call.request, ctx);
  try {
    while (true) {
      const step = await otelContext.with(spanContext, () => inner.next());
      if (step.done) return step.value;
      yield step.value;
    }
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

export interface ServiceContext extends Paths {
  name: string;
  log: Logger;
}

export interface ServiceHandle {
  /** Called once the service socket listens (e.g. to open a second, public socket). */
  afterListen?(): Promise<void> | void;
  /** Called on SIGTERM after the server stopped taking calls. */
  close?(): Promise<void> | void;
}

/**
 * Runs a service process: builds the server through `setup`, listens, and shuts
 * down cleanly on SIGTERM/SIGINT or when the parent's stdin pipe closes.
 */
export async function runService(
  name: string,
  setup: (server: Server, ctx: ServiceContext) => Promise<ServiceHandle | void> | ServiceHandle | void,
): Promise<void> {
  const paths = parseServicePaths();
  const log = createLogger(name);
  await initTelemetry(`berth-${name}`);
  const base = createServer(serverOptions).use(errorMiddleware(log));
  const server = telemetryEnabled() ? base.use(tracingMiddleware) : base;
  const handle = (await setup(server as Server, { ...paths, name, log })) ?? {};
  const socket = serviceSocketPath(paths.state, name);
  widenGrpcServerWindows();
  await listenOnSocket(socket, (path) => server.listen(`unix://${path}`));
  await handle.afterListen?.();
  log.info({ socket }, "service listening");

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, "stopping");
    const force = setTimeout(() => server.forceShutdown(), 5000);
    force.unref();
    await server.shutdown();
    await handle.close?.();
    await stopTelemetry();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // berthd holds our stdin open; EOF means the supervisor is gone, so we go too
  // rather than linger as an orphan holding the store.
  if (process.env.BERTH_SUPERVISED === "1") {
    process.stdin.on("end", () => void stop("supervisor exited"));
    process.stdin.on("error", () => void stop("supervisor exited"));
    process.stdin.resume();
  }
}
