// The real docker-compose 1.29 (Debian's; it speaks the Engine API through docker-py)
// against Berth: a two-service project with its own network, a named volume and a published
// port comes up, one service reaches the other by its service name, the port answers on
// the host, and `down -v` removes the containers, the network and the volume.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, run, type Daemon, type RunResult } from "./harness.ts";
import { api, removeEveryContainer, waitFor } from "./engine-net-helpers.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { freePort } from "./fixtures/host-network.ts";

const tag = randomBytes(3).toString("hex");
const project = `berth${tag}`;
const adminChain = `BT-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let work: string;
let port: number;

function compose(args: string[]): RunResult {
  return run("docker-compose", ["-p", project, "-f", join(work, "docker-compose.yml"), ...args], undefined, { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}` });
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-compose-"));
  port = await freePort();
  writeFileSync(
    join(work, "docker-compose.yml"),
    `version: "3.7"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && exec busybox httpd -f -p 80 -h /www"]
    ports: ["${port}:80"]
    volumes: ["data:/data"]
  client:
    image: busybox
    command: ["sh", "-c", "until busybox wget -q -O - http://web/; do sleep 0.2; done; exec sleep 300"]
volumes:
  data: {}
`,
  );
  d = await startEngineWithBusybox({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain } });
});

after(async () => {
  if (d) {
    compose(["down", "-v", "-t", "0"]);
    await removeEveryContainer(d);
  }
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("docker-compose up -d brings both services up on the project network, with the volume", async () => {
  ok(compose(["up", "-d"]), "compose up");
  const ps = ok(compose(["ps"])).stdout;
  assert.match(ps, new RegExp(`${project}_web_1 .* Up .*0\\.0\\.0\\.0:${port}->80/tcp`));
  assert.match(ps, new RegExp(`${project}_client_1 .* Up`));
  const network = (await api(d, "GET", `/networks/${project}_default`)).json;
  assert.equal(network.Labels["com.docker.compose.project"], project);
  assert.equal(Object.keys(network.Containers).length, 2);
  assert.equal((await api(d, "GET", `/volumes/${project}_data`)).status, 200);
});

test("one service reaches the other by its service name; the published port answers on the host", async () => {
  const logs = await waitFor("client to fetch from web by name", () => {
    const out = d.docker(["logs", `${project}_client_1`]).stdout;
    return out.includes("hello-compose") ? out : undefined;
  });
  assert.match(logs, /^hello-compose$/m);
  const body = await waitFor("the published port", async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`)).text();
    } catch {
      return undefined;
    }
  });
  assert.equal(body, "hello-compose\n");
});

test("docker-compose down -v removes the containers, the network and the volume; nothing is left on the host", async () => {
  const bridge = (await api(d, "GET", `/networks/${project}_default`)).json.Options["com.docker.network.bridge.name"] as string;
  ok(compose(["down", "-v", "-t", "1"]), "compose down");
  assert.equal(d.docker(["ps", "-aq"]).stdout, "");
  assert.equal((await api(d, "GET", `/networks/${project}_default`)).status, 404);
  assert.equal((await api(d, "GET", `/volumes/${project}_data`)).status, 404);
  assert.notEqual(spawnSync("ip", ["link", "show", bridge]).status, 0, "the project's bridge is gone");
  assert.deepEqual(readdirSync(join(d.state, "netns")), []);
  await waitFor("the admin chain to go", () => (execFileSync("iptables-save", [], { encoding: "utf8" }).includes(adminChain) ? undefined : true));
});
