// The containerd services image handling talks to, bundled with the namespace
// (and an optional abort signal) so library calls need one argument, not six. No
// transport here (connect.ts opens grpc-js clients), so a caller with clients of its
// own (berthctl's direct client) does not load grpc-js through this module.
import type { CallOptions, Client, CompatServiceDefinition } from "nice-grpc";
import { BulkContentDefinition } from "../content-codec.ts";
import { inNamespace } from "../grpc-status.ts";
import type { ContentDefinition } from "../gen/containerd/services/content/v1/content.ts";
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

/** Options for one call: the namespace, the lease (if any), the services' signal. */
export function callOptions(svc: ImageServices, lease?: string): CallOptions {
  return inNamespace(svc.namespace, lease, svc.signal);
}

/** The image library's services, each client made by `client` (grpc-js, or berthctl's direct client). */
export function imageServicesOn(
  client: <D extends CompatServiceDefinition>(definition: D) => Client<D>,
  namespace: string,
  signal?: AbortSignal,
): ImageServices {
  return {
    namespace,
    content: client(BulkContentDefinition),
    images: client(ImagesDefinition),
    snapshots: client(SnapshotsDefinition),
    diff: client(DiffDefinition),
    leases: client(LeasesDefinition),
    namespaces: client(NamespacesDefinition),
    ...(signal ? { signal } : {}),
  };
}
