// The Engine API's volumes endpoints: create, list, inspect, remove, prune (local named volumes).
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerVolumeRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
