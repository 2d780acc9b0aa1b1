// GET /events: Docker's event stream. Headers go out at once; with since/until the kept
// events in that window are replayed first; without until the stream then stays live
// until the client goes away; with until it ends once that time has passed.
import type { Backend } from "../backend.ts";
import type { DockerEvent } from "../events.ts";
import { badRequest, type RequestContext } from "../http.ts";
import { parseFilters, type Filters } from "../query.ts";
import { timeFilterValue } from "../images/filters.ts";

const eventFilterNames = ["type", "event", "container", "image", "label", "daemon", "network", "volume", "plugin", "node", "service", "secret", "config", "scope"] as const;

/** since/until as nanoseconds: Unix seconds, `seconds.nanos`, an RFC 3339 time or a duration back from now. */
export function eventTime(value: string | null, name: string, now = Date.now()): bigint | undefined {
  if (value === null || value === "") return undefined;
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(value);
  if (m) return BigInt(m[1]!) * 1_000_000_000n + BigInt((m[2] ?? "").padEnd(9, "0") || "0");
  let seconds: number;
  try {
    seconds = timeFilterValue(value, now);
  } catch {
    throw badRequest(`invalid value for ${name}: ${JSON.stringify(value)} is not a timestamp`);
  }
  return BigInt(Math.floor(seconds * 1e9));
}

function matches(event: DockerEvent, filters: Filters): boolean {
  const one = (name: string, test: (value: string) => boolean) => {
    const values = filters.get(name);
    return !values || values.length === 0 || values.some(test);
  };
  const attrs = event.Actor.Attributes;
  const labels = filters.get("label");
  if (labels && labels.length > 0) {
    const ok = labels.every((l) => {
      const eq = l.indexOf("=");
      return eq < 0 ? attrs[l] !== undefined : attrs[l.slice(0, eq)] === l.slice(eq + 1);
    });
    if (!ok) return false;
  }
  return (
    one("type", (t) => t === event.Type) &&
    one("event", (e) => e === event.Action || event.Action.startsWith(`${e}:`)) &&
    one("scope", (s) => s === event.scope) &&
    one("container", (c) => event.Type === "container" && (event.Actor.ID === c || event.Actor.ID.startsWith(c) || attrs.name === c)) &&
    one(
      "image",
      (i) => (event.Type === "image" && (event.Actor.ID === i || attrs.name === i || event.Actor.ID.startsWith(`sha256:${i}`))) || attrs.image === i || event.from === i,
    ) &&
    one("network", (n) => event.Type === "network" && (event.Actor.ID === n || attrs.name === n)) &&
    one("volume", (v) => event.Type === "volume" && (event.Actor.ID === v || attrs.name === v)) &&
    one("daemon", (d) => event.Type === "daemon" && event.Actor.ID === d)
  );
}

export function streamEvents(backend: Backend, ctx: RequestContext): void {
  const now = Date.now();
  const since = eventTime(ctx.query.get("since"), "since", now);
  const until = eventTime(ctx.query.get("until"), "until", now);
  const filters = parseFilters(ctx.query, eventFilterNames);
  if (since !== undefined && until !== undefined && until < since) throw badRequest("`since` time is after `until` time");

  const stream = ctx.jsonStream();
  const inWindow = (event: DockerEvent) => (since === undefined || BigInt(event.timeNano) >= since) && (until === undefined || BigInt(event.timeNano) <= until);
  const send = (event: DockerEvent) => {
    if (inWindow(event) && matches(event, filters)) stream.write(event);
  };
  if (since !== undefined || until !== undefined) for (const event of backend.events.history()) send(event);

  const nowNanos = BigInt(Date.now()) * 1_000_000n;
  if (until !== undefined && until <= nowNanos) {
    stream.end();
    return;
  }
  const unsubscribe = backend.events.subscribe(send);
  let timer: NodeJS.Timeout | undefined;
  const finish = () => {
    unsubscribe();
    if (timer) clearTimeout(timer);
    stream.end();
  };
  if (until !== undefined) timer = setTimeout(finish, Number((until - nowNanos) / 1_000_000n) + 1);
  ctx.res.on("close", finish);
}
