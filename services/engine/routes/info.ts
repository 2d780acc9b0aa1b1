// The Engine API's info endpoints: info, events, system df, auth.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";
import { checkLogin } from "../system/auth.ts";
import { diskUsage } from "../system/disk-usage.ts";
import { streamEvents } from "../system/events.ts";
import { systemInfo } from "../system/info.ts";

export function registerInfoRoutes(router: Router, backend: Backend): Promise<void> | void {
  router.get("/info", async (ctx) => ctx.send(200, await systemInfo(backend)));
  router.get("/events", (ctx) => streamEvents(backend, ctx));
  router.get("/system/df", async (ctx) => ctx.send(200, await diskUsage(backend, ctx.version)));
  router.post("/auth", (ctx) => checkLogin(ctx));
}
