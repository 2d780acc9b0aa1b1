// The Engine API's archive endpoints: archive (docker cp both ways), export, commit, stats.
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as delay } from "node:timers/promises";
import * as native from "../../../native/index.ts";
import { changesToTar, treeChanges } from "../../../core/tar/changes.ts";
import type { Backend } from "../backend.ts";
import { badRequest, type RequestContext, type Router } from "../http.ts";
import { queryBool } from "../query.ts";
import { containerEventAttributes, containerOr404 } from "../exec/container-state.ts";
import { sample, statsJson, type Sample } from "../exec/stats.ts";
import { checkArchive, extractInto, requireDirectory, resolveContainerPath, statContainerPath, statHeader, tarOfPath } from "../archive/copy.ts";
import { withContainerRootfs } from "../archive/rootfs.ts";

const statHeaderName = "X-Docker-Container-Path-Stat";

function pathQuery(ctx: RequestContext): string {
  const path = ctx.query.get("path");
  if (!path) throw badRequest("bad parameter: path cannot be empty");
  return path;
}

/** Streams `source` as the reply body; a client that goes away stops the source. */
async function sendStream(ctx: RequestContext, source: AsyncIterable<Buffer>): Promise<void> {
  await pipeline(Readable.from(source), ctx.res).catch((err: Error) => {
    if (!ctx.res.destroyed) throw err;
  });
}

/** How often a stats stream samples, and how far apart the two samples of a one-off reading are (as Docker's daemon). */
const statsIntervalMs = 1000;

export function registerArchiveRoutes(router: Router, backend: Backend): Promise<void> | void {
  const statPath = async (ctx: RequestContext, withBody: boolean) => {
    const record = containerOr404(backend, ctx.params.id!);
    const given = pathQuery(ctx);
    await withContainerRootfs(backend, record, async (root) => {
      const path = resolveContainerPath(root, given);
      const { stat, raw } = statContainerPath(root, path, ctx.params.id!);
      if (!withBody) {
        ctx.res.writeHead(200, { [statHeaderName]: statHeader(stat), "Content-Length": "0" }).end();
        return;
      }
      ctx.res.writeHead(200, { "Content-Type": "application/x-tar", [statHeaderName]: statHeader(stat) });
      backend.events.publish("container", "archive-path", record.Id, containerEventAttributes(record, { path: given }));
      await sendStream(ctx, tarOfPath(path, raw));
    });
  };
  router.head("/containers/:id/archive", (ctx) => statPath(ctx, false));
  router.get("/containers/:id/archive", (ctx) => statPath(ctx, true));

  router.put("/containers/:id/archive", async (ctx) => {
    const record = containerOr404(backend, ctx.params.id!);
    const given = pathQuery(ctx);
    const noOverwriteDirNonDir = queryBool(ctx.query, "noOverwriteDirNonDir", false);
    // Spooled first, so the whole archive is checked before anything is written.
    const spoolDir = join(backend.options.state, "engine", "uploads");
    mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
    const spool = join(spoolDir, randomBytes(8).toString("hex"));
    try {
      await pipeline(ctx.req, createWriteStream(spool, { mode: 0o600 }));
      await withContainerRootfs(backend, record, async (root) => {
        const dir = resolveContainerPath(root, given, true);
        requireDirectory(dir, ctx.params.id!);
        await checkArchive(dir, () => createReadStream(spool), noOverwriteDirNonDir);
        await extractInto(dir, createReadStream(spool));
      });
    } finally {
      rmSync(spool, { force: true });
    }
    backend.events.publish("container", "extract-to-dir", record.Id, containerEventAttributes(record, { path: given }));
    ctx.send(200);
  });

  router.get("/containers/:id/export", async (ctx) => {
    const record = containerOr404(backend, ctx.params.id!);
    await withContainerRootfs(backend, record, async (root) => {
      ctx.res.writeHead(200, { "Content-Type": "application/octet-stream" });
      await sendStream(ctx, changesToTar(treeChanges(undefined, root, native), native));
    });
    backend.events.publish("container", "export", record.Id, containerEventAttributes(record));
  });

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
