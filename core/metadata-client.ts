// What every namespaced service asks of the metadata service: make a namespace exist
// on first write (containerd creates namespaces implicitly), publish an event, and
// attach a created resource to the caller's lease.
import { Status } from "nice-grpc";
import { NamespacesDefinition } from "./gen/containerd/services/namespaces/v1/namespace.ts";
import { EventsDefinition } from "./gen/containerd/services/events/v1/events.ts";
import { LeasesDefinition } from "./gen/containerd/services/leases/v1/leases.ts";
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
  private readonly socket: string;
  private readonly knownNamespaces = new Set<string>();

  private readonly log: Logger;

  constructor(state: string, log: Logger) {
    this.log = log;
    this.socket = serviceSocketPath(state, "metadata");
  }

  async ensureNamespace(namespace: string): Promise<void> {
    if (this.knownNamespaces.has(namespace)) return;
    try {
      await grpcClient(NamespacesDefinition, this.socket).create({ namespace: { name: namespace, labels: {} } });
    } catch (err) {
      if ((err as { code?: Status }).code !== Status.ALREADY_EXISTS) throw fromClientError(err, `namespace ${namespace}`);
    }
    this.knownNamespaces.add(namespace);
  }

  /** The namespace was deleted: the next write must create it again. */
  forgetNamespace(namespace: string): void {
    this.knownNamespaces.delete(namespace);
  }

  /**
   * Publishes an event (type URL = the message's full proto name). Events are best
   * effort: a failure is logged, never fails the operation that caused it.
   */
  async publish<T>(namespace: string, topic: string, typeUrl: string, type: MessageType<T>, event: Partial<T>): Promise<void> {
    try {
      const value = Buffer.from(type.encode(type.fromPartial(event)).finish());
      await grpcClient(EventsDefinition, this.socket).publish({ topic, event: { typeUrl, value } }, inNamespace(namespace));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, topic }, "cannot publish event");
    }
  }

  /** Fails with NOT_FOUND when the lease does not exist. */
  async addLeaseResource(namespace: string, lease: string, type: string, id: string): Promise<void> {
    try {
      await grpcClient(LeasesDefinition, this.socket).addResource({ id: lease, resource: { id, type } }, inNamespace(namespace));
    } catch (err) {
      throw fromClientError(err, `lease "${lease}"`);
    }
  }

  /**
   * Drops a resource that no longer needs its lease (a committed ingest). Best
   * effort: a stale entry keeps nothing alive that would otherwise go.
   */
  async removeLeaseResource(namespace: string, lease: string, type: string, id: string): Promise<void> {
    try {
      await grpcClient(LeasesDefinition, this.socket).deleteResource({ id: lease, resource: { id, type } }, inNamespace(namespace));
    } catch (err) {
      this.log.debug({ err: (err as Error).message, lease, type, id }, "cannot drop lease resource");
    }
  }
}
