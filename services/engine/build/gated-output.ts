// A stage's output, where a line may have to wait for a write: a step is shown as done
// (` ---> <id>`) only once its parent image is stored, so that a build killed then reruns
// at most that step. Waiting for the write before going on cost each metadata step a
// whole config+manifest write in turn (three in a row after the last RUN); held lines let
// the next steps run meanwhile, their lines queued behind the write in stream order.
export class GatedOutput<T> {
  private readonly write: (item: T) => void;
  /** Held lines, each segment released once its gate (and every earlier one) settled. */
  private readonly segments: { gate: Promise<unknown>; items: T[] }[] = [];
  private released: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;

  constructor(write: (item: T) => void) {
    this.write = write;
  }

  push(item: T): void {
    if (this.failure) return;
    const last = this.segments.at(-1);
    if (last) last.items.push(item);
    else this.write(item);
  }

  /** Items pushed from now on wait until `gate` resolves; if it rejects, they are dropped and `failed` holds its error. */
  gate(gate: Promise<unknown>): void {
    const segment = { gate, items: [] as T[] };
    this.segments.push(segment);
    this.released = this.released.then(async () => {
      try {
        await segment.gate;
      } catch (error) {
        this.failure ??= { error };
        this.segments.length = 0;
        return;
      }
      if (this.failure) return;
      this.segments.shift();
      for (const item of segment.items) this.write(item);
    });
  }

  /** The error of a gate that failed, once it did. */
  get failed(): { error: unknown } | undefined {
    return this.failure;
  }

  /** Settles when every held line is written (or dropped after a failed gate); rejects with that gate's error. */
  async idle(): Promise<void> {
    await this.released;
    if (this.failure) throw this.failure.error;
  }
}
