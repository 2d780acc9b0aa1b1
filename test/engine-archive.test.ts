// docker cp (both ways), export and commit against the Engine API with the real docker
// CLI, and raw HTTP for the stat header and the paths and archives that must be refused.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, run, type Daemon } from "./harness.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { tarOf } from "./fixtures/archives.ts";
import { engineConnectionsHeld, engineHttp, eventually, jsonOf, startEngineWithBusybox } from "./fixtures/engine-session.ts";

let d: Daemon;
let work = "";

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-archive-"));
  d = await startEngineWithBusybox();
  ok(d.docker(["run", "-d", "--name", "box", "busybox", "sleep", "100000"]), "docker run -d");
  ok(d.docker(["create", "--name", "idle", "busybox", "cat", "/from-host.txt"]), "docker create");
});

after(async () => {
  try {
    if (d) await removeEveryContainer(d);
  } finally {
    await d?.destroy();
    rmSync(work, { recursive: true, force: true });
  }
});

const tarNames = (tar: Buffer) => run("tar", ["-tf", "-"], tar).stdout.split("\n").filter(Boolean);

test("docker cp copies a file and a directory out of a running container", () => {
  const out = join(work, "out");
  mkdirSync(out);
  ok(d.docker(["cp", "box:/etc/passwd", out]), "cp file out");
  assert.match(readFileSync(join(out, "passwd"), "utf8"), /^root:x:0:0:/);
  ok(d.docker(["cp", "box:/etc", join(out, "etc-copy")]), "cp dir out");
  assert.ok(readdirSync(join(out, "etc-copy")).includes("group"));
  // "dir/." copies the directory's contents, into an existing directory too.
  mkdirSync(join(out, "contents"));
  ok(d.docker(["cp", "box:/etc/.", join(out, "contents")]), "cp dir/. out");
  assert.ok(readdirSync(join(out, "contents")).includes("passwd"));
  // A symlink is copied as a link, unless the path ends in a slash.
  ok(d.docker(["cp", "box:/bin/sh", join(out, "sh-link")]), "cp a symlink");
  assert.ok(lstatSync(join(out, "sh-link")).isSymbolicLink());
  ok(d.docker(["cp", "box:/bin/sh/", join(out, "sh-file")]), "cp a symlink's target");
  assert.ok(lstatSync(join(out, "sh-file")).isFile());
  // To stdout: a tar whose top entry is the path's base name.
  const tar = ok(d.docker(["cp", "box:/bin", "-"]), "cp to stdout");
  const names = tarNames(Buffer.from(tar.stdout, "latin1"));
  assert.ok(names.includes("bin/"), names.join(","));
  assert.ok(names.includes("bin/busybox"));
});

test("docker cp copies into a running container, and into a stopped one that then sees it", () => {
  const file = join(work, "in.txt");
  writeFileSync(file, "from the host\n");
  ok(d.docker(["cp", file, "box:/tmp/cp-in.txt"]), "cp into a running container");
  assert.equal(ok(d.docker(["exec", "box", "cat", "/tmp/cp-in.txt"]), "cat").stdout, "from the host\n");
  ok(d.docker(["cp", file, "idle:/from-host.txt"]), "cp into a created container");
  const started = ok(d.docker(["start", "-a", "idle"]), "start -a");
  assert.equal(started.stdout, "from the host\n");
  // And out of the stopped container again.
  const back = ok(d.docker(["cp", "idle:/from-host.txt", "-"]), "cp out of a stopped container");
  assert.ok(tarNames(Buffer.from(back.stdout, "latin1")).includes("from-host.txt"));
});

test("the stat header carries Go's FileMode bits and a symlink's target", async () => {
  const statOf = async (path: string) => {
    const r = await engineHttp(d, "HEAD", `/v1.41/containers/box/archive?path=${encodeURIComponent(path)}`);
    assert.equal(r.status, 200, path);
    return JSON.parse(Buffer.from(String(r.headers["x-docker-container-path-stat"]), "base64").toString("utf8")) as Record<string, unknown>;
  };
  const etc = await statOf("/etc");
  assert.equal(etc.name, "etc");
  assert.equal(etc.mode, 2 ** 31 + 0o755);
  const passwd = await statOf("/etc/passwd");
  assert.equal(passwd.mode, 0o644);
  assert.equal(passwd.size, readFileSync(join(work, "out", "passwd")).length);
  assert.match(String(passwd.mtime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  const sh = await statOf("/bin/sh");
  assert.equal(sh.mode, 2 ** 27 + 0o777);
  assert.equal(sh.linkTarget, "/bin/busybox");
});

test("a missing path is a 404 that names it", async () => {
  const head = await engineHttp(d, "HEAD", "/v1.41/containers/box/archive?path=/nonexistent");
  assert.equal(head.status, 404);
  const get = await engineHttp(d, "GET", "/v1.41/containers/box/archive?path=/nonexistent");
  assert.equal(get.status, 404);
  assert.equal(jsonOf(get).message, "Could not find the file /nonexistent in container box");
  const r = d.docker(["cp", "box:/nonexistent", work]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Could not find the file \/nonexistent in container box/);
});

test("paths and archives that would leave the container's root are refused, and nothing is written", async () => {
  const hostDir = join(work, "host-target");
  mkdirSync(hostDir);
  // A path that climbs above the root.
  const climbing = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/../../..", await tarOf([{ name: "x.txt", data: "x" }]), { "Content-Type": "application/x-tar" });
  assert.equal(climbing.status, 400);
  assert.match(String(jsonOf(climbing).message), /escapes the root/);
  // An archive whose second entry climbs out: the first is not written either.
  const evil = await tarOf([
    { name: "first-ok.txt", data: "ok" },
    { name: `../../../../../../../..${hostDir}/escaped.txt`, data: "bad" },
  ]);
  const refused = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/tmp", evil, { "Content-Type": "application/x-tar" });
  assert.equal(refused.status, 400);
  assert.match(String(jsonOf(refused).message), /escapes the root/);
  assert.deepEqual(readdirSync(hostDir), []);
  assert.equal(d.docker(["exec", "box", "sh", "-c", "[ -e /tmp/first-ok.txt ]"]).code, 1);
  // A symlink in the container pointing at a host path resolves inside the container.
  const link = await tarOf([{ name: "host-link", type: "symlink", linkname: `/../../../../../../..${hostDir}` }]);
  assert.equal((await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/", link, { "Content-Type": "application/x-tar" })).status, 200);
  const file = join(work, "via-link.txt");
  writeFileSync(file, "must stay inside\n");
  const viaLink = d.docker(["cp", file, "box:/host-link/"]);
  assert.notEqual(viaLink.code, 0, "the link's target does not exist inside the container");
  const throughLink = await tarOf([{ name: "host-link/escaped.txt", data: "bad" }]);
  const written = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/", throughLink, { "Content-Type": "application/x-tar" });
  assert.equal(written.status, 200);
  assert.deepEqual(readdirSync(hostDir), [], "nothing reached the host directory");
  assert.equal(ok(d.docker(["exec", "box", "cat", `${hostDir}/escaped.txt`]), "inside").stdout, "bad");
});

test("noOverwriteDirNonDir refuses to swap a directory for a file; whiteout names and non-tar bodies are refused", async () => {
  const swap = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/&noOverwriteDirNonDir=true", await tarOf([{ name: "etc", data: "not a dir" }]), {
    "Content-Type": "application/x-tar",
  });
  assert.equal(swap.status, 400);
  assert.match(String(jsonOf(swap).message), /cannot overwrite directory "etc" with non-directory "etc"/);
  assert.equal(ok(d.docker(["exec", "box", "sh", "-c", "[ -d /etc ]"]), "etc still a directory").code, 0);
  const whiteout = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/etc", await tarOf([{ name: ".wh.passwd", data: "" }]), { "Content-Type": "application/x-tar" });
  assert.equal(whiteout.status, 400);
  assert.equal(ok(d.docker(["exec", "box", "sh", "-c", "[ -f /etc/passwd ]"]), "passwd kept").code, 0);
  const garbage = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/tmp", Buffer.alloc(1024, 0x41), { "Content-Type": "application/x-tar" });
  assert.equal(garbage.status, 400);
  const notDir = await engineHttp(d, "PUT", "/v1.41/containers/box/archive?path=/etc/passwd", await tarOf([{ name: "x", data: "x" }]), { "Content-Type": "application/x-tar" });
  assert.equal(notDir.status, 400);
  const noPath = await engineHttp(d, "GET", "/v1.41/containers/box/archive");
  assert.equal(noPath.status, 400);
  const noContainer = await engineHttp(d, "GET", "/v1.41/containers/nope/archive?path=/");
  assert.equal(noContainer.status, 404);
});

test("docker export writes the container's whole filesystem as a tar", () => {
  const file = join(work, "export.tar");
  ok(d.docker(["export", "-o", file, "box"]), "docker export");
  const names = tarNames(readFileSync(file));
  for (const expected of ["bin/", "bin/busybox", "bin/sh", "etc/passwd", "tmp/cp-in.txt"]) assert.ok(names.includes(expected), `${expected} in ${names.join(",")}`);
  assert.equal(names.filter((n) => n.startsWith("/") || n.includes("..")).length, 0);
});

test("docker commit makes an image a new container runs with the change, --change applied", () => {
  ok(d.docker(["exec", "box", "sh", "-c", "echo committed > /committed.txt && rm /etc/group"]), "change the container");
  const commit = ok(d.docker(["commit", "-m", "a message", "-a", "tester", "-c", "ENV GREETING=hello", "-c", 'CMD ["cat", "/committed.txt"]', "box", "mine/committed:v1"]), "docker commit");
  assert.match(commit.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  const ran = ok(d.docker(["run", "--rm", "mine/committed:v1"]), "run the committed image's CMD");
  assert.equal(ran.stdout, "committed\n");
  const env = ok(d.docker(["run", "--rm", "mine/committed:v1", "sh", "-c", 'echo "$GREETING"; [ -e /etc/group ] || echo group-gone']), "run with a command");
  assert.equal(env.stdout, "hello\ngroup-gone\n");
  // The original container runs on (it was paused only while its changes were read).
  assert.equal(ok(d.docker(["exec", "box", "true"]), "exec after commit").code, 0);
  // A stopped container commits from its snapshot alone.
  ok(d.docker(["commit", "idle", "mine/idle:v1"]), "commit a stopped container");
  assert.equal(ok(d.docker(["run", "--rm", "mine/idle:v1"]), "run it").stdout, "from the host\n");
});

test("commit refuses bad changes and references before doing anything; an unknown container is a 404", async () => {
  const badChange = d.docker(["commit", "-c", "RUN rm -rf /", "box", "mine/bad:v1"]);
  assert.notEqual(badChange.code, 0);
  assert.match(badChange.stderr, /RUN is not a valid change command/);
  const badRef = await engineHttp(d, "POST", "/v1.41/commit?container=box&repo=Not_Valid", "");
  assert.equal(badRef.status, 400);
  assert.match(String(jsonOf(badRef).message), /invalid reference format/);
  const unknown = await engineHttp(d, "POST", "/v1.41/commit?container=nope&repo=x", "");
  assert.equal(unknown.status, 404);
  assert.equal(jsonOf(unknown).message, "No such container: nope");
  assert.ok(!existsSync(join(d.state, "engine", "uploads")) || readdirSync(join(d.state, "engine", "uploads")).length === 0, "no upload spool left");
});

test("copies, exports and commits are container events", () => {
  const since = (Date.now() / 1000 - 1).toFixed(3);
  const file = join(work, "event.txt");
  writeFileSync(file, "e\n");
  ok(d.docker(["cp", file, "box:/tmp/"]), "cp in");
  ok(d.docker(["cp", "box:/tmp/event.txt", work]), "cp out");
  ok(d.docker(["export", "-o", join(work, "events-export.tar"), "box"]), "export");
  const id = ok(d.docker(["commit", "-m", "evented", "box", "mine/evented:v1"]), "commit").stdout.trim();
  const until = (Date.now() / 1000 + 0.2).toFixed(3);
  const r = ok(d.docker(["events", "--since", since, "--until", until, "--filter", "container=box", "--format", "{{.Action}}|{{index .Actor.Attributes \"imageID\"}}|{{index .Actor.Attributes \"comment\"}}"]), "docker events");
  const lines = r.stdout.trim().split("\n");
  const actions = lines.map((l) => l.split("|")[0]);
  for (const action of ["extract-to-dir", "archive-path", "export", "commit"]) assert.ok(actions.includes(action), `${action} in ${actions.join(",")}`);
  // The last commit event is this test's: the window's slack second may hold the previous test's commit of box.
  const commit = lines.filter((l) => l.startsWith("commit|")).at(-1)!.split("|");
  assert.equal(commit[1], id);
  assert.equal(commit[2], "evented");
});

test("a commit without a name is an untagged image; a commit to a taken name leaves the old image untagged", () => {
  const untagged = ok(d.docker(["commit", "box"]), "commit without a repository").stdout.trim();
  const listed = ok(d.docker(["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]), "images").stdout;
  assert.match(listed, new RegExp(`${untagged} <none>:<none>`));
  assert.equal(ok(d.docker(["run", "--rm", untagged, "cat", "/committed.txt"]), "run by image id").stdout, "committed\n");
  const first = ok(d.docker(["commit", "box", "mine/moved:v1"]), "first commit").stdout.trim();
  ok(d.docker(["exec", "box", "sh", "-c", "echo second > /second.txt"]), "change again");
  const second = ok(d.docker(["commit", "box", "mine/moved:v1"]), "second commit").stdout.trim();
  assert.notEqual(second, first);
  const after = ok(d.docker(["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]), "images").stdout;
  assert.match(after, new RegExp(`${second} mine/moved:v1`));
  assert.match(after, new RegExp(`${first} <none>:<none>`));
});

test("no connection to docker.sock stays open once its client is gone", async () => {
  // Every client above has exited; a hijacked or errored connection the engine forgot to read would still be here.
  await eventually("the engine's connections to close", () => (engineConnectionsHeld(d.pid!, d.dockerSocket) === 0 ? true : undefined), 5_000);
});
