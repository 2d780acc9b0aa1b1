// Unpack alone, in one process: the JS applier (core/tar/layer.ts) against the native one
// (native applyLayer), on the same gzip layer from a file, into fresh dirs: one layer,
// then BENCH_LAYERS (default 4) different layers at once. Wall ms and this process's CPU
// ms (all threads), median of BENCH_RUNS (default 3). The layer: BENCH_FILES (default
// 4000) files of 1–64 KiB, half random bytes, half compressible text (about 130 MiB of
// tar per layer), in 40 dirs.
// Run: npm exec -- node bench/layer-apply.ts
import { spawnSync } from "node:child_process";
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { encodeHeader, endOfArchive, padding } from "../core/tar/writer.ts";
import { unpackLayer } from "../core/tar/layer.ts";
import * as native from "../native/index.ts";
import { median } from "./measure.ts";

const runs = Number(process.env.BENCH_RUNS ?? 3);
const together = Number(process.env.BENCH_LAYERS ?? 4);
const fileCount = Number(process.env.BENCH_FILES ?? 4000);

function makeLayer(seed: number): Buffer {
  const parts: Buffer[] = [];
  const text = Buffer.from(`layer ${seed}: some compressible configuration text, as images carry a lot of. `.repeat(1200));
  for (let i = 0; i < fileCount; i++) {
    const size = 1024 + ((i * 7919 + seed) % (63 * 1024));
    const data = i % 2 === 0 ? randomBytes(size) : text.subarray(0, size);
    parts.push(encodeHeader({ name: `d${i % 40}/f${i}`, type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, size }), data, padding(size));
  }
  return Buffer.concat([...parts, endOfArchive]);
}

type Applier = (blob: string, root: string) => Promise<unknown>;
const appliers: Record<"js" | "native", Applier> = {
  js: (blob, root) => unpackLayer(createReadStream(blob, { highWaterMark: 256 * 1024 }), "gzip", { root, whiteouts: "overlay", sys: native, what: "layer" }),
  native: async (blob, root) => {
    const result = await native.applyLayer({ blob, compression: "gzip", root, whiteouts: "overlay", lowers: [] });
    if (result.error) throw new Error(result.error.message);
  },
};

const base = mkdtempSync(join(tmpdir(), "berth-bench-layer-apply-"));
try {
  const blobs = Array.from({ length: together }, (_, i) => {
    const tar = makeLayer(i);
    const file = join(base, `layer${i}.tar.gz`);
    writeFileSync(file, gzipSync(tar));
    return { file, tarMiB: tar.length / 1024 / 1024 };
  });
  let dirs = 0;
  const fresh = () => {
    const dir = join(base, `root${dirs++}`);
    mkdirSync(dir);
    return dir;
  };
  const measure = async (fn: () => Promise<unknown>) => {
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    await fn();
    const wall = Number(process.hrtime.bigint() - started) / 1e6;
    const used = process.cpuUsage(cpu);
    return { wall, cpu: (used.user + used.system) / 1000 };
  };
  const samples = { js: { one: { wall: [] as number[], cpu: [] as number[] }, many: { wall: [] as number[], cpu: [] as number[] } }, native: { one: { wall: [] as number[], cpu: [] as number[] }, many: { wall: [] as number[], cpu: [] as number[] } } };
  const record = (into: { wall: number[]; cpu: number[] }, m: { wall: number; cpu: number }) => {
    into.wall.push(m.wall);
    into.cpu.push(m.cpu);
  };
  // Alternating, each measurement after sync(1) and with the previous trees removed: the
  // dirty pages one leaves behind must not throttle the writes of the next.
  const settle = () => {
    for (let i = 0; i < dirs; i++) rmSync(join(base, `root${i}`), { recursive: true, force: true });
    spawnSync("sync");
  };
  for (let run = 0; run < runs; run++) {
    for (const name of (run % 2 === 0 ? ["js", "native"] : ["native", "js"]) as ("js" | "native")[]) {
      const apply = appliers[name];
      settle();
      record(samples[name].one, await measure(() => apply(blobs[0]!.file, fresh())));
      settle();
      record(samples[name].many, await measure(() => Promise.all(blobs.map((blob) => apply(blob.file, fresh())))));
    }
  }
  settle();
  const rows = (["js", "native"] as const).map((name) => {
    const { one, many } = samples[name];
    return `| ${name} | ${median(one.wall).toFixed(0)} | ${median(one.cpu).toFixed(0)} | ${median(many.wall).toFixed(0)} | ${median(many.cpu).toFixed(0)} |`;
  });
  const loadavg = (await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ");
  process.stdout.write(
    [
      `Unpack of a gzip layer (${fileCount} files, ${blobs[0]!.tarMiB.toFixed(0)} MiB of tar), median of ${runs}; ${together} different layers at once in the second pair of columns.`,
      "",
      `| applier | 1 layer wall ms | 1 layer CPU ms | ${together} layers wall ms | ${together} layers CPU ms |`,
      "|---|---:|---:|---:|---:|",
      ...rows,
      "",
      `Load average at the end: ${loadavg}.`,
      "",
    ].join("\n"),
  );
} finally {
  rmSync(base, { recursive: true, force: true });
}
