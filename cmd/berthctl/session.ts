// What every command needs from the global flags: typed clients on the gateway
// socket, and call options carrying the namespace (and lease) and the --timeout.
// Clients speak the direct HTTP/2 client (core/grpc-direct.ts) for unary and
// server-streaming calls, so most commands never load grpc-js (and node:http2, tls,
// crypto), which would be most of their run; grpc-js is loaded for streamed requests
// and the image library's commands only.
import type { CallOptions, Client, CompatServiceDefinition } from "nice-grpc";
import { DirectChannel, directClient, type DirectServiceDefinition } from "../../core/grpc-direct.ts";
import { inNamespace } from "../../core/grpc-status.ts";
import { imageServicesOn, type ImageServices } from "../../core/image/services.ts";

type GrpcJs = typeof import("../../core/grpc-client.ts");

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
  private direct: DirectChannel | undefined;
  private grpcJs: GrpcJs | undefined;

  constructor(options: GlobalOptions) {
    this.address = options.address;
    this.namespace = options.namespace;
    // ctr's --timeout bounds the whole command, not each call.
    this.signal = options.timeout > 0 ? AbortSignal.timeout(options.timeout) : undefined;
  }

  /** A client with nice-grpc's shapes; what the direct client cannot do goes through grpc-js. */
  client<D extends CompatServiceDefinition>(definition: D): Client<D> {
    this.direct ??= new DirectChannel(this.address);
    const fallback = async () => (await this.loadGrpcJs()).grpcClient(definition, this.address);
    // ts-proto definitions, which nice-grpc types as its own CompatServiceDefinition.
    return directClient(definition as unknown as DirectServiceDefinition, this.direct, fallback) as unknown as Client<D>;
  }

  /** grpc-js's clients module, loaded on first use; close() then closes its channels. */
  async loadGrpcJs(): Promise<GrpcJs> {
    this.grpcJs ??= await import("../../core/grpc-client.ts");
    return this.grpcJs;
  }

  /** The image library's services on this session's clients. */
  imageServices(): ImageServices {
    return imageServicesOn((definition) => this.client(definition), this.namespace, this.signal);
  }

  /** Closes every connection, so that the process can exit. */
  close(): void {
    this.direct?.close();
    this.grpcJs?.closeChannels();
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
