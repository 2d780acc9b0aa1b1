// Generated identifiers, in the shapes containerd's clients and services generate, so
// they look alike in `leases ls` and `content active` whichever side made them.
import { randomBytes } from "node:crypto";

/** "<nanosecond of the second>-<4 base64url chars>": containerd's generated lease ids. */
export function leaseId(): string {
  const nanos = Number(process.hrtime.bigint() % 1_000_000_000n);
  return `${nanos}-${randomBytes(3).toString("base64url")}`;
}

/** "<unix nanos>-<12 base64url chars>": containerd's uniqueRef() for ingest refs. */
export function uniqueRef(): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  return `${nanos}-${randomBytes(9).toString("base64url")}`;
}

/** A file name no other writer will pick: "<prefix><24 hex chars><suffix>". */
export function tempName(prefix = "", suffix = ""): string {
  return `${prefix}${randomBytes(12).toString("hex")}${suffix}`;
}
