// images: the name → root descriptor records (containerd.services.images.v1.Images),
// in the shared metadata database.
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { ImagesDefinition } from "../../core/gen/containerd/services/images/v1/images.ts";
import { imagesService } from "./service.ts";
import { SqliteImageStore } from "./store.ts";

await runService("images", (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const metadata = new MetadataClient(ctx.state, ctx.log);
  server.add(ImagesDefinition, imagesService(new SqliteImageStore(db), metadata));
  return {
    async close() {
      await metadata.flush();
      db.close();
    },
  };
});
