// The builder against issue 11's list, through the real docker CLI (DOCKER_BUILDKIT=0):
// ONBUILD COPY --from naming a stage of the build that uses the base, and the
// instructions and forms the list names that other files do not prove.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, buildLeftovers, nothingLeft, defaultRegistryArgs, endBuildTests } from "./fixtures/build.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-checklist-"));
  d = await startEngineWithBusybox({ args: defaultRegistryArgs(work) });
});

after(() => endBuildTests(d, work));

const context = (name: string, files: Record<string, string | Buffer>): string => writeContext(work, name, files as Record<string, string>);
const build = (dir: string, args: string[] = [], env?: NodeJS.ProcessEnv): RunResult => (env ? d.docker(["build", ...args, dir], undefined, { DOCKER_BUILDKIT: "0", ...env }) : classicBuild(d, dir, args));
const runOut = (ref: string, ...cmd: string[]) => ok(d.docker(["run", "--rm", ref, ...cmd]), `run ${ref}`).stdout;
const inspect = (ref: string, format: string) => ok(d.docker(["image", "inspect", "--format", format, ref]), `inspect ${ref}`).stdout.trim();

/** `tar` with these arguments in `dir` (the real one, for ADD's archives). */
function tar(dir: string, args: string[]): void {
  const r = spawnSync("tar", args, { cwd: dir });
  assert.equal(r.status, 0, String(r.stderr));
}

describe("ONBUILD COPY --from a stage of the build using the base", () => {
  test("a trigger naming an earlier stage (by name or index) gets it built, though nothing else needs it", () => {
    ok(build(context("trigger-base-name", { Dockerfile: "FROM busybox\nONBUILD COPY --from=assets /asset.txt /from-trigger.txt\n" }), ["-t", "onb:name"]), "base by name");
    ok(build(context("trigger-base-index", { Dockerfile: "FROM busybox\nONBUILD COPY --from=0 /asset.txt /from-index.txt\n" }), ["-t", "onb:index"]), "base by index");
    const child = (base: string) =>
      context(`trigger-child-${base}`, {
        Dockerfile: ["FROM busybox AS assets", "RUN echo asset > /asset.txt", "FROM busybox AS unused", "RUN exit 1", `FROM onb:${base}`, "CMD [\"true\"]", ""].join("\n"),
      });
    const byName = ok(build(child("name"), ["-t", "onb:child-name"]), "child by name");
    // The assets stage is built (its 2 steps counted), the unused one is not.
    assert.match(byName.stdout, /^Step 1\/4 : FROM busybox AS assets$/m);
    assert.match(byName.stdout, /^Step 3\/4 : FROM onb:name\n# Executing 1 build trigger$/m);
    assert.doesNotMatch(byName.stdout, /exit 1/);
    assert.equal(runOut("onb:child-name", "cat", "/from-trigger.txt"), "asset\n");
    ok(build(child("index"), ["-t", "onb:child-index"]), "child by index");
    assert.equal(runOut("onb:child-index", "cat", "/from-index.txt"), "asset\n");
  });

  test("a stage's own ONBUILD runs in a later stage FROM it, and may name a stage only that trigger needs", () => {
    const dir = context("trigger-stage", {
      Dockerfile: ["FROM busybox AS assets", "RUN echo staged > /a", "FROM busybox AS with-trigger", "ONBUILD COPY --from=assets /a /a", "FROM busybox AS other", "FROM with-trigger", ""].join("\n"),
    });
    const r = ok(build(dir, ["-t", "onb:stage"]), "build");
    assert.doesNotMatch(r.stdout, /FROM busybox AS other/);
    assert.equal(runOut("onb:stage", "cat", "/a"), "staged\n");
  });

  test("a trigger naming the current stage, an index past it, or a later stage's name: Docker's errors, nothing left", () => {
    const cases: [string, RegExp][] = [
      ["1", /invalid from flag value 1: refers to current build stage/],
      ["7", /invalid from flag value 7: index out of bounds/],
      // Not a stage of the base's build: an image, pulled from the default registry, where nothing listens.
      ["later", /invalid from flag value later: .*127\.0\.0\.1:1.*ECONNREFUSED/],
    ];
    for (const [from, expected] of cases) {
      ok(build(context(`trigger-bad-base-${from}`, { Dockerfile: `FROM busybox\nONBUILD COPY --from=${from} /x /x\n` }), ["-t", `onb:bad-${from}`]), `base ${from}`);
      // The base is stage 1; a stage named `later` comes after it (the target copies from stage 1).
      const dockerfile = `FROM busybox AS first\nFROM onb:bad-${from}\nFROM busybox AS later\nCOPY --from=1 /bin/sh /sh\n`;
      const r = build(context(`trigger-bad-${from}`, { Dockerfile: dockerfile }));
      assert.equal(r.code, 1, `${from}: ${r.stdout}`);
      assert.match(r.stderr, expected, from);
    }
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });
});

describe("the issue's instruction list, item by item", () => {
  test("directives, every instruction and its config field, the escape character, globs, ADD archives, --chmod, substitution forms", () => {
    const dir = context("everything", {
      Dockerfile: [
        "# syntax=docker/dockerfile:1",
        "# escape=`",
        "ARG BASE=busybox",
        "FROM ${BASE} AS base",
        "SHELL [\"/bin/sh\", \"-ec\"]",
        "ARG FLAVOUR",
        "ARG EMPTY=",
        "ARG QUOTED=\"two words\" DERIVED=${FLAVOUR}-x",
        "ENV ALT=${FLAVOUR:+flavoured} DEFAULT=${EMPTY:-fallback} UNSET=${NOPE-none} FILE=notes.tar.gz",
        "ENV STEM=${FILE%%.*} EXT=${FILE#*.}",
        "WORKDIR /app",
        "WORKDIR sub",
        "COPY *.txt ./texts/",
        "COPY --chmod=705 tool.sh /usr/local/bin/tool",
        "ADD bundle.tar.xz /unpacked/xz/",
        "ADD bundle.tar.bz2 /unpacked/bz2/",
        "ADD bundle.tar.gz /unpacked/gz/",
        "ADD plain.txt.gz /kept/",
        "RUN echo \"$ALT $DEFAULT $UNSET $STEM $EXT\" > /vars; `",
        "    echo continued >> /vars",
        "RUN [\"/bin/sh\", \"-c\", \"echo exec-form > /exec\"]",
        "USER 1000:1000",
        "EXPOSE 8080 53/udp",
        "VOLUME [\"/data\"]",
        "LABEL org.example.team=builds \"with space\"=\"a b\"",
        "STOPSIGNAL SIGINT",
        "ENTRYPOINT [\"/usr/local/bin/tool\"]",
        "CMD [\"default-arg\"]",
        "",
      ].join("\n"),
      "a.txt": "a\n",
      "b.txt": "b\n",
      "skip.md": "not copied\n",
      "tool.sh": "#!/bin/sh\necho tool \"$@\" in $(pwd) as $(id -u)\n",
      "payload/inner.txt": "inside\n",
      "plain.txt": "a gzip'd text, not a tar\n",
    });
    tar(dir, ["-cJf", "bundle.tar.xz", "-C", "payload", "inner.txt"]);
    tar(dir, ["-cjf", "bundle.tar.bz2", "-C", "payload", "inner.txt"]);
    tar(dir, ["-czf", "bundle.tar.gz", "-C", "payload", "inner.txt"]);
    const gz = spawnSync("gzip", ["-k", "plain.txt"], { cwd: dir });
    assert.equal(gz.status, 0, String(gz.stderr));
    const r = ok(build(dir, ["--build-arg", "FLAVOUR=mint", "-t", "checklist:all"]), "build");
    assert.match(r.stdout, /^Step 1\/24 : FROM \$\{BASE\} AS base$/m);
    assert.equal(runOut("checklist:all", "x"), "tool x in /app/sub as 1000\n");
    assert.equal(runOut("checklist:all"), "tool default-arg in /app/sub as 1000\n");
    const files = ok(d.docker(["run", "--rm", "--entrypoint", "sh", "checklist:all", "-c", "ls texts; stat -c %a /usr/local/bin/tool; cat /unpacked/xz/inner.txt /unpacked/bz2/inner.txt /unpacked/gz/inner.txt; ls /kept; cat /vars /exec"]), "files").stdout;
    assert.equal(files, "a.txt\nb.txt\nplain.txt\n705\ninside\ninside\ninside\nplain.txt.gz\nflavoured fallback none notes tar.gz\ncontinued\nexec-form\n");
    assert.deepEqual(JSON.parse(inspect("checklist:all", "{{json .Config.ExposedPorts}}")), { "53/udp": {}, "8080/tcp": {} });
    assert.deepEqual(JSON.parse(inspect("checklist:all", "{{json .Config.Volumes}}")), { "/data": {} });
    assert.deepEqual(JSON.parse(inspect("checklist:all", "{{json .Config.Labels}}")), { "org.example.team": "builds", "with space": "a b" });
    assert.deepEqual(JSON.parse(inspect("checklist:all", "{{json .Config.Shell}}")), ["/bin/sh", "-ec"]);
    assert.equal(inspect("checklist:all", "{{.Config.StopSignal}} {{.Config.User}} {{.Config.WorkingDir}}"), "SIGINT 1000:1000 /app/sub");
    const history = ok(d.docker(["history", "--no-trunc", "--format", "{{.CreatedBy}}", "checklist:all"]), "history").stdout;
    assert.match(history, /#\(nop\)  STOPSIGNAL SIGINT/);
    // created_by as Docker's classic builder writes it: build args sorted, Go's %v/%q of lists, ports as written.
    assert.match(history, /^\|4 DERIVED=mint-x EMPTY= FLAVOUR=mint QUOTED=two words \/bin\/sh -ec echo "\$ALT/m);
    assert.match(history, /^\/bin\/sh -c #\(nop\)  SHELL \[\/bin\/sh -ec\]$/m);
    assert.match(history, /^\/bin\/sh -c #\(nop\)  EXPOSE 8080 53\/udp$/m);
    assert.match(history, /^\/bin\/sh -c #\(nop\)  CMD \["default-arg"\]$/m);
    assert.match(history, /^\/bin\/sh -c #\(nop\)  VOLUME \[\/data\]$/m);
    assert.match(history, /^\/bin\/sh -c #\(nop\)  ARG QUOTED=two words DERIVED=mint-x$/m);
  });

  test("--build-arg NAME without a value takes it from the client's environment, else the ARG's default", () => {
    const dir = context("arg-env", { Dockerfile: "FROM busybox\nARG FROM_ENV=default\nRUN echo \"$FROM_ENV\" > /v\n" });
    ok(build(dir, ["--build-arg", "FROM_ENV", "-t", "checklist:env"], { FROM_ENV: "from-the-env" }), "build with the env set");
    assert.equal(runOut("checklist:env", "cat", "/v"), "from-the-env\n");
    ok(build(dir, ["--build-arg", "FROM_ENV", "-t", "checklist:noenv"], {}), "build without it");
    assert.equal(runOut("checklist:noenv", "cat", "/v"), "default\n");
  });

  test("bad substitutions, an unknown STOPSIGNAL and a broken ADD archive: clear errors, nothing left", () => {
    const required = build(context("required-arg", { Dockerfile: "FROM busybox\nARG NEEDED\nENV X=${NEEDED:?pass --build-arg NEEDED}\n" }));
    assert.equal(required.code, 1);
    assert.match(required.stderr, /NEEDED: pass --build-arg NEEDED/);
    const modifier = build(context("bad-modifier", { Dockerfile: "FROM busybox\nENV A=${B:#x}\n" }));
    assert.equal(modifier.code, 1);
    assert.match(modifier.stderr, /unsupported modifier \(:#\) in substitution/);
    const signal = build(context("bad-signal", { Dockerfile: "FROM busybox\nSTOPSIGNAL SIGNOPE\n" }));
    assert.equal(signal.code, 1);
    assert.match(signal.stderr, /Invalid signal: SIGNOPE/);
    const dir = context("broken-archive", { Dockerfile: "FROM busybox\nADD cut.tar.xz /x/\n", "payload/big.bin": "x".repeat(1 << 20) });
    tar(dir, ["-cJf", "whole.tar.xz", "-C", "payload", "big.bin"]);
    const cut = spawnSync("sh", ["-c", "head -c $(( $(stat -c %s whole.tar.xz) / 2 )) whole.tar.xz > cut.tar.xz"], { cwd: dir });
    assert.equal(cut.status, 0, String(cut.stderr));
    const broken = build(dir);
    assert.equal(broken.code, 1, broken.stdout);
    assert.match(broken.stderr, /ADD cut\.tar\.xz: cannot unpack the archive: xz could not decompress the archive \(exit 1\): xz: \(stdin\): Unexpected end of input/);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });
});
