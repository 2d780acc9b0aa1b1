// Starts a real berthd (the built dist/ bundles) on temp root and state dirs, and
// runs real clients (ctr, berthctl) against it. Every test file uses its own daemon
// and removes everything it made in destroy().
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientError, createChannel, createClient, type Channel, type Client, type CompatServiceDefinition } from "nice-grpc";
import { redisLeftIn } from "../cmd/berthd/redis.ts";
import { hasExited, isRunning, stopChild } from "../core/process.ts";
import { socketAccepts } from "../core/socket.ts";

export const repoRoot = new URL("..", import.meta.url).pathname;
export const distDir = join(repoRoot, "dist");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface DaemonOptions {
  env?: NodeJS.ProcessEnv;
  /** The dir to keep root/ and state/ in, instead of a new temp dir. */
  base?: string;
  /** An executable that starts berthd (a launcher), instead of `node dist/berthd.js`. */
  launcher?: string;
  /** More berthd flags. */
  args?: string[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Daemon {
  readonly base: string;
  readonly root: string;
  readonly state: string;
  readonly address: string;
  private proc: ChildProcess | undefined;
  private output = "";
  private readonly env: NodeJS.ProcessEnv;
  private readonly launcher: string | undefined;
  private readonly args: string[];

  constructor(options: DaemonOptions = {}) {
    this.launcher = options.launcher;
    this.args = options.args ?? [];
    this.base = options.base ?? mkdtempSync(join(tmpdir(), "berth-test-"));
    this.root = join(this.base, "root");
    this.state = join(this.base, "state");
    this.address = join(this.state, "berth.sock");
    this.env = { ...process.env, BERTH_LOG_LEVEL: process.env.BERTH_LOG_LEVEL ?? "warn", ...options.env };
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** berthd's combined stdout/stderr so far (for failure messages). */
  get log(): string {
    return this.output;
  }

  async start(): Promise<this> {
    const paths = ["--root", this.root, "--state", this.state, ...this.args];
    const [command, args] = this.launcher ? [this.launcher, paths] : [process.execPath, [join(distDir, "berthd.js"), ...paths]];
    const proc = spawn(command, args, {
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    proc.stdout!.on("data", (d) => (this.output += d));
    proc.stderr!.on("data", (d) => (this.output += d));
    for (let i = 0; i < 600; i++) {
      if (hasExited(proc)) {
        throw new Error(`berthd exited during start-up:\n${this.output}`);
      }
      if (this.ready() && (await socketAccepts(this.address))) return this;
      await sleep(50);
    }
    throw new Error(`berthd did not become ready:\n${this.output}`);
  }

  /** berthd writes its pid file once every service is up. */
  private ready(): boolean {
    try {
      return Number(readFileSync(join(this.state, "berthd.pid"), "utf8")) === this.proc?.pid;
    } catch {
      return false;
    }
  }

  /** The pid of one service process (a child of berthd running dist/<name>.js). */
  servicePid(name: string): number | undefined {
    if (!this.proc?.pid) return undefined;
    for (const pid of childPids(this.proc.pid)) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        if (cmdline.some((arg) => arg.endsWith(`/dist/${name}.js`))) return pid;
      } catch {
        // exited meanwhile
      }
    }
    return undefined;
  }

  /** Waits until a service runs under a pid other than `oldPid` and its socket answers. */
  async waitForRestart(name: string, oldPid: number): Promise<number> {
    for (let i = 0; i < 400; i++) {
      const pid = this.servicePid(name);
      const socket = join(this.state, "services", `${name}.sock`);
      if (pid && pid !== oldPid && (await socketAccepts(socket))) return pid;
      await sleep(50);
    }
    throw new Error(`service ${name} was not restarted:\n${this.output}`);
  }

  /** SIGKILL berthd alone (its services notice and exit; redis stays). */
  async kill9(): Promise<void> {
    const proc = this.proc;
    if (!proc || hasExited(proc)) return;
    // redis-server outlives a killed berthd by design (the next berthd stops it)
    const redis = redisLeftIn(this.state);
    const services = childPids(proc.pid!).filter((pid) => pid !== redis);
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
    // services exit when their stdin pipe closes
    for (let i = 0; i < 200 && services.some(isRunning); i++) await sleep(25);
  }

  /** How berthd last ended under stop(): signal "SIGKILL" means SIGTERM did not stop it in time. */
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  async stop(): Promise<void> {
    if (this.proc) {
      await stopChild(this.proc, 15_000);
      this.lastExit = { code: this.proc.exitCode, signal: this.proc.signalCode };
    }
    this.proc = undefined;
  }

  /** Stops the daemon and removes the temp dirs (and any redis a kill9 left). */
  async destroy(): Promise<void> {
    await this.stop();
    const redis = redisLeftIn(this.state);
    if (redis) process.kill(redis, "SIGKILL");
    rmSync(this.base, { recursive: true, force: true });
  }

  ctr(args: string[], input?: string | Buffer, namespace = "default"): RunResult {
    return run("ctr", ["--address", this.address, "--namespace", namespace, ...args], input);
  }

  /** The Engine API's socket. */
  get dockerSocket(): string {
    return join(this.state, "docker.sock");
  }

  /** The real docker CLI against this daemon's Engine API (with a config dir of its own, so ~/.docker is not touched). */
  docker(args: string[], input?: string | Buffer, env: NodeJS.ProcessEnv = {}): RunResult {
    return run("docker", args, input, { ...process.env, DOCKER_HOST: `unix://${this.dockerSocket}`, DOCKER_CONFIG: join(this.base, "docker-config"), ...env });
  }

  /** The berth CLI (dist/berth.js) against this daemon's Engine API, with a home of its own (contexts, docker config). */
  berth(args: string[], input?: string | Buffer, env: NodeJS.ProcessEnv = {}): RunResult {
    const home = join(this.base, "berth-home");
    return run(process.execPath, [join(distDir, "berth.js"), ...args], input, {
      ...process.env,
      BERTH_HOST: `unix://${this.dockerSocket}`,
      HOME: home,
      DOCKER_CONFIG: join(home, ".docker"),
      ...env,
    });
  }

  berthctl(args: string[], input?: string | Buffer, namespace = "default"): RunResult {
    return run(process.execPath, [join(distDir, "berthctl.js"), "--address", this.address, "--namespace", namespace, ...args], input);
  }
}

export function run(cmd: string, args: string[], input?: string | Buffer, env?: NodeJS.ProcessEnv): RunResult {
  const r = spawnSync(cmd, args, { input, env: env ?? process.env, timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { code: r.status ?? 128, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** run() without blocking the event loop (a test's proxies, servers and polling run meanwhile); killed after `timeoutMs`. */
export function runAsync(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 240_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

/** `r`, after asserting that the command succeeded. */
export function ok(r: RunResult, what = "command"): RunResult {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The gRPC error `call` fails with; the test fails if it succeeds or fails some other way. */
export async function grpcError(call: Promise<unknown>): Promise<ClientError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ClientError, `expected a gRPC error, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the call to fail");
}

const freshChannels: Channel[] = [];

/** A client on a channel of its own, so a restarted daemon is reached anew. Close them with closeFreshChannels(). */
export function freshClient<D extends CompatServiceDefinition>(definition: D, address: string): Client<D> {
  const channel = createChannel(`unix://${address}`);
  freshChannels.push(channel);
  return createClient(definition, channel);
}

export function closeFreshChannels(): void {
  for (const channel of freshChannels.splice(0)) channel.close();
}

/** The rows of a table ctr printed (header dropped), split on runs of white space. */
export const tableRows = (out: string) =>
  out
    .trimEnd()
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/));

/** The pids of a process's children (none once it is gone). */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (children) pids.push(...children.split(/\s+/).map(Number));
    }
  } catch {
    // process gone
  }
  return pids;
}

/** Starts a daemon on fresh temp dirs (or in `options.base`). */
export async function startDaemon(options: DaemonOptions = {}): Promise<Daemon> {
  const daemon = new Daemon(options);
  try {
    return await daemon.start();
  } catch (err) {
    await daemon.destroy();
    throw err;
  }
}
