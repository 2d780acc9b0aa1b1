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
  /** The command's deadline (--timeout), if any. */
  readonly signal: AbortSignal | undefined;

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
  call(lease?: string): CallOptions {
    return inNamespace(this.namespace, lease, this.signal);
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

/**
 * `k=v` arguments as an update of just those labels: the values to set, and the mask
 * (`labels.<key>` for every key named, so an empty value removes its label).
 */
export function labelUpdate(args: readonly string[]): { labels: Record<string, string>; paths: string[] } {
  const requested = labelArgs(args);
  return {
    labels: Object.fromEntries(Object.entries(requested).filter(([, value]) => value !== "")),
    paths: Object.keys(requested).map((key) => `labels.${key}`),
  };
}

/** Labels as ctr prints them: k=v pairs, sorted, joined by commas. */
export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(",");
}
