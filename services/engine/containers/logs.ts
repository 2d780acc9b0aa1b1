// GET /containers/{id}/logs: the json log (rotated files first), stream selection,
// tail, since/until, timestamps, and follow until the container's run ends. Frames as
// attach sends them (raw for a TTY container).
import type { ServerResponse } from "node:http";
import { badRequest, frame, type RequestContext } from "../http.ts";
import { queryBool } from "../query.ts";
import { versionAtLeast } from "../version.ts";
import type { ContainerManager } from "./lifecycle.ts";
import { follow, LogCursor, logSize, rotatedFiles, type LogEntry } from "./logfile.ts";

/** Unix seconds as "1700000000", "1700000000.5" or "1700000000.000000001"; 0/absent: no bound. */
function parseTime(text: string | null, name: string): number | undefined {
  if (text === null || text === "" || text === "0") return undefined;
  if (!/^\d+(\.\d{1,9})?$/.test(text)) throw badRequest(`invalid value for ${name}: ${JSON.stringify(text)}: expected Unix seconds`);
  return Number(text) * 1000;
}

function parseTail(text: string | null): number {
  if (text === null || text === "" || text === "all") return -1;
  if (!/^-?\d+$/.test(text)) throw badRequest(`invalid value for tail: ${JSON.stringify(text)}`);
  return Number(text);
}

async function write(res: ServerResponse, data: Buffer): Promise<void> {
  if (res.write(data)) return;
  await new Promise<void>((resolve) => {
    res.once("drain", resolve);
    res.once("close", resolve);
  });
}

export async function logs(ctx: RequestContext, manager: ContainerManager): Promise<void> {
  const record = manager.get(ctx.params.id!);
  const q = ctx.query;
  const stdout = queryBool(q, "stdout");
  const stderr = queryBool(q, "stderr");
  if (!stdout && !stderr) throw badRequest("Bad parameters: you must choose at least one stream");
  const sinceMs = parseTime(q.get("since"), "since");
  const untilMs = parseTime(q.get("until"), "until");
  const tail = parseTail(q.get("tail"));
  const timestamps = queryBool(q, "timestamps");
  const followOn = queryBool(q, "follow") && record.State.Running;
  const tty = Boolean(record.Config.Tty);
  const rt = manager.runtime(record.Id);
  const end = rt.nextEnd();
  const gone = new AbortController();
  ctx.res.on("close", () => gone.abort());

  const wanted = (e: LogEntry) => {
    if (e.stream === "stderr" ? !stderr : !stdout) return false;
    const t = Date.parse(e.time);
    if (sinceMs !== undefined && t < sinceMs) return false;
    if (untilMs !== undefined && t > untilMs) return false;
    return true;
  };
  const render = (e: LogEntry) => {
    const payload = Buffer.from(timestamps ? `${e.time} ${e.log}` : e.log, "utf8");
    return tty ? payload : frame(e.stream === "stderr" ? 2 : 1, payload);
  };

  // As for attach: the multiplexed type is named from API 1.42 on; clients before it go by Config.Tty.
  const multiplexed = !tty && versionAtLeast(ctx.version, "1.42");
  ctx.res.writeHead(200, { "Content-Type": multiplexed ? "application/vnd.docker.multiplexed-stream" : "application/vnd.docker.raw-stream" });
  ctx.res.flushHeaders();
  try {
    // What is there now: older rotated files, then the current one up to its present end.
    const upTo = logSize(record.LogPath);
    const existing: LogEntry[] = [];
    const keep = (e: LogEntry) => {
      if (!wanted(e)) return;
      existing.push(e);
      if (tail >= 0 && existing.length > tail) existing.shift();
    };
    if (tail !== 0) {
      for (const file of await rotatedFiles(record.LogPath)) {
        const cursor = new LogCursor(file);
        try {
          for await (const e of cursor.read()) keep(e);
        } finally {
          await cursor.close();
        }
      }
    }
    const cursor = new LogCursor(record.LogPath);
    try {
      if (tail !== 0) for await (const e of cursor.read(upTo)) keep(e);
    } finally {
      await cursor.close();
    }
    for (const e of existing) {
      if (gone.signal.aborted) return;
      await write(ctx.res, render(e));
    }
    if (followOn && (untilMs === undefined || untilMs > Date.now())) {
      const live = new LogCursor(record.LogPath, upTo);
      for await (const e of follow(live, end.promise, gone.signal)) {
        if (untilMs !== undefined && Date.parse(e.time) > untilMs) break;
        if (wanted(e)) await write(ctx.res, render(e));
      }
    }
  } finally {
    end.cancel();
    ctx.res.end();
  }
}
