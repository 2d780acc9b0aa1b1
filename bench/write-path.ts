// The CPU a client process spends writing blobs into the content service (the jobs
// process's side of a pull): 200 MiB in 64 KiB chunks (as HTTP bodies arrive) through
// writeBlob, measured with process.cpuUsage and GC time; N blobs one after the other.
// Run: node bench/write-path.ts   (BENCH_RUNS=3, BENCH_MIB=200)
import { randomBytes, createHash } from "node:crypto";
import { PerformanceObserver } from "node:perf_hooks";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon } from "../test/harness.ts";
import { grpcClient, closeChannels, inNamespace } from "../core/grpc-client.ts";
import { BulkContentDefinition } from "../core/content-codec.ts";
import { writeBlob } from "../core/content-client.ts";

const runs = Number(process.env.BENCH_RUNS ?? 3);
const mib = Number(process.env.BENCH_MIB ?? 200);
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ["gc"] });

const base = mkdtempSync(join(tmpdir(), "berth-write-path-"));
const d = await startDaemon({ base });
try {
  const content = grpcClient(BulkContentDefinition, d.address);
  const chunk = 64 * 1024;
  for (let run = 0; run < runs; run++) {
    const data = randomBytes(mib * 1024 * 1024);
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    async function* source() {
      for (let at = 0; at < data.length; at += chunk) yield Buffer.from(data.subarray(at, at + chunk));
    }
    gcMs = 0;
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    await writeBlob(content, source(), { ref: `bench-${run}`, expected: digest, total: data.length }, inNamespace("default"));
    const used = process.cpuUsage(cpu);
    process.stdout.write(`run ${run}: ${(performance.now() - t0).toFixed(0)} ms wall, client CPU ${((used.user + used.system) / 1000).toFixed(0)} ms, GC ${gcMs.toFixed(0)} ms\n`);
  }
} finally {
  closeChannels();
  await d.destroy();
  rmSync(base, { recursive: true, force: true });
}
