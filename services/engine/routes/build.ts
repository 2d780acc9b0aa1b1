// POST /build: the classic builder's API. The tar context is extracted into the build's
// own directory under the root, the Dockerfile parsed and checked (anything wrong with
// them is an HTTP error before the stream), then the build runs as a job (build/job.ts)
// whose steps stream as Docker's classic builder writes them; a failure after the 200 is
// an in-band errorDetail whose code the CLI exits with.
import { join } from "node:path";
import type { Backend } from "../backend.ts";
import { badRequest, type Router } from "../http.ts";
import { queryBool } from "../query.ts";
import { ContainerManager } from "../containers/lifecycle.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { planBuild, type BuildOptions } from "../build/builder.ts";
import { extractContext } from "../build/context.ts";
import { requestedPlatform } from "../build/platforms.ts";
import { buildNetworkMode } from "../build/run-network.ts";
import { releaseInFlight } from "../build/in-flight.ts";
import { buildJobId, hasBuildDirs, newBuildDir } from "../build/work-dir.ts";
import type { BuildJobs } from "../build/job.ts";
import { authFor, registryConfigs } from "../images/transfer-routes.ts";
import { startTrace } from "../build/trace.ts";
import { networkManager } from "../networks/index.ts";

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
  // BullMQ and its Redis connections load with the first build, or at start when a build
  // directory shows that a killed daemon left a build to undo.
  let jobs: Promise<BuildJobs> | undefined;
  const buildJobs = () =>
    (jobs ??= import("../build/job.ts")
      .then((m) => {
        // Closers run last registered first, and the jobs release their builds' RUN networks
        // as they close (job.ts): the network manager is made (and its closer registered)
        // before the jobs' closer, so it is still open for those releases.
        networkManager(backend);
        return m.BuildJobs.open(backend, manager, backend.options.redisUrl ?? process.env.BERTH_REDIS_URL);
      })
      .then((opened) => {
        backend.onClose(() => closeJobs(opened));
        return opened;
      })
      .catch((err: Error) => {
        jobs = undefined;
        throw err;
      }));
  let jobsClosed: Promise<void> | undefined;
  const closeJobs = (opened: BuildJobs) => (jobsClosed ??= opened.close());
  // For jobs still opening when the engine closes.
  backend.onClose(async () => {
    const opened = await jobs?.catch(() => undefined);
    if (opened) await closeJobs(opened);
  });
  if (hasBuildDirs(backend.options.root)) buildJobs().catch((err: Error) => backend.log.warn({ err: err.message }, "cannot undo interrupted builds"));
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
      platform: q.get("platform") ?? "",
      pull: queryBool(q, "pull"),
      networkMode: buildNetworkMode(q.get("networkmode")),
    };
    const registryCredentials = registryConfigs(ctx.req.headers["x-registry-config"]);
    requestedPlatform(options.platform);
    const queue = await buildJobs();
    const { id, dir } = newBuildDir(backend.options.root);
    const trace = startTrace(dir);
    const removeDir = () => releaseInFlight(backend, manager, { jobId: buildJobId(id), inFlight: { containers: [], snapshots: [], leases: [] }, dir, byLabel: false });
    let contextDir: string;
    try {
      contextDir = await extractContext(ctx.req, options.dockerfile, join(dir, "context"));
      trace.mark("context");
      planBuild(contextDir, options);
      trace.mark("plan");
    } catch (err) {
      trace.end();
      await removeDir();
      throw err;
    }
    const stream = ctx.jsonStream();
    const gone = new AbortController();
    ctx.res.once("close", () => {
      if (!ctx.res.writableFinished) gone.abort();
    });
    try {
      const outcome = await queue.run(id, { options, contextDir, dir }, {
        stream: (text) => stream.write({ stream: text }),
        aux: (value) => stream.write({ aux: value }),
        progress: (message) => stream.write(message),
        closed: () => stream.closed,
      }, gone.signal, (name) => authFor(registryCredentials, name));
      if (!outcome.ok) stream.write({ errorDetail: { code: outcome.code, message: outcome.message }, error: outcome.message });
    } catch (err) {
      // The job could not be added (Redis unreachable): nothing ran, only the directory is left.
      await removeDir().catch(() => undefined);
      trace.end();
      stream.fail(err);
      return;
    }
    stream.end();
    trace.mark("end");
    trace.end();
  });
}
