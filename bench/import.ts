// Image import, side by side: the same Docker archive (as `docker save` writes it,
// produced here by skopeo) imported into Berth (`berthctl images import`) and into a
// real containerd (`ctr images import`), each on its own temp root; also the real ctr
// against Berth, which separates the server's cost from the client's. Every run uses
// a fresh namespace, so nothing is reused between runs; import includes unpacking
// into overlayfs snapshots in both. Reports the median wall time and the ratio.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startBerth, startContainerd, type RunningDaemon } from "./daemons.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { buildImage, skopeoArchives, type TarEntry } from "../test/fixtures/archives.ts";
import { distDir, repoRoot } from "../test/harness.ts";
import { median } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 5);

/** A bigger image: three layers of many small files and a few large ones. */
async function syntheticImage() {
  const layer = (n: number) => {
    const entries: TarEntry[] = [];
    for (let i = 0; i < 600; i++) entries.push({ name: `data${n}/small/f${i}.txt`, data: randomBytes(2048).toString("base64") });
    for (let i = 0; i < 4; i++) entries.push({ name: `data${n}/large/blob${i}.bin`, data: randomBytes(4 * 1024 * 1024) });
    return { entries };
  };
  return buildImage([layer(1), layer(2), layer(3)]);
}

type Client = "berthctl" | "ctr";

function timeImport(daemon: RunningDaemon, client: Client, archive: string, namespace: string): number {
  const [cmd, args] =
    client === "berthctl"
      ? [process.execPath, [join(distDir, "berthctl.js"), "--address", daemon.address, "--namespace", namespace, "images", "import", archive]]
      : ["ctr", ["--address", daemon.address, "--namespace", namespace, "images", "import", archive]];
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd as string, args as string[], { encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${client} import into ${daemon.name} failed: ${r.stderr}`);
  return ms;
}


async function bench(name: string, archive: string, base: string): Promise<string> {
  const results: Record<string, number> = {};
  const measure = async (label: string, daemon: RunningDaemon, clients: Client[]) => {
    try {
      for (const client of clients) {
        timeImport(daemon, client, archive, `warmup-${client}`);
        results[`${client}→${label}`] = median(Array.from({ length: runs }, (_, i) => timeImport(daemon, client, archive, `${client}-run${i}`)));
      }
    } finally {
      await daemon.stop();
    }
  };
  await measure("berth", await startBerth(join(base, `${name}-berth`)), ["berthctl", "ctr"]);
  if (containerdInstalled()) await measure("containerd", await startContainerd(join(base, `${name}-containerd`)), ["ctr"]);
  const size = (statSync(archive).size / 1024 / 1024).toFixed(1);
  const cell = (key: string) => (results[key] === undefined ? "n/a" : results[key]!.toFixed(0));
  const ratio = (key: string) => {
    const c = results["ctr→containerd"];
    return c === undefined || results[key] === undefined ? "n/a" : `${(results[key]! / c).toFixed(2)}×`;
  };
  return `| ${name} (${size} MiB) | ${cell("berthctl→berth")} | ${cell("ctr→berth")} | ${cell("ctr→containerd")} | ${ratio("berthctl→berth")} | ${ratio("ctr→berth")} |`;
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-import-"));
try {
  const busyboxDir = join(base, "busybox");
  mkdirSync(busyboxDir);
  const busybox = skopeoArchives(busyboxDir, await buildBusyboxImage(), "busybox:latest").dockerArchive;
  const bigDir = join(base, "synthetic");
  mkdirSync(bigDir);
  const big = skopeoArchives(bigDir, await syntheticImage(), "synthetic:latest").dockerArchive;
  const lines = [
    `# Image import: Berth vs containerd (${new Date().toISOString()}, median of ${runs} runs after a warm-up, fresh namespace per run)`,
    "",
    "| archive (docker-archive) | berthctl → Berth ms | ctr → Berth ms | ctr → containerd ms | berthctl→Berth / containerd | ctr→Berth / containerd |",
    "|---|---:|---:|---:|---:|---:|",
    await bench("busybox", busybox, base),
    await bench("synthetic 3 layers", big, base),
  ];
  const report = lines.join("\n") + "\n";
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "import.md"), report);
} finally {
  rmSync(base, { recursive: true, force: true });
}
