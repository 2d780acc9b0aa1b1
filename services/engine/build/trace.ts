// A build's phases timed, for finding where its time goes (bench/build-phases.ts reads
// it): with BERTH_BUILD_TRACE=<file>, each build appends one JSON line to that file, its
// marks in order, each the ms since the previous one. Off (no clock read, nothing kept)
// unless the variable is set when the engine starts.
import { appendFileSync } from "node:fs";

const traceFile = process.env.BERTH_BUILD_TRACE;

export interface BuildTrace {
  /** Records that `phase` ended now. */
  mark(phase: string): void;
  /** Appends the line; later marks are dropped. */
  end(): void;
}

const off: BuildTrace = { mark: () => {}, end: () => {} };

const byDir = new Map<string, BuildTrace>();

/** A trace of the build whose directory is `dir`, found again by traceOf(dir) (the job's side of the build). */
export function startTrace(dir: string): BuildTrace {
  if (!traceFile) return off;
  let last = performance.now();
  const marks: [string, number][] = [];
  let ended = false;
  const trace: BuildTrace = {
    mark(phase) {
      if (ended) return;
      const now = performance.now();
      marks.push([phase, Math.round((now - last) * 10) / 10]);
      last = now;
    },
    end() {
      if (ended) return;
      ended = true;
      byDir.delete(dir);
      try {
        appendFileSync(traceFile, `${JSON.stringify(marks)}\n`);
      } catch {
        // a measuring aid: a trace that cannot be written is not the build's failure
      }
    },
  };
  byDir.set(dir, trace);
  return trace;
}

export function traceOf(dir: string): BuildTrace {
  return byDir.get(dir) ?? off;
}
