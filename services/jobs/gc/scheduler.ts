// When collections run: each one is a BullMQ job on one queue, processed one at a time
// by this process, so a request survives a crash of the collector (the job stays in
// Redis and is picked up again) and repeated requests collapse into one job.
// - After a deletion (schedule()): one job under a fixed id, delayed by a short
//   debounce and by a pause bound (like containerd's scheduler: collections may take
//   at most pauseShare of the time), so a burst of deletions costs one collection.
//   A request that arrives while that job runs queues the next one.
// - A synchronous delete (collectNow()): a job of its own, run next, and awaited.
// - Once when this process starts (for whatever a crash left, and jobs a crashed
//   worker left in Redis), and whenever berthd's timer asks (leases that expire).
// The process runs on demand: busy() keeps it while any job is pending.
import { randomUUID } from "node:crypto";
import { Queue, Worker, type ConnectionOptions, type Job } from "bullmq";
import { unavailable } from "../../../core/errors.ts";
import type { Logger } from "../../../core/log.ts";
import { redisOptionsFromUrl } from "../../../core/redis-url.ts";
import type { CollectionResult } from "./collector.ts";

export interface SchedulerOptions {
  redisUrl: string | undefined;
  /** Separates the queues of daemons that share one Redis (a hash of the root). */
  prefix: string;
  debounceMs?: number;
  /** Longest a synchronous caller waits. */
  waitTimeoutMs?: number;
}

const queueName = "gc";
const debouncedJobId = "debounced";
/** Collections may take at most this share of the time (containerd's default pause threshold). */
const pauseShare = 0.02;

export class CollectionScheduler {
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly waitTimeoutMs: number;
  private readonly waiters = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  /** Requests since the running job started: they need another run. */
  private requestedDuringRun = false;
  private running = false;
  private lastRunMs = 0;
  private lastEndAt = 0;

  /** `run(sync)`: sync is true for a job a synchronous delete waits for. */
  constructor(options: SchedulerOptions, run: (sync: boolean) => Promise<CollectionResult>, log: Logger) {
    if (!options.redisUrl) throw unavailable("garbage collection: BERTH_REDIS_URL is not set");
    const base = redisOptionsFromUrl(options.redisUrl);
    // BullMQ's worker blocks on Redis, so it needs no per-request retry limit.
    const connection: ConnectionOptions =
      typeof base === "string" ? { url: base, maxRetriesPerRequest: null } : { path: base.path, password: base.password, maxRetriesPerRequest: null };
    this.log = log;
    this.debounceMs = options.debounceMs ?? 100;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 60_000;
    this.queue = new Queue(queueName, { connection, prefix: options.prefix });
    // A job whose worker died (kill -9 mid-collection) is taken up again once its lock
    // lapses: kept short, since a collection renews it every few seconds while it runs.
    this.worker = new Worker(queueName, (job) => this.process(job, run), {
      connection,
      prefix: options.prefix,
      concurrency: 1,
      autorun: false,
      lockDuration: 5000,
      stalledInterval: 5000,
    });
    this.worker.on("completed", (job) => this.settle(job.id, undefined));
    this.worker.on("failed", (job, err) => {
      log.warn({ err: err.message, job: job?.id }, "garbage collection failed");
      this.settle(job?.id, err);
    });
    this.worker.on("error", (err) => log.warn({ err: err.message }, "garbage collection queue error"));
  }

  start(): void {
    void this.worker.run();
    this.schedule();
  }

  /** True while a collection runs or a job waits (then the process must not exit). */
  async busy(): Promise<boolean> {
    if (this.running) return true;
    const counts = await this.queue.getJobCounts("waiting", "delayed", "active", "prioritized");
    return Object.values(counts).some((n) => n > 0);
  }

  private async process(job: Job, run: (sync: boolean) => Promise<CollectionResult>): Promise<CollectionResult> {
    this.running = true;
    this.requestedDuringRun = false;
    const started = Date.now();
    try {
      const result = await run(job.data?.sync === true);
      if (result.blobs + result.snapshots + result.leases > 0) this.log.info({ job: job.id, ...result }, "garbage collected");
      return result;
    } finally {
      this.running = false;
      this.lastEndAt = Date.now();
      this.lastRunMs = this.lastEndAt - started;
      if (this.requestedDuringRun) this.schedule();
    }
  }

  /** Asks for a collection soon; repeated requests share one job. Best effort. */
  schedule(): void {
    if (this.running) this.requestedDuringRun = true;
    const pause = this.lastRunMs / pauseShare - (Date.now() - this.lastEndAt);
    const delay = Math.max(this.debounceMs, Math.ceil(pause));
    this.queue
      .add("collect", {}, { jobId: debouncedJobId, delay, removeOnComplete: true, removeOnFail: true })
      .catch((err: Error) => this.log.warn({ err: err.message }, "cannot schedule garbage collection"));
  }

  /** Runs a collection that starts after this call, and resolves when it has finished. */
  async collectNow(): Promise<void> {
    const id = `sync-${randomUUID()}`;
    const done = new Promise<void>((resolve, reject) => this.waiters.set(id, { resolve, reject }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable(`garbage collection did not finish within ${this.waitTimeoutMs / 1000}s`)), this.waitTimeoutMs);
    });
    try {
      await this.queue.add("collect", { sync: true }, { jobId: id, removeOnComplete: true, removeOnFail: true });
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
      this.waiters.delete(id);
    }
  }

  private settle(id: string | undefined, err: Error | undefined): void {
    const waiter = id === undefined ? undefined : this.waiters.get(id);
    if (!waiter) return;
    if (err) waiter.reject(unavailable(`garbage collection failed: ${err.message}`));
    else waiter.resolve();
  }

  async close(): Promise<void> {
    await this.worker.close(true);
    await this.queue.close();
  }
}
