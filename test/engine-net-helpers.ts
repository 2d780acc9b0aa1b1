// What the networks and volumes tests share: raw Engine API calls over docker.sock,
// polling for a condition, and removing every container in `after`.
import { request } from "node:http";
import type { Daemon } from "./harness.ts";
import { sleep } from "./harness.ts";

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

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Every container of the engine, gone: through docker, then ctr for anything left. */
export async function removeEveryContainer(daemon: Daemon): Promise<void> {
  const ids = daemon.docker(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean);
  if (ids.length > 0) daemon.docker(["rm", "-f", ...ids]);
  for (const id of daemon.ctr(["tasks", "ls", "-q"], undefined, "moby").stdout.split("\n").filter(Boolean)) {
    daemon.ctr(["tasks", "kill", "-s", "SIGKILL", id], undefined, "moby");
    for (let i = 0; i < 100 && daemon.ctr(["tasks", "delete", id], undefined, "moby").code !== 0; i++) await sleep(50);
  }
  for (const id of daemon.ctr(["containers", "ls", "-q"], undefined, "moby").stdout.split("\n").filter(Boolean)) daemon.ctr(["containers", "rm", id], undefined, "moby");
}
