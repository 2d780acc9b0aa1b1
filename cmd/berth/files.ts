// Writing a download (save -o, export -o) crash-safely: into a temp file beside the
// target, fsynced, renamed over it once complete; a failed transfer leaves nothing.
import { createWriteStream, fsyncSync, openSync, closeSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CliError } from "./errors.ts";

export async function saveStream(source: Readable, target: string): Promise<void> {
  const temp = join(dirname(target), `.${basename(target)}.berth-${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, "w", 0o644);
  } catch (err) {
    throw new CliError(`failed to save to ${target}: ${(err as Error).message}`);
  }
  try {
    await pipeline(source, createWriteStream("", { fd, autoClose: false }));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, target);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
    rmSync(temp, { force: true });
    throw err instanceof CliError ? err : new CliError(`failed to save to ${target}: ${(err as Error).message}`);
  }
}

/** Refuses to dump a binary stream onto a terminal, as docker does. */
export function refuseTerminal(what: string): void {
  if (process.stdout.isTTY) throw new CliError(`Cowardly refusing to ${what} to a terminal. Use the -o flag or redirect`);
}
