// The BullMQ queues of pulls and pushes, their job ids, and the Redis connection they
// share with garbage collection. Ids are built from what identifies the work, so the
// same work asked for twice is one job:
// - pulls:  <pull id>           one per (namespace, image, platform, unpack, snapshotter)
// - layers: <flow>.<digest hex> the children of a pull, one per config and layer blob
// - blobs:  <namespace>.<digest hex> the download itself; a layer job of any pull adds
//   it (or finds it running) and waits for it, so a blob is fetched once however many
//   pulls want it at the same time
// - pushes: <push id>           one per (namespace, source, target, platform)
// (BullMQ lets a job have one parent only, hence layers between pulls and blobs.)
import { createHash } from "node:crypto";
import { FlowProducer, Queue, QueueEvents, type ConnectionOptions } from "bullmq";
import { Redis } from "ioredis";
import { unavailable } from "../../../core/errors.ts";
import { redisOptionsFromUrl } from "../../../core/redis-url.ts";

export const queueNames = {
  pulls: "transfer-pulls",
  layers: "transfer-layers",
  blobs: "transfer-blobs",
  pushes: "transfer-pushes",
} as const;

export type QueueName = (typeof queueNames)[keyof typeof queueNames];

/** The same prefix as the collector's queues: daemons sharing one Redis do not share jobs. */
export function queuePrefix(root: string): string {
  return `berth:${createHash("sha256").update(root).digest("hex").slice(0, 16)}`;
}

export function redisConnection(redisUrl: string | undefined): ConnectionOptions {
  if (!redisUrl) throw unavailable("pulls and pushes: BERTH_REDIS_URL is not set");
  const base = redisOptionsFromUrl(redisUrl);
  // Workers and event readers block on Redis, so no per-request retry limit.
  return typeof base === "string" ? { url: base, maxRetriesPerRequest: null } : { path: base.path, password: base.password, maxRetriesPerRequest: null };
}

const hashOf = (...parts: string[]) => createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32);
const hexOf = (digest: string) => digest.slice(digest.indexOf(":") + 1);

export const pullJobId = (namespace: string, name: string, root: string, platform: string, unpack: boolean, snapshotter: string) =>
  `pull-${hashOf(namespace, name, root, platform, String(unpack), snapshotter)}`;
export const layerJobId = (flow: string, digest: string) => `${flow}.${hexOf(digest)}`;
export const blobJobId = (namespace: string, digest: string) => `${namespace}.${hexOf(digest)}`;
export const pushJobId = (namespace: string, source: string, ref: string, platform: string) => `push-${hashOf(namespace, source, ref, platform)}`;

/** A worker whose process died is noticed within this long, and its job run again. */
export const workerLock = { lockDuration: 5000, stalledInterval: 5000, maxStalledCount: 20 } as const;

/**
 * The client the queues, the flow producer and the workers' non-blocking commands share
 * (each worker and event reader still blocks on a connection of its own). Each
 * connection BullMQ makes costs its set-up (scripts defined, the Redis version read) at
 * every start of the on-demand jobs process: one instead of nine.
 */
export function sharedRedisClient(connection: ConnectionOptions): Redis {
  const { url, ...options } = connection as { url?: string } & Record<string, unknown>;
  return url ? new Redis(url, options) : new Redis(options);
}

/** The queues, the flow producer and the event readers of one jobs process; event readers start on first use. */
export class TransferQueues {
  readonly connection: ConnectionOptions;
  /** For the queues, the flow producer and the workers (sharedRedisClient). */
  readonly client: Redis;
  readonly prefix: string;
  readonly queues: Record<keyof typeof queueNames, Queue>;
  readonly flows: FlowProducer;
  private readonly events = new Map<QueueName, QueueEvents>();

  constructor(redisUrl: string | undefined, root: string) {
    this.connection = redisConnection(redisUrl);
    this.prefix = queuePrefix(root);
    this.client = sharedRedisClient(this.connection);
    const opts = { connection: this.client, prefix: this.prefix };
    this.queues = {
      pulls: new Queue(queueNames.pulls, opts),
      layers: new Queue(queueNames.layers, opts),
      blobs: new Queue(queueNames.blobs, opts),
      pushes: new Queue(queueNames.pushes, opts),
    };
    this.flows = new FlowProducer(opts);
  }

  /** The shared event reader of a queue (one blocking Redis connection each), ready. */
  async eventsOf(name: QueueName): Promise<QueueEvents> {
    let events = this.events.get(name);
    if (!events) {
      events = new QueueEvents(name, { connection: this.connection, prefix: this.prefix });
      // Many calls watch the same reader.
      events.setMaxListeners(0);
      this.events.set(name, events);
    }
    await events.waitUntilReady();
    return events;
  }

  /** True while any pull or push has work queued or running. */
  async busy(): Promise<boolean> {
    for (const queue of Object.values(this.queues)) {
      const counts = await queue.getJobCounts("waiting", "delayed", "active", "prioritized", "waiting-children");
      if (Object.values(counts).some((n) => n > 0)) return true;
    }
    return false;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.events.values()].map((e) => e.close()));
    await this.flows.close();
    await Promise.allSettled(Object.values(this.queues).map((q) => q.close()));
    // BullMQ leaves a client it was given open; the workers are closed before this.
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
