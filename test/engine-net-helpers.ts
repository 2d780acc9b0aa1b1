// What the networks and volumes tests share: raw Engine API calls over docker.sock (the
// body parsed as JSON), polling for a condition, and removing every container in `after`.
import { request } from "node:http";
import type { Daemon } from "./harness.ts";
import { eventually } from "./fixtures/poll.ts";

export { removeEveryContainer } from "./engine-cleanup.ts";

export interface ApiReply {
  status: number;
  body: string;
  /** The body parsed as JSON (undefined when empty or not JSON). */
  json: any;
}

export function api(d: Daemon, method: string, path: string, body?: unknown): Promise<ApiReply> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const headers: Record<string, string> = text === undefined ? {} : { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) };
    const req = request({ socketPath: d.dockerSocket, method, path, headers }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => {
        let json: unknown;
        try {
          json = data ? JSON.parse(data) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, body: data, json });
      });
    });
    req.on("error", reject);
    req.end(text);
  });
}

/** Polls `probe` until it returns something other than undefined (30 s by default). */
export const waitFor = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> => eventually(what, probe, timeoutMs);
