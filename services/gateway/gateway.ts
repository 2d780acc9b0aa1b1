// The public gRPC socket (berthd serves it): every call is forwarded, by its service
// name, to the socket of the process the process table names for it.
import { serviceSocketPath } from "../../core/config.ts";
import type { Logger } from "../../core/log.ts";
import { grpcRoutes } from "../../core/routes.ts";
import { listenOnSocket } from "../../core/socket.ts";
import { createGrpcProxy } from "./proxy.ts";
import type { LocalMethods } from "./local-calls.ts";
import { trimHeapWhenIdle } from "../../core/heap-trim.ts";

/**
 * Opens the public socket. `ready(process)` returns a promise when that process must
 * first be started (on demand); the call waits for it. `local` methods are answered
 * here (local-calls.ts).
 */
export async function openGateway(
  state: string,
  address: string,
  ready: (process: string) => Promise<void> | undefined,
  log: Logger,
  local?: LocalMethods,
): Promise<{ close(): Promise<void> }> {
  const proxy = createGrpcProxy(
    {
      socketFor(service) {
        const process = grpcRoutes[service];
        return process ? serviceSocketPath(state, process) : undefined;
      },
      ready(service) {
        const process = grpcRoutes[service];
        return process ? ready(process) : undefined;
      },
      local,
    },
    log,
  );
  await listenOnSocket(
    address,
    (path) =>
      new Promise<void>((resolve, reject) => {
        proxy.server.once("error", reject);
        proxy.server.listen(path, () => resolve());
      }),
  );
  // berthd takes the gateway's load: its memory must come back after a burst, as the services' do (core/lifecycle.ts).
  trimHeapWhenIdle(log);
  log.info({ address }, "gateway listening");
  return proxy;
}
