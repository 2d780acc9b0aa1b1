// The live progress of a pull or push, as `docker pull` shows it: one line per blob
// (short id, status, a bar and byte counts while it moves). On a terminal the block
// is redrawn in place; otherwise a line is printed each time a blob's status changes.
import { LayerStatus, type BlobProgress, type TransferredImage } from "../../core/gen/berth/services/transfer/v1/transfer.ts";
import { Table } from "./tabwriter.ts";
import { binarySize, humanSize } from "./units.ts";

const labels: Record<number, string> = {
  [LayerStatus.LAYER_STATUS_WAITING]: "Waiting",
  [LayerStatus.LAYER_STATUS_DOWNLOADING]: "Downloading",
  [LayerStatus.LAYER_STATUS_VERIFYING]: "Verifying Checksum",
  [LayerStatus.LAYER_STATUS_DOWNLOADED]: "Download complete",
  [LayerStatus.LAYER_STATUS_EXTRACTING]: "Extracting",
  [LayerStatus.LAYER_STATUS_EXISTS]: "Already exists",
  [LayerStatus.LAYER_STATUS_UPLOADING]: "Pushing",
  [LayerStatus.LAYER_STATUS_MOUNTED]: "Mounted from another repository",
};

const shortId = (digest: string) => digest.slice(digest.indexOf(":") + 1, digest.indexOf(":") + 13);

function bar(done: number, total: number, width = 40): string {
  const filled = total > 0 ? Math.min(width, Math.floor((done / total) * width)) : 0;
  return `[${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? ">" : ""}${" ".repeat(width - filled)}]`;
}

function statusLine(blob: BlobProgress, finished: string): string {
  const label = blob.status === LayerStatus.LAYER_STATUS_DONE ? finished : (labels[blob.status] ?? "Waiting");
  const moving = blob.status === LayerStatus.LAYER_STATUS_DOWNLOADING || blob.status === LayerStatus.LAYER_STATUS_UPLOADING;
  const done = Number(blob.done);
  const total = Number(blob.total);
  return `${shortId(blob.digest)}: ${label}${moving ? ` ${bar(done, total)} ${humanSize(done)}/${humanSize(total)}` : ""}`;
}

export class ProgressView {
  private readonly out: NodeJS.WriteStream;
  private readonly tty: boolean;
  /** Lines drawn last time (TTY) or the last status printed per blob (plain). */
  private drawn = 0;
  private readonly printed = new Map<string, string>();
  private readonly finished: string;

  /** `finished`: how a done blob reads ("Pull complete", "Pushed"). */
  constructor(finished: string, out: NodeJS.WriteStream = process.stdout) {
    this.out = out;
    this.tty = Boolean(out.isTTY);
    this.finished = finished;
  }

  update(blobs: readonly BlobProgress[]): void {
    const lines = blobs.map((b) => statusLine(b, this.finished));
    if (this.tty) {
      const width = this.out.columns || 120;
      let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : "";
      for (const line of lines) text += `\x1b[2K${line.slice(0, width - 1)}\n`;
      this.out.write(text);
      this.drawn = lines.length;
      return;
    }
    // Not a terminal: one line per status change, no byte counts (they would flood a log).
    for (const [i, b] of blobs.entries()) {
      const status = lines[i]!.replace(/ \[.*$/, "");
      if (this.printed.get(b.digest) === status) continue;
      this.printed.set(b.digest, status);
      this.out.write(`${status}\n`);
    }
  }
}

/** The result as `ctr images check` lists an image. */
export function checkTable(image: TransferredImage, showUnpacked: boolean): string {
  const size = binarySize(image.size);
  const complete = image.blobsPresent === image.blobsTotal ? "complete" : "incomplete";
  return new Table()
    .line(`REF\tTYPE\tDIGEST\tSTATUS\tSIZE\t${showUnpacked ? "UNPACKED\t" : ""}`)
    .line(`${image.name}\t${image.mediaType}\t${image.digest}\t${complete} (${image.blobsPresent}/${image.blobsTotal})\t${size}/${size}\t${showUnpacked ? `${image.unpacked}\t` : ""}`)
    .toString();
}
