// A daemon killed in the middle of builds leaves their jobs active in Redis, with what each
// had in flight in its progress, and their directories under <root>/engine/builds. At the
// next start, before the worker takes any job, each such job's leftovers are removed and
// the job is failed; then every build directory no queued job owns goes (one made just
// before a kill, before its job was added). A queued job is left to the worker, which
// fails it the same way since no client waits for it (job.ts). The completed steps are
// images already, so the same build run again finds them in the cache.
import type { Queue } from "bullmq";
import type { Backend } from "../backend.ts";
import type { ContainerManager } from "../containers/lifecycle.ts";
import { emptyProgress, releaseInFlight, removeBuildDir, type BuildProgress, type Leftovers } from "./in-flight.ts";
import type { BuildJobData } from "./job.ts";
import { releaseRunNetworks } from "./run-network.ts";
import { buildJobId, buildNetworksDir, listBuildDirs, listTrash } from "./work-dir.ts";

export const interruptedReason = "build interrupted: daemon restarted";

/** The job's recorded progress, or an empty one (a job killed before its first record). */
export function progressOf(value: unknown): BuildProgress {
  const p = value as Partial<BuildProgress> | undefined;
  if (!p || typeof p !== "object" || !p.inFlight) return emptyProgress();
  return { step: p.step ?? "", inFlight: { containers: p.inFlight.containers ?? [], snapshots: p.inFlight.snapshots ?? [], leases: p.inFlight.leases ?? [] } };
}

/** Removes a build's leftovers; what cannot be removed is logged (builds must not stop working for it). */
async function release(backend: Backend, manager: ContainerManager, leftovers: Leftovers): Promise<void> {
  try {
    await releaseInFlight(backend, manager, leftovers);
  } catch (err) {
    backend.log.error({ job: leftovers.jobId, err: (err as Error).message }, "cannot remove what an interrupted build left");
  }
}

export async function recoverBuilds(backend: Backend, manager: ContainerManager, queue: Queue<BuildJobData>): Promise<void> {
  // No build runs yet: every RUN network left is a killed daemon's.
  try {
    await releaseRunNetworks(backend, buildNetworksDir(backend.options.root));
  } catch (err) {
    backend.log.error({ err: (err as Error).message }, "cannot release the networks of interrupted builds' RUN steps");
  }
  for (const job of await queue.getJobs(["active"])) {
    const progress = progressOf(job.progress);
    await release(backend, manager, { jobId: job.id!, inFlight: progress.inFlight, dir: job.data.dir, byLabel: true });
    // No worker holds it (the one that did died with the daemon): "0" finishes it without its lock.
    await job.moveToFailed(new Error(progress.step ? `${interruptedReason} (${progress.step.replace(/ : /, ": ")})` : interruptedReason), "0", false);
    backend.log.warn({ job: job.id, step: progress.step, inFlight: progress.inFlight }, "removed what an interrupted build left; the build failed");
  }
  const queued = new Set((await queue.getJobs(["waiting", "prioritized", "delayed"])).map((job) => job.data.dir));
  for (const [id, dir] of listBuildDirs(backend.options.root)) {
    if (queued.has(dir)) continue;
    await release(backend, manager, { jobId: buildJobId(id), inFlight: emptyProgress().inFlight, dir, byLabel: true });
  }
  // Finished builds' directories whose removal a kill cut short (nothing is mounted under them).
  for (const dir of listTrash(backend.options.root)) {
    try {
      removeBuildDir(dir);
    } catch (err) {
      backend.log.error({ dir, err: (err as Error).message }, "cannot remove a finished build's directory");
    }
  }
}
