// The Engine API's ground rules, driven by the real docker CLI and raw HTTP on docker.sock:
// version negotiation, Docker's error body, unknown routes and versions, oversized input.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { existsSync, statSync } from "node:fs";
import { ok, startDaemon, type Daemon } from "./harness.ts";

let d: Daemon;
before(async () => {
  d = await startDaemon();
});
after(async () => {
  await d?.destroy();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(method: string, path: string, options: { body?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.dockerSocket, method, path, headers: options.headers }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

test("docker.sock is root's and its group's only", () => {
  assert.ok(existsSync(d.dockerSocket));
  assert.equal(statSync(d.dockerSocket).mode & 0o777, 0o660);
});

test("docker version negotiates API 1.41 and shows the engine", () => {
  const r = ok(d.docker(["version"]), "docker version");
  assert.match(r.stdout, /API version:\s+1\.41 \(downgraded from/);
  assert.match(r.stdout, /Server: Berth Engine/);
  assert.match(r.stdout, /API version:\s+1\.41 \(minimum version 1\.24\)/);
});

test("ping answers HEAD and GET with the API version header", async () => {
  const head = await http("HEAD", "/_ping");
  assert.equal(head.status, 200);
  assert.equal(head.headers["api-version"], "1.41");
  assert.equal(head.headers["ostype"], "linux");
  const get = await http("GET", "/_ping");
  assert.equal(get.body, "OK");
});

test("versioned and unversioned paths are served; an unknown route is Docker's 404", async () => {
  assert.equal((await http("GET", "/v1.41/version")).status, 200);
  assert.equal((await http("GET", "/v1.24/version")).status, 200);
  assert.equal(JSON.parse((await http("GET", "/version")).body).ApiVersion, "1.41");
  const missing = await http("GET", "/v1.41/no/such/route");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(missing.body), { message: "page not found" });
});

test("an unsupported API version is a 400 that says which versions are served", async () => {
  const tooNew = await http("GET", "/v1.99/version");
  assert.equal(tooNew.status, 400);
  assert.equal(JSON.parse(tooNew.body).message, "client version 1.99 is too new. Maximum supported API version is 1.41");
  const tooOld = await http("GET", "/v1.11/version");
  assert.equal(tooOld.status, 400);
  assert.match(JSON.parse(tooOld.body).message, /client version 1\.11 is too old\. Minimum supported API version is 1\.24/);
  const r = d.docker(["version"], undefined, { DOCKER_API_VERSION: "1.45" });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /client version 1\.45 is too new/);
});

test("a huge request header is refused with 431 and the engine keeps serving", async () => {
  const huge = await http("GET", "/version", { headers: { "X-Huge": "x".repeat(128 * 1024) } });
  assert.equal(huge.status, 431);
  assert.equal((await http("GET", "/version")).status, 200);
});

test("a request body over the limit is a 400 that names the limit, and nothing is created", async () => {
  const body = JSON.stringify({ Image: "busybox", Cmd: ["true"], Labels: { big: "x".repeat(9 * 1024 * 1024) } });
  const r = await http("POST", "/containers/create?name=too-big", { body, headers: { "Content-Type": "application/json" } });
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.body).message, /request body is larger than 8388608 bytes/);
  assert.equal((await http("GET", "/containers/too-big/json")).status, 404);
});

test("malformed JSON is a 400 naming the problem", async () => {
  const r = await http("POST", "/containers/create", { body: "{not json", headers: { "Content-Type": "application/json" } });
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.body).message, /invalid JSON/);
});
