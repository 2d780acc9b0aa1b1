// What every service asks of the metadata process: publish an event, and have the
// garbage collector run after something was deleted or unreferenced. Namespaces and
// lease resources are written directly in the shared database (core/metadata-db.ts),
// inside the writer's own transaction.
//
// Events and unsynchronised collection requests are best effort, so they leave the
// request path: they are sent in the background, in order, and a failure is logged.
import type { Client } from "nice-grpc";
import { EventsDefinition } from "./gen/containerd/services/events/v1/events.ts";
import { CollectorDefinition } from "./gen/berth/internal/v1/gc.ts";
import { serviceSocketPath } from "./config.ts";
import { fromClientError } from "./errors.ts";
import { grpcClient, inNamespace } from "./grpc-client.ts";
import type { Logger } from "./log.ts";

/** A protobuf message type as ts-proto generates it. */
export interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  fromPartial(object: any): T;
}

export class MetadataClient {
  private readonly log: Logger;
  private readonly events: Client<typeof EventsDefinition>;
  private readonly collector: Client<typeof CollectorDefinition>;
  /** Background calls not finished yet: events go out in order, one after another. */
  private background: Promise<void> = Promise.resolve();

  constructor(state: string, log: Logger) {
    this.log = log;
    const socket = serviceSocketPath(state, "metadata");
    this.events = grpcClient(EventsDefinition, socket);
    this.collector = grpcClient(CollectorDefinition, socket);
  }

  /**
   * Publishes an event (type URL = the message's full proto name) in the background:
   * events are best effort, so a failure is logged and never fails the operation that
   * caused it. Events of this process reach the bus in the order they were published.
   */
  publish<T>(namespace: string, topic: string, typeUrl: string, type: MessageType<T>, event: Partial<T>): void {
    const value = Buffer.from(type.encode(type.fromPartial(event)).finish());
    this.inBackground(
      () => this.events.publish({ topic, event: { typeUrl, value } }, inNamespace(namespace)),
      (err) => this.log.warn({ err: err.message, topic }, "cannot publish event"),
    );
  }

  /** Asks for a garbage collection soon (debounced by the collector); best effort. */
  scheduleCollection(): void {
    this.inBackground(
      () => this.collector.schedule({ wait: false }),
      (err) => this.log.warn({ err: err.message }, "cannot schedule garbage collection"),
    );
  }

  /** Runs a garbage collection now and waits for it (a delete with `sync`). */
  async collectNow(): Promise<void> {
    try {
      await this.collector.schedule({ wait: true });
    } catch (err) {
      throw fromClientError(err, "garbage collection");
    }
  }

  private inBackground(call: () => Promise<unknown>, failed: (err: Error) => void): void {
    const done = this.background.then(call).then(() => {}, failed);
    this.background = done;
  }

  /** Waits (a bounded time) for the background calls queued so far, before the process exits. */
  async flush(timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([this.background, timeout]);
    clearTimeout(timer);
  }
}
