import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { changesToTar, overlayUpperChanges } from "../../../core/tar/changes.ts";
import { mediaTypes } from "../../../core/image/media-types.ts";
import * as native from "../../../native/index.ts";
import { ownLayer, parentView } from "./step-layer.ts";

test("a step's parent view is its overlay's lower dirs, read-only; nothing for other mounts", () => {
  const overlay = (lowers: string) => ({ type: "overlay", source: "overlay", target: "", options: ["index=off", `lowerdir=${lowers}`, "upperdir=/s/9/fs", "workdir=/s/9/work", "volatile"] });
  assert.deepEqual(parentView([overlay("/s/2/fs:/s/1/fs")]), [{ type: "overlay", source: "overlay", target: "", options: ["ro", "lowerdir=/s/2/fs:/s/1/fs"] }]);
  assert.deepEqual(parentView([overlay("/s/1/fs")]), [{ type: "bind", source: "/s/1/fs", target: "", options: ["ro", "rbind"] }]);
  // No upper dir (a view), a bind (a snapshot without parent), several mounts: the caller asks the snapshotter instead.
  assert.equal(parentView([{ type: "overlay", source: "overlay", target: "", options: ["lowerdir=/a:/b"] }]), undefined);
  assert.equal(parentView([{ type: "bind", source: "/s/1/fs", target: "", options: ["rw", "rbind"] }]), undefined);
  assert.equal(parentView([overlay("/a:/b"), overlay("/c:/d")]), undefined);
  assert.equal(parentView([]), undefined);
});

describe("a COPY's layer read in the engine (ownLayer)", () => {
  let dir: string;
  let upper: string;
  let lower: string;
  const mounts = () => [{ type: "overlay", source: "overlay", target: "", options: ["index=off", `lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${join(dir, "work")}`, "volatile"] }];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-step-layer-"));
    upper = join(dir, "upper");
    lower = join(dir, "lower");
    mkdirSync(join(upper, "app", "nested"), { recursive: true });
    mkdirSync(lower);
    writeFileSync(join(upper, "app", "nested", "f.txt"), "contents\n");
    chmodSync(join(upper, "app", "nested", "f.txt"), 0o640);
    chownSync(join(upper, "app", "nested", "f.txt"), 1000, 2000);
    symlinkSync("nested/f.txt", join(upper, "app", "link"));
    linkSync(join(upper, "app", "nested", "f.txt"), join(upper, "app", "hard"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("is the tar the diff service's code makes of the upper dir, its digest that tar's sha256", async () => {
    const layer = await ownLayer(mounts(), mediaTypes.ociLayer);
    assert.ok(layer);
    const parts: Buffer[] = [];
    for await (const chunk of changesToTar(overlayUpperChanges(upper, native), native, { upper })) parts.push(chunk);
    const expected = Buffer.concat(parts);
    assert.ok(layer.bytes.equals(expected));
    assert.equal(layer.digest, `sha256:${createHash("sha256").update(expected).digest("hex")}`);
    assert.equal(layer.mediaType, mediaTypes.ociLayer);
    // The second name of the file is a hard link to the first, as the diff service writes it.
    const listing = spawnSync("tar", ["-tvf", "-"], { input: layer.bytes }).stdout.toString();
    assert.match(listing, /^hrw-r----- 1000\/2000 .* app\/nested\/f\.txt link to app\/hard$/m);
    assert.match(listing, /^lrwxrwxrwx 0\/0 .* app\/link -> nested\/f\.txt$/m);
  });

  test("lets the event loop turn while it reads a layer of many files", async () => {
    const many = join(upper, "many");
    mkdirSync(many);
    try {
      for (let i = 0; i < 1000; i++) writeFileSync(join(many, `f${i}`), "");
      let turns = 0;
      const tick = setInterval(() => turns++, 0);
      let layer;
      try {
        layer = await ownLayer(mounts(), mediaTypes.ociLayer);
      } finally {
        clearInterval(tick);
      }
      assert.ok(layer && layer.bytes.length > 1000 * 512);
      assert.ok(turns > 0, "a timer ran while the layer was read");
    } finally {
      rmSync(many, { recursive: true });
    }
  });

  test("is left to the diff service past the size limit, for a compressed layer, without an upper dir over lower dirs, and for an upper dir with overlay redirects", async () => {
    assert.equal(await ownLayer(mounts(), mediaTypes.ociLayer, 1024), undefined);
    assert.equal(await ownLayer(mounts(), mediaTypes.ociLayerGzip), undefined);
    assert.equal(await ownLayer([{ type: "bind", source: upper, target: "", options: ["rw", "rbind"] }], mediaTypes.ociLayer), undefined);
    const redirected = join(upper, "moved");
    mkdirSync(redirected);
    try {
      native.lsetxattr(redirected, "trusted.overlay.redirect", Buffer.from("/elsewhere"));
      assert.equal(await ownLayer(mounts(), mediaTypes.ociLayer), undefined);
    } finally {
      rmSync(redirected, { recursive: true });
    }
  });
});
