// Streams a job's progress to a caller: state changed by queue events, handed out as
// snapshots (at most every `everyMs`, and at once when something finished), until the
// job completes or fails. The caller going away stops the watch; whether the job goes
// on is the caller's decision (cancel.ts).
import type { QueueEvents } from "bullmq";

export interface Subscription {
  events: QueueEvents;
  event: string;
  listener: (args: never) => void;
}

export class Watch<Result> {
  private wake: (() => void) | undefined;
  private pending = true;
  private result: { value: Result } | undefined;
  private failure: Error | undefined;
  private readonly subscriptions: Subscription[] = [];
  /** Resolves when the outcome arrives: it cuts the pause between snapshots short. */
  private markSettled!: () => void;
  private readonly outcome = new Promise<void>((resolve) => (this.markSettled = resolve));

  on(events: QueueEvents, event: string, listener: (args: never) => void): void {
    events.on(event as never, listener as never);
    this.subscriptions.push({ events, event, listener });
  }

  /** Something changed: the next snapshot is due. */
  changed(): void {
    this.pending = true;
    this.wake?.();
  }

  /** The job's outcome arrived (a result or a failure). */
  get settled(): boolean {
    return this.result !== undefined || this.failure !== undefined;
  }

  finish(value: Result): void {
    this.result ??= { value };
    this.markSettled();
    this.changed();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.markSettled();
    this.changed();
  }

  private readonly closers: (() => void)[] = [];

  onClose(fn: () => void): void {
    this.closers.push(fn);
  }

  close(): void {
    for (const { events, event, listener } of this.subscriptions.splice(0)) events.off(event as never, listener as never);
    for (const fn of this.closers.splice(0)) fn();
    this.wake?.();
  }

  /** Snapshots of `view()` until finished; the last one is `view(result)`. */
  async *stream<T>(view: (result?: Result) => T, signal: AbortSignal, everyMs = 100): AsyncGenerator<T> {
    const aborted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    while (!signal.aborted) {
      if (this.failure) throw this.failure;
      if (this.result) {
        yield view(this.result.value);
        return;
      }
      if (this.pending) {
        this.pending = false;
        yield view();
        // The end is sent at once, not up to everyMs later: that wait was on every
        // pull's and push's time.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((r) => (timer = setTimeout(r, everyMs))), aborted, this.outcome]);
        clearTimeout(timer);
        continue;
      }
      await Promise.race([new Promise<void>((resolve) => (this.wake = resolve)), aborted]);
      this.wake = undefined;
    }
  }
}
