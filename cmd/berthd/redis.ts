// The private redis-server berthd runs when BERTH_REDIS_URL is not set: UNIX socket
// only (no TCP port), append-only persistence under <root>/redis.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { Logger } from "../../core/log.ts";

export interface PrivateRedis {
  socket: string;
  stop(): Promise<void>;
}

/** Running, and not a zombie (an orphaned redis waits to be reaped by init). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** A redis left running by a berthd that was killed: stop it so we own the socket. */
async function stopStaleRedis(pidFile: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
  } catch {
    return;
  }
  if (!pid || !alive(pid)) return;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return;
  }
  if (!cmdline.startsWith("redis-server")) return;
  log.warn({ pid }, "stopping redis-server left by a previous berthd");
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
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

export async function startPrivateRedis(root: string, state: string, log: Logger): Promise<PrivateRedis> {
  const dir = join(root, "redis");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(state, "redis.sock");
  const pidFile = join(state, "redis.pid");
  await stopStaleRedis(pidFile, log);
  rmSync(socket, { force: true });
  const child: ChildProcess = spawn(
    "redis-server",
    [
      "--port", "0",
      "--unixsocket", socket,
      "--unixsocketperm", "600",
      "--dir", dir,
      "--appendonly", "yes",
      "--save", "",
      "--pidfile", pidFile,
      "--daemonize", "no",
      "--loglevel", "warning",
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("error", (err) => log.error({ err: err.message }, "cannot start redis-server"));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await ping(socket)) {
      log.info({ socket, pid: child.pid }, "redis ready");
      return {
        socket,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error("redis-server did not start (is the redis-server package installed?)");
}
