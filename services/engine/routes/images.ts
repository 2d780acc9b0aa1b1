// The Engine API's images endpoints: list, inspect, history, pull, push, tag, remove, load, save, prune.
// Image names carry slashes and colons raw in the path, so the fixed routes come first
// and the per-image ones match the name greedily.
import type { Backend } from "../backend.ts";
import { badRequest, type RequestContext, type Router } from "../http.ts";
import { parseFilters, queryBool } from "../query.ts";
import { familiarRef, joinRepoTag } from "../references.ts";
import { imageCatalog } from "../images/catalog.ts";
import { filterImages, listFilterNames, pruneFilterNames } from "../images/filters.ts";
import { pruneImages, removeImage } from "../images/remove.ts";
import { setName } from "../images/tagging.ts";
import { imageHistory, inspectImage, listElement } from "../images/views.ts";
import { registerTransferRoutes } from "../images/transfer-routes.ts";
import { registerArchiveRoutes } from "../images/archive-routes.ts";
import { isBuildIntermediate } from "../build/image-store.ts";

export function registerImageRoutes(router: Router, backend: Backend): Promise<void> | void {
  const catalog = imageCatalog(backend);

  router.get("/images/json", async (ctx) => {
    const filters = parseFilters(ctx.query, listFilterNames);
    const listed = await catalog.list();
    // Build steps' images stay out of the list unless -a, as Docker hides intermediate images.
    const images = await filterImages(catalog, queryBool(ctx.query, "all") ? listed : listed.filter((image) => !isBuildIntermediate(image)), filters);
    const elements = await Promise.all(images.map((image) => listElement(catalog, image)));
    // Newest first, as Docker lists them.
    elements.sort((a, b) => b.Created - a.Created || a.Id.localeCompare(b.Id));
    ctx.send(200, elements);
  });

  router.post("/images/prune", async (ctx) => {
    ctx.send(200, await pruneImages(backend, parseFilters(ctx.query, pruneFilterNames)));
  });

  router.get("/images/search", (ctx: RequestContext) => {
    void ctx;
    throw badRequest("image search is not supported: Berth has no access to a registry index");
  });

  // Fixed routes (create, load, get) before the greedy per-image ones.
  registerTransferRoutes(router, backend);
  registerArchiveRoutes(router, backend);

  router.get("/images/*name/json", async (ctx) => {
    const image = await catalog.find(ctx.params.name!);
    const tagged = image.records.map((r) => r.updatedAt).filter(Boolean);
    const last = tagged.length > 0 ? new Date(Math.max(...tagged.map((t) => Number(t!.seconds) * 1000 + Math.floor(t!.nanos / 1e6)))).toISOString() : undefined;
    ctx.send(200, await inspectImage(catalog, image, last));
  });

  router.get("/images/*name/history", async (ctx) => {
    ctx.send(200, await imageHistory(catalog, await catalog.find(ctx.params.name!)));
  });

  router.post("/images/*name/tag", async (ctx) => {
    const repo = ctx.query.get("repo");
    if (!repo) throw badRequest("repository name must have at least one component");
    const tag = ctx.query.get("tag");
    const image = await catalog.find(ctx.params.name!);
    const name = joinRepoTag(repo, tag);
    if (name.includes("@")) throw badRequest("refusing to create a tag with a digest reference");
    await setName(backend.images, name, image.target);
    backend.events.publish("image", "tag", image.id, { name: familiarRef(name) });
    ctx.send(201);
  });

  router.delete("/images/*name", async (ctx) => {
    ctx.send(200, await removeImage(backend, ctx.params.name!, { force: queryBool(ctx.query, "force") }));
  });
}
