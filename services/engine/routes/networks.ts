// The Engine API's networks endpoints: create, list, inspect, connect, disconnect, remove, prune (CNI bridge networks).
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerNetworkRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
