// npm run bench: memory of the idle daemons, side by side. Starts berthd (with its
// private redis and every service) and containerd (CRI plugin disabled: Berth has no
// CRI yet), each on its own temp root, waits for them to settle, and reports each
// process's private memory (USS) and the summed PSS, with the ratio Berth/containerd.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids, mib, processMemory, processName, type ProcessMemory } from "./proc-memory.ts";

const repo = new URL("..", import.meta.url).pathname;
const settleMs = Number(process.env.BENCH_SETTLE_MS ?? 5000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    conn.once("connect", () => (conn.destroy(), resolve(true)));
    conn.once("error", () => resolve(false));
  });
}

async function waitFor(socket: string, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await answers(socket)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not open ${socket}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

async function measureBerth(base: string): Promise<ProcessMemory[]> {
  const state = join(base, "state");
  const child = spawn(process.execPath, [join(repo, "dist", "berthd.js"), "--root", join(base, "root"), "--state", state], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, BERTH_LOG_LEVEL: "warn" },
  });
  try {
    await waitFor(join(state, "berth.sock"), "berthd");
    // the gateway opens last, but give every service time to finish start-up work
    await sleep(settleMs);
    const pids = [child.pid!, ...childPids(child.pid!)];
    return pids.map((pid) => processMemory(pid, processName(pid)));
  } finally {
    await stop(child);
  }
}

async function measureContainerd(base: string): Promise<ProcessMemory[] | string> {
  if (spawnSync("containerd", ["--version"]).status !== 0) return "containerd is not installed (apt-get install containerd)";
  const root = join(base, "root");
  const state = join(base, "state");
  mkdirSync(root, { recursive: true });
  const address = join(state, "containerd.sock");
  const config = join(base, "config.toml");
  writeFileSync(
    config,
    `version = 2\nroot = "${root}"\nstate = "${state}"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${address}"\n[ttrpc]\n  address = "${address}.ttrpc"\n[debug]\n  address = "${join(state, "debug.sock")}"\n`,
  );
  const child = spawn("containerd", ["--config", config], { stdio: ["ignore", "ignore", "ignore"] });
  try {
    await waitFor(address, "containerd");
    await sleep(settleMs);
    return [processMemory(child.pid!, "containerd")];
  } finally {
    await stop(child);
  }
}

function table(title: string, rows: ProcessMemory[]): string {
  const lines = [`${title}`, "| process | pid | USS MiB | PSS MiB |", "|---|---:|---:|---:|"];
  for (const r of rows) lines.push(`| ${r.name} | ${r.pid} | ${mib(r.ussKiB)} | ${mib(r.pssKiB)} |`);
  const total = (k: "ussKiB" | "pssKiB") => rows.reduce((s, r) => s + r[k], 0);
  lines.push(`| **total** | | ${mib(total("ussKiB"))} | ${mib(total("pssKiB"))} |`);
  return lines.join("\n");
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-"));
try {
  const berth = await measureBerth(join(base, "berth"));
  const containerd = await measureContainerd(join(base, "containerd"));
  const out: string[] = [`# Idle daemon memory (${new Date().toISOString()}, settle ${settleMs} ms)`, "", table("## Berth (berthd, services, redis)", berth), ""];
  const berthPss = berth.reduce((s, r) => s + r.pssKiB, 0);
  if (typeof containerd === "string") {
    out.push(`containerd: not measured — ${containerd}`);
  } else {
    out.push(table("## containerd 1.6 (CRI disabled)", containerd), "");
    const cPss = containerd.reduce((s, r) => s + r.pssKiB, 0);
    out.push(`Ratio of summed PSS, Berth / containerd: **${(berthPss / cPss).toFixed(2)}×** (${mib(berthPss)} MiB vs ${mib(cPss)} MiB)`);
  }
  const report = out.join("\n") + "\n";
  process.stdout.write(report);
  writeFileSync(join(repo, "bench", "results", "idle-memory.md"), report);
} finally {
  rmSync(base, { recursive: true, force: true });
}
