// Where the engine keeps a container's files: its log and generated /etc files under the
// root (they outlive a reboot, as Docker's do), its stdin FIFO under the state dir.
import { join } from "node:path";

export function containerDir(root: string, id: string): string {
  return join(root, "engine", "containers", id);
}

export function logPathOf(root: string, id: string): string {
  return join(containerDir(root, id), `${id}-json.log`);
}

export function stdinFifoOf(state: string, id: string): string {
  return join(state, "engine", "fifo", `${id}-stdin`);
}

/** The shim's state dir of a container's init (the tasks service's layout: <state>/shims/<namespace>/<id>). */
export function shimDirOf(state: string, namespace: string, id: string): string {
  return join(state, "shims", namespace, id);
}
