// How a kept process's warm-up is run (core/registry/warm-up.ts says why there is one):
// in the background after it listens, logged, and harmless when it fails.
import type { Logger } from "./log.ts";

/** Runs a process's warm-up and logs how it went: a failed one only leaves the first pull cold. */
export async function warmUp(log: Logger, run: () => Promise<void>): Promise<void> {
  const started = performance.now();
  try {
    await run();
    log.info({ ms: Math.round(performance.now() - started) }, "pull path warmed up");
  } catch (err) {
    log.warn({ err: (err as Error).message }, "pull path warm-up failed: the first pull runs it cold");
  }
}
