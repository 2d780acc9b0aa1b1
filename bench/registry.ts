// Registry pull and push, side by side against one local docker-registry: Berth's
// client (scripts/registry.ts into berthd), the real ctr fetching into containerd and
// into Berth (`ctr content fetch`, no unpack, like our pull), and skopeo copying to
// an OCI directory. Pushes go to an empty registry (nothing to mount from): Berth
// from berthd's content store, skopeo from the OCI directory. Fresh
// daemons and registries per run; median wall time, and the client's peak RSS (GNU time).
// Run: npm exec -- node bench/registry.ts (BENCH_RUNS=3); results in bench/results/registry.md.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerdInstalled, startBerth, startContainerd, type RunningDaemon } from "./daemons.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { blobOf, imageFromLayers, type ImageParts } from "../test/fixtures/archives.ts";
import { TestRegistry } from "../test/fixtures/registry.ts";
import { repoRoot } from "../test/harness.ts";
import { RegistryClient, parseRegistryReference, pushBlob, pushManifest } from "../core/registry/index.ts";
import { median } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 3);
const script = join(repoRoot, "scripts", "registry.ts");

interface Sample {
  ms: number;
  rssMiB: number;
  /** What scripts/registry.ts reports for the pull or push itself (without Node's start-up). */
  innerMs?: number;
}

/** Runs a command under GNU time; wall ms and the peak RSS of the command (and its children). */
function timed(cmd: string, args: string[]): Sample {
  const started = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", cmd, ...args], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed:\n${r.stderr}`);
  const kib = Number(r.stderr.trim().split("\n").at(-1));
  const inner = /\((\d+\.\d+) s\)\s*$/.exec(r.stdout);
  return { ms, rssMiB: kib / 1024, ...(inner ? { innerMs: Number(inner[1]) * 1000 } : {}) };
}


function summary(samples: Sample[]): string {
  const inner = samples.every((s) => s.innerMs !== undefined) ? ` (${median(samples.map((s) => s.innerMs!)).toFixed(0)})` : "";
  return `${median(samples.map((s) => s.ms)).toFixed(0)}${inner} / ${median(samples.map((s) => s.rssMiB)).toFixed(0)}`;
}

async function upload(registry: string, repository: string, image: ImageParts): Promise<void> {
  const client = new RegistryClient({ certsDir: "/nonexistent" });
  const ref = parseRegistryReference(`${registry}/${repository}:1`);
  for (const b of [image.config, ...image.layers]) await pushBlob(client, ref, b, (async function* () { yield b.data; })());
  await pushManifest(client, ref, "1", image.manifest, image.manifest.data);
  await client.close();
}

function syntheticImage(): ImageParts {
  const layers = [0, 1, 2].map(() => blobOf("application/vnd.oci.image.layer.v1.tar", randomBytes(64 * 1024 * 1024)));
  return imageFromLayers(layers, layers.map((l) => l.digest));
}

const base = mkdtempSync(join(tmpdir(), "berth-bench-registry-"));
const stops: (() => Promise<void>)[] = [];
try {
  const source = await TestRegistry.start(join(base, "registry"));
  stops.push(() => source.stop());
  const images: [string, ImageParts][] = [["busybox", await buildBusyboxImage()], ["synthetic 3 × 64 MiB", syntheticImage()]];
  for (const [i, [, image]] of images.entries()) await upload(source.host, `bench/image${i}`, image);

  const lines = [
    `# Registry pull and push (${new Date().toISOString()}, median of ${runs} runs)`,
    "",
    "Every run starts fresh daemons and a fresh push registry, so every byte moves (no shared store, no mounts).",
    "Pull = manifest, config and layers into the content store (no unpack); push = the pulled image to the empty registry.",
    "Cells: wall ms (for the Berth client also the time the operation itself took, without Node start-up) / client peak RSS MiB.",
    "",
    "| image | Berth client → berthd | ctr → berthd | ctr → containerd | skopeo → OCI dir | Berth push | skopeo push |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  const policy = join(base, "policy.json");
  writeFileSync(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  for (const [i, [name, image]] of images.entries()) {
    const ref = `${source.host}/bench/image${i}:1`;
    const size = image.blobs.reduce((n, b) => n + b.size, 0) / 1024 / 1024;
    const samples: Record<string, Sample[]> = { berthPull: [], ctrBerth: [], ctrContainerd: [], skopeoPull: [], berthPush: [], skopeoPush: [] };
    for (let run = 0; run < runs; run++) {
      const runDir = join(base, `image${i}-run${run}`);
      const started: (() => Promise<void>)[] = [];
      try {
        const berth: RunningDaemon = await startBerth(join(runDir, "berth"));
        started.push(() => berth.stop());
        samples.berthPull!.push(timed(process.execPath, [script, "pull", "--address", berth.address, ref]));
        const berth2: RunningDaemon = await startBerth(join(runDir, "berth-ctr"));
        started.push(() => berth2.stop());
        samples.ctrBerth!.push(timed("ctr", ["--address", berth2.address, "content", "fetch", "--plain-http", ref]));
        if (containerdInstalled()) {
          const containerd = await startContainerd(join(runDir, "containerd"));
          started.push(() => containerd.stop());
          samples.ctrContainerd!.push(timed("ctr", ["--address", containerd.address, "content", "fetch", "--plain-http", ref]));
        }
        const dir = join(runDir, "oci");
        samples.skopeoPull!.push(timed("skopeo", ["--policy", policy, "copy", "--src-tls-verify=false", `docker://${ref}`, `oci:${dir}:1`]));
        const pushTarget = await TestRegistry.start(join(runDir, "push-registry"));
        started.push(() => pushTarget.stop());
        samples.berthPush!.push(timed(process.execPath, [script, "push", "--address", berth.address, ref, `${pushTarget.host}/berth/image:1`]));
        const skopeoTarget = await TestRegistry.start(join(runDir, "push-registry-skopeo"));
        started.push(() => skopeoTarget.stop());
        samples.skopeoPush!.push(timed("skopeo", ["--policy", policy, "copy", "--dest-tls-verify=false", `oci:${dir}:1`, `docker://${skopeoTarget.host}/skopeo/image:1`]));
      } finally {
        for (const stop of started.reverse()) await stop().catch(() => undefined);
        rmSync(runDir, { recursive: true, force: true });
      }
    }
    const cell = (key: string) => (samples[key]!.length ? summary(samples[key]!) : "n/a");
    lines.push(`| ${name} (${size.toFixed(1)} MiB) | ${cell("berthPull")} | ${cell("ctrBerth")} | ${cell("ctrContainerd")} | ${cell("skopeoPull")} | ${cell("berthPush")} | ${cell("skopeoPush")} |`);
  }
  const report = lines.join("\n") + "\n";
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "registry.md"), report);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(base, { recursive: true, force: true });
}
