// At most N transfers at once per registry host, whichever pulls they serve: a
// registry (and the link to it) serves a few parallel streams well and many badly.
export class HostLimit {
  private readonly limit: number;
  private readonly running = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  async run<T>(host: string, fn: () => Promise<T>): Promise<T> {
    if ((this.running.get(host) ?? 0) >= this.limit) {
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(host) ?? [];
        queue.push(resolve);
        this.waiting.set(host, queue);
      });
    } else {
      this.running.set(host, (this.running.get(host) ?? 0) + 1);
    }
    try {
      return await fn();
    } finally {
      // A waiter takes the slot over; the count stays.
      const next = this.waiting.get(host)?.shift();
      if (next) next();
      else this.running.set(host, this.running.get(host)! - 1);
    }
  }
}
