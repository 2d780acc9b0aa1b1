// images: the name → root descriptor records (containerd.services.images.v1.Images).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { ImagesDefinition } from "../../core/gen/containerd/services/images/v1/images.ts";
import { NamespaceUsageDefinition } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import { imagesService, namespaceUsageService } from "./service.ts";
import { SqliteImageStore } from "./store.ts";

await runService("images", (server, ctx) => {
  const dir = join(ctx.root, "images");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const store = new SqliteImageStore(join(dir, "meta.db"));
  const metadata = new MetadataClient(ctx.state, ctx.log);
  server.add(ImagesDefinition, imagesService(store, metadata));
  server.add(NamespaceUsageDefinition, namespaceUsageService(store, metadata));
  return {
    async close() {
      await metadata.flush();
      store.close();
    },
  };
});
