// berth network and berth volume beside the real docker CLI on the same engine: the same
// tables, -q lists, --format and --filter results, inspect documents, rm/prune wording and
// exit codes, connect/disconnect seen by both; bad input refused before any request.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { ok, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

const tag = randomBytes(3).toString("hex");
const adminChain = `BN-ADMIN-${tag.toUpperCase()}`;
let d: Daemon;
let prefixes: string[] = [];
const networks = ["bn-front", "bn-back2", "bn-back10", "bn-docker"];
const volumes = ["bv-data", "bv-logs2", "bv-logs10", "bv-docker"];

/** Distinct /24s in 10.251.0.0/16 that no route on this host covers. */
function freePrefixes(count: number): string[] {
  const routes = execFileSync("ip", ["-4", "route", "show", "table", "all"], { encoding: "utf8" });
  const found = new Set<string>();
  while (found.size < count) {
    const prefix = `10.251.${Math.floor(Math.random() * 250)}`;
    if (!routes.includes(`${prefix}.`)) found.add(prefix);
  }
  return [...found];
}

before(async () => {
  prefixes = freePrefixes(4);
  d = await startEngineWithBusybox({ env: { BERTH_CNI_ADMIN_CHAIN: adminChain } });
});

after(async () => {
  try {
    if (d) await removeEveryContainer(d);
    for (const name of networks) d?.docker(["network", "rm", name]);
    for (const name of volumes) d?.docker(["volume", "rm", "-f", name]);
  } finally {
    await d?.destroy();
  }
});

/** docker ends some failures with its own "exit status 1" line, which berth leaves out. */
const withoutStatusLine = (stderr: string) => stderr.replace(/^exit status \d+\n/m, "");

/** The same command through both CLIs: equal stdout, stderr and exit code; berth's result. */
function same(args: string[]) {
  const b = d.berth(args);
  const k = d.docker(args);
  assert.equal(b.stdout, k.stdout, `stdout of ${args.join(" ")}`);
  assert.equal(b.stderr, withoutStatusLine(k.stderr), `stderr of ${args.join(" ")}`);
  assert.equal(b.code, k.code, `exit code of ${args.join(" ")}`);
  return b;
}

test("network create, ls (table, -q, --no-trunc, --format, --filter), inspect, rm: as docker prints them", () => {
  const id = ok(d.berth(["network", "create", "--subnet", `${prefixes[0]}.0/24`, "--gateway", `${prefixes[0]}.254`, "--label", "tier=front", "--internal", "bn-front"]), "network create").stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  ok(d.berth(["network", "create", "--subnet", `${prefixes[1]}.0/24`, "bn-back2"]));
  ok(d.berth(["network", "create", "--subnet", `${prefixes[2]}.0/24`, "--label", "tier=back", "bn-back10"]));
  ok(d.docker(["network", "create", "--subnet", `${prefixes[3]}.0/24`, "bn-docker"]));

  const table = same(["network", "ls"]).stdout;
  assert.match(table, /^NETWORK ID +NAME +DRIVER +SCOPE\n/);
  // natural order: bn-back2 before bn-back10
  assert.ok(table.indexOf("bn-back2") < table.indexOf("bn-back10"), table);
  assert.ok(table.includes(`${id.slice(0, 12)}   bn-front `), table);
  same(["network", "ls", "-q"]);
  same(["network", "ls", "--no-trunc"]);
  same(["network", "ls", "-q", "--no-trunc"]);
  same(["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Internal}} {{.IPv6}}"]);
  same(["network", "ls", "--format", "table {{.Name}}\t{{.Labels}}"]);
  assert.equal(same(["network", "ls", "--filter", "label=tier", "--format", "{{.Name}}"]).stdout, "bn-back10\nbn-front\n");
  assert.equal(same(["network", "ls", "-f", "name=bn-back", "-q"]).stdout.split("\n").filter(Boolean).length, 2);
  assert.equal(same(["network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"]).stdout, "bn-back2\nbn-back10\nbn-docker\nbn-front\n");

  const [doc] = JSON.parse(ok(d.berth(["network", "inspect", "bn-front"])).stdout) as { Id: string; Name: string; Internal: boolean; Labels: Record<string, string>; IPAM: { Config: { Subnet: string; Gateway: string }[] } }[];
  const [theirs] = JSON.parse(ok(d.docker(["network", "inspect", "bn-front"])).stdout) as (typeof doc)[];
  assert.deepEqual({ Id: doc!.Id, Name: doc!.Name, Internal: doc!.Internal, Labels: doc!.Labels, IPAM: doc!.IPAM.Config }, { Id: theirs!.Id, Name: theirs!.Name, Internal: theirs!.Internal, Labels: theirs!.Labels, IPAM: theirs!.IPAM.Config });
  assert.deepEqual(doc!.IPAM.Config, [{ Subnet: `${prefixes[0]}.0/24`, Gateway: `${prefixes[0]}.254` }]);
  same(["network", "inspect", "--format", "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", "bn-front", id.slice(0, 12)]);
  same(["network", "inspect", "-f", "{{.Name}}", "bn-front", "no-such-net"]);

  assert.equal(same(["network", "rm", "no-such-net"]).code, 1);
  same(["network", "rm", "-f", "no-such-net"]);
  assert.equal(ok(d.berth(["network", "rm", "bn-back2", "bn-docker"])).stdout, "bn-back2\nbn-docker\n");
  assert.equal(d.docker(["network", "ls", "-q", "--filter", "name=bn-back2"]).stdout, "");
});

test("network connect and disconnect: docker sees berth's endpoint, berth prune removes only unused networks", () => {
  const cid = ok(d.docker(["run", "-d", "--name", "bn-member", "busybox", "sleep", "100000"]), "run -d").stdout.trim();
  ok(d.berth(["network", "connect", "--alias", "web", "bn-front", "bn-member"]), "network connect");
  const members = ok(d.docker(["network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$k}}{{end}}", "bn-front"])).stdout.trim();
  assert.equal(members, cid);
  const attached = ok(d.docker(["inspect", "-f", "{{json .NetworkSettings.Networks}}", "bn-member"])).stdout;
  assert.match(attached, /"bn-front":\{[^}]*"Aliases":\[[^\]]*"web"/);
  same(["network", "connect", "bn-front", "no-such-container"]);

  // bn-front is in use: prune leaves it; bn-back10 is not.
  assert.equal(ok(d.berth(["network", "prune", "-f"])).stdout, "Deleted Networks:\nbn-back10\n\n");
  assert.equal(ok(d.berth(["network", "prune", "-f"])).stdout, "");
  assert.equal(ok(d.docker(["network", "ls", "-q", "--filter", "name=bn-front"])).stdout.trim().length, 12);

  ok(d.berth(["network", "disconnect", "bn-front", "bn-member"]), "network disconnect");
  assert.equal(ok(d.docker(["network", "inspect", "-f", "{{len .Containers}}", "bn-front"])).stdout, "0\n");
  ok(d.docker(["rm", "-f", "bn-member"]));
  // answered "no" (empty stdin): nothing removed
  const asked = d.berth(["network", "prune"], "n\n");
  assert.equal(asked.stdout, "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
  assert.ok(d.docker(["network", "ls", "-q", "--filter", "name=bn-front"]).stdout.trim());
  assert.equal(ok(d.berth(["network", "prune"], "y\n")).stdout.endsWith("Deleted Networks:\nbn-front\n\n"), true);
});

test("volume create, ls (table, -q, --format, --filter), inspect, rm, prune: as docker prints them", () => {
  assert.equal(ok(d.berth(["volume", "create", "--label", "kind=data", "bv-data"])).stdout, "bv-data\n");
  ok(d.berth(["volume", "create", "bv-logs10"]));
  ok(d.berth(["volume", "create", "--name", "bv-logs2"]));
  ok(d.docker(["volume", "create", "bv-docker"]));
  const anonymous = ok(d.berth(["volume", "create"])).stdout.trim();
  assert.match(anonymous, /^[0-9a-f]{64}$/);

  const table = same(["volume", "ls"]).stdout;
  assert.match(table, /^DRIVER +VOLUME NAME\nlocal +/);
  assert.ok(table.indexOf("bv-logs2") < table.indexOf("bv-logs10"), table);
  same(["volume", "ls", "-q"]);
  same(["volume", "ls", "--format", "{{.Name}}: {{.Driver}} {{.Labels}} {{.Scope}}"]);
  same(["volume", "ls", "--format", "table {{.Name}}\t{{.Mountpoint}}"]);
  assert.equal(same(["volume", "ls", "--filter", "label=kind=data", "-q"]).stdout, "bv-data\n");
  assert.equal(same(["volume", "ls", "-f", "name=bv-logs", "--format", "{{.Name}}"]).stdout, "bv-logs2\nbv-logs10\n");

  const [mine] = JSON.parse(ok(d.berth(["volume", "inspect", "bv-data"])).stdout) as Record<string, unknown>[];
  const [theirs] = JSON.parse(ok(d.docker(["volume", "inspect", "bv-data"])).stdout) as Record<string, unknown>[];
  for (const key of ["Name", "Driver", "Mountpoint", "Labels", "Scope", "CreatedAt"]) assert.deepEqual(mine![key], theirs![key], key);
  same(["volume", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Labels}}", "bv-data", "bv-docker"]);
  same(["volume", "inspect", "-f", "{{.Name}}", "bv-data", "no-such-volume"]);

  // a volume in use is refused with the container named; -f on a missing one is quiet
  ok(d.docker(["create", "--name", "bv-user", "-v", "bv-logs2:/logs", "busybox", "true"]));
  same(["volume", "rm", "bv-logs2"]);
  same(["volume", "rm", "no-such-volume"]);
  same(["volume", "rm", "-f", "no-such-volume"]);
  assert.equal(ok(d.berth(["volume", "rm", "bv-docker", anonymous])).stdout, `bv-docker\n${anonymous}\n`);

  const pruned = ok(d.berth(["volume", "prune", "-f", "--filter", "label=kind"])).stdout;
  assert.equal(pruned, "Deleted Volumes:\nbv-data\n\nTotal reclaimed space: 0B\n");
  assert.equal(ok(d.berth(["volume", "prune", "-f", "--filter", "label=kind"])).stdout, "Total reclaimed space: 0B\n");
  ok(d.docker(["rm", "bv-user"]));
  assert.match(ok(d.berth(["volume", "prune", "-f"])).stdout, /^Deleted Volumes:\n(bv-logs2\nbv-logs10\n|bv-logs10\nbv-logs2\n)\nTotal reclaimed space: /);
  assert.equal(d.docker(["volume", "ls", "-q"]).stdout, "");
});

/** A run of `count` consecutive TCP ports nothing on this host listens on. */
function freePortRun(count: number): number {
  const listening = execFileSync("ss", ["-Htanu"], { encoding: "utf8" });
  for (;;) {
    const first = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = Array.from({ length: count }, (_, i) => first + i);
    if (ports.every((p) => !listening.includes(`:${p} `))) return first;
  }
}

test("ps: the PORTS column of a container with -p (remapped, a same-number range, an address, udp) is docker's", () => {
  const base = freePortRun(4);
  const args = ["-p", `${base}:80`, "-p", `${base + 1}:${base + 1}`, "-p", `${base + 2}:${base + 2}`, "-p", `127.0.0.1:${base + 3}:90/udp`];
  ok(d.docker(["run", "-d", "--name", "bn-ports", ...args, "busybox", "sleep", "100000"]), "run -d -p");
  const ports = same(["ps", "--filter", "name=bn-ports", "--format", "{{.Ports}}"]).stdout;
  assert.match(ports, new RegExp(`0\\.0\\.0\\.0:${base + 1}-${base + 2}->${base + 1}-${base + 2}/tcp`));
  assert.match(ports, new RegExp(`0\\.0\\.0\\.0:${base}->80/tcp`));
  assert.match(ports, new RegExp(`127\\.0\\.0\\.1:${base + 3}->90/udp`));
  assert.equal(firstRow(same(["ps", "--filter", "name=bn-ports", "--format", "table {{.Names}}\t{{.Ports}}"]).stdout), `bn-ports   ${ports.trim()}`);
  ok(d.docker(["rm", "-f", "bn-ports"]));
});

const firstRow = (table: string) => table.split("\n")[1];

test("bad input: a --gateway without a --subnet, an empty label key, a bad filter, wrong argument counts", () => {
  const gateway = d.berth(["network", "create", "--gateway", "10.1.2.3", "bn-bad"]);
  assert.equal(gateway.code, 1);
  assert.match(gateway.stderr, /every --gateway needs a --subnet/);
  const label = d.berth(["volume", "create", "--label", "=x", "bv-bad"]);
  assert.equal(label.code, 125);
  assert.match(label.stderr, /"--label" flag: the key is empty/);
  const filter = d.berth(["network", "ls", "--filter", "nonsense"]);
  assert.equal(filter.code, 125);
  assert.match(filter.stderr, /bad format of filter "nonsense"/);
  assert.equal(d.berth(["network", "connect", "bn-only"]).code, 1);
  assert.equal(d.berth(["volume", "create", "a", "b"]).code, 1);
  // nothing was made by any of them
  assert.equal(d.docker(["network", "ls", "-q", "--filter", "name=bn-bad"]).stdout, "");
  assert.equal(d.docker(["volume", "ls", "-q", "--filter", "name=bv-bad"]).stdout, "");
});
