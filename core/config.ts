// Where things live. berthd passes --root and --state to every service it starts;
// each service keeps its store under <root>/<name> and listens on
// <state>/services/<name>.sock.
import { join } from "node:path";
import { parseArgs } from "node:util";

export const defaultRoot = "/var/lib/berth";
export const defaultState = "/run/berth";

export interface Paths {
  root: string;
  state: string;
  /** The public gRPC socket, given (by berthd) to the gateway only. */
  address?: string;
}

export function serviceSocketPath(state: string, service: string): string {
  return join(state, "services", `${service}.sock`);
}

export function gatewaySocketPath(state: string): string {
  return join(state, "berth.sock");
}

/** The --root/--state flags every service process is started with (and the gateway's --address). */
export function parseServicePaths(argv: string[] = process.argv.slice(2)): Paths {
  const { values } = parseArgs({
    args: argv,
    options: { root: { type: "string" }, state: { type: "string" }, address: { type: "string" } },
    strict: false,
  });
  return {
    root: typeof values.root === "string" ? values.root : defaultRoot,
    state: typeof values.state === "string" ? values.state : defaultState,
    address: typeof values.address === "string" ? values.address : undefined,
  };
}
