// berth.internal.v1.Processes as berthd serves it: a process that calls another one on
// its own socket asks here to have it started first (core/on-demand-client.ts).
import type { ProcessesServiceImplementation } from "../../core/gen/berth/internal/v1/processes.ts";
import { invalidArgument, unavailable } from "../../core/errors.ts";
import { processTable } from "../../core/routes.ts";

/** `ready(name)`: the supervisor's start-on-demand (undefined when the process is always on). */
export function processesService(ready: (name: string) => Promise<void> | undefined): ProcessesServiceImplementation {
  const names = new Set(processTable.map((spec) => spec.name));
  return {
    async ready(request) {
      if (!names.has(request.name)) {
        throw invalidArgument(`no process named ${JSON.stringify(request.name)} (the process table has ${[...names].join(", ")})`);
      }
      try {
        await ready(request.name);
      } catch (err) {
        throw unavailable(`process ${request.name} cannot start: ${(err as Error).message}`);
      }
      return {};
    },
  };
}
