// Layer extractions under way, by the chain id each is for (its Prepare's
// containerd.io/snapshot.ref label): a second unpack of that chain id, in any namespace,
// waits for the first to commit it and then shares it (store.ts share()) instead of
// extracting the same bytes again. Claims live in this process only: one ends when its
// snapshot is committed or removed, and a restart ends them all (an extraction a crash
// left is extracted again, which is only slower).
import { setTimeout as delay } from "node:timers/promises";

export interface Claim {
  readonly target: string;
  readonly owner: string;
  readonly done: Promise<void>;
  readonly end: () => void;
}

const ownerOf = (namespace: string, key: string) => `${namespace}\0${key}`;

export class ExtractionClaims {
  private readonly byTarget = new Map<string, Claim>();
  private readonly byOwner = new Map<string, Claim>();

  /** The claim an extraction of `target` would wait on, if another holds it. */
  holder(target: string): Claim | undefined {
    return this.byTarget.get(target);
  }

  /** Claims `target` for the snapshot `key` of `namespace`; undefined when another holds it. */
  take(target: string, namespace: string, key: string): Claim | undefined {
    if (this.byTarget.has(target)) return undefined;
    const owner = ownerOf(namespace, key);
    let end = () => {};
    const done = new Promise<void>((resolve) => {
      end = resolve;
    });
    const claim: Claim = { target, owner, done, end };
    this.byTarget.set(target, claim);
    this.byOwner.set(owner, claim);
    return claim;
  }

  /** Ends `claim` (its snapshot was never made, or is gone or committed); its waiters look again. */
  end(claim: Claim | undefined): void {
    if (!claim) return;
    if (this.byTarget.get(claim.target) === claim) this.byTarget.delete(claim.target);
    if (this.byOwner.get(claim.owner) === claim) this.byOwner.delete(claim.owner);
    claim.end();
  }

  /** Ends the claim the snapshot `key` of `namespace` holds, if any. */
  release(namespace: string, key: string): void {
    this.end(this.byOwner.get(ownerOf(namespace, key)));
  }
}

/** Resolves when `claim` ends or after `ms`, whichever is first. */
export async function waitAtMost(claim: Claim, ms: number): Promise<void> {
  const timer = new AbortController();
  try {
    await Promise.race([claim.done, delay(ms, undefined, { signal: timer.signal }).catch(() => undefined)]);
  } finally {
    timer.abort();
  }
}
