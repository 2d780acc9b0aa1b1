// The private redis-server berthd runs when BERTH_REDIS_URL is not set: UNIX socket
// only (no TCP port), append-only persistence under <root>/redis.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { Logger } from "../../core/log.ts";
import { hasExited, isRunning } from "../../core/process.ts";
import { makePrivateDir } from "../../core/private-files.ts";

export interface PrivateRedis {
  socket: string;
  stop(): Promise<void>;
}

/**
 * The pid in <state>/redis.pid if that process is a redis-server that still runs:
 * one left by a berthd that was killed.
 */
export function redisLeftIn(state: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(state, "redis.pid"), "utf8").trim());
    if (pid && isRunning(pid) && readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("redis-server")) return pid;
  } catch {
    // no pid file, or the process is gone
  }
  return undefined;
}

/** A redis left running by a berthd that was killed: stop it so we own the socket. */
async function stopStaleRedis(state: string, log: Logger): Promise<void> {
  const pid = redisLeftIn(state);
  if (!pid) return;
  log.warn({ pid }, "stopping redis-server left by a previous berthd");
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && isRunning(pid); i++) await new Promise((r) => setTimeout(r, 50));
}

function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    conn.setTimeout(500);
    conn.once("connect", () => conn.write("PING\r\n"));
    conn.once("data", (data) => {
      conn.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
    conn.once("error", () => resolve(false));
    conn.once("timeout", () => {
      conn.destroy();
      resolve(false);
    });
  });
}

/**
 * spawn() with umask 077 for the child: redis-server creates its append-only files
 * and pid file with the umask's leave (0644 at best) and has no option for it. The
 * child takes the umask at fork, which spawn() does synchronously, so no other code of
 * ours runs under the narrowed umask.
 */
function spawnPrivate(...args: Parameters<typeof spawn>): ChildProcess {
  const saved = process.umask(0o077);
  try {
    return spawn(...args);
  } finally {
    process.umask(saved);
  }
}

export async function startPrivateRedis(root: string, state: string, log: Logger): Promise<PrivateRedis> {
  const dir = join(root, "redis");
  makePrivateDir(dir);
  const socket = join(state, "redis.sock");
  await stopStaleRedis(state, log);
  rmSync(socket, { force: true });
  const child: ChildProcess = spawnPrivate(
    "redis-server",
    [
      "--port", "0",
      "--unixsocket", socket,
      "--unixsocketperm", "600",
      "--dir", dir,
      "--appendonly", "yes",
      "--save", "",
      "--pidfile", join(state, "redis.pid"),
      "--daemonize", "no",
      "--loglevel", "warning",
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("error", (err) => log.error({ err: err.message }, "cannot start redis-server"));
  for (let i = 0; i < 200; i++) {
    if (hasExited(child)) break;
    if (await ping(socket)) {
      log.info({ socket, pid: child.pid }, "redis ready");
      return {
        socket,
        async stop() {
          if (!hasExited(child)) child.kill("SIGTERM");
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error("redis-server did not start (is the redis-server package installed?)");
}
