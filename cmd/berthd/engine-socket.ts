// docker.sock: the Engine API's socket, owned by berthd. The engine's code (and its
// memory) is loaded only when it has work: the first connection, or containers of its
// own at start (their restart policies and auto-removal need it running), or a build
// left by a daemon that was killed.
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import type { Logger } from "../../core/log.ts";
import { listenOnSocket } from "../../core/socket.ts";
import type { Engine, EngineOptions } from "../../services/engine/index.ts";
import type { EngineTcpConfig } from "./config.ts";

export function engineSocketPath(state: string): string {
  return join(state, "docker.sock");
}

export interface EngineSocket {
  close(): Promise<void>;
}

/**
 * Connections are accepted paused (nothing is lost while the engine loads) and half-open,
 * as node:http's own server accepts them: a client's half-close ends only its input (an
 * attach's stdin EOF), the output goes on.
 */
const acceptOptions = { pauseOnConnect: true, allowHalfOpen: true };

/** A TCP listener for the Engine API: mutual TLS (a client certificate signed by the CA is required), or plain when forced. */
function tcpServer(tcp: EngineTcpConfig, serve: (socket: net.Socket) => void): net.Server {
  if (tcp.insecure && !tcp.tlscert) return net.createServer(acceptOptions, serve);
  const server = tls.createServer({
    ca: readFileSync(tcp.tlscacert!),
    cert: readFileSync(tcp.tlscert!),
    key: readFileSync(tcp.tlskey!),
    requestCert: true,
    rejectUnauthorized: true,
    allowHalfOpen: true,
  });
  server.on("secureConnection", (socket) => {
    socket.pause();
    serve(socket);
  });
  return server;
}

export async function openEngineSocket(options: EngineOptions, log: Logger, tcp?: EngineTcpConfig): Promise<EngineSocket> {
  let engine: Promise<Engine> | undefined;
  const load = () =>
    (engine ??= import("../../services/engine/index.ts").then((m) => m.startEngine(options)).catch((err: Error) => {
      log.error({ err: err.message }, "the engine failed to start");
      engine = undefined;
      throw err;
    }));
  // Every connection berthd accepted and has not seen close: a listener's close() waits
  // for them, and the engine's own close ends only its HTTP ones (an attach or exec
  // stream it took over stays open until its client leaves), so shutdown ends the rest.
  const open = new Set<net.Socket>();
  const serve = (socket: net.Socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    load().then(
      (e) => e.accept(socket),
      () => socket.destroy(),
    );
  };
  const servers = [net.createServer(acceptOptions, serve)];
  const { EngineStore } = await import("../../services/engine/store.ts");
  const { hasBuildDirs } = await import("../../services/engine/build/work-dir.ts");
  // A build's directory at start: a build the last daemon was killed in, to undo now.
  if (EngineStore.hasContainers(options.root) || hasBuildDirs(options.root)) await load();
  await listenOnSocket(engineSocketPath(options.state), (path) => new Promise<void>((resolve) => servers[0]!.listen(path, resolve)));
  if (tcp) {
    const url = new URL(tcp.host);
    const server = tcpServer(tcp, serve);
    servers.push(server);
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(Number(url.port), url.hostname.replace(/^\[|\]$/g, ""), resolve));
    log.info({ host: tcp.host, tls: Boolean(tcp.tlscert) }, "engine API listening on TCP");
  }
  return {
    async close() {
      // Not awaited before the engine closes: the listeners' close resolves only once their
      // connections are gone, and a running build's or an attach's lasts until the engine ends it.
      const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
      await (await engine?.catch(() => undefined))?.close();
      for (const socket of open) socket.destroy();
      await closed;
    },
  };
}
