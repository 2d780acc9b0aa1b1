// The Engine API's exec endpoints: exec create, start (hijacked), inspect, resize.
import type { Backend } from "../backend.ts";
import { badRequest, takeOver, type Router } from "../http.ts";
import { queryInt } from "../query.ts";
import { containerOr404 } from "../exec/container-state.ts";
import { ExecManager, parseExecConfig } from "../exec/execs.ts";

export function registerExecRoutes(router: Router, backend: Backend): Promise<void> | void {
  const execs = new ExecManager(backend);

  router.post("/containers/:id/exec", async (ctx) => {
    const record = containerOr404(backend, ctx.params.id!);
    const config = parseExecConfig(await ctx.json());
    const exec = await execs.create(record, config);
    ctx.send(201, { Id: exec.id });
  });

  router.post("/exec/:id/start", async (ctx) => {
    const exec = execs.get(ctx.params.id!);
    const body = await ctx.json();
    const record = await execs.claim(exec);
    if (body.Detach) {
      await execs.startDetached(exec, record);
      ctx.send(200);
      return;
    }
    const stream = takeOver(ctx);
    await execs.startAttached(exec, record, stream, ctx.head, ctx.upgrade);
  });

  router.get("/exec/:id/json", (ctx) => {
    ctx.send(200, execs.inspect(execs.get(ctx.params.id!)));
  });

  router.post("/exec/:id/resize", async (ctx) => {
    const exec = execs.get(ctx.params.id!);
    const height = queryInt(ctx.query, "h", 0);
    const width = queryInt(ctx.query, "w", 0);
    if (height < 0 || width < 0 || height > 0xffff || width > 0xffff) throw badRequest(`invalid terminal size ${width}x${height}`);
    await execs.resize(exec, height, width);
    ctx.send(200);
  });
}
