// The Engine API's images endpoints: list, inspect, history, pull, push, tag, remove, load, save, prune.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerImageRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
