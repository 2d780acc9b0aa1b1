// ImageServices over grpc-js: clients on one socket (the gateway, for CLIs and scripts).
import { grpcClient } from "../grpc-client.ts";
import { BulkContentDefinition } from "../content-codec.ts";
import { DiffDefinition } from "../gen/containerd/services/diff/v1/diff.ts";
import { ImagesDefinition } from "../gen/containerd/services/images/v1/images.ts";
import { LeasesDefinition } from "../gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../gen/containerd/services/namespaces/v1/namespace.ts";
import { SnapshotsDefinition } from "../gen/containerd/services/snapshots/v1/snapshots.ts";
import type { ImageServices } from "./services.ts";

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
