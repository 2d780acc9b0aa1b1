// The containerd services image handling talks to, bundled with the namespace
// (and an optional abort signal) so library calls need one argument, not six. No
// transport here (connect.ts opens grpc-js clients), so a caller with clients of its
// own (berthctl's direct client) does not load grpc-js through this module.
import type { CallOptions, Client } from "nice-grpc";
import { inNamespace } from "../grpc-status.ts";
import type { ContentDefinition } from "../gen/containerd/services/content/v1/content.ts";
import type { DiffDefinition } from "../gen/containerd/services/diff/v1/diff.ts";
import type { ImagesDefinition } from "../gen/containerd/services/images/v1/images.ts";
import type { LeasesDefinition } from "../gen/containerd/services/leases/v1/leases.ts";
import type { NamespacesDefinition } from "../gen/containerd/services/namespaces/v1/namespace.ts";
import type { SnapshotsDefinition } from "../gen/containerd/services/snapshots/v1/snapshots.ts";

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
