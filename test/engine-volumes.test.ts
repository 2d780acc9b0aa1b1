// Volumes through the Engine API, driven by the real docker CLI (and raw HTTP where the
// exact status and message matter): create (idempotent), ls with filters, inspect, rm
// (in use refused with Docker's 409), prune, and bad input leaving nothing behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon } from "./harness.ts";
import { api, removeEveryContainer } from "./engine-net-helpers.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { EngineStore, initialState, type ContainerRecord } from "../services/engine/store.ts";

let d: Daemon;
let work: string;
before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-volumes-"));
  d = await startEngineWithBusybox();
});
after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const ls = (...filters: string[]) =>
  ok(d.docker(["volume", "ls", "-q", ...filters.flatMap((f) => ["--filter", f])]), "volume ls").stdout.trim().split("\n").filter(Boolean).sort();

test("volume create makes a directory under the root; creating the name again returns the same volume", async () => {
  assert.equal(ok(d.docker(["volume", "create", "--label", "tier=db", "--label", "keep", "data1"])).stdout.trim(), "data1");
  const [inspected] = JSON.parse(ok(d.docker(["volume", "inspect", "data1"])).stdout);
  assert.equal(inspected.Name, "data1");
  assert.equal(inspected.Driver, "local");
  assert.equal(inspected.Scope, "local");
  assert.deepEqual(inspected.Labels, { tier: "db", keep: "" });
  assert.equal(inspected.Mountpoint, join(d.root, "volumes", "data1", "_data"));
  assert.ok(existsSync(inspected.Mountpoint));
  assert.match(inspected.CreatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const again = await api(d, "POST", "/v1.41/volumes/create", { Name: "data1", Labels: { other: "x" } });
  assert.equal(again.status, 201);
  assert.deepEqual(again.json, inspected, "the existing volume, unchanged");
});

test("an anonymous volume gets a 64-hex name", async () => {
  const r = await api(d, "POST", "/volumes/create", {});
  assert.equal(r.status, 201);
  assert.match(r.json.Name, /^[0-9a-f]{64}$/);
  assert.equal((await api(d, "DELETE", `/volumes/${r.json.Name}`)).status, 204);
});

test("volume ls filters by name, label, driver and dangling", async () => {
  ok(d.docker(["volume", "create", "--label", "tier=web", "web1"]));
  ok(d.docker(["volume", "create", "web2"]));
  assert.deepEqual(ls(), ["data1", "web1", "web2"]);
  assert.match(ok(d.docker(["volume", "ls"])).stdout, /^DRIVER\s+VOLUME NAME\nlocal\s+data1\n/);
  assert.deepEqual(ls("name=web"), ["web1", "web2"]);
  assert.deepEqual(ls("label=tier"), ["data1", "web1"]);
  assert.deepEqual(ls("label=tier=web"), ["web1"]);
  assert.deepEqual(ls("label=tier=web", "name=web"), ["web1"]);
  assert.deepEqual(ls("driver=local"), ["data1", "web1", "web2"]);
  assert.deepEqual(ls("dangling=true"), ["data1", "web1", "web2"]);
  assert.deepEqual(ls("dangling=false"), []);
  // the list form older clients send
  const legacy = await api(d, "GET", `/volumes?filters=${encodeURIComponent(JSON.stringify({ label: ["tier=db"] }))}`);
  assert.deepEqual(legacy.json.Volumes.map((v: { Name: string }) => v.Name), ["data1"]);
  assert.equal(legacy.json.Warnings, null);
  const bad = await api(d, "GET", `/volumes?filters=${encodeURIComponent(JSON.stringify({ colour: ["red"] }))}`);
  assert.equal(bad.status, 400);
  assert.equal(bad.json.message, "Invalid filter 'colour'");
});

test("inspect and rm of a missing volume are Docker's 404", async () => {
  const r = await api(d, "GET", "/v1.41/volumes/nosuch");
  assert.equal(r.status, 404);
  assert.equal(r.json.message, "get nosuch: no such volume");
  const cli = d.docker(["volume", "inspect", "nosuch"]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /no such volume/i);
  assert.equal((await api(d, "DELETE", "/volumes/nosuch")).status, 404);
  assert.equal((await api(d, "DELETE", "/volumes/nosuch?force=1")).status, 204, "force: a missing volume is no error");
});

test("bad input: a name with a slash, an unknown driver, driver options, malformed JSON — nothing is created", async () => {
  const before = readdirSync(join(d.root, "volumes")).sort();
  const slash = await api(d, "POST", "/volumes/create", { Name: "a/b" });
  assert.equal(slash.status, 400);
  assert.match(slash.json.message, /^create a\/b: "a\/b" includes invalid characters for a local volume name, only "\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]" are allowed/);
  const cli = d.docker(["volume", "create", "x/y"]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /includes invalid characters for a local volume name/);
  const driver = await api(d, "POST", "/volumes/create", { Name: "v9", Driver: "nfs-magic" });
  assert.equal(driver.status, 404);
  assert.match(driver.json.message, /plugin "nfs-magic" not found/);
  const opts = await api(d, "POST", "/volumes/create", { Name: "v9", DriverOpts: { type: "nfs" } });
  assert.equal(opts.status, 400);
  assert.equal((await api(d, "POST", "/volumes/create", "{nope")).status, 400);
  assert.equal((await api(d, "POST", "/volumes/create", { Name: 7 })).status, 400);
  assert.deepEqual(readdirSync(join(d.root, "volumes")).sort(), before);
  assert.deepEqual(ls(), ["data1", "web1", "web2"]);
});

test("a volume a container references cannot be removed or pruned (409 naming the container)", async () => {
  // A container record as the engine keeps it, referencing data1 by a bind.
  const id = "c".repeat(64);
  const record: ContainerRecord = {
    Id: id,
    Name: "/uses-data1",
    Created: new Date().toISOString(),
    Path: "true",
    Args: [],
    Config: { Image: "busybox" },
    HostConfig: { Binds: ["data1:/data"] },
    Image: "sha256:" + "0".repeat(64),
    State: initialState(),
    RestartCount: 0,
    LogPath: "",
  };
  const store = new EngineStore(d.root);
  try {
    store.insert(record);
    const r = await api(d, "DELETE", "/v1.41/volumes/data1");
    assert.equal(r.status, 409);
    assert.equal(r.json.message, `remove data1: volume is in use - [${id}]`);
    assert.equal((await api(d, "DELETE", "/volumes/data1?force=1")).status, 409, "force does not remove a volume in use");
    assert.deepEqual(ls("dangling=false"), ["data1"]);
    const pruned = await api(d, "POST", `/volumes/prune?filters=${encodeURIComponent(JSON.stringify({ label: { tier: true } }))}`);
    assert.deepEqual(pruned.json.VolumesDeleted, ["web1"], "data1 is in use; web2 has no tier label");
    assert.ok(existsSync(join(d.root, "volumes", "data1", "_data")));
  } finally {
    store.delete(id);
    store.close();
  }
});

test("rm removes the data; prune removes every unused volume and counts the space", async () => {
  writeFileSync(join(d.root, "volumes", "web2", "_data", "blob"), Buffer.alloc(64 * 1024, 1));
  ok(d.docker(["volume", "rm", "data1"]));
  assert.ok(!existsSync(join(d.root, "volumes", "data1")));
  const pruned = await api(d, "POST", "/volumes/prune");
  assert.equal(pruned.status, 200);
  assert.deepEqual(pruned.json.VolumesDeleted, ["web2"]);
  assert.ok(pruned.json.SpaceReclaimed >= 64 * 1024, `reclaimed ${pruned.json.SpaceReclaimed}`);
  assert.deepEqual(ls(), []);
  const empty = ok(d.docker(["volume", "prune", "-f"])).stdout;
  assert.match(empty, /Total reclaimed space: 0B/);
  assert.deepEqual(readdirSync(join(d.root, "volumes")), []);
});

// ---- volumes in containers ---------------------------------------------------------------

test("data written to a named volume is there in a new container after the first is removed", () => {
  ok(d.docker(["run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo persisted > /data/file"]), "write");
  const [volume] = JSON.parse(ok(d.docker(["volume", "inspect", "keep"])).stdout);
  assert.equal(volume.Name, "keep", "-v made the volume");
  assert.equal(ok(d.docker(["run", "--rm", "-v", "keep:/data:ro", "busybox", "cat", "/data/file"]), "read").stdout, "persisted\n");
  const ro = d.docker(["run", "--rm", "-v", "keep:/data:ro", "busybox", "sh", "-c", "echo x > /data/other"]);
  assert.notEqual(ro.code, 0);
  assert.match(ro.stderr, /Read-only file system/);
});

test("a volume used by a container is refused removal with Docker's 409; container inspect lists it", async () => {
  const id = ok(d.docker(["create", "--name", "holder", "-v", "keep:/data", "busybox", "true"])).stdout.trim();
  const r = await api(d, "DELETE", "/volumes/keep");
  assert.equal(r.status, 409);
  assert.equal(r.json.message, `remove keep: volume is in use - [${id}]`);
  const cli = d.docker(["volume", "rm", "keep"]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /volume is in use/);
  const [info] = JSON.parse(ok(d.docker(["inspect", "holder"])).stdout);
  const mount = info.Mounts.find((m: { Destination: string }) => m.Destination === "/data");
  assert.deepEqual({ Type: mount.Type, Name: mount.Name, Source: mount.Source, RW: mount.RW }, { Type: "volume", Name: "keep", Source: join(d.root, "volumes", "keep", "_data"), RW: true });
  assert.deepEqual(ls("dangling=false"), ["keep"]);
  const df = (await api(d, "GET", "/system/df")).json;
  const usage = df.Volumes.find((v: { Name: string }) => v.Name === "keep").UsageData;
  assert.equal(usage.RefCount, 1);
  assert.ok(usage.Size > 0, "the file written earlier counts");
  assert.match(ok(d.docker(["system", "df"])).stdout, /Local Volumes\s+1\s+1\s+/);
  ok(d.docker(["rm", "holder"]));
  ok(d.docker(["volume", "rm", "keep"]));
});

test("a bind mount :ro refuses writes; a --mount bind source that does not exist is Docker's error", () => {
  const dir = join(work, "bind");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "in"), "from-host\n");
  const r = d.docker(["run", "--rm", "-v", `${dir}:/host:ro`, "busybox", "sh", "-c", "cat /host/in; echo x > /host/out"]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, "from-host\n");
  assert.match(r.stderr, /Read-only file system/);
  assert.ok(!existsSync(join(dir, "out")));
  const missing = d.docker(["run", "--rm", "--mount", `type=bind,source=${join(work, "nope")},target=/x`, "busybox", "true"]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /bind source path does not exist/);
});

test("anonymous volumes: made for the container, kept by rm, removed by rm -v", () => {
  const before = ls();
  const a = ok(d.docker(["create", "-v", "/anon", "busybox", "true"])).stdout.trim();
  const [info] = JSON.parse(ok(d.docker(["inspect", a])).stdout);
  const name = info.Mounts.find((m: { Destination: string }) => m.Destination === "/anon").Name as string;
  assert.match(name, /^[0-9a-f]{64}$/);
  assert.deepEqual(ls(), [...before, name].sort());
  ok(d.docker(["rm", "-v", a]));
  assert.deepEqual(ls(), before, "rm -v removed it");
  const b = ok(d.docker(["create", "--mount", "type=volume,target=/anon2", "busybox", "true"])).stdout.trim();
  const kept = JSON.parse(ok(d.docker(["inspect", b])).stdout)[0].Mounts.find((m: { Destination: string }) => m.Destination === "/anon2").Name as string;
  ok(d.docker(["rm", b]));
  assert.deepEqual(ls(), [...before, kept].sort(), "rm without -v keeps it");
  ok(d.docker(["volume", "rm", kept]));
});

test("bad input in container create: a volume name with a slash-free but invalid name, a duplicate mount point", async () => {
  const bad = await api(d, "POST", "/containers/create", { Image: "busybox", HostConfig: { Binds: ["-bad:/data"] } });
  assert.equal(bad.status, 400);
  assert.match(bad.json.message, /includes invalid characters for a local volume name/);
  const dup = await api(d, "POST", "/containers/create", { Image: "busybox", HostConfig: { Binds: ["v1:/data", "v2:/data"] } });
  assert.equal(dup.status, 400);
  assert.match(dup.json.message, /Duplicate mount point: \/data/);
  assert.deepEqual(ls().filter((n) => n === "v1" || n === "v2"), [], "nothing half-created");
});

test("a new volume is filled from the image's content at its mount point (not with nocopy, not once it has data)", () => {
  // /bin holds busybox and its links: the command itself proves the copy
  const listed = ok(d.docker(["run", "--rm", "-v", "binvol:/bin", "busybox", "ls", "/bin"]), "run on a copied /bin").stdout.split("\n");
  assert.ok(listed.includes("busybox") && listed.includes("sh"));
  assert.ok(existsSync(join(d.root, "volumes", "binvol", "_data", "busybox")));
  const empty = d.docker(["run", "--rm", "-v", "emptybin:/bin:nocopy", "busybox", "ls"]);
  assert.notEqual(empty.code, 0, "nocopy leaves /bin empty");
  assert.deepEqual(readdirSync(join(d.root, "volumes", "emptybin", "_data")), []);
  // an existing volume with data is mounted as it is
  ok(d.docker(["run", "--rm", "-v", "keep2:/data", "busybox", "sh", "-c", "echo mine > /data/only"]));
  assert.notEqual(d.docker(["run", "--rm", "-v", "keep2:/bin", "busybox", "ls"]).code, 0, "/bin is the volume's one file, nothing copied in");
  assert.deepEqual(readdirSync(join(d.root, "volumes", "keep2", "_data")), ["only"]);
  ok(d.docker(["volume", "rm", "binvol", "emptybin", "keep2"]));
});

test("--volumes-from mounts another container's volumes and binds at the same paths; :ro makes them read-only", async () => {
  const hostDir = join(work, "from-host");
  mkdirSync(hostDir);
  writeFileSync(join(hostDir, "marker"), "from the host\n");
  ok(d.docker(["run", "-d", "--name", "vsource", "-v", "vfrom:/data", "-v", `${hostDir}:/hostdir`, "busybox", "sleep", "300"]), "run the source");
  const r = ok(d.docker(["run", "--rm", "--volumes-from", "vsource", "busybox", "sh", "-c", "echo written > /data/f && cat /hostdir/marker"]), "volumes-from");
  assert.equal(r.stdout, "from the host\n");
  assert.equal(ok(d.docker(["exec", "vsource", "cat", "/data/f"])).stdout, "written\n", "the same volume, seen by the source");
  const ro = d.docker(["run", "--rm", "--volumes-from", "vsource:ro", "busybox", "sh", "-c", "echo again > /data/g"]);
  assert.notEqual(ro.code, 0);
  assert.match(ro.stderr, /Read-only file system/);
  const missing = await api(d, "POST", "/containers/create", { Image: "busybox", Cmd: ["true"], HostConfig: { VolumesFrom: ["no-such-source"] } });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.message, "No such container: no-such-source");
  const badMode = await api(d, "POST", "/containers/create", { Image: "busybox", Cmd: ["true"], HostConfig: { VolumesFrom: ["vsource:rx"] } });
  assert.equal(badMode.status, 400);
  ok(d.docker(["rm", "-f", "vsource"]));
});
