// docker.sock: the Engine API's socket, owned by berthd. The engine's code (and its
// memory) is loaded only when it has work: the first connection, or containers of its
// own at start (their restart policies and auto-removal need it running).
import net from "node:net";
import { join } from "node:path";
import type { Logger } from "../../core/log.ts";
import { listenOnSocket } from "../../core/socket.ts";
import type { Engine, EngineOptions } from "../../services/engine/index.ts";

export function engineSocketPath(state: string): string {
  return join(state, "docker.sock");
}

export interface EngineSocket {
  close(): Promise<void>;
}

export async function openEngineSocket(options: EngineOptions, log: Logger): Promise<EngineSocket> {
  let engine: Promise<Engine> | undefined;
  const load = () =>
    (engine ??= import("../../services/engine/index.ts").then((m) => m.startEngine(options)).catch((err: Error) => {
      log.error({ err: err.message }, "the engine failed to start");
      engine = undefined;
      throw err;
    }));
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    load().then(
      (e) => e.accept(socket),
      () => socket.destroy(),
    );
  });
  const { EngineStore } = await import("../../services/engine/store.ts");
  if (EngineStore.hasContainers(options.root)) await load();
  await listenOnSocket(engineSocketPath(options.state), (path) => new Promise<void>((resolve) => server.listen(path, resolve)));
  return {
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await (await engine?.catch(() => undefined))?.close();
    },
  };
}
