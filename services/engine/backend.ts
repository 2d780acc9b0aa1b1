// What the engine stands on: the containerd-style services, reached through the gateway
// socket (which starts the on-demand ones), all in the engine's own namespace, and the
// engine's container records. One object handed to every route module.
import type { RegistrySettings } from "../../core/registry/settings.ts";
import type { CallOptions } from "nice-grpc";
import { connectImageServices } from "../../core/image/connect.ts";
import type { ImageServices } from "../../core/image/services.ts";
import { grpcClient, inNamespace } from "../../core/grpc-client.ts";
import type { Logger } from "../../core/log.ts";
import { ContainersDefinition } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { TasksDefinition } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import { EventsDefinition } from "../../core/gen/containerd/services/events/v1/events.ts";
import { TransferDefinition } from "../../core/gen/berth/services/transfer/v1/transfer.ts";
import { EngineStore } from "./store.ts";
import { EngineEvents } from "./events.ts";

/** Docker's engine keeps its containerd objects in a namespace of their own; so does Berth's. */
export const engineNamespace = process.env.BERTH_ENGINE_NAMESPACE || "moby";

export interface EngineOptions {
  root: string;
  state: string;
  /** The gateway socket. */
  address: string;
  log: Logger;
  /** Shown by /version and /info. */
  serverVersion: string;
  /** The Redis of the daemon's job queues (builds are jobs); BERTH_REDIS_URL when not given. */
  redisUrl?: string;
  /** The daemon's registry settings: a build pulls a short name from their defaultRegistry. */
  registry?: RegistrySettings;
}

export class Backend {
  readonly options: EngineOptions;
  readonly log: Logger;
  readonly namespace = engineNamespace;
  readonly store: EngineStore;
  readonly images: ImageServices;
  readonly containers;
  readonly tasks;
  readonly containerdEvents;
  readonly transfer;
  /** Docker events the engine produced (routes/info.ts streams them). */
  readonly events = new EngineEvents();
  private readonly closers: (() => Promise<void> | void)[] = [];

  constructor(options: EngineOptions) {
    this.options = options;
    this.log = options.log;
    this.store = new EngineStore(options.root);
    this.images = connectImageServices(options.address, this.namespace);
    this.containers = grpcClient(ContainersDefinition, options.address);
    this.tasks = grpcClient(TasksDefinition, options.address);
    this.containerdEvents = grpcClient(EventsDefinition, options.address);
    this.transfer = grpcClient(TransferDefinition, options.address);
  }

  /** Call options in the engine's namespace (with a lease, an abort signal). */
  call(lease?: string, signal?: AbortSignal): CallOptions {
    return inNamespace(this.namespace, lease, signal);
  }

  /** Runs `fn` when the engine closes (route modules stop their watchers this way). */
  onClose(fn: () => Promise<void> | void): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.reverse()) await fn();
    this.store.close();
  }
}
