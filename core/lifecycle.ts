// The life of a Berth process, apart from what it serves: its logger and telemetry,
// a clean stop on SIGTERM/SIGINT, and exit when berthd (the parent holding our stdin
// pipe) is gone. A gRPC service (core/grpc-server.ts) and berthd's own HTTP and gRPC
// servers share it.
import { createLogger, type Logger } from "./log.ts";
import { parseServicePaths, type Paths } from "./config.ts";
import { initTelemetry, stopTelemetry } from "./telemetry.ts";
import { trimHeapWhenIdle } from "./heap-trim.ts";

export interface ProcessContext extends Paths {
  name: string;
  log: Logger;
}

export interface ProcessHandle {
  /** Called once on stop, before the process exits. */
  close?(): Promise<void> | void;
}

/**
 * Runs a process: `main` sets it up; `stop(why)` (also what signals and the parent's
 * going away call) closes it and exits. Returns the stop function.
 */
export async function runProcess(
  name: string,
  main: (ctx: ProcessContext, stop: (why: string) => Promise<void>) => Promise<ProcessHandle | void> | ProcessHandle | void,
): Promise<(why: string) => Promise<void>> {
  const paths = parseServicePaths();
  const log = createLogger(name);
  await initTelemetry(`berth-${name}`);
  let handle: ProcessHandle = {};
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, "stopping");
    await handle.close?.();
    await stopTelemetry();
    process.exit(0);
  };
  handle = (await main({ ...paths, name, log }, stop)) ?? {};
  trimHeapWhenIdle(log);
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // berthd holds our stdin open; EOF means the supervisor is gone, so we go too
  // rather than linger as an orphan holding the store.
  if (process.env.BERTH_SUPERVISED === "1") {
    process.stdin.on("end", () => void stop("supervisor exited"));
    process.stdin.on("error", () => void stop("supervisor exited"));
    process.stdin.resume();
  }
  return stop;
}
