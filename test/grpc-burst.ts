// Bursts of concurrent gRPC calls over raw HTTP/2 (h2c) on a UNIX socket: many calls
// open at once on each connection, as a busy or hostile client makes them. Raw frames
// rather than a gRPC library, so the client itself neither queues nor limits calls
// beyond what the server advertises (SETTINGS_MAX_CONCURRENT_STREAMS), and a burst of
// tens of thousands costs the test process little. Used by test/gateway-load.test.ts and
// bench/gateway-load.ts.
import http2, { type ClientHttp2Session } from "node:http2";
import net from "node:net";

export interface BurstOptions {
  /** The h2c UNIX socket (the gateway's public socket, or containerd's). */
  address: string;
  connections: number;
  callsPerConnection: number;
  /** "/package.Service/Method" of a unary call. */
  path: string;
  /** The serialized request message (without gRPC framing). */
  message: Uint8Array;
  headers?: Record<string, string>;
  /** Gives up (closing every connection) after this long. */
  timeoutMs: number;
  /** Closes each connection as soon as its calls are sent, reading no answer. */
  abandon?: boolean;
}

export interface BurstResult {
  /** Calls answered grpc-status 0. */
  ok: number;
  /** Calls answered with another grpc-status, by status. */
  failed: Record<string, number>;
  /** Calls reset or broken before an answer (refused streams included). */
  reset: number;
  /** Calls still unanswered when the burst gave up or abandoned them. */
  unanswered: number;
  elapsedMs: number;
}

/** The 5-byte gRPC length prefix and the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

function connect(address: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect("http://localhost", {
      createConnection: () => net.connect(address),
      // Calls past the server's stream limit wait in this session; Node's 10 MiB default
      // would reset them (ENHANCE_YOUR_CALM) on the client's own side.
      maxSessionMemory: 1024,
    });
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

export async function burst(options: BurstOptions): Promise<BurstResult> {
  const started = performance.now();
  const result: BurstResult = { ok: 0, failed: {}, reset: 0, unanswered: 0, elapsedMs: 0 };
  const frame = grpcFrame(options.message);
  const sessions = await Promise.all(Array.from({ length: options.connections }, () => connect(options.address)));
  let timer: NodeJS.Timeout | undefined;
  let counting = true;
  const count = (outcome: (r: BurstResult) => void) => {
    if (counting) outcome(result);
  };
  try {
    const calls = sessions.map((session) => runCalls(session, options, frame, count));
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, options.timeoutMs);
    });
    await Promise.race([Promise.all(calls), gaveUp]);
  } finally {
    clearTimeout(timer);
    // Calls still open now are unanswered, whatever their streams report on the way out.
    counting = false;
    for (const session of sessions) session.destroy();
  }
  result.unanswered = options.connections * options.callsPerConnection - result.ok - result.reset - Object.values(result.failed).reduce((a, b) => a + b, 0);
  result.elapsedMs = performance.now() - started;
  return result;
}

function runCalls(session: ClientHttp2Session, options: BurstOptions, frame: Buffer, count: (outcome: (r: BurstResult) => void) => void): Promise<void> {
  session.on("error", () => {});
  let abandoned = false;
  const calls: Promise<void>[] = [];
  for (let i = 0; i < options.callsPerConnection; i++) {
    calls.push(
      new Promise<void>((resolve) => {
        let stream: http2.ClientHttp2Stream;
        try {
          stream = session.request({
            ":method": "POST",
            ":path": options.path,
            "content-type": "application/grpc",
            te: "trailers",
            ...options.headers,
          });
        } catch {
          count((r) => r.reset++);
          return resolve();
        }
        let status: string | undefined;
        stream.on("response", (headers) => {
          if (headers["grpc-status"] !== undefined) status = String(headers["grpc-status"]);
        });
        stream.on("trailers", (trailers) => {
          if (trailers["grpc-status"] !== undefined) status = String(trailers["grpc-status"]);
        });
        stream.on("data", () => {});
        stream.on("error", () => {});
        stream.on("close", () => {
          if (status === "0") count((r) => r.ok++);
          else if (status !== undefined) count((r) => (r.failed[status!] = (r.failed[status!] ?? 0) + 1));
          else if (!abandoned) count((r) => r.reset++);
          resolve();
        });
        stream.end(frame);
      }),
    );
  }
  if (options.abandon) {
    // Written out (or queued in the socket), then the client goes away.
    return new Promise((resolve) => setImmediate(() => {
      abandoned = true;
      session.destroy();
      resolve();
    }));
  }
  return Promise.all(calls).then(() => undefined);
}

export interface CallOutcome {
  /** grpc-status, or undefined when the stream was reset before one came. */
  status: string | undefined;
  message: string;
}

/** One unary call on a connection of its own, with `headers` as given (grpc-timeout included). */
export async function callOnce(address: string, path: string, message: Uint8Array, headers: Record<string, string> = {}): Promise<CallOutcome> {
  const session = await connect(address);
  session.on("error", () => {});
  try {
    return await new Promise<CallOutcome>((resolve) => {
      const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      const outcome: CallOutcome = { status: undefined, message: "" };
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          outcome.status = String(h["grpc-status"]);
          outcome.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("data", () => {});
      stream.on("error", () => {});
      stream.on("close", () => resolve(outcome));
      stream.end(grpcFrame(message));
    });
  } finally {
    session.destroy();
  }
}

/** Opens `count` connections and keeps them open, idle; reports which the server closed. */
export async function idleConnections(address: string, count: number): Promise<{ open(): number; closeAll(): void }> {
  const sessions: ClientHttp2Session[] = [];
  for (let i = 0; i < count; i++) {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(address) });
    session.on("error", () => {});
    sessions.push(session);
  }
  return {
    open: () => sessions.filter((s) => !s.closed && !s.destroyed).length,
    closeAll: () => sessions.forEach((s) => s.destroy()),
  };
}
