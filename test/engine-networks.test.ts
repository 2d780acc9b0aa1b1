// Networks through the Engine API with the real docker CLI (raw HTTP where the exact status
// matters): the predefined bridge/host/none, user-defined bridge networks with this test's
// own subnets and firewall admin chain, filters, prune, and bad input refused with Docker's
// status and wording, nothing half-created.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { api } from "./engine-net-helpers.ts";

const tag = randomBytes(3).toString("hex");
const adminChain = `BT-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let prefixes: string[] = [];

/** Distinct /24s in 10.250.0.0/16 that no route on this host covers. */
function freePrefixes(count: number): string[] {
  const routes = execFileSync("ip", ["-4", "route", "show", "table", "all"], { encoding: "utf8" });
  const out = new Set<string>();
  while (out.size < count) {
    const prefix = `10.250.${Math.floor(Math.random() * 250)}`;
    if (!routes.includes(`${prefix}.`)) out.add(prefix);
  }
  return [...out];
}

const names = (...filters: string[]) =>
  ok(d.docker(["network", "ls", "--format", "{{.Name}}", ...filters.flatMap((f) => ["--filter", f])]), "network ls").stdout.trim().split("\n").filter(Boolean).sort();

before(async () => {
  prefixes = freePrefixes(3);
  d = await startDaemon({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain } });
});
after(async () => {
  for (const name of ["front", "back", "spare", "old"]) d?.docker(["network", "rm", name]);
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
