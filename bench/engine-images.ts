// The engine's image commands through the real docker CLI against one berthd on a temp
// root: `docker images` with 50 tags, `image inspect`, `load`, `save`, and a push and pull
// of busybox through a docker-registry on loopback. Each row is the median wall time of
// BENCH_RUNS runs (default 11), the docker CLI's own start-up included.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { TestRegistry } from "../test/fixtures/registry.ts";
import { startDaemon } from "../test/harness.ts";
import { median } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 11);

const base = mkdtempSync(join(tmpdir(), "berth-bench-engine-images-"));
const d = await startDaemon();
const registry = await TestRegistry.start(join(base, "registry"));
const env = { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") };

function docker(args: string[]): number {
  const started = process.hrtime.bigint();
  const r = spawnSync("docker", args, { env, encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`docker ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return ms;
}

function timed(label: string, before: (() => void) | undefined, args: string[]): void {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    times.push(docker(args));
  }
  console.log(`${label.padEnd(36)} ${median(times).toFixed(1).padStart(8)} ms`);
}

try {
  const archive = skopeoArchives(join(base, "bb"), await buildBusyboxImage()).dockerArchive;
  const saved = join(base, "saved.tar");
  docker(["load", "-i", archive]);
  for (let i = 0; i < 50; i++) docker(["tag", "busybox", `bench/tag:${i}`]);
  console.log(`load average at start: ${loadavg()[0]!.toFixed(2)}; ${runs} runs per row`);
  timed("docker images (51 tags)", undefined, ["images"]);
  timed("docker image inspect busybox", undefined, ["image", "inspect", "busybox"]);
  timed("docker load -i busybox (2 MB)", undefined, ["load", "-i", archive]);
  timed("docker save -o busybox", undefined, ["save", "-o", saved, "busybox"]);
  const ref = `${registry.host}/bench/bb:1`;
  docker(["tag", "busybox", ref]);
  timed("docker push (layer already there)", undefined, ["push", ref]);
  timed("docker pull (image up to date)", undefined, ["pull", ref]);
  // A pull that stores a new name for content the store has (the tag removed before each run).
  timed("docker pull (after rmi of the tag)", () => docker(["rmi", ref]), ["pull", ref]);
} finally {
  await registry.stop();
  await d.destroy();
  rmSync(base, { recursive: true, force: true });
}
