// The diff service against the real stack: layer blobs go into the real content
// service, Apply/Diff are called through the gateway, targets are plain dirs and real
// overlayfs mounts (mounted here with mount(8) to see what a container would see).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  linkSync,
  symlinkSync,
  chmodSync,
  chownSync,
  utimesSync,
  lutimesSync,
  unlinkSync,
  appendFileSync,
  type BigIntStats,
} from "node:fs";
import { join } from "node:path";
import { constants as zlib, gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { extract, pack, type Header } from "tar-stream";

type Headers = Partial<Header> & { name: string; pax?: Record<string, string> };
import { Status } from "nice-grpc";
import { grpcError, startDaemon, type Daemon } from "./harness.ts";
import { ingestPayload, ingestPayloadKey } from "../core/image/ingest-payload.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { writeBlob } from "../core/content-client.ts";
import { ContentDefinition } from "../core/gen/containerd/services/content/v1/content.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import type { Mount } from "../core/gen/containerd/types/mount.ts";
import * as native from "../native/index.ts";

const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
const ns = inNamespace("default");
const oci = {
  tar: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};
const dockerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const dockerTar = "application/vnd.docker.image.rootfs.diff.tar";

type TarSpec = [Headers, (string | Buffer)?];

async function buildTar(entries: TarSpec[]): Promise<Buffer> {
  const p = pack();
  for (const [header, body] of entries) {
    const h = { mtime: new Date(1_600_000_000_000), ...header } as Partial<Header> & { name: string };
    if (body === undefined) p.entry(h);
    else p.entry(h, body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

let d: Daemon;
let work: string;
let diffClient: ReturnType<typeof grpcClient<typeof DiffDefinition>>;
let contentClient: ReturnType<typeof grpcClient<typeof ContentDefinition>>;
const mounted: string[] = [];

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
}

function mountOverlay(target: string, options: string): void {
  mkdirSync(target, { recursive: true });
  sh("mount", ["-t", "overlay", "overlay", "-o", options, target]);
  mounted.push(target);
}

function unmount(target: string): void {
  sh("umount", [target]);
  mounted.splice(mounted.indexOf(target), 1);
}

/** Runs fn on a read-only overlay of `lowers` (topmost first) mounted on a fresh dir, then unmounts it. */
async function withOverlayView<T>(name: string, lowers: string[], fn: (view: string) => T | Promise<T>): Promise<T> {
  const view = freshDir(name);
  mountOverlay(view, `lowerdir=${lowers.join(":")}`);
  try {
    return await fn(view);
  } finally {
    unmount(view);
  }
}

/** A fresh directory under the test's work dir. */
function freshDir(name: string): string {
  return mkdtempSync(join(work, `${name}-`));
}

async function ingest(data: Buffer): Promise<string> {
  const digest = sha256(data);
  await writeBlob(contentClient, data, { ref: `diff-test-${randomBytes(6).toString("hex")}`, expected: digest }, ns);
  return digest;
}

const bind = (dir: string): Mount[] => [{ type: "bind", source: dir, target: "", options: ["rw", "rbind"] }];

function overlayTarget(lowers: string[]): { upper: string; work: string; mounts: Mount[] } {
  const base = freshDir("ovl");
  const upper = join(base, "upper");
  const workdir = join(base, "work");
  mkdirSync(upper);
  mkdirSync(workdir);
  return {
    upper,
    work: workdir,
    mounts: [{ type: "overlay", source: "overlay", target: "", options: ["index=off", `workdir=${workdir}`, `upperdir=${upper}`, `lowerdir=${lowers.join(":")}`] }],
  };
}

async function applyBlob(data: Buffer, mediaType: string, mounts: Mount[]) {
  const digest = await ingest(data);
  const { applied } = await diffClient.apply({ diff: { mediaType, digest, size: BigInt(data.length), annotations: {} }, mounts, payloads: {} }, ns);
  return applied!;
}

/** Everything a container sees of a tree, keyed by path; hard links grouped by inode. */
function snapshotTree(root: string, options: { dirMtimes?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<bigint, string>();
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const key = rel === "" ? name : `${rel}/${name}`;
      const st: BigIntStats = lstatSync(path, { bigint: true });
      const type = st.isFile() ? "file" : st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFIFO() ? "fifo" : st.isCharacterDevice() ? "char" : st.isBlockDevice() ? "block" : "other";
      const xattrs = native
        .llistxattr(path)
        .filter((x) => !x.startsWith("trusted.overlay.") && !(x.startsWith("security.") && x !== "security.capability"))
        .sort()
        .map((x) => `${x}=${native.lgetxattr(path, x)?.toString("hex")}`);
      const parts = [type, (st.mode & 0o7777n).toString(8), `${st.uid}:${st.gid}`, xattrs.join(",")];
      if (type !== "dir" || options.dirMtimes) parts.push(`mtime=${st.mtimeNs / 1_000_000_000n}`);
      if (type === "file") {
        parts.push(sha256(readFileSync(path)));
        if (st.nlink > 1n) {
          const first = inodes.get(st.ino);
          if (first === undefined) inodes.set(st.ino, key);
          parts.push(`linkgroup=${first ?? key}`);
        }
      }
      if (type === "symlink") parts.push(`-> ${readlinkSync(path)}`);
      if (type === "char" || type === "block") parts.push(`rdev=${st.rdev}`);
      out[key] = parts.join(" ");
      if (type === "dir") walk(path, key);
    }
  };
  walk(root, "");
  return out;
}

before(async () => {
  d = await startDaemon();
  work = mkdtempSync("/tmp/berth-diff-test-");
  diffClient = grpcClient(DiffDefinition, d.address);
  contentClient = grpcClient(ContentDefinition, d.address);
});

after(async () => {
  for (const target of [...mounted].reverse()) spawnSync("umount", ["-l", target]);
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("Apply", () => {
  const simple: TarSpec[] = [
    [{ name: "hello.txt", mode: 0o644 }, "hello layer\n"],
    [{ name: "dir", type: "directory", mode: 0o755 }],
    [{ name: "dir/inner", mode: 0o600 }, "inner"],
  ];

  for (const [label, mediaType, compress] of [
    ["tar", oci.tar, (b: Buffer) => b],
    ["tar+gzip", oci.gzip, (b: Buffer) => gzipSync(b)],
    ["tar+zstd", oci.zstd, (b: Buffer) => zstdCompressSync(b, { params: { [zlib.ZSTD_c_compressionLevel]: 3 } })],
    ["docker tar.gzip", dockerGzip, (b: Buffer) => gzipSync(b)],
    ["docker tar holding gzip (sniffed)", dockerTar, (b: Buffer) => gzipSync(b)],
  ] as const) {
    test(`applied digest is the diff id for ${label}`, async () => {
      const tar = await buildTar(simple);
      const dir = freshDir("apply");
      const applied = await applyBlob(compress(tar), mediaType, bind(dir));
      assert.equal(applied.digest, sha256(tar));
      assert.equal(applied.size, BigInt(tar.length));
      assert.equal(applied.mediaType, oci.tar);
      assert.equal(readFileSync(join(dir, "hello.txt"), "utf8"), "hello layer\n");
      assert.equal(readFileSync(join(dir, "dir/inner"), "utf8"), "inner");
    });
  }

  test("the diff id covers trailing bytes after the end-of-archive marker", async () => {
    const tar = Buffer.concat([await buildTar(simple), Buffer.alloc(4096)]);
    const applied = await applyBlob(gzipSync(tar), oci.gzip, bind(freshDir("pad")));
    assert.equal(applied.digest, sha256(tar));
    assert.equal(applied.size, BigInt(tar.length));
  });

  test("modes, owners, mtimes, links, devices, FIFOs and xattrs are preserved", async () => {
    const t = (s: number) => new Date(s * 1000);
    const longName = `deep/${"n".repeat(120)}/${"m".repeat(120)}.txt`;
    const tar = await buildTar([
      [{ name: "bin", type: "directory", mode: 0o755, mtime: t(1_500_000_000) }],
      [{ name: "bin/tool", mode: 0o4755, uid: 0, gid: 0, mtime: t(1_500_000_100) }, "#!/bin/sh\n"],
      [{ name: "bin/alias", type: "link", linkname: "bin/tool" }],
      [{ name: "bin/sym", type: "symlink", linkname: "tool", mtime: t(1_500_000_200) }],
      [{ name: "home", type: "directory", mode: 0o750, uid: 1000, gid: 1001, mtime: t(1_400_000_000) }],
      [{ name: "home/owned", mode: 0o640, uid: 1000, gid: 1001, mtime: t(1_400_000_100) }, "mine"],
      [{ name: "tmp", type: "directory", mode: 0o1777 }],
      [{ name: "dev", type: "directory", mode: 0o755 }],
      [{ name: "dev/null", type: "character-device", mode: 0o666, devmajor: 1, devminor: 3 }],
      [{ name: "dev/loop9", type: "block-device", mode: 0o660, devmajor: 7, devminor: 9 }],
      [{ name: "pipe", type: "fifo", mode: 0o620, uid: 5, gid: 6 }],
      [{ name: "attrs", mode: 0o644, pax: { "SCHILY.xattr.user.berth": "layer-xattr", "SCHILY.xattr.trusted.overlay.opaque": "y" } } as Headers, "x"],
      [{ name: longName, mode: 0o644 }, "long"],
    ]);
    const dir = freshDir("meta");
    const applied = await applyBlob(gzipSync(tar), oci.gzip, bind(dir));
    assert.equal(applied.digest, sha256(tar));

    const tool = lstatSync(join(dir, "bin/tool"));
    assert.equal(tool.mode & 0o7777, 0o4755);
    assert.equal(tool.mtimeMs, 1_500_000_100_000);
    assert.equal(lstatSync(join(dir, "bin/alias")).ino, tool.ino, "hard link keeps the inode");
    assert.equal(tool.nlink, 2);
    assert.equal(readlinkSync(join(dir, "bin/sym")), "tool");
    assert.equal(lstatSync(join(dir, "bin/sym")).mtimeMs, 1_500_000_200_000, "symlink mtime set without following it");
    assert.equal(lstatSync(join(dir, "bin")).mtimeMs, 1_500_000_000_000, "dir mtime set after its contents");
    const home = lstatSync(join(dir, "home"));
    assert.deepEqual([home.mode & 0o7777, home.uid, home.gid, home.mtimeMs], [0o750, 1000, 1001, 1_400_000_000_000]);
    const owned = lstatSync(join(dir, "home/owned"));
    assert.deepEqual([owned.mode & 0o7777, owned.uid, owned.gid], [0o640, 1000, 1001]);
    assert.equal(lstatSync(join(dir, "tmp")).mode & 0o7777, 0o1777);
    const nullDev = lstatSync(join(dir, "dev/null"));
    assert.ok(nullDev.isCharacterDevice());
    assert.equal(nullDev.rdev, (1 << 8) | 3);
    assert.equal(nullDev.mode & 0o7777, 0o666);
    const loop = lstatSync(join(dir, "dev/loop9"));
    assert.ok(loop.isBlockDevice());
    assert.equal(loop.rdev, (7 << 8) | 9);
    const pipe = lstatSync(join(dir, "pipe"));
    assert.ok(pipe.isFIFO());
    assert.deepEqual([pipe.mode & 0o7777, pipe.uid, pipe.gid], [0o620, 5, 6]);
    assert.equal(native.lgetxattr(join(dir, "attrs"), "user.berth")?.toString(), "layer-xattr");
    assert.equal(native.lgetxattr(join(dir, "attrs"), "trusted.overlay.opaque"), null, "a layer cannot set overlayfs xattrs");
    assert.equal(readFileSync(join(dir, longName), "utf8"), "long");
  });

  test("a binary xattr value (security.capability) survives", async () => {
    // tar-stream writes PAX values as UTF-8 text, so this header is built by hand.
    const cap = Buffer.from("0100000200200000000000000000000000000000", "hex");
    const record = (key: string, value: Buffer) => {
      const tail = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
      let len = tail.length + 2;
      while (String(len).length + tail.length !== len) len = String(len).length + tail.length;
      return Buffer.concat([Buffer.from(String(len)), tail]);
    };
    const paxBody = record("SCHILY.xattr.security.capability", cap);
    const ustar = (name: string, size: number, flag: string) => {
      const h = Buffer.alloc(512);
      h.write(name, 0);
      h.write("0000755\0", 100);
      h.write("0000000\0", 108);
      h.write("0000000\0", 116);
      h.write(size.toString(8).padStart(11, "0") + "\0", 124);
      h.write("14000000000\0", 136);
      h.write(flag, 156);
      h.write("ustar\x0000", 257, "latin1");
      h.fill(" ", 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
      return h;
    };
    const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
    const tar = Buffer.concat([ustar("PaxHeaders/ping", paxBody.length, "x"), paxBody, pad(paxBody.length), ustar("ping", 4, "0"), Buffer.from("ping"), pad(4), Buffer.alloc(1024)]);
    const dir = freshDir("cap");
    const applied = await applyBlob(tar, oci.tar, bind(dir));
    assert.equal(applied.digest, sha256(tar));
    assert.deepEqual(native.lgetxattr(join(dir, "ping"), "security.capability"), cap);
  });

  test("whiteouts and opaque dirs delete lower content in a plain dir", async () => {
    const dir = freshDir("bindwh");
    await applyBlob(
      await buildTar([
        [{ name: "keep", mode: 0o644 }, "keep"],
        [{ name: "gone", mode: 0o644 }, "gone"],
        [{ name: "gonedir", type: "directory" }],
        [{ name: "gonedir/f" }, "f"],
        [{ name: "opq", type: "directory" }],
        [{ name: "opq/old" }, "old"],
        [{ name: "opq/sub", type: "directory" }],
        [{ name: "opq/sub/old2" }, "old2"],
      ]),
      oci.tar,
      bind(dir),
    );
    await applyBlob(
      await buildTar([
        [{ name: ".wh.gone" }, ""],
        [{ name: ".wh.gonedir" }, ""],
        [{ name: "opq", type: "directory" }],
        [{ name: "opq/a-new" }, "new"],
        [{ name: "opq/.wh..wh..opq" }, ""],
        [{ name: "opq/sub", type: "directory" }],
        [{ name: "opq/sub/new2" }, "new2"],
        [{ name: "keep", mode: 0o600 }, "replaced"],
      ]),
      oci.tar,
      bind(dir),
    );
    assert.deepEqual(readdirSync(dir).sort(), ["keep", "opq"]);
    assert.equal(readFileSync(join(dir, "keep"), "utf8"), "replaced");
    assert.deepEqual(readdirSync(join(dir, "opq")).sort(), ["a-new", "sub"], "opaque dir keeps only this layer's entries");
    assert.deepEqual(readdirSync(join(dir, "opq/sub")), ["new2"]);
  });

  test("an overlay upper gets overlayfs whiteouts; the mounted rootfs hides deleted and opaque content", async () => {
    const lower = freshDir("lower");
    await applyBlob(
      await buildTar([
        [{ name: "etc", type: "directory", mode: 0o755, mtime: new Date(1_000_000_000_000) }],
        [{ name: "etc/deleted" }, "deleted"],
        [{ name: "etc/kept" }, "kept"],
        [{ name: "var", type: "directory", mode: 0o755 }],
        [{ name: "var/cache", type: "directory", mode: 0o755 }],
        [{ name: "var/cache/old1" }, "1"],
        [{ name: "var/cache/old2" }, "2"],
        [{ name: "shared", type: "directory", mode: 0o1777, uid: 7, gid: 8 }],
        [{ name: "olddir", type: "directory" }],
        [{ name: "olddir/x" }, "x"],
      ]),
      oci.tar,
      bind(lower),
    );
    const target = overlayTarget([lower]);
    const layer2 = await buildTar([
      [{ name: "etc/.wh.deleted" }, ""],
      [{ name: ".wh.olddir" }, ""],
      [{ name: "var/cache", type: "directory", mode: 0o700 }],
      [{ name: "var/cache/.wh..wh..opq" }, ""],
      [{ name: "var/cache/fresh" }, "fresh"],
      // No "shared/" entry: the upper dir must take the lower's metadata (1777, 7:8).
      [{ name: "shared/file", mode: 0o644 }, "in shared"],
      [{ name: "etc/hard", mode: 0o600 }, "hard"],
      [{ name: "etc/hard2", type: "link", linkname: "etc/hard" }],
    ]);
    const applied = await applyBlob(gzipSync(layer2), oci.gzip, target.mounts);
    assert.equal(applied.digest, sha256(layer2));

    const wh = lstatSync(join(target.upper, "etc/deleted"));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, "whiteout is a 0:0 char device");
    assert.ok(lstatSync(join(target.upper, "olddir")).isCharacterDevice());
    assert.equal(native.lgetxattr(join(target.upper, "var/cache"), "trusted.overlay.opaque")?.toString(), "y");
    const shared = lstatSync(join(target.upper, "shared"));
    assert.deepEqual([shared.mode & 0o7777, shared.uid, shared.gid], [0o1777, 7, 8], "parent copied up from the lower");
    assert.equal(lstatSync(join(target.upper, "etc")).mode & 0o7777, 0o755);

    await withOverlayView("merged", [target.upper, lower], (merged) => {
      assert.deepEqual(readdirSync(join(merged, "etc")).sort(), ["hard", "hard2", "kept"]);
      assert.ok(!existsSync(join(merged, "olddir")));
      assert.deepEqual(readdirSync(join(merged, "var/cache")), ["fresh"], "opaque dir hides the lower content");
      assert.equal(lstatSync(join(merged, "var/cache")).mode & 0o7777, 0o700);
      assert.equal(lstatSync(join(merged, "etc/hard")).ino, lstatSync(join(merged, "etc/hard2")).ino, "hard link stays linked");
      assert.deepEqual(readdirSync(join(merged, "shared")), ["file"]);
      assert.equal(lstatSync(join(merged, "shared")).mode & 0o7777, 0o1777);
    });
  });

  test("any other mount shape is mounted, extracted into, and unmounted", async () => {
    const lower = freshDir("stacklower");
    writeFileSync(join(lower, "from-lower"), "lower");
    writeFileSync(join(lower, "doomed"), "doomed");
    const target = overlayTarget([lower]);
    // Two records: the diff service has to mount them itself.
    const mounts: Mount[] = [{ type: "tmpfs", source: "tmpfs", target: "", options: ["size=1m"] }, ...target.mounts];
    const tar = await buildTar([[{ name: "added" }, "added"], [{ name: ".wh.doomed" }, ""]]);
    const applied = await applyBlob(tar, oci.tar, mounts);
    assert.equal(applied.digest, sha256(tar));
    assert.equal(readFileSync(join(target.upper, "added"), "utf8"), "added");
    assert.ok(lstatSync(join(target.upper, "doomed")).isCharacterDevice(), "the kernel recorded the deletion");
    const left = readdirSync(join(d.root, "diff", "mounts"));
    assert.deepEqual(left, [], "temp mount points are gone");
    const mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
    assert.ok(!mountinfo.includes(join(d.root, "diff", "mounts")), "nothing stays mounted");
  });
});

test("real ctr: images import unpacks both layers through Apply, whiteouts included", async () => {
  const l1 = await buildTar([
    [{ name: "bin", type: "directory", mode: 0o755 }],
    [{ name: "bin/busybox", mode: 0o755 }, readFileSync("/bin/busybox")],
    [{ name: "bin/sh", type: "symlink", linkname: "busybox" }],
    [{ name: "etc", type: "directory", mode: 0o755 }],
    [{ name: "etc/passwd", mode: 0o644 }, "root:x:0:0::/:/bin/sh\n"],
    [{ name: "etc/old", mode: 0o644 }, "old"],
  ]);
  const l2 = await buildTar([[{ name: "etc", type: "directory", mode: 0o755 }], [{ name: "etc/.wh.old" }, ""], [{ name: "etc/new", mode: 0o644 }, "new"]]);
  const layers = [gzipSync(l1), zstdCompressSync(l2)];
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const config = json({ architecture: "amd64", os: "linux", config: { Cmd: ["sh"] }, rootfs: { type: "layers", diff_ids: [sha256(l1), sha256(l2)] } });
  const manifest = json({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
    layers: layers.map((data, i) => ({ mediaType: i === 0 ? oci.gzip : oci.zstd, digest: sha256(data), size: data.length })),
  });
  const index = json({
    schemaVersion: 2,
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(manifest), size: manifest.length, annotations: { "io.containerd.image.name": "docker.io/library/difftest:latest" } }],
  });
  const archive = await buildTar([
    [{ name: "oci-layout" }, '{"imageLayoutVersion":"1.0.0"}'],
    [{ name: "index.json" }, index],
    ...[config, manifest, ...layers].map((data): TarSpec => [{ name: `blobs/sha256/${sha256(data).slice(7)}` }, data]),
  ]);
  const file = join(freshDir("archive"), "image.tar");
  writeFileSync(file, archive);
  const imported = d.ctr(["images", "import", file]);
  assert.equal(imported.code, 0, imported.stderr);
  const ls = d.ctr(["content", "ls"]).stdout;
  assert.ok(ls.includes(`containerd.io/uncompressed=${sha256(l2)}`), ls);
  const target = freshDir("imgmount");
  const m = d.ctr(["images", "mount", "docker.io/library/difftest:latest", target]);
  assert.equal(m.code, 0, m.stderr);
  mounted.push(target);
  try {
    assert.deepEqual(readdirSync(join(target, "etc")).sort(), ["new", "passwd"]);
    assert.equal(readlinkSync(join(target, "bin/sh")), "busybox");
  } finally {
    const u = d.ctr(["images", "unmount", "--rm", target]);
    assert.equal(u.code, 0, u.stderr);
    mounted.splice(mounted.indexOf(target), 1);
  }
});

describe("Apply refuses bad layers", () => {
  test("an entry climbing out of the root", async () => {
    const base = freshDir("escape");
    const root = join(base, "root");
    mkdirSync(root);
    const tar = await buildTar([[{ name: "ok" }, "ok"], [{ name: "../escape" }, "out"]]);
    const err = await grpcError(applyBlob(tar, oci.tar, bind(root)));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /"\.\.\/escape".*escapes the root/);
    assert.deepEqual(readdirSync(base), ["root"], "nothing written next to the root");
  });

  test("a symlink to an outside dir followed by an entry beneath it stays inside the root", async () => {
    const outside = freshDir("outside");
    const root = freshDir("symroot");
    const tar = await buildTar([
      [{ name: "evil", type: "symlink", linkname: outside }],
      [{ name: "evil/file" }, "payload"],
      [{ name: "rel", type: "symlink", linkname: "../../../../../../.." }],
      [{ name: "rel/tmp/relfile" }, "payload2"],
    ]);
    await applyBlob(tar, oci.tar, bind(root));
    assert.deepEqual(readdirSync(outside), [], "the outside dir is untouched");
    assert.equal(readlinkSync(join(root, "evil")), outside, "the symlink itself is created as-is");
    assert.equal(readFileSync(join(root, outside, "file"), "utf8"), "payload", "resolved like a chroot");
    assert.ok(!existsSync("/tmp/relfile"));
    assert.equal(readFileSync(join(root, "tmp/relfile"), "utf8"), "payload2");
  });

  test("a hard link to a path above the root", async () => {
    const root = freshDir("hlroot");
    const tar = await buildTar([[{ name: "passwd", type: "link", linkname: "../../etc/passwd" }]]);
    const err = await grpcError(applyBlob(tar, oci.tar, bind(root)));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /"passwd".*escapes the root/);
    assert.deepEqual(readdirSync(root), []);
  });

  test("a hard link through a symlink to an outside dir does not reach the host file", async () => {
    const root = freshDir("hlsym");
    const tar = await buildTar([
      [{ name: "etcl", type: "symlink", linkname: "/etc" }],
      [{ name: "stolen", type: "link", linkname: "etcl/passwd" }],
    ]);
    const err = await grpcError(applyBlob(tar, oci.tar, bind(root)));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /"stolen".*does not exist/);
    assert.ok(!existsSync(join(root, "stolen")));
  });

  test("an absolute entry name is relative to the root", async () => {
    const root = freshDir("abs");
    await applyBlob(await buildTar([[{ name: "/etc/abs-file" }, "abs"]]), oci.tar, bind(root));
    assert.equal(readFileSync(join(root, "etc/abs-file"), "utf8"), "abs");
  });

  test("a whiteout naming the parent dir", async () => {
    const root = freshDir("whdots");
    const err = await grpcError(applyBlob(await buildTar([[{ name: "a/.wh.." }, ""]]), oci.tar, bind(root)));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /invalid whiteout name/);
  });

  test("corrupt gzip", async () => {
    // Compressible data: corruption then hits deflate blocks, not stored raw bytes.
    const gz = gzipSync(await buildTar([[{ name: "f" }, Buffer.from("compressible layer text ".repeat(4000))]]));
    for (let i = 100; i < 400; i++) gz[i] = gz[i]! ^ 0x5a;
    const err = await grpcError(applyBlob(gz, oci.gzip, bind(freshDir("gz"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /corrupt gzip data/);
  });

  test("truncated gzip", async () => {
    const gz = gzipSync(await buildTar([[{ name: "f" }, randomBytes(64 * 1024)]]));
    const err = await grpcError(applyBlob(gz.subarray(0, gz.length - 2000), oci.gzip, bind(freshDir("gzt"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /gzip/);
  });

  test("corrupt zstd", async () => {
    const text = Buffer.from("compressible layer text ".repeat(4000));
    const zst = zstdCompressSync(await buildTar([[{ name: "f" }, text]]), { params: { [zlib.ZSTD_c_checksumFlag]: 1 } });
    for (let i = 40; i < 300; i++) zst[i] = zst[i]! ^ 0x5a;
    const err = await grpcError(applyBlob(zst, oci.zstd, bind(freshDir("zst"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /corrupt zstd data/);
  });

  test("truncated tar", async () => {
    const tar = await buildTar([[{ name: "big" }, randomBytes(10_000)]]);
    const err = await grpcError(applyBlob(tar.subarray(0, 3000), oci.tar, bind(freshDir("trunc"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /truncated layer/);
  });

  test("garbage that is not a tar", async () => {
    const err = await grpcError(applyBlob(randomBytes(2048), oci.tar, bind(freshDir("garbage"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /checksum/);
  });

  test("a gzip media type over uncompressed data", async () => {
    const err = await grpcError(applyBlob(await buildTar(simpleLayer()), oci.gzip, bind(freshDir("mislabel"))));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    assert.match(err.details, /media type says gzip/);
  });

  test("an unsupported media type", async () => {
    const err = await grpcError(applyBlob(await buildTar(simpleLayer()), "application/vnd.oci.image.layer.v1.tar+encrypted", bind(freshDir("enc"))));
    assert.equal(err.code, Status.UNIMPLEMENTED);
    assert.match(err.details, /unsupported diff media type/);
  });

  test("stored bytes that do not hash to the descriptor's digest", async () => {
    const tar = await buildTar([[{ name: "unique" }, randomBytes(100)]]);
    const digest = await ingest(tar);
    // Corrupt the blob file behind the content service's back (same size).
    const blob = join(d.root, "content", "blobs", "sha256", digest.slice(7));
    const bytes = readFileSync(blob);
    bytes[600] = bytes[600]! ^ 0xff;
    writeFileSync(blob, bytes);
    const dir = freshDir("mismatch");
    const err = await grpcError(diffClient.apply({ diff: { mediaType: oci.tar, digest, size: BigInt(tar.length), annotations: {} }, mounts: bind(dir), payloads: {} }, ns));
    assert.equal(err.code, Status.FAILED_PRECONDITION);
    assert.match(err.details, /digest mismatch/);
    assert.deepEqual(readdirSync(dir), [], "nothing extracted from unverified data");
  });

  test("a descriptor size that does not match the blob", async () => {
    const tar = await buildTar(simpleLayer());
    const digest = await ingest(tar);
    const dir = freshDir("size");
    const err = await grpcError(diffClient.apply({ diff: { mediaType: oci.tar, digest, size: BigInt(tar.length + 1), annotations: {} }, mounts: bind(dir), payloads: {} }, ns));
    assert.equal(err.code, Status.FAILED_PRECONDITION);
    assert.match(err.details, /size/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a blob that is not in the content store", async () => {
    const missing = sha256(randomBytes(32));
    const err = await grpcError(diffClient.apply({ diff: { mediaType: oci.tar, digest: missing, size: 10n, annotations: {} }, mounts: bind(freshDir("missing")), payloads: {} }, ns));
    assert.equal(err.code, Status.NOT_FOUND);
    assert.match(err.details, new RegExp(missing));
  });

  test("a blob of another namespace is not visible", async () => {
    const tar = await buildTar(simpleLayer());
    const digest = await ingest(tar);
    const err = await grpcError(
      diffClient.apply({ diff: { mediaType: oci.tar, digest, size: BigInt(tar.length), annotations: {} }, mounts: bind(freshDir("otherns")), payloads: {} }, inNamespace("elsewhere")),
    );
    assert.equal(err.code, Status.NOT_FOUND);
  });

  test("bad requests: invalid digest, no mounts, read-only bind, overlay without upperdir, a bad ingest payload", async () => {
    const tar = await buildTar(simpleLayer());
    const digest = await ingest(tar);
    const nonEmpty = freshDir("non-empty");
    writeFileSync(join(nonEmpty, "present"), "");
    const desc = { mediaType: oci.tar, digest, size: BigInt(tar.length), annotations: {} };
    const cases: [Parameters<typeof diffClient.apply>[0], RegExp][] = [
      [{ diff: { ...desc, digest: "sha256:nothex" }, mounts: bind(freshDir("bad")), payloads: {} }, /invalid digest/],
      [{ diff: desc, mounts: [], payloads: {} }, /no mounts/],
      [{ diff: desc, mounts: [{ type: "bind", source: freshDir("ro"), target: "", options: ["ro", "rbind"] }], payloads: {} }, /read-only/],
      [{ diff: desc, mounts: [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${freshDir("l1")}:${freshDir("l2")}`] }], payloads: {} }, /no upperdir/],
      // Apply from a download's ingest (the pull's layer jobs): a payload of another type, and a target that is not empty.
      [{ diff: desc, mounts: bind(freshDir("payload")), payloads: { [ingestPayloadKey]: { typeUrl: "example.com/other", value: Buffer.from("x") } } }, /payload berth.io\/apply-from-ingest must be a berth.io\/ingest-ref/],
      [{ diff: desc, mounts: bind(nonEmpty), payloads: ingestPayload("layer-x") }, /from ingest "layer-x": the target must be an empty directory/],
    ];
    for (const [request, message] of cases) {
      const err = await grpcError(diffClient.apply(request, ns));
      assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, message);
    }
  });
});

test("Apply naming an ingest that is not there (the download was committed meanwhile) applies the stored blob", async () => {
  const tar = await buildTar(simpleLayer());
  const digest = await ingest(tar);
  const dir = freshDir("from-store");
  const { applied } = await diffClient.apply({ diff: { mediaType: oci.tar, digest, size: BigInt(tar.length), annotations: {} }, mounts: bind(dir), payloads: ingestPayload("layer-no-such-ingest") }, ns);
  assert.equal(applied?.digest, digest);
  assert.deepEqual(readdirSync(dir), ["file"]);
});

function simpleLayer(): TarSpec[] {
  return [[{ name: "file", mode: 0o644 }, "content"]];
}

/** Entry names of a layer blob in the content store, read back with tar-stream (an independent parser). */
async function layerNames(digest: string, mediaType: string): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const { data } of contentClient.read({ digest, offset: 0n, size: 0n }, ns)) chunks.push(data);
  const blob = Buffer.concat(chunks);
  return tarNames(mediaType.endsWith("gzip") ? gunzipSync(blob) : mediaType.endsWith("zstd") ? zstdDecompressSync(blob) : blob);
}

/** Entry names of an uncompressed tar, read with tar-stream. */
async function tarNames(tar: Buffer): Promise<string[]> {
  const names: string[] = [];
  const ex = extract();
  ex.end(tar);
  for await (const entry of ex) {
    names.push(entry.header.name);
    entry.resume();
  }
  return names;
}

/** A lower tree with a bit of everything, written directly. */
function populateLower(dir: string): void {
  mkdirSync(join(dir, "etc"));
  writeFileSync(join(dir, "etc/unchanged"), "same");
  writeFileSync(join(dir, "etc/modified"), "before");
  writeFileSync(join(dir, "etc/deleted"), "bye");
  writeFileSync(join(dir, "etc/chmodded"), "mode");
  writeFileSync(join(dir, "etc/chowned"), "owner");
  mkdirSync(join(dir, "opaque"));
  writeFileSync(join(dir, "opaque/old"), "old");
  mkdirSync(join(dir, "gone-dir/sub"), { recursive: true });
  writeFileSync(join(dir, "gone-dir/sub/f"), "f");
  symlinkSync("etc/unchanged", join(dir, "link"));
  writeFileSync(join(dir, "type-change"), "file becomes dir");
  native.mknod(join(dir, "fifo"), 0o010644, 0, 0);
  const stamp = new Date(1_650_000_000_000);
  for (const p of ["etc/unchanged", "etc/modified", "etc/deleted", "etc/chmodded", "etc/chowned", "opaque/old", "gone-dir/sub/f", "type-change", "fifo"]) {
    utimesSync(join(dir, p), stamp, stamp);
  }
  lutimesSync(join(dir, "link"), stamp, stamp);
}

/** The same edits, whether made through an overlay mount or on a copy of the lower. */
function makeChanges(root: string): void {
  writeFileSync(join(root, "etc/modified"), "after, and longer");
  unlinkSync(join(root, "etc/deleted"));
  chmodSync(join(root, "etc/chmodded"), 0o600);
  chownSync(join(root, "etc/chowned"), 1234, 5678);
  writeFileSync(join(root, "etc/added"), "new file");
  native.lsetxattr(join(root, "etc/added"), "user.note", Buffer.from([0, 1, 2, 0xff]), 0);
  rmSync(join(root, "opaque"), { recursive: true });
  mkdirSync(join(root, "opaque"));
  writeFileSync(join(root, "opaque/new"), "new");
  rmSync(join(root, "gone-dir"), { recursive: true });
  rmSync(join(root, "type-change"));
  mkdirSync(join(root, "type-change"));
  writeFileSync(join(root, "type-change/inside"), "inside");
  mkdirSync(join(root, "bin"));
  writeFileSync(join(root, "bin/tool"), "#!/bin/sh\n");
  chmodSync(join(root, "bin/tool"), 0o4755);
  linkSync(join(root, "bin/tool"), join(root, "bin/tool-alias"));
  symlinkSync("/bin/tool", join(root, "bin/abs-link"));
  native.mknod(join(root, "bin/null"), 0o020666, 1, 3);
  appendFileSync(join(root, "bin/" + "long-".repeat(40)), "long name");
  const stamp = new Date(1_700_000_000_000);
  utimesSync(join(root, "etc/added"), stamp, stamp);
}

/** A populateLower tree under a fresh directory. */
function lowerTree(name: string): string {
  const dir = join(freshDir(name), "tree");
  mkdirSync(dir);
  populateLower(dir);
  return dir;
}

function copyTree(from: string, name: string): string {
  const to = join(freshDir(name), "tree");
  sh("cp", ["-a", from, to]);
  return to;
}

describe("Diff", () => {
  test("an overlay upper becomes a layer that recreates the merged view on a copy of the lower", async () => {
    const lower = lowerTree("dlower");
    const target = overlayTarget([lower]);
    const merged = freshDir("dmerged");
    mountOverlay(merged, target.mounts[0]!.options.join(","));
    makeChanges(merged);
    unmount(merged);
    assert.ok(lstatSync(join(target.upper, "etc/deleted")).isCharacterDevice(), "precondition: overlayfs made a whiteout");

    const { diff } = await diffClient.diff(
      { left: [{ type: "bind", source: lower, target: "", options: ["ro", "rbind"] }], right: target.mounts, mediaType: "", ref: "", labels: { "test.label": "yes" } },
      ns,
    );
    assert.ok(diff);
    assert.equal(diff.mediaType, oci.gzip);
    const { info } = await contentClient.info({ digest: diff.digest }, ns);
    assert.equal(info!.size, diff.size);
    assert.equal(info!.labels["test.label"], "yes");
    const diffId = info!.labels["containerd.io/uncompressed"];
    assert.match(diffId ?? "", /^sha256:[0-9a-f]{64}$/);
    // Read from the upper dir: overlayfs' own markers became OCI whiteouts.
    const names = await layerNames(diff.digest, diff.mediaType);
    for (const name of ["etc/.wh.deleted", "opaque/", "opaque/.wh..wh..opq", "opaque/new", ".wh.gone-dir", "type-change/.wh..wh..opq", "bin/tool", "bin/tool-alias"]) {
      assert.ok(names.includes(name), `${name} in ${names.join(" ")}`);
    }
    assert.ok(!names.includes("etc/unchanged"), "unchanged files are not in the layer");
    names.forEach((name, i) => {
      const parent = name.replace(/\/?[^/]+\/?$/, "/");
      const at = names.indexOf(parent);
      assert.ok(at < i, `${name} comes after its directory entry ${parent}`);
    });

    // Plain dir: the copy of the lower, with the layer applied, equals the merged view.
    const copy = copyTree(lower, "dcopy");
    const applied = await diffClient.apply({ diff, mounts: bind(copy), payloads: {} }, ns);
    assert.equal(applied.applied!.digest, diffId, "Apply's diff id matches the label Diff set");

    await withOverlayView("dview", [target.upper, lower], async (view) => {
      const expected = snapshotTree(view);
      assert.deepEqual(snapshotTree(copy), expected);
      assert.ok(expected["bin/tool-alias"]?.includes("linkgroup=bin/tool"), "hard link pair in the view");
      assert.ok(!("etc/deleted" in expected) && !("opaque/old" in expected) && !("gone-dir" in expected));

      // Overlay upper: applying the same layer over the lower gives the same view.
      const target2 = overlayTarget([lower]);
      await diffClient.apply({ diff, mounts: target2.mounts, payloads: {} }, ns);
      await withOverlayView("dview2", [target2.upper, lower], (view2) => {
        assert.deepEqual(snapshotTree(view2), expected);
      });
    });
  });

  test("two plain trees are compared file by file (tar and zstd outputs)", async () => {
    const lower = lowerTree("tlower");
    const upper = copyTree(lower, "tupper");
    makeChanges(upper);
    for (const mediaType of [oci.tar, oci.zstd]) {
      const { diff } = await diffClient.diff({ left: bind(lower), right: bind(upper), mediaType, ref: `tree-diff-${mediaType.slice(-4)}`, labels: {} }, ns);
      assert.equal(diff!.mediaType, mediaType);
      // Compared file by file: deletions inside a recreated dir are listed one by one.
      const names = await layerNames(diff!.digest, mediaType);
      for (const name of ["etc/.wh.deleted", "opaque/.wh.old", "opaque/new", ".wh.gone-dir", "etc/modified", "etc/chmodded", "etc/chowned", "type-change/"]) {
        assert.ok(names.includes(name), `${name} in ${names.join(" ")}`);
      }
      assert.ok(!names.includes("etc/unchanged"), "unchanged files are not in the layer");
      const copy = copyTree(lower, "tcopy");
      await diffClient.apply({ diff: diff!, mounts: bind(copy), payloads: {} }, ns);
      assert.deepEqual(snapshotTree(copy), snapshotTree(upper));
    }
  });

  test("an overlay over other lower dirs is mounted read-only and compared as a tree", async () => {
    const lower = lowerTree("mlower");
    // The right side stacks on a copy: its lower dirs are not the left view, so no upper-dir shortcut.
    const base = copyTree(lower, "mbase");
    const target = overlayTarget([base]);
    const merged = freshDir("mmerged");
    mountOverlay(merged, target.mounts[0]!.options.join(","));
    makeChanges(merged);
    unmount(merged);
    const { diff } = await diffClient.diff({ left: bind(lower), right: target.mounts, mediaType: oci.gzip, ref: "", labels: {} }, ns);
    const names = await layerNames(diff!.digest, diff!.mediaType);
    assert.ok(names.includes("opaque/.wh.old") && !names.includes("opaque/.wh..wh..opq"), names.join(" "));
    const copy = copyTree(lower, "mcopy");
    await diffClient.apply({ diff: diff!, mounts: bind(copy), payloads: {} }, ns);
    await withOverlayView("mview", [target.upper, base], (view) => {
      assert.deepEqual(snapshotTree(copy), snapshotTree(view));
    });
    assert.deepEqual(readdirSync(join(d.root, "diff", "mounts")), [], "temp mounts removed");
  });

  test("an upper dir with overlayfs redirects falls back to comparing the mounted trees", async () => {
    const lower = lowerTree("rlower");
    const target = overlayTarget([lower]);
    mkdirSync(join(target.upper, "moved"));
    writeFileSync(join(target.upper, "moved/file"), "moved");
    // What overlayfs writes for a renamed directory when redirect_dir is on.
    native.lsetxattr(join(target.upper, "moved"), "trusted.overlay.redirect", Buffer.from("/etc"), 0);
    const { diff } = await diffClient.diff({ left: bind(lower), right: target.mounts, mediaType: oci.gzip, ref: "", labels: {} }, ns);
    const copy = copyTree(lower, "rcopy");
    await diffClient.apply({ diff: diff!, mounts: bind(copy), payloads: {} }, ns);
    await withOverlayView("rview", [target.upper, lower], (view) => {
      const expected = snapshotTree(view);
      // The kernel follows the redirect (redirect_always_follow), so the view shows /etc's
      // files under moved/: a plain read of the upper dir would have missed them.
      assert.ok("moved/file" in expected && "moved/unchanged" in expected, Object.keys(expected).join(" "));
      assert.deepEqual(snapshotTree(copy), expected);
    });
  });

  test("an unchanged tree gives an empty layer; the same diff twice is the same blob", async () => {
    const lower = lowerTree("elower");
    const same = copyTree(lower, "esame");
    const first = await diffClient.diff({ left: bind(lower), right: bind(same), mediaType: oci.tar, ref: "", labels: {} }, ns);
    assert.equal(first.diff!.size, 1024n, "only the end-of-archive marker");
    const second = await diffClient.diff({ left: bind(lower), right: bind(same), mediaType: oci.tar, ref: "", labels: {} }, ns);
    assert.equal(second.diff!.digest, first.diff!.digest);
  });

  test("a first layer (no left mounts) holds the whole tree", async () => {
    const tree = lowerTree("first");
    const { diff } = await diffClient.diff({ left: [], right: bind(tree), mediaType: oci.gzip, ref: "", labels: {} }, ns);
    const target = freshDir("firstcopy");
    await diffClient.apply({ diff: diff!, mounts: bind(target), payloads: {} }, ns);
    assert.deepEqual(snapshotTree(target), snapshotTree(tree));
  });

  test("real ctr: snapshots diff of an overlayfs snapshot", async () => {
    const ctrOk = (args: string[]) => {
      const r = d.ctr(args);
      assert.equal(r.code, 0, `ctr ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    ctrOk(["snapshots", "prepare", "diff-base-active", ""]);
    const baseMount = ctrOk(["snapshots", "mounts", "/mnt", "diff-base-active"]);
    const baseDir = baseMount.match(/^mount -t bind (\S+) /)?.[1];
    assert.ok(baseDir, baseMount);
    writeFileSync(join(baseDir, "kept"), "kept");
    writeFileSync(join(baseDir, "removed"), "removed");
    ctrOk(["snapshots", "commit", "diff-base", "diff-base-active"]);
    ctrOk(["snapshots", "prepare", "diff-child", "diff-base"]);
    const childMount = ctrOk(["snapshots", "mounts", "/mnt", "diff-child"]);
    const options = childMount.match(/^mount -t overlay overlay \S+ -o (\S+)/)?.[1];
    assert.ok(options, childMount);
    const merged = freshDir("ctrmerged");
    mountOverlay(merged, options);
    writeFileSync(join(merged, "added"), "added");
    unlinkSync(join(merged, "removed"));
    unmount(merged);

    const r = spawnSync("ctr", ["--address", d.address, "--namespace", "default", "snapshots", "diff", "diff-child"], { encoding: "buffer" });
    assert.equal(r.status, 0, r.stderr.toString());
    const tar = gunzipSync(r.stdout);
    assert.deepEqual((await tarNames(tar)).sort(), [".wh.removed", "added"]);
    const ls = d.ctr(["content", "ls"]).stdout;
    assert.ok(ls.includes(`containerd.io/uncompressed=${sha256(tar)}`), ls);
  });

  test("an unsupported output media type", async () => {
    const tree = freshDir("unsup");
    const err = await grpcError(diffClient.diff({ left: [], right: bind(tree), mediaType: "application/x-rar", ref: "", labels: {} }, ns));
    assert.equal(err.code, Status.UNIMPLEMENTED);
  });
});
