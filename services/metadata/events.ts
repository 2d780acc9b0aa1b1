// containerd.services.events.v1.Events over the Redis event bus: Publish wraps an
// event in an Envelope stamped with the caller's namespace and the time, Forward
// posts a ready envelope, Subscribe streams the envelopes its filters select.
import type { CallContext } from "nice-grpc";
import {
  Envelope,
  type EventsServiceImplementation,
  type ForwardRequest,
  type PublishRequest,
  type SubscribeRequest,
} from "../../core/gen/containerd/services/events/v1/events.ts";
import { invalidArgument, unavailable } from "../../core/errors.ts";
import { parseFilters, type FieldAdaptor } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import type { MessageType } from "../../core/metadata-client.ts";
import { millisFromTimestamp, nowTimestamp } from "../../core/timestamp.ts";
import type { Logger } from "../../core/log.ts";
import type { EventBus } from "./event-bus.ts";

/** containerd's rule: "/" followed by one or more identifiers joined by "/". */
export function validateTopic(topic: string): string {
  if (topic === "") throw invalidArgument("event topic must not be empty");
  if (!topic.startsWith("/")) throw invalidArgument(`event topic "${topic}" must start with '/'`);
  if (topic.length === 1) throw invalidArgument(`event topic "${topic}" must have at least one component`);
  for (const component of topic.slice(1).split("/")) {
    try {
      validateIdentifier(component, "topic component");
    } catch (err) {
      throw invalidArgument(`event topic "${topic}": ${(err as Error).message}`);
    }
  }
  return topic;
}

// Filters select on the envelope's namespace and topic. containerd also reaches into
// the event payload (event.<field>); Berth does not decode payloads, so such a
// selector sees an absent field.
function envelopeFields(envelope: Envelope): FieldAdaptor {
  return (path) => {
    if (path.length !== 1) return undefined;
    if (path[0] === "namespace") return envelope.namespace;
    if (path[0] === "topic") return envelope.topic;
    return undefined;
  };
}

// A subscriber that stops reading must not make this process hold every event.
const maxQueuedEvents = 10_000;

export function eventsService(bus: EventBus): EventsServiceImplementation {
  return {
    async publish(request: PublishRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      validateTopic(request.topic);
      if (!request.event) throw invalidArgument(`event for topic "${request.topic}" is required`);
      await bus.publish({ timestamp: nowTimestamp(), namespace, topic: request.topic, event: request.event });
      return {};
    },

    async forward(request: ForwardRequest) {
      const envelope = request.envelope;
      if (!envelope) throw invalidArgument("envelope is required");
      try {
        validateIdentifier(envelope.namespace, "namespace");
      } catch (err) {
        throw invalidArgument(`event envelope has an invalid namespace: ${(err as Error).message}`);
      }
      validateTopic(envelope.topic);
      if (millisFromTimestamp(envelope.timestamp) === undefined) {
        throw invalidArgument("timestamp must be set on a forwarded event");
      }
      await bus.publish(envelope);
      return {};
    },

    async *subscribe(request: SubscribeRequest, ctx: CallContext) {
      const matches = parseFilters(request.filters);
      const queue: Envelope[] = [];
      let overflowed = false;
      let wake: (() => void) | undefined;
      const unsubscribe = await bus.subscribe((envelope) => {
        if (overflowed || !matches(envelopeFields(envelope))) return;
        if (queue.length >= maxQueuedEvents) overflowed = true;
        else queue.push(envelope);
        wake?.();
      });
      const aborted = new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      try {
        while (!ctx.signal.aborted) {
          while (queue.length > 0) yield queue.shift()!;
          if (overflowed) throw unavailable(`events: subscriber fell more than ${maxQueuedEvents} events behind`);
          await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
          wake = undefined;
        }
      } finally {
        unsubscribe();
      }
    },
  };
}

/**
 * Publishes an event raised inside this process through the same bus the Events
 * API uses. Best effort: the change that raised it has happened already, so a
 * failure is logged rather than reported to the caller.
 */
export function localPublisher(bus: EventBus, log: Logger) {
  return function publishEvent<T>(namespace: string, topic: string, typeUrl: string, type: MessageType<T>, event: Partial<T>): void {
    const value = Buffer.from(type.encode(type.fromPartial(event)).finish());
    bus
      .publish({ timestamp: nowTimestamp(), namespace, topic, event: { typeUrl, value } })
      .catch((err: Error) => log.warn({ err: err.message, topic }, "cannot publish event"));
  };
}

export type PublishEvent = ReturnType<typeof localPublisher>;
