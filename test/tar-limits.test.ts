// Extended tar headers are bounded: per entry (all PAX / GNU long-name headers in front
// of it together) and per archive. Without the bound, PAX records of consecutive headers
// merge, so a few MB of gzip made the diff service hold gigabytes. Driven through the
// real Diff service (Apply) of a real berthd, plus the reader itself for the
// archive-wide sum with small limits.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Status } from "nice-grpc";
import { grpcError, startDaemon, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { writeBlob } from "../core/content-client.ts";
import { ContentDefinition } from "../core/gen/containerd/services/content/v1/content.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import { readTar } from "../core/tar/reader.ts";
import { BerthError } from "../core/errors.ts";

const ns = inNamespace("default");
const gzipLayer = "application/vnd.oci.image.layer.v1.tar+gzip";
const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** One ustar header block (flag "0" file, "x" PAX, "L" GNU long name …) for `size` bytes of data. */
function headerBlock(name: string, flag: string, size: number): Buffer {
  const buf = Buffer.alloc(512);
  buf.write(name, 0, 100, "utf8");
  buf.write("0000644\0", 100, 8, "latin1");
  buf.write("0000000\0", 108, 8, "latin1");
  buf.write("0000000\0", 116, 8, "latin1");
  buf.write(size.toString(8).padStart(11, "0") + "\0", 124, 12, "latin1");
  buf.write("00000000000\0", 136, 12, "latin1");
  buf.write(flag, 156, 1, "latin1");
  buf.write("ustar\x0000", 257, 8, "latin1");
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of buf) sum += byte;
  buf.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
  return buf;
}

const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);

/** A PAX record "<len> key=value\n". */
function paxRecord(key: string, value: Buffer): Buffer {
  const tail = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let length = tail.length + 1;
  while (String(length).length + tail.length !== length) length = String(length).length + tail.length;
  return Buffer.concat([Buffer.from(String(length)), tail]);
}

/** A PAX extended header carrying one record of roughly `bytes` bytes under `key`. */
function paxHeader(key: string, bytes: number): Buffer {
  const body = paxRecord(key, Buffer.alloc(bytes, "a"));
  return Buffer.concat([headerBlock("PaxHeaders.0/f", "x", body.length), pad(body)]);
}

function fileEntry(name: string, data: Buffer): Buffer {
  return Buffer.concat([headerBlock(name, "0", data.length), pad(data)]);
}

const endOfArchive = Buffer.alloc(1024);

let d: Daemon;
let work: string;
let diffClient: ReturnType<typeof grpcClient<typeof DiffDefinition>>;
let contentClient: ReturnType<typeof grpcClient<typeof ContentDefinition>>;

before(async () => {
  d = await startDaemon();
  work = mkdtempSync(join(tmpdir(), "berth-tar-limits-"));
  diffClient = grpcClient(DiffDefinition, d.address);
  contentClient = grpcClient(ContentDefinition, d.address);
});

after(async () => {
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function apply(tar: Buffer, target: string) {
  const blob = gzipSync(tar);
  const digest = sha256(blob);
  await writeBlob(contentClient, blob, { ref: `tar-limits-${randomBytes(6).toString("hex")}`, expected: digest }, ns);
  return diffClient.apply(
    { diff: { mediaType: gzipLayer, digest, size: BigInt(blob.length), annotations: {} }, mounts: [{ type: "bind", source: target, target: "", options: ["rw", "rbind"] }], payloads: {} },
    ns,
  );
}

test("PAX headers under the per-entry limit are applied", async () => {
  const target = mkdtempSync(join(work, "ok-"));
  const tar = Buffer.concat([paxHeader("BERTH.pad.1", 300 * 1024), paxHeader("BERTH.pad.2", 300 * 1024), fileEntry("kept", Buffer.from("data")), endOfArchive]);
  await apply(tar, target);
  assert.ok(existsSync(join(target, "kept")));
});

test("consecutive PAX headers of one entry beyond 1 MiB in total are refused", async () => {
  const target = mkdtempSync(join(work, "pax-"));
  // Each header alone is under Go's 1 MiB per-header limit; their merged records are not.
  const headers = Array.from({ length: 4 }, (_, i) => paxHeader(`BERTH.pad.${i}`, 700 * 1024));
  const tar = Buffer.concat([...headers, fileEntry("bomb", Buffer.from("x")), endOfArchive]);
  const err = await grpcError(apply(tar, target));
  assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /extended headers of one entry total more than 1048576 bytes/);
  assert.deepEqual(readdirSync(target), [], "nothing of the entry was written");
});

test("a chain of GNU long-name headers beyond the per-entry limit is refused", async () => {
  const target = mkdtempSync(join(work, "gnu-"));
  const longName = Buffer.alloc(600 * 1024, "n");
  const link = Buffer.concat([headerBlock("././@LongLink", "L", longName.length), pad(longName)]);
  const tar = Buffer.concat([link, link, fileEntry("short", Buffer.from("x")), endOfArchive]);
  const err = await grpcError(apply(tar, target));
  assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /extended headers of one entry/);
});

test("extended headers summed over a whole layer are capped at 256 MiB", async () => {
  const target = mkdtempSync(join(work, "layer-"));
  // 300 entries of 900 KiB PAX each: every entry is within its limit, the layer is not.
  const parts: Buffer[] = [];
  for (let i = 0; i < 300; i++) parts.push(paxHeader("BERTH.pad", 900 * 1024), fileEntry(`f${i}`, Buffer.alloc(0)));
  parts.push(endOfArchive);
  const err = await grpcError(apply(Buffer.concat(parts), target));
  assert.equal(err.code, Status.INVALID_ARGUMENT, err.details);
  assert.match(err.details, /extended headers of the archive total more than 268435456 bytes/);
});

test("the reader applies caller-given limits per entry and per archive", async () => {
  const entry = (i: number) => Buffer.concat([paxHeader("BERTH.pad", 1000), fileEntry(`f${i}`, Buffer.from("x"))]);
  const tar = Buffer.concat([entry(1), entry(2), entry(3), endOfArchive]);
  const names: string[] = [];
  await assert.rejects(
    async () => {
      for await (const e of readTar([tar], { perEntry: 2048, perArchive: 2500 })) names.push(e.header.name);
    },
    (err: unknown) => err instanceof BerthError && err.kind === "invalid argument" && /of the archive total more than 2500 bytes/.test(err.message),
  );
  assert.deepEqual(names, ["f1", "f2"], "entries before the limit are read");
  await assert.rejects(
    async () => {
      for await (const _ of readTar([Buffer.concat([paxHeader("A", 1000), paxHeader("B", 1000), fileEntry("g", Buffer.from("x")), endOfArchive])], { perEntry: 1500, perArchive: 1 << 20 }));
    },
    /of one entry total more than 1500 bytes/,
  );
});
