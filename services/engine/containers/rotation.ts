// json-file rotation (LogConfig max-size / max-file): the engine watches the size of each
// running container's log; past max-size it shifts <log> → <log>.1 → <log>.2 … (dropping
// what max-file does not keep) and tells the shim to reopen the path, so the shim, which
// writes the log, goes on in a fresh file (the shim's `reopen-log` control command,
// shim/README.md). Readers follow the rename (logfile.ts).
import { closeSync, constants, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../backend.ts";
import { badRequest } from "../http.ts";
import type { ContainerRecord } from "../store.ts";
import { shimDirOf } from "./paths.ts";

const units: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "10m", "512k", "100" (bytes) as a byte count. */
export function parseLogSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(text.trim());
  if (!m) throw badRequest(`invalid max-size: ${JSON.stringify(text)}: expected a size such as 10m or 512k`);
  const size = Math.floor(Number(m[1]) * units[m[2]!.toLowerCase()]!);
  if (size <= 0) throw badRequest(`invalid max-size: ${JSON.stringify(text)}: it must be positive`);
  return size;
}

export function parseMaxFile(text: string | undefined): number {
  if (text === undefined || text === "") return 1;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw badRequest(`invalid max-file: ${JSON.stringify(text)}: expected a positive integer`);
  return Number(text);
}

/** Checks a LogConfig at create time; only json-file is served. */
export function checkLogConfig(config: { Type?: string; Config?: Record<string, string> } | undefined): void {
  if (config?.Type && config.Type !== "json-file") throw badRequest(`logging driver "${config.Type}" is not supported by this engine (json-file only)`);
  const options = config?.Config ?? {};
  for (const key of Object.keys(options)) {
    if (!["max-size", "max-file", "compress", "labels", "env", "tag"].includes(key)) throw badRequest(`unknown log opt '${key}' for json-file log driver`);
  }
  if (options["max-size"] !== undefined) parseLogSize(options["max-size"]);
  parseMaxFile(options["max-file"]);
}

/**
 * Shifts the files and has the shim reopen the log. The control FIFO is opened first: a
 * shim that is gone (its process exited, its output drained) reopens nothing, and then
 * the log stays where it is.
 */
export function rotate(log: string, maxFile: number, shimDir: string): boolean {
  let control: number;
  try {
    control = openSync(join(shimDir, "control"), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const aside = maxFile <= 1 ? `${log}.rotating` : `${log}.1`;
    if (maxFile > 1) {
      rmSync(`${log}.${maxFile - 1}`, { force: true });
      for (let i = maxFile - 2; i >= 1; i--) {
        try {
          renameSync(`${log}.${i}`, `${log}.${i + 1}`);
        } catch {
          // that generation does not exist yet
        }
      }
    }
    renameSync(log, aside);
    try {
      writeSync(control, "reopen-log\n");
    } catch (err) {
      // The shim left meanwhile: the log goes back, so the path keeps the newest output.
      renameSync(aside, log);
      throw err;
    }
    // The fresh file exists from now on, as the shim would create it: a shim that exits
    // before it reads the command (its container just ended) must not leave the path
    // missing. The shim's reopen appends to this same file.
    closeSync(openSync(log, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o640));
    // Nothing older is kept with max-file 1: the moved-aside file goes once the shim has let go of it.
    if (maxFile <= 1) rmSync(aside, { force: true });
    return true;
  } finally {
    closeSync(control);
  }
}

const checkEveryMs = 500;

export class LogRotation {
  private readonly backend: Backend;
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(backend: Backend) {
    this.backend = backend;
  }

  watch(record: ContainerRecord): void {
    const options = record.HostConfig.LogConfig?.Config ?? {};
    if (!options["max-size"] || this.timers.has(record.Id)) return;
    const maxSize = parseLogSize(options["max-size"]);
    const maxFile = parseMaxFile(options["max-file"]);
    const shimDir = shimDirOf(this.backend.options.state, this.backend.namespace, record.Id);
    const timer = setInterval(() => {
      try {
        if (statSync(record.LogPath).size >= maxSize) rotate(record.LogPath, maxFile, shimDir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOENT") this.backend.log.warn({ id: record.Id, err: (err as Error).message }, "log rotation failed");
      }
    }, checkEveryMs);
    timer.unref();
    this.timers.set(record.Id, timer);
  }

  unwatch(id: string): void {
    clearInterval(this.timers.get(id));
    this.timers.delete(id);
  }

  stopAll(): void {
    for (const id of [...this.timers.keys()]) this.unwatch(id);
  }
}
