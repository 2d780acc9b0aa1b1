// Which process serves which gRPC service. The gateway routes by this table, berthd
// starts the processes it names, and Introspection reports them.

/**
 * Service processes in start order: metadata first (every other service calls it),
 * the gateway last; berthd starts the ones between in parallel.
 */
export const serviceProcesses = ["metadata", "content", "images", "snapshots", "diff", "gateway"] as const;
export type ServiceProcess = (typeof serviceProcesses)[number];

export const grpcRoutes: Record<string, ServiceProcess> = {
  "containerd.services.version.v1.Version": "gateway",
  "containerd.services.introspection.v1.Introspection": "gateway",
  "containerd.services.namespaces.v1.Namespaces": "metadata",
  "containerd.services.leases.v1.Leases": "metadata",
  "containerd.services.events.v1.Events": "metadata",
  "containerd.services.content.v1.Content": "content",
  "containerd.services.images.v1.Images": "images",
  "containerd.services.snapshots.v1.Snapshots": "snapshots",
  "containerd.services.diff.v1.Diff": "diff",
};



