// The daemons a benchmark compares, each started on its own temp root: berthd (with
// its private redis and every service) and a real containerd (CRI disabled: Berth
// has no CRI yet). Both stop with stop(), leaving nothing running.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasExited, stopChild } from "../core/process.ts";
import { waitForSocket } from "../core/socket.ts";
import { repoRoot, startDaemon } from "../test/harness.ts";

export interface RunningDaemon {
  name: string;
  pid: number;
  /** The gRPC socket (containerd API). */
  address: string;
  stop(): Promise<void>;
}

/** berthd as users start it: through its launcher (its V8 flags included). */
export async function startBerth(base: string, env: NodeJS.ProcessEnv = {}, args: string[] = []): Promise<RunningDaemon> {
  const launcher = join(repoRoot, "cmd", "berthd", "bin", "berthd");
  const daemon = await startDaemon({ base, launcher, args, env: { BERTH_LOG_LEVEL: "warn", ...env } });
  return { name: "berth", pid: daemon.pid!, address: daemon.address, stop: () => daemon.stop() };
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
  if (!(await waitForSocket(address, 20_000, () => hasExited(child)))) throw new Error(`containerd did not open ${address}`);
  return { name: "containerd", pid: child.pid!, address, stop: () => stopChild(child, 15_000) };
}

export function dockerdInstalled(): boolean {
  return spawnSync("dockerd", ["--version"]).status === 0;
}

/**
 * A real dockerd (Debian's docker.io) on a temp root with its own managed containerd,
 * no iptables and no default bridge (or one the caller made, via extraArgs), so it
 * touches nothing outside `base`. address is its Engine API socket.
 */
export async function startDockerd(base: string, extraArgs: string[] = []): Promise<RunningDaemon> {
  const address = join(base, "docker.sock");
  const child = spawn(
    "dockerd",
    [
      "--data-root", join(base, "data"),
      "--exec-root", join(base, "exec"),
      "--pidfile", join(base, "dockerd.pid"),
      "--host", `unix://${address}`,
      "--iptables=false",
      "--ip-masq=false",
      // extraArgs may name a bridge the caller made instead
      ...(extraArgs.some((a) => a.startsWith("--bridge=")) ? [] : ["--bridge=none"]),
      "--userland-proxy=false",
      "--config-file", join(base, "daemon.json"),
      ...extraArgs,
    ],
    { stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, DOCKER_RAMDISK: "" } },
  );
  writeFileSync(join(base, "daemon.json"), "{}");
  if (!(await waitForSocket(address, 30_000, () => hasExited(child)))) throw new Error(`dockerd did not open ${address}`);
  return { name: "dockerd", pid: child.pid!, address, stop: () => stopChild(child, 20_000) };
}
