// berth.internal.v1.Collector as berthd serves it: the collections themselves run in
// the jobs process (started on demand), so each request makes sure it runs and passes
// the request on. berthd also asks for one periodically (BERTH_GC_PERIOD_MS, default one
// hour), for leases that expire; the collection at start runs in berthd itself.
import { createChannel, createClient } from "nice-grpc";
import { CollectorDefinition, type CollectorServiceImplementation } from "../../core/gen/berth/internal/v1/gc.ts";
import { serviceSocketPath } from "../../core/config.ts";
import { fromClientError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";

const callTimeoutMs = 120_000;

export class CollectorFront {
  private readonly state: string;
  private readonly ready: () => Promise<void> | undefined;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;

  constructor(state: string, ready: () => Promise<void> | undefined, log: Logger) {
    this.state = state;
    this.ready = ready;
    this.log = log;
  }

  private async call(wait: boolean): Promise<void> {
    await this.ready();
    // A channel per call: the jobs process comes and goes, and requests are rare.
    const channel = createChannel(`unix://${serviceSocketPath(this.state, "jobs")}`);
    try {
      await createClient(CollectorDefinition, channel).schedule({ wait }, { signal: AbortSignal.timeout(callTimeoutMs) });
    } catch (err) {
      throw fromClientError(err, "garbage collection");
    } finally {
      channel.close();
    }
  }

  /**
   * Where background requests stand: "queued" (one will be passed on: later requests
   * join it), "passing" (one is on its way to the jobs process: a later request needs
   * one more after it, which starts after that request's change), or idle.
   */
  private background: "idle" | "queued" | "passing" = "idle";
  private passAgain = false;

  /**
   * A collection soon, in the background. Passed on after the caller's answer is on its
   * way (it costs a channel, and starts the jobs process when idle: Containers/Delete
   * of every `ctr run --rm` waited ~3 ms for it), and once for any number of requests
   * that come meanwhile.
   */
  schedule(): void {
    if (this.background === "queued") return;
    if (this.background === "passing") {
      this.passAgain = true;
      return;
    }
    this.background = "queued";
    setImmediate(() => void this.passOn());
  }

  private async passOn(): Promise<void> {
    this.background = "passing";
    this.passAgain = false;
    await this.call(false).catch((err: Error) => this.log.warn({ err: err.message }, "cannot schedule garbage collection"));
    this.background = "idle";
    if (this.passAgain) this.schedule();
  }

  /** A collection that starts after this call, awaited (deletes with `sync`). */
  collectNow(): Promise<void> {
    return this.call(true);
  }

  /** Asks for one every periodMs. */
  startPeriodic(periodMs: number): void {
    this.timer = setInterval(() => this.schedule(), periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  get service(): CollectorServiceImplementation {
    return {
      schedule: async (request) => {
        if (request.wait) await this.collectNow();
        else this.schedule();
        return {};
      },
    };
  }
}
