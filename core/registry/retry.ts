// Retrying what may succeed on a second try: 5xx answers and dropped or refused
// connections (BerthError "unavailable"). A 4xx says the request itself is wrong,
// so it is never repeated.
import { BerthError, messageWithoutKind } from "../errors.ts";

export interface RetryOptions {
  /** Tries in all, the first included (default 4). */
  attempts?: number;
  /** Delay before the first retry; doubles each time (default 200 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  signal?: AbortSignal;
  onRetry?: (err: BerthError, attempt: number, delayMs: number) => void;
}

/** How long a server asked us to wait (Retry-After on a 429 or 503), by error. */
const serverDelays = new WeakMap<object, number>();

export function setRetryAfter(err: BerthError, ms: number): BerthError {
  serverDelays.set(err, ms);
  return err;
}

/** A server's wait longer than this is not sat out: the error goes to the caller. */
const maxServerDelayMs = 30_000;

export function isRetryable(err: unknown): err is BerthError {
  return err instanceof BerthError && err.kind === "unavailable";
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Runs `fn` until it succeeds, fails with a non-retryable error, or runs out of attempts. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 4);
  const base = options.baseDelayMs ?? 200;
  const max = options.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetryable(err) || attempt >= attempts) throw err;
      const asked = serverDelays.get(err) ?? 0;
      if (asked > maxServerDelayMs) throw err;
      // Full jitter: many clients failing together should not come back together. The
      // server's Retry-After is a floor.
      const wait = Math.max(asked, Math.round(Math.random() * Math.min(max, base * 2 ** (attempt - 1))));
      options.onRetry?.(err, attempt, wait);
      try {
        await delay(wait, options.signal);
      } catch {
        throw new BerthError("canceled", `${messageWithoutKind(err)} (retry canceled)`);
      }
    }
  }
}
