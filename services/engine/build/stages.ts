// Multi-stage scheduling: which stages the target needs (as BuildKit, an unused stage is
// never built), which earlier stages each one waits for (its FROM or a COPY/ADD --from
// names them), and an output that lets independent stages run at once while the stream
// still reads as the classic builder's: one stage after another, Step lines in order.
import { parseDockerfile, type Instruction } from "./dockerfile.ts";

export interface StageLike {
  name: string | undefined;
  steps: Instruction[];
}

export interface StagePlan {
  /** The stages to build, in Dockerfile order (the target last). */
  order: number[];
  /** For each stage to build, the earlier stages it uses. */
  deps: Map<number, number[]>;
}

/** The earlier stage `ref` names from stage `i` (by name, the latest before i; or by index for --from), if any. */
function earlierStage(stages: readonly StageLike[], i: number, ref: string, byIndex: boolean): number | undefined {
  const lower = ref.toLowerCase();
  for (let j = i - 1; j >= 0; j--) if (stages[j]!.name === lower) return j;
  if (byIndex && /^\d+$/.test(ref) && Number(ref) < i) return Number(ref);
  return undefined;
}

/**
 * `fromRef(i)` is stage i's FROM reference after ARG substitution; `triggerFroms(i)` the
 * `--from` values of the ONBUILD COPY/ADD triggers its base will run (the classic builder
 * builds every stage before the target, so a trigger may name any earlier one).
 */
export function planStages(stages: readonly StageLike[], target: number, fromRef: (i: number) => string, triggerFroms: (i: number) => readonly string[] = () => []): StagePlan {
  const deps = new Map<number, number[]>();
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    needed.add(i);
    const uses = new Set<number>();
    const base = earlierStage(stages, i, fromRef(i), false);
    if (base !== undefined) uses.add(base);
    for (const step of stages[i]!.steps) {
      const from = step.keyword === "COPY" || step.keyword === "ADD" ? step.flags.get("from") : undefined;
      const used = from === undefined ? undefined : earlierStage(stages, i, from, true);
      if (used !== undefined) uses.add(used);
    }
    for (const from of triggerFroms(i)) {
      const used = earlierStage(stages, i, from, true);
      if (used !== undefined) uses.add(used);
    }
    deps.set(i, [...uses].sort((a, b) => a - b));
    for (const j of uses) visit(j);
  };
  visit(target);
  return { order: [...needed].sort((a, b) => a - b), deps };
}

/**
 * Output of stages that run at once, written in stage order: the first unfinished stage
 * writes through, later ones are buffered until every stage before them has finished.
 */
export class OrderedOutput {
  private readonly buffers: string[][];
  private readonly done: boolean[];
  private live = 0;
  private readonly write: (text: string) => void;

  constructor(count: number, write: (text: string) => void) {
    this.buffers = Array.from({ length: count }, () => []);
    this.done = Array.from({ length: count }, () => false);
    this.write = write;
  }

  /** The writer of the k-th stage (in order). */
  writer(k: number): (text: string) => void {
    return (text) => {
      if (k === this.live) this.write(text);
      else this.buffers[k]!.push(text);
    };
  }

  /** The k-th stage is done: the stages after it get their turn, in order. */
  finish(k: number): void {
    this.done[k] = true;
    while (this.live < this.done.length && this.done[this.live]) {
      this.live++;
      if (this.live < this.done.length) this.drain(this.live);
    }
  }

  /** A build failed: what every stage has written so far, in stage order. */
  flushAll(): void {
    for (let k = this.live; k < this.buffers.length; k++) this.drain(k);
    this.live = this.buffers.length;
  }

  private drain(k: number): void {
    for (const text of this.buffers[k]!.splice(0)) this.write(text);
  }
}

/** The `--from` values of ONBUILD trigger texts that are COPY or ADD (texts that do not parse are left to fail when they run). */
export function triggerCopySources(triggers: readonly string[]): string[] {
  const sources: string[] = [];
  for (const trigger of triggers) {
    try {
      for (const instruction of parseDockerfile(trigger).instructions) {
        const from = instruction.keyword === "COPY" || instruction.keyword === "ADD" ? instruction.flags.get("from") : undefined;
        if (from !== undefined) sources.push(from);
      }
    } catch {
      // reported by the trigger's own step
    }
  }
  return sources;
}
