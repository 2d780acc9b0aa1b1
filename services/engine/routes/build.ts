// POST /build: the classic builder's API. The tar context is extracted, the Dockerfile
// parsed and checked (anything wrong with them is an HTTP error before the stream), then
// the steps stream as Docker's classic builder writes them; a failure after the 200 is an
// in-band errorDetail whose code the CLI exits with.
import { rm } from "node:fs/promises";
import type { Backend } from "../backend.ts";
import { badRequest, type Router } from "../http.ts";
import { queryBool } from "../query.ts";
import { ContainerManager } from "../containers/lifecycle.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { Build, failureOf, planBuild, type BuildOptions } from "../build/builder.ts";
import { extractContext } from "../build/context.ts";

function jsonMap(text: string | null, what: string): Record<string, string | null> {
  if (!text) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badRequest(`invalid ${what}: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest(`invalid ${what}: a JSON object is expected`);
  return value as Record<string, string | null>;
}

export function registerBuildRoutes(router: Router, backend: Backend): void {
  const manager = new ContainerManager(backend);
  router.post("/build", async (ctx) => {
    const q = ctx.query;
    const tags = q.getAll("t").filter(Boolean);
    for (const tag of tags) {
      try {
        if (normalizeDockerRef(tag).includes("@")) throw new ReferenceError(`a build cannot be tagged with a digest: ${tag}`);
      } catch (err) {
        if (err instanceof ReferenceError) throw badRequest(`invalid reference format: ${err.message}`);
        throw err;
      }
    }
    const remote = q.get("remote");
    if (remote) throw badRequest(`remote build contexts are not supported: Berth builds have no network access (${remote})`);
    const options: BuildOptions = {
      dockerfile: q.get("dockerfile") || "Dockerfile",
      tags,
      buildArgs: jsonMap(q.get("buildargs"), "buildargs"),
      noCache: queryBool(q, "nocache"),
      labels: jsonMap(q.get("labels"), "labels") as Record<string, string>,
      target: q.get("target") ?? "",
      quiet: queryBool(q, "q"),
    };
    const contextDir = await extractContext(ctx.req, options.dockerfile);
    try {
      planBuild(contextDir, options);
      const stream = ctx.jsonStream();
      const build = new Build(backend, manager, contextDir, options, {
        stream: (text) => stream.write({ stream: text }),
        aux: (value) => stream.write({ aux: value }),
        closed: () => stream.closed,
      });
      try {
        await build.run();
      } catch (err) {
        const { code, message } = failureOf(err);
        stream.write({ errorDetail: { code, message }, error: message });
      }
      stream.end();
    } finally {
      // Off the event loop: removing a large context synchronously held up the next request by tens of ms.
      await rm(contextDir, { recursive: true, force: true });
    }
  });
}
