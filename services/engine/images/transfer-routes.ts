import type { Backend } from "../backend.ts";
import type { Router } from "../http.ts";
export function registerTransferRoutes(router: Router, backend: Backend): void {
  void router;
  void backend;
}
