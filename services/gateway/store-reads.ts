// The read-only calls on content, images and snapshots that berthd answers itself:
// Content Info and small Reads (manifests, configs, indexes), Images Get, Snapshots
// Stat and Mounts. `ctr run` makes ~25 of them; through the owning
// processes each crossed a second socket and woke a second process. The methods are
// the owning services' own (contentReads, imageReads, snapshotReads) over the same
// database rows and files, and those services keep no state in memory that these
// reads depend on, so the answers are the same. Writes, large reads and everything
// else still go to the owning process; a cold `ctr run` therefore starts only
// snapshots (Prepare), which Images Get starts in the background.
import type { CallContext } from "nice-grpc-common";
import type { Logger } from "../../core/log.ts";
import { NamespacedWrites, type Database } from "../../core/metadata-db.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { ImagesDefinition } from "../../core/gen/containerd/services/images/v1/images.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import type { ReadContentRequest } from "../../core/gen/containerd/services/content/v1/content.ts";
import { contentRootOf } from "../content/layout.ts";
import { contentReads, isSmallRead } from "../content/service.ts";
import { SqliteContentStore } from "../content/store.ts";
import { imageReads } from "../images/service.ts";
import { SqliteImageStore } from "../images/store.ts";
import { loadSnapshotters } from "../snapshots/load.ts";
import { snapshotReads } from "../snapshots/service.ts";
import { addLocalMethods, type LocalMethods } from "./local-calls.ts";

export function addStoreReads(into: LocalMethods, root: string, db: Database, log: Logger): void {
  const content = new SqliteContentStore(contentRootOf(root), new NamespacedWrites(db));
  addLocalMethods(into, BulkContentDefinition, contentReads(content), {
    only: ["info", "read"],
    accepts: {
      // A layer streams from the content process: berthd's event loop serves every call.
      read: (request: ReadContentRequest, ctx: CallContext) => isSmallRead(content, namespaceOf(ctx), request),
    },
  });
  addLocalMethods(into, ImagesDefinition, imageReads(new SqliteImageStore(db)), {
    only: ["get"],
    // `ctr run` prepares a snapshot next: its process starts while ctr reads the image.
    warms: { get: ["containerd.services.snapshots.v1.Snapshots"] },
  });
  addLocalMethods(into, SnapshotsDefinition, snapshotReads(loadSnapshotters(root, db, log)), { only: ["stat", "mounts"] });
}
