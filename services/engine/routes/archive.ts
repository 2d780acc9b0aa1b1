// The Engine API's archive endpoints: archive (docker cp both ways), export, commit, stats.
import { setTimeout as delay } from "node:timers/promises";
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";
import { queryBool } from "../query.ts";
import { containerOr404 } from "../exec/container-state.ts";
import { sample, statsJson, type Sample } from "../exec/stats.ts";

/** How often a stats stream samples, and how far apart the two samples of a one-off reading are (as Docker's daemon). */
const statsIntervalMs = 1000;

export function registerArchiveRoutes(router: Router, backend: Backend): Promise<void> | void {
  router.get("/containers/:id/stats", async (ctx) => {
    const record = containerOr404(backend, ctx.params.id!);
    const stream = queryBool(ctx.query, "stream", true);
    const oneShot = queryBool(ctx.query, "one-shot", false);
    const gone = new AbortController();
    ctx.res.once("close", () => gone.abort());
    if (!stream) {
      let previous: Sample | undefined;
      if (!oneShot) {
        previous = await sample(backend, record.Id);
        await delay(statsIntervalMs, undefined, { signal: gone.signal }).catch(() => {});
        if (gone.signal.aborted) return;
      }
      ctx.send(200, statsJson(record, await sample(backend, record.Id), previous));
      return;
    }
    ctx.res.writeHead(200, { "Content-Type": "application/json" });
    ctx.res.flushHeaders();
    let previous: Sample | undefined;
    while (!gone.signal.aborted && backend.store.get(record.Id)) {
      const current = await sample(backend, record.Id);
      ctx.res.write(`${JSON.stringify(statsJson(record, current, previous))}\n`);
      previous = current;
      await delay(statsIntervalMs, undefined, { signal: gone.signal }).catch(() => {});
    }
    if (!ctx.res.writableEnded) ctx.res.end();
  });
}
