// The native layer applier (applyLayer) against hand-made tars (core/tar/writer.ts), on
// the real kernel (needs root: devices, chown, trusted.* xattrs). Its trees are compared
// with what the JS applier (core/tar/layer.ts) makes of the same layer: the two must
// agree on every entry kind, whiteout, PAX and GNU header, and escape attempt. The same
// checks run again in a child against the ASan/UBSan build (native/build/Sanitize).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, closeSync, createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, truncateSync, writeFileSync, type BigIntStats } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { encodeHeader, endOfArchive, padding, type TarWriteHeader } from "../core/tar/writer.ts";
import { unpackLayer } from "../core/tar/layer.ts";
import { BerthError } from "../core/errors.ts";
import * as native from "./index.ts";
import { rerunUnderSanitizers, sanitizerChild } from "./sanitizer-rerun.ts";

const needsRoot = process.getuid?.() !== 0 && "needs root (mknod, chown, trusted.* xattrs)";
const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

type Spec = Partial<TarWriteHeader> & { name: string | Buffer; data?: string | Buffer };

function entry(spec: Spec): Buffer {
  const data = spec.data === undefined ? undefined : Buffer.from(spec.data);
  const type = spec.type ?? (data !== undefined ? "file" : "directory");
  const header = encodeHeader({ mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, ...spec, type, size: data?.length ?? 0 });
  return data ? Buffer.concat([header, data, padding(data.length)]) : header;
}

/** A header block of another type flag (x, g, L, K) carrying `body`, as GNU tar and PAX writers make them. */
function special(flag: string, body: Buffer): Buffer {
  const header = encodeHeader({ name: "././@LongLink", type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.length });
  header.write(flag, 156, "latin1");
  header.fill(" ", 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return Buffer.concat([header, body, padding(body.length)]);
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const tail = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from("\n")]);
  let length = tail.length + 1;
  while (String(length).length + tail.length !== length) length = String(length).length + tail.length;
  return Buffer.concat([Buffer.from(String(length)), tail]);
}

const pax = (records: [string, Buffer | string][]) => special("x", Buffer.concat(records.map(([k, v]) => paxRecord(k, v))));
const tar = (...parts: Buffer[]) => Buffer.concat([...parts, endOfArchive]);

const testStart = BigInt(Date.now() - 60_000) * 1_000_000n;
/** A time as compared: "now" for what the applier stamped itself (dirs a layer implies, whiteouts). */
const shownTime = (ns: bigint) => (ns >= testStart ? "now" : String(ns));

/**
 * Everything a container sees of a tree, keyed by path (names as bytes); hard links
 * grouped by inode. atime only where nothing here reads the file (a read may touch it).
 */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<bigint, string>();
  const walk = (dir: Buffer, rel: string) => {
    for (const name of readdirSync(dir, { encoding: "buffer" }).sort(Buffer.compare)) {
      const path = Buffer.concat([dir, Buffer.from("/"), name]);
      const key = rel === "" ? name.toString("latin1") : `${rel}/${name.toString("latin1")}`;
      const st: BigIntStats = lstatSync(path, { bigint: true });
      const type = st.isFile() ? "file" : st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFIFO() ? "fifo" : st.isCharacterDevice() ? "char" : "block";
      const xattrs = native
        .llistxattr(path)
        .filter((x) => !x.startsWith("security.") || x === "security.capability")
        .sort()
        .map((x) => `${x}=${native.lgetxattr(path, x)?.toString("hex")}`);
      const parts = [type, (st.mode & 0o7777n).toString(8), `${st.uid}:${st.gid}`, xattrs.join(","), `mtime=${shownTime(st.mtimeNs)}`];
      if (type !== "dir" && type !== "symlink" && type !== "file") parts.push(`atime=${shownTime(st.atimeNs)}`);
      if (type === "file") {
        parts.push(sha256(readFileSync(path)));
        if (st.nlink > 1n) {
          const first = inodes.get(st.ino);
          if (first === undefined) inodes.set(st.ino, key);
          parts.push(`linkgroup=${first ?? key}`);
        }
      }
      if (type === "symlink") parts.push(`-> ${readlinkSync(path, { encoding: "buffer" }).toString("latin1")}`);
      if (type === "char" || type === "block") parts.push(`rdev=${st.rdev}`);
      out[key] = parts.join(" ");
      if (type === "dir") walk(path, key);
    }
  };
  walk(Buffer.from(root), "");
  return out;
}

describe(sanitizerChild ? "native layer applier (ASan/UBSan build)" : "native layer applier (Release build)", { skip: needsRoot }, () => {
  let base = "";
  let counter = 0;
  const fresh = (name: string) => {
    const dir = join(base, `${name}-${counter++}`);
    mkdirSync(dir);
    return dir;
  };
  const blobFile = (data: Buffer) => {
    const file = join(base, `blob-${counter++}`);
    writeFileSync(file, data);
    return file;
  };

  before(() => {
    base = mkdtempSync(join(process.env.BERTH_NATIVE_TEST_DIR ?? tmpdir(), "berth-layer-apply-"));
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  type Mode = { whiteouts: "overlay" | "delete"; lowers?: string[] };

  async function applyNative(layer: Buffer, root: string, mode: Mode = { whiteouts: "delete" }, gzip = false) {
    const blob = gzip ? gzipSync(layer) : layer;
    const result = await native.applyLayer({ blob: blobFile(blob), compression: gzip ? "gzip" : "none", root, whiteouts: mode.whiteouts, lowers: mode.lowers ?? [] });
    assert.equal(result.blobDigest, sha256(blob), "the blob's digest covers all its bytes");
    assert.equal(result.blobSize, blob.length);
    return result;
  }

  async function applyJs(layer: Buffer, root: string, mode: Mode = { whiteouts: "delete" }) {
    return unpackLayer(createReadStream(blobFile(layer)), "detect", { root, whiteouts: mode.whiteouts, lowers: mode.lowers ?? [], sys: native, what: "layer" });
  }

  /** Applies the layers one after another with both appliers (each into its own root) and compares the trees. */
  async function bothAgree(layers: Buffer[], mode: Mode = { whiteouts: "delete" }, prepare?: (root: string) => void): Promise<string> {
    const jsRoot = fresh("js");
    const nativeRoot = fresh("native");
    prepare?.(jsRoot);
    prepare?.(nativeRoot);
    for (const [i, layer] of layers.entries()) {
      const js = await applyJs(layer, jsRoot, mode);
      const result = await applyNative(layer, nativeRoot, mode, i % 2 === 0);
      assert.equal(result.error, undefined, result.error?.message);
      assert.equal(result.diffId, js.digest);
      assert.equal(result.size, js.size);
      assert.equal(result.entries, js.entries);
    }
    assert.deepEqual(snapshot(nativeRoot), snapshot(jsRoot));
    return nativeRoot;
  }

  /** Both appliers refuse the layer with the same kind of error; the native message matches `message`. */
  async function bothRefuse(layer: Buffer, message: RegExp, prepare?: (root: string) => void): Promise<string> {
    const jsRoot = fresh("js");
    const nativeRoot = fresh("native");
    prepare?.(jsRoot);
    prepare?.(nativeRoot);
    await assert.rejects(applyJs(layer, jsRoot), (err: unknown) => err instanceof BerthError && err.kind === "invalid argument" && message.test(err.message));
    const result = await applyNative(layer, nativeRoot);
    assert.equal(result.error?.kind, "invalid", result.error?.message);
    assert.match(result.error!.message, message);
    return nativeRoot;
  }

  test("every entry kind, with owners, modes (setuid), times, xattrs and device numbers", async () => {
    const cap = Buffer.from("0100000200200000000000000000000000000000", "hex");
    const root = await bothAgree([
      tar(
        entry({ name: "bin/", mode: 0o755, mtime: 1_500_000_000 }),
        entry({ name: "bin/tool", mode: 0o4755, data: "#!/bin/sh\n", mtime: 1_500_000_100 }),
        entry({ name: "bin/alias", type: "link", linkname: "bin/tool" }),
        entry({ name: "bin/sym", type: "symlink", linkname: "tool", mtime: 1_500_000_200 }),
        entry({ name: "home", mode: 0o750, uid: 1000, gid: 1001, mtime: 1_400_000_000 }),
        entry({ name: "home/owned", mode: 0o640, uid: 1000, gid: 1001, data: "mine" }),
        entry({ name: "tmp", mode: 0o1777 }),
        entry({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }),
        entry({ name: "dev/loop9", type: "block", mode: 0o660, devmajor: 7, devminor: 9 }),
        entry({ name: "pipe", type: "fifo", mode: 0o620, uid: 5, gid: 6 }),
        entry({ name: "ping", mode: 0o755, data: "ping", xattrs: new Map([["security.capability", cap], ["user.berth", Buffer.from([0, 1, 0xff])]]) }),
        entry({ name: "steer", data: "x", xattrs: new Map([["trusted.overlay.opaque", Buffer.from("y")]]) }),
        entry({ name: "big-ids", data: "ids", uid: 3_000_000_000, gid: 2_097_152 }),
        entry({ name: "empty", data: "" }),
        entry({ name: "large", data: randomBytes(3 << 20) }),
      ),
    ]);
    assert.equal(lstatSync(join(root, "bin/tool")).mode & 0o7777, 0o4755, "setuid survives the chown");
    assert.equal(lstatSync(join(root, "bin")).mtimeMs, 1_500_000_000_000, "dir mtime set after its contents");
    assert.deepEqual(native.lgetxattr(join(root, "ping"), "security.capability"), cap);
    assert.equal(native.lgetxattr(join(root, "steer"), "trusted.overlay.opaque"), null, "a layer cannot set overlayfs xattrs");
    assert.equal(lstatSync(join(root, "dev/null")).rdev, (1 << 8) | 3);
    assert.equal(lstatSync(join(root, "big-ids")).uid, 3_000_000_000);
  });

  test("PAX records (path, linkpath, size, ids, fractional times, binary xattrs), GNU long names and ustar prefixes", async () => {
    const longDir = `deep/${"d".repeat(120)}`;
    const longName = `${longDir}/${"n".repeat(150)}.txt`;
    const notUtf8 = Buffer.from([0x66, 0xff, 0x2e, 0x74]);
    const root = await bothAgree([
      tar(
        entry({ name: longName, data: "long (PAX path)" }),
        entry({ name: `${"p".repeat(90)}/${"q".repeat(90)}`, data: "ustar prefix" }),
        entry({ name: "to-long", type: "symlink", linkname: longName }),
        entry({ name: notUtf8, data: "bytes" }),
        pax([["mtime", "1600000000.123456789"], ["atime", "1500000000.5"], ["uid", "70000"], ["SCHILY.xattr.user.k", Buffer.from([0, 10, 255])]]),
        entry({ name: "pax-times", data: "t" }),
        pax([["path", "renamed-by-pax"], ["size", "5"]]),
        entry({ name: "ignored-name", data: "12345" }),
        special("g", paxRecord("comment", "global headers are ignored")),
        special("L", Buffer.from(`gnu/${"L".repeat(200)}\0`)),
        entry({ name: "gnu/short", data: "gnu long name" }),
        special("K", Buffer.from(`${"K".repeat(150)}\0`)),
        entry({ name: "gnu-link", type: "symlink", linkname: "short" }),
        pax([["path", "merged"]]),
        pax([["uid", "4242"]]),
        entry({ name: "two-pax-headers", data: "m" }),
        pax([["uid", "1"], ["uid", ""]]),
        entry({ name: "deleted-record", data: "d", uid: 9 }),
        entry({ name: "old-dir-flag/", type: "file" }),
      ),
    ]);
    assert.equal(readFileSync(join(root, longName), "utf8"), "long (PAX path)");
    assert.equal(readFileSync(join(root, "renamed-by-pax"), "utf8"), "12345");
    assert.equal(readFileSync(join(root, `gnu/${"L".repeat(200)}`), "utf8"), "gnu long name");
    assert.equal(readlinkSync(join(root, "gnu-link")), "K".repeat(150));
    assert.equal(lstatSync(join(root, "merged")).uid, 4242);
    assert.equal(lstatSync(join(root, "deleted-record")).uid, 9, "an empty PAX value deletes the record");
    assert.equal(lstatSync(join(root, "pax-times"), { bigint: true }).mtimeNs / 1000n, 1_600_000_000_123_456n, "sub-second PAX mtime (a double's precision)");
    assert.ok(lstatSync(join(root, "old-dir-flag")).isDirectory());
    assert.ok(readdirSync(root, { encoding: "buffer" }).some((name) => name.equals(notUtf8)));
  });

  test("a later layer replaces files, symlinks and dirs of an earlier one, and keeps dir meets dir", async () => {
    await bothAgree([
      tar(
        entry({ name: "a", data: "file" }),
        entry({ name: "b", mode: 0o700 }),
        entry({ name: "b/kept", data: "kept" }),
        entry({ name: "c", type: "symlink", linkname: "b" }),
        entry({ name: "d/e/f", data: "deep" }),
      ),
      tar(
        entry({ name: "a", mode: 0o755 }),
        entry({ name: "a/inside", data: "now a dir" }),
        entry({ name: "b", mode: 0o755, uid: 3 }),
        entry({ name: "c", data: "symlink replaced, not followed" }),
        entry({ name: "d", type: "symlink", linkname: "b" }),
        entry({ name: "hl", type: "link", linkname: "b/kept" }),
        entry({ name: "hl", type: "link", linkname: "hl" }),
      ),
    ]);
  });

  test("whiteouts delete in a plain dir; an opaque marker keeps only this layer's entries", async () => {
    const root = await bothAgree([
      tar(
        entry({ name: "keep", data: "keep" }),
        entry({ name: "gone", data: "gone" }),
        entry({ name: "gonedir/f", data: "f" }),
        entry({ name: "opq/old", data: "old" }),
        entry({ name: "opq/sub/old2", data: "old2" }),
        entry({ name: "opq/linked", data: "target" }),
      ),
      tar(
        entry({ name: ".wh.gone", data: "" }),
        entry({ name: ".wh.gonedir", data: "" }),
        entry({ name: ".wh.never-there", data: "" }),
        entry({ name: "missing/.wh.x", data: "" }),
        entry({ name: "opq", mode: 0o755 }),
        entry({ name: "opq/a-new", data: "new" }),
        entry({ name: "opq/hl", type: "link", linkname: "opq/linked" }),
        entry({ name: "opq/.wh..wh..opq", data: "" }),
        entry({ name: "opq/sub", mode: 0o755 }),
        entry({ name: "opq/sub/new2", data: "new2" }),
        entry({ name: ".wh..wh.plnk", data: "" }),
        entry({ name: "keep", mode: 0o600, data: "replaced" }),
      ),
    ]);
    assert.deepEqual(readdirSync(root).sort(), ["keep", "opq"]);
    assert.deepEqual(readdirSync(join(root, "opq")).sort(), ["a-new", "hl", "sub"]);
  });

  test("overlay mode: 0:0 char devices, the opaque xattr, parents copied up from the lower dirs", async () => {
    const lower = fresh("lower");
    mkdirSync(join(lower, "shared/nested"), { recursive: true });
    execFileSync("chown", ["-R", "7:8", join(lower, "shared")]);
    execFileSync("chmod", ["1777", join(lower, "shared")]);
    native.lsetxattr(join(lower, "shared"), "user.from-lower", Buffer.from("yes"));
    native.lsetxattr(join(lower, "shared"), "trusted.overlay.origin", Buffer.from("not copied"));
    writeFileSync(join(lower, "plain"), "a file where the layer wants a dir");
    const root = await bothAgree(
      [
        tar(
          entry({ name: "etc/.wh.deleted", data: "", uid: 4, gid: 4 }),
          entry({ name: ".wh.olddir", data: "" }),
          entry({ name: "var/cache", mode: 0o700 }),
          entry({ name: "var/cache/.wh..wh..opq", data: "" }),
          entry({ name: "var/cache/fresh", data: "fresh" }),
          entry({ name: "shared/nested/file", data: "in shared" }),
          entry({ name: "new/.wh..wh..opq", data: "" }),
        ),
      ],
      { whiteouts: "overlay", lowers: [join(base, "absent-lower"), lower] },
    );
    const wh = lstatSync(join(root, "etc/deleted"));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0 && wh.uid === 4);
    assert.equal(native.lgetxattr(join(root, "var/cache"), "trusted.overlay.opaque")?.toString(), "y");
    const shared = lstatSync(join(root, "shared"));
    assert.deepEqual([shared.mode & 0o7777, shared.uid, shared.gid], [0o1777, 7, 8]);
    assert.equal(native.lgetxattr(join(root, "shared"), "user.from-lower")?.toString(), "yes");
    assert.equal(native.lgetxattr(join(root, "shared"), "trusted.overlay.origin"), null);
  });

  test("overlay mode: made dirs are listed for a later copy-up (real paths), unless a lower gave them metadata, an entry named them, or they were replaced", async () => {
    const layer = tar(
      entry({ name: "a/b/file", data: "deep" }),
      entry({ name: "named/x", data: "x" }),
      entry({ name: "named", mode: 0o711, mtime: 1_300_000_000 }),
      entry({ name: "link", type: "symlink", linkname: "real" }),
      entry({ name: "link/sub/f", data: "through a dangling link" }),
      entry({ name: "gone/x", data: "x" }),
      entry({ name: ".wh.gone", data: "" }),
      entry({ name: "opq/.wh..wh..opq", data: "" }),
      entry({ name: "shared/inner/f", data: "f" }),
    );
    const lower = fresh("lower");
    mkdirSync(join(lower, "shared"));
    execFileSync("chown", ["1000:1000", join(lower, "shared")]);
    execFileSync("touch", ["-d", "@1234567890", join(lower, "shared")]);
    const listed = (dirs: readonly (string | Buffer)[]) => dirs.map((d) => (typeof d === "string" ? d : d.toString("latin1"))).sort();
    for (const lowers of [[], [lower]]) {
      const jsRoot = fresh("js");
      const nativeRoot = fresh("native");
      const js = await applyJs(layer, jsRoot, { whiteouts: "overlay", lowers });
      const result = await applyNative(layer, nativeRoot, { whiteouts: "overlay", lowers });
      assert.equal(result.error, undefined, result.error?.message);
      const expected = lowers.length === 0 ? ["a", "a/b", "opq", "real", "real/sub", "shared", "shared/inner"] : ["a", "a/b", "opq", "real", "real/sub", "shared/inner"];
      assert.deepEqual(listed(js.copyUpDirs), expected);
      assert.deepEqual(listed(result.copyUpDirs), expected);
      assert.deepEqual(snapshot(nativeRoot), snapshot(jsRoot));
      if (lowers.length > 0) {
        const shared = lstatSync(join(nativeRoot, "shared"));
        assert.deepEqual([shared.uid, shared.mtimeMs], [1000, 1_234_567_890_000], "a copied-up dir keeps the lower's times though the layer wrote into it");
      }
    }
  });

  test("delete mode lists nothing: the target holds the whole tree", async () => {
    const js = await applyJs(tar(entry({ name: "a/b/file", data: "deep" })), fresh("js"));
    const result = await applyNative(tar(entry({ name: "a/b/file", data: "deep" })), fresh("native"));
    assert.deepEqual([js.copyUpDirs, result.copyUpDirs], [[], []]);
  });

  describe("escape attempts fail cleanly or stay inside the root", () => {
    test("an entry climbing out of the root", async () => {
      const root = await bothRefuse(tar(entry({ name: "ok", data: "ok" }), entry({ name: "a/../../escape", data: "out" })), /^entry "a\/\.\.\/\.\.\/escape": path escapes the root/);
      assert.deepEqual(readdirSync(root), ["ok"]);
      assert.ok(!existsSync(join(dirname(root), "escape")));
    });

    test("symlinks to outside dirs (absolute, relative, to /) followed by entries beneath them", async () => {
      const outside = fresh("outside");
      const root = await bothAgree([
        tar(
          entry({ name: "evil", type: "symlink", linkname: outside }),
          entry({ name: "evil/file", data: "payload" }),
          entry({ name: "rel", type: "symlink", linkname: "../../../../../../.." }),
          entry({ name: "rel/tmp/relfile", data: "payload2" }),
          entry({ name: "slash", type: "symlink", linkname: "/" }),
          entry({ name: "slash/etc/passwd-lookalike", data: "inside" }),
          entry({ name: "dangling", type: "symlink", linkname: "/made/by/link" }),
          entry({ name: "dangling/file", data: "created where the link points, inside" }),
          entry({ name: "chain", type: "symlink", linkname: "evil" }),
          entry({ name: "chain/deeper/x", data: "through two links" }),
        ),
      ]);
      assert.deepEqual(readdirSync(outside), [], "nothing written outside");
      assert.equal(readFileSync(join(root, outside, "file"), "utf8"), "payload");
      assert.equal(readFileSync(join(root, "made/by/link/file"), "utf8"), "created where the link points, inside");
      assert.equal(readFileSync(join(root, "etc/passwd-lookalike"), "utf8"), "inside");
    });

    test("a symlink replaced by a dir, then a file written beneath it", async () => {
      const outside = fresh("outside2");
      const root = await bothAgree([tar(entry({ name: "x", type: "symlink", linkname: outside }), entry({ name: "x", mode: 0o755 }), entry({ name: "x/f", data: "in the new dir" }))]);
      assert.deepEqual(readdirSync(outside), []);
      assert.ok(lstatSync(join(root, "x")).isDirectory());
    });

    test("hard links: above the root, through a symlink to /etc, to a dir, to the root", async () => {
      await bothRefuse(tar(entry({ name: "passwd", type: "link", linkname: "../../etc/passwd" })), /^entry "passwd": hard link target "\.\.\/\.\.\/etc\/passwd": path escapes the root/);
      const root = await bothRefuse(
        tar(entry({ name: "etcl", type: "symlink", linkname: "/etc" }), entry({ name: "stolen", type: "link", linkname: "etcl/passwd" })),
        /^entry "stolen": hard link target "etcl\/passwd" does not exist/,
      );
      assert.ok(!existsSync(join(root, "stolen")));
      await bothRefuse(tar(entry({ name: "d", mode: 0o755 }), entry({ name: "l", type: "link", linkname: "d" })), /hard link target "d" is a directory/);
      await bothRefuse(tar(entry({ name: "l", type: "link", linkname: "./" })), /hard link to the root directory/);
    });

    test("a hard link through a symlink to an outside file links the file inside the root, never the outside one", async () => {
      const outside = fresh("outside3");
      writeFileSync(join(outside, "secret"), "host secret");
      const root = fresh("hlroot");
      mkdirSync(join(root, outside), { recursive: true });
      writeFileSync(join(root, outside, "secret"), "inside copy");
      const layer = tar(entry({ name: "out", type: "symlink", linkname: outside }), entry({ name: "grab", type: "link", linkname: "out/secret" }));
      const result = await applyNative(layer, root);
      assert.equal(result.error, undefined, result.error?.message);
      assert.equal(readFileSync(join(root, "grab"), "utf8"), "inside copy");
      assert.equal(lstatSync(join(outside, "secret")).nlink, 1, "the host file gained no link");
    });

    test("a whiteout naming the parent dir, a NUL byte in a PAX path, a file where a dir is needed", async () => {
      await bothRefuse(tar(entry({ name: "a/.wh..", data: "" })), /invalid whiteout name "\.wh\.\."/);
      await bothRefuse(tar(pax([["path", Buffer.from("nul\0byte")]]), entry({ name: "x", data: "x" })), /NUL byte in name/);
      await bothRefuse(tar(entry({ name: "f", data: "file" }), entry({ name: "f/child", data: "x" })), /"f" is not a directory/);
    });
  });

  describe("bad blobs", () => {
    const layer = () => tar(entry({ name: "f", data: Buffer.from("compressible layer text ".repeat(4000)) }));

    test("corrupt gzip: an invalid-layer error, and the blob's digest still reported", async () => {
      const gz = gzipSync(layer());
      for (let i = 100; i < 400; i++) gz[i] = gz[i]! ^ 0x5a;
      const result = await native.applyLayer({ blob: blobFile(gz), compression: "gzip", root: fresh("gz"), whiteouts: "delete", lowers: [] });
      assert.equal(result.error?.kind, "invalid");
      assert.match(result.error!.message, /^entry "f": corrupt gzip data: /);
      assert.equal(result.blobDigest, sha256(gz), "a digest mismatch can be told from a bad layer");
    });

    test("truncated gzip, truncated tar, garbage, an extended header at the end", async () => {
      const gz = gzipSync(tar(entry({ name: "f", data: randomBytes(64 * 1024) })));
      const cases: [Buffer, boolean, RegExp][] = [
        [gz.subarray(0, gz.length - 2000), true, /^entry "f": corrupt gzip data: unexpected end of file$/],
        [layer().subarray(0, 3000), false, /^tar: unexpected end of archive in the data of "f" \(truncated layer\)$/],
        [randomBytes(2048), false, /checksum/],
        [pax([["path", "x"]]), false, /after an extended header/],
        [Buffer.concat([Buffer.alloc(512), entry({ name: "f", data: "x" })]), false, /zero block followed by data/],
      ];
      for (const [blob, gzip, message] of cases) {
        const root = fresh("bad");
        const result = await native.applyLayer({ blob: blobFile(blob), compression: gzip ? "gzip" : "none", root, whiteouts: "delete", lowers: [] });
        assert.equal(result.error?.kind, "invalid", `${message}: ${result.error?.message}`);
        assert.match(result.error!.message, message);
        assert.equal(result.blobDigest, sha256(blob));
      }
    });

    test("the diff id covers padding after the end marker; gzip members follow one another; zero padding after gzip is ignored", async () => {
      const padded = Buffer.concat([layer(), Buffer.alloc(4096)]);
      const half = Math.floor(padded.length / 2);
      const multi = Buffer.concat([gzipSync(padded.subarray(0, half)), gzipSync(padded.subarray(half)), Buffer.alloc(100)]);
      const result = await native.applyLayer({ blob: blobFile(multi), compression: "gzip", root: fresh("multi"), whiteouts: "delete", lowers: [] });
      assert.equal(result.error, undefined, result.error?.message);
      assert.equal(result.diffId, sha256(padded));
      assert.equal(result.size, padded.length);
      assert.equal(result.blobDigest, sha256(multi));
    });

    test("missing blob or root, bad arguments", async () => {
      const missing = await native.applyLayer({ blob: join(base, "no-such-blob"), compression: "none", root: fresh("r"), whiteouts: "delete", lowers: [] });
      assert.equal(missing.error?.code, "ENOENT");
      assert.equal(missing.blobDigest, "");
      const noRoot = await native.applyLayer({ blob: blobFile(layer()), compression: "none", root: join(base, "no-such-root"), whiteouts: "delete", lowers: [] });
      assert.equal(noRoot.error?.code, "ENOENT");
      const loose = native.nativeAddon().applyLayer as unknown as (options: unknown) => Promise<unknown>;
      assert.throws(() => loose({ blob: "x", compression: "zstd", root: "/", whiteouts: "delete", lowers: [] }), /compression must be "gzip" or "none"/);
      assert.throws(() => loose({ blob: "x", compression: "none", root: "/", whiteouts: "delete", lowers: "no" }), /lowers must be an array/);
      assert.throws(() => loose({ blob: 1, compression: "none", root: "/", whiteouts: "delete", lowers: [] }), TypeError);
    });
  });

  test("a set cancel flag stops the apply between entries; a cancel flag of another type is refused", async () => {
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(cancel, 0, 1);
    const root = fresh("cancel");
    const blob = blobFile(gzipSync(tar(entry({ name: "f", data: "never written" }))));
    const result = await native.applyLayer({ blob, compression: "gzip", root, whiteouts: "delete", lowers: [], cancel });
    assert.equal(result.error?.kind, "cancelled");
    assert.equal(result.entries, 0);
    assert.deepEqual(readdirSync(root), []);
    Atomics.store(cancel, 0, 0);
    const again = await native.applyLayer({ blob, compression: "gzip", root, whiteouts: "delete", lowers: [], cancel });
    assert.equal(again.error, undefined, again.error?.message);
    assert.deepEqual(readdirSync(root), ["f"]);
    const loose = native.nativeAddon().applyLayer as unknown as (options: unknown) => Promise<unknown>;
    assert.throws(() => loose({ blob, compression: "none", root, whiteouts: "delete", lowers: [], cancel: new Uint8Array(4) }), /cancel must be an Int32Array/);
  });

  describe("a blob still being written (growingSize)", () => {
    const manyFiles = () => tar(...Array.from({ length: 300 }, (_, j) => entry({ name: `d${j % 7}/f${j}`, data: randomBytes(1024 + j * 37) })));
    /** Appends `blob` to `file` in pieces, letting the pool thread catch up between them; stops after `upTo` bytes. */
    async function writeInPieces(file: string, blob: Buffer, upTo = blob.length, piece = 16 * 1024) {
      for (let at = 0; at < upTo; at += piece) {
        appendFileSync(file, blob.subarray(at, Math.min(at + piece, upTo)));
        await new Promise((resolve) => setImmediate(resolve));
      }
    }

    for (const gzip of [true, false]) {
      test(`${gzip ? "gzip" : "plain"}: extracted as it grows, the same tree and digests as from the whole file`, async () => {
        const layer = manyFiles();
        const blob = gzip ? gzipSync(layer) : layer;
        const whole = fresh("whole");
        const expected = await native.applyLayer({ blob: blobFile(blob), compression: gzip ? "gzip" : "none", root: whole, whiteouts: "overlay", lowers: [] });
        assert.equal(expected.error, undefined, expected.error?.message);
        const file = join(base, `growing-${counter++}`);
        writeFileSync(file, "");
        const root = fresh("growing");
        // The ingest is opened once and read through /proc/self/fd, as the diff service does.
        const handle = openSync(file, "r");
        try {
          const applying = native.applyLayer({ blob: `/proc/self/fd/${handle}`, compression: gzip ? "gzip" : "none", root, whiteouts: "overlay", lowers: [], growingSize: blob.length });
          await writeInPieces(file, blob);
          const result = await applying;
          assert.equal(result.error, undefined, result.error?.message);
          assert.equal(result.blobDigest, sha256(blob));
          assert.equal(result.blobSize, blob.length);
          assert.equal(result.diffId, expected.diffId);
          assert.equal(result.entries, 300);
          assert.deepEqual(snapshot(root), snapshot(whole));
        } finally {
          closeSync(handle);
        }
      });
    }

    test("a file unlinked before it is complete (the download was aborted) fails the apply", async () => {
      const blob = gzipSync(manyFiles());
      const file = join(base, `aborted-${counter++}`);
      writeFileSync(file, "");
      // Through an fd held open, as the diff service reads: the apply may open it after the
      // unlink (a busy pool thread) and must still see the abort, not a missing file.
      const handle = openSync(file, "r");
      let result;
      try {
        const applying = native.applyLayer({ blob: `/proc/self/fd/${handle}`, compression: "gzip", root: fresh("aborted"), whiteouts: "overlay", lowers: [], growingSize: blob.length });
        await writeInPieces(file, blob, blob.length >> 1);
        rmSync(file);
        result = await applying;
      } finally {
        closeSync(handle);
      }
      assert.equal(result.error?.kind, "invalid");
      assert.match(result.error!.message, /download was aborted at byte \d+ of \d+/);
      assert.equal(result.blobDigest, "", "an incomplete blob has no digest to report");
    });

    test("a file that shrinks (a download started over) fails the apply", async () => {
      const blob = manyFiles();
      const file = join(base, `shrunk-${counter++}`);
      writeFileSync(file, "");
      const applying = native.applyLayer({ blob: file, compression: "none", root: fresh("shrunk"), whiteouts: "overlay", lowers: [], growingSize: blob.length });
      await writeInPieces(file, blob, blob.length >> 1);
      truncateSync(file, 1000);
      const result = await applying;
      assert.equal(result.error?.kind, "invalid");
      assert.match(result.error!.message, /shrank from \d+ to 1000 bytes/);
    });

    test("the cancel flag ends a wait for more bytes; a bad growingSize is refused", async () => {
      const blob = gzipSync(manyFiles());
      const file = join(base, `stalled-${counter++}`);
      writeFileSync(file, blob.subarray(0, 4096));
      const cancel = new Int32Array(new SharedArrayBuffer(4));
      const applying = native.applyLayer({ blob: file, compression: "gzip", root: fresh("stalled"), whiteouts: "overlay", lowers: [], growingSize: blob.length, cancel });
      Atomics.store(cancel, 0, 1);
      const result = await applying;
      assert.equal(result.error?.kind, "cancelled");
      const loose = native.nativeAddon().applyLayer as unknown as (options: unknown) => Promise<unknown>;
      const options = { blob: file, compression: "gzip", root: fresh("bad"), whiteouts: "overlay", lowers: [] };
      assert.throws(() => loose({ ...options, growingSize: "10" }), /growingSize must be a number, got string/);
      assert.throws(() => loose({ ...options, growingSize: -1 }), /growingSize must be an integer from 0 to 2\^53-1, got -1/);
      assert.throws(() => loose({ ...options, growingSize: 1.5 }), /growingSize must be an integer/);
    });

    test("never reads past growingSize: bytes beyond it are the writer's to refuse", async () => {
      const layer = tar(entry({ name: "f", data: "only this" }));
      const result = await native.applyLayer({ blob: blobFile(Buffer.concat([layer, Buffer.from("trailing junk")])), compression: "none", root: fresh("exact"), whiteouts: "delete", lowers: [], growingSize: layer.length });
      assert.equal(result.error, undefined, result.error?.message);
      assert.equal(result.blobSize, layer.length);
      assert.equal(result.blobDigest, sha256(layer));
    });
  });

  test("layers extract in parallel on the thread pool while the event loop keeps turning", async () => {
    const layers = [0, 1, 2, 3].map((i) => gzipSync(tar(...Array.from({ length: 200 }, (_, j) => entry({ name: `d${j % 10}/f${i}-${j}`, data: randomBytes(16 * 1024) })))));
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    try {
      const roots = layers.map(() => fresh("par"));
      const pending = layers.map((blob, i) => native.applyLayer({ blob: blobFile(blob), compression: "gzip", root: roots[i]!, whiteouts: "overlay", lowers: [] }));
      const results = await Promise.all(pending);
      for (const [i, result] of results.entries()) {
        assert.equal(result.error, undefined, result.error?.message);
        assert.equal(result.entries, 200);
        assert.equal(readdirSync(roots[i]!).length, 10);
      }
    } finally {
      clearInterval(ticker);
    }
    assert.ok(turns > 0, "timers ran while the layers were extracted");
  });
});

if (!sanitizerChild) {
  test("the same checks pass under ASan and UBSan with no sanitizer report", { skip: needsRoot }, () => {
    rerunUnderSanitizers(fileURLToPath(import.meta.url), 15, 300_000);
  });
}
