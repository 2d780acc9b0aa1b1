// The Engine API's archive endpoints: archive (docker cp both ways), export, commit, stats.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerArchiveRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
