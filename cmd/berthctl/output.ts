// How berthctl reports: results on stdout, diagnostics on stderr in the logrus text
// format ctr uses (`time="…" level=warning msg="…"`), and the fatal error as
// `berthctl: <message>` with exit code 1.
import { once } from "node:events";
import { Status } from "nice-grpc-common";
import { errorMessage, grpcCode } from "../../core/grpc-status.ts";

/** A failure to report as is (no gRPC status behind it). */
export class CommandError extends Error {
  override name = "CommandError";
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === "AbortError";
}

/** The message a user should read: the server's status text without nice-grpc's method prefix. */
export function messageOf(err: unknown): string {
  if (isAbort(err)) return "context deadline exceeded";
  return errorMessage(err);
}

function logValue(value: string): string {
  return /^[A-Za-z0-9\-._/@^+]+$/.test(value) ? value : JSON.stringify(value);
}

function logLine(level: "error" | "warning", msg: string, err?: unknown): void {
  const time = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  let line = `time=${logValue(time)} level=${level} msg=${logValue(msg)}`;
  if (err !== undefined) line += ` error=${logValue(messageOf(err))}`;
  process.stderr.write(`${line}\n`);
}

export const logError = (msg: string, err?: unknown) => logLine("error", msg, err);
export const logWarning = (msg: string, err?: unknown) => logLine("warning", msg, err);

/** Writes to stdout, waiting when the pipe is full (large blobs, slow readers). */
export async function writeOut(data: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(data)) await once(process.stdout, "drain");
}

/**
 * A socket that cannot be reached, reduced to ctr's `failed to dial`: the direct
 * client's connect error as it is, grpc-js's inside its own wording.
 */
function dialFailure(err: unknown, address: string): string | undefined {
  if (grpcCode(err) !== Status.UNAVAILABLE) return undefined;
  const message = messageOf(err);
  const match = /^No connection established\. Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/s.exec(message) ?? /^(connect E[A-Z]+ .*)$/s.exec(message);
  return match ? `failed to dial ${JSON.stringify(address)}: ${match[1]}` : undefined;
}

export function fail(err: unknown, address?: string): never {
  const message = (address !== undefined ? dialFailure(err, address) : undefined) ?? messageOf(err);
  process.stderr.write(`berthctl: ${message}\n`);
  process.exit(1);
}
