// The grpc-timeout request header (gRPC over HTTP/2): at most 8 digits and a unit.
// The gateway ends a call whose deadline passes, while queued or forwarded, instead of
// holding it (and the service's work for it) after the client has given up.
import { invalidArgument } from "../../core/errors.ts";

const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** The timeout in milliseconds, or undefined when the call has none. */
export function grpcTimeoutMs(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(value ?? "");
  if (!m) throw invalidArgument(`malformed grpc-timeout header ${JSON.stringify(value)}: expected 1 to 8 digits and a unit (H, M, S, m, u, n)`);
  return Number(m[1]) * unitMs[m[2]!]!;
}
