// A RUN step's process, run with `runc run` by the engine itself rather than as a container
// of the engine's (a record, a containerd container, a task, a shim, runc create, start
// and delete as three processes, a json log followed). A RUN lives only as long as its
// step, and a build that dies is undone and run again from its cache, so what that
// machinery is for (outliving the engine, attach, restarts) buys a RUN nothing, and it
// cost about half of each RUN step. The isolation stays the same: the spec is the one a
// container with network "none" gets (own pid, mount, uts, ipc and network namespaces,
// loopback only, the same capabilities, masked paths and cgroup under the namespace).
//
// Everything a run makes lives in directories the build owns: the bundle (its rootfs mount
// point, config.json, the /etc files) under the build's directory and runc's state under
// `<build dir>/runc`, so a run that an engine killed mid-way left is found there at the
// next start (releaseRuns) and deleted with its cgroup and processes.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { mountAll, unmountAll } from "../../../core/mounts.ts";
import type { OciRuntimeSpec } from "../../../core/oci/spec.ts";
import { describeExit, runCollected, spawnChild, type SpawnedChild } from "../../../native/spawn.ts";
import { warmCgroupLock } from "./cgroup-warm.ts";

const runcBinary = () => process.env.BERTH_RUNC ?? "runc";

/** runc's state directory for a build's runs: inside the build's own directory. */
export const runcRootOf = (buildDir: string) => join(buildDir, "runc");

/** The id a RUN's process runs under (runc's id, its cgroup's name); the build prints its first 12 characters. */
export const newRunId = () => randomBytes(32).toString("hex");

export interface RunRequest {
  /** runc's --root (runcRootOf the build's directory). */
  runcRoot: string;
  /** The bundle directory to make (its parent exists); removed when the run ends. */
  bundle: string;
  id: string;
  /** The step's rootfs (its snapshot's mounts). */
  rootfs: readonly Mount[];
  /** The spec, made once the rootfs is mounted at `rootfs` (a user name is looked up in it). */
  spec(rootfs: string, bundle: string): OciRuntimeSpec;
  /** The process's stdout and stderr as they come, as text. */
  output(text: string): void;
  /** Aborting kills the process (the run then ends with 137). */
  signal?: AbortSignal;
  /** Called as each phase of the run ends (the build's trace, trace.ts). */
  mark?(phase: string): void;
}

/** runc itself failed (the process never ran): its message, as runc logged it. */
export class RunStartError extends Error {}

/**
 * Runs the process to its end and returns its exit code (128 + the signal for a killed
 * one). When it settles, nothing of the run is left: no runc state, cgroup or process,
 * no mount, no bundle.
 */
export async function runProcess(request: RunRequest): Promise<number> {
  if (request.signal?.aborted) throw new RunStartError("the build was cancelled before the RUN started");
  mkdirSync(request.bundle, { mode: 0o711 });
  const rootfs = join(request.bundle, "rootfs");
  let mounted = false;
  try {
    mkdirSync(rootfs);
    // Set first: a mount that fails half-way may have mounted some of it.
    mounted = true;
    await mountAll(request.rootfs, rootfs);
    try {
      writeFileSync(join(request.bundle, "config.json"), JSON.stringify({ ...request.spec(rootfs, request.bundle), root: { path: rootfs, readonly: false } }));
      request.mark?.("run bundle");
      const exitCode = await runcRun(request);
      request.mark?.("runc run");
      return exitCode;
    } finally {
      // runc run removes its container when the process ends; this is for a runc that was killed or failed half-way.
      await deleteRun(request.runcRoot, request.id);
    }
  } finally {
    if (mounted) await unmountAll(rootfs, { detachBusy: true });
    // Not reached when the unmount failed: a recursive delete through a mount would empty the snapshot.
    rmSync(request.bundle, { recursive: true, force: true });
  }
}

function runcRun(request: RunRequest): Promise<number> {
  const log = join(request.bundle, "runc.log");
  // posix_spawn (native/spawn.ts), not child_process: a fork copies the engine's page
  // tables, on the event loop, once per RUN (spawn() took 3-5 ms of a build's RUN here).
  // stdin is /dev/null as under Docker's builder; the process writes straight into the pipes.
  let child: SpawnedChild;
  const stopWarming = warmCgroupLock();
  try {
    child = spawnChild(runcBinary(), ["--root", request.runcRoot, "--log", log, "--log-format", "json", "run", "--bundle", request.bundle, request.id], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    stopWarming();
    return Promise.reject(new RunStartError(`cannot run runc: ${(err as Error).message}`));
  }
  child.exited.then(stopWarming, stopWarming);
  // runc's kill fails until the container exists: an abort keeps asking until runc ends.
  let killing: NodeJS.Timeout | undefined;
  const kill = () => {
    const once = () => void runCollected(runcBinary(), ["--root", request.runcRoot, "kill", request.id, "KILL"]).catch(() => undefined);
    once();
    killing ??= setInterval(once, 100);
  };
  if (request.signal?.aborted) kill();
  else request.signal?.addEventListener("abort", kill, { once: true });
  // Both pipes ended: the pid namespace ends with its init, so nothing else holds them open.
  const drained = child.outputs.slice(1, 3).map(
    (stream) =>
      new Promise<void>((resolve) => {
        const decoder = new StringDecoder("utf8");
        stream!.on("data", (chunk: Buffer) => {
          const text = decoder.write(chunk);
          if (text) request.output(text);
        });
        stream!.once("close", () => {
          const rest = decoder.end();
          if (rest) request.output(rest);
          resolve();
        });
        // A read error ends the output (the exit still decides the result).
        stream!.on("error", () => undefined);
      }),
  );
  return Promise.all([child.exited, ...drained])
    .finally(() => {
      request.signal?.removeEventListener("abort", kill);
      clearInterval(killing);
    })
    .then(([exit]) => {
      const failure = runcFailure(log);
      if (failure) throw new RunStartError(failure);
      if (exit.code !== null) return exit.code;
      throw new RunStartError(`runc ended by ${describeExit(exit)}`);
    });
}

/** runc's own error (it logs at level error only when it failed), or undefined. */
function runcFailure(log: string): string | undefined {
  let text = "";
  try {
    text = readFileSync(log, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === "error" || entry.level === "fatal") return entry.msg ?? line;
    } catch {
      // not one of runc's JSON lines
    }
  }
  return undefined;
}

/** Deletes run `id` (kills what is left of it, removes its cgroup and state) when runc still has it. */
async function deleteRun(runcRoot: string, id: string): Promise<void> {
  if (!existsSync(join(runcRoot, id))) return;
  const { exit, stderr } = await runCollected(runcBinary(), ["--root", runcRoot, "delete", "--force", id]);
  if (exit.code === 0 || /does not exist|not found/i.test(stderr)) return;
  throw new Error(`runc delete ${id}: ${stderr.trim() || describeExit(exit)}`);
}

/** Deletes every run a build left in `runcRoot` (an engine killed mid-RUN); returns their ids. */
export async function releaseRuns(runcRoot: string): Promise<string[]> {
  let ids: string[];
  try {
    ids = readdirSync(runcRoot);
  } catch {
    return [];
  }
  for (const id of ids) await deleteRun(runcRoot, id);
  return ids;
}
