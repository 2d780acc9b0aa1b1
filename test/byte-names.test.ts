// File names are bytes from the tar to the disk and back. Names that are not valid UTF-8
// (`f\xff`, `f\xfe`) decode to the same text; kept as text they merged into one file while
// the layer's digest still verified. Through the real Diff service (Apply and Diff) of a
// real berthd; the Diff output is also unpacked by GNU tar, as an independent reader.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { constants, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { startDaemon, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { readBlobBytes, writeBlob } from "../core/content-client.ts";
import { ContentDefinition } from "../core/gen/containerd/services/content/v1/content.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import type { Mount } from "../core/gen/containerd/types/mount.ts";
import { readTar } from "../core/tar/reader.ts";
import * as native from "../native/index.ts";

const ns = inNamespace("default");
const ociTar = "application/vnd.oci.image.layer.v1.tar";
const ociGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** A path under `dir` whose last components are raw bytes. */
const at = (dir: string, ...names: (string | Buffer)[]) => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from("/"), Buffer.from(n)])]);
const b = (s: string) => Buffer.from(s, "latin1");

// ---- a hand-made tar: ustar headers with raw name bytes, and a PAX path of raw bytes ----

function headerBlock(name: Buffer, flag: string, size: number, linkname: Buffer = Buffer.alloc(0), mode = 0o644): Buffer {
  const buf = Buffer.alloc(512);
  name.copy(buf, 0);
  buf.write(mode.toString(8).padStart(7, "0") + "\0", 100, 8, "latin1");
  buf.write("0000000\0", 108, 8, "latin1");
  buf.write("0000000\0", 116, 8, "latin1");
  buf.write(size.toString(8).padStart(11, "0") + "\0", 124, 12, "latin1");
  buf.write((1_600_000_000).toString(8).padStart(11, "0") + "\0", 136, 12, "latin1");
  buf.write(flag, 156, 1, "latin1");
  linkname.copy(buf, 157);
  buf.write("ustar\x0000", 257, 8, "latin1");
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of buf) sum += byte;
  buf.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
  return buf;
}

const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
const file = (name: Buffer, data: string) => Buffer.concat([headerBlock(name, "0", data.length), pad(Buffer.from(data))]);

function paxPath(path: Buffer): Buffer {
  const tail = Buffer.concat([Buffer.from(" path="), path, Buffer.from("\n")]);
  let length = tail.length + 1;
  while (String(length).length + tail.length !== length) length = String(length).length + tail.length;
  const body = Buffer.concat([Buffer.from(String(length)), tail]);
  return Buffer.concat([headerBlock(Buffer.from("PaxHeaders.0/x"), "x", body.length), pad(body)]);
}

let d: Daemon;
let work: string;
let diffClient: ReturnType<typeof grpcClient<typeof DiffDefinition>>;
let contentClient: ReturnType<typeof grpcClient<typeof ContentDefinition>>;

before(async () => {
  d = await startDaemon();
  work = mkdtempSync(join(tmpdir(), "berth-byte-names-"));
  diffClient = grpcClient(DiffDefinition, d.address);
  contentClient = grpcClient(ContentDefinition, d.address);
});

after(async () => {
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const freshDir = (name: string) => mkdtempSync(join(work, `${name}-`));
const bind = (dir: string, ro = false): Mount[] => [{ type: "bind", source: dir, target: "", options: [ro ? "ro" : "rw", "rbind"] }];
const names = (dir: string | Buffer) => readdirSync(dir, { encoding: "buffer" }).map((n) => n.toString("latin1")).sort();

async function applyLayer(tar: Buffer, mounts: Mount[]) {
  const blob = gzipSync(tar);
  const digest = sha256(blob);
  await writeBlob(contentClient, blob, { ref: `byte-names-${randomBytes(6).toString("hex")}`, expected: digest }, ns);
  const { applied } = await diffClient.apply({ diff: { mediaType: ociGzip, digest, size: BigInt(blob.length), annotations: {} }, mounts, payloads: {} }, ns);
  return applied!;
}

/** The uncompressed layer tar a Diff call wrote. */
async function diffTar(left: Mount[], right: Mount[]): Promise<Buffer> {
  const { diff } = await diffClient.diff({ left, right, mediaType: ociTar, ref: "", labels: {} }, ns);
  return readBlobBytes(contentClient, diff!.digest, ns);
}

async function rawEntryNames(tar: Buffer): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of readTar([tar])) out.push(entry.header.rawName.toString("latin1"));
  return out;
}

/** Unpacks a tar with GNU tar (an independent reader of the same bytes). */
function gnuExtract(tar: Buffer): string {
  const dir = freshDir("gnutar");
  const r = spawnSync("tar", ["-x", "-C", dir, "-f", "-"], { input: tar });
  assert.equal(r.status, 0, `tar -x: ${r.stderr}`);
  return dir;
}

test("Apply keeps names that are not UTF-8 apart, byte for byte", async () => {
  const target = freshDir("apply");
  // Existing content, so a whiteout of one name can be seen to spare its look-alike.
  writeFileSync(at(target, b("w\xff")), "old ff");
  writeFileSync(at(target, b("w\xfe")), "old fe");
  const tar = Buffer.concat([
    file(b("f\xff"), "ff content"),
    file(b("f\xfe"), "fe content"),
    headerBlock(b("d\xc3\x28/"), "5", 0, undefined, 0o755),
    // PAX path: UTF-8 by the spec, arbitrary bytes in practice.
    paxPath(b("d\xc3\x28/p\xff")),
    file(Buffer.from("ignored-ustar-name"), "pax content"),
    headerBlock(b("s\xff"), "2", 0, b("f\xff")),
    headerBlock(b("h\xfe"), "1", 0, b("f\xfe")),
    file(Buffer.from("é-utf8"), "valid utf-8"),
    file(b(".wh.w\xff"), ""),
    Buffer.alloc(1024),
  ]);
  const applied = await applyLayer(tar, bind(target));
  assert.equal(applied.digest, sha256(tar));

  assert.deepEqual(names(target), ["d\xc3\x28", "f\xfe", "f\xff", "h\xfe", "s\xff", "w\xfe", Buffer.from("é-utf8").toString("latin1")].sort());
  assert.equal(readFileSync(at(target, b("f\xff")), "utf8"), "ff content");
  assert.equal(readFileSync(at(target, b("f\xfe")), "utf8"), "fe content");
  assert.deepEqual(names(at(target, b("d\xc3\x28"))), ["p\xff"]);
  assert.equal(readFileSync(at(target, b("d\xc3\x28"), b("p\xff")), "utf8"), "pax content");
  assert.deepEqual(readlinkSync(at(target, b("s\xff")), { encoding: "buffer" }), b("f\xff"));
  assert.equal(lstatSync(at(target, b("h\xfe"))).ino, lstatSync(at(target, b("f\xfe"))).ino, "hard link to the right look-alike");
  assert.equal(readFileSync(at(target, b("w\xfe")), "utf8"), "old fe", "the whiteout removed only its own name");
  assert.equal(readFileSync(join(target, "é-utf8"), "utf8"), "valid utf-8");
});

test("Diff of an upper dir writes the exact name bytes; applying the layer round-trips", async () => {
  const lower = freshDir("lower");
  writeFileSync(at(lower, b("gone\xff")), "deleted");
  writeFileSync(at(lower, b("gone\xfe")), "kept");
  writeFileSync(at(lower, b("f\xff")), "old");

  const base = freshDir("ovl");
  const upper = join(base, "upper");
  const workdir = join(base, "work");
  mkdirSync(upper);
  mkdirSync(workdir);
  writeFileSync(at(upper, b("f\xff")), "new ff");
  writeFileSync(at(upper, b("f\xfe")), "new fe");
  mkdirSync(at(upper, b("dir\x80")), { mode: 0o750 });
  writeFileSync(at(upper, b("dir\x80"), b("inner\xc0")), "inner");
  symlinkSync(b("f\xfe"), at(upper, b("link\xff")));
  linkSync(at(upper, b("f\xfe")), at(upper, b("hard\xfe")));
  // overlayfs' whiteout for a deleted lower file: a 0:0 character device.
  native.mknod(at(upper, b("gone\xff")), constants.S_IFCHR, 0, 0);
  const right: Mount[] = [{ type: "overlay", source: "overlay", target: "", options: [`workdir=${workdir}`, `upperdir=${upper}`, `lowerdir=${lower}`] }];

  const tar = await diffTar(bind(lower, true), right);
  const entries = await rawEntryNames(tar);
  assert.deepEqual(
    entries.sort(),
    ["dir\x80/", "dir\x80/inner\xc0", "f\xfe", "f\xff", "hard\xfe", "link\xff", ".wh.gone\xff"].sort(),
    "every entry name is the exact bytes of the upper dir's name",
  );

  // GNU tar, reading the same bytes, makes the same names.
  const extracted = gnuExtract(tar);
  assert.deepEqual(names(extracted), [".wh.gone\xff", "dir\x80", "f\xfe", "f\xff", "hard\xfe", "link\xff"].sort());
  assert.equal(readFileSync(at(extracted, b("f\xfe")), "utf8"), "new fe");
  assert.equal(readFileSync(at(extracted, b("dir\x80"), b("inner\xc0")), "utf8"), "inner");

  // Round trip: the layer applied onto a copy of the lower gives the merged view.
  const copy = freshDir("copy");
  for (const name of names(lower)) writeFileSync(at(copy, b(name)), readFileSync(at(lower, b(name))));
  await applyLayer(tar, bind(copy));
  assert.deepEqual(names(copy), ["dir\x80", "f\xfe", "f\xff", "gone\xfe", "hard\xfe", "link\xff"].sort());
  assert.equal(readFileSync(at(copy, b("f\xff")), "utf8"), "new ff");
  assert.equal(readFileSync(at(copy, b("f\xfe")), "utf8"), "new fe");
  assert.equal(readFileSync(at(copy, b("gone\xfe")), "utf8"), "kept");
  assert.equal(readFileSync(at(copy, b("dir\x80"), b("inner\xc0")), "utf8"), "inner");
  assert.equal(lstatSync(at(copy, b("dir\x80"))).mode & 0o7777, 0o750);
  assert.deepEqual(readlinkSync(at(copy, b("link\xff")), { encoding: "buffer" }), b("f\xfe"));
  assert.equal(lstatSync(at(copy, b("hard\xfe"))).ino, lstatSync(at(copy, b("f\xfe"))).ino);
});

test("Diff comparing two plain trees keeps look-alike names apart", async () => {
  const lower = freshDir("tlower");
  writeFileSync(at(lower, b("same\xff")), "unchanged");
  writeFileSync(at(lower, b("same\xfe")), "will change");
  const upper = freshDir("tupper");
  writeFileSync(at(upper, b("same\xff")), "unchanged");
  writeFileSync(at(upper, b("same\xfe")), "changed");
  // Same whole-second mtimes on the unchanged pair: equal metadata, so the bytes decide.
  for (const dir of [lower, upper]) utimesSync(at(dir, b("same\xff")), 1_600_000_000, 1_600_000_000);
  writeFileSync(at(upper, b("new\x81")), "added");

  const tar = await diffTar(bind(lower, true), bind(upper, true));
  assert.deepEqual((await rawEntryNames(tar)).sort(), ["new\x81", "same\xfe"]);
  const copy = freshDir("tcopy");
  for (const name of names(lower)) writeFileSync(at(copy, b(name)), readFileSync(at(lower, b(name))));
  await applyLayer(tar, bind(copy));
  assert.equal(readFileSync(at(copy, b("same\xfe")), "utf8"), "changed");
  assert.equal(readFileSync(at(copy, b("same\xff")), "utf8"), "unchanged");
  assert.equal(readFileSync(at(copy, b("new\x81")), "utf8"), "added");
});

test("the diff of the first layer (no lower) round-trips through gzip too", async () => {
  const tree = freshDir("first");
  writeFileSync(at(tree, b("a\xff")), "A");
  writeFileSync(at(tree, b("a\xfe")), "B");
  const { diff } = await diffClient.diff({ left: [], right: bind(tree, true), mediaType: ociGzip, ref: "", labels: {} }, ns);
  const tar = gunzipSync(await readBlobBytes(contentClient, diff!.digest, ns));
  assert.deepEqual((await rawEntryNames(tar)).sort(), ["a\xfe", "a\xff"]);
  const target = freshDir("firstcopy");
  await applyLayer(tar, bind(target));
  assert.equal(readFileSync(at(target, b("a\xff")), "utf8"), "A");
  assert.equal(readFileSync(at(target, b("a\xfe")), "utf8"), "B");
});
