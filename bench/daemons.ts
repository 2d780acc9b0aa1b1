// The daemons a benchmark compares, each started on its own temp root: berthd (with
// its private redis and every service) and a real containerd (CRI disabled: Berth
// has no CRI yet). Both stop with stop(), leaving nothing running.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { socketAccepts } from "../core/socket.ts";

export const repo = new URL("..", import.meta.url).pathname;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunningDaemon {
  name: string;
  pid: number;
  /** The gRPC socket (containerd API). */
  address: string;
  stop(): Promise<void>;
}

async function waitFor(socket: string, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await socketAccepts(socket)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not open ${socket}`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  };
}

export async function startBerth(base: string): Promise<RunningDaemon> {
  const state = join(base, "state");
  const child = spawn(process.execPath, [join(repo, "dist", "berthd.js"), "--root", join(base, "root"), "--state", state], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, BERTH_LOG_LEVEL: "warn" },
  });
  const address = join(state, "berth.sock");
  await waitFor(address, "berthd");
  return { name: "berth", pid: child.pid!, address, stop: stopper(child) };
}

export function containerdInstalled(): boolean {
  return spawnSync("containerd", ["--version"]).status === 0;
}

export async function startContainerd(base: string): Promise<RunningDaemon> {
  const root = join(base, "root");
  const state = join(base, "state");
  mkdirSync(root, { recursive: true });
  const address = join(state, "containerd.sock");
  const config = join(base, "config.toml");
  writeFileSync(
    config,
    [
      "version = 2",
      `root = "${root}"`,
      `state = "${state}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${address}"`,
      "[ttrpc]",
      `  address = "${address}.ttrpc"`,
      "[debug]",
      `  address = "${join(state, "debug.sock")}"`,
      "",
    ].join("\n"),
  );
  const child = spawn("containerd", ["--config", config], { stdio: ["ignore", "ignore", "ignore"] });
  await waitFor(address, "containerd");
  return { name: "containerd", pid: child.pid!, address, stop: stopper(child) };
}
