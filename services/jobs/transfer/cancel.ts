// Who still wants a pull, and what to stop when nobody does. A pull is cancelled when
// its last caller goes away (berthctl's ctrl-C, a cancelled gRPC stream) while it is
// still downloading: its layer jobs stop waiting and fail as canceled (the parent then
// fails and deletes the lease, as for any failed child), and a blob download stops only
// when no layer job of another pull still waits for it. All of it lives in the jobs
// process, which runs the calls and the workers both; after a restart nothing is
// cancelled until a caller attaches and goes away again.
import { BerthError } from "../../../core/errors.ts";

export class PullCancellations {
  /** Calls streaming each pull's progress. */
  private readonly watchers = new Map<string, number>();
  /** Per pull (the flow's parent id): aborted when it is cancelled. */
  private readonly pulls = new Map<string, AbortController>();
  /** Per blob job: the layer jobs waiting for it. */
  private readonly waiters = new Map<string, Set<string>>();
  /** Per running blob job: aborts its download. */
  private readonly downloads = new Map<string, AbortController>();
  /** Blob jobs nobody waits for any more that had not started when that happened. */
  private readonly unwanted = new Set<string>();
  private stopping = false;

  /** The process is stopping: its calls end, but their pulls must go on after a restart. */
  stop(): void {
    this.stopping = true;
  }

  attach(pullId: string): void {
    this.watchers.set(pullId, (this.watchers.get(pullId) ?? 0) + 1);
  }

  /** A call stopped watching; true when it was the last one, gone before the end, so the pull is cancelled. */
  detach(pullId: string, callerGone: boolean): boolean {
    const left = (this.watchers.get(pullId) ?? 1) - 1;
    if (left > 0) {
      this.watchers.set(pullId, left);
      return false;
    }
    this.watchers.delete(pullId);
    if (!callerGone || this.stopping) return false;
    this.controller(pullId).abort(new BerthError("canceled", `pull ${pullId} canceled: its caller went away`));
    return true;
  }

  isCancelled(pullId: string): boolean {
    return this.pulls.get(pullId)?.signal.aborted ?? false;
  }

  /** Aborted when the pull is cancelled (also when that happened before the call). */
  pullSignal(pullId: string): AbortSignal {
    return this.controller(pullId).signal;
  }

  /** The pull ended (its parent job ran): a later pull of the same id starts afresh. */
  forget(pullId: string): void {
    this.pulls.delete(pullId);
  }

  private controller(pullId: string): AbortController {
    let controller = this.pulls.get(pullId);
    if (!controller) {
      controller = new AbortController();
      this.pulls.set(pullId, controller);
    }
    return controller;
  }

  waitFor(blobJobId: string, layerJobId: string): void {
    const set = this.waiters.get(blobJobId) ?? new Set<string>();
    set.add(layerJobId);
    this.waiters.set(blobJobId, set);
    this.unwanted.delete(blobJobId);
  }

  /**
   * A layer job stopped waiting. When it was cancelled and was the blob's last waiter,
   * the download is aborted (or, not started yet, refused when it starts); true then,
   * so the caller can also take a blob job still queued off the queue.
   */
  stopWaiting(blobJobId: string, layerJobId: string, cancelled: boolean): boolean {
    const set = this.waiters.get(blobJobId);
    set?.delete(layerJobId);
    if (set && set.size > 0) return false;
    this.waiters.delete(blobJobId);
    if (!cancelled) return false;
    const running = this.downloads.get(blobJobId);
    if (running) running.abort(new BerthError("canceled", `download ${blobJobId} canceled: no pull wants it any more`));
    else this.unwanted.add(blobJobId);
    return true;
  }

  /** For a blob job starting: the signal that stops its download (already aborted if nobody wants it). */
  startDownload(blobJobId: string): AbortSignal {
    const controller = new AbortController();
    this.downloads.set(blobJobId, controller);
    if (this.unwanted.delete(blobJobId)) controller.abort(new BerthError("canceled", `download ${blobJobId} canceled: no pull wants it any more`));
    return controller.signal;
  }

  endDownload(blobJobId: string): void {
    this.downloads.delete(blobJobId);
  }
}
