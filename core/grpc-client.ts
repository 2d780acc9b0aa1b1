// Clients for our own sockets: the gateway (CLIs) and service-to-service calls.
// The client middleware carries the active trace context in the metadata.
import { errorKind } from "./errors.ts";
import { ClientError, createChannel, createClientFactory, Metadata, Status, type Channel, type ClientMiddlewareCall, type CallOptions, type CompatServiceDefinition, type Client } from "nice-grpc";
import { injectContext, telemetryEnabled } from "./telemetry.ts";
import { namespaceHeader, leaseHeader } from "./headers.ts";
import { flowControlWindow } from "./flow-control.ts";

async function* traceContextMiddleware<Req, Res>(call: ClientMiddlewareCall<Req, Res>, options: CallOptions) {
  const metadata = Metadata(options.metadata);
  injectContext(metadata);
  return yield* call.next(call.request, { ...options, metadata });
}

/**
 * The largest gRPC message a Berth process sends or accepts as a client, and sends as a
 * server: containerd's default (16 MiB) both ways, so what ctr accepts we send.
 */
export const maxMessageBytes = 16 * 1024 * 1024;

const channels = new Map<string, Channel>();

export function unixChannel(socketPath: string): Channel {
  let channel = channels.get(socketPath);
  if (!channel) {
    channel = createChannel(`unix://${socketPath}`, undefined, {
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
      "grpc-node.flow_control_window": flowControlWindow,
    });
    channels.set(socketPath, channel);
  }
  return channel;
}

export function grpcClient<D extends CompatServiceDefinition>(definition: D, socketPath: string): Client<D> {
  const factory = telemetryEnabled() ? createClientFactory().use(traceContextMiddleware) : createClientFactory();
  return factory.create(definition, unixChannel(socketPath));
}

/** Call options that select a namespace (and optionally a lease and an abort signal). */
export function inNamespace(namespace: string, lease?: string, signal?: AbortSignal): CallOptions {
  const metadata = Metadata({ [namespaceHeader]: namespace });
  if (lease) metadata.set(leaseHeader, lease);
  return signal ? { metadata, signal } : { metadata };
}

export function grpcCode(err: unknown): Status | undefined {
  return err instanceof ClientError ? err.code : undefined;
}

export const isNotFound = (err: unknown) => err instanceof ClientError && errorKind(err) === "not found";
export const isAlreadyExists = (err: unknown) => err instanceof ClientError && errorKind(err) === "already exists";

/** The server's message without nice-grpc's "/pkg.Service/Method" prefix. */
export function errorMessage(err: unknown): string {
  if (err instanceof ClientError) return err.details || Status[err.code] || `status ${err.code}`;
  return err instanceof Error ? err.message : String(err);
}

export function closeChannels(): void {
  for (const channel of channels.values()) channel.close();
  channels.clear();
}
