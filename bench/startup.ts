// CLI start-up: `berthctl version` next to `ctr version`, both against one berthd the
// bench starts on a temp root, plus `images ls` (one busybox image stored) and bare
// `node -e 0` as the floor any Node CLI stands on. berthctl is timed as the tests and
// scripts start it (node dist/berthctl.js) and through the launcher setup.sh installs.
// Runs are interleaved (one of each command per round) so that a burst of load on a
// shared machine hits every column alike; each column is the median wall time.
// BENCH_BASELINE=<path to another build's berthctl.js> adds its rows, for before/after.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startBerth } from "./daemons.ts";
import { importBusyboxWithCtr, median, wallMs, type Timed } from "./measure.ts";
import { distDir, repoRoot } from "../test/harness.ts";

const runs = Number(process.env.BENCH_RUNS ?? 21);
const baseline = process.env.BENCH_BASELINE;

const base = mkdtempSync(join(tmpdir(), "berth-bench-startup-"));
// Start-up times swing with the machine's load; the report says what it was.
const loadBefore = loadavg()[0]!;
try {
  const berth = await startBerth(join(base, "berth"));
  const results = new Map<string, number>();
  try {
    const launchers = join(base, "bin");
    mkdirSync(launchers);
    const install = spawnSync("sh", [join(repoRoot, "scripts", "install-launchers.sh"), launchers], { encoding: "utf8" });
    if (install.status !== 0) throw new Error(`install-launchers failed: ${install.stderr}`);

    await importBusyboxWithCtr(berth.address, join(base, "busybox"));

    const address = ["--address", berth.address];
    const berthctl = (args: string[]) => ({ command: process.execPath, args: [join(distDir, "berthctl.js"), ...address, ...args] });
    const commands: Timed[] = [
      { label: "node -e 0", command: process.execPath, args: ["-e", "0"] },
      { label: "ctr version", command: "ctr", args: [...address, "version"] },
      { label: "berthctl version", ...berthctl(["version"]) },
      { label: "berthctl version (launcher)", command: join(launchers, "berthctl"), args: [...address, "version"] },
      { label: "ctr images ls", command: "ctr", args: [...address, "images", "ls"] },
      { label: "berthctl images ls", ...berthctl(["images", "ls"]) },
      ...(baseline
        ? [
            { label: "baseline berthctl version", command: process.execPath, args: [baseline, ...address, "version"] },
            { label: "baseline berthctl images ls", command: process.execPath, args: [baseline, ...address, "images", "ls"] },
          ]
        : []),
    ];
    // A warm-up round: page cache, and berthctl's compile cache.
    for (const c of commands) wallMs(c);
    const times = new Map(commands.map((c) => [c.label, [] as number[]]));
    for (let i = 0; i < runs; i++) for (const c of commands) times.get(c.label)!.push(wallMs(c));
    for (const [label, xs] of times) results.set(label, median(xs));
  } finally {
    await berth.stop();
  }

  const ms = (label: string) => results.get(label)!;
  const ratio = (a: string, b: string) => `${(ms(a) / ms(b)).toFixed(2)}×`;
  const report = [
    `# CLI start-up: berthctl vs ctr (${new Date().toISOString()}, median of ${runs} interleaved runs after a warm-up, one berthd on a temp root)`,
    "",
    ...(baseline ? [`Baseline: ${baseline}`, ""] : []),
    `Machine: ${cpus().length} CPUs, 1-minute load average ${loadBefore.toFixed(2)} before the runs and ${loadavg()[0]!.toFixed(2)} after.`,
    "",
    "| command | median ms |",
    "|---|---:|",
    ...[...results].map(([label, value]) => `| ${label} | ${value.toFixed(1)} |`),
    "",
    `- \`berthctl version\` / \`ctr version\`: **${ratio("berthctl version", "ctr version")}** (through the launcher: ${ratio("berthctl version (launcher)", "ctr version")})`,
    `- \`berthctl images ls\` / \`ctr images ls\`: **${ratio("berthctl images ls", "ctr images ls")}**`,
    `- \`berthctl version\` above bare \`node -e 0\`: ${(ms("berthctl version") - ms("node -e 0")).toFixed(1)} ms`,
    "",
  ].join("\n");
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "startup.md"), report);
} finally {
  rmSync(base, { recursive: true, force: true });
}
