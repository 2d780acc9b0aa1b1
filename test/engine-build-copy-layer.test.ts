// A COPY's or RUN's small layer is read from its snapshot's upper dir in the engine
// (services/engine/build/step-layer.ts ownLayer) instead of by the diff service. Its bytes
// must be the ones the diff service makes of the same upper dir: each such layer of a real
// build (nested dirs, --chown, --chmod, symlinks, hard links, non-ASCII and long names, a
// copy into a directory of the base image, a file of the base image replaced, a RUN's own
// files and links) is diffed again by the real diff service from its committed snapshot,
// and the two digests compared.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFreshChannels, freshClient, ok, type Daemon } from "./harness.ts";
import { eventually, startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { classicBuild, defaultRegistryArgs, endBuildTests, writeContext } from "./fixtures/build.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { chainId } from "../core/image/chain-id.ts";
import { SnapshotsDefinition } from "../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import type { Mount } from "../core/gen/containerd/types/mount.ts";

let d: Daemon;
let work: string;
const ns = inNamespace("moby");

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-copy-layer-"));
  // The build's trace names the steps whose layer the engine read ("layer read" where the diff service's is "diff").
  d = await startEngineWithBusybox({ env: { BERTH_BUILD_TRACE: join(work, "trace.jsonl") }, args: defaultRegistryArgs(work) });
});

after(async () => {
  closeFreshChannels();
  await endBuildTests(d, work);
});

/** The layer the diff service makes of committed snapshot `name`'s own dir over its parents (the COPY's upper dir over its lower dirs). */
async function diffServiceLayer(name: string): Promise<string> {
  const snapshots = freshClient(SnapshotsDefinition, d.address);
  const key = `copy-layer-test-${name.slice(7, 19)}`;
  const { mounts } = await snapshots.prepare({ snapshotter: "overlayfs", key, parent: name, labels: {} }, ns);
  try {
    const lowers = mounts[0]!.options.find((o) => o.startsWith("lowerdir="))!.slice("lowerdir=".length).split(":");
    const [own, ...parents] = lowers;
    assert.ok(own && parents.length > 0, `snapshot ${name} has a parent`);
    const right: Mount[] = [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${parents.join(":")}`, `upperdir=${own}`, `workdir=${join(own, "..", "work")}`] }];
    const left: Mount[] = parents.length === 1 ? [{ type: "bind", source: parents[0]!, target: "", options: ["ro", "rbind"] }] : [{ type: "overlay", source: "overlay", target: "", options: ["ro", `lowerdir=${parents.join(":")}`] }];
    const { diff } = await freshClient(DiffDefinition, d.address).diff({ left, right, mediaType: "application/vnd.oci.image.layer.v1.tar", ref: `${key}-diff`, labels: {} }, ns);
    return diff!.digest;
  } finally {
    await snapshots.remove({ snapshotter: "overlayfs", key }, ns);
  }
}

test("each COPY and RUN layer the engine read is byte for byte the diff service's layer of the same upper dir", async () => {
  const long = `${"deep-directory-name/".repeat(6)}a-file-name-past-the-ustar-limit.txt`;
  const dir = writeContext(work, "tree", {
    Dockerfile: [
      "FROM busybox",
      "COPY tree/ /app/",
      "COPY --chown=1000:2000 tree/ /owned/",
      "COPY --chmod=750 tree/ /modes/",
      "COPY tree/nested/ /etc/",
      "COPY tree/top.txt /etc/group",
      "RUN mkdir -p /made/sub && echo x > /made/sub/f && ln /made/sub/f /made/sub/h && ln -s f /made/sub/l && chown 7:8 /made/sub/h && chmod 4755 /made/sub/f",
      "",
    ].join("\n"),
    "tree/top.txt": "top\n",
    "tree/nested/inner/deeper/file.txt": "deep\n",
    "tree/nested/ünïcödé.txt": "name\n",
    [`tree/${long}`]: "long\n",
    "tree/empty/.keep": "",
  });
  chmodSync(join(dir, "tree/top.txt"), 0o4755);
  chmodSync(join(dir, "tree/nested/inner"), 0o700);
  symlinkSync("../top.txt", join(dir, "tree/nested/link-up"));
  symlinkSync("/etc/passwd", join(dir, "tree/absolute-link"));
  linkSync(join(dir, "tree/top.txt"), join(dir, "tree/nested/hard-to-top"));
  mkdirSync(join(dir, "tree/empty-dir"));
  writeFileSync(join(dir, "tree/nested/inner/deeper/big.bin"), Buffer.alloc(300 << 10, 7));

  ok(classicBuild(d, dir, ["-t", "copy-layer:1"]), "build");
  const diffIds = JSON.parse(ok(d.docker(["inspect", "--format", "{{json .RootFS.Layers}}", "copy-layer:1"]), "inspect").stdout) as string[];
  const steps = diffIds.slice(-6);
  assert.equal(steps.length, 6);
  // The trace line is appended once the build has released everything, maybe after the client's exit.
  const marks = await eventually("the build's trace", () => {
    const line = existsSync(join(work, "trace.jsonl")) ? readFileSync(join(work, "trace.jsonl"), "utf8").split("\n")[0] : "";
    return line ? (JSON.parse(line) as [string, number][]).map(([mark]) => mark) : undefined;
  });
  assert.equal(marks.filter((m) => m === "layer read").length, 6, `every step's layer read in the engine: ${marks.join(", ")}`);
  assert.ok(!marks.includes("diff"), "no step's layer left to the diff service");
  for (const [i, diffId] of steps.entries()) {
    const name = chainId(diffIds.slice(0, diffIds.length - steps.length + i + 1));
    assert.equal(await diffServiceLayer(name), diffId, `step ${i + 2}: the diff service's layer of the same upper dir`);
  }
  // What the layers hold, seen from a container: owners and modes as each step set them.
  const seen = ok(d.docker(["run", "--rm", "copy-layer:1", "sh", "-c", "stat -c '%n %a %u:%g' /app/top.txt /owned/nested/inner /modes/top.txt /etc/inner/deeper/file.txt; readlink /app/nested/link-up; cat /etc/group; stat -c '%n %a %u:%g %h' /made/sub/f"]), "run").stdout;
  assert.equal(seen, "/app/top.txt 4755 0:0\n/owned/nested/inner 700 1000:2000\n/modes/top.txt 750 0:0\n/etc/inner/deeper/file.txt 644 0:0\n../top.txt\ntop\n/made/sub/f 4755 7:8 2\n");
});
