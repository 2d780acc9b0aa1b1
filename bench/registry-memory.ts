// Does a pull stream? One-layer images of growing size pulled into berthd by the
// registry client in this process; the peak RSS growth over the pull should not grow
// with the layer (a client that buffered a layer would grow by its size).
// Run: npm exec -- node --expose-gc bench/registry-memory.ts (BENCH_SIZES_MIB=32,128,512)
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, repoRoot } from "../test/harness.ts";
import { TestRegistry } from "../test/fixtures/registry.ts";
import { imageFromLayers } from "../test/fixtures/archives.ts";
import { RegistryClient, parseRegistryReference, pullImage, pushBlob, pushManifest } from "../core/registry/index.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { closeChannels } from "../core/grpc-client.ts";

const sizesMiB = (process.env.BENCH_SIZES_MIB ?? "32,128,512").split(",").map(Number);
const base = mkdtempSync(join(tmpdir(), "berth-bench-registry-memory-"));
const registry = await TestRegistry.start(join(base, "registry"));
const daemon = await startDaemon({ base: join(base, "berth") });
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
const lines = [
  `# Registry pull memory (${new Date().toISOString()}): one random layer per image, pulled by this process into berthd`,
  "",
  "| layer MiB | pull ms | RSS before MiB | peak RSS during the pull MiB | growth MiB |",
  "|---:|---:|---:|---:|---:|",
];
try {
  for (const [i, size] of sizesMiB.entries()) {
    const ref = parseRegistryReference(`${registry.host}/memory/image${i}:1`);
    {
      // The same random 8 MiB piece repeated, uploaded as it is made: the bench never holds a whole layer either.
      const uploader = new RegistryClient({ certsDir: "/nonexistent" });
      const piece = randomBytes(8 * 1024 * 1024);
      const pieces = size / 8;
      const hash = createHash("sha256");
      for (let p = 0; p < pieces; p++) hash.update(piece);
      const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${hash.digest("hex")}`, size: pieces * piece.length };
      await pushBlob(uploader, ref, layer, (async function* () {
        for (let p = 0; p < pieces; p++) yield piece;
      })());
      const img = imageFromLayers([{ ...layer, data: Buffer.alloc(0) }], [layer.digest]);
      await pushBlob(uploader, ref, img.config, (async function* () { yield img.config.data; })());
      await pushManifest(uploader, ref, "1", img.manifest, img.manifest.data);
      await uploader.close();
    }
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    const started = Date.now();
    const client = new RegistryClient({ certsDir: "/nonexistent" });
    await pullImage(client, connectImageServices(daemon.address, `image${i}`), ref);
    const ms = Date.now() - started;
    clearInterval(sampler);
    await client.close();
    lines.push(`| ${size} | ${ms} | ${mib(before)} | ${mib(peak)} | ${mib(peak - before)} |`);
  }
  const report = lines.join("\n") + "\n";
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", "registry-memory.md"), report);
} finally {
  closeChannels();
  await daemon.destroy();
  await registry.stop();
  rmSync(base, { recursive: true, force: true });
}
