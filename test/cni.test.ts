// The CNI driver against Debian's real plugins: two network namespaces on a bridge network
// of this test's own (bridge name, private subnet, firewall admin chain), addresses, a
// ping between them, a published port reached from the host, DEL taking the veth, rules
// and lease away, and nothing left on the host at the end.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { CniNetwork } from "../core/cni/conflist.ts";
import { CniPluginError, execPlugin } from "../core/cni/plugin.ts";
import { bridgeConflist, bridgeExists, deleteBridge, removeUnusedSharedChains } from "../core/cni/bridge.ts";
import { createNetns, isNetnsMounted, removeNetns } from "../core/cni/netns.ts";
import { withHostLock } from "../core/cni/host-lock.ts";
import { freePort, freeSubnetPrefixes, subnetRanges } from "./fixtures/host-network.ts";
import { eventually as waitFor } from "./fixtures/poll.ts";
import { sleep } from "./harness.ts";

const tag = randomBytes(3).toString("hex");
const bridge = `bt-${tag}`;
const adminChain = `BT-ADMIN-${tag.toUpperCase()}`;
const cniName = `berth-test-${tag}`;
let dir: string;
let subnetPrefix: string;
let network: CniNetwork;
const netns: string[] = [];
const sandboxes = () => netns.map((path, i) => ({ containerId: `c${i}-${tag}`, netns: path, ifname: "eth0" }));
const children: ChildProcess[] = [];

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
const inNetns = (path: string, args: string[]) => spawnSync("nsenter", [`--net=${path}`, ...args], { encoding: "utf8", timeout: 20_000 });
const iptablesRules = () => sh("iptables-save", []);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-cni-"));
  [subnetPrefix] = freeSubnetPrefixes(1, subnetRanges.cni) as [string];
  network = new CniNetwork(
    bridgeConflist({ name: cniName, bridge, subnet: `${subnetPrefix}.0/24`, ipamDataDir: join(dir, "ipam"), external: true, adminChain }),
    join(dir, "results"),
  );
  for (let i = 0; i < 2; i++) netns.push(await createNetns(join(dir, "netns"), `c${i}-${tag}`));
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  for (const sandbox of sandboxes()) await network?.del(sandbox).catch(() => {});
  for (const path of netns) removeNetns(path);
  await deleteBridge(bridge);
  await removeUnusedSharedChains([adminChain]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("createNetns makes a namespace, mounted under its dir, whose only link is its loopback, up with its addresses, again for one that exists; a bad name makes nothing", async () => {
  const made: string[] = [];
  try {
    const path = await createNetns(join(dir, "netns"), `lo-${tag}`);
    made.push(path);
    assert.ok(isNetnsMounted(path));
    const links = inNetns(path, ["ip", "-o", "link", "show"]).stdout.trim().split("\n");
    assert.equal(links.length, 1, links.join("\n"));
    assert.match(links[0]!, /1: lo: <LOOPBACK,UP,LOWER_UP>/);
    assert.match(inNetns(path, ["ip", "-o", "addr", "show", "dev", "lo"]).stdout, /inet 127\.0\.0\.1\/8/);
    assert.equal(inNetns(path, ["busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1"]).status, 0);
    // A daemon restarted part way through: the namespace is there, its loopback down again.
    assert.equal(inNetns(path, ["ip", "link", "set", "lo", "down"]).status, 0);
    assert.equal(await createNetns(join(dir, "netns"), `lo-${tag}`), path);
    assert.match(inNetns(path, ["ip", "-o", "link", "show", "lo"]).stdout, /LOOPBACK,UP/);
    await assert.rejects(createNetns(join(dir, "netns"), "../escape"), /invalid network namespace name/);
    assert.ok(!existsSync(join(dir, "escape")));
  } finally {
    for (const path of made) removeNetns(path);
  }
});

test("ADD gives each namespace an address on the bridge, and the two reach each other", async () => {
  const [first, second] = sandboxes();
  const r1 = await network.add(first!);
  const r2 = await network.add(second!);
  const ip1 = r1.ips![0]!.address.split("/")[0]!;
  const ip2 = r2.ips![0]!.address.split("/")[0]!;
  assert.ok(ip1.startsWith(`${subnetPrefix}.`) && ip2.startsWith(`${subnetPrefix}.`));
  assert.notEqual(ip1, ip2);
  assert.equal(r1.ips![0]!.gateway, `${subnetPrefix}.1`);
  assert.match(inNetns(first!.netns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout, new RegExp(`inet ${ip1.replace(/\./g, "\\.")}/24`));
  assert.match(inNetns(first!.netns, ["ip", "-4", "route"]).stdout, new RegExp(`default via ${subnetPrefix}\\.1 dev eth0`));
  assert.ok(await bridgeExists(bridge));
  assert.equal(sh("ip", ["-o", "link", "show", "master", bridge]).trim().split("\n").length, 2, "one veth per namespace on the bridge");
  const ping = inNetns(first!.netns, ["busybox", "ping", "-c", "1", "-W", "5", ip2]);
  assert.equal(ping.status, 0, ping.stdout + ping.stderr);
  // the lease files host-local keeps: one per address, naming the container
  assert.ok(existsSync(join(dir, "ipam", cniName, ip1)));
  assert.ok(existsSync(join(dir, "ipam", cniName, ip2)));
  await network.check(first!, ["portmap"]);
});

test("a second ADD of the same sandbox is refused and leaves the first attachment working", async () => {
  const [first, second] = sandboxes();
  await assert.rejects(network.add(first!), /already attached/);
  const ip2 = network.cached(second!)!.ips![0]!.address.split("/")[0]!;
  assert.equal(inNetns(first!.netns, ["busybox", "ping", "-c", "1", "-W", "5", ip2]).status, 0);
});

test("a published port reaches the namespace from 127.0.0.1 and from a peer through the gateway", async () => {
  const sandbox = { containerId: `p-${tag}`, netns: await createNetns(join(dir, "netns"), `p-${tag}`), ifname: "eth0" };
  netns.push(sandbox.netns);
  const hostPort = await freePort();
  // Under the host lock, as the engine adds containers that publish ports (the shared chains).
  const result = await withHostLock(() => network.add(sandbox, { portMappings: [{ hostPort, containerPort: 80, protocol: "tcp" }] }));
  const www = join(dir, "www");
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, "index.html"), `hello from ${tag}\n`);
  const httpd = spawn("nsenter", [`--net=${sandbox.netns}`, "busybox", "httpd", "-f", "-p", "80", "-h", www], { stdio: "ignore" });
  children.push(httpd);
  const body = await waitFor("the published port to answer", async () => {
    try {
      const res = await fetch(`http://127.0.0.1:${hostPort}/`);
      return await res.text();
    } catch {
      return undefined;
    }
  });
  assert.equal(body, `hello from ${tag}\n`);
  // from another namespace on the network, through the gateway's published port
  const fromPeer = inNetns(sandboxes()[0]!.netns, ["busybox", "wget", "-q", "-O", "-", `http://${subnetPrefix}.1:${hostPort}/`]);
  assert.equal(fromPeer.stdout, `hello from ${tag}\n`, fromPeer.stderr);
  const ip = result.ips![0]!.address.split("/")[0]!;
  assert.match(iptablesRules(), new RegExp(`--to-destination ${ip.replace(/\./g, "\\.")}:80`));

  httpd.kill("SIGKILL");
  await network.del(sandbox);
  const rules = iptablesRules();
  assert.doesNotMatch(rules, new RegExp(`${ip.replace(/\./g, "\\.")}[:/]`), "no rule names the address after DEL");
  assert.doesNotMatch(rules, new RegExp(`id: \\\\"${sandbox.containerId}\\\\"`));
  assert.ok(!existsSync(join(dir, "ipam", cniName, ip)), "the lease is released");
  assert.equal(inNetns(sandbox.netns, ["ip", "link", "show", "eth0"]).status, 1, "the veth is gone");
});

test("DEL removes the veths, rules and leases; DEL of a sandbox never added succeeds", async () => {
  const ips = sandboxes().map((s) => network.cached(s)?.ips?.[0]?.address.split("/")[0]).filter((ip): ip is string => !!ip);
  assert.equal(ips.length, 2);
  for (const sandbox of sandboxes()) await network.del(sandbox);
  await network.del({ containerId: `never-${tag}`, netns: netns[0]!, ifname: "eth0" });
  assert.equal(sh("ip", ["-o", "link", "show", "master", bridge]).trim(), "");
  const rules = iptablesRules();
  for (const ip of ips) {
    assert.doesNotMatch(rules, new RegExp(`${ip.replace(/\./g, "\\.")}/32`));
    assert.ok(!existsSync(join(dir, "ipam", cniName, ip)));
  }
  assert.deepEqual(readdirSync(join(dir, "ipam", cniName)).filter((f) => /^\d/.test(f)), [], "no lease left");
  assert.equal(network.cached(sandboxes()[0]!), undefined);
});

test("plugin errors come back with the plugin's message; bad input is refused before any exec", async () => {
  const bad = new CniNetwork(bridgeConflist({ name: `bad-${tag}`, bridge: `bx-${tag}`, subnet: "10.250.300.0/24", ipamDataDir: join(dir, "ipam"), external: true }), join(dir, "results"));
  await assert.rejects(bad.add(sandboxes()[0]!), (err: unknown) => {
    assert.ok(err instanceof CniPluginError);
    assert.match(err.message, /CNI bridge ADD failed/);
    assert.match(err.message, /10\.250\.300\.0/);
    return true;
  });
  // The bridge plugin makes its bridge before IPAM fails; the engine validates subnets first.
  await deleteBridge(`bx-${tag}`);
  assert.equal(bad.cached(sandboxes()[0]!), undefined, "nothing cached for a failed ADD");
  await assert.rejects(execPlugin("ADD", { type: "../bin/sh" }, undefined), /invalid CNI plugin type/);
  await assert.rejects(execPlugin("ADD", { type: "no-such-plugin" }, undefined), /not found/);
  assert.throws(() => new CniNetwork({ name: "a b", plugins: [{ type: "bridge" }] }, dir), /invalid CNI network name/);
  await assert.rejects(createNetns(join(dir, "netns"), "../escape"), /invalid network namespace name/);
});

test("removing the last user takes the bridge and the plugins' chains away", async () => {
  for (const path of netns.splice(0)) removeNetns(path);
  assert.deepEqual(readdirSync(join(dir, "netns")), []);
  await deleteBridge(bridge);
  assert.ok(!(await bridgeExists(bridge)));
  await removeUnusedSharedChains([adminChain]);
  const rules = iptablesRules();
  assert.ok(!rules.includes(adminChain), "the admin chain and its jump are gone");
  assert.ok(!rules.includes(`${subnetPrefix}.`), "no rule names the subnet");
  assert.ok(!rules.includes(cniName), "no rule names the network");
});

test("the host lock runs holders one at a time and takes over a lock whose owner is gone", async () => {
  const lock = join(dir, "host.lock");
  const order: string[] = [];
  const holder = (name: string) =>
    withHostLock(async () => {
      order.push(`${name}+`);
      await sleep(30);
      order.push(`${name}-`);
    }, lock);
  await Promise.all([holder("a"), holder("b"), holder("c")]);
  for (let i = 0; i < order.length; i += 2) assert.equal(order[i]!.slice(0, 1), order[i + 1]!.slice(0, 1), `no overlap: ${order.join(" ")}`);
  // a lock left by a process that no longer runs
  const dead = spawnSync("true").pid!;
  mkdirSync(lock);
  writeFileSync(join(lock, "pid"), String(dead));
  assert.equal(await withHostLock(async () => "taken over", lock, 5_000), "taken over");
  assert.ok(!existsSync(lock));
});
