// POST /containers/{id}/wait: the headers go out at once (the CLI sends start only after
// it has them), the body once the condition holds: {"Error":null,"StatusCode":N}.
import { badRequest, type RequestContext } from "../http.ts";
import type { ContainerManager } from "./lifecycle.ts";
import type { RunEnd } from "./runtime.ts";

const conditions = ["not-running", "next-exit", "removed"] as const;

export async function wait(ctx: RequestContext, manager: ContainerManager): Promise<void> {
  const record = manager.get(ctx.params.id!);
  const condition = ctx.query.get("condition") || "not-running";
  if (!(conditions as readonly string[]).includes(condition)) throw badRequest(`invalid condition: "${condition}"`);
  const rt = manager.runtime(record.Id);
  // Subscribed before the headers go out, so an exit right after cannot be missed.
  const pending = condition === "removed" ? rt.removal() : rt.nextEnd();
  let result: Promise<RunEnd>;
  if (condition === "not-running" && !record.State.Running && !record.State.Restarting) {
    pending.cancel();
    result = Promise.resolve({ exitCode: record.State.ExitCode });
  } else {
    result = pending.promise;
  }
  ctx.res.writeHead(200, { "Content-Type": "application/json" });
  ctx.res.flushHeaders();
  const gone = new Promise<undefined>((resolve) => ctx.res.on("close", () => resolve(undefined)));
  const end = await Promise.race([result, gone]);
  pending.cancel();
  if (!end) return;
  ctx.res.end(`${JSON.stringify({ Error: null, StatusCode: end.exitCode })}\n`);
}
