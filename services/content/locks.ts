// A ref belongs to the one Write stream that opened it until that stream ends.
// In-process only: the ingests live in this process alone, and a restart ends
// every stream anyway.
import { unavailable } from "../../core/errors.ts";

export interface RefLock {
  readonly since: number;
  /** Set by Abort while the stream still holds the ref. */
  aborted: boolean;
  release(): void;
}

export class RefLocks {
  private readonly held = new Map<string, RefLock>();

  private static key(namespace: string, ref: string): string {
    return `${namespace}\0${ref}`;
  }

  /** Takes the ref or fails with UNAVAILABLE (clients retry with backoff). */
  acquire(namespace: string, ref: string): RefLock {
    const key = RefLocks.key(namespace, ref);
    const current = this.held.get(key);
    if (current) throw unavailable(`ref ${ref} locked since ${new Date(current.since).toISOString()}`);
    const lock: RefLock = {
      since: Date.now(),
      aborted: false,
      release: () => {
        if (this.held.get(key) === lock) this.held.delete(key);
      },
    };
    this.held.set(key, lock);
    return lock;
  }

  get(namespace: string, ref: string): RefLock | undefined {
    return this.held.get(RefLocks.key(namespace, ref));
  }
}
