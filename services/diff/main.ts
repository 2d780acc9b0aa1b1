// The diff service process: applies layer blobs to snapshot mounts and writes the
// difference of two mount sets as a layer into the content store.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { runService } from "../../core/grpc-server.ts";
import { onDemandClient } from "../../core/on-demand-client.ts";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { DiffDefinition } from "../../core/gen/containerd/services/diff/v1/diff.ts";
import * as native from "../../native/index.ts";
import { TempMounts } from "./mounts.ts";
import { diffService } from "./service.ts";
import { contentRootOf, sharedBlobDir } from "../content/layout.ts";

// BERTH_LAYER_APPLY=js keeps every layer on the JS applier (to compare the two).
const applyLayer = process.env.BERTH_LAYER_APPLY === "js" ? undefined : native.applyLayer;

await runService("diff", async (server, ctx) => {
  const root = join(ctx.root, "diff");
  const mounts = new TempMounts(join(root, "mounts"));
  const swept = await mounts.sweep();
  if (swept > 0) ctx.log.info({ swept }, "removed mount points left by an earlier run");
  // Spool files of calls a crash interrupted are of no further use.
  const spoolDir = join(root, "spool");
  await rm(spoolDir, { recursive: true, force: true });
  server.add(
    DiffDefinition,
    diffService({ content: onDemandClient(BulkContentDefinition, ctx.state, "content"), sys: native, mounts, spoolDir, blobDir: sharedBlobDir(contentRootOf(ctx.root)), contentRoot: contentRootOf(ctx.root), applyLayer, log: ctx.log }),
  );
});
