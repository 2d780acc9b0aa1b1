// The Engine API's containers endpoints: create, start, stop, kill, restart, wait, pause, unpause, rename, remove, list, inspect, top, prune, resize, attach, logs.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerContainerRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
