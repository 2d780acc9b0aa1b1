// Platforms in a build through the real docker CLI (DOCKER_BUILDKIT=0): FROM --platform
// picks a manifest from a two-platform index; a stage of a platform this host cannot run
// can be copied from but not RUN in; the automatic platform ARGs; `docker build
// --platform` as the default of every FROM; bad platforms refused with their name.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ok, type Daemon, type RunResult } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, buildLeftovers, nothingLeft, endBuildTests } from "./fixtures/build.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { blobOf, descriptor, imageFromLayers, layoutEntries, tarOf, twoPlatformIndex } from "./fixtures/archives.ts";
import { sha256Digest } from "../core/digest.ts";

let d: Daemon;
let work: string;

/**
 * docker.io/library/multiarch:1, an index of linux/amd64 and linux/arm64/v8: both are
 * busybox's layer and a layer with /platform naming their platform (the arm64 one holds
 * amd64 binaries, which no test runs: a RUN in it must be refused before it starts).
 */
async function importMultiarch(): Promise<void> {
  const busybox = await buildBusyboxImage();
  const busyboxDiffId = (JSON.parse(busybox.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
  const image = async (architecture: string, variant?: string) => {
    const tar = await tarOf([{ name: "platform", data: `${architecture}\n` }]);
    const marker = blobOf("application/vnd.oci.image.layer.v1.tar+gzip", gzipSync(tar));
    return { marker, parts: imageFromLayers([busybox.layers[0]!, marker], [busyboxDiffId, sha256Digest(tar)], { architecture, ...(variant ? { variant } : {}) }) };
  };
  const amd64 = await image("amd64");
  const arm64 = await image("arm64", "v8");
  const index = twoPlatformIndex(amd64.parts.manifest, arm64.parts.manifest);
  const archive = join(work, "multiarch.tar");
  writeFileSync(archive, await tarOf(layoutEntries([index, ...amd64.parts.blobs, ...arm64.parts.blobs], [descriptor(index, { annotations: { "io.containerd.image.name": "docker.io/library/multiarch:1", "org.opencontainers.image.ref.name": "1" } })])));
  ok(d.ctr(["images", "import", "--all-platforms", archive], undefined, "moby"), "import the two-platform index");
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-platform-"));
  d = await startEngineWithBusybox();
  await importMultiarch();
});

after(() => endBuildTests(d, work));

const context = (name: string, files: Record<string, string>): string => writeContext(work, name, files);
const build = (dir: string, args: string[] = []): RunResult => classicBuild(d, dir, args);
const runOut = (ref: string, ...cmd: string[]) => ok(d.docker(["run", "--rm", ref, ...cmd]), `run ${ref}`).stdout;
const inspect = (ref: string, format: string) => ok(d.docker(["image", "inspect", "--format", format, ref]), `inspect ${ref}`).stdout.trim();

describe("build platforms", () => {
  test("FROM picks this host's manifest of an index by default, --platform another one; COPY --from a foreign stage works", () => {
    const dir = context("copy-foreign", {
      Dockerfile: [
        "FROM --platform=linux/arm64 multiarch:1 AS foreign",
        "FROM multiarch:1",
        "COPY --from=foreign /platform /foreign-platform",
        "",
      ].join("\n"),
    });
    const r = ok(build(dir, ["-t", "platform:copy"]), "build");
    assert.match(r.stdout, /^Step 1\/3 : FROM --platform=linux\/arm64 multiarch:1 AS foreign$/m);
    assert.equal(runOut("platform:copy", "cat", "/platform", "/foreign-platform"), "amd64\narm64\n");
    assert.equal(inspect("platform:copy", "{{.Os}}/{{.Architecture}}"), "linux/amd64");
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });

  test("RUN in a stage of a platform this host cannot run fails naming the platform, and leaves nothing", () => {
    const dir = context("run-foreign", { Dockerfile: "FROM --platform=linux/arm64 multiarch:1\nRUN cat /platform\n" });
    const r = build(dir);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /RUN \/bin\/sh -c cat \/platform: the stage's image is for platform linux\/arm64, which this host \(linux\/amd64\) cannot run: Berth has no emulation/);
    assert.doesNotMatch(r.stdout, /Running in/);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });

  test("docker build --platform sets every FROM's platform; the result is that platform's image", () => {
    const dir = context("target-platform", { Dockerfile: "FROM multiarch:1\nCOPY note /note\n", note: "copied\n" });
    ok(build(dir, ["--platform", "linux/arm64", "-t", "platform:arm"]), "build --platform");
    assert.equal(inspect("platform:arm", "{{.Os}}/{{.Architecture}}/{{.Variant}}"), "linux/arm64/v8");
    // Its files are the arm64 manifest's (read through a host stage that copies from it).
    const reader = context("read-arm", { Dockerfile: "FROM busybox\nCOPY --from=platform:arm /platform /note /\n" });
    ok(build(reader, ["-t", "platform:read-arm"]), "read build");
    assert.equal(runOut("platform:read-arm", "cat", "/platform", "/note"), "arm64\ncopied\n");
    // FROM scratch takes the build's platform too.
    const scratch = context("scratch-arm", { Dockerfile: "FROM scratch\nCOPY note /\n", note: "n\n" });
    ok(build(scratch, ["--platform", "linux/arm64", "-t", "platform:scratch-arm"]), "scratch build");
    assert.equal(inspect("platform:scratch-arm", "{{.Os}}/{{.Architecture}}"), "linux/arm64");
  });

  test("BUILDPLATFORM, TARGETPLATFORM and their parts: in FROM lines, and in a stage after a bare ARG", () => {
    const dir = context("automatic-args", {
      Dockerfile: [
        "FROM --platform=$BUILDPLATFORM multiarch:1 AS tools",
        "ARG TARGETPLATFORM",
        "ARG TARGETOS",
        "ARG TARGETARCH",
        "ARG BUILDARCH",
        "ARG NOTHING",
        "RUN echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDARCH [$NOTHING] $(cat /platform)\" > /seen",
        "FROM --platform=$TARGETPLATFORM multiarch:1",
        "COPY --from=tools /seen /seen",
        "",
      ].join("\n"),
    });
    ok(build(dir, ["--platform", "linux/arm64", "-t", "platform:args"]), "build");
    const reader = context("read-args", { Dockerfile: "FROM busybox\nCOPY --from=platform:args /seen /platform /\n" });
    ok(build(reader, ["-t", "platform:read-args"]), "read build");
    assert.equal(runOut("platform:read-args", "cat", "/seen", "/platform"), "linux/arm64 linux arm64 amd64 [] amd64\narm64\n");
    // Not declared in the stage: not seen there (BuildKit's scoping).
    const unscoped = context("unscoped-args", { Dockerfile: "FROM busybox\nRUN echo \"[$TARGETARCH]\" > /seen\n" });
    ok(build(unscoped, ["-t", "platform:unscoped"]), "unscoped build");
    assert.equal(runOut("platform:unscoped", "cat", "/seen"), "[]\n");
  });

  test("bad platforms: an index without it, a single manifest of another, unparsable, an unknown FROM flag", () => {
    const missing = build(context("missing-platform", { Dockerfile: "FROM --platform=linux/s390x multiarch:1\n" }));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /multiarch:1 has no image for platform linux\/s390x \(it has linux\/amd64, linux\/arm64\/v8\)/);

    const single = build(context("single-platform", { Dockerfile: "FROM --platform=linux/arm64 busybox\n" }));
    assert.equal(single.code, 1);
    assert.match(single.stderr, /image with reference busybox was found but does not match the specified platform: wanted linux\/arm64, actual: linux\/amd64/);

    const empty = build(context("empty-platform", { Dockerfile: "FROM --platform=$NOT_AN_ARG busybox\n" }));
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /failed to parse platform : the --platform value is empty/);

    const garbage = build(context("garbage-platform", { Dockerfile: "FROM --platform=linux/a:b busybox\n" }));
    assert.equal(garbage.code, 1);
    assert.match(garbage.stderr, /failed to parse platform linux\/a:b: "a:b" is an invalid component/);

    const query = build(context("query-platform", { Dockerfile: "FROM busybox\n" }), ["--platform", "windows/amd64"]);
    assert.equal(query.code, 1);
    assert.match(query.stderr, /invalid platform "windows\/amd64": Berth builds only linux images/);

    const flag = build(context("bad-flag", { Dockerfile: "FROM busybox\nFROM --plat=linux/arm64 busybox\n" }));
    assert.equal(flag.code, 1);
    assert.match(flag.stderr, /dockerfile parse error on line 2: unknown flag: plat/);
    assert.deepEqual(buildLeftovers(d), nothingLeft);
  });
});
