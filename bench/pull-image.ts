// The generated image bench/pull.ts and bench/profile-pull.ts pull (BENCH_LAYER_KIND).
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { blobOf, imageFromLayers, tarOf, type ImageParts } from "../test/fixtures/archives.ts";
import { sha256Digest } from "../core/digest.ts";

/**
 * Layers of a few files of random bytes each (uncompressed tars: unpacking them is real
 * file writing); with BENCH_LAYER_KIND=gzip-files, gzip layers of many files of 1–64 KiB,
 * half random, half text, as real images hold (inflating and per-file work then count).
 */
export async function pullBenchImage(layerMiB: readonly number[], kind = ""): Promise<ImageParts> {
  if (kind === "gzip-files") {
    const tars = await Promise.all(
      layerMiB.map((mib, i) => {
        const text = Buffer.from(`layer ${i}: configuration text, scripts and docs compress well. `.repeat(1100));
        const files: { name: string; data: Buffer }[] = [];
        for (let bytes = 0, f = 0; bytes < mib * 1024 * 1024; f++) {
          const size = 1024 + ((f * 7919 + i) % (63 * 1024));
          files.push({ name: `layer${i}/d${f % 50}/f${f}`, data: f % 2 === 0 ? randomBytes(size) : text.subarray(0, size) });
          bytes += size;
        }
        return tarOf(files);
      }),
    );
    return imageFromLayers(tars.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar+gzip", gzipSync(t))), tars.map((t) => sha256Digest(t)));
  }
  const tars = await Promise.all(
    layerMiB.map((mib, i) => tarOf(Array.from({ length: 4 }, (_, f) => ({ name: `layer${i}/file${f}.bin`, data: randomBytes((mib / 4) * 1024 * 1024) })))),
  );
  return imageFromLayers(tars.map((t) => blobOf("application/vnd.oci.image.layer.v1.tar", t)), tars.map((t) => sha256Digest(t)));
}

