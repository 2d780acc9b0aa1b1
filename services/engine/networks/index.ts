// The engine's one NetworkManager, made on first use and closed with the engine (kept
// here rather than on Backend so the network code stays in its own files). The containers
// code reaches networking through it: planContainer at create, setUp before the task
// starts, release at removal, settingsOf for inspect.
import { join } from "node:path";
import type { Backend } from "../backend.ts";
import { NetworkManager } from "./manager.ts";

// Keyed by the engine's options, not the Backend: a build runs on a Backend derived from the
// engine's (build/in-flight.ts), and a second manager would sweep the first one's bridges
// away as unused at its start.
const managers = new WeakMap<Backend["options"], NetworkManager>();

/** The firewall plugin's admin chain of this engine: BERTH_CNI_ADMIN_CHAIN, else BERTH-ADMIN. */
export const adminChain = () => process.env.BERTH_CNI_ADMIN_CHAIN || "BERTH-ADMIN";

export function networkManager(backend: Backend): NetworkManager {
  let manager = managers.get(backend.options);
  if (!manager) {
    const made = new NetworkManager({ root: backend.options.root, state: backend.options.state, log: backend.log, adminChain: adminChain() });
    managers.set(backend.options, made);
    backend.onClose(() => made.close());
    manager = made;
  }
  return manager;
}

/** Where a container's /etc/hosts is kept (the containers code writes it there first). */
export function hostsPathOf(root: string, id: string): string {
  return join(root, "engine", "containers", id, "hosts");
}
