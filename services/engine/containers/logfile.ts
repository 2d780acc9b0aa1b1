// Reading a container's json-file log (the shim writes it: one JSON line per line of
// output, {"log","stream","time"}), whole or followed as it grows, across rotations
// (<log>.1, <log>.2 … are older files; a follower switches to the new file once it has
// read the old one to its end).
import { statSync, watch, type FSWatcher } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname } from "node:path";

export interface LogEntry {
  log: string;
  stream: "stdout" | "stderr";
  time: string;
}

function parseLine(line: string): LogEntry | undefined {
  try {
    const value = JSON.parse(line) as LogEntry;
    return typeof value.log === "string" ? value : undefined;
  } catch {
    return undefined; // a torn line from a crash: skipped, as Docker's reader does
  }
}

const chunkSize = 64 * 1024;

/** A cursor on one log path: reads what is there, notices growth and rotation. */
export class LogCursor {
  readonly path: string;
  private handle: FileHandle | undefined;
  private ino = -1;
  private position: number;
  private pending = "";
  private watcher: FSWatcher | undefined;
  private wake: (() => void) | undefined;
  private dirty = false;

  /** `from`: a byte offset in the current file (logSize() taken earlier: only what is written from then on). */
  constructor(path: string, from = 0) {
    this.path = path;
    this.position = from;
  }

  /** Opens the file if it exists (a log appears at the container's first start). */
  private async ensureOpen(): Promise<boolean> {
    if (this.handle) return true;
    try {
      this.handle = await open(this.path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    const st = await this.handle.stat();
    this.ino = st.ino;
    return true;
  }

  /**
   * The entries written since the last call, up to the current end (switching files after
   * a rotation), or only up to byte `limit` of the file it started in.
   */
  async *read(limit = Infinity): AsyncGenerator<LogEntry> {
    for (;;) {
      if (!(await this.ensureOpen())) return;
      yield* this.readOpen(limit);
      if (this.position >= limit) return;
      const current = await stat(this.path).catch(() => undefined);
      if (!current || current.ino === this.ino) return;
      // Rotated: the path names a new file, which the shim made when it let go of this one,
      // so one more read of this one gets all it will ever hold.
      yield* this.readOpen(limit);
      await this.handle!.close();
      this.handle = undefined;
      this.position = 0;
      this.pending = "";
    }
  }

  private async *readOpen(limit: number): AsyncGenerator<LogEntry> {
    const buffer = Buffer.allocUnsafe(chunkSize);
    for (;;) {
      const want = Math.min(chunkSize, limit - this.position);
      if (want <= 0) return;
      const { bytesRead } = await this.handle!.read(buffer, 0, want, this.position);
      if (bytesRead === 0) return;
      this.position += bytesRead;
      const text = this.pending + buffer.toString("utf8", 0, bytesRead);
      const lines = text.split("\n");
      this.pending = lines.pop()!;
      for (const line of lines) {
        const entry = line ? parseLine(line) : undefined;
        if (entry) yield entry;
      }
    }
  }

  /** Resolves when the log's directory changes, `done` settles, or `signal` aborts (whichever first). */
  async changed(done: Promise<unknown>, signal?: AbortSignal): Promise<void> {
    if (!this.watcher) {
      try {
        const name = basename(this.path);
        this.watcher = watch(dirname(this.path), (_event, file) => {
          if (file && !file.toString().startsWith(name)) return;
          // A change while no one waits is kept, so the next wait returns at once.
          if (this.wake) this.wake();
          else this.dirty = true;
        });
        this.watcher.on("error", () => undefined);
        // What was written before the watch began is read at once.
        this.dirty = true;
      } catch {
        this.watcher = undefined;
      }
    }
    if (this.dirty) {
      this.dirty = false;
      return;
    }
    await new Promise<void>((resolve) => {
      // A slow tick besides the watch: inotify cannot miss appends, but a dir made late can be.
      const timer = setTimeout(finish, this.watcher ? 1000 : 100);
      const onAbort = () => finish();
      signal?.addEventListener("abort", onAbort, { once: true });
      function finish() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }
      this.wake = finish;
      void done.then(finish, finish);
    });
    this.wake = undefined;
  }

  async close(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }
}

/** The rotated files of a log, oldest first (<log>.N … <log>.1), that exist. */
export async function rotatedFiles(path: string, maxFiles = 100): Promise<string[]> {
  const found: string[] = [];
  for (let i = 1; i < maxFiles; i++) {
    const file = `${path}.${i}`;
    if (!(await stat(file).catch(() => undefined))) break;
    found.push(file);
  }
  return found.reverse();
}

/**
 * Follows a log: everything from `cursor`'s position, then what is appended, until `done`
 * settles (no more output will come: the run ended and the shim has written everything)
 * and the file has been read to its end, or `signal` aborts.
 */
export async function* follow(cursor: LogCursor, done: Promise<unknown>, signal?: AbortSignal): AsyncGenerator<LogEntry> {
  let finished = false;
  void done.then(
    () => (finished = true),
    () => (finished = true),
  );
  try {
    for (;;) {
      if (signal?.aborted) return;
      const last = finished;
      yield* cursor.read();
      if (last) return;
      await cursor.changed(done, signal);
    }
  } finally {
    await cursor.close();
  }
}

/** The log's current size (0 when it does not exist yet): where a reader of new output starts. */
export function logSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
