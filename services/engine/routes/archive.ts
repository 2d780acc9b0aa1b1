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
import { removeStaleCallState, withContainerRootfs } from "../archive/rootfs.ts";
import { commitContainer } from "../archive/commit.ts";
import type { RunConfig } from "../archive/commit-changes.ts";

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

export async function registerArchiveRoutes(router: Router, backend: Backend): Promise<void> {
  await removeStaleCallState(backend);
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

  router.post("/commit", async (ctx) => {
    const ref = ctx.query.get("container");
    if (!ref) throw badRequest("bad parameter: container is required");
    const record = containerOr404(backend, ref);
    const committed = await commitContainer(backend, {
      record,
      repo: ctx.query.get("repo") ?? "",
      tag: ctx.query.get("tag") ?? "",
      comment: ctx.query.get("comment") ?? "",
      author: ctx.query.get("author") ?? "",
      changes: ctx.query.getAll("changes").filter((c) => c.trim() !== ""),
      pause: queryBool(ctx.query, "pause", true),
      config: await commitConfig(ctx),
    });
    backend.events.publish("container", "commit", record.Id, containerEventAttributes(record, { comment: ctx.query.get("comment") ?? "", imageID: committed.id, imageRef: committed.name }));
    ctx.send(201, { Id: committed.id });
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

/** The optional config in a commit's body; the Go client sends `null` when it has none. */
async function commitConfig(ctx: RequestContext): Promise<RunConfig | undefined> {
  const text = (await ctx.body()).toString("utf8").trim();
  if (!text || text === "null") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badRequest(`invalid JSON in request body: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest("the commit config must be a JSON object");
  // Only what was set: the CLI's zero values must not wipe the image's settings.
  const set = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== null && v !== "" && v !== false && !(Array.isArray(v) && v.length === 0));
  return Object.fromEntries(set) as RunConfig;
}
