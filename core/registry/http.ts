// undici's Agent and request, without the rest of undici. Its index loads fetch,
// WebSocket, the caches, cookies and the mocks eagerly: ~55 ms more CPU (measured,
// `node -e "require('undici')"` against these two modules) at each start of a process
// that talks to a registry (jobs; content at its first blob fetch), for nothing the
// registry client uses.
import type { Dispatcher } from "undici";
import AgentClass from "undici/lib/dispatcher/agent.js";
import dispatchRequest from "undici/lib/api/api-request.js";

export const Agent = AgentClass;
export type Agent = InstanceType<typeof AgentClass>;
export type { Dispatcher };

export type RequestOptions = Omit<Dispatcher.RequestOptions, "origin" | "path" | "method"> & { method: Dispatcher.HttpMethod; dispatcher: Dispatcher };

/** undici's request(url, options) on the given dispatcher. */
export function request(url: URL, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = options;
  return dispatchRequest.call(dispatcher, { ...rest, origin: url.origin, path: `${url.pathname}${url.search}` });
}
