// The metadata service: namespaces and leases (in the shared metadata database), events
// (Redis pub/sub, so they cross processes) and the garbage collector.
import { EventsDefinition } from "../../core/gen/containerd/services/events/v1/events.ts";
import { LeasesDefinition } from "../../core/gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { CollectorDefinition } from "../../core/gen/berth/internal/v1/gc.ts";
import { runService } from "../../core/grpc-server.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { RedisEventBus } from "./event-bus.ts";
import { eventsService, localPublisher } from "./events.ts";
import { startCollector } from "./gc/service.ts";
import { leasesService } from "./leases.ts";
import { namespacesService } from "./namespaces.ts";
import { metadataStore } from "./store.ts";

await runService("metadata", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const store = metadataStore(db);
  const bus = new RedisEventBus(process.env.BERTH_REDIS_URL, ctx.log);
  const collector = startCollector(db, ctx.root, ctx.state, ctx.log);

  server.add(NamespacesDefinition, namespacesService({ namespaces: store.namespaces, publish: localPublisher(bus, ctx.log) }));
  server.add(LeasesDefinition, leasesService(store.leases, collector.scheduler));
  server.add(EventsDefinition, eventsService(bus));
  server.add(CollectorDefinition, collector.service);

  return {
    async afterListen() {
      await collector.scheduler.start();
    },
    async close() {
      await collector.scheduler.close();
      await bus.close();
      store.close();
    },
  };
});
