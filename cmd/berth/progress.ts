// Renders the Engine API's JSON-message streams (pull, push, load): on a terminal, one
// row per layer id redrawn in place with a bar built from progressDetail; otherwise
// plain lines, skipping the byte-count updates (they would flood a log), as docker does.
// An errorDetail message ends the stream as a failure.
import type { Readable } from "node:stream";
import { CliError } from "./errors.ts";
import { humanSize } from "./output.ts";

export interface JsonMessage {
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  stream?: string;
  aux?: unknown;
  errorDetail?: { code?: number; message?: string };
  error?: string;
}

function bar(current: number, total: number, width = 50): string {
  if (total <= 0) return `${humanSize(current)}`;
  const filled = Math.min(width, Math.floor((current / total) * width));
  const arrow = filled > 0 ? `${"=".repeat(filled - 1)}>` : "";
  return `[${arrow}${" ".repeat(width - filled)}] ${humanSize(current).padStart(8)}/${humanSize(total)}`;
}

function messageText(m: JsonMessage, tty: boolean): string {
  const detail = m.progressDetail;
  const moving = detail && (detail.current !== undefined || detail.total !== undefined);
  const progress = tty && moving ? ` ${bar(detail!.current ?? 0, detail!.total ?? 0)}` : !moving && m.progress ? ` ${m.progress}` : "";
  return `${m.id ? `${m.id}: ` : ""}${m.status ?? ""}${progress}`;
}

export class MessageRenderer {
  private readonly out: NodeJS.WriteStream;
  private readonly tty: boolean;
  /** Terminal rows of each id, counted from the first row drawn. */
  private readonly rows = new Map<string, number>();
  private drawn = 0;
  onAux?: (aux: unknown) => void;

  private readonly quiet: boolean;

  /** `quiet`: nothing is shown; failures still end the stream. */
  constructor(out: NodeJS.WriteStream = process.stdout, quiet = false) {
    this.out = out;
    this.tty = Boolean(out.isTTY);
    this.quiet = quiet;
  }

  show(m: JsonMessage): void {
    if (m.errorDetail || m.error) {
      const message = m.errorDetail?.message ?? m.error ?? "unknown error";
      throw new CliError(message, m.errorDetail?.code && m.errorDetail.code > 0 ? m.errorDetail.code : 1);
    }
    if (this.quiet) return;
    if (m.aux !== undefined) {
      this.onAux?.(m.aux);
      return;
    }
    if (m.stream !== undefined) {
      this.out.write(m.stream);
      return;
    }
    const detail = m.progressDetail;
    const moving = detail && (detail.current !== undefined || detail.total !== undefined);
    if (!this.tty) {
      if (!moving) this.out.write(`${messageText(m, false)}\n`);
      return;
    }
    const text = messageText(m, true).slice(0, (this.out.columns || 120) - 1);
    if (!m.id) {
      this.out.write(`${text}\n`);
      this.drawn++;
      return;
    }
    const row = this.rows.get(m.id);
    if (row === undefined) {
      this.rows.set(m.id, this.drawn);
      this.out.write(`${text}\n`);
      this.drawn++;
      return;
    }
    const up = this.drawn - row;
    this.out.write(`\x1b[${up}A\x1b[2K\r${text}\x1b[${up}B\r`);
  }

  /** Reads every message of a stream; throws on the first errorDetail. */
  async consume(stream: Readable): Promise<void> {
    let buffered = "";
    for await (const chunk of stream) {
      buffered += (chunk as Buffer).toString("utf8");
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) this.show(JSON.parse(line) as JsonMessage);
      }
    }
    if (buffered.trim()) this.show(JSON.parse(buffered) as JsonMessage);
  }
}
