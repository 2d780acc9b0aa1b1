// What every namespaced service asks of the metadata service: make a namespace exist
// on first write (containerd creates namespaces implicitly), publish an event, and
// attach a created resource to the caller's lease (or drop it again).
//
// Only what must hold before a reply is awaited by callers: the namespace and a lease
// resource added (a missing lease fails the call). Events and dropping a resource are
// best effort, so they leave the request path: they are sent in the background, in
// order, and a failure is logged (measured: ~1-3 ms per awaited round trip, four of
// them in every Content/Write).
import type { Client } from "nice-grpc";
import { NamespacesDefinition } from "./gen/containerd/services/namespaces/v1/namespace.ts";
import { EventsDefinition } from "./gen/containerd/services/events/v1/events.ts";
import { LeasesDefinition } from "./gen/containerd/services/leases/v1/leases.ts";
import { serviceSocketPath } from "./config.ts";
import { fromClientError } from "./errors.ts";
import { grpcClient, inNamespace, isAlreadyExists } from "./grpc-client.ts";
import type { Logger } from "./log.ts";

/** A protobuf message type as ts-proto generates it. */
export interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  fromPartial(object: any): T;
}

const resourceKey = (namespace: string, lease: string, type: string, id: string) => `${namespace}\0${lease}\0${type}\0${id}`;
/** The background queue events share (a resourceKey always has a \0 in it). */
const eventsKey = "events";

export class MetadataClient {
  private readonly knownNamespaces = new Set<string>();
  private readonly log: Logger;
  private readonly namespaces: Client<typeof NamespacesDefinition>;
  private readonly events: Client<typeof EventsDefinition>;
  private readonly leases: Client<typeof LeasesDefinition>;
  /**
   * Background calls not finished yet, as one chain per key: every event under
   * eventsKey (they go out in order), each lease resource's drops under its resourceKey.
   */
  private readonly background = new Map<string, Promise<void>>();

  constructor(state: string, log: Logger) {
    this.log = log;
    const socket = serviceSocketPath(state, "metadata");
    this.namespaces = grpcClient(NamespacesDefinition, socket);
    this.events = grpcClient(EventsDefinition, socket);
    this.leases = grpcClient(LeasesDefinition, socket);
  }

  async ensureNamespace(namespace: string): Promise<void> {
    if (this.knownNamespaces.has(namespace)) return;
    try {
      await this.namespaces.create({ namespace: { name: namespace, labels: {} } });
    } catch (err) {
      if (!isAlreadyExists(err)) throw fromClientError(err, `namespace ${namespace}`);
    }
    this.knownNamespaces.add(namespace);
  }

  /** The namespace was deleted: the next write must create it again. */
  forgetNamespace(namespace: string): void {
    this.knownNamespaces.delete(namespace);
  }

  /**
   * Publishes an event (type URL = the message's full proto name) in the background:
   * events are best effort, so a failure is logged and never fails the operation that
   * caused it. Events of this process reach the bus in the order they were published.
   */
  publish<T>(namespace: string, topic: string, typeUrl: string, type: MessageType<T>, event: Partial<T>): void {
    const value = Buffer.from(type.encode(type.fromPartial(event)).finish());
    this.inBackground(
      eventsKey,
      () => this.events.publish({ topic, event: { typeUrl, value } }, inNamespace(namespace)),
      (err) => this.log.warn({ err: err.message, topic }, "cannot publish event"),
    );
  }

  /**
   * Fails with NOT_FOUND when the lease does not exist. A lease lives in its
   * namespace, and a namespace with leases cannot be deleted, so success also means
   * the namespace exists: a caller with a lease needs no ensureNamespace().
   */
  async addLeaseResource(namespace: string, lease: string, type: string, id: string): Promise<void> {
    // A drop of the same resource still on its way must not land after this add.
    await this.background.get(resourceKey(namespace, lease, type, id));
    try {
      await this.leases.addResource({ id: lease, resource: { id, type } }, inNamespace(namespace));
    } catch (err) {
      throw fromClientError(err, `lease "${lease}"`);
    }
    this.knownNamespaces.add(namespace);
  }

  /**
   * Drops a resource that no longer needs its lease (a committed ingest, a removed
   * snapshot), in the background. Best effort: a stale entry keeps nothing alive that
   * would otherwise go.
   */
  removeLeaseResource(namespace: string, lease: string, type: string, id: string): void {
    this.inBackground(
      resourceKey(namespace, lease, type, id),
      () => this.leases.deleteResource({ id: lease, resource: { id, type } }, inNamespace(namespace)),
      (err) => this.log.debug({ err: err.message, lease, type, id }, "cannot drop lease resource"),
    );
  }

  /** Runs `call` after the calls queued under `key` before it; a failure goes to `failed`. */
  private inBackground(key: string, call: () => Promise<unknown>, failed: (err: Error) => void): void {
    const done = (this.background.get(key) ?? Promise.resolve()).then(call).then(() => {}, failed);
    this.background.set(key, done);
    void done.then(() => {
      if (this.background.get(key) === done) this.background.delete(key);
    });
  }

  /** Waits (a bounded time) for the background calls queued so far, before the process exits. */
  async flush(timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(this.background.values()), timeout]);
    clearTimeout(timer);
  }
}
