// Cold pull and unpack of a ~200 MiB multi-layer image from a local docker-registry,
// side by side: `berthctl pull` (the daemon's pull jobs: fetch, store, unpack), the real
// `ctr images pull` into a real containerd (which unpacks too), and `skopeo copy` to an
// OCI directory (fetch only, no unpack: a floor for moving the bytes). Fresh daemons per
// run, each pulling once idle after its start (as a daemon is used: not mid-start);
// median wall time of BENCH_RUNS runs (default 3). A second Berth row is a fresh
// `berthd --keep-processes`: the content is as cold, the process starts are not paid.
// BENCH_CONCURRENT=N (default 5, 0 = off) adds N pulls of the same image at once, each
// into its own namespace, for Berth and containerd (fresh daemons again).
// Run: npm exec -- node bench/pull.ts; results in bench/results/pull.md.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startBerth, startContainerd } from "./daemons.ts";
import type { ImageParts } from "../test/fixtures/archives.ts";
import { pullBenchImage } from "./pull-image.ts";
import { TestRegistry } from "../test/fixtures/registry.ts";
import { distDir, repoRoot } from "../test/harness.ts";
import { RegistryClient, parseRegistryReference, pushBlob, pushManifest } from "../core/registry/index.ts";
import { median, waitUntilIdle } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 3);
const concurrent = Number(process.env.BENCH_CONCURRENT ?? 5);
const layerMiB = [80, 60, 40, 20];

function timed(cmd: string, args: string[]): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** Wall ms until every command has exited (all started at once). */
async function timedTogether(commands: [string, string[]][]): Promise<number> {
  const started = process.hrtime.bigint();
  await Promise.all(
    commands.map(
      ([cmd, args]) =>
        new Promise<void>((resolve, reject) => {
          const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
          let stderr = "";
          child.stderr.on("data", (d) => (stderr += d));
          child.on("error", reject);
          child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${stderr}`))));
        }),
    ),
  );
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const benchImage = () => pullBenchImage(layerMiB, process.env.BENCH_LAYER_KIND);

async function upload(registry: string, image: ImageParts): Promise<string> {
  const client = new RegistryClient({ certsDir: "/nonexistent", credentials: async () => undefined });
  const ref = parseRegistryReference(`${registry}/bench/pull:1`);
  for (const b of [image.config, ...image.layers]) await pushBlob(client, ref, b, (async function* () { yield b.data; })());
  await pushManifest(client, ref, "1", image.manifest, image.manifest.data);
  await client.close();
  return `${registry}/bench/pull:1`;
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-pull-"));
const stops: (() => Promise<void>)[] = [];
try {
  const registry = await TestRegistry.start(join(base, "registry"));
  stops.push(() => registry.stop());
  const image = await benchImage();
  const ref = await upload(registry.host, image);
  const berthctl = (address: string, args: string[]): [string, string[]] => [process.execPath, [join(distDir, "berthctl.js"), "--address", address, ...args]];
  const size = image.blobs.reduce((n, b) => n + b.size, 0) / 1024 / 1024;
  const policy = join(base, "policy.json");
  writeFileSync(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  const samples: Record<"berth" | "berthWarm" | "containerd" | "skopeo" | "berthTogether" | "containerdTogether", number[]> = {
    berth: [],
    berthWarm: [],
    containerd: [],
    skopeo: [],
    berthTogether: [],
    containerdTogether: [],
  };
  const namespaces = Array.from({ length: concurrent }, (_, i) => `bench${i}`);
  for (let run = 0; run < runs; run++) {
    const runDir = join(base, `run${run}`);
    const started: (() => Promise<void>)[] = [];
    try {
      const berth = await startBerth(join(runDir, "berth"));
      started.push(() => berth.stop());
      await waitUntilIdle(berth.pid);
      samples.berth.push(timed(...berthctl(berth.address, ["pull", "--plain-http", ref])));
      const berthWarm = await startBerth(join(runDir, "berth-kept"), {}, ["--keep-processes"]);
      started.push(() => berthWarm.stop());
      await waitUntilIdle(berthWarm.pid);
      samples.berthWarm.push(timed(...berthctl(berthWarm.address, ["pull", "--plain-http", ref])));
      for (const stop of started.splice(0).reverse()) await stop();
      if (containerdInstalled()) {
        const containerd = await startContainerd(join(runDir, "containerd"));
        started.push(() => containerd.stop());
        await waitUntilIdle(containerd.pid);
        samples.containerd.push(timed("ctr", ["--address", containerd.address, "images", "pull", "--plain-http", ref]));
      }
      samples.skopeo.push(timed("skopeo", ["--policy", policy, "copy", "--src-tls-verify=false", `docker://${ref}`, `oci:${join(runDir, "oci")}:1`]));
      if (concurrent > 0) {
        for (const stop of started.splice(0).reverse()) await stop();
        const berthN = await startBerth(join(runDir, "berth-n"));
        started.push(() => berthN.stop());
        await waitUntilIdle(berthN.pid);
        samples.berthTogether.push(await timedTogether(namespaces.map((n) => berthctl(berthN.address, ["-n", n, "pull", "--plain-http", ref]))));
        if (containerdInstalled()) {
          const containerdN = await startContainerd(join(runDir, "containerd-n"));
          started.push(() => containerdN.stop());
          await waitUntilIdle(containerdN.pid);
          samples.containerdTogether.push(await timedTogether(namespaces.map((n) => ["ctr", ["--address", containerdN.address, "-n", n, "images", "pull", "--plain-http", ref]])));
        }
      }
    } finally {
      for (const stop of started.reverse()) await stop().catch(() => undefined);
      rmSync(runDir, { recursive: true, force: true });
    }
  }
  const berth = median(samples.berth);
  const cell = (xs: number[]) => (xs.length ? `${median(xs).toFixed(0)}` : "n/a");
  const ratio = (xs: number[], of = berth) => (xs.length ? `${(of / median(xs)).toFixed(2)}×` : "n/a");
  const report = [
    `# Cold pull and unpack (${new Date().toISOString()}, median of ${runs} runs)`,
    "",
    process.env.BENCH_LAYER_KIND === "gzip-files"
      ? `One image of ${layerMiB.length} gzip layers (${layerMiB.join(" + ")} MiB of files of 1–64 KiB, half random, half text; ${size.toFixed(1)} MiB of blobs in all) in a local docker-registry over plain HTTP.`
      : `One image of ${layerMiB.length} uncompressed layers (${layerMiB.join(" + ")} MiB of random files, ${size.toFixed(1)} MiB in all) in a local docker-registry over plain HTTP.`,
    "Fresh daemons per run, so every byte moves; each pulls once idle after its start. Berth and containerd fetch, store and unpack (overlayfs); skopeo only copies the blobs to an OCI directory.",
    "Wall ms of the client command (for Berth: berthctl, with the daemon's jobs doing the work).",
    "",
    "| berthctl pull | ctr images pull (containerd 1.6) | skopeo copy → OCI dir | Berth / containerd | Berth / skopeo |",
    "|---:|---:|---:|---:|---:|",
    `| ${cell(samples.berth)} | ${cell(samples.containerd)} | ${cell(samples.skopeo)} | ${ratio(samples.containerd)} | ${ratio(samples.skopeo)} |`,
    "",
    "The same pull from a fresh `berthd --keep-processes` (jobs, content, images, snapshots and diff started with it, not on demand), content as cold:",
    "",
    "| berthctl pull, --keep-processes | Berth / containerd | Berth / skopeo |",
    "|---:|---:|---:|",
    `| ${cell(samples.berthWarm)} | ${ratio(samples.containerd, median(samples.berthWarm))} | ${ratio(samples.skopeo, median(samples.berthWarm))} |`,
    "",
    ...(concurrent > 0
      ? [
          `${concurrent} pulls of the image at once, each into its own namespace (wall ms until the last one is done):`,
          "",
          "| berthctl pull ×" + concurrent + " | ctr images pull ×" + concurrent + " | Berth / containerd |",
          "|---:|---:|---:|",
          `| ${cell(samples.berthTogether)} | ${cell(samples.containerdTogether)} | ${samples.containerdTogether.length ? `${(median(samples.berthTogether) / median(samples.containerdTogether)).toFixed(2)}×` : "n/a"} |`,
          "",
          `Samples (ms): berth ×${concurrent} ${samples.berthTogether.map((x) => x.toFixed(0)).join(", ")}; containerd ×${concurrent} ${samples.containerdTogether.map((x) => x.toFixed(0)).join(", ")}.`,
          "",
        ]
      : []),
    `Samples (ms): berth ${samples.berth.map((x) => x.toFixed(0)).join(", ")}; berth --keep-processes ${samples.berthWarm.map((x) => x.toFixed(0)).join(", ")}; containerd ${samples.containerd.map((x) => x.toFixed(0)).join(", ")}; skopeo ${samples.skopeo.map((x) => x.toFixed(0)).join(", ")}. Load average at the end: ${(await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ")} (2 cores, shared).`,
    "",
  ].join("\n");
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "pull.md"), report);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(base, { recursive: true, force: true });
}
