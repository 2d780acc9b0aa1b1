// The Engine API's networks endpoints: create, list, inspect, connect, disconnect, remove, prune (CNI bridge networks).
import type { Backend } from "../backend.ts";
import { badRequest, notFoundError, type Router } from "../http.ts";
import { labelsMatch, parseFilters, type Filters } from "../query.ts";
import { hostsPathOf, networkManager } from "../networks/index.ts";
import { predefined, type EndpointSettings, type NetworkCreateRequest, type NetworkManager } from "../networks/manager.ts";
import type { NetworkRecord } from "../networks/store.ts";

const listFilters = ["driver", "id", "label", "name", "scope", "type", "dangling"] as const;

function isBuiltin(network: NetworkRecord): boolean {
  return (predefined as readonly string[]).includes(network.Name);
}

function boolFilter(values: string[] | undefined, name: string): boolean[] | undefined {
  return values?.map((v) => {
    if (["true", "1"].includes(v.toLowerCase())) return true;
    if (["false", "0"].includes(v.toLowerCase())) return false;
    throw badRequest(`invalid filter '${name}=${v}'`);
  });
}

function matches(manager: NetworkManager, network: NetworkRecord, filters: Filters): boolean {
  const f = (name: string) => filters.get(name);
  if (f("driver") && !f("driver")!.includes(network.Driver)) return false;
  if (f("id") && !f("id")!.some((id) => network.Id.startsWith(id))) return false;
  if (f("name") && !f("name")!.some((n) => network.Name.includes(n))) return false;
  if (f("scope") && !f("scope")!.includes(network.Scope)) return false;
  if (!labelsMatch(network.Labels, f("label"))) return false;
  const types = f("type");
  if (types) {
    for (const t of types) if (t !== "custom" && t !== "builtin") throw badRequest(`invalid filter: 'type'='${t}'`);
    if (!types.includes(isBuiltin(network) ? "builtin" : "custom")) return false;
  }
  const dangling = boolFilter(f("dangling"), "dangling");
  if (dangling && !dangling.includes(!isBuiltin(network) && manager.store.endpointsOfNetwork(network.Id).length === 0)) return false;
  return true;
}

function view(manager: NetworkManager, network: NetworkRecord) {
  return { ...network, Containers: manager.containersOf(network) };
}

export function registerNetworkRoutes(router: Router, backend: Backend): Promise<void> | void {
  const manager = () => networkManager(backend);
  const container = (ref: unknown) => {
    if (typeof ref !== "string" || !ref) throw badRequest("Container must name a container");
    const record = backend.store.resolve(ref);
    if (!record) throw notFoundError(`No such container: ${ref}`);
    return record;
  };
  const publish = (action: string, network: NetworkRecord, extra: Record<string, string> = {}) =>
    backend.events.publish("network", action, network.Id, { name: network.Name, type: network.Driver, ...extra });

  router.get("/networks", (ctx) => {
    const filters = parseFilters(ctx.query, listFilters);
    ctx.send(200, manager().store.list().filter((n) => matches(manager(), n, filters)).map((n) => view(manager(), n)));
  });

  router.post("/networks/create", async (ctx) => {
    const body = await ctx.json<NetworkCreateRequest>();
    const network = await manager().create(body);
    publish("create", network);
    ctx.send(201, { Id: network.Id, Warning: "" });
  });

  router.post("/networks/prune", async (ctx) => {
    const filters = parseFilters(ctx.query, ["label", "label!", "until"]);
    const until = filters.get("until")?.[0];
    const cutoff = until === undefined ? undefined : untilCutoff(until);
    const deleted: string[] = [];
    for (const network of manager().store.list()) {
      if (isBuiltin(network) || manager().store.endpointsOfNetwork(network.Id).length > 0) continue;
      if (!labelsMatch(network.Labels, filters.get("label"))) continue;
      if (filters.get("label!")?.some((l) => labelsMatch(network.Labels, [l]))) continue;
      if (cutoff !== undefined && Date.parse(network.Created) >= cutoff) continue;
      await manager().remove(network.Id);
      publish("destroy", network);
      deleted.push(network.Name);
    }
    ctx.send(200, { NetworksDeleted: deleted.length > 0 ? deleted : null });
  });

  router.get("/networks/:id", (ctx) => {
    ctx.send(200, view(manager(), manager().resolve(ctx.params.id!)));
  });

  router.delete("/networks/:id", async (ctx) => {
    const network = await manager().remove(ctx.params.id!);
    publish("destroy", network);
    ctx.noContent();
  });

  router.post("/networks/:id/connect", async (ctx) => {
    const body = await ctx.json<{ Container?: string; EndpointConfig?: EndpointSettings | null }>();
    const network = manager().resolve(ctx.params.id!);
    const record = container(body.Container);
    await manager().connect(network.Id, record, body.EndpointConfig ?? {}, hostsPathOf(backend.options.root, record.Id));
    publish("connect", network, { container: record.Id });
    ctx.send(200);
  });

  router.post("/networks/:id/disconnect", async (ctx) => {
    const body = await ctx.json<{ Container?: string; Force?: boolean }>();
    const network = manager().resolve(ctx.params.id!);
    const record = container(body.Container);
    await manager().disconnect(network.Id, record);
    publish("disconnect", network, { container: record.Id });
    ctx.send(200);
  });
}

/** `until`: Unix seconds (with a fraction), an RFC 3339 time, or a Go duration ago (10m, 1h30m). */
function untilCutoff(value: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const duration = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(value);
  if (duration && value) return Date.now() - ((Number(duration[1] ?? 0) * 60 + Number(duration[2] ?? 0)) * 60 + Number(duration[3] ?? 0)) * 1000;
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw badRequest(`invalid filter 'until=${value}'`);
  return time;
}
