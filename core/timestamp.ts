// google.protobuf.Timestamp <-> milliseconds. Go clients always send timestamps and
// encode "unset" as the zero time 0001-01-01 (seconds = -62135596800).
import type { Timestamp } from "./gen/google/protobuf/timestamp.ts";

const goZeroSeconds = -62135596800n;

export function timestampFromMillis(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function nowTimestamp(): Timestamp {
  return timestampFromMillis(Date.now());
}

/** Milliseconds since the epoch, or undefined for an absent or Go-zero timestamp. */
export function millisFromTimestamp(ts: Timestamp | undefined): number | undefined {
  if (!ts || ts.seconds <= goZeroSeconds) return undefined;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}
