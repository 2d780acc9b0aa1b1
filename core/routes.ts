// The process table: every process berthd runs, declared once. berthd starts, restarts
// and stops them from this table with no per-service special cases, the gateway routes
// gRPC services by it, and Introspection reports it. A new service joins by adding a
// row (and its services/<name>/main.ts, which the build bundles to dist/<name>.js).
//
// "berthd" itself serves what is cheap to host beside the supervisor (namespaces,
// leases, events, container records, version, introspection, the Collector front of
// the jobs process, and Processes, which starts on-demand processes for the others) on
// <state>/services/metadata.sock, and the public gateway socket: each Node process
// costs ~18 MiB idle, so only what must be isolated runs on its own (docs/architecture.md).

export interface ProcessSpec {
  /** The process name: its bundle is dist/<name>.js, its socket <state>/services/<name>.sock. */
  name: string;
  /** Fully qualified gRPC services it serves (routed to it by the gateway). */
  services: readonly string[];
  /**
   * Started only when a call for it arrives, and exits by itself after a while idle
   * (a process that holds no state between calls and is rarely used costs nothing idle).
   */
  onDemand?: boolean;
  /**
   * On-demand processes a public call that starts this one starts beside it, because
   * the client goes on to them next: `ctr run` calls images, then content, then
   * snapshots, and paid three process starts one after the other (~0.5 s after idle);
   * side by side they overlap. Each retires on its own when idle.
   */
  startsAlong?: readonly string[];
}

/** The socket name of what berthd serves in-process. */
export const inProcess = "metadata";

export const processTable: readonly ProcessSpec[] = [
  // content, images and snapshots keep everything in the database and under the root,
  // so an idle daemon runs none of them (each costs ~25 MiB PSS): the first call starts
  // one, in 0.1–0.25 s (docs/architecture.md), and it retires once idle. Processes calling
  // them directly ask berthd to start them first (core/on-demand-client.ts).
  {
    name: "content",
    services: ["containerd.services.content.v1.Content"],
    onDemand: true,
  },
  {
    name: "images",
    services: ["containerd.services.images.v1.Images"],
    onDemand: true,
    startsAlong: ["content", "snapshots"],
  },
  {
    name: "snapshots",
    services: ["containerd.services.snapshots.v1.Snapshots"],
    onDemand: true,
  },
  {
    // Containers' tasks: drives runc through one berth-shim per container process, and
    // stays up to report their exits as they happen.
    name: "tasks",
    services: ["containerd.services.tasks.v1.Tasks"],
  },
  {
    // Layer extraction uses synchronous fs calls (measured faster), which must not stall
    // another service's event loop; it runs only while layers are applied or diffed.
    name: "diff",
    services: ["containerd.services.diff.v1.Diff"],
    onDemand: true,
  },
  {
    // BullMQ workers: garbage collection (berthd forwards berth.internal.v1.Collector to
    // it) and the public pulls and pushes (docs/pull-jobs.md).
    name: "jobs",
    services: ["berth.services.transfer.v1.Transfer"],
    onDemand: true,
    // A pull calls all four next; their starts overlap jobs' own (cold 200 MiB pull, 4
    // alternating runs, quiet: 1409–1532 ms without, 1236–1479 with, median −120 ms).
    // A push needs only content and images: the other two start for nothing and retire.
    startsAlong: ["content", "images", "snapshots", "diff"],
  },
];

/** Services berthd answers itself, on its in-process socket. */
export const inProcessServices: readonly string[] = [
  "containerd.services.version.v1.Version",
  "containerd.services.introspection.v1.Introspection",
  "containerd.services.namespaces.v1.Namespaces",
  "containerd.services.leases.v1.Leases",
  "containerd.services.events.v1.Events",
  "containerd.services.containers.v1.Containers",
];

/** Which socket name (a process, or inProcess) serves each gRPC service. */
export const grpcRoutes: Readonly<Record<string, string>> = Object.fromEntries([
  ...inProcessServices.map((service) => [service, inProcess]),
  ...processTable.flatMap((process) => process.services.map((service) => [service, process.name])),
]);

/** The snapshotters the snapshots process loads; "overlayfs" is every containerd client's default. */
export const snapshotterNames = ["overlayfs", "native"] as const;
