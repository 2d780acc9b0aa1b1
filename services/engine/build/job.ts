// Builds as durable BullMQ jobs (docs/engine.md, "Builds"): the queue `engine-builds`,
// with the same Redis connection and key prefix as the jobs process's queues, and its
// worker here in the engine, where the builder and its RUN processes live. The /build route
// adds a job (the options, the context's directory, the id of the client's stream) and
// waits for it; the worker runs the build and writes its messages to that stream, which
// lives in this same process. The job's progress is the durable part: the step the build
// is at and what it has in flight (in-flight.ts), so that a build a killed daemon left is
// undone at the next start (recovery.ts).
import { randomUUID } from "node:crypto";
import { Queue, UnrecoverableError, Worker, type Job } from "bullmq";
import { queuePrefix, redisConnection } from "../../jobs/transfer/queues.ts";
import type { Backend } from "../backend.ts";
import type { ContainerManager } from "../containers/lifecycle.ts";
import { Build, failureOf, type BuildOptions, type BuildOutput } from "./builder.ts";
import type { AuthConfig } from "../images/transfer-routes.ts";
import { InFlightRecord, releaseInFlight, trackedBackend, type BuildProgress } from "./in-flight.ts";
import { interruptedReason, progressOf, recoverBuilds } from "./recovery.ts";
import { buildJobId } from "./work-dir.ts";
import { traceOf } from "./trace.ts";

export const buildQueueName = "engine-builds";

export interface BuildJobData {
  options: BuildOptions;
  contextDir: string;
  /** The build's directory (the context in it, and its COPY steps' mount points). */
  dir: string;
  /** The stream the messages go to, in this process. */
  clientId: string;
}

/** How a build ended, as the route reports it. */
export type BuildOutcome = { ok: true; image: string } | { ok: false; code: number; message: string };

interface Client {
  out: BuildOutput;
  /** The client went away: the build is cancelled. */
  gone: AbortSignal;
  /** Registry credentials for base image pulls: kept here, never in the job's data in Redis. */
  registryAuth: (name: string) => AuthConfig;
  settle(outcome: BuildOutcome): void;
}

/** Builds at once (BERTH_BUILD_CONCURRENCY, default 8); more wait in the queue. */
const concurrency = Number(process.env.BERTH_BUILD_CONCURRENCY) || 8;

/** The outcome stays in Redis this long (as a pull's). */
const keepOutcome = { removeOnComplete: { age: 600 }, removeOnFail: { age: 600 } };

const stepLine = /^Step \d+\/\d+ : /;

/** `message`, saying at which step it happened (when the build had begun its steps). */
function atStep(message: string, step: string): string {
  return step ? `${message} (${step.replace(/ : /, ": ")})` : message;
}

export class BuildJobs {
  private readonly backend: Backend;
  private readonly manager: ContainerManager;
  private readonly queue: Queue<BuildJobData>;
  private readonly worker: Worker<BuildJobData>;
  private readonly clients = new Map<string, Client>();
  /** The builds under way: stopping the daemon kills their RUNs (runc's, children of this process) and waits for them to be undone. */
  private readonly running = new Map<AbortController, Promise<unknown>>();

  private constructor(backend: Backend, manager: ContainerManager, redisUrl: string | undefined) {
    this.backend = backend;
    this.manager = manager;
    const connection = redisConnection(redisUrl);
    const prefix = queuePrefix(backend.options.root);
    this.queue = new Queue<BuildJobData>(buildQueueName, { connection, prefix });
    // The worker is in the same process as the route that waits for its jobs: a job whose
    // worker died was in a daemon that died, and the next start undoes it (recovery.ts).
    // So BullMQ's stalled-job check (which would run such a build again) is off, and the
    // lock is long enough that a busy event loop cannot lose it.
    this.worker = new Worker<BuildJobData>(buildQueueName, (job) => this.process(job), { connection, prefix, concurrency, autorun: false, skipStalledCheck: true, lockDuration: 60_000 });
    this.worker.on("error", (err) => backend.log.warn({ err: err.message, queue: buildQueueName }, "build queue error"));
  }

  /** The queue and its worker, after undoing the builds a killed daemon left. */
  static async open(backend: Backend, manager: ContainerManager, redisUrl: string | undefined): Promise<BuildJobs> {
    const jobs = new BuildJobs(backend, manager, redisUrl);
    try {
      await recoverBuilds(backend, manager, jobs.queue);
    } catch (err) {
      await jobs.close();
      throw err;
    }
    void jobs.worker.run();
    return jobs;
  }

  /** Adds the build's job and resolves with its outcome once it ended and its leftovers are gone. */
  async run(dirId: string, data: Omit<BuildJobData, "clientId">, out: BuildOutput, gone: AbortSignal, registryAuth: (name: string) => AuthConfig = () => ({})): Promise<BuildOutcome> {
    const clientId = randomUUID();
    const outcome = new Promise<BuildOutcome>((settle) => this.clients.set(clientId, { out, gone, registryAuth, settle }));
    try {
      await this.queue.add("build", { ...data, clientId }, { jobId: buildJobId(dirId), attempts: 1, ...keepOutcome });
      return await outcome;
    } finally {
      this.clients.delete(clientId);
    }
  }

  private process(job: Job<BuildJobData>): Promise<{ image: string }> {
    const stop = new AbortController();
    const done = this.build(job, stop.signal);
    this.running.set(stop, done.catch(() => undefined));
    return done.finally(() => this.running.delete(stop));
  }

  private async build(job: Job<BuildJobData>, stopping: AbortSignal): Promise<{ image: string }> {
    const jobId = job.id!;
    const client = this.clients.get(job.data.clientId);
    if (!client) {
      // Queued by a daemon that was killed before its worker took it: nobody waits for it.
      await releaseInFlight(this.backend, this.manager, { jobId, inFlight: progressOf(job.progress).inFlight, dir: job.data.dir, byLabel: true });
      throw new UnrecoverableError(interruptedReason);
    }
    const record = new InFlightRecord((progress: BuildProgress) => job.updateProgress(progress as unknown as object), this.backend.log);
    const out: BuildOutput = {
      stream: (text) => {
        if (stepLine.test(text)) record.step(text.trimEnd());
        client.out.stream(text);
      },
      aux: (value) => client.out.aux(value),
      progress: (message) => client.out.progress(message),
      closed: () => client.gone.aborted || client.out.closed(),
    };
    const trace = traceOf(job.data.dir);
    trace.mark("job started");
    const build = new Build(trackedBackend(this.backend, record, jobId), job.data.contextDir, job.data.options, out, {
      trace,
      scratchDir: job.data.dir,
      cancelled: AbortSignal.any([client.gone, stopping]),
      registryAuth: client.registryAuth,
    });
    let outcome: BuildOutcome;
    try {
      outcome = { ok: true, image: await build.run() };
    } catch (err) {
      const { code, message } = failureOf(err);
      const reason = client.gone.aborted ? "build cancelled: the client closed the connection" : message;
      outcome = { ok: false, code, message: atStep(reason, record.current.step) };
    }
    // Whatever is still in flight (a failed step's snapshot, lease or mounts) goes before
    // the client hears the outcome, so a client that sees the end sees nothing left.
    // Its directory only moves aside (work-dir.ts moveToTrash): removing it can wait for the reply.
    let removeDir: (() => void) | undefined;
    try {
      removeDir = await releaseInFlight(this.backend, this.manager, { jobId, inFlight: record.current.inFlight, dir: job.data.dir, byLabel: false, trashIn: this.backend.options.root });
    } catch (err) {
      this.backend.log.warn({ job: jobId, err: (err as Error).message }, "cannot remove what a build left");
    }
    trace.mark("released");
    client.settle(outcome);
    // The route writes the reply's end in the turn the outcome reaches it; what the build
    // leaves for later starts after that (its first plugin exec would fork on this loop first).
    await new Promise((next) => setImmediate(next));
    try {
      removeDir?.();
    } catch (err) {
      this.backend.log.warn({ job: jobId, err: (err as Error).message }, "cannot remove a finished build's directory");
    }
    // The job ends with its last record stored and its RUN networks released (the client need not wait for either).
    await Promise.all([record.flush(), build.afterOutcome()]);
    if (!outcome.ok) throw new UnrecoverableError(outcome.message);
    return { image: outcome.image };
  }

  async close(): Promise<void> {
    for (const client of this.clients.values()) client.settle({ ok: false, code: 1, message: "build interrupted: the daemon is stopping" });
    for (const stop of this.running.keys()) stop.abort();
    await Promise.all(this.running.values());
    await this.worker.close(true).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}
