// The Engine API's info endpoints: info, events, system df, auth.
import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";

export function registerInfoRoutes(router: Router, backend: Backend): Promise<void> | void {
  void router;
  void backend;
}
