// Networks through the Engine API with the real docker CLI (raw HTTP where the exact status
// matters): the predefined bridge/host/none, user-defined bridge networks with this test's
// own subnets and firewall admin chain, filters, prune, and bad input refused with Docker's
// status and wording, nothing half-created.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { ok, type Daemon } from "./harness.ts";
import { api, removeEveryContainer, waitFor } from "./engine-net-helpers.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { freePort, freeSubnetPrefixes, subnetRanges } from "./fixtures/host-network.ts";

const tag = randomBytes(3).toString("hex");
const adminChain = `BT-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let prefixes: string[] = [];

const names = (...filters: string[]) =>
  ok(d.docker(["network", "ls", "--format", "{{.Name}}", ...filters.flatMap((f) => ["--filter", f])]), "network ls").stdout.trim().split("\n").filter(Boolean).sort();

before(async () => {
  prefixes = freeSubnetPrefixes(4, subnetRanges.engineNetworks);
  d = await startEngineWithBusybox({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain } });
});
after(async () => {
  if (d) await removeEveryContainer(d);
  for (const name of ["front", "back", "spare", "old", "appnet", "other"]) d?.docker(["network", "rm", name]);
  await d?.destroy();
  const rules = execFileSync("iptables-save", [], { encoding: "utf8" });
  assert.ok(!rules.includes(adminChain), "the engine's admin chain is gone");
});


test("bridge, host and none exist from the start; bridge has a subnet and a gateway", async () => {
  assert.deepEqual(names(), ["bridge", "host", "none"]);
  const r = await api(d, "GET", "/networks/bridge");
  assert.equal(r.status, 200);
  assert.equal(r.json.Driver, "bridge");
  assert.equal(r.json.Scope, "local");
  const [config] = r.json.IPAM.Config;
  assert.match(config.Subnet, /^\d+\.\d+\.\d+\.0\/\d+$/);
  assert.match(config.Gateway, /^\d+\.\d+\.\d+\.1$/);
  assert.deepEqual(r.json.Containers, {});
  assert.equal((await api(d, "GET", "/networks/host")).json.Driver, "host");
  assert.equal((await api(d, "GET", "/networks/none")).json.Driver, "null");
  const ls = ok(d.docker(["network", "ls"])).stdout;
  assert.match(ls, /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE\n/);
  assert.match(ls, /[0-9a-f]{12}\s+bridge\s+bridge\s+local/);
});

test("network create with a subnet, gateway, labels and --internal; inspect by name, id and prefix", async () => {
  const id = ok(d.docker(["network", "create", "--subnet", `${prefixes[0]}.0/24`, "--gateway", `${prefixes[0]}.254`, "--label", "tier=front", "--internal", "front"])).stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const [byName] = JSON.parse(ok(d.docker(["network", "inspect", "front"])).stdout);
  assert.equal(byName.Id, id);
  assert.equal(byName.Name, "front");
  assert.equal(byName.Driver, "bridge");
  assert.equal(byName.Internal, true);
  assert.deepEqual(byName.Labels, { tier: "front" });
  assert.deepEqual(byName.IPAM.Config, [{ Subnet: `${prefixes[0]}.0/24`, Gateway: `${prefixes[0]}.254` }]);
  assert.match(byName.Created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  assert.equal((await api(d, "GET", `/networks/${id}`)).json.Name, "front");
  assert.equal((await api(d, "GET", `/networks/${id.slice(0, 8)}`)).json.Name, "front");
  // no containers yet: no bridge device on the host
  assert.notEqual(spawnSync("ip", ["link", "show", `br-${id.slice(0, 12)}`]).status, 0);
  // without a subnet: the next free default pool, gateway at .1
  ok(d.docker(["network", "create", "back"]));
  const [back] = JSON.parse(ok(d.docker(["network", "inspect", "back"])).stdout);
  assert.match(back.IPAM.Config[0].Subnet, /^(172\.(1[7-9]|2\d|3[01])\.0\.0\/16|192\.168\.\d+\.0\/20)$/);
  assert.notEqual(back.IPAM.Config[0].Subnet, (await api(d, "GET", "/networks/bridge")).json.IPAM.Config[0].Subnet);
});

test("network ls filters by name, label, driver, type and id", async () => {
  assert.deepEqual(names(), ["back", "bridge", "front", "host", "none"]);
  assert.deepEqual(names("name=ck"), ["back"]);
  assert.deepEqual(names("label=tier=front"), ["front"]);
  assert.deepEqual(names("label=tier"), ["front"]);
  assert.deepEqual(names("type=custom"), ["back", "front"]);
  assert.deepEqual(names("type=builtin"), ["bridge", "host", "none"]);
  assert.deepEqual(names("driver=null"), ["none"]);
  const frontId = (await api(d, "GET", "/networks/front")).json.Id as string;
  assert.deepEqual(names(`id=${frontId.slice(0, 10)}`), ["front"]);
  const legacy = await api(d, "GET", `/networks?filters=${encodeURIComponent(JSON.stringify({ name: ["front"] }))}`);
  assert.deepEqual(legacy.json.map((n: { Name: string }) => n.Name), ["front"]);
  const bad = await api(d, "GET", `/networks?filters=${encodeURIComponent(JSON.stringify({ colour: { red: true } }))}`);
  assert.equal(bad.status, 400);
});

test("bad input: overlapping subnet, invalid CIDR, host bits, stray gateway, taken name, unknown driver — nothing is created", async () => {
  const before = names();
  const create = (body: unknown) => api(d, "POST", "/v1.41/networks/create", body);
  const overlap = await create({ Name: "spare", IPAM: { Config: [{ Subnet: `${prefixes[0]}.128/25` }] } });
  assert.equal(overlap.status, 400);
  assert.equal(overlap.json.message, "Pool overlaps with other one on this address space");
  const cli = d.docker(["network", "create", "--subnet", `${prefixes[0]}.0/24`, "spare"]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /Pool overlaps with other one on this address space/);
  const cidr = await create({ Name: "spare", IPAM: { Config: [{ Subnet: "10.250.1.0/33" }] } });
  assert.equal(cidr.status, 400);
  assert.equal(cidr.json.message, "invalid CIDR address: 10.250.1.0/33");
  assert.equal((await create({ Name: "spare", IPAM: { Config: [{ Subnet: "10.250.999.0/24" }] } })).json.message, "invalid CIDR address: 10.250.999.0/24");
  const hostBits = await create({ Name: "spare", IPAM: { Config: [{ Subnet: `${prefixes[1]}.7/24` }] } });
  assert.equal(hostBits.status, 400);
  assert.match(hostBits.json.message, new RegExp(`it should be ${prefixes[1]!.replace(/\./g, "\\.")}\\.0/24`));
  const gateway = await create({ Name: "spare", IPAM: { Config: [{ Subnet: `${prefixes[1]}.0/24`, Gateway: "10.9.9.9" }] } });
  assert.equal(gateway.status, 400);
  assert.equal(gateway.json.message, "no matching subnet for gateway 10.9.9.9");
  const taken = await create({ Name: "front" });
  assert.equal(taken.status, 409);
  assert.equal(taken.json.message, "network with name front already exists");
  assert.equal((await create({ Name: "spare", Driver: "overlay" })).status, 404);
  assert.equal((await create({ Name: "host" })).status, 403);
  assert.equal((await create({ Name: "" })).status, 400);
  assert.equal((await create({ Name: "a/b" })).status, 400);
  assert.equal((await create({ Name: "spare", Options: { "com.docker.network.bridge.name": "much-too-long-bridge-name" } })).status, 400);
  assert.equal((await api(d, "POST", "/networks/create", "{broken")).status, 400);
  assert.deepEqual(names(), before);
});

test("inspect or rm of a missing network is Docker's 404; the predefined ones cannot be removed", async () => {
  const missing = await api(d, "GET", "/v1.41/networks/nosuch");
  assert.equal(missing.status, 404);
  assert.equal(missing.json.message, "network nosuch not found");
  assert.equal((await api(d, "DELETE", "/networks/nosuch")).status, 404);
  const cli = d.docker(["network", "inspect", "nosuch"]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /network nosuch not found/);
  const rmBridge = await api(d, "DELETE", "/networks/bridge");
  assert.equal(rmBridge.status, 403);
  assert.equal(rmBridge.json.message, "bridge is a pre-defined network and cannot be removed");
  const connect = await api(d, "POST", "/networks/front/connect", { Container: "nosuch" });
  assert.equal(connect.status, 404);
  assert.equal(connect.json.message, "No such container: nosuch");
});

test("network rm removes a network; prune removes unused user-defined ones only", async () => {
  ok(d.docker(["network", "rm", "back"]));
  assert.equal((await api(d, "GET", "/networks/back")).status, 404);
  ok(d.docker(["network", "create", "--label", "keep=yes", "spare"]));
  ok(d.docker(["network", "create", "old"]));
  const pruned = await api(d, "POST", `/networks/prune?filters=${encodeURIComponent(JSON.stringify({ "label!": { keep: true } }))}`);
  assert.deepEqual(pruned.json.NetworksDeleted.sort(), ["front", "old"]);
  assert.match(ok(d.docker(["network", "prune", "-f"])).stdout, /spare/);
  assert.deepEqual((await api(d, "POST", "/networks/prune")).json, { NetworksDeleted: null });
  assert.deepEqual(names(), ["bridge", "host", "none"]);
});

// ---- containers on networks ------------------------------------------------------------

const webScript = "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 80 -h /www";

const inspect = (ref: string) => JSON.parse(ok(d.docker(["inspect", "--type", "container", ref]), `inspect ${ref}`).stdout)[0];
const hostsOf = (id: string) => readFileSync(join(d.root, "engine", "containers", id, "hosts"), "utf8");

test("a container on the default bridge gets an address in its subnet and a default route", async () => {
  const out = ok(d.docker(["run", "--rm", "busybox", "sh", "-c", "ip -4 -o addr show eth0; ip route"])).stdout;
  // Read after the run: the bridge moves to another pool when its subnet was taken on the
  // host meanwhile (other daemons' bridges, a build's RUNs among them).
  const bridge = (await api(d, "GET", "/networks/bridge")).json;
  const subnetPrefix = (bridge.IPAM.Config[0].Subnet as string).split(".").slice(0, 2).join(".");
  assert.match(out, new RegExp(`inet ${subnetPrefix.replace(/\./g, "\\.")}\\.\\d+\\.\\d+/`));
  assert.match(out, new RegExp(`default via ${bridge.IPAM.Config[0].Gateway.replace(/\./g, "\\.")} dev eth0`));
  // --rm removed it: the default bridge has no container and no device any more
  await waitFor("the default bridge device to go", () => (spawnSync("ip", ["link", "show", bridge.Options["com.docker.network.bridge.name"]]).status !== 0 ? true : undefined));
});

test("on a user-defined network containers reach each other by name; a published port is reachable from the host", async () => {
  ok(d.docker(["network", "create", "--subnet", `${prefixes[3]}.0/24`, "appnet"]));
  const port = await freePort();
  const webId = ok(d.docker(["run", "-d", "--name", "web", "--network", "appnet", "-p", `${port}:80`, "busybox", "sh", "-c", webScript])).stdout.trim();
  const body = await waitFor("the published port to answer", async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`)).text();
    } catch {
      return undefined;
    }
  });
  assert.equal(body, "hello-from-web\n");
  const byName = ok(d.docker(["run", "--rm", "--network", "appnet", "busybox", "busybox", "wget", "-q", "-O", "-", "http://web/"]), "fetch by name");
  assert.equal(byName.stdout, "hello-from-web\n");
  const info = inspect("web");
  const endpoint = info.NetworkSettings.Networks.appnet;
  assert.match(endpoint.IPAddress, new RegExp(`^${prefixes[3]!.replace(/\./g, "\\.")}\\.\\d+$`));
  assert.equal(endpoint.Gateway, `${prefixes[3]}.1`);
  assert.equal(endpoint.IPPrefixLen, 24);
  assert.match(endpoint.MacAddress, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  assert.deepEqual(info.NetworkSettings.Ports["80/tcp"], [{ HostIp: "0.0.0.0", HostPort: String(port) }]);
  assert.equal(ok(d.docker(["port", "web"])).stdout.trim(), `80/tcp -> 0.0.0.0:${port}`);
  assert.match(ok(d.docker(["ps", "--format", "{{.Names}} {{.Ports}}"])).stdout, new RegExp(`web 0\\.0\\.0\\.0:${port}->80/tcp`));
  const network = (await api(d, "GET", "/networks/appnet")).json;
  assert.equal(network.Containers[webId].Name, "web");
  assert.equal(network.Containers[webId].IPv4Address, `${endpoint.IPAddress}/24`);
  const rm = await api(d, "DELETE", "/networks/appnet");
  assert.equal(rm.status, 409);
  assert.match(rm.json.message, /^error while removing network: network appnet id [0-9a-f]{64} has active endpoints$/);
});

test("connect and disconnect a running container: it gains and loses an interface, peers' /etc/hosts follow", async () => {
  const webId = inspect("web").Id as string;
  const otherId = ok(d.docker(["run", "-d", "--name", "other", "busybox", "sleep", "300"])).stdout.trim();
  ok(d.docker(["network", "connect", "--alias", "db", "appnet", "other"]));
  const info = inspect("other");
  assert.ok(info.NetworkSettings.Networks.bridge?.IPAddress, "still on the default bridge");
  const address = info.NetworkSettings.Networks.appnet.IPAddress as string;
  assert.ok(address.startsWith(`${prefixes[3]}.`));
  assert.deepEqual([...info.NetworkSettings.Networks.appnet.Aliases].sort(), ["db", otherId.slice(0, 12)].sort());
  assert.match(hostsOf(webId), new RegExp(`^${address.replace(/\./g, "\\.")}\\tother db ${otherId.slice(0, 12)}$`, "m"));
  assert.match(hostsOf(otherId), /\tweb /);
  const ping = ok(d.docker(["run", "--rm", "--network", "appnet", "busybox", "busybox", "ping", "-c", "1", "-W", "5", "db"]), "ping the alias");
  assert.match(ping.stdout, /1 packets received/);
  const netnsPath = join(d.state, "netns", otherId);
  assert.match(execFileSync("nsenter", [`--net=${netnsPath}`, "ip", "-o", "link"], { encoding: "utf8" }), /eth1@/);

  ok(d.docker(["network", "disconnect", "appnet", "other"]));
  assert.equal(inspect("other").NetworkSettings.Networks.appnet, undefined);
  assert.doesNotMatch(hostsOf(webId), /\tother /);
  assert.doesNotMatch(execFileSync("nsenter", [`--net=${netnsPath}`, "ip", "-o", "link"], { encoding: "utf8" }), /eth1@/);
  const again = await api(d, "POST", "/networks/appnet/disconnect", { Container: "other" });
  assert.equal(again.status, 403);
});

test("-P publishes the exposed ports on free host ports; --add-host and --hostname reach /etc/hosts", async () => {
  const id = ok(d.docker(["run", "-d", "--name", "pub", "--expose", "80", "-P", "--hostname", "pubhost", "--add-host", "db.example:10.9.8.7", "busybox", "sh", "-c", webScript])).stdout.trim();
  const mapped = ok(d.docker(["port", "pub", "80/tcp"])).stdout.trim();
  const port = Number(/^0\.0\.0\.0:(\d+)$/.exec(mapped)?.[1]);
  assert.ok(port >= 32768 && port <= 60999, `an ephemeral port: ${mapped}`);
  const body = await waitFor("the -P port to answer", async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`)).text();
    } catch {
      return undefined;
    }
  });
  assert.equal(body, "hello-from-web\n");
  const hosts = hostsOf(id);
  assert.match(hosts, /^10\.9\.8\.7\tdb\.example$/m);
  assert.match(hosts, /^\d+\.\d+\.\d+\.\d+\tpubhost$/m);
  ok(d.docker(["rm", "-f", "pub"]));
  const bad = await api(d, "POST", "/containers/create", { Image: "busybox", HostConfig: { ExtraHosts: ["db:not-an-address"] } });
  assert.equal(bad.status, 400);
  assert.match(bad.json.message, /invalid IP address in add-host: "not-an-address"/);
});

test("a stopped container connected to a removed network cannot start: Docker's 404", async () => {
  ok(d.docker(["network", "create", "--subnet", `${prefixes[1]}.0/24`, "gone"]));
  const id = ok(d.docker(["create", "--network", "gone", "busybox", "true"])).stdout.trim();
  assert.equal((await api(d, "GET", "/networks/gone")).json.Containers[id], undefined, "not attached before it starts");
  ok(d.docker(["network", "rm", "gone"]));
  const r = await api(d, "POST", `/containers/${id}/start`);
  assert.equal(r.status, 404);
  assert.equal(r.json.message, "network gone not found");
  ok(d.docker(["rm", id]));
});

test("an --internal network has no default route out", () => {
  ok(d.docker(["network", "create", "--internal", "--subnet", `${prefixes[2]}.0/24`, "sealed"]));
  try {
    const routes = ok(d.docker(["run", "--rm", "--network", "sealed", "busybox", "sh", "-c", "ip route"])).stdout;
    assert.doesNotMatch(routes, /default/);
    assert.match(routes, new RegExp(`${prefixes[2]!.replace(/\./g, "\\.")}\\.0/24 dev eth0`));
  } finally {
    ok(d.docker(["network", "rm", "sealed"]));
  }
});

test("bad input: a host port already in use, an unknown network — Docker's errors, nothing left attached", async () => {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const busy = (server.address() as { port: number }).port;
  try {
    const r = d.docker(["run", "-d", "--name", "clash", "-p", `${busy}:80`, "busybox", "sleep", "30"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`Bind for 0\\.0\\.0\\.0:${busy} failed: port is already allocated`));
    const id = inspect("clash").Id as string;
    assert.ok(!existsSync(join(d.state, "netns", id)), "no namespace left for the failed start");
    ok(d.docker(["rm", "clash"]));
  } finally {
    server.close();
  }
  // (through the API: the CLI takes any 404 from create for a missing image and pulls)
  const containersBefore = d.docker(["ps", "-aq"]).stdout;
  const unknown = await api(d, "POST", "/v1.41/containers/create", { Image: "busybox", Cmd: ["true"], HostConfig: { NetworkMode: "nosuchnet" } });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.message, "network nosuchnet not found");
  assert.equal(d.docker(["ps", "-aq"]).stdout, containersBefore, "no container was created");
});

test("removing the containers and the network leaves no namespace, veth, bridge, rule or lease", async () => {
  const bridgeOf = async (name: string) => (await api(d, "GET", `/networks/${name}`)).json.Options["com.docker.network.bridge.name"] as string;
  const appBridge = await bridgeOf("appnet");
  const defaultBridge = await bridgeOf("bridge");
  ok(d.docker(["rm", "-f", "web", "other"]));
  ok(d.docker(["network", "rm", "appnet"]));
  assert.deepEqual(readdirSync(join(d.state, "netns")), []);
  assert.notEqual(spawnSync("ip", ["link", "show", appBridge]).status, 0, "network rm deleted its bridge");
  // the default bridge lingers a moment after its last container (BERTH_NETWORK_LINGER_MS)
  await waitFor("the default bridge to go", () => (spawnSync("ip", ["link", "show", defaultBridge]).status !== 0 ? true : undefined));
  assert.equal(execFileSync("ip", ["-o", "link", "show", "type", "veth"], { encoding: "utf8" }).includes(appBridge), false);
  const rules = execFileSync("iptables-save", [], { encoding: "utf8" });
  assert.ok(!rules.includes(`${prefixes[3]}.`), "no rule names the network's subnet");
  const ipam = join(d.state, "cni", "ipam");
  const leases = existsSync(ipam) ? readdirSync(ipam, { recursive: true }).map(String).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  assert.deepEqual(leases, []);
  assert.deepEqual(readdirSync(join(d.state, "cni", "results")), []);
});
