// The Engine API's exec endpoints: exec create, start (hijacked), inspect, resize.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerExecRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
