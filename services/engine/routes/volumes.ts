// The Engine API's volumes endpoints: create, list, inspect, remove, prune (local named volumes).
import type { Backend } from "../backend.ts";
import { badRequest, conflict, type Router } from "../http.ts";
import { labelsMatch, parseFilters, queryBool, type Filters } from "../query.ts";
import { volumeStore } from "../volumes/index.ts";
import { noSuchVolume, type Volume, type VolumeCreateRequest } from "../volumes/store.ts";
import { volumeUsers } from "../volumes/usage.ts";

function matches(volume: Volume, filters: Filters, users: Map<string, string[]>): boolean {
  const names = filters.get("name");
  if (names && !names.some((n) => volume.Name.includes(n))) return false;
  const drivers = filters.get("driver");
  if (drivers && !drivers.includes(volume.Driver)) return false;
  if (!labelsMatch(volume.Labels, filters.get("label"))) return false;
  const dangling = filters.get("dangling");
  if (dangling && dangling.length > 0) {
    const wanted = dangling.map((v) => {
      if (["true", "1"].includes(v.toLowerCase())) return true;
      if (["false", "0"].includes(v.toLowerCase())) return false;
      throw badRequest(`invalid filter 'dangling=${v}'`);
    });
    const isDangling = !users.has(volume.Name);
    if (!wanted.includes(isDangling)) return false;
  }
  return true;
}

function inUse(name: string, ids: string[]) {
  return conflict(`remove ${name}: volume is in use - [${ids.join(", ")}]`);
}

export function registerVolumeRoutes(router: Router, backend: Backend): Promise<void> | void {
  const volumes = () => volumeStore(backend);

  router.post("/volumes/create", async (ctx) => {
    const body = await ctx.json<VolumeCreateRequest>();
    if (body.Name !== undefined && typeof body.Name !== "string") throw badRequest("volume Name must be a string");
    if (body.Labels != null && (typeof body.Labels !== "object" || Array.isArray(body.Labels))) throw badRequest("volume Labels must be a map of strings");
    const { volume, created } = volumes().create(body);
    if (created) backend.events.publish("volume", "create", volume.Name, { driver: volume.Driver });
    ctx.send(201, volume);
  });

  router.get("/volumes", (ctx) => {
    const filters = parseFilters(ctx.query, ["name", "label", "dangling", "driver"]);
    const users = volumeUsers(backend.store);
    ctx.send(200, { Volumes: volumes().list().filter((v) => matches(v, filters, users)), Warnings: null });
  });

  router.post("/volumes/prune", (ctx) => {
    const filters = parseFilters(ctx.query, ["label", "label!", "all"]);
    const users = volumeUsers(backend.store);
    const unwanted = filters.get("label!");
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const volume of volumes().list()) {
      if (users.has(volume.Name)) continue;
      if (!labelsMatch(volume.Labels, filters.get("label"))) continue;
      if (unwanted && unwanted.some((l) => labelsMatch(volume.Labels, [l]))) continue;
      reclaimed += volumes().remove(volume.Name);
      deleted.push(volume.Name);
      backend.events.publish("volume", "destroy", volume.Name, { driver: volume.Driver });
    }
    ctx.send(200, { VolumesDeleted: deleted, SpaceReclaimed: reclaimed });
  });

  router.get("/volumes/:name", (ctx) => {
    const volume = volumes().get(ctx.params.name!);
    if (!volume) throw noSuchVolume(ctx.params.name!);
    ctx.send(200, volume);
  });

  router.delete("/volumes/:name", (ctx) => {
    const name = ctx.params.name!;
    const volume = volumes().get(name);
    if (!volume) {
      // force: a missing volume is not an error (scripts remove what may be gone).
      if (queryBool(ctx.query, "force")) return ctx.noContent();
      throw noSuchVolume(name);
    }
    const users = volumeUsers(backend.store).get(name);
    if (users) throw inUse(name, users);
    volumes().remove(name);
    backend.events.publish("volume", "destroy", name, { driver: volume.Driver });
    ctx.noContent();
  });
}
