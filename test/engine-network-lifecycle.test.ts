// Networked containers over time: after kill -9 of berthd and a restart a running
// container keeps its address and published port; many create/remove cycles leave no
// veth, namespace, rule, lease or cached result behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon } from "./harness.ts";
import { api, removeEveryContainer, waitFor } from "./engine-net-helpers.ts";
import { isRunning } from "../core/process.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { freePort, freeSubnetPrefixes, subnetRanges } from "./fixtures/host-network.ts";

const tag = randomBytes(3).toString("hex");
const adminChain = `BT-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let work: string;
let prefix: string;
let bridge: string;

const webScript = "mkdir -p /www && echo alive > /www/index.html && exec busybox httpd -f -p 80 -h /www";

const fetchText = (port: number) =>
  waitFor(`port ${port} to answer`, async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`)).text();
    } catch {
      return undefined;
    }
  });

before(async () => {
  [prefix] = freeSubnetPrefixes(1, subnetRanges.networkLifecycle) as [string];
  work = mkdtempSync(join(tmpdir(), "berth-engine-netlife-"));
  d = await startEngineWithBusybox({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain, BERTH_NETWORK_LINGER_MS: "0" } });
  ok(d.docker(["network", "create", "--subnet", `${prefix}.0/24`, "life"]));
  bridge = (await api(d, "GET", "/networks/life")).json.Options["com.docker.network.bridge.name"];
});

after(async () => {
  if (d) {
    await removeEveryContainer(d);
    d.docker(["network", "rm", "life"]);
  }
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** What a networked container could leave on the host, for this test's network. */
function leftovers(): string[] {
  const found: string[] = [];
  const netns = join(d.state, "netns");
  if (existsSync(netns) && readdirSync(netns).length > 0) found.push(`netns: ${readdirSync(netns).join(",")}`);
  const results = join(d.state, "cni", "results");
  if (existsSync(results) && readdirSync(results).length > 0) found.push(`cached results: ${readdirSync(results).join(",")}`);
  const ipam = join(d.state, "cni", "ipam");
  const leases = existsSync(ipam) ? readdirSync(ipam, { recursive: true }).map(String).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  if (leases.length > 0) found.push(`leases: ${leases.join(",")}`);
  // (other tests may run beside this one: only what names this network counts)
  const rules = execFileSync("iptables-save", [], { encoding: "utf8" }).split("\n").filter((l) => l.includes(`${prefix}.`));
  if (rules.length > 0) found.push(`rules: ${rules.join(" | ")}`);
  const members = spawnSync("ip", ["-o", "link", "show", "master", bridge], { encoding: "utf8" });
  if (members.status === 0) found.push(`bridge ${bridge} still there: ${members.stdout}`);
  return found;
}

test("after kill -9 of berthd and a restart a running container keeps its address and its published port", async () => {
  const port = await freePort();
  const id = ok(d.docker(["run", "-d", "--name", "survivor", "--network", "life", "-p", `${port}:80`, "busybox", "sh", "-c", webScript])).stdout.trim();
  assert.equal(await fetchText(port), "alive\n");
  const address = (await api(d, "GET", `/containers/${id}/json`)).json.NetworkSettings.Networks.life.IPAddress as string;
  await d.kill9();
  assert.equal(await fetchText(port), "alive\n", "the port answers while no daemon runs");
  await d.start();
  const after = (await api(d, "GET", `/containers/${id}/json`)).json;
  assert.equal(after.State.Running, true);
  assert.equal(after.NetworkSettings.Networks.life.IPAddress, address);
  assert.equal(ok(d.docker(["port", "survivor"])).stdout.trim(), `80/tcp -> 0.0.0.0:${port}`);
  // a peer started after the restart still finds it by name
  assert.equal(ok(d.docker(["run", "--rm", "--network", "life", "busybox", "busybox", "wget", "-q", "-O", "-", "http://survivor/"])).stdout, "alive\n");
  ok(d.docker(["rm", "-f", "survivor"]));
  assert.deepEqual(leftovers(), []);
});

test("a container that stops gives its address, port and namespace back; start attaches it again", async () => {
  const port = await freePort();
  const id = ok(d.docker(["run", "-d", "--name", "brief", "--network", "life", "-p", `${port}:80`, "busybox", "sh", "-c", webScript])).stdout.trim();
  assert.equal(await fetchText(port), "alive\n");
  ok(d.docker(["stop", "-t", "1", "brief"]));
  const stopped = (await api(d, "GET", `/containers/${id}/json`)).json;
  assert.equal(stopped.NetworkSettings.Networks.life.IPAddress, "");
  assert.deepEqual(leftovers(), []);
  ok(d.docker(["start", "brief"]));
  assert.equal(await fetchText(port), "alive\n");
  assert.match((await api(d, "GET", `/containers/${id}/json`)).json.NetworkSettings.Networks.life.IPAddress, new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.`));
  ok(d.docker(["rm", "-f", "brief"]));
  assert.deepEqual(leftovers(), []);
});

test("a container that ended while no daemon ran has its network released at the next start", async () => {
  const flag = join(work, "flag");
  mkdirSync(flag, { recursive: true });
  const id = ok(d.docker(["run", "-d", "--network", "life", "-v", `${flag}:/flag`, "busybox", "sh", "-c", "while [ ! -e /flag/stop ]; do sleep 0.1; done"])).stdout.trim();
  const pid = (await api(d, "GET", `/containers/${id}/json`)).json.State.Pid as number;
  assert.ok(pid > 0);
  await d.kill9();
  writeFileSync(join(flag, "stop"), "");
  await waitFor("the container's process to end", () => (isRunning(pid) ? undefined : true));
  await d.start();
  await waitFor("the engine to record the exit", async () => ((await api(d, "GET", `/containers/${id}/json`)).json.State.Running === false ? true : undefined));
  await waitFor("its network to be released", () => (leftovers().length === 0 ? true : undefined));
  ok(d.docker(["rm", id]));
});

test("25 create/start/remove cycles of a container publishing a port leave nothing behind", async () => {
  const port = await freePort();
  for (let i = 0; i < 25; i++) {
    const id = ok(d.docker(["run", "-d", "--network", "life", "-p", `${port}:80`, "busybox", "sleep", "60"]), `cycle ${i}`).stdout.trim();
    ok(d.docker(["rm", "-f", id]), `rm ${i}`);
  }
  assert.deepEqual(leftovers(), []);
  assert.deepEqual((await api(d, "GET", "/networks/life")).json.Containers, {});
});

test("200 networked containers started and removed, 8 at a time, leave no veth, namespace, rule or address behind", async () => {
  const env = { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") };
  const docker = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile("docker", args, { env }, (err, stdout, stderr) => (err ? reject(new Error(`docker ${args.join(" ")}: ${stderr || err.message}`)) : resolve(stdout))),
    );
  let next = 0;
  const worker = async () => {
    while (next < 200) {
      next++;
      const id = (await docker(["run", "-d", "--network", "life", "busybox", "sleep", "60"])).trim();
      await docker(["rm", "-f", id]);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.deepEqual(leftovers(), []);
  assert.deepEqual((await api(d, "GET", "/networks/life")).json.Containers, {});
});
