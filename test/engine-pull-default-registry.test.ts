// `docker pull` (POST /images/create) of a short name when berthd's registry settings name a
// defaultRegistry: the real docker CLI, `berth pull` and `berthctl pull` against a fresh
// daemon and Debian's docker-registry on loopback (the locally built busybox pushed there by
// skopeo). The short name is pulled from that registry and stored under its name, as a
// build's FROM stores it; the Docker Hub name still finds it; mirrors apply.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeo, skopeoArchives } from "./fixtures/archives.ts";
import { TestRegistry, writeHtpasswd } from "./fixtures/registry.ts";
import { engineHttpText } from "./fixtures/engine-session.ts";
import { defaultRegistryArgs } from "./fixtures/build.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon | undefined;
let mirrored: Daemon | undefined;
let guardedDaemon: Daemon | undefined;
let registry: TestRegistry | undefined;
let guarded: TestRegistry | undefined;
let work: string;
let layout: string;

function pushBusybox(ref: string): void {
  const r = skopeo(work, ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${ref}`]);
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-pull-default-"));
  layout = skopeoArchives(join(work, "bb"), await buildBusyboxImage()).layout;
  registry = await TestRegistry.start(join(work, "registry"));
  for (const repo of ["busybox:latest", "foo/bar:1", "viaberth:1", "viactr:1", "mirrored:1"]) pushBusybox(`${registry.host}/${repo}`);
  d = await startDaemon({ args: defaultRegistryArgs(work, registry.host) });
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  await mirrored?.destroy();
  await guardedDaemon?.destroy();
  await registry?.stop();
  await guarded?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const daemon = () => d!;
const imageTags = (of = daemon()) => ok(of.docker(["images", "--format", "{{.Repository}}:{{.Tag}}"]), "images").stdout.split("\n").filter(Boolean).sort();

describe("docker pull of a short name follows the daemon's defaultRegistry", () => {
  test("busybox is pulled from the default registry, named after it, and `busybox` still finds it", () => {
    const host = registry!.host;
    const r = ok(daemon().docker(["pull", "busybox"]), "pull");
    assert.match(r.stdout, /^latest: Pulling from busybox$/m);
    assert.match(r.stdout, /: Pull complete$/m);
    assert.match(r.stdout, /^Digest: sha256:[0-9a-f]{64}$/m);
    assert.match(r.stdout, new RegExp(`^Status: Downloaded newer image for ${host}/busybox:latest$`, "m"));
    assert.ok(imageTags().includes(`${host}/busybox:latest`), imageTags().join(" "));
    assert.ok(!imageTags().includes("busybox:latest"), "not claimed as Docker Hub's");
    const repoTags = JSON.parse(ok(daemon().docker(["image", "inspect", "--format", "{{json .RepoTags}}", "busybox"]), "inspect busybox").stdout) as string[];
    assert.deepEqual(repoTags, [`${host}/busybox:latest`]);
    assert.equal(ok(daemon().docker(["run", "--rm", "busybox", "echo", "from-default"]), "run busybox").stdout, "from-default\n");
    const again = ok(daemon().docker(["pull", "busybox:latest"]), "pull again");
    assert.match(again.stdout, new RegExp(`^Status: Image is up to date for ${host}/busybox:latest$`, "m"));
  });

  test("library/busybox and docker.io/library/busybox are that same busybox (the CLI sends all three alike); foo/bar:1 keeps its path", () => {
    const host = registry!.host;
    for (const name of ["library/busybox", "docker.io/library/busybox:latest"]) {
      const r = ok(daemon().docker(["pull", name]), `pull ${name}`);
      assert.match(r.stdout, new RegExp(`^Status: Image is up to date for ${host}/busybox:latest$`, "m"));
    }
    const foo = ok(daemon().docker(["pull", "foo/bar:1"]), "pull foo/bar:1");
    assert.match(foo.stdout, /^1: Pulling from foo\/bar$/m);
    assert.match(foo.stdout, new RegExp(`Status: Downloaded newer image for ${host}/foo/bar:1`));
    assert.ok(imageTags().includes(`${host}/foo/bar:1`), imageTags().join(" "));
    assert.equal(ok(daemon().docker(["run", "--rm", "foo/bar:1", "echo", "foo"]), "run foo/bar:1").stdout, "foo\n");
  });

  test("a pull by digest of a short name is stored as repository@digest on the default registry", () => {
    const host = registry!.host;
    const digest = /^Digest: (sha256:[0-9a-f]{64})$/m.exec(ok(daemon().docker(["pull", "foo/bar:1"]), "pull").stdout)![1]!;
    const r = ok(daemon().docker(["pull", `foo/bar@${digest}`]), "pull by digest");
    assert.match(r.stdout, new RegExp(`Status: (Downloaded newer image|Image is up to date) for ${host}/foo/bar@${digest}`));
    const digests = ok(daemon().docker(["image", "inspect", "--format", "{{json .RepoDigests}}", "foo/bar:1"]), "inspect").stdout;
    assert.ok(digests.includes(`${host}/foo/bar@${digest}`), digests);
  });

  test("berth pull and berthctl pull resolve a short name the same way", () => {
    const host = registry!.host;
    const viaBerth = ok(daemon().berth(["pull", "viaberth:1"]), "berth pull");
    assert.match(viaBerth.stdout, new RegExp(`Downloaded newer image for ${host}/viaberth:1`));
    assert.ok(imageTags().includes(`${host}/viaberth:1`));
    ok(daemon().berthctl(["pull", "viactr:1"]), "berthctl pull");
    const names = ok(daemon().berthctl(["images", "ls", "-q"]), "berthctl images ls").stdout.split("\n");
    assert.ok(names.includes(`${host}/viactr:1`), names.join(" "));
  });

  test("a short name the default registry lacks is Docker's 404 naming it there; nothing is stored", () => {
    const host = registry!.host;
    const before = imageTags();
    const r = daemon().docker(["pull", "nosuch:1"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`manifest for ${host}/nosuch:1 not found: manifest unknown`));
    assert.deepEqual(imageTags(), before);
    const missing = daemon().docker(["image", "inspect", "nosuch:1"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such image: nosuch:1/);
  });

  test("a name with a registry goes to that registry, not the default one", () => {
    const r = daemon().docker(["pull", "127.0.0.1:1/busybox"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /127\.0\.0\.1:1.*ECONNREFUSED|ECONNREFUSED.*127\.0\.0\.1:1/);
  });

  test("the default registry's mirrors are tried first, and the image is named after the default registry", async () => {
    const config = join(work, "mirrored.json");
    // The default registry itself is unreachable: only its mirror can serve the pull.
    writeFileSync(config, JSON.stringify({ registry: { defaultRegistry: "127.0.0.1:1", mirrors: { "127.0.0.1:1": [`http://${registry!.host}`] } } }));
    mirrored = await startDaemon({ args: ["--config", config] });
    const r = ok(mirrored.docker(["pull", "mirrored:1"]), "pull through the mirror");
    assert.match(r.stdout, /^Status: Downloaded newer image for 127\.0\.0\.1:1\/mirrored:1$/m);
    assert.ok(imageTags(mirrored).includes("127.0.0.1:1/mirrored:1"));
  });

  test("credentials the client meant for Docker Hub are not sent to the default registry; ones for it are", async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, "alice", "s3cret");
    guarded = await TestRegistry.start(join(work, "guarded"), { auth: { htpasswd } });
    const r = skopeo(work, ["copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret", `oci:${layout}:v1`, `docker://${guarded.host}/private:1`]);
    assert.equal(r.code, 0, r.stderr);
    mkdirSync(join(work, "guarded-config"));
    guardedDaemon = await startDaemon({ args: defaultRegistryArgs(join(work, "guarded-config"), guarded.host) });
    const pull = (serveraddress: string) => {
      const auth = Buffer.from(JSON.stringify({ username: "alice", password: "s3cret", serveraddress })).toString("base64url");
      return engineHttpText(guardedDaemon!, "POST", "/v1.41/images/create?fromImage=docker.io%2Flibrary%2Fprivate&tag=1", undefined, { "X-Registry-Auth": auth });
    };
    const refused = await pull("https://index.docker.io/v1/");
    assert.notEqual(refused.status, 200, refused.body);
    assert.match(refused.body, /unauthorized/i);
    assert.deepEqual(imageTags(guardedDaemon), []);
    const allowed = await pull(guarded.host);
    assert.equal(allowed.status, 200, allowed.body);
    assert.doesNotMatch(allowed.body, /errorDetail/);
    assert.match(allowed.body, new RegExp(`Downloaded newer image for ${guarded.host}/private:1`));
    assert.deepEqual(imageTags(guardedDaemon), [`${guarded.host}/private:1`]);
  });
});
