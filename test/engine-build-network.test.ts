// A RUN step's network through the real docker CLI's classic builder (`docker build
// --network`): the default bridge (a veth on it, an address from its IPAM, a server on the
// bridge's gateway reached), none (loopback only), host (the host's network namespace and
// loopback), a user-defined network (a container on it reached by name), an unknown
// network's error; and nothing of a RUN's network left after a build that succeeds, fails
// or is cancelled: no namespace, endpoint, address lease, veth, bridge or iptables rule.
// Only loopback, this daemon's bridges and a subnet no route uses are ever talked to.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids, ok, runAsync, type Daemon, type RunResult } from "./harness.ts";
import { engineHttpText, startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { eventually, waitUntil } from "./fixtures/poll.ts";
import { freeSubnetPrefixes, subnetRanges } from "./fixtures/host-network.ts";
import { buildLeftovers, defaultRegistryArgs, endBuildTests, nothingLeft, runningBuildRuns, writeContext } from "./fixtures/build.ts";

const tag = randomBytes(3).toString("hex");
const adminChain = `BN-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let work: string;
let subnetPrefix: string;
const servers: Server[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-net-"));
  [subnetPrefix] = freeSubnetPrefixes(1, subnetRanges.buildNetwork);
  // No linger: a bridge whose last user left goes at once, so the tests can see it gone.
  d = await startEngineWithBusybox({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain, BERTH_NETWORK_LINGER_MS: "0" }, args: defaultRegistryArgs(work) });
});

after(async () => {
  for (const server of servers) server.close();
  d?.docker(["network", "rm", "buildnet"]);
  await endBuildTests(d, work);
  assert.ok(!execFileSync("iptables-save", [], { encoding: "utf8" }).includes(adminChain), "the engine's admin chain is gone");
});

/** `docker build` without blocking this process (its servers must answer the RUN steps meanwhile). */
function dockerBuild(args: string[]): Promise<RunResult> {
  return runAsync("docker", ["build", ...args], { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" });
}

/** A TCP server on `host` that answers every connection with an HTTP reply carrying `body`, and records where each came from. */
async function tokenServer(host: string, body: string): Promise<{ port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer((socket) => {
    peers.push(socket.remoteAddress ?? "");
    socket.on("error", () => undefined);
    socket.once("data", () => socket.end(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
  });
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, peers };
}

function inspectNetwork(name: string): { Id: string; IPAM: { Config: { Subnet: string; Gateway: string }[] }; Options: Record<string, string>; Containers: Record<string, unknown> } {
  return JSON.parse(ok(d.docker(["network", "inspect", name]), `network inspect ${name}`).stdout)[0];
}

const linkExists = (name: string) => spawnSync("ip", ["link", "show", "dev", name]).status === 0;

/** Whether `address` is in the /16 or /24 `subnet` ("a.b.c.d/n"). */
function inSubnet(address: string, subnet: string): boolean {
  const [base, bits] = subnet.split("/") as [string, string];
  const toNumber = (a: string) => a.split(".").reduce((n, part) => n * 256 + Number(part), 0);
  const mask = Number(bits) === 0 ? 0 : (0xffffffff << (32 - Number(bits))) >>> 0;
  return ((toNumber(address) & mask) >>> 0) === ((toNumber(base) & mask) >>> 0);
}

/** Everything a RUN's network could leave: namespaces, endpoints, address leases, CNI results, veths on our bridges, bridges, rules. */
function networkLeftovers(networks: string[]) {
  const dir = (path: string) => (existsSync(path) ? readdirSync(path) : []);
  const ipam = join(d.state, "cni", "ipam");
  const records = networks.map(inspectNetwork);
  const rules = ["filter", "nat"].flatMap((table) => execFileSync("iptables-save", ["-t", table], { encoding: "utf8" }).split("\n"));
  return {
    netns: dir(join(d.state, "netns")),
    endpoints: records.flatMap((n) => Object.keys(n.Containers ?? {})),
    // host-local keeps one file per leased address (plus its lock and last_reserved_ip files).
    leases: dir(ipam).flatMap((net) => dir(join(ipam, net)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))),
    cniResults: dir(join(d.state, "cni", "results")),
    bridges: records.map((n) => n.Options["com.docker.network.bridge.name"]!).filter(linkExists),
    // The bridge and firewall plugins name the CNI network (berth-<id prefix>) in every rule they add for an address.
    rules: rules.filter((line) => records.some((n) => line.includes(`berth-${n.Id.slice(0, 12)}`))),
  };
}

const noNetworkLeft = { netns: [], endpoints: [], leases: [], cniResults: [], bridges: [], rules: [] };

/** A build's RUN networks are released after its client has the outcome (build/job.ts): polled, then compared for a readable failure. */
async function networkReleased(networks: string[]): Promise<void> {
  await waitUntil("the build's RUN networks to be released", () => JSON.stringify(networkLeftovers(networks)) === JSON.stringify(noNetworkLeft)).catch(() => undefined);
  assert.deepEqual(networkLeftovers(networks), noNetworkLeft);
}

/** The paths in an image's last layer (from `docker save`). */
function lastLayerPaths(image: string): string[] {
  const dir = mkdtempSync(join(work, "save-"));
  const archive = join(dir, "image.tar");
  ok(d.docker(["save", "-o", archive, image]), "save");
  execFileSync("tar", ["-xf", archive, "-C", dir]);
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { Layers: string[] }[];
  const layer = manifest[0]!.Layers.at(-1)!;
  return execFileSync("tar", ["-tf", join(dir, layer)], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((p) => p.replace(/^\.\//, ""))
    .sort();
}

const catIn = (image: string, path: string) => ok(d.docker(["run", "--rm", "--network", "none", image, "cat", path]), `cat ${path}`).stdout;

test("by default a RUN is on the bridge: it reaches a server on the gateway, and its layer holds only what it wrote", async () => {
  // A container keeps the bridge up, so the test's server can listen on the gateway address.
  ok(d.docker(["run", "-d", "--name", "holder", "busybox", "sleep", "600"]), "run holder");
  const { Gateway: gateway, Subnet: subnet } = inspectNetwork("bridge").IPAM.Config[0]!;
  const token = `token-${randomBytes(6).toString("hex")}`;
  const server = await tokenServer(gateway, token);
  const dir = writeContext(work, "bridge", {
    Dockerfile: `FROM busybox\nRUN busybox wget -q -O /got http://${gateway}:${server.port}/ && cat /etc/hosts > /hosts-seen && hostname > /name-seen && echo mine > /etc/mine\n`,
  });
  const r = await dockerBuild(["-t", "net-bridge:1", dir]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(catIn("net-bridge:1", "/got"), token);
  assert.equal(server.peers.length, 1);
  assert.ok(inSubnet(server.peers[0]!.replace(/^::ffff:/, ""), subnet), `the RUN came from the bridge's subnet ${subnet}: ${server.peers[0]}`);
  // Its /etc/hosts names it (its id's first 12 digits, the hostname) at its bridge address.
  const runId = /^ ---> Running in ([0-9a-f]{12})$/m.exec(r.stdout)![1]!;
  assert.equal(catIn("net-bridge:1", "/name-seen"), `${runId}\n`);
  const hosts = catIn("net-bridge:1", "/hosts-seen");
  const own = hosts.split("\n").find((line) => line.endsWith(`\t${runId}`));
  assert.ok(own && inSubnet(own.split("\t")[0]!, subnet), `/etc/hosts lists the RUN at its address:\n${hosts}`);
  // The bound /etc files (and runc's mount points for them, /proc, /dev, /sys) stay out of the layer.
  assert.deepEqual(lastLayerPaths("net-bridge:1"), ["etc/", "etc/mine", "got", "hosts-seen", "name-seen"]);
  // A build's RUNs share a namespace one after the other: each has its own hostname in it.
  const two = await dockerBuild(["-t", "net-bridge:2", writeContext(work, "bridge-two", { Dockerfile: "FROM net-bridge:1\nRUN hostname > /h1\nRUN hostname > /h2 && cat /etc/hosts > /hosts2\n" })]);
  assert.equal(two.code, 0, `${two.stdout}\n${two.stderr}`);
  const [run1, run2] = [...two.stdout.matchAll(/^ ---> Running in ([0-9a-f]{12})$/gm)].map((m) => m[1]!);
  assert.equal(catIn("net-bridge:2", "/h1"), `${run1}\n`);
  assert.equal(catIn("net-bridge:2", "/h2"), `${run2}\n`);
  assert.match(catIn("net-bridge:2", "/hosts2"), new RegExp(`^\\d+\\.\\d+\\.\\d+\\.\\d+\\t${run2}$`, "m"));
  assert.doesNotMatch(catIn("net-bridge:2", "/hosts2"), new RegExp(run1!));
  assert.deepEqual(lastLayerPaths("net-bridge:2"), ["h2", "hosts2"]);
  ok(d.docker(["rm", "-f", "holder"]), "rm holder");
  await networkReleased(["bridge"]);
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});

test("--network none: loopback only, the gateway's server is not reached", async () => {
  ok(d.docker(["run", "-d", "--name", "holder-none", "busybox", "sleep", "600"]), "run holder");
  const gateway = inspectNetwork("bridge").IPAM.Config[0]!.Gateway;
  const server = await tokenServer(gateway, "never");
  const dir = writeContext(work, "none", {
    // nc, not wget: busybox's wget crashes when the network is unreachable.
    Dockerfile: `FROM busybox\nRUN cat /proc/net/dev > /devs; echo GET | busybox nc -w 5 ${gateway} ${server.port} > /got && echo reached > /result || echo unreachable > /result\n`,
  });
  const r = await dockerBuild(["--network", "none", "-t", "net-none:1", dir]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(catIn("net-none:1", "/result"), "unreachable\n");
  assert.deepEqual(server.peers, []);
  const interfaces = catIn("net-none:1", "/devs").split("\n").slice(2).filter(Boolean).map((line) => line.trim().split(":")[0]);
  assert.deepEqual(interfaces, ["lo"]);
  ok(d.docker(["rm", "-f", "holder-none"]), "rm holder");
  await networkReleased(["bridge"]);
});

test("--network host: the host's network namespace and loopback", async () => {
  const token = `host-${randomBytes(6).toString("hex")}`;
  const server = await tokenServer("127.0.0.1", token);
  const dir = writeContext(work, "host", {
    Dockerfile: `FROM busybox\nRUN busybox readlink /proc/self/ns/net > /netns && busybox wget -q -O /got http://127.0.0.1:${server.port}/\n`,
  });
  const r = await dockerBuild(["--network", "host", "-t", "net-host:1", dir]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(catIn("net-host:1", "/got"), token);
  // The namespace itself is compared: the host's interface list moves while other tests make veths.
  assert.equal(catIn("net-host:1", "/netns").trim(), readlinkSync("/proc/self/ns/net"));
  assert.deepEqual(lastLayerPaths("net-host:1"), ["got", "netns"]);
  await networkReleased(["bridge"]);
});

test("a user-defined network: the RUN gets its address and reaches a container there by name", async () => {
  ok(d.docker(["network", "create", "--subnet", `${subnetPrefix}.0/24`, "buildnet"]), "network create");
  ok(d.docker(["run", "-d", "--name", "web", "--network", "buildnet", "busybox", "sh", "-c", "mkdir /www && echo hello-web > /www/index.html && exec busybox httpd -f -p 8080 -h /www"]), "run web");
  const dir = writeContext(work, "user-net", {
    Dockerfile: "FROM busybox\nRUN for i in $(busybox seq 1 100); do busybox wget -q -O /got http://web:8080/index.html && break; sleep 0.1; done; cat /etc/hosts > /hosts-seen\n",
  });
  const r = await dockerBuild(["--network", "buildnet", "-t", "net-user:1", dir]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(catIn("net-user:1", "/got"), "hello-web\n");
  const runId = /^ ---> Running in ([0-9a-f]{12})$/m.exec(r.stdout)![1]!;
  assert.match(catIn("net-user:1", "/hosts-seen"), new RegExp(`^${subnetPrefix.replace(/\./g, "\\.")}\\.\\d+\\t${runId}$`, "m"));
  ok(d.docker(["rm", "-f", "web"]), "rm web");
  await networkReleased(["bridge", "buildnet"]);
  // No endpoint of the RUN holds the network.
  ok(d.docker(["network", "rm", "buildnet"]), "network rm");
});

test("an unknown network is Docker's error at the first RUN (exit 1, HTTP 200 with the error in the stream); a bad mode is a 400", async () => {
  const dir = writeContext(work, "unknown", { Dockerfile: "FROM busybox\nENV A=1\nRUN echo never > /never\n" });
  const r = await dockerBuild(["--network", "nosuchnet", dir]);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^Step 3\/3 : RUN echo never > \/never$/m);
  assert.match(r.stderr, /network nosuchnet not found/);
  const tar = spawnSync("tar", ["-c", "-C", dir, "."]).stdout;
  const raw = await engineHttpText(d, "POST", "/v1.41/build?networkmode=nosuchnet", tar, { "Content-Type": "application/x-tar" });
  assert.equal(raw.status, 200);
  const last = JSON.parse(raw.body.trim().split("\n").at(-1)!) as { errorDetail?: { message: string } };
  assert.match(last.errorDetail?.message ?? "", /^network nosuchnet not found \(Step 3\/3: RUN echo never > \/never\)$/);
  const container = await engineHttpText(d, "POST", "/v1.41/build?networkmode=container:abc", tar, { "Content-Type": "application/x-tar" });
  assert.equal(container.status, 400);
  assert.match(container.body, /network mode \\"container:abc\\" is not supported for builds/);
  const slashed = await engineHttpText(d, "POST", "/v1.41/build?networkmode=a%2Fb", tar, { "Content-Type": "application/x-tar" });
  assert.equal(slashed.status, 400);
  assert.match(slashed.body, /invalid network mode \\"a\/b\\"/);
  const berth = d.berth(["build", "--network", "nosuchnet", dir]);
  assert.notEqual(berth.code, 0);
  assert.match(berth.stdout + berth.stderr, /network nosuchnet not found/);
  assert.deepEqual(buildLeftovers(d), nothingLeft);
  await networkReleased(["bridge"]);
});

test("a failing RUN and a cancelled RUN on the bridge leave no network behind", async () => {
  const failing = await dockerBuild([writeContext(work, "failing", { Dockerfile: "FROM busybox\nRUN exit 3\n" })]);
  assert.equal(failing.code, 3, `${failing.stdout}\n${failing.stderr}`);
  await networkReleased(["bridge"]);
  assert.deepEqual(buildLeftovers(d), nothingLeft);

  const dir = writeContext(work, "cancelled", { Dockerfile: "FROM busybox\nRUN while [ ! -e /go ]; do sleep 0.1; done\n" });
  const child = spawn("docker", ["build", dir], { env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" } });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  try {
    const run = await eventually("the RUN to start", () => runningBuildRuns(d)[0]);
    // While it runs, it has its namespace, an address and the bridge's rules for it.
    const during = networkLeftovers(["bridge"]);
    assert.deepEqual(during.netns, [run.id]);
    assert.equal(during.endpoints.length, 1);
    assert.equal(during.leases.length, 1);
    assert.equal(during.bridges.length, 1);
    assert.ok(during.rules.length > 0, "the bridge plugin's NAT rules exist while the RUN runs");
    const ifaces = readFileSync(`/proc/${run.pid}/net/dev`, "utf8");
    assert.match(ifaces, /^\s*eth0:/m);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
  await waitUntil("the cancelled build to be undone", () => buildLeftovers(d).runcProcesses.length === 0 && buildLeftovers(d).buildDirs.length === 0);
  await networkReleased(["bridge"]);
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});

test("the default bridge's subnet taken on the host before a build's first RUN: the bridge moves to another pool and the RUN runs there", async () => {
  const before = inspectNetwork("bridge");
  const bridge = before.Options["com.docker.network.bridge.name"]!;
  await waitUntil("the default bridge device to be gone", () => !linkExists(bridge));
  // Another interface takes the bridge's subnet (as another daemon's bridge would).
  const [base] = before.IPAM.Config[0]!.Subnet.split("/") as [string];
  const taker = `bt-${tag}`;
  execFileSync("ip", ["link", "add", taker, "type", "bridge"]);
  try {
    execFileSync("ip", ["addr", "add", `${base.split(".").slice(0, 2).join(".")}.255.254/16`, "dev", taker]);
    execFileSync("ip", ["link", "set", taker, "up"]);
    const built = await dockerBuild([writeContext(work, "moved", { Dockerfile: "FROM busybox\nRUN ip -4 -o addr show eth0\n" })]);
    assert.equal(built.code, 0, `${built.stdout}\n${built.stderr}`);
    const after = inspectNetwork("bridge");
    assert.notEqual(after.IPAM.Config[0]!.Subnet, before.IPAM.Config[0]!.Subnet, "the bridge moved to another pool");
    const address = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(built.stdout)?.[1];
    assert.ok(address && inSubnet(address, after.IPAM.Config[0]!.Subnet), `the RUN's address ${address} is in the new subnet ${after.IPAM.Config[0]!.Subnet}`);
  } finally {
    execFileSync("ip", ["link", "del", taker]);
  }
  await networkReleased(["bridge"]);
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});

test("berthd stopped right after a build on the bridge: the build's RUN network is released before it exits", async () => {
  const built = await dockerBuild([writeContext(work, "stopped", { Dockerfile: "FROM busybox\nRUN true\n" })]);
  assert.equal(built.code, 0, `${built.stdout}\n${built.stderr}`);
  const cniName = `berth-${inspectNetwork("bridge").Id.slice(0, 12)}`;
  // At once: the release runs after the client has the outcome, and the stop must wait for it.
  await d.stop();
  try {
    const dir = (path: string) => (existsSync(path) ? readdirSync(path) : []);
    assert.deepEqual(dir(join(d.state, "netns")), [], "no RUN namespace is left");
    assert.deepEqual(dir(join(d.root, "engine", "build-networks")), [], "no RUN's /etc files are left");
    const rules = ["filter", "nat"].flatMap((table) => execFileSync("iptables-save", ["-t", table], { encoding: "utf8" }).split("\n"));
    assert.deepEqual(rules.filter((line) => line.includes(cniName)), [], "no NAT rule for the RUN's address is left");
  } finally {
    await d.start();
  }
});

test("berthd killed mid-RUN on the bridge: the restarted engine gives the RUN's network back", async () => {
  const dir = writeContext(work, "killed", { Dockerfile: "FROM busybox\nRUN while [ ! -e /go ]; do sleep 0.1; done\n" });
  const child = spawn("docker", ["build", dir], { env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" } });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const run = await eventually("the RUN to start", () => runningBuildRuns(d)[0]);
  await eventually("the RUN's address", () => (networkLeftovers(["bridge"]).leases.length === 1 ? true : undefined));
  const victims = [d.pid!, ...childPids(d.pid!)];
  for (const pid of victims) process.kill(pid, "SIGKILL");
  await exited;
  await waitUntil("berthd and its processes to die", () => victims.every((pid) => !existsSync(`/proc/${pid}/cmdline`) || readFileSync(`/proc/${pid}/cmdline`).length === 0));
  // What the kill left: the run's namespace and address are still there.
  assert.deepEqual(readdirSync(join(d.state, "netns")), [run.id]);
  await d.start();
  await waitUntil("the restarted engine to undo the build", () => buildLeftovers(d).buildDirs.length === 0, 60_000);
  await waitUntil("the RUN's network to be released", () => JSON.stringify(networkLeftovers(["bridge"])) === JSON.stringify(noNetworkLeft), 30_000);
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});
