// OOM kills in a container, as Docker reports them: State.OOMKilled and an `oom` event
// ahead of `die`. The shim of the container's init counts the kernel's OOM kills in the
// container's memory cgroup and records them in its state dir (`oom`, shim/README.md);
// the tasks service turns each new count into containerd's /tasks/oom. The engine follows
// those events for a container that keeps running after a kill (a child was the victim),
// and reads the record itself when the run ends, so a kill that ended the run is never
// missed, whichever process restarted meanwhile.
import { readShimOom } from "../../../shim/client.ts";
import { errorMessage } from "../../../core/grpc-client.ts";
import { TaskOOM } from "../../../core/gen/containerd/events/task.ts";
import type { Backend } from "../backend.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the shim of this state dir recorded an OOM kill during its run (read before the task's delete removes the dir). */
export function oomKilledIn(shimDir: string): boolean {
  try {
    return readShimOom(shimDir) !== undefined;
  } catch {
    return false;
  }
}

/**
 * Calls `onOom` with the container id of each /tasks/oom of the engine's namespace, until
 * `signal` aborts; the subscription is made again when it breaks (the service restarted).
 */
export function followOomEvents(backend: Backend, signal: AbortSignal, onOom: (containerId: string) => void): void {
  void (async () => {
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const filter = `topic=="/tasks/oom",namespace=="${backend.namespace}"`;
        for await (const envelope of backend.containerdEvents.subscribe({ filters: [filter] }, backend.call(undefined, signal))) {
          attempt = 0;
          if (!envelope.event || envelope.namespace !== backend.namespace) continue;
          onOom(TaskOOM.decode(envelope.event.value).containerId);
        }
      } catch (err) {
        if (signal.aborted) return;
        backend.log.debug({ err: errorMessage(err) }, "following oom events failed; subscribing again");
      }
      await sleep(Math.min(5000, 100 * 2 ** attempt));
    }
  })();
}
