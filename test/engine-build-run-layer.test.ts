// A RUN step's layer through the real docker CLI (DOCKER_BUILDKIT=0): a small one made in
// the engine (services/engine/build/step-layer.ts), a large one by the diff service, both
// read back from `docker save` — entries, whiteouts, the opaque marker, owners, modes,
// links, and each layer's digest its diff id — and the image runs with what the RUNs made.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, endBuildTests, buildLeftovers, nothingLeft } from "./fixtures/build.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-run-layer-"));
  d = await startEngineWithBusybox();
});

after(() => endBuildTests(d, work));

interface Saved {
  /** Each layer's entries as `tar -tv` shows them, without sizes and dates. */
  layers: string[][];
  digests: string[];
  diffIds: string[];
}

function saved(image: string): Saved {
  const dir = mkdtempSync(join(work, "save-"));
  const archive = join(dir, "image.tar");
  ok(d.docker(["save", "-o", archive, image]), "save");
  execFileSync("tar", ["-xf", archive, "-C", dir]);
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { Config: string; Layers: string[] }[];
  const config = JSON.parse(readFileSync(join(dir, manifest[0]!.Config), "utf8")) as { rootfs: { diff_ids: string[] } };
  const layers = manifest[0]!.Layers.map((layer) =>
    execFileSync("tar", ["-tvf", join(dir, layer), "--numeric-owner"], { encoding: "utf8", env: { ...process.env, TZ: "UTC" } })
      .split("\n")
      .filter(Boolean)
      // mode owner size date time name: the size and the times are left out.
      .map((line) => line.replace(/^(\S+) (\S+)\s+\d+ \S+ \S+ /, "$1 $2 ")),
  );
  const digests = manifest[0]!.Layers.map((layer) => `sha256:${createHash("sha256").update(readFileSync(join(dir, layer))).digest("hex")}`);
  return { layers, digests, diffIds: config.rootfs.diff_ids };
}

test("a RUN's layer holds what it wrote and deleted, as the diff service writes it; a large one too", () => {
  const dir = writeContext(work, "layers", {
    Dockerfile: [
      "FROM busybox",
      "RUN mkdir -p /d/sub /d/gone && echo a > /d/a && echo b > /d/sub/b && echo keep > /k && touch /d/gone/x",
      "RUN rm /d/a /k && rm -rf /d/gone /d/sub && mkdir /d/sub && chmod 750 /d/sub && echo c > /d/sub/c && chown 12:34 /d/sub/c && ln /d/sub/c /d/sub/hard && ln -s c /d/sub/link",
      // Over what the engine reads itself (step-layer.ts ownLayerLimit): the diff service's.
      "RUN head -c 5000000 /dev/zero > /big",
      "",
    ].join("\n"),
  });
  ok(classicBuild(d, dir, ["-t", "run-layer:1"]), "build");
  const image = saved("run-layer:1");
  assert.deepEqual(image.digests, image.diffIds, "each layer is stored uncompressed: its digest is its diff id");
  const [, first, second, big] = image.layers;
  assert.deepEqual(first, ["drwxr-xr-x 0/0 d/", "-rw-r--r-- 0/0 d/a", "drwxr-xr-x 0/0 d/gone/", "-rw-r--r-- 0/0 d/gone/x", "drwxr-xr-x 0/0 d/sub/", "-rw-r--r-- 0/0 d/sub/b", "-rw-r--r-- 0/0 k"]);
  assert.deepEqual(second, [
    "drwxr-xr-x 0/0 d/",
    "---------- 0/0 d/.wh.a",
    "---------- 0/0 d/.wh.gone",
    "drwxr-x--- 0/0 d/sub/",
    "---------- 0/0 d/sub/.wh..wh..opq",
    "-rw-r--r-- 12/34 d/sub/c",
    "hrw-r--r-- 12/34 d/sub/hard link to d/sub/c",
    "lrwxrwxrwx 0/0 d/sub/link -> c",
    "---------- 0/0 .wh.k",
  ]);
  assert.deepEqual(big, ["-rw-r--r-- 0/0 big"]);
  const seen = ok(d.docker(["run", "--rm", "--network", "none", "run-layer:1", "sh", "-c", "ls -A /d /d/sub; cat /d/sub/hard; wc -c < /big; test -e /k || echo no /k"]), "run").stdout;
  assert.equal(seen, "/d:\nsub\n\n/d/sub:\nc\nhard\nlink\nc\n5000000\nno /k\n");
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});

test("a RUN that changes nothing stores the empty layer; a second build finds that blob stored and it still names its diff id", () => {
  const file = "FROM busybox\nRUN true\n";
  ok(classicBuild(d, writeContext(work, "same-a", { Dockerfile: file }), ["-t", "run-layer:a"]), "first build");
  ok(classicBuild(d, writeContext(work, "same-b", { Dockerfile: file }), ["--no-cache", "-t", "run-layer:b"]), "second build, --no-cache");
  const [a, b] = [saved("run-layer:a"), saved("run-layer:b")];
  const empty = `sha256:${createHash("sha256").update(Buffer.alloc(1024)).digest("hex")}`;
  assert.deepEqual([a.layers[1], a.digests[1], b.digests[1]], [[], empty, empty]);
  assert.deepEqual(b.digests, b.diffIds);
  const row = d.ctr(["content", "ls"], undefined, "moby").stdout.split("\n").find((line) => line.startsWith(empty));
  assert.match(row ?? "", new RegExp(`containerd.io/uncompressed=${empty}`));
  assert.deepEqual(buildLeftovers(d), nothingLeft);
});
