// The builder's less common features through the real docker CLI (DOCKER_BUILDKIT=0):
// HEALTHCHECK with its options, ONBUILD triggers run by a later build, MAINTAINER,
// heredocs, the build cache in `system df` and `builder prune`, parallel stages.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon, type RunResult } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeoArchives } from "./fixtures/archives.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-features-"));
  d = await startDaemon();
  ok(d.ctr(["images", "import", skopeoArchives(work, await buildBusyboxImage()).dockerArchive], undefined, "moby"), "import busybox into moby");
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

function context(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

function build(dir: string, args: string[]): RunResult {
  return d.docker(["build", ...args, dir], undefined, { DOCKER_BUILDKIT: "0" });
}

/** The step numbers whose output says ` ---> Using cache`. */
function cachedSteps(output: string): number[] {
  const steps: number[] = [];
  let current = 0;
  for (const line of output.split("\n")) {
    const m = /^Step (\d+)\/\d+ : /.exec(line);
    if (m) current = Number(m[1]);
    if (line === " ---> Using cache") steps.push(current);
  }
  return steps;
}

function inspect(ref: string, format: string): string {
  return ok(d.docker(["image", "inspect", "--format", format, ref]), `inspect ${ref}`).stdout.trim();
}

describe("build features", () => {
  test("HEALTHCHECK with options lands in the config in nanoseconds; NONE; MAINTAINER sets the author", () => {
    const dir = context("health", {
      Dockerfile: [
        "FROM busybox",
        "MAINTAINER Jane Doe <jane@example.com>",
        "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --retries=4 CMD wget -q -O- http://localhost/ || exit 1",
        "",
      ].join("\n"),
    });
    const r = ok(build(dir, ["-t", "health:1"]), "build");
    assert.match(r.stdout, /^Step 3\/3 : HEALTHCHECK --interval=5m/m);
    assert.deepEqual(JSON.parse(inspect("health:1", "{{json .Config.Healthcheck}}")), {
      Test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
      Interval: 300_000_000_000,
      Timeout: 3_000_000_000,
      StartPeriod: 90_000_000_000,
      Retries: 4,
    });
    assert.equal(inspect("health:1", "{{.Author}}"), "Jane Doe <jane@example.com>");
    const history = ok(d.docker(["history", "--no-trunc", "--format", "{{.CreatedBy}}", "health:1"]), "history").stdout;
    assert.match(history, /#\(nop\)  HEALTHCHECK &\{\["CMD-SHELL" "wget -q -O- http:\/\/localhost\/ \|\| exit 1"\] "5m0s" "3s" "1m30s" '\\x04'\}/);
    assert.match(history, /#\(nop\)  MAINTAINER Jane Doe <jane@example.com>/);

    const exec = context("health-exec", { Dockerfile: "FROM health:1\nHEALTHCHECK CMD [\"true\"]\n" });
    const overridden = ok(build(exec, ["-t", "health:2"]), "override");
    assert.match(overridden.stdout, /Note that overriding the HEALTHCHECK will be ignored, old HEALTHCHECK was: \[CMD-SHELL wget/);
    assert.deepEqual(JSON.parse(inspect("health:2", "{{json .Config.Healthcheck}}")), { Test: ["CMD", "true"] });
    const none = context("health-none", { Dockerfile: "FROM health:1\nHEALTHCHECK NONE\n" });
    ok(build(none, ["-t", "health:3"]), "NONE");
    assert.deepEqual(JSON.parse(inspect("health:3", "{{json .Config.Healthcheck}}")), { Test: ["NONE"] });

    const bad = build(context("health-bad", { Dockerfile: "FROM busybox\n\nHEALTHCHECK --interval=soon CMD true\n" }), []);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /dockerfile parse error on line 3: HEALTHCHECK --interval: time: invalid duration "soon"/);
  });

  test("ONBUILD triggers are stored, then run right after FROM by a build on that image", () => {
    const base = context("onbuild-base", {
      Dockerfile: "FROM busybox\nWORKDIR /app\nONBUILD COPY marker.txt /app/\nONBUILD RUN cat /app/marker.txt > /app/seen\n",
    });
    ok(build(base, ["-t", "onbuild:base"]), "base build");
    assert.deepEqual(JSON.parse(inspect("onbuild:base", "{{json .Config.OnBuild}}")), ["COPY marker.txt /app/", "RUN cat /app/marker.txt > /app/seen"]);
    // The base's own build does not run its triggers.
    assert.notEqual(d.docker(["run", "--rm", "onbuild:base", "cat", "/app/seen"]).code, 0);

    const child = context("onbuild-child", { Dockerfile: "FROM onbuild:base\nCMD [\"cat\", \"seen\"]\n", "marker.txt": "from the child\n" });
    const r = ok(build(child, ["-t", "onbuild:child"]), "child build");
    const lines = r.stdout.split("\n");
    const from = lines.indexOf("Step 1/2 : FROM onbuild:base");
    assert.ok(from >= 0, r.stdout);
    assert.equal(lines[from + 1], "# Executing 2 build triggers");
    assert.match(lines.slice(from + 2).join("\n"), /^ ---> Running in [0-9a-f]{12}\n(.*\n)*? ---> [0-9a-f]{12}\nStep 2\/2 : CMD/m);
    assert.equal(ok(d.docker(["run", "--rm", "onbuild:child"]), "run child").stdout, "from the child\n");
    // Triggers run once: the child's config no longer has them.
    assert.equal(inspect("onbuild:child", "{{json .Config.OnBuild}}"), "null");
    // A second child build reuses the triggers' steps.
    const again = ok(build(child, ["-t", "onbuild:child2"]), "child rebuild");
    assert.doesNotMatch(again.stdout, /Running in/);
    assert.equal(inspect("onbuild:child2", "{{.Id}}"), inspect("onbuild:child", "{{.Id}}"));

    const chained = build(context("onbuild-bad", { Dockerfile: "FROM busybox\nONBUILD ONBUILD RUN true\n" }), []);
    assert.equal(chained.code, 1);
    assert.match(chained.stderr, /dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed/);
    const fromTrigger = build(context("onbuild-bad2", { Dockerfile: "FROM busybox\nONBUILD FROM busybox\n" }), []);
    assert.match(fromTrigger.stderr, /dockerfile parse error on line 2: FROM isn't allowed as an ONBUILD trigger/);
    const failing = context("onbuild-failing-base", { Dockerfile: "FROM busybox\nONBUILD RUN exit 7\n" });
    ok(build(failing, ["-t", "onbuild:failing"]), "a base whose trigger fails");
    const failed = build(context("onbuild-failing-child", { Dockerfile: "FROM onbuild:failing\n" }), []);
    assert.equal(failed.code, 7, failed.stderr);
    assert.match(failed.stderr, /The command '\/bin\/sh -c exit 7' returned a non-zero code: 7/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "");
  });
  test("heredocs, as BuildKit runs them: RUN scripts (also with #!), a shell's own heredoc, COPY bodies expanded unless quoted", () => {
    const dir = context("heredoc", {
      Dockerfile: [
        "FROM busybox",
        "ARG WHO=world",
        "RUN <<EOF",
        "echo first > /one",
        "echo \"hello $WHO\" >> /one",
        "EOF",
        "RUN <<-SCRIPT",
        "\t#!/bin/busybox sh",
        "\techo \"from $0\" > /script",
        "\tSCRIPT",
        "RUN cat <<'RAW' > /raw",
        "$WHO stays",
        "RAW",
        "COPY <<greeting.txt <<'plain.txt' /texts/",
        "hi ${WHO} \"quoted\" \\$WHO",
        "greeting.txt",
        "$WHO",
        "plain.txt",
        "COPY --chmod=600 <<-EOF /tabbed",
        "\t\tline",
        "\tEOF",
        "",
      ].join("\n"),
    });
    const r = ok(build(dir, ["--build-arg", "WHO=you", "-t", "heredoc:1"]), "build");
    assert.match(r.stdout, /^Step 3\/7 : RUN <<EOF$/m);
    assert.match(r.stdout, /^Step 7\/7 : COPY --chmod=600 <<-EOF \/tabbed$/m);
    const files = ok(d.docker(["run", "--rm", "heredoc:1", "sh", "-c", "cat /one /script /raw /texts/greeting.txt /texts/plain.txt /tabbed; stat -c '%a %u' /texts/greeting.txt /tabbed"]), "run").stdout;
    assert.equal(files, "first\nhello you\nfrom /dev/pipes/SCRIPT\n$WHO stays\nhi you \"quoted\" $WHO\n$WHO\nline\n644 0\n600 0\n");
    const again = ok(build(dir, ["--build-arg", "WHO=you", "-t", "heredoc:2"]), "rebuild");
    assert.doesNotMatch(again.stdout, /Running in/, "every heredoc step is cached");
    writeFileSync(join(dir, "Dockerfile"), readFileSync(join(dir, "Dockerfile"), "utf8").replace("$WHO\nplain.txt", "changed\nplain.txt"));
    const changed = ok(build(dir, ["--build-arg", "WHO=you", "-t", "heredoc:3"]), "a changed COPY body");
    assert.deepEqual(cachedSteps(changed.stdout), [2, 3, 4, 5]);
    assert.equal(ok(d.docker(["run", "--rm", "heredoc:3", "cat", "/texts/plain.txt"]), "run").stdout, "changed\n");

    const unterminated = build(context("heredoc-bad", { Dockerfile: "FROM busybox\nRUN <<EOF\necho never ends\n" }), []);
    assert.equal(unterminated.code, 1);
    assert.match(unterminated.stderr, /dockerfile parse error on line 2: unterminated heredoc: no line "EOF" ends the <<EOF started here/);
    const fromStage = build(context("heredoc-bad2", { Dockerfile: "FROM busybox AS a\nFROM busybox\nCOPY --from=a <<EOF /x\nbody\nEOF\n" }), []);
    assert.match(fromStage.stderr, /COPY --from cannot copy heredocs/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "");
  });
});
