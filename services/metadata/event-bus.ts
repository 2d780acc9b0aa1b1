// Events cross processes through Redis pub/sub: every envelope is PUBLISHed on one
// channel as its protobuf bytes, and this process keeps a single subscriber
// connection that fans each message out to the local Subscribe streams. Both
// connections are opened on first use, and the Redis client itself is loaded then
// (it costs berthd several MiB idle), so a daemon nobody publishes to or subscribes
// at never talks to Redis.
import type { Redis, RedisOptions } from "ioredis";
import { Envelope } from "../../core/gen/containerd/services/events/v1/events.ts";
import { unavailable } from "../../core/errors.ts";
import { redisOptionsFromUrl } from "../../core/redis-url.ts";
import type { Logger } from "../../core/log.ts";

export const eventsChannel = "berth:events";

export type EnvelopeListener = (envelope: Envelope) => void;

export interface EventBus {
  publish(envelope: Envelope): Promise<void>;
  /** Resolves once the listener is live; the returned function removes it. */
  subscribe(listener: EnvelopeListener): Promise<() => void>;
  close(): Promise<void>;
}

// A stalled Redis must fail a Publish within seconds rather than hang the caller.
const commandTimeoutMs = 5000;

export class RedisEventBus implements EventBus {
  private readonly url: string | undefined;
  private readonly log: Logger;
  private publisher: Promise<Redis> | undefined;
  private subscriber: Promise<Redis> | undefined;
  private readonly listeners = new Set<EnvelopeListener>();

  constructor(url: string | undefined, log: Logger) {
    this.url = url;
    this.log = log;
  }

  private async connect(role: string, extra: RedisOptions): Promise<Redis> {
    if (!this.url) throw unavailable("events: BERTH_REDIS_URL is not set");
    // In berthd's split bundle a lazily imported CommonJS module arrives as its `default`
    // (module.exports); unbundled, Redis is a named export.
    const ioredis = (await import("ioredis")) as typeof import("ioredis") & { default?: typeof import("ioredis") };
    const Redis = ioredis.Redis ?? ioredis.default!.Redis;
    const base = redisOptionsFromUrl(this.url);
    const options: RedisOptions = { commandTimeout: commandTimeoutMs, maxRetriesPerRequest: 2, ...extra };
    const redis = typeof base === "string" ? new Redis(base, options) : new Redis({ ...base, ...options });
    redis.on("error", (err: Error) => this.log.warn({ err: err.message, role }, "redis connection error"));
    return redis;
  }

  async publish(envelope: Envelope): Promise<void> {
    this.publisher ??= this.connect("publisher", {});
    try {
      await (await this.publisher).publish(eventsChannel, Buffer.from(Envelope.encode(envelope).finish()));
    } catch (err) {
      throw unavailable(`events: cannot publish ${envelope.topic}: ${(err as Error).message}`);
    }
  }

  async subscribe(listener: EnvelopeListener): Promise<() => void> {
    const subscriber = this.subscriber ?? (this.subscriber = this.openSubscriber());
    try {
      await subscriber;
    } catch (err) {
      // Let the next Subscribe try again rather than keep a failed connection.
      if (this.subscriber === subscriber) this.subscriber = undefined;
      throw unavailable(`events: cannot subscribe: ${(err as Error).message}`);
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async openSubscriber(): Promise<Redis> {
    // A subscriber waits indefinitely for messages; the command timeout only guards SUBSCRIBE.
    const redis = await this.connect("subscriber", {});
    redis.on("messageBuffer", (channel: Buffer, message: Buffer) => {
      if (channel.toString() !== eventsChannel) return;
      let envelope: Envelope;
      try {
        envelope = Envelope.decode(message);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "dropping an undecodable event");
        return;
      }
      for (const listener of this.listeners) listener(envelope);
    });
    try {
      await redis.subscribe(eventsChannel);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    return redis;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    await Promise.allSettled([this.publisher?.then((r) => r.quit()), subscriber?.then((r) => r.quit())]);
    this.publisher = undefined;
  }
}
