// gateway: the public gRPC socket. Forwards calls to the owning service process and
// serves Version and Introspection itself (on its own internal socket, through the
// same routing as every other service).
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import { gatewaySocketPath, serviceSocketPath } from "../../core/config.ts";
import { runService } from "../../core/grpc-server.ts";
import { grpcRoutes } from "../../core/routes.ts";
import { introspectionService, loadServerUuid, versionService } from "./introspection.ts";
import { createGrpcProxy } from "./proxy.ts";

const { values } = parseArgs({ options: { address: { type: "string" } }, strict: false });

await runService("gateway", async (server, ctx) => {
  const address = typeof values.address === "string" ? values.address : gatewaySocketPath(ctx.state);
  const socketOf = (process: string) => serviceSocketPath(ctx.state, process);
  server.add(VersionDefinition, versionService);
  server.add(IntrospectionDefinition, introspectionService(loadServerUuid(ctx.root), socketOf));

  const proxy = createGrpcProxy(
    {
      socketFor(service) {
        const process = grpcRoutes[service];
        return process ? socketOf(process) : undefined;
      },
    },
    ctx.log,
  );
  return {
    // The public socket opens last, so a client that reaches it finds Version ready.
    async afterListen() {
      mkdirSync(dirname(address), { recursive: true, mode: 0o711 });
      rmSync(address, { force: true });
      await new Promise<void>((resolve, reject) => {
        proxy.server.once("error", reject);
        proxy.server.listen(address, () => resolve());
      });
      // Not world-writable: root and the socket's group only.
      chmodSync(address, 0o660);
      ctx.log.info({ address }, "gateway listening");
    },
    close: () => proxy.close(),
  };
});
