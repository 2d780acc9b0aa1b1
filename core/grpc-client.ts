// Clients for our own sockets: the gateway (CLIs) and service-to-service calls.
// The client middleware carries the active trace context in the metadata.
import { createChannel, createClientFactory, Metadata, type Channel, type ClientMiddlewareCall, type CallOptions, type CompatServiceDefinition, type Client } from "nice-grpc";
import { injectContext, telemetryEnabled } from "./telemetry.ts";
import { flowControlWindow } from "./flow-control.ts";

export { errorMessage, grpcCode, inNamespace, isAlreadyExists, isNotFound, maxMessageBytes } from "./grpc-status.ts";
import { maxMessageBytes } from "./grpc-status.ts";

async function* traceContextMiddleware<Req, Res>(call: ClientMiddlewareCall<Req, Res>, options: CallOptions) {
  const metadata = Metadata(options.metadata);
  injectContext(metadata);
  return yield* call.next(call.request, { ...options, metadata });
}


const channels = new Map<string, Channel>();

/** A channel of its own (unixChannel shares one per socket). */
/**
 * A channel to a UNIX socket. `ownConnection`: its connection is its own, not taken from
 * grpc-js' process-wide pool (shared by every channel to the same socket): after a
 * failed connect, a pooled connection refuses every channel for its whole reconnect
 * backoff (1 s and growing), so a new channel did not connect anew.
 */
export function newUnixChannel(socketPath: string, ownConnection = false): Channel {
  return createChannel(`unix://${socketPath}`, undefined, {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc-node.flow_control_window": flowControlWindow,
    ...(ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
  });
}

export function unixChannel(socketPath: string): Channel {
  let channel = channels.get(socketPath);
  if (!channel) {
    channel = newUnixChannel(socketPath);
    channels.set(socketPath, channel);
  }
  return channel;
}

export function clientOn<D extends CompatServiceDefinition>(definition: D, channel: Channel): Client<D> {
  const factory = telemetryEnabled() ? createClientFactory().use(traceContextMiddleware) : createClientFactory();
  return factory.create(definition, channel);
}

export function grpcClient<D extends CompatServiceDefinition>(definition: D, socketPath: string): Client<D> {
  return clientOn(definition, unixChannel(socketPath));
}

export function closeChannels(): void {
  for (const channel of channels.values()) channel.close();
  channels.clear();
}
