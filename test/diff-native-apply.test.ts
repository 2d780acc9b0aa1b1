// The diff service's Apply through the native layer applier, against the real stack:
// which layers take it (gzip and plain tars whose blob is in the content store's dir;
// zstd stays on the JS applier), the digest check reported before a corrupt layer's own
// failure, targets left empty after a failure, and concurrent Applies.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { Status } from "nice-grpc";
import { grpcError, startDaemon, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { writeBlob } from "../core/content-client.ts";
import { ContentDefinition } from "../core/gen/containerd/services/content/v1/content.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import type { Mount } from "../core/gen/containerd/types/mount.ts";
import { encodeHeader, endOfArchive, padding } from "../core/tar/writer.ts";

const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
const ns = inNamespace("default");
const media = { tar: "application/vnd.oci.image.layer.v1.tar", gzip: "application/vnd.oci.image.layer.v1.tar+gzip", zstd: "application/vnd.oci.image.layer.v1.tar+zstd" };

function layer(files: Record<string, Buffer | string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content);
    parts.push(encodeHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, size: data.length }), data, padding(data.length));
  }
  return Buffer.concat([...parts, endOfArchive]);
}

let d: Daemon;
let work: string;
let diff: ReturnType<typeof grpcClient<typeof DiffDefinition>>;
let content: ReturnType<typeof grpcClient<typeof ContentDefinition>>;

before(async () => {
  d = await startDaemon({ env: { BERTH_LOG_LEVEL: "debug" } });
  work = mkdtempSync(join(tmpdir(), "berth-diff-native-"));
  diff = grpcClient(DiffDefinition, d.address);
  content = grpcClient(ContentDefinition, d.address);
});

after(async () => {
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

let dirs = 0;
function freshDir(): string {
  const dir = join(work, `t${dirs++}`);
  mkdirSync(dir);
  return dir;
}

const bind = (dir: string): Mount[] => [{ type: "bind", source: dir, target: "", options: ["rw", "rbind"] }];

async function ingest(blob: Buffer): Promise<string> {
  const digest = sha256(blob);
  await writeBlob(content, blob, { ref: `native-${randomBytes(6).toString("hex")}`, expected: digest }, ns);
  return digest;
}

async function apply(blob: Buffer, mediaType: string, dir: string) {
  const digest = await ingest(blob);
  const { applied } = await diff.apply({ diff: { mediaType, digest, size: BigInt(blob.length), annotations: {} }, mounts: bind(dir), payloads: {} }, ns);
  return { digest, applied: applied! };
}

/** The "layer applied" debug record berthd's diff service logged for a layer. */
async function appliedRecord(digest: string): Promise<{ applier: string }> {
  for (let i = 0; i < 200; i++) {
    const line = d.log.split("\n").find((l) => l.includes('"layer applied"') && l.includes(digest));
    if (line) return JSON.parse(line.slice(line.indexOf("{")));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`no "layer applied" record for ${digest} in:\n${d.log.slice(-4000)}`);
}

test("gzip and plain layers take the native applier, zstd the JS one; the results are the same", async () => {
  const tar = layer({ "a.txt": "native apply\n", "dir/b.bin": randomBytes(200_000) });
  for (const [mediaType, blob, expected] of [
    [media.gzip, gzipSync(tar), "native"],
    [media.tar, tar, "native"],
    [media.zstd, zstdCompressSync(tar), "js"],
  ] as const) {
    const dir = freshDir();
    const { digest, applied } = await apply(blob, mediaType, dir);
    assert.equal(applied.digest, sha256(tar));
    assert.equal(applied.size, BigInt(tar.length));
    assert.equal(readFileSync(join(dir, "a.txt"), "utf8"), "native apply\n");
    assert.equal((await appliedRecord(digest)).applier, expected, mediaType);
  }
});

test("stored gzip bytes that do not match their digest: the mismatch is reported, not the corrupt gzip, and the target is left empty", async () => {
  const blob = gzipSync(layer({ f: Buffer.from("compressible layer text ".repeat(4000)) }));
  const digest = await ingest(blob);
  const file = join(d.root, "content", "blobs", "sha256", digest.slice(7));
  const bytes = readFileSync(file);
  for (let i = 100; i < 400; i++) bytes[i] = bytes[i]! ^ 0x5a;
  writeFileSync(file, bytes);
  const dir = freshDir();
  const err = await grpcError(diff.apply({ diff: { mediaType: media.gzip, digest, size: BigInt(blob.length), annotations: {} }, mounts: bind(dir), payloads: {} }, ns));
  assert.equal(err.code, Status.FAILED_PRECONDITION, err.details);
  assert.match(err.details, /content digest mismatch/);
  assert.deepEqual(readdirSync(dir), [], "nothing left from unverified bytes");
});

test("a layer that fails half-way leaves its empty target empty again", async () => {
  const good = layer({ first: "written before the failure", second: "also" });
  const bad = Buffer.concat([good.subarray(0, good.length - 1024), encodeHeader({ name: "../escape", type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 }), endOfArchive]);
  const dir = freshDir();
  const err = await grpcError(apply(gzipSync(bad), media.gzip, dir));
  assert.equal(err.code, Status.INVALID_ARGUMENT);
  assert.match(err.details, /layer sha256:[0-9a-f]{64}: entry "\.\.\/escape": path escapes the root/);
  assert.deepEqual(readdirSync(dir), []);
});

test("concurrent Applies of several layers all land", async () => {
  const layers = [0, 1, 2, 3, 4].map((i) => layer(Object.fromEntries(Array.from({ length: 50 }, (_, j) => [`l${i}/f${j}`, randomBytes(20_000)]))));
  const dirs = layers.map(() => freshDir());
  const results = await Promise.all(layers.map((tar, i) => apply(gzipSync(tar), media.gzip, dirs[i]!)));
  for (const [i, { applied }] of results.entries()) {
    assert.equal(applied.digest, sha256(layers[i]!));
    assert.equal(readdirSync(join(dirs[i]!, `l${i}`)).length, 50);
  }
});
