import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { LayerStatus, type BlobProgress } from "../../core/gen/berth/services/transfer/v1/transfer.ts";
import { checkTable, ProgressView } from "./transfer-progress.ts";

const digestA = `sha256:${"a".repeat(64)}`;
const digestB = `sha256:${"b".repeat(64)}`;
const blob = (digest: string, status: LayerStatus, done = 0, total = 2_000_000): BlobProgress => ({ digest, mediaType: "application/vnd.oci.image.layer.v1.tar", status, done: BigInt(done), total: BigInt(total) });

/** A stream that says it is (or is not) a terminal, collecting what is written. */
function output(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough;
  let text = "";
  stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
  Object.assign(stream, { isTTY: tty, columns: 100 });
  return { stream, text: () => text };
}

test("on a terminal the block of lines is redrawn in place, with a bar while bytes move", () => {
  const out = output(true);
  const view = new ProgressView("Pull complete", out.stream);
  view.update([blob(digestA, LayerStatus.LAYER_STATUS_DOWNLOADING, 1_000_000), blob(digestB, LayerStatus.LAYER_STATUS_WAITING)]);
  const first = out.text();
  assert.equal(first, `\x1b[2Kaaaaaaaaaaaa: Downloading [${"=".repeat(19)}>${" ".repeat(20)}] 1MB/2MB\n\x1b[2Kbbbbbbbbbbbb: Waiting\n`);
  view.update([blob(digestA, LayerStatus.LAYER_STATUS_DONE), blob(digestB, LayerStatus.LAYER_STATUS_EXISTS)]);
  assert.equal(out.text().slice(first.length), "\x1b[2A\x1b[2Kaaaaaaaaaaaa: Pull complete\n\x1b[2Kbbbbbbbbbbbb: Already exists\n");
});

test("not a terminal: a line per status change, without byte counts", () => {
  const out = output(false);
  const view = new ProgressView("Pushed", out.stream);
  view.update([blob(digestA, LayerStatus.LAYER_STATUS_UPLOADING, 10)]);
  view.update([blob(digestA, LayerStatus.LAYER_STATUS_UPLOADING, 20)]);
  view.update([blob(digestA, LayerStatus.LAYER_STATUS_DONE), blob(digestB, LayerStatus.LAYER_STATUS_MOUNTED)]);
  assert.equal(out.text(), "aaaaaaaaaaaa: Pushing\naaaaaaaaaaaa: Pushed\nbbbbbbbbbbbb: Mounted from another repository\n");
});

test("the result reads as ctr images check lists an image", () => {
  const image = { name: "r/x:1", mediaType: "m", digest: digestA, size: 2048n, blobsPresent: 1, blobsTotal: 2, unpacked: false, snapshotter: "" };
  assert.equal(checkTable(image, true), `REF   TYPE DIGEST${" ".repeat(65)} STATUS           SIZE            UNPACKED \nr/x:1 m    ${digestA} incomplete (1/2) 2.0 KiB/2.0 KiB false    \n`);
});
