// The services a pull or push job calls, from inside the jobs process: content, images
// and snapshots on their own sockets (berthd starts them on demand when they are not
// running), leases and namespaces on berthd's in-process one, and diff through the
// public gateway (the diff process starts on demand there).
import { gatewaySocketPath, serviceSocketPath } from "../../../core/config.ts";
import { BulkContentDefinition } from "../../../core/content-codec.ts";
import { BlobFetcherDefinition, type BlobFetcherClient } from "../../../core/gen/berth/internal/v1/fetch.ts";
import { DiffDefinition } from "../../../core/gen/containerd/services/diff/v1/diff.ts";
import { ImagesDefinition } from "../../../core/gen/containerd/services/images/v1/images.ts";
import { LeasesDefinition } from "../../../core/gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { SnapshotsDefinition } from "../../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { grpcClient } from "../../../core/grpc-client.ts";
import { withDocumentCache, type ImageServices } from "../../../core/image/services.ts";
import { onDemandClient } from "../../../core/on-demand-client.ts";
import { inProcess } from "../../../core/routes.ts";

export type ServicesFor = (namespace: string) => ImageServices;

/** berthd gives its children the gateway's address (BERTH_ADDRESS); the default one otherwise. */
export function jobServices(state: string, gateway = process.env.BERTH_ADDRESS || gatewaySocketPath(state)): ServicesFor {
  const socket = (name: string) => serviceSocketPath(state, name);
  return (namespace) =>
    withDocumentCache({
      namespace,
      content: onDemandClient(BulkContentDefinition, state, "content"),
      images: onDemandClient(ImagesDefinition, state, "images"),
      snapshots: onDemandClient(SnapshotsDefinition, state, "snapshots"),
      diff: grpcClient(DiffDefinition, gateway),
      leases: grpcClient(LeasesDefinition, socket(inProcess)),
      namespaces: grpcClient(NamespacesDefinition, socket(inProcess)),
    });
}

/** The content process's blob fetcher: downloads go straight into its ingests (services/content/fetch.ts). */
export function blobFetcher(state: string): BlobFetcherClient {
  return onDemandClient(BlobFetcherDefinition, state, "content");
}
