// berth.internal.v1.Collector: services ask here for a collection after they deleted
// or unreferenced something. One run = the collect() transaction, then each file owner
// (content, snapshots) unlinks what no row refers to any more.
import { createHash } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import type { CollectorServiceImplementation } from "../../../core/gen/berth/internal/v1/gc.ts";
import { SweeperDefinition } from "../../../core/gen/berth/internal/v1/gc.ts";
import { serviceSocketPath } from "../../../core/config.ts";
import { createChannel, createClient } from "nice-grpc";
import type { Logger } from "../../../core/log.ts";
import type { Database } from "../../../core/metadata-db.ts";
import { collect, type CollectionResult } from "./collector.ts";
import { startProcess } from "../../../core/on-demand-client.ts";
import { CollectionScheduler } from "./scheduler.ts";

/** The processes that own files under the root, in the order they are swept. */
const fileOwners = ["content", "snapshots"] as const;
const sweepTimeoutMs = 60_000;

/**
 * BERTH_GC_CRASH_AT=<after-mark|after-commit>:<file> makes this process kill itself
 * once at that point of a collection (the file records that it did): the crash tests
 * (test/gc.test.ts) use it to prove that a collector dying mid-run loses nothing and
 * leaves nothing behind for good.
 */
function crashPoint(point: string): void {
  const [at, marker] = (process.env.BERTH_GC_CRASH_AT ?? "").split(":");
  if (at !== point || !marker || existsSync(marker)) return;
  writeFileSync(marker, point);
  process.kill(process.pid, "SIGKILL");
}

/** How long background collections spare new objects (see CollectOptions.spareCreatedSince). */
const backgroundGraceMs = 30_000;

export function collectionRun(db: Database, state: string, log: Logger): (sync: boolean) => Promise<CollectionResult> {
  return async (sync) => {
    const now = Date.now();
    const result = collect(db, {
      now,
      spareCreatedSince: sync ? Infinity : now - backgroundGraceMs,
      // Only a collection with something to delete is worth crashing in.
      afterMark: (doomed) => doomed > 0 && crashPoint("after-mark"),
    });
    if (result.blobs + result.snapshots + result.leases > 0) crashPoint("after-commit");
    const removedRows = { content: result.blobs, snapshots: result.snapshots };
    for (const owner of fileOwners) {
      // A channel per run: a shared one stays in backoff after the owner restarted,
      // and collections are rare.
      const channel = createChannel(`unix://${serviceSocketPath(state, owner)}`);
      try {
        // An owner that is not running (they start on demand) sweeps when it starts; it
        // is started now only if this run left files of its own to unlink.
        if (!existsSync(serviceSocketPath(state, owner))) {
          if (removedRows[owner] === 0) continue;
          await startProcess(state, owner);
        }
        await createClient(SweeperDefinition, channel).sweep({}, { signal: AbortSignal.timeout(sweepTimeoutMs) });
      } catch (err) {
        // It sweeps again when it starts, and at the next collection.
        log.warn({ err: (err as Error).message, owner }, "cannot sweep unreferenced files");
      } finally {
        channel.close();
      }
    }
    return result;
  };
}

export function startCollector(
  db: Database,
  root: string,
  state: string,
  redisUrl: string | undefined,
  log: Logger,
): { scheduler: CollectionScheduler; service: CollectorServiceImplementation } {
  const prefix = `berth:${createHash("sha256").update(root).digest("hex").slice(0, 16)}`;
  const scheduler = new CollectionScheduler({ redisUrl, prefix }, collectionRun(db, state, log), log);
  const service: CollectorServiceImplementation = {
    async schedule(request) {
      if (request.wait) await scheduler.collectNow();
      else scheduler.schedule();
      return {};
    },
  };
  return { scheduler, service };
}
