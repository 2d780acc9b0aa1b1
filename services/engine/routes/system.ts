// /_ping and /version: what every client asks first (the Docker CLI negotiates its API
// version from the ping's Api-Version header; docker-py reads /version's ApiVersion).
import { release } from "node:os";
import { hostPlatform } from "../../../core/image/platform.ts";
import type { Backend } from "../backend.ts";
import type { RequestContext, Router } from "../http.ts";
import { apiVersion, minApiVersion } from "../version.ts";

function ping(ctx: RequestContext): void {
  ctx.res.writeHead(200, {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    Pragma: "no-cache",
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": ctx.req.method === "HEAD" ? "0" : "2",
  });
  ctx.res.end(ctx.req.method === "HEAD" ? undefined : "OK");
}

/** Go's GOARCH name of this host (amd64, arm64), which clients expect. */
export const goArch = (): string => hostPlatform().architecture;

export function registerSystemRoutes(router: Router, backend: Backend): Promise<void> | void {
  router.get("/_ping", ping).head("/_ping", ping);
  router.get("/version", (ctx) => {
    const version = backend.options.serverVersion;
    const details = {
      ApiVersion: apiVersion,
      Arch: goArch(),
      BuildTime: "",
      Experimental: "false",
      GitCommit: "berth",
      GoVersion: `node${process.versions.node}`,
      KernelVersion: release(),
      MinAPIVersion: minApiVersion,
      Os: "linux",
    };
    ctx.send(200, {
      Platform: { Name: "Berth Engine" },
      Components: [{ Name: "Engine", Version: version, Details: details }],
      Version: version,
      // The same facts at the top level, where Experimental is a boolean (in Details a string).
      ...details,
      Experimental: false,
    });
  });
}
