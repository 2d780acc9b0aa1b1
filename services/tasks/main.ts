// tasks: the Tasks service. Runs containers through berth-shim (one per container
// process, detached: containers outlive this process) and runc; bundles and shim state
// under <state>/shims/<namespace>/<id>/, runc's under <state>/runc/<namespace>/.
import { fileURLToPath } from "node:url";
import { runService } from "../../core/grpc-server.ts";
import { MetadataClient } from "../../core/metadata-client.ts";
import { openMetadataDatabase } from "../../core/metadata-db.ts";
import { TasksDefinition } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import { ContainerStore } from "../containers/store.ts";
import { TaskManager } from "./manager.ts";
import { taskExitedPublisher, taskOomPublisher, tasksService } from "./service.ts";

await runService("tasks", async (server, ctx) => {
  const db = openMetadataDatabase(ctx.root);
  const metadata = new MetadataClient(ctx.state, ctx.log);
  const manager = new TaskManager(
    {
      state: ctx.state,
      // The bundle is dist/tasks.js; the shim is built beside it.
      shimBinary: process.env.BERTH_SHIM ?? fileURLToPath(new URL("berth-shim", import.meta.url)),
      runcBinary: process.env.BERTH_RUNC ?? "runc",
    },
    ctx.log,
    { exited: taskExitedPublisher(metadata), oom: taskOomPublisher(metadata) },
  );
  const restored = await manager.restore();
  if (restored > 0) ctx.log.info({ restored }, "restored tasks");
  server.add(TasksDefinition, tasksService(manager, new ContainerStore(db), metadata));
  return {
    async close() {
      await metadata.flush();
      db.close();
    },
  };
});
