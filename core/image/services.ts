// The containerd services image handling talks to, bundled with the namespace
// (and an optional abort signal) so library calls need one argument, not six.
import type { CallOptions, Client } from "nice-grpc";
import { grpcClient, inNamespace } from "../grpc-client.ts";
import type { ContentDefinition } from "../gen/containerd/services/content/v1/content.ts";
import { BulkContentDefinition } from "../content-codec.ts";
import { DiffDefinition } from "../gen/containerd/services/diff/v1/diff.ts";
import { ImagesDefinition } from "../gen/containerd/services/images/v1/images.ts";
import { LeasesDefinition } from "../gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../gen/containerd/services/namespaces/v1/namespace.ts";
import { SnapshotsDefinition } from "../gen/containerd/services/snapshots/v1/snapshots.ts";

export interface ImageServices {
  namespace: string;
  content: Client<typeof ContentDefinition>;
  images: Client<typeof ImagesDefinition>;
  snapshots: Client<typeof SnapshotsDefinition>;
  diff: Client<typeof DiffDefinition>;
  leases: Client<typeof LeasesDefinition>;
  namespaces: Client<typeof NamespacesDefinition>;
  signal?: AbortSignal;
  /**
   * Manifests, indexes and configs already read, by digest (content is immutable per
   * digest). An import reads each of them up to four times while it walks, names and
   * unpacks; with this set each is fetched once.
   */
  documents?: Map<string, Promise<Buffer>>;
}

/** The same services with a document cache of their own (for one import or unpack). */
export function withDocumentCache(svc: ImageServices): ImageServices {
  return svc.documents ? svc : { ...svc, documents: new Map() };
}

/** Clients on one socket (the gateway, for CLIs). */
export function connectImageServices(address: string, namespace: string, signal?: AbortSignal): ImageServices {
  return {
    namespace,
    content: grpcClient(BulkContentDefinition, address),
    images: grpcClient(ImagesDefinition, address),
    snapshots: grpcClient(SnapshotsDefinition, address),
    diff: grpcClient(DiffDefinition, address),
    leases: grpcClient(LeasesDefinition, address),
    namespaces: grpcClient(NamespacesDefinition, address),
    ...(signal ? { signal } : {}),
  };
}

/** Options for one call: the namespace, the lease (if any), the services' signal. */
export function callOptions(svc: ImageServices, lease?: string): CallOptions {
  return inNamespace(svc.namespace, lease, svc.signal);
}
