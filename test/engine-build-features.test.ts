// The builder's less common features through the real docker CLI (DOCKER_BUILDKIT=0):
// HEALTHCHECK with its options, ONBUILD triggers run by a later build, MAINTAINER,
// heredocs, the build cache in `system df` and `builder prune`, parallel stages.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, cachedSteps, runningBuildRuns, endBuildTests } from "./fixtures/build.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-features-"));
  d = await startEngineWithBusybox();
});

after(() => endBuildTests(d, work));

const context = (name: string, files: Record<string, string>): string => writeContext(work, name, files);

const build = (dir: string, args: string[]): RunResult => classicBuild(d, dir, args);


interface CacheRow {
  ID: string;
  Type: string;
  Description: string;
  InUse: boolean;
  Shared: boolean;
  Size: number;
  CreatedAt: string;
  LastUsedAt: string | null;
  UsageCount: number;
}

/** A raw Engine API request on the daemon's socket. */
function api(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.dockerSocket, method, path: `/v1.41${path}` }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
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
  test("the build cache: system df shows it, builder prune removes what no image or container needs", async () => {
    const kept = context("cache-kept", { Dockerfile: "FROM busybox\nRUN head -c 300000 /dev/urandom > /kept\nENV KEPT=1\n" });
    ok(build(kept, ["-t", "cache:kept"]), "kept build");
    // A failed build leaves its finished steps behind: cache no image needs.
    const deadFile = "FROM busybox\nLABEL tier=dead\nRUN head -c 500000 /dev/urandom > /dead\nRUN exit 1\n";
    assert.equal(build(context("cache-dead", { Dockerfile: deadFile }), []).code, 1);
    const usage = async () => JSON.parse((await api("GET", "/system/df")).body) as { BuildCache: CacheRow[]; BuilderSize: number; Images: { Id: string }[] };
    const row = (rows: CacheRow[], text: string) => rows.find((r) => r.Description.includes(text));
    let df = await usage();
    const deadRun = row(df.BuildCache, "> /dead")!;
    const keptRun = row(df.BuildCache, "> /kept")!;
    assert.ok(deadRun && keptRun, JSON.stringify(df.BuildCache));
    assert.deepEqual([deadRun.Shared, deadRun.InUse, deadRun.Type, deadRun.UsageCount, deadRun.LastUsedAt], [false, false, "regular", 0, null]);
    assert.ok(deadRun.Size > 500_000 && deadRun.Size < 600_000, String(deadRun.Size));
    assert.equal(keptRun.Shared, true);
    assert.equal(row(df.BuildCache, "LABEL tier=dead")!.Size, 0);
    assert.equal(df.BuilderSize, df.BuildCache.filter((r) => !r.Shared).reduce((n, r) => n + r.Size, 0));
    assert.ok(!df.Images.some((i) => i.Id.endsWith(deadRun.ID)), "the steps' images are cache, not images, in df");
    const dfText = ok(d.docker(["system", "df"]), "df").stdout;
    // runc's mount points (/proc, /dev, /sys, the /etc files) are not in the RUN layers.
    assert.match(dfText, new RegExp(`^Build Cache\\s+${df.BuildCache.length}\\s+0\\s+501\\.\\dkB`, "m"));
    const verbose = ok(d.docker(["system", "df", "-v"]), "df -v").stdout;
    assert.match(verbose, new RegExp(`^${deadRun.ID.slice(0, 12)}\\s+regular\\s+50\\dkB\\s+.*\\s+0\\s+false$`, "m"));

    // `docker image prune` leaves the cache to `builder prune`; a container's image stays.
    ok(d.docker(["image", "prune", "-f"]), "image prune");
    assert.ok(row((await usage()).BuildCache, "> /dead"), "image prune kept the cache");
    const holder = ok(d.docker(["create", deadRun.ID.slice(0, 12), "true"]), "a container on a cache step").stdout.trim();
    assert.equal(row((await usage()).BuildCache, "> /dead")!.InUse, true);
    const keptWhileUsed = ok(d.docker(["builder", "prune", "-f"]), "prune while in use").stdout;
    assert.doesNotMatch(keptWhileUsed, new RegExp(deadRun.ID));
    ok(d.docker(["rm", holder]), "rm the container");

    // Filters that match nothing delete nothing.
    assert.match(ok(d.docker(["builder", "prune", "-a", "-f", "--filter", "until=1h"]), "until").stdout, /^Total reclaimed space: 0B$/m);
    assert.match(ok(d.docker(["builder", "prune", "-f", "--filter", "label=tier=other"]), "label").stdout, /^Total reclaimed space: 0B$/m);
    assert.match(ok(d.docker(["builder", "prune", "-f", "--keep-storage", "1GB"]), "keep-storage").stdout, /^Total reclaimed space: 0B$/m);

    const pruned = ok(d.docker(["builder", "prune", "-f", "--filter", "label=tier=dead"]), "builder prune").stdout;
    assert.match(pruned, /^Deleted build cache objects:$/m);
    assert.match(pruned, new RegExp(`^${deadRun.ID}$`, "m"));
    assert.match(pruned, /^Total reclaimed space: 50\d(\.\d)?kB$/m);
    assert.doesNotMatch(pruned, new RegExp(keptRun.ID), "a tagged image's steps are shared: kept without --all");
    df = await usage();
    assert.equal(row(df.BuildCache, "> /dead"), undefined);
    assert.equal(row(df.BuildCache, "LABEL tier=dead"), undefined);

    // Reuse is counted; the kept image's steps are still its cache.
    const again = ok(build(kept, ["-t", "cache:kept"]), "rebuild");
    assert.deepEqual(cachedSteps(again.stdout), [2, 3]);
    const reused = row((await usage()).BuildCache, "> /kept")!;
    assert.equal(reused.UsageCount, 1);
    assert.ok(reused.LastUsedAt && Date.parse(reused.LastUsedAt) >= Date.parse(reused.CreatedAt));

    // --all takes the shared steps too, never the tagged image itself.
    const all = ok(d.docker(["builder", "prune", "-a", "-f"]), "prune --all").stdout;
    assert.match(all, new RegExp(`^${keptRun.ID}$`, "m"));
    assert.equal(ok(d.docker(["run", "--rm", "cache:kept", "sh", "-c", "wc -c < /kept; echo $KEPT"]), "run kept").stdout, "300000\n1\n");

    // berth's own client: system df and builder prune through the same endpoints.
    assert.equal(build(context("cache-dead3", { Dockerfile: deadFile.replace("500000", "450000") }), []).code, 1);
    assert.match(ok(d.berth(["system", "df"]), "berth system df").stdout, /^Build Cache\s+\d+\s+0\s+45\d\.\dkB\s+45\d\.\dkB$/m);
    const berthPruned = ok(d.berth(["builder", "prune", "-f"]), "berth builder prune").stdout;
    assert.match(berthPruned, /^Deleted build cache objects:$/m);
    assert.match(berthPruned, /^Total reclaimed space: 45\d(\.\d)?kB$/m);
    assert.equal(row((await usage()).BuildCache, "> /dead"), undefined);

    // docker system prune reaches the build cache too.
    assert.equal(build(context("cache-dead2", { Dockerfile: deadFile.replace("500000", "400000") }), []).code, 1);
    assert.ok(row((await usage()).BuildCache, "> /dead"));
    ok(d.docker(["system", "prune", "-f"]), "system prune");
    assert.equal(row((await usage()).BuildCache, "> /dead"), undefined);
  });

  test("builder prune: bad filters and keep-storage are 400s naming the problem", async () => {
    const cases: [string, RegExp][] = [
      [`filters=${encodeURIComponent('{"bogus":{"1":true}}')}`, /^Invalid filter 'bogus'$/],
      [`filters=${encodeURIComponent('{"until":{"someday":true}}')}`, /invalid time value "someday"/],
      ["keep-storage=abc", /invalid value for keep-storage: "abc" is not an integer/],
      ["keep-storage=-1", /invalid value for keep-storage: -1 is negative/],
    ];
    for (const [query, expected] of cases) {
      const r = await api("POST", `/build/prune?${query}`);
      assert.equal(r.status, 400, query);
      assert.match(JSON.parse(r.body).message, expected, query);
    }
  });
  test("independent stages run at once, the stream still reads stage after stage, unused stages are skipped", async () => {
    // Each side's RUN waits for a file the test puts in both RUNs' roots only once it has seen both running: a
    // builder that ran the stages one after the other would never have both up at once.
    const wait = "until [ -e /go ]; do sleep 0.1; done";
    const dir = context("parallel", {
      Dockerfile: [
        "FROM busybox AS left",
        `RUN echo left > /left; ${wait}`,
        "FROM busybox AS unused",
        "RUN exit 9",
        "FROM busybox AS right",
        `RUN echo right > /right; ${wait}`,
        "FROM busybox",
        "COPY --from=left /left /from-left",
        "COPY --from=right /right /from-right",
        "",
      ].join("\n"),
    });
    const child = spawn("docker", ["build", "-t", "parallel:1", dir], {
      env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config"), DOCKER_BUILDKIT: "0" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? 128)));
    let running: string[] = [];
    const deadline = Date.now() + 120_000;
    let done = false;
    void exited.then(() => (done = true));
    while (!done && Date.now() < deadline) {
      running = runningBuildRuns(d).map((r) => r.id);
      if (running.length >= 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const sawBoth = running.length >= 2;
    // Let whatever runs finish, either way.
    while (!done) {
      for (const { pid } of runningBuildRuns(d)) {
        try {
          writeFileSync(`/proc/${pid}/root/go`, "");
        } catch {
          // that RUN ended meanwhile
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const code = await exited;
    assert.ok(sawBoth, `both stages' RUN containers were never up at once:\n${stdout}`);
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    const steps = [...stdout.matchAll(/^Step (\d+)\/(\d+) : (.*)$/gm)].map((m) => `${m[1]}/${m[2]} ${m[3]}`);
    assert.deepEqual(steps, [
      "1/7 FROM busybox AS left",
      `2/7 RUN echo left > /left; ${wait}`,
      "3/7 FROM busybox AS right",
      `4/7 RUN echo right > /right; ${wait}`,
      "5/7 FROM busybox",
      "6/7 COPY --from=left /left /from-left",
      "7/7 COPY --from=right /right /from-right",
    ]);
    // A stage's lines stay together: the left RUN's container is removed before the right stage starts.
    const leftRun = /^Step 2\/7 .*\n ---> Running in ([0-9a-f]{12})\n/m.exec(stdout)![1]!;
    assert.ok(stdout.indexOf(`Removing intermediate container ${leftRun}`) < stdout.indexOf("Step 3/7"), stdout);
    assert.equal(ok(d.docker(["run", "--rm", "parallel:1", "cat", "/from-left", "/from-right"]), "run").stdout, "left\nright\n");

    const failing = build(
      context("parallel-fail", { Dockerfile: "FROM busybox AS a\nRUN exit 5\nFROM busybox AS b\nRUN echo fine > /b\nFROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /b /b\n" }),
      [],
    );
    assert.equal(failing.code, 5, failing.stderr);
    assert.match(failing.stdout, /^Step 1\/7 : FROM busybox AS a\n ---> [0-9a-f]{12}\nStep 2\/7 : RUN exit 5$/m);
    assert.match(failing.stderr, /The command '\/bin\/sh -c exit 5' returned a non-zero code: 5/);
    assert.doesNotMatch(failing.stdout, /Step 5\/7/);
    assert.equal(d.docker(["ps", "-aq"]).stdout, "", "no container is left by either stage");
  });
});
