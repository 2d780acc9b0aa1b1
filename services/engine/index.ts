// The Docker Engine API (docs/engine.md): an HTTP server over node:http whose routes are
// grouped by area (routes/*.ts). berthd loads this module the first time a client
// connects to docker.sock (or at start when engine containers exist) and hands it the
// connections; it is not a process of its own, since an idle Node process costs ~18 MiB.
import { createServer, ServerResponse, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import { Backend, type EngineOptions } from "./backend.ts";
import { commonHeaders, httpErrorOf, notFoundError, RequestContext, Router } from "./http.ts";
import { splitVersion } from "./version.ts";
import { registerSystemRoutes } from "./routes/system.ts";
import { registerInfoRoutes } from "./routes/info.ts";
import { registerImageRoutes } from "./routes/images.ts";
import { registerContainerRoutes } from "./routes/containers.ts";
import { registerExecRoutes } from "./routes/exec.ts";
import { registerArchiveRoutes } from "./routes/archive.ts";
import { registerNetworkRoutes } from "./routes/networks.ts";
import { registerVolumeRoutes } from "./routes/volumes.ts";
import { registerBuildRoutes } from "./routes/build.ts";
import { registerBuildCacheRoutes } from "./routes/build-cache.ts";

export type { EngineOptions } from "./backend.ts";

export interface Engine {
  /** Serves one accepted connection. */
  accept(socket: Socket): void;
  close(): Promise<void>;
}

/** Headers larger than this are refused (431) before any handler runs. */
const maxHeaderBytes = 64 * 1024;

export async function startEngine(options: EngineOptions): Promise<Engine> {
  const backend = new Backend(options);
  const router = new Router();
  await registerSystemRoutes(router, backend);
  await registerInfoRoutes(router, backend);

  await registerImageRoutes(router, backend);

  await registerContainerRoutes(router, backend);

  await registerExecRoutes(router, backend);

  await registerArchiveRoutes(router, backend);

  await registerNetworkRoutes(router, backend);

  await registerVolumeRoutes(router, backend);

  registerBuildRoutes(router, backend);
  registerBuildCacheRoutes(router, backend);

  const handle = (req: IncomingMessage, res: ServerResponse, upgradeHead?: Buffer) => {
    commonHeaders(res, options.serverVersion);
    const url = new URL(req.url ?? "/", "http://engine");
    const fail = (err: unknown) => {
      const { status, message } = httpErrorOf(err);
      if (status >= 500) options.log.warn({ err: message, method: req.method, url: req.url }, "engine request failed");
      if (res.headersSent || res.destroyed || !res.socket) {
        if (!res.headersSent) req.socket.destroy();
        else res.destroy();
        return;
      }
      // Exactly application/json: Docker's clients parse the message only then.
      const body = JSON.stringify({ message });
      res.writeHead(status, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)) }).end(body);
    };
    try {
      const { version, path } = splitVersion(url.pathname);
      const ctx = new RequestContext(req, res, path, version, url.searchParams, upgradeHead);
      const route = router.match(req.method ?? "GET", path);
      if (!route) throw notFoundError("page not found");
      ctx.params = route.params;
      Promise.resolve(route.handler(ctx)).catch(fail);
    } catch (err) {
      fail(err);
    }
  };

  const server: Server = createServer({ maxHeaderSize: maxHeaderBytes, requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => handle(req, res));
  // A request that asks to upgrade (attach, exec start) reaches the same handlers with a
  // response on its socket, so errors before the takeover are ordinary HTTP replies; the
  // connection closes after such a reply (the parser is gone).
  server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.pause();
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.on("finish", () => socket.end());
    handle(req, res, head);
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
    const body = JSON.stringify({ message: err.code === "HPE_HEADER_OVERFLOW" ? "request header too large" : `bad request: ${err.message}` });
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    else socket.destroy();
  });

  return {
    accept(socket) {
      server.emit("connection", socket);
      // berthd accepted it paused (so nothing was lost while this module loaded).
      socket.resume();
    },
    async close() {
      // The server never listens (berthd hands it its connections), so it keeps no list
      // of them and closeAllConnections() would do nothing: berthd ends them once this
      // resolves (cmd/berthd/engine-socket.ts), after a build's client was told why.
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await backend.close();
    },
  };
}
