// The metadata service: namespaces, leases (SQLite under <root>/metadata) and events
// (Redis pub/sub, so they cross processes).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { EventsDefinition } from "../../core/gen/containerd/services/events/v1/events.ts";
import { LeasesDefinition } from "../../core/gen/containerd/services/leases/v1/leases.ts";
import { NamespacesDefinition } from "../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { runService } from "../../core/grpc-server.ts";
import { RedisEventBus } from "./event-bus.ts";
import { eventsService, localPublisher } from "./events.ts";
import { leasesService } from "./leases.ts";
import { HolderNamespaceUsage } from "./namespace-usage.ts";
import { namespacesService } from "./namespaces.ts";
import { openMetadataStore } from "./store.ts";

await runService("metadata", (server, ctx) => {
  const dir = join(ctx.root, "metadata");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const store = openMetadataStore(join(dir, "meta.db"));
  const bus = new RedisEventBus(process.env.BERTH_REDIS_URL, ctx.log);

  server.add(
    NamespacesDefinition,
    namespacesService({
      namespaces: store.namespaces,
      leases: store.leases,
      usage: new HolderNamespaceUsage(ctx.root, ctx.state),
      publish: localPublisher(bus, ctx.log),
    }),
  );
  server.add(LeasesDefinition, leasesService(store.leases));
  server.add(EventsDefinition, eventsService(bus));

  return {
    async close() {
      await bus.close();
      store.close();
    },
  };
});
