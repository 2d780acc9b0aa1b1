// The gRPC side of every service: a nice-grpc server on <state>/services/<name>.sock
// with the cross-cutting middleware (trace span per call, error mapping). The process
// around it (signals, parent death, telemetry) is core/lifecycle.ts.
import { rmSync } from "node:fs";
import { createServer, ServerError, Status, type CallContext, type Server, type ServerMiddlewareCall } from "nice-grpc";
import { context as otelContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { BerthError, failedPrecondition, grpcStatusOf } from "./errors.ts";
import type { Logger } from "./log.ts";
import { serviceSocketPath } from "./config.ts";
import { runProcess, type ProcessContext } from "./lifecycle.ts";
import { extractContext, telemetryEnabled, tracer } from "./telemetry.ts";
import { validateIdentifier } from "./identifiers.ts";
import { serviceMaxConcurrentStreams, widenGrpcServerWindows } from "./flow-control.ts";
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
  // Load bounds. grpc-js advertises no stream limit by default, so a burst through the
  // gateway opened tens of thousands of calls at once on one connection; now a peer
  // queues beyond this many (the gateway's own bound is the same number).
  "grpc.max_concurrent_streams": serviceMaxConcurrentStreams,
  // A connection whose peer stops answering pings is closed (its calls fail and the
  // gateway reconnects) rather than held forever.
  "grpc.keepalive_time_ms": 60_000,
  "grpc.keepalive_timeout_ms": 20_000,
  // Connections without calls are closed after a while, returning their memory;
  // the gateway reconnects on its next call.
  "grpc.max_connection_idle_ms": 5 * 60_000,
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

export type ServiceContext = ProcessContext;

export interface ServiceHandle {
  /** Called once the service socket listens (e.g. to open a second, public socket). */
  afterListen?(): Promise<void> | void;
  /** A process started on demand stays while this answers true (work of its own, not calls). */
  busy?(): Promise<boolean> | boolean;
  /** Called on stop before the calls in flight are ended (their ends are then no caller's doing). */
  stopping?(): void;
  /** Called on stop after the server stopped taking calls. */
  close?(): Promise<void> | void;
}

/** How long a process retiring on idle still takes the calls already routed to it. */
const retireGraceMs = 250;

/** Open calls (streams such as `ctr events` included) get this long to end on stop. */
const shutdownGraceMs = 500;

/**
 * A process retiring on idle lets the calls that reached it in its grace finish, with
 * the work they left, for at most this long: berthd starts no other copy of it
 * meanwhile (content and snapshots must each be the only process that links and
 * unlinks their files), so the next call waits for this one to exit.
 */
const retireDrainMs = 60_000;

/**
 * A gRPC server with the cross-cutting middleware on <state>/services/<socketName>.sock.
 * `idle.onIdle`, when given, is called once no call has been in flight for `idle.ms`;
 * when it answers false (still busy with work of its own) it is asked again later.
 */
export async function startGrpcServer(
  ctx: ProcessContext,
  socketName: string,
  setup: (server: Server) => Promise<void> | void,
  idle?: { ms: number; onIdle: (inFlight: () => number) => Promise<boolean> | boolean },
): Promise<{ close(graceMs?: number, beforeForce?: () => void): Promise<void> }> {
  const base = createServer(serverOptions).use(errorMiddleware(ctx.log));
  const traced = telemetryEnabled() ? base.use(tracingMiddleware) : base;
  const idleWatch = idle ? idleMiddleware(idle.ms, idle.onIdle) : undefined;
  const server = (idleWatch ? traced.use(idleWatch.middleware) : traced) as Server;
  await setup(server);
  const socket = serviceSocketPath(ctx.state, socketName);
  widenGrpcServerWindows();
  await listenOnSocket(socket, (path) => server.listen(`unix://${path}`));
  ctx.log.info({ socket }, "service listening");
  // Idle time counts from here: a start-up slower than idle.ms (a loaded machine, a
  // large store to sweep) must not retire the process before its first call.
  idleWatch?.start();
  return {
    /**
     * Stops taking calls and lets the open ones end, for at most `graceMs`; `beforeForce`
     * runs just before the calls still open are cancelled.
     */
    async close(graceMs = shutdownGraceMs, beforeForce?: () => void) {
      const force = setTimeout(() => {
        beforeForce?.();
        server.forceShutdown();
      }, graceMs);
      force.unref();
      await server.shutdown();
      clearTimeout(force);
    },
  };
}

/**
 * A process started on demand waits at least this long for its first call. Whoever had
 * it started is about to call it, but the start's answer travels through berthd to the
 * caller, which then connects: on a loaded machine that can take longer than a short
 * idle time, and the process retired before the call arrived.
 */
const firstCallWaitMs = 5000;

/**
 * Counts calls in flight; once start()ed, calls onIdle after `ms` without any (after
 * at least firstCallWaitMs before the first call), and again if it declines (once it
 * accepted, never again). Calls may arrive while onIdle runs: it is given the count.
 */
function idleMiddleware(ms: number, onIdle: (inFlight: () => number) => Promise<boolean> | boolean) {
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let called = false;
  const arm = () => {
    if (stopped) return;
    timer = setTimeout(
      async () => {
        stopped = await Promise.resolve(onIdle(() => inFlight)).catch(() => false);
        if (!stopped && inFlight === 0) arm();
      },
      called ? ms : Math.max(ms, firstCallWaitMs),
    );
  };
  async function* middleware<Req, Res>(call: ServerMiddlewareCall<Req, Res>, ctx: CallContext) {
    called = true;
    inFlight++;
    clearTimeout(timer);
    try {
      return yield* call.next(call.request, ctx);
    } finally {
      if (--inFlight === 0) arm();
    }
  }
  return {
    middleware,
    start() {
      if (inFlight === 0) arm();
    },
  };
}

/**
 * How long this process may stay idle before it exits: set by berthd for a process it
 * starts on demand; undefined for one that stays (always-on, or berthd --keep-processes).
 */
export function idleExitMs(): number | undefined {
  const ms = Number(process.env.BERTH_IDLE_EXIT_MS);
  return ms > 0 ? ms : undefined;
}

/**
 * Runs a service process: builds the server through `setup`, listens on its socket,
 * and stops cleanly (core/lifecycle.ts). A process berthd starts on demand
 * (BERTH_IDLE_EXIT_MS set) exits by itself once idle that long.
 */
export async function runService(
  name: string,
  setup: (server: Server, ctx: ServiceContext) => Promise<ServiceHandle | void> | ServiceHandle | void,
): Promise<void> {
  await runProcess(name, async (ctx, stop) => {
    let handle: ServiceHandle = {};
    let retiring = false;
    const idleMs = idleExitMs();
    const grpc = await startGrpcServer(
      ctx,
      name,
      async (server) => {
        handle = (await setup(server, ctx)) ?? {};
      },
      idleMs !== undefined
        ? {
            ms: idleMs,
            onIdle: async (inFlight) => {
              if (await handle.busy?.()) return false;
              // Retire before stopping: with the socket gone, berthd starts a fresh process
              // for the next call (once this one has exited) instead of sending it here
              // while this one shuts down (which would refuse it); a call routed here just
              // before gets a moment to arrive. Then the retirement is final: the calls in
              // flight finish (up to retireDrainMs) and the process exits.
              rmSync(serviceSocketPath(ctx.state, name), { force: true });
              await new Promise((resolve) => setTimeout(resolve, retireGraceMs));
              // The grace is over when this process runs again, which on a loaded machine
              // can be long after: calls that reached its connections meanwhile are still
              // unread. One pass of the event loop's I/O (before setImmediate's turn) takes
              // them in, so the shutdown lets them finish instead of refusing them.
              await new Promise((resolve) => setImmediate(resolve));
              if (inFlight() > 0) ctx.log.debug({ inFlight: inFlight() }, "retiring: letting the calls in flight finish");
              retiring = true;
              void stop("idle");
              return true;
            },
          }
        : undefined,
    );
    await handle.afterListen?.();
    return {
      async close() {
        if (retiring) await drainRetiring(grpc, handle);
        else {
          handle.stopping?.();
          await grpc.close(shutdownGraceMs);
        }
        await handle.close?.();
      },
    };
  });
}

/**
 * A process retiring on idle ends once the calls that reached it in its grace ended and
 * the work they left is done (a cancelled pull's clean-up, which a process that stays
 * would do), for at most retireDrainMs. Until then a caller that goes away is gone as at
 * any other time (its pull is cancelled); only what is still open at the end, or once
 * berthd stops the process (SIGTERM), is ended by the process itself.
 */
async function drainRetiring(grpc: Awaited<ReturnType<typeof startGrpcServer>>, handle: ServiceHandle): Promise<void> {
  let terminated = false;
  process.once("SIGTERM", () => {
    terminated = true;
    handle.stopping?.();
  });
  const deadline = Date.now() + retireDrainMs;
  await grpc.close(retireDrainMs, () => handle.stopping?.());
  const busy = async () => Boolean(await Promise.resolve(handle.busy?.()).catch(() => false));
  while (!terminated && Date.now() < deadline && (await busy())) await new Promise((resolve) => setTimeout(resolve, 100));
}
