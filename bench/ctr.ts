// The real ctr driven by the benchmarks that compare Berth's and containerd's containers,
// and the cleanup of the cgroups ctr's specs leave (ctr puts a task under /<namespace>).
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";

const ctrArgs = (address: string, namespace: string, args: string[]) => ["--address", address, "--namespace", namespace, ...args];

/** One ctr call, whatever its outcome. */
export function ctrSync(address: string, namespace: string, args: string[]): SpawnSyncReturns<string> {
  return spawnSync("ctr", ctrArgs(address, namespace, args), { encoding: "utf8", maxBuffer: 64 << 20 });
}

/** One ctr call that must succeed; its stdout. `who` names the daemon in the error. */
export function ctrOk(address: string, namespace: string, args: string[], who = "ctr"): string {
  const r = ctrSync(address, namespace, args);
  if (r.status !== 0) throw new Error(`${who}: ctr ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** One ctr call that must succeed, without blocking the bench's event loop (for calls run side by side). */
export function ctrAsync(address: string, namespace: string, args: string[], who = "ctr"): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("ctr", ctrArgs(address, namespace, args), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${who}: ctr ${args.join(" ")} exited ${code}: ${stderr}`))));
  });
}

/** Removes the cgroup parent /<namespace> and its children, in every hierarchy. */
export function removeNamespaceCgroups(namespace: string): void {
  for (const controller of readdirSync("/sys/fs/cgroup")) {
    const dir = join("/sys/fs/cgroup", controller, namespace);
    if (!existsSync(dir)) continue;
    for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) rmdirSync(join(dir, child.name));
    rmdirSync(dir);
  }
}
