// What berthd serves in-process on <state>/services/metadata.sock: namespaces, leases
// and container records (in the shared metadata database), events (Redis pub/sub, so
// they cross processes), the front of the garbage collector (which runs in the jobs
// process), and Version and Introspection.
import { EventsDefinition } from "../../core/gen/containerd/services/events/v1/events.ts";
import { LeasesDefinition } from "../../core/gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import { CollectorDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { ProcessesDefinition } from "../../core/gen/berth/internal/v1/processes.ts";
import { serviceSocketPath } from "../../core/config.ts";
import { startGrpcServer } from "../../core/grpc-server.ts";
import type { ProcessContext } from "../../core/lifecycle.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { addLocalMethods, type LocalMethods } from "../gateway/local-calls.ts";
import { addStoreReads } from "../gateway/store-reads.ts";
import { addTaskReads } from "../gateway/task-reads.ts";
import { inProcess, snapshotterNames } from "../../core/routes.ts";
import { introspectionService, loadServerUuid, versionService } from "../gateway/introspection.ts";
import { RedisEventBus } from "./event-bus.ts";
import { eventsService, localPublisher } from "./events.ts";
import { CollectorFront } from "./collector-front.ts";
import { ContainersDefinition } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { containersService } from "../containers/service.ts";
import { ContainerStore } from "../containers/store.ts";
import { collect, type CollectionResult } from "../jobs/gc/collector.ts";
import { leasesService } from "./leases.ts";
import { namespacesService } from "./namespaces.ts";
import { processesService } from "./processes.ts";
import { metadataStore } from "./store.ts";

/**
 * Serves the in-process services. `ready(process)` makes sure a process of the process
 * table runs (for one started on demand: starts it; undefined when it is always on).
 * Call startCollections() once every always-on process is up.
 */
export async function serveMetadata(
  ctx: ProcessContext,
  redisUrl: string | undefined,
  ready: (process: string) => Promise<void> | undefined,
): Promise<{ startup: CollectionResult; local: LocalMethods; startCollections(): void; close(): Promise<void> }> {
  const db = openMetadataDatabase(ctx.root);
  // Whatever a crash left unreferenced goes before any service starts (they unlink the
  // files no row refers to when they start), so nothing races this first collection.
  const startup = collect(db);
  if (startup.blobs + startup.snapshots + startup.leases > 0) ctx.log.info(startup, "garbage collected at start");
  const store = metadataStore(db);
  const bus = new RedisEventBus(redisUrl, ctx.log);
  const collector = new CollectorFront(ctx.state, () => ready("jobs"), ctx.log);
  // The public services are also answered by the gateway directly (the same
  // implementations, services/gateway/local-calls.ts); the socket serves the other
  // processes, and the streams (ctr events).
  const local: LocalMethods = new Map();
  const publish = localPublisher(bus, ctx.log);
  const namespaces = namespacesService({ namespaces: store.namespaces, publish });
  const containers = containersService({ store: new ContainerStore(db), publish, collect: () => collector.schedule() });
  const leases = leasesService(store.leases, collector);
  const events = eventsService(bus);
  const introspection = introspectionService(loadServerUuid(ctx.root), (process) => serviceSocketPath(ctx.state, process), snapshotterNames);
  addLocalMethods(local, NamespacesDefinition, namespaces);
  addLocalMethods(local, ContainersDefinition, containers);
  addLocalMethods(local, LeasesDefinition, leases);
  addLocalMethods(local, EventsDefinition, events, { only: ["publish", "forward"] });
  addLocalMethods(local, VersionDefinition, versionService);
  addLocalMethods(local, IntrospectionDefinition, introspection);
  addStoreReads(local, ctx.root, db, ctx.log);
  addTaskReads(local, ctx.state);
  const grpc = await startGrpcServer(ctx, inProcess, (server) => {
    server.add(NamespacesDefinition, namespaces);
    server.add(ContainersDefinition, containers);
    server.add(LeasesDefinition, leases);
    server.add(EventsDefinition, events);
    server.add(CollectorDefinition, collector.service);
    server.add(ProcessesDefinition, processesService(ready));
    server.add(VersionDefinition, versionService);
    server.add(IntrospectionDefinition, introspection);
  });
  return {
    startup,
    local,
    startCollections() {
      collector.startPeriodic(Number(process.env.BERTH_GC_PERIOD_MS) || 60 * 60_000);
    },
    async close() {
      collector.stop();
      await grpc.close();
      await bus.close();
      store.close();
    },
  };
}
