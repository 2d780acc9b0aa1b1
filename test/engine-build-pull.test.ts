// FROM, COPY --from=<image> and an ONBUILD base that the store does not have are pulled by
// the build, through the real docker CLI's classic builder (DOCKER_BUILDKIT=0) against a
// fresh daemon and Debian's docker-registry on loopback (the locally built busybox pushed
// there by skopeo): the pull's progress in the build's stream as it comes, `--pull` re-resolving a tag
// that moved, credentials from `docker login` (X-Registry-Config), and failed pulls
// reported at their step with nothing left behind.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { request } from "node:http";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon, type RunResult } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeo, skopeoArchives } from "./fixtures/archives.ts";
import { TestRegistry, writeHtpasswd } from "./fixtures/registry.ts";
import { buildLeftovers, classicBuild, cachedSteps, defaultRegistryArgs, nothingLeft, writeContext } from "./fixtures/build.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon | undefined;
let registry: TestRegistry | undefined;
let guarded: TestRegistry | undefined;
let work: string;
let layout: string;

/** The locally built busybox copied into `ref` (a docker:// reference on a loopback registry). */
function pushBusybox(ref: string, creds?: string): void {
  const r = skopeo(work, ["copy", "--dest-tls-verify=false", ...(creds ? ["--dest-creds", creds] : []), `oci:${layout}:v1`, `docker://${ref}`]);
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-build-pull-"));
  layout = skopeoArchives(join(work, "bb"), await buildBusyboxImage()).layout;
  registry = await TestRegistry.start(join(work, "registry"));
  pushBusybox(`${registry.host}/busybox:latest`);
  pushBusybox(`${registry.host}/copysrc:1`);
  pushBusybox(`${registry.host}/shortname:1`);
  // A fresh daemon: none of the registry's images is in its store; short names go to the registry.
  d = await startDaemon({ args: defaultRegistryArgs(work, registry.host) });
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  await registry?.stop();
  await guarded?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const daemon = () => d!;
const build = (dir: string, args: string[]): RunResult => classicBuild(daemon(), dir, args);
const context = (name: string, files: Record<string, string>) => writeContext(work, name, files);
const imageTags = () => ok(daemon().docker(["images", "--format", "{{.Repository}}:{{.Tag}}"]), "images").stdout.split("\n").filter(Boolean).sort();

describe("docker build pulls what the store does not have", () => {
  test("FROM a registry image not in the store pulls it within the FROM step, then builds", () => {
    const host = registry!.host;
    assert.ok(!imageTags().includes(`${host}/busybox:latest`), "the base is not in the store yet");
    const dir = context("from", { Dockerfile: `FROM ${host}/busybox\nRUN echo built > /f\nCMD ["cat", "/f"]\n` });
    const r = ok(build(dir, ["-t", "pulled:1"]), "build");
    const out = r.stdout;
    // The pull runs while the build plans (its ONBUILD triggers decide the steps), and its
    // status lines are streamed as they come: before the first step, not replayed later.
    const step1 = out.indexOf(`Step 1/3 : FROM ${host}/busybox`);
    const pulling = out.indexOf("latest: Pulling from busybox");
    const status = out.indexOf(`Status: Downloaded newer image for ${host}/busybox:latest`);
    const step2 = out.indexOf("Step 2/3 : RUN echo built > /f");
    assert.ok(pulling >= 0 && pulling < status && status < step1 && step1 < step2, out);
    assert.equal(out.split("latest: Pulling from busybox").length, 2, "shown once");
    assert.match(out, /: Pull complete$/m);
    assert.match(out, /^Digest: sha256:[0-9a-f]{64}$/m);
    assert.match(out.slice(step1, step2), /^ ---> [0-9a-f]{12}$/m);
    assert.equal(ok(daemon().docker(["run", "--rm", "pulled:1"]), "run").stdout, "built\n");
    assert.ok(imageTags().includes(`${host}/busybox:latest`), "the pulled base is named as docker pull names it");
    // Present now: the next build neither pulls nor redoes a step.
    const again = ok(build(dir, ["-t", "pulled:1"]), "rebuild");
    assert.doesNotMatch(again.stdout, /Pulling from/);
    assert.deepEqual(cachedSteps(again.stdout), [2, 3]);
  });

  test("--pull re-resolves the tag: a newer image in the registry is pulled and built on", () => {
    const host = registry!.host;
    const dir = context("repull", { Dockerfile: `FROM ${host}/busybox\nRUN test -e /f && echo has-f || echo no-f\n` });
    const unchanged = ok(build(dir, ["--pull", "-t", "repull:1"]), "build --pull, tag unchanged");
    assert.match(unchanged.stdout, new RegExp(`Status: Image is up to date for ${host}/busybox:latest`));
    assert.match(unchanged.stdout, /^no-f$/m);
    // The tag moves to an image that has /f (the one the first test built).
    ok(daemon().docker(["tag", "pulled:1", `${host}/busybox:latest`]), "tag");
    ok(daemon().docker(["push", `${host}/busybox:latest`]), "push the newer base");
    ok(daemon().docker(["tag", `${host}/busybox@${pushedDigestOf(unchanged.stdout)}`, `${host}/busybox:latest`]), "local tag back to the old base");
    const stale = ok(build(dir, ["-t", "repull:2"]), "build without --pull");
    assert.doesNotMatch(stale.stdout, /Pulling from/);
    assert.deepEqual(cachedSteps(stale.stdout), [2], "the old base, as the store has it");
    const fresh = ok(build(dir, ["--pull", "-t", "repull:3"]), "build --pull");
    assert.match(fresh.stdout, new RegExp(`Status: Downloaded newer image for ${host}/busybox:latest`));
    assert.deepEqual(cachedSteps(fresh.stdout), []);
    assert.match(fresh.stdout, /^has-f$/m);
  });

  test("COPY --from=<registry image> pulls that image too", () => {
    const host = registry!.host;
    assert.ok(!imageTags().includes(`${host}/copysrc:1`));
    const dir = context("copyfrom", { Dockerfile: `FROM ${host}/busybox AS base\nCOPY --from=${host}/copysrc:1 /bin/busybox /copied/busybox\nCMD ["/copied/busybox", "echo", "copied"]\n` });
    const r = ok(build(dir, ["-t", "copied:1"]), "build");
    const step2 = r.stdout.indexOf(`Step 2/3 : COPY --from=${host}/copysrc:1`);
    const pulled = r.stdout.indexOf(`Status: Downloaded newer image for ${host}/copysrc:1`);
    assert.ok(step2 >= 0 && pulled > step2, r.stdout);
    assert.match(r.stdout, /1: Pulling from copysrc/);
    assert.equal(ok(daemon().docker(["run", "--rm", "copied:1"]), "run").stdout, "copied\n");
  });

  test("a short name is pulled from the daemon's default registry and stored under that registry's name", () => {
    const host = registry!.host;
    const dir = context("short", { Dockerfile: "FROM shortname:1\nCMD [\"echo\", \"short\"]\n" });
    const r = ok(build(dir, ["-t", "short:1"]), "build");
    assert.match(r.stdout, /^1: Pulling from shortname$/m);
    assert.match(r.stdout, new RegExp(`Status: Downloaded newer image for ${host}/shortname:1`));
    assert.ok(imageTags().includes(`${host}/shortname:1`));
    assert.equal(ok(daemon().docker(["run", "--rm", "short:1"]), "run").stdout, "short\n");
    const again = ok(build(dir, ["-t", "short:1"]), "rebuild");
    assert.doesNotMatch(again.stdout, /Pulling from/, "found under the registry's name");
    assert.deepEqual(cachedSteps(again.stdout), [2]);
  });

  test("an ONBUILD base in the registry is pulled, and its triggers run", () => {
    const host = registry!.host;
    const baseDir = context("onbuild-base", { Dockerfile: `FROM ${host}/busybox\nONBUILD RUN echo triggered > /t\n` });
    ok(build(baseDir, ["-t", `${host}/onbuild:1`]), "build the base");
    ok(daemon().docker(["push", `${host}/onbuild:1`]), "push it");
    ok(daemon().docker(["rmi", `${host}/onbuild:1`]), "rmi it");
    const dir = context("onbuild-child", { Dockerfile: `FROM ${host}/onbuild:1\nCMD ["cat", "/t"]\n` });
    const r = ok(build(dir, ["-t", "child:1"]), "build on it");
    const step1 = r.stdout.indexOf(`Step 1/2 : FROM ${host}/onbuild:1`);
    const pulled = r.stdout.indexOf(`Status: Downloaded newer image for ${host}/onbuild:1`);
    const trigger = r.stdout.indexOf("# Executing 1 build trigger");
    assert.ok(pulled >= 0 && pulled < step1 && step1 < trigger, r.stdout);
    assert.equal(ok(daemon().docker(["run", "--rm", "child:1"]), "run").stdout, "triggered\n");
  });

  test("a repository the registry does not have fails the FROM step with its error; nothing is left", () => {
    const host = registry!.host;
    const before = imageTags();
    const r = build(context("missing", { Dockerfile: `FROM ${host}/nothere\nRUN true\n` }), []);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^Step 1/2 : FROM ${host}/nothere$`, "m"));
    assert.match(r.stderr, new RegExp(`manifest for ${host}/nothere:latest not found: manifest unknown`));
    assert.doesNotMatch(r.stdout, /Step 2\/2/);
    assert.deepEqual(buildLeftovers(daemon()), nothingLeft);
    assert.deepEqual(imageTags(), before);
  });

  test("an unreachable registry fails the FROM step with the connection error; nothing is left", () => {
    const before = imageTags();
    const r = build(context("unreachable", { Dockerfile: "FROM 127.0.0.1:1/busybox\n" }), []);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /127\.0\.0\.1:1.*ECONNREFUSED|ECONNREFUSED.*127\.0\.0\.1:1/);
    assert.deepEqual(buildLeftovers(daemon()), nothingLeft);
    assert.deepEqual(imageTags(), before);
  });

  test("a malformed X-Registry-Config header is a 400 naming it, before any step; nothing is left", async () => {
    const dir = context("bad-config", { Dockerfile: `FROM ${registry!.host}/busybox\n` });
    const b64 = (text: string) => Buffer.from(text).toString("base64url");
    const cases: [string, string][] = [
      ["%%%", "invalid X-Registry-Config header: not base64-encoded JSON"],
      [b64("[1]"), "invalid X-Registry-Config header: not a JSON object"],
      [b64(JSON.stringify({ "127.0.0.1:5000": "alice" })), "invalid X-Registry-Config header: the entry for 127.0.0.1:5000 is not a JSON object"],
    ];
    for (const [header, message] of cases) {
      const reply = await postBuild(dir, { "X-Registry-Config": header });
      assert.equal(reply.status, 400, reply.body);
      assert.equal((JSON.parse(reply.body) as { message: string }).message, message);
    }
    assert.deepEqual(buildLeftovers(daemon()), nothingLeft);
    // A well-formed one without this registry: anonymous, as without the header.
    const anonymous = await postBuild(dir, { "X-Registry-Config": b64(JSON.stringify({ "https://index.docker.io/v1/": { username: "u", password: "p" } })) });
    assert.equal(anonymous.status, 200);
    assert.match(anonymous.body, /Successfully built/);
    assert.deepEqual(readdirSync(join(daemon().root, "engine", "builds")), []);
  });

  test("credentials from docker login reach the registry (X-Registry-Config); without them the pull is refused", async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, "alice", "s3cret");
    guarded = await TestRegistry.start(join(work, "guarded"), { auth: { htpasswd } });
    pushBusybox(`${guarded.host}/private:1`, "alice:s3cret");
    const dir = context("auth", { Dockerfile: `FROM ${guarded.host}/private:1\nCMD ["echo", "private"]\n` });
    const refused = build(dir, []);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /unauthorized/i);
    assert.deepEqual(buildLeftovers(daemon()), nothingLeft);
    ok(daemon().docker(["login", "-u", "alice", "--password-stdin", guarded.host], "s3cret\n"), "login");
    const r = ok(build(dir, ["-t", "private:1"]), "build with credentials");
    assert.match(r.stdout, new RegExp(`Status: Downloaded newer image for ${guarded.host}/private:1`));
    assert.equal(ok(daemon().docker(["run", "--rm", "private:1"]), "run").stdout, "private\n");
  });
});

/** POST /build with `dir` as the tar context and these headers, as raw HTTP. */
function postBuild(dir: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const tar = spawnSync("tar", ["-c", "-C", dir, "."]);
  assert.equal(tar.status, 0, String(tar.stderr));
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: daemon().dockerSocket, method: "POST", path: "/v1.41/build", headers: { "Content-Type": "application/x-tar", ...headers } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end(tar.stdout);
  });
}

/** The digest a pull's stream names. */
function pushedDigestOf(output: string): string {
  const m = /^Digest: (sha256:[0-9a-f]{64})$/m.exec(output);
  assert.ok(m, output);
  return m[1]!;
}
