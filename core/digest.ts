// Digests are "sha256:<64 lowercase hex>". Anything else is refused before it can
// become a file name.
import { createHash } from "node:crypto";
import { invalidArgument } from "./errors.ts";

const digestPattern = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: string): boolean {
  return digestPattern.test(value);
}

export function parseDigest(value: string): string {
  if (!digestPattern.test(value)) {
    throw invalidArgument(`invalid digest "${value}": expected sha256:<64 hex characters>`);
  }
  return value;
}

/** The hex part of a validated digest: safe to use as a file name. */
export function digestHex(digest: string): string {
  return parseDigest(digest).slice("sha256:".length);
}

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}
