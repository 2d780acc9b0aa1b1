// The build cache's endpoint: POST /build/prune (`docker builder prune`, and part of
// `docker system prune`). GET /system/df reports the cache through system/disk-usage.ts.
import type { Backend } from "../backend.ts";
import { badRequest, type Router } from "../http.ts";
import { parseFilters, queryBool, queryInt } from "../query.ts";
import { buildPruneFilterNames, pruneBuildCache } from "../build/cache.ts";

export function registerBuildCacheRoutes(router: Router, backend: Backend): void {
  router.post("/build/prune", async (ctx) => {
    const q = ctx.query;
    const keepStorage = queryInt(q, "keep-storage", 0);
    if (keepStorage < 0) throw badRequest(`invalid value for keep-storage: ${keepStorage} is negative`);
    const filters = parseFilters(q, buildPruneFilterNames);
    ctx.send(200, await pruneBuildCache(backend, { all: queryBool(q, "all"), filters, keepStorage }));
  });
}
