// What every command needs from the global flags: typed clients on the gateway
// socket, and call options carrying the namespace (and lease) and the --timeout.
import type { CallOptions, Client, CompatServiceDefinition } from "nice-grpc";
import { grpcClient, inNamespace } from "../../core/grpc-client.ts";

export interface GlobalOptions {
  address: string;
  namespace: string;
  /** Milliseconds; 0 = none. */
  timeout: number;
}

export class Session {
  readonly address: string;
  readonly namespace: string;
  private readonly signal: AbortSignal | undefined;

  constructor(options: GlobalOptions) {
    this.address = options.address;
    this.namespace = options.namespace;
    // ctr's --timeout bounds the whole command, not each call.
    this.signal = options.timeout > 0 ? AbortSignal.timeout(options.timeout) : undefined;
  }

  client<D extends CompatServiceDefinition>(definition: D): Client<D> {
    return grpcClient(definition, this.address);
  }

  /** Options for one call: namespace header, optional lease, the command's deadline. */
  call(lease?: string, signal?: AbortSignal): CallOptions {
    const signals = [this.signal, signal].filter((s): s is AbortSignal => s !== undefined);
    return {
      ...inNamespace(this.namespace, lease),
      ...(signals.length > 0 ? { signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals) } : {}),
    };
  }
}

/** `k=v` arguments as a label map; a bare `k` means "true" (ctr's LabelArgs). */
export function labelArgs(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq < 0) labels[arg] = "true";
    else labels[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  return labels;
}

/** Labels as ctr prints them: k=v pairs, sorted, joined by commas. */
export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(",");
}
