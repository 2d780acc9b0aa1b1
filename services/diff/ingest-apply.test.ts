// applyFromIngest (ingest-apply.ts) on a real ingest data file, with the native applier:
// an extraction may start as its download does, before the blob's first bytes are written.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as native from "../../native/index.ts";
import { createLogger } from "../../core/log.ts";
import { encodeHeader, endOfArchive, padding } from "../../core/tar/writer.ts";
import { ingestDirOf } from "../content/layout.ts";
import { applyFromIngest } from "./ingest-apply.ts";

const work = mkdtempSync(join(tmpdir(), "berth-ingest-apply-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** Whether this process has `path` open (the apply holds the ingest's data file). */
const holdsOpen = (path: string) =>
  readdirSync("/proc/self/fd").some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  });

test("an apply that opens the ingest before the blob's first bytes are written waits for them and extracts the layer", async () => {
  const body = Buffer.from("written after the apply began\n");
  const tar = Buffer.concat([encodeHeader({ name: "late.txt", type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, size: body.length }), body, padding(body.length), endOfArchive]);
  const digest = `sha256:${createHash("sha256").update(tar).digest("hex")}`;
  const contentRoot = join(work, "content");
  const dataPath = join(ingestDirOf(contentRoot, "default", "layer-late"), "data");
  mkdirSync(join(dataPath, ".."), { recursive: true });
  writeFileSync(dataPath, "");
  const target = join(work, "target");
  mkdirSync(target);
  const applying = applyFromIngest(
    { deps: { applyLayer: native.applyLayer, log: createLogger("ingest-apply-test") }, contentRoot, namespace: "default", ref: "layer-late" },
    { mediaType: "application/vnd.oci.image.layer.v1.tar", digest, size: BigInt(tar.length), annotations: {} },
    { root: target, whiteouts: "delete", lowers: [] },
    new AbortController().signal,
  );
  for (let i = 0; i < 400 && !holdsOpen(dataPath); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(holdsOpen(dataPath), "the apply opened the ingest while it was still empty");
  // A download whose first bytes come late (a slow registry): not a wait for a condition,
  // the delay the apply must outlast (it gave up at once on the empty file before).
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(holdsOpen(dataPath), "the apply still waits on the ingest");
  appendFileSync(dataPath, tar.subarray(0, 3));
  appendFileSync(dataPath, tar.subarray(3));
  const applied = await applying;
  assert.equal(applied?.digest, digest, "the layer was streamed from the ingest (undefined: it gave up on the empty file)");
  assert.equal(readFileSync(join(target, "late.txt"), "utf8"), body.toString());
});
