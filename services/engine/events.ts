// Docker events (container create/start/die/destroy, image pull/tag/delete, …) as the
// engine produces them: kept in memory (the newest `capacity`, as Docker's daemon keeps a
// bounded log) for `since` replays, and handed to every live /events stream.
import { EventEmitter } from "node:events";

export interface DockerEvent {
  Type: "container" | "image" | "volume" | "network" | "daemon";
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "local";
  time: number;
  timeNano: number;
  /** The old top-level fields clients still read for containers and images. */
  status?: string;
  id?: string;
  from?: string;
}

export class EngineEvents {
  private readonly log: DockerEvent[] = [];
  private readonly live = new EventEmitter();
  private readonly capacity: number;

  constructor(capacity = 1024) {
    this.capacity = capacity;
    this.live.setMaxListeners(0);
  }

  publish(type: DockerEvent["Type"], action: string, id: string, attributes: Record<string, string> = {}): DockerEvent {
    const nanos = process.hrtime.bigint() - hrtimeBase + epochBaseNanos;
    const event: DockerEvent = { Type: type, Action: action, Actor: { ID: id, Attributes: attributes }, scope: "local", time: Number(nanos / 1_000_000_000n), timeNano: Number(nanos) };
    if (type === "container" || type === "image") {
      event.status = action;
      event.id = id;
      if (attributes.image) event.from = attributes.image;
    }
    this.log.push(event);
    if (this.log.length > this.capacity) this.log.shift();
    this.live.emit("event", event);
    return event;
  }

  /** Events kept so far, oldest first. */
  history(): readonly DockerEvent[] {
    return this.log;
  }

  /** Calls `listener` for each new event until the returned function is called. */
  subscribe(listener: (event: DockerEvent) => void): () => void {
    this.live.on("event", listener);
    return () => this.live.off("event", listener);
  }
}

// Wall-clock nanoseconds from a monotonic clock, so events published in order have increasing times.
const hrtimeBase = process.hrtime.bigint();
const epochBaseNanos = BigInt(Date.now()) * 1_000_000n;
