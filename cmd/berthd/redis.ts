// The private redis-server berthd runs when BERTH_REDIS_URL is not set: UNIX socket
// only (no TCP port, socket mode 0600), append-only persistence under <root>/redis, and
// a password made at each start that only Berth's processes are given (in their
// environment, which only root can read; never on a command line, which anyone can), so
// nobody else can forge events or jobs. berthd supervises it like its services: it is
// restarted with backoff when it dies, and clients reconnect and resubscribe.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { Logger } from "../../core/log.ts";
import { hasExited, isRunning } from "../../core/process.ts";
import { makePrivateDir, writePrivateFile } from "../../core/private-files.ts";

export interface PrivateRedis {
  socket: string;
  password: string;
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

/** True once the server answers an authenticated PING. */
function ping(socket: string, password: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    conn.setTimeout(500);
    let answer = "";
    conn.once("connect", () => conn.write(`AUTH ${password}\r\nPING\r\n`));
    conn.on("data", (data) => {
      answer += data.toString();
      // Two replies: AUTH's, then PING's.
      if (answer.split("\r\n").length < 3) return;
      conn.destroy();
      resolve(answer === "+OK\r\n+PONG\r\n");
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

const minBackoffMs = 100;
const maxBackoffMs = 5000;

export async function startPrivateRedis(root: string, state: string, log: Logger): Promise<PrivateRedis> {
  const dir = join(root, "redis");
  makePrivateDir(dir);
  const socket = join(state, "redis.sock");
  const password = randomBytes(32).toString("hex");
  // The password reaches redis-server through a private config file, not its argv.
  const config = join(state, "redis.conf");
  writePrivateFile(config, `requirepass ${password}\n`);
  await stopStaleRedis(state, log);

  let child: ChildProcess | undefined;
  let stopping = false;
  let backoffMs = minBackoffMs;
  let restartTimer: NodeJS.Timeout | undefined;

  const launch = async (): Promise<void> => {
    rmSync(socket, { force: true });
    const started = Date.now();
    const current = spawnPrivate(
      "redis-server",
      [
        config,
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
    child = current;
    current.once("error", (err) => log.error({ err: err.message }, "cannot start redis-server"));
    current.once("exit", (code, signal) => {
      if (stopping || child !== current) return;
      if (Date.now() - started > 10_000) backoffMs = minBackoffMs;
      const delay = backoffMs;
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      log.warn({ code, signal, restartInMs: delay }, "redis-server exited; restarting");
      restartTimer = setTimeout(() => {
        if (!stopping) launch().catch((err: Error) => log.error({ err: err.message }, "redis-server did not come back"));
      }, delay);
    });
    for (let i = 0; i < 200; i++) {
      if (hasExited(current)) break;
      if (await ping(socket, password)) {
        log.info({ socket, pid: current.pid }, "redis ready");
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    current.kill("SIGKILL");
    throw new Error("redis-server did not start (is the redis-server package installed?)");
  };

  await launch();
  return {
    socket,
    password,
    async stop() {
      stopping = true;
      clearTimeout(restartTimer);
      const last = child;
      if (!last || hasExited(last)) return;
      const exited = new Promise<void>((resolve) => last.once("exit", () => resolve()));
      last.kill("SIGTERM");
      await exited;
    },
  };
}
