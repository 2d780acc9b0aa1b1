// A lock every Berth process on this host shares, for the moments when two engines could
// pick the same thing from the host's state (the default bridge's subnet: both read the
// routes, both see a pool free, both take it). mkdir is atomic; the owner's pid inside
// lets a lock left by a killed process be taken over.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isRunning } from "../process.ts";

const defaultDir = "/run/lock/berth-networks.lock";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function withHostLock<T>(fn: () => Promise<T>, dir = process.env.BERTH_HOST_LOCK ?? defaultDir, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(dir, { recursive: false, mode: 0o700 });
      writeFileSync(join(dir, "pid"), String(process.pid));
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        mkdirSync(join(dir, ".."), { recursive: true });
        continue;
      }
      if (code !== "EEXIST") throw err;
      let owner = 0;
      try {
        owner = Number(readFileSync(join(dir, "pid"), "utf8"));
      } catch {
        // being made or removed right now
      }
      if (owner > 0 && !isRunning(owner)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the host network lock ${dir} (held by pid ${owner || "?"})`);
      await sleep(20);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
