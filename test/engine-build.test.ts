// Dockerfile builds through the Engine API's classic /build, driven by the real docker CLI
// (DOCKER_BUILDKIT=0): the stream's Step/cache lines, the built image run, the cache across
// builds (and what a changed file re-runs), multi-stage COPY --from, build args, failures.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { request } from "node:http";
import { mkdtempSync, readlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, cachedSteps, buildLeftovers, nothingLeft, runCgroupsLeft, defaultRegistryArgs, endBuildTests } from "./fixtures/build.ts";

let d: Daemon;
/** Small, so a test can go over it cheaply. */
const contextLimit = 4 << 20;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-engine-build-"));
  d = await startEngineWithBusybox({ env: { BERTH_BUILD_CONTEXT_MAX_BYTES: String(contextLimit) }, args: defaultRegistryArgs(work) });
});

after(() => endBuildTests(d, work));

const context = (name: string, files: Record<string, string>): string => writeContext(work, name, files);

const build = (dir: string, args: string[]): RunResult => classicBuild(d, dir, args);

/** POST /build with `dir` as a tar context, as raw HTTP. */
function postContext(dir: string, query: string): Promise<{ status: number; body: string }> {
  const tar = spawnSync("tar", ["-c", "-C", dir, "."], { maxBuffer: 64 << 20 });
  assert.equal(tar.status, 0, String(tar.stderr));
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.dockerSocket, method: "POST", path: `/v1.41/build?${query}`, headers: { "Content-Type": "application/x-tar" } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end(tar.stdout);
  });
}


const twoStep = "FROM busybox\nRUN echo hi > /f\nCOPY data.txt /data/\nENV GREETING=hello\nCMD [\"cat\", \"/f\"]\n";

describe("docker build (classic)", () => {
  test("builds an image whose files and env a container sees, with Docker's stream", () => {
    const dir = context("simple", { Dockerfile: twoStep, "data.txt": "one\n" });
    const r = ok(build(dir, ["-t", "built:1"]), "build");
    assert.match(r.stdout, /^Step 1\/5 : FROM busybox$/m);
    assert.match(r.stdout, /^Step 2\/5 : RUN echo hi > \/f$/m);
    assert.match(r.stdout, /^ ---> Running in [0-9a-f]{12}$/m);
    assert.match(r.stdout, /^Removing intermediate container [0-9a-f]{12}$/m);
    assert.match(r.stdout, /^Successfully built [0-9a-f]{12}$/m);
    assert.match(r.stdout, /^Successfully tagged built:1$/m);
    assert.deepEqual(cachedSteps(r.stdout), []);
    assert.equal(ok(d.docker(["run", "--rm", "built:1"]), "run default cmd").stdout, "hi\n");
    assert.equal(ok(d.docker(["run", "--rm", "built:1", "sh", "-c", "cat /data/data.txt; echo $GREETING"]), "run").stdout, "one\nhello\n");
    const history = ok(d.docker(["history", "--no-trunc", "--format", "{{.CreatedBy}}", "built:1"]), "history").stdout;
    assert.match(history, /#\(nop\)  ENV GREETING=hello/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "", "no build container is left");
  });

  test("a rebuild uses the cache for every step and gives the same image", () => {
    const dir = join(work, "simple");
    const first = ok(d.docker(["inspect", "--format", "{{.Id}}", "built:1"]), "inspect").stdout.trim();
    const r = ok(build(dir, ["-t", "built:2"]), "rebuild");
    assert.deepEqual(cachedSteps(r.stdout), [2, 3, 4, 5]);
    assert.doesNotMatch(r.stdout, /Running in/);
    // The build's lease is made as its steps start, before any miss: a build that wrote nothing leaves it behind neither.
    assert.deepEqual(buildLeftovers(d), nothingLeft);
    assert.equal(ok(d.docker(["inspect", "--format", "{{.Id}}", "built:2"]), "inspect").stdout.trim(), first);
  });

  test("a changed copied file re-runs only from its COPY on", () => {
    const dir = join(work, "simple");
    writeFileSync(join(dir, "data.txt"), "two\n");
    const r = ok(build(dir, ["-t", "built:3"]), "build after a change");
    assert.deepEqual(cachedSteps(r.stdout), [2]);
    assert.equal(ok(d.docker(["run", "--rm", "built:3", "cat", "/data/data.txt"]), "run").stdout, "two\n");
  });

  test("--no-cache rebuilds every step", () => {
    const r = ok(build(join(work, "simple"), ["--no-cache", "-t", "built:4"]), "no-cache build");
    assert.deepEqual(cachedSteps(r.stdout), []);
  });

  test("docker images lists build results, not the steps' images (those with -a)", () => {
    const r = ok(build(context("untagged", { Dockerfile: "FROM busybox\nENV UNTAGGED=1\nLABEL x=y\n" }), ["-q"]), "untagged build");
    const id = r.stdout.trim();
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    const listed = ok(d.docker(["images", "-q", "--no-trunc"]), "images").stdout.split("\n").filter(Boolean);
    assert.ok(listed.includes(id), "the untagged result is listed");
    const all = ok(d.docker(["images", "-a", "-q", "--no-trunc"]), "images -a").stdout.split("\n").filter(Boolean);
    assert.ok(all.length > listed.length, "steps' images only with -a");
  });

  test("only a build's result is marked: a new last step (named with its mark), a cached one, one under --label, a multi-stage target", () => {
    const listed = () => ok(d.docker(["images", "-q", "--no-trunc"]), "images").stdout.split("\n").filter(Boolean);
    const quietBuild = (name: string, dockerfile: string, args: string[] = []) => ok(build(context(name, { Dockerfile: dockerfile }), ["-q", ...args]), name).stdout.trim();
    const before = listed();
    const longer = quietBuild("mark-new", "FROM busybox\nENV MARK_A=1\nENV MARK_B=2\n");
    assert.deepEqual(listed().filter((id) => !before.includes(id)), [longer], "the new result alone is listed, not its ENV MARK_A step");
    // The first step of that build, cached here: an intermediate image becomes a result.
    const prefix = quietBuild("mark-cached", "FROM busybox\nENV MARK_A=1\n");
    assert.notEqual(prefix, longer);
    assert.ok(listed().includes(prefix), "a cached step that is a build's result is marked");
    const beforeLabel = listed();
    const labelled = quietBuild("mark-label", "FROM busybox\nENV MARK_C=3\n", ["--label", "mark=yes"]);
    assert.deepEqual(listed().filter((id) => !beforeLabel.includes(id)), [labelled], "the --label step's image, not the ENV under it");
    const beforeStages = listed();
    const target = quietBuild("mark-stages", "FROM busybox AS one\nENV MARK_D=4\nFROM one AS two\nENV MARK_E=5\nFROM busybox AS three\nENV MARK_F=6\n", ["--target", "two"]);
    assert.deepEqual(listed().filter((id) => !beforeStages.includes(id)), [target], "the target stage's last step, not the last step of the stage it builds on");
  });

  test("a tag a build moves leaves the image it pointed at in place: a build result (still listed), a committed image (kept untagged)", () => {
    const idOf = (ref: string) => ok(d.docker(["image", "inspect", "--format", "{{.Id}}", ref]), `inspect ${ref}`).stdout.trim();
    const dir = context("retag", { Dockerfile: "FROM busybox\nENV RETAG=1\n" });
    ok(build(dir, ["-t", "retag:1"]), "first build");
    const first = idOf("retag:1");
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox\nENV RETAG=2\n");
    ok(build(dir, ["-t", "retag:1"]), "rebuild under the same tag");
    assert.notEqual(idOf("retag:1"), first);
    assert.equal(idOf(first), first, "the earlier result still exists");
    assert.ok(ok(d.docker(["images", "-q", "--no-trunc"]), "images").stdout.split("\n").includes(first), "and is listed, untagged");
    ok(d.docker(["run", "--name", "retag-source", "busybox", "true"]), "run");
    try {
      ok(d.docker(["commit", "retag-source", "retag:2"]), "commit");
    } finally {
      ok(d.docker(["rm", "retag-source"]), "rm");
    }
    const committed = idOf("retag:2");
    ok(build(dir, ["-t", "retag:2"]), "build onto the committed image's tag");
    assert.notEqual(idOf("retag:2"), committed);
    assert.equal(idOf(committed), committed, "the committed image, which had no other name, is kept untagged");
  });

  test("ADD unpacks a local tar; COPY --chown and --chmod set owner and mode", () => {
    const dir = context("add", { Dockerfile: "FROM busybox\nADD pack.tar /unpacked/\nCOPY --chown=1234:5678 --chmod=640 data.txt /owned\n", "data.txt": "d\n", "inner/a.txt": "inside\n" });
    const tar = spawnSync("tar", ["-c", "-f", join(dir, "pack.tar"), "-C", join(dir, "inner"), "a.txt"]);
    assert.equal(tar.status, 0, String(tar.stderr));
    ok(build(dir, ["-t", "add:1"]), "build");
    assert.equal(ok(d.docker(["run", "--rm", "add:1", "sh", "-c", "cat /unpacked/a.txt; stat -c '%u:%g %a' /owned"]), "run").stdout, "inside\n1234:5678 640\n");
  });

  test("the server applies a context's .dockerignore itself (a client that sends everything)", async () => {
    const dir = context("ignored", { Dockerfile: "FROM busybox\nCOPY . /ctx/\n", ".dockerignore": "secret*\n", "secret.txt": "no\n", "kept.txt": "yes\n" });
    const r = await postContext(dir, "t=ignored:1");
    assert.equal(r.status, 200);
    assert.match(r.body, /Successfully tagged ignored:1/);
    assert.equal(ok(d.docker(["run", "--rm", "ignored:1", "ls", "/ctx"]), "run").stdout, "Dockerfile\nkept.txt\n");
  });

  test("berth build sends what .dockerignore keeps and shows the steps, cache hits marked", () => {
    const dir = context("berth", { Dockerfile: "FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n", ".dockerignore": "*.log\n", "app.txt": "a\n", "debug.log": "noise\n" });
    const first = ok(d.berth(["build", "-t", "viaberth:1", dir]), "berth build");
    assert.match(first.stdout, /^Step 3\/3 : RUN ls \/ctx > \/listing$/m);
    assert.match(first.stdout, /^Successfully tagged viaberth:1$/m);
    assert.equal(ok(d.docker(["run", "--rm", "viaberth:1", "cat", "/listing"]), "run").stdout, "Dockerfile\napp.txt\n");
    writeFileSync(join(dir, "debug.log"), "more noise\n");
    const again = ok(d.berth(["build", "-t", "viaberth:1", dir]), "berth rebuild");
    assert.deepEqual(cachedSteps(again.stdout), [2, 3], "an ignored file does not break the cache");
    const quiet = ok(d.berth(["build", "-q", dir]), "berth build -q");
    assert.match(quiet.stdout, /^sha256:[0-9a-f]{64}\n$/);
  });

  test("a failing RUN exits with its code, names the step and leaves no container", () => {
    const dir = context("failing", { Dockerfile: "FROM busybox\nENV A=1\nRUN echo before; exit 3\nRUN echo never\n" });
    const r = build(dir, ["-t", "failing:1"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^Step 3\/4 : RUN echo before; exit 3$/m);
    assert.match(r.stdout, /^before$/m);
    assert.match(r.stderr, /The command '\/bin\/sh -c echo before; exit 3' returned a non-zero code: 3/);
    assert.doesNotMatch(r.stdout, /Step 4\/4/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "");
    assert.notEqual(d.docker(["image", "inspect", "failing:1"]).code, 0);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
    assert.deepEqual(runCgroupsLeft(r.stdout), []);
  });

  test("a RUN's process: pid 1 of its own pid, ipc, uts, mount and network namespaces (on the default bridge: eth0 and lo), with the image's env, user, workdir and SHELL", () => {
    const namespaces = ["pid", "ipc", "uts", "mnt", "net"];
    const dir = context("isolation", {
      Dockerfile: [
        "FROM busybox",
        "RUN echo 'builder:x:1234:1235::/:/bin/sh' >> /etc/passwd && echo 'builders:x:1235:' >> /etc/group",
        "ENV FOO=bar",
        "WORKDIR /work/dir",
        "USER builder",
        // -x: the shell echoes each command to stderr, which shows SHELL was used. The report
        // runs without it: stdout and stderr share the build's one stream, and the trace's
        // pieces land anywhere in the report's lines.
        'SHELL ["/bin/sh", "-xc"]',
        "RUN true",
        'SHELL ["/bin/sh", "-c"]',
        `RUN echo "report pid=$$ user=$(id -u):$(id -g) cwd=$(pwd) host=$(hostname) net=$(ls /sys/class/net | tr '\\n' ,) foo=$FOO"; for n in ${namespaces.join(" ")}; do echo "ns $(readlink /proc/self/ns/$n)"; done`,
        "",
      ].join("\n"),
    });
    const r = build(dir, ["--no-cache"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const shown = [...r.stdout.matchAll(/ ---> Running in ([0-9a-f]{12})/g)].map((m) => m[1]);
    assert.equal(shown.length, 3, r.stdout);
    assert.match(r.stdout, new RegExp(`^report pid=1 user=1234:1235 cwd=/work/dir host=${shown[2]} net=eth0,lo, foo=bar$`, "m"));
    assert.match(r.stdout, /^\+ true$/m, "the RUN went through the SHELL (sh -x)");
    const inside = [...r.stdout.matchAll(/^ns (.*)$/gm)].map((m) => m[1]);
    assert.equal(inside.length, namespaces.length, r.stdout);
    namespaces.forEach((n, i) => assert.notEqual(inside[i], readlinkSync(`/proc/self/ns/${n}`), `the RUN has its own ${n} namespace`));
    assert.deepEqual(buildLeftovers(d), nothingLeft);
    assert.deepEqual(runCgroupsLeft(r.stdout), []);
  });

  test("bad input: a RUN whose executable is missing, and one as a user the image does not have, fail with a clear error and leave nothing", () => {
    const missing = build(context("missing-exec", { Dockerfile: 'FROM busybox\nRUN ["/no/such/program", "x"]\n' }), ["--no-cache"]);
    assert.equal(missing.code, 127, missing.stdout + missing.stderr);
    assert.match(missing.stderr, /The command '\/no\/such\/program x' could not run: .*no such file or directory/);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
    assert.deepEqual(runCgroupsLeft(missing.stdout), []);
    const user = build(context("missing-user", { Dockerfile: "FROM busybox\nUSER nosuchuser\nRUN true\n" }), ["--no-cache"]);
    assert.notEqual(user.code, 0);
    assert.match(user.stderr, /unable to find user nosuchuser/);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });

  test("multi-stage: COPY --from a named stage, --target stops at a stage", () => {
    const dir = context("multi", {
      Dockerfile: [
        "FROM busybox AS maker",
        "WORKDIR /out",
        "RUN echo made > product && mkdir sub && echo deep > sub/inner",
        "FROM busybox",
        "COPY --from=maker /out/ /app/",
        "WORKDIR /app",
        "USER 1000:1000",
        "ENTRYPOINT [\"cat\"]",
        "CMD [\"product\"]",
        "",
      ].join("\n"),
    });
    ok(build(dir, ["-t", "multi:1"]), "multi-stage build");
    assert.equal(ok(d.docker(["run", "--rm", "multi:1"]), "run").stdout, "made\n");
    assert.equal(ok(d.docker(["run", "--rm", "multi:1", "sub/inner"]), "run").stdout, "deep\n");
    assert.equal(ok(d.docker(["run", "--rm", "--entrypoint", "id", "multi:1", "-u"]), "run id").stdout, "1000\n");
    const other = context("multi-image", { Dockerfile: "FROM busybox\nFROM scratch\nCOPY --from=busybox /bin/busybox /bin/busybox\nCOPY --from=0 /bin/busybox /bin/sh\nCMD [\"/bin/busybox\", \"echo\", \"from an image\"]\n" });
    ok(build(other, ["-t", "multi:image"]), "COPY --from an image and a stage index, FROM scratch");
    assert.equal(ok(d.docker(["run", "--rm", "multi:image"]), "run").stdout, "from an image\n");
    const t = ok(build(dir, ["--target", "maker", "-t", "multi:maker"]), "--target build");
    assert.match(t.stdout, /^Step 1\/3 : FROM busybox AS maker$/m);
    assert.doesNotMatch(t.stdout, /Step 4/);
    assert.equal(ok(d.docker(["run", "--rm", "multi:maker", "cat", "/out/product"]), "run target").stdout, "made\n");
  });

  test("build args: ARG before FROM and in a stage, defaults, used by RUN and ENV", () => {
    const dir = context("args", {
      Dockerfile: "ARG BASE=busybox\nFROM ${BASE}\nARG WHO=nobody\nENV WHO_ENV=${WHO:-unset}\nRUN echo \"$WHO\" > /who\n",
    });
    ok(build(dir, ["--build-arg", "WHO=alice", "-t", "args:1"]), "build with an arg");
    assert.equal(ok(d.docker(["run", "--rm", "args:1", "sh", "-c", "cat /who; echo $WHO_ENV"]), "run").stdout, "alice\nalice\n");
    const again = ok(build(dir, ["--build-arg", "WHO=bob", "-t", "args:2"]), "build with another value");
    // The ARG step itself is cached (as Docker's); what uses the value is not.
    assert.deepEqual(cachedSteps(again.stdout), [2], "a changed arg re-runs the steps that see it");
    assert.equal(ok(d.docker(["run", "--rm", "args:2", "cat", "/who"]), "run").stdout, "bob\n");
    const unused = ok(build(dir, ["--build-arg", "WHO=bob", "--build-arg", "EXTRA=1"]), "unused arg");
    assert.match(unused.stdout, /\[Warning\] One or more build-args \[EXTRA\] were not consumed/);
  });

  test("bad input: unknown instruction, missing COPY source, missing base image, ADD of a URL", async () => {
    const unknown = build(context("bad1", { Dockerfile: "FROM busybox\nFROBNICATE x\n" }), []);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /dockerfile parse error on line 2: unknown instruction: FROBNICATE/);
    const missing = build(context("bad2", { Dockerfile: "FROM busybox\nCOPY nothere /x\n" }), []);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /COPY failed: file not found in build context or excluded by \.dockerignore: stat nothere: file does not exist/);
    const outside = build(context("bad3", { Dockerfile: "FROM busybox\nCOPY ../etc/passwd /x\n" }), []);
    assert.match(outside.stderr, /Forbidden path outside the build context: \.\.\/etc\/passwd/);
    // Not in the store: pulled from the daemon's default registry, where nothing listens.
    const noBase = build(context("bad4", { Dockerfile: "FROM nosuch-image-here\n" }), []);
    assert.equal(noBase.code, 1);
    assert.match(noBase.stderr, /127\.0\.0\.1:1.*ECONNREFUSED|ECONNREFUSED.*127\.0\.0\.1:1/);
    const url = build(context("bad5", { Dockerfile: "FROM busybox\nADD http://example.invalid/x /x\n" }), []);
    assert.match(url.stderr, /ADD of a URL is not supported: Berth builds have no network access/);
    const target = build(context("bad6", { Dockerfile: "FROM busybox AS one\n" }), ["--target", "two"]);
    assert.match(target.stderr, /failed to reach build target two in Dockerfile/);
    const noFile = await postContext(context("bad7", { "other.txt": "x" }), "t=x");
    assert.equal(noFile.status, 400);
    assert.equal(JSON.parse(noFile.body).message, "Cannot locate specified Dockerfile: Dockerfile");
    const big = context("bad12", { Dockerfile: "FROM busybox\n", "big.bin": "x".repeat(contextLimit + 1) });
    const tooBig = await postContext(big, "");
    assert.equal(tooBig.status, 400);
    assert.equal(JSON.parse(tooBig.body).message, `the build context is larger than the ${contextLimit} bytes this daemon accepts (BERTH_BUILD_CONTEXT_MAX_BYTES)`);
    const badArgs = await postContext(context("bad7", {}), "buildargs=%7Bnot-json");
    assert.equal(badArgs.status, 400);
    assert.match(JSON.parse(badArgs.body).message, /^invalid buildargs: /);
    const shell = build(context("bad8", { Dockerfile: "FROM busybox\nSHELL /bin/bash -c\n" }), []);
    assert.match(shell.stderr, /SHELL requires the arguments to be in JSON form/);
    const chmod = build(context("bad9", { Dockerfile: "FROM busybox\nCOPY --chmod=abc Dockerfile /x\n" }), []);
    assert.match(chmod.stderr, /invalid chmod parameter: abc/);
    const noFrom = build(context("bad10", { Dockerfile: "RUN echo hi\n" }), []);
    assert.match(noFrom.stderr, /dockerfile parse error on line 1: no build stage in current context/);
    const quote = build(context("bad11", { Dockerfile: "FROM busybox\nENV A=\"open\n" }), []);
    assert.match(quote.stderr, /unexpected end of statement while looking for matching "/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "");
  });
});
