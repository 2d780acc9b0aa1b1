// gateway: the public gRPC socket. Forwards calls to the owning service process and
// serves Version and Introspection itself (on its own internal socket, through the
// same routing as every other service).
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import { gatewaySocketPath, serviceSocketPath } from "../../core/config.ts";
import { runService } from "../../core/grpc-server.ts";
import { grpcRoutes } from "../../core/routes.ts";
import { listenOnSocket } from "../../core/socket.ts";
import { introspectionService, loadServerUuid, versionService } from "./introspection.ts";
import { createGrpcProxy } from "./proxy.ts";

await runService("gateway", async (server, ctx) => {
  const address = ctx.address ?? gatewaySocketPath(ctx.state);
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
      await listenOnSocket(
        address,
        (path) =>
          new Promise<void>((resolve, reject) => {
            proxy.server.once("error", reject);
            proxy.server.listen(path, () => resolve());
          }),
      );
      ctx.log.info({ address }, "gateway listening");
    },
    close: () => proxy.close(),
  };
});
