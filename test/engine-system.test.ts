// The Engine API's system endpoints driven by the real docker CLI: info, events (replayed
// with --since/--until, filtered, and live), system df, and login against a real
// docker-registry with htpasswd auth.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { engineHttpText } from "./fixtures/engine-session.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeoArchives } from "./fixtures/archives.ts";
import { TestRegistry, writeHtpasswd } from "./fixtures/registry.ts";

let d: Daemon;
let workdir: string;
let busyboxArchive: string;
let busyboxId: string;
let registry: TestRegistry | undefined;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-engine-system-"));
  const busybox = await buildBusyboxImage();
  busyboxId = busybox.config.digest;
  busyboxArchive = skopeoArchives(join(workdir, "bb"), busybox).dockerArchive;
  d = await startDaemon();
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await registry?.stop();
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

const http = (method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) => engineHttpText(d, method, path, body, headers);

test("docker info shows the engine, the host and the image count", async () => {
  ok(d.docker(["load", "-i", busyboxArchive]), "load");
  const r = ok(d.docker(["info"]), "docker info");
  assert.match(r.stdout, /Server Version:/);
  assert.match(r.stdout, /Storage Driver: overlayfs/);
  assert.match(r.stdout, /Cgroup Driver: cgroupfs/);
  assert.match(r.stdout, /Images: 1/);
  assert.match(r.stdout, /Live Restore Enabled: true/);
  const info = JSON.parse((await http("GET", "/info")).body);
  assert.equal(info.OSType, "linux");
  assert.equal(info.Images, 1);
  assert.equal(info.Containers, 0);
  assert.equal(info.MemTotal, totalmem());
  assert.ok(info.NCPU >= 1 && info.NCPU <= cpus().length);
  assert.equal(info.DockerRootDir, d.root);
  assert.equal(info.IndexServerAddress, "https://index.docker.io/v1/");
  assert.deepEqual(info.Runtimes, { runc: { path: "runc" } });
  assert.equal(info.Swarm.LocalNodeState, "inactive");
  assert.match(info.CgroupVersion, /^[12]$/);
  const fmt = ok(d.docker(["info", "--format", "{{.OSType}}/{{.Driver}}/{{.DefaultRuntime}}"]), "info --format");
  assert.equal(fmt.stdout.trim(), "linux/overlayfs/runc");
});

test("docker events --since --until replays image events in the window, filtered", async () => {
  const since = Math.floor(Date.now() / 1000) - 1;
  ok(d.docker(["tag", "busybox", "ev:1"]), "tag");
  ok(d.docker(["rmi", "ev:1"]), "rmi");
  // A moment after the events: the server replays them, then ends the stream once `until` has passed.
  const until = Math.ceil(Date.now() / 1000);
  const r = ok(d.docker(["events", "--since", String(since), "--until", String(until)]), "events");
  const lines = r.stdout.trim().split("\n");
  const tag = lines.find((l) => / image tag /.test(l));
  const untag = lines.find((l) => / image untag /.test(l));
  assert.ok(tag && tag.includes(busyboxId) && tag.includes("name=ev:1"), r.stdout);
  assert.ok(untag && untag.includes("name=ev:1"), r.stdout);
  assert.ok(lines.indexOf(tag) < lines.indexOf(untag));
  const filtered = ok(d.docker(["events", "--since", String(since), "--until", String(until), "--filter", "event=untag", "--format", "{{.Action}} {{.Actor.Attributes.name}}"]), "filtered events");
  assert.equal(filtered.stdout.trim(), "untag ev:1");
  const none = ok(d.docker(["events", "--since", String(since), "--until", String(until), "--filter", "type=container"]), "container events");
  assert.equal(none.stdout.trim(), "");
  const bad = await http("GET", "/events?since=yesterday-ish");
  assert.equal(bad.status, 400);
  const badFilter = await http("GET", `/events?until=1&filters=${encodeURIComponent(JSON.stringify({ colour: ["red"] }))}`);
  assert.equal(badFilter.status, 400);
  assert.equal(JSON.parse(badFilter.body).message, "Invalid filter 'colour'");
});

test("a live events stream sends its headers at once and each new event as it happens", async () => {
  const received: string[] = [];
  let headersAt = false;
  const req = request({ socketPath: d.dockerSocket, method: "GET", path: `/events?filters=${encodeURIComponent(JSON.stringify({ type: { image: true } }))}` });
  const done = new Promise<void>((resolve, reject) => {
    req.on("response", (res) => {
      headersAt = true;
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers["content-type"], "application/json");
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (chunk: string) => {
        buffer += chunk;
        for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
          received.push(buffer.slice(0, nl).trim());
          buffer = buffer.slice(nl + 1);
        }
        if (received.some((l) => l.includes('"untag"'))) resolve();
      });
      res.on("error", reject);
    });
    req.on("error", (err) => (received.length > 0 ? resolve() : reject(err)));
  });
  req.end();
  while (!headersAt) await new Promise((r) => setTimeout(r, 10));
  ok(d.docker(["tag", "busybox", "live:1"]), "tag");
  ok(d.docker(["rmi", "live:1"]), "rmi");
  await done;
  req.destroy();
  const actions = received.filter(Boolean).map((l) => JSON.parse(l).Action);
  assert.deepEqual(actions, ["tag", "untag"]);
});

test("docker system df counts images and their layers", async () => {
  const r = ok(d.docker(["system", "df"]), "system df");
  const images = r.stdout.split("\n").find((l) => l.startsWith("Images"));
  assert.ok(images, r.stdout);
  assert.match(images, /^Images\s+1\s+0\s+/);
  const df = JSON.parse((await http("GET", "/system/df")).body);
  assert.equal(df.Images.length, 1);
  assert.equal(df.Images[0].Id, busyboxId);
  assert.equal(df.Images[0].Containers, 0);
  assert.ok(df.LayersSize > 500_000 && df.LayersSize === df.Images[0].Size, JSON.stringify(df));
  assert.deepEqual(df.Containers, []);
  assert.deepEqual(df.Volumes, []);
  ok(d.docker(["system", "df", "-v"]), "system df -v");
});

test("docker login checks the credentials with the registry; a wrong password is a 401", async () => {
  const htpasswd = join(workdir, "htpasswd");
  writeHtpasswd(htpasswd, "alice", "s3cret");
  registry = await TestRegistry.start(join(workdir, "registry"), { auth: { htpasswd } });
  const good = ok(d.docker(["login", "-u", "alice", "--password-stdin", registry.host], "s3cret\n"), "login");
  assert.match(good.stdout, /Login Succeeded/);
  const wrong = d.docker(["login", "-u", "alice", "--password-stdin", registry.host], "nope\n");
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /unauthorized/i);
  const raw = await http("POST", "/auth", JSON.stringify({ username: "alice", password: "nope", serveraddress: registry.host }), { "Content-Type": "application/json" });
  assert.equal(raw.status, 401);
  assert.equal(raw.headers["content-type"], "application/json");
  const noUser = await http("POST", "/auth", "{}", { "Content-Type": "application/json" });
  assert.equal(noUser.status, 400);
  const badJson = await http("POST", "/auth", "{not json", { "Content-Type": "application/json" });
  assert.equal(badJson.status, 400);
  // The stored credentials then push through X-Registry-Auth.
  ok(d.docker(["tag", "busybox", `${registry.host}/auth/bb:1`]), "tag");
  const pushed = ok(d.docker(["push", `${registry.host}/auth/bb:1`]), "push with credentials");
  assert.match(pushed.stdout, /1: digest: sha256:/);
  // Without them (logged out) the registry refuses a pull before any progress.
  ok(d.docker(["logout", registry.host]), "logout");
  const refused = d.docker(["pull", `${registry.host}/auth/bb:1`]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unauthorized/i);
  assert.doesNotMatch(refused.stdout, /Pulling from/);
});

test("containers show in info, system df and the container events; rmi of their image is a 409", async () => {
  // Only busybox:latest names the image (the login test pushed it under another tag).
  const images = JSON.parse((await http("GET", "/images/json")).body) as { Id: string; RepoTags: string[] }[];
  for (const tag of images.find((i) => i.Id === busyboxId)!.RepoTags) if (tag !== "busybox:latest") ok(d.docker(["rmi", tag]), `rmi ${tag}`);
  const since = Math.floor(Date.now() / 1000) - 1;
  const id = ok(d.docker(["create", "--name", "sys-c1", "--label", "app=demo", "busybox", "true"]), "create").stdout.trim();
  ok(d.docker(["start", "sys-c1"]), "start");
  assert.equal(ok(d.docker(["wait", "sys-c1"]), "wait").stdout.trim(), "0");
  const info = JSON.parse((await http("GET", "/info")).body);
  assert.equal(info.Containers, 1);
  assert.equal(info.ContainersStopped, 1);
  assert.equal(info.ContainersRunning, 0);
  const df = JSON.parse((await http("GET", "/system/df")).body);
  assert.equal(df.Containers.length, 1);
  assert.equal(df.Containers[0].Id, id);
  assert.equal(df.Containers[0].ImageID, busyboxId);
  assert.ok(df.Containers[0].SizeRw >= 0);
  assert.equal(df.Images[0].Containers, 1);
  const dfText = ok(d.docker(["system", "df"]), "system df").stdout;
  assert.match(dfText, /^Containers\s+1\s+0\s+/m);
  const until = Math.ceil(Date.now() / 1000);
  const events = ok(
    d.docker(["events", "--since", String(since), "--until", String(until), "--filter", "container=sys-c1", "--filter", "label=app=demo", "--format", "{{.Type}} {{.Action}}"]),
    "container events",
  ).stdout;
  assert.match(events, /container create/);
  assert.match(events, /container start/);
  assert.doesNotMatch(events, /image /);
  const rmi = d.docker(["rmi", "busybox"]);
  assert.equal(rmi.code, 1);
  assert.match(rmi.stderr, new RegExp(`container ${id.slice(0, 12)} is using its referenced image ${busyboxId.slice(7, 19)}`));
  ok(d.docker(["rm", "sys-c1"]), "rm");
});
