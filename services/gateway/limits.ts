// The gateway's bounds under load, each overridable by environment (tests shorten the
// idle timeout; an operator may raise the caps). A value that is not a positive
// integer stops berthd with a message naming the variable, not a silent default.
import { invalidArgument } from "../../core/errors.ts";
import { serviceMaxConcurrentStreams } from "../../core/flow-control.ts";

export interface GatewayLimits {
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS on each public connection. 1000: above what ctr or
   * berthctl open (a pull keeps a few dozen calls open), in line with gRPC servers
   * (grpc-go servers commonly set 100–1000; Go's net/http2 defaults to 250), and low
   * enough that one connection's answers fit in the socket buffers, so a client busy
   * writing cannot wedge its own connection. Clients queue calls beyond it themselves.
   */
  maxStreamsPerConnection: number;
  /** Public connections held at once; more are closed at accept, with a log line. */
  maxConnections: number;
  /** A public connection without an open call for this long is closed (GOAWAY). */
  idleConnectionMs: number;
  /**
   * Calls open at once on the connection to one service process; further calls wait
   * in the gateway's queue. Equal to what services advertise (core/grpc-server.ts), so
   * a service never refuses a call the gateway forwards.
   */
  upstreamMaxStreams: number;
  /** Calls waiting per service process; beyond, a call is answered UNAVAILABLE at once. */
  upstreamMaxQueued: number;
}

const defaults: GatewayLimits = {
  maxStreamsPerConnection: 1000,
  maxConnections: 1000,
  idleConnectionMs: 5 * 60_000,
  upstreamMaxStreams: serviceMaxConcurrentStreams,
  upstreamMaxQueued: 16_384,
};

const variables: Record<keyof GatewayLimits, string> = {
  maxStreamsPerConnection: "BERTH_GATEWAY_MAX_STREAMS",
  maxConnections: "BERTH_GATEWAY_MAX_CONNECTIONS",
  idleConnectionMs: "BERTH_GATEWAY_IDLE_MS",
  upstreamMaxStreams: "BERTH_GATEWAY_UPSTREAM_MAX_STREAMS",
  upstreamMaxQueued: "BERTH_GATEWAY_UPSTREAM_MAX_QUEUED",
};

export function gatewayLimits(env: NodeJS.ProcessEnv = process.env): GatewayLimits {
  const limits = { ...defaults };
  for (const [key, variable] of Object.entries(variables) as [keyof GatewayLimits, string][]) {
    const raw = env[variable];
    if (raw === undefined || raw === "") continue;
    if (!/^[1-9][0-9]{0,9}$/.test(raw) || Number(raw) > 2 ** 31 - 1) {
      throw invalidArgument(`${variable}=${JSON.stringify(raw)}: expected a positive integer up to ${2 ** 31 - 1}`);
    }
    limits[key] = Number(raw);
  }
  return limits;
}
