// The Engine API's containers endpoints: create, start, stop, kill, restart, wait, pause,
// unpause, rename, remove, list, inspect, top, prune, resize, attach, logs. The work is in
// services/engine/containers/; this module maps requests to it.
import type { Backend } from "../backend.ts";
import { badRequest, conflict, type RequestContext, type Router } from "../http.ts";
import { parseFilters, queryBool, queryInt } from "../query.ts";
import { attach } from "../containers/attach.ts";
import type { CreateBody } from "../containers/config.ts";
import { snapshotter } from "../containers/image.ts";
import { ContainerManager } from "../containers/lifecycle.ts";
import { logs } from "../containers/logs.ts";
import { processTable, psTable } from "../containers/top.ts";
import { inspectView, listContainers, listEntry, type NetworkSettingsView } from "../containers/views.ts";
import { execIdsOf } from "../exec/execs.ts";
import { networkManager } from "../networks/index.ts";
import type { NetworkRecord } from "../networks/store.ts";
import { wait } from "../containers/wait.ts";
import { labelsMatch } from "../query.ts";

/** `t` in seconds, when given (stop, restart). */
function timeoutOf(ctx: RequestContext): number | undefined {
  const text = ctx.query.get("t") ?? ctx.query.get("timeout");
  if (text === null || text === "") return undefined;
  if (!/^-?\d+$/.test(text)) throw badRequest(`invalid value for t: ${JSON.stringify(text)} is not an integer`);
  return Number(text);
}

/** `until` of prune: Unix seconds, RFC 3339, or a duration back from now (10m, 1h30m). */
function untilMs(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const parsed = Date.parse(text);
  if (Number.isFinite(parsed)) return parsed;
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) throw badRequest(`invalid filter 'until=${text}'`);
  const unit = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;
  return Date.now() - parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

export function registerContainerRoutes(router: Router, backend: Backend): Promise<void> | void {
  const manager = new ContainerManager(backend);

  router.post("/containers/create", async (ctx) => {
    const body = await ctx.json<CreateBody>();
    ctx.send(201, await manager.create(body, ctx.query.get("name")));
  });

  router.get("/containers/json", (ctx) => {
    const filters = parseFilters(ctx.query, ["status", "name", "id", "label", "ancestor", "exited", "before", "since", "network", "volume", "health", "is-task", "publish", "expose"]);
    const records = listContainers(backend.store.listShared(), filters, queryBool(ctx.query, "all"), queryInt(ctx.query, "limit", -1), (ref) => backend.store.resolve(ref));
    const networks = networkManager(backend);
    const endpoints = networks.store.endpointsByContainer();
    const seen = new Map<string, NetworkRecord | undefined>();
    const network = (id: string) => {
      if (!seen.has(id)) seen.set(id, networks.store.resolve(id));
      return seen.get(id);
    };
    ctx.send(200, records.map((r) => listEntry(r, networks.settingsOf(r, { endpoints: endpoints.get(r.Id) ?? [], network }) as NetworkSettingsView)));
  });

  router.post("/containers/prune", async (ctx) => {
    const filters = parseFilters(ctx.query, ["label", "label!", "until"]);
    const until = filters.get("until")?.map(untilMs);
    const deleted: string[] = [];
    for (const record of backend.store.list()) {
      if (record.State.Running || record.State.Restarting) continue;
      if (!labelsMatch(record.Config.Labels, filters.get("label"))) continue;
      const unwanted = filters.get("label!");
      if (unwanted && unwanted.length > 0 && unwanted.some((l) => labelsMatch(record.Config.Labels, [l]))) continue;
      if (until && !until.every((t) => Date.parse(record.Created) < t)) continue;
      await manager.remove(record.Id, false);
      deleted.push(record.Id);
    }
    ctx.send(200, { ContainersDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: 0 });
  });

  router.get("/containers/:id/json", (ctx) => {
    const record = manager.get(ctx.params.id!);
    const mode = record.HostConfig.NetworkMode ?? "default";
    const own = mode !== "host" && !mode.startsWith("container:");
    ctx.send(200, inspectView(record, { driver: snapshotter, execIds: execIdsOf(backend, record.Id), ...(own ? { networkSettings: networkManager(backend).settingsOf(record) as NetworkSettingsView } : {}) }));
  });

  router.get("/containers/:id/top", async (ctx) => {
    const record = manager.get(ctx.params.id!);
    if (!record.State.Running) throw conflict(`Container ${record.Id} is not running`);
    const { processes } = await backend.tasks.listPids({ containerId: record.Id }, backend.call());
    const pids = processes.map((p) => p.pid);
    const psArgs = ctx.query.get("ps_args");
    ctx.send(200, psArgs ? await psTable(pids, psArgs) : processTable(pids));
  });

  router.get("/containers/:id/logs", (ctx) => logs(ctx, manager));

  router.post("/containers/:id/start", async (ctx) => {
    if (await manager.start(ctx.params.id!)) ctx.noContent();
    else ctx.send(304);
  });

  router.post("/containers/:id/stop", async (ctx) => {
    if (await manager.stop(ctx.params.id!, timeoutOf(ctx))) ctx.noContent();
    else ctx.send(304);
  });

  router.post("/containers/:id/restart", async (ctx) => {
    await manager.restart(ctx.params.id!, timeoutOf(ctx));
    ctx.noContent();
  });

  router.post("/containers/:id/kill", async (ctx) => {
    await manager.kill(ctx.params.id!, ctx.query.get("signal"));
    ctx.noContent();
  });

  router.post("/containers/:id/pause", async (ctx) => {
    await manager.pause(ctx.params.id!);
    ctx.noContent();
  });

  router.post("/containers/:id/unpause", async (ctx) => {
    await manager.unpause(ctx.params.id!);
    ctx.noContent();
  });

  router.post("/containers/:id/rename", (ctx) => {
    manager.rename(ctx.params.id!, ctx.query.get("name"));
    ctx.noContent();
  });

  router.post("/containers/:id/resize", async (ctx) => {
    const height = queryInt(ctx.query, "h", 0);
    const width = queryInt(ctx.query, "w", 0);
    if (height < 0 || width < 0 || height > 65535 || width > 65535) throw badRequest("invalid resize: h and w must be between 0 and 65535");
    await manager.resize(ctx.params.id!, height, width);
    ctx.send(200);
  });

  router.post("/containers/:id/wait", (ctx) => wait(ctx, manager));

  router.post("/containers/:id/attach", (ctx) => attach(ctx, backend, manager));

  router.delete("/containers/:id", async (ctx) => {
    await manager.remove(ctx.params.id!, queryBool(ctx.query, "force"), queryBool(ctx.query, "v"));
    ctx.noContent();
  });

  // Records and tasks meet again (containers that ran on while no engine did).
  void manager.reconcile().catch((err: Error) => backend.log.error({ err: err.message }, "reconciling containers with tasks failed"));
}
