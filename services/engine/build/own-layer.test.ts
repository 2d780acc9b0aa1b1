// ownLayer (step-layer.ts) on real directories laid out as a step's overlay upper and lower
// dirs after a RUN (it reads the dirs only: no mount needed), the tar read back with core/tar.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { readTar } from "../../../core/tar/reader.ts";
import * as native from "../../../native/index.ts";
import { ownLayer, ownLayerLimit } from "./step-layer.ts";
import { mediaTypes } from "../../../core/image/media-types.ts";

const read = (mounts: Mount[], limit = ownLayerLimit) => ownLayer(mounts, mediaTypes.ociLayer, limit, native);

const base = mkdtempSync(join(tmpdir(), "berth-own-layer-"));
after(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
/** A fresh upper dir (made by `layout`) over one empty lower dir. */
function overlay(layout: (upper: string) => void): Mount[] {
  const dir = join(base, String(n++));
  const [lower, upper] = [join(dir, "lower"), join(dir, "upper")];
  mkdirSync(lower, { recursive: true });
  mkdirSync(upper, { recursive: true });
  layout(upper);
  return [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${join(dir, "work")}`] }];
}

/** Each entry as `type mode uid/gid name[ -> link]`, in tar order. */
async function entries(tar: Buffer): Promise<string[]> {
  const out: string[] = [];
  for await (const { header: h } of readTar([tar])) {
    out.push(`${h.type} ${h.mode.toString(8)} ${h.uid}/${h.gid} ${h.name}${h.linkname ? ` -> ${h.linkname}` : ""}`);
  }
  return out;
}

test("a RUN's upper dir becomes the layer the diff service writes: whiteouts, an opaque dir, owners, modes, links", async () => {
  const mounts = overlay((u) => {
    mkdirSync(join(u, "d", "sub"), { recursive: true });
    chmodSync(join(u, "d", "sub"), 0o750);
    native.lsetxattr(join(u, "d", "sub"), "trusted.overlay.opaque", Buffer.from("y"));
    writeFileSync(join(u, "d", "sub", "c"), "c\n");
    chownSync(join(u, "d", "sub", "c"), 12, 34);
    linkSync(join(u, "d", "sub", "c"), join(u, "d", "sub", "hard"));
    symlinkSync("c", join(u, "d", "sub", "link"));
    // overlayfs' whiteouts: character devices 0:0.
    native.mknod(join(u, "d", "a"), 0o20000, 0, 0);
    native.mknod(join(u, "k"), 0o20000, 0, 0);
  });
  const layer = await read(mounts);
  assert.ok(layer);
  assert.equal(layer.digest, `sha256:${createHash("sha256").update(layer.bytes).digest("hex")}`);
  assert.deepEqual(await entries(layer.bytes), [
    "directory 755 0/0 d/",
    "file 0 0/0 d/.wh.a",
    "directory 750 0/0 d/sub/",
    "file 0 0/0 d/sub/.wh..wh..opq",
    "file 644 12/34 d/sub/c",
    "link 644 12/34 d/sub/hard -> d/sub/c",
    "symlink 777 0/0 d/sub/link -> c",
    "file 0 0/0 .wh.k",
  ]);
});

test("an empty upper dir is an empty layer (the end-of-archive blocks only)", async () => {
  const layer = await read(overlay(() => {}));
  assert.ok(layer);
  assert.equal(layer.bytes.length, 1024);
  assert.ok(layer.bytes.every((b) => b === 0));
});

test("a layer over the limit is left to the diff service", async () => {
  const mounts = overlay((u) => writeFileSync(join(u, "big"), Buffer.alloc(4096, 1)));
  assert.equal(await read(mounts, 4096), undefined);
  assert.ok(await read(mounts, 8192), "under a larger limit it is made here");
});

test("an upper dir with overlayfs redirects, or a rootfs that is not an overlay over lower dirs, is left to the diff service", async () => {
  const redirected = overlay((u) => {
    mkdirSync(join(u, "moved"));
    native.lsetxattr(join(u, "moved"), "trusted.overlay.redirect", Buffer.from("/old"));
  });
  assert.equal(await read(redirected), undefined);
  const dir = mkdtempSync(join(base, "bind-"));
  assert.equal(await read([{ type: "bind", source: dir, target: "", options: ["rbind"] }]), undefined);
  const noLowers: Mount[] = [{ type: "overlay", source: "overlay", target: "", options: [`upperdir=${dir}`, `workdir=${dir}-work`] }];
  assert.equal(await read(noLowers), undefined);
});
