// The builder against issue 11's list, through the real docker CLI (DOCKER_BUILDKIT=0):
// ONBUILD COPY --from naming a stage of the build that uses the base, and the
// instructions and forms the list names that other files do not prove.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, buildLeftovers, nothingLeft } from "./fixtures/build.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-checklist-"));
  d = await startEngineWithBusybox();
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const context = (name: string, files: Record<string, string | Buffer>): string => writeContext(work, name, files as Record<string, string>);
const build = (dir: string, args: string[] = [], env?: NodeJS.ProcessEnv): RunResult => (env ? d.docker(["build", ...args, dir], undefined, { DOCKER_BUILDKIT: "0", ...env }) : classicBuild(d, dir, args));
const runOut = (ref: string, ...cmd: string[]) => ok(d.docker(["run", "--rm", ref, ...cmd]), `run ${ref}`).stdout;

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
      ["later", /invalid from flag value later: No such image: docker.io\/library\/later:latest/],
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
