// UNIX sockets: whether something listens on one (a connection is opened and dropped
// at once, so it works for any protocol — gRPC, redis — and tells "up" from "not
// yet"), waiting until it does, and listening on one that only root and the socket's
// group may use.
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, watch, type FSWatcher } from "node:fs";
import net from "node:net";
import { basename, dirname } from "node:path";

export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(path);
    conn.once("connect", () => {
      conn.destroy();
      resolve(true);
    });
    conn.once("error", () => resolve(false));
  });
}

/** How often waitForSocket looks again when nothing woke it. */
const pollMs = 25;

/**
 * Waits until something listens on `path`: false once `timeoutMs` has passed, or as
 * soon as `gaveUp()` says there is no point waiting (the process that would listen exited).
 * The socket file's creation (inotify on its directory) wakes the wait at once: a
 * process started on demand is on the path of the call that started it, and a poll
 * alone made that call wait half a period (~13 ms) on average after each start. The
 * poll stays for what a watch misses (a directory made later; bind before listen).
 */
export async function waitForSocket(path: string, timeoutMs: number, gaveUp: () => boolean = () => false): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      if (name === basename(path)) wake?.();
    });
    watcher.on("error", () => watcher?.close());
  } catch {
    // no directory yet, or no inotify: polling alone
  }
  try {
    while (!gaveUp()) {
      if (await socketAccepts(path)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    return false;
  } finally {
    watcher?.close();
  }
}

/** The id of the `berth` group, whose members may use the public sockets (as the `docker` group does), if it exists. */
function berthGroupId(): number | undefined {
  try {
    const row = readFileSync("/etc/group", "utf8").split("\n").find((line) => line.startsWith("berth:"));
    const gid = Number(row?.split(":")[2]);
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}

/** Listens (through `listen`) on a fresh socket at `path`, then makes it root's and its group's (`berth` when that exists) only. */
export async function listenOnSocket(path: string, listen: (path: string) => Promise<unknown>): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  rmSync(path, { force: true });
  await listen(path);
  chmodSync(path, 0o660);
  const gid = berthGroupId();
  if (gid !== undefined) chownSync(path, 0, gid);
}
