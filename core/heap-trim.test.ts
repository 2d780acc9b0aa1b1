// trimHeap() against this very process: memory a burst took and dropped (V8 objects,
// and buffers glibc allocated between chunks that stay) goes back to the system.
import { spawn } from "node:child_process";
import { test } from "node:test";
import assert from "node:assert/strict";
import { processMemory } from "../bench/proc-memory.ts";
import { createLogger } from "./log.ts";
import { trimHeap } from "./heap-trim.ts";

const ussMiB = () => processMemory(process.pid, "self").ussKiB / 1024;

test("trimHeap returns dropped V8 objects and freed malloc memory to the system", () => {
  let objects: { n: number; s: string }[] | undefined = [];
  for (let i = 0; i < 1_000_000; i++) objects.push({ n: i, s: `object ${i}` });
  // 48 KiB buffers come from glibc's heap (below its mmap threshold); every 64th stays,
  // so the freed ones lie between live chunks and glibc cannot return them by itself.
  let buffers: Buffer[] | undefined = [];
  for (let i = 0; i < 3000; i++) buffers.push(Buffer.alloc(48 * 1024, i));
  const kept = buffers.filter((_, i) => i % 64 === 0);
  const grown = ussMiB();
  objects = undefined;
  buffers = undefined;
  trimHeap(createLogger("heap-trim-test"));
  const trimmed = ussMiB();
  assert.ok(grown - trimmed > 200, `USS ${grown.toFixed(0)} MiB before the trim, ${trimmed.toFixed(0)} MiB after`);
  assert.equal(kept.length, 47, "the live buffers are untouched");
  assert.equal(kept[1]![0], 64);
});

test("a process trims once it is idle after start-up, without any later work", async () => {
  // A child that starts the idle check and then does nothing: its start-up alone must
  // lead to one trim (its log line), long before the child gives up.
  const child = `
    import { trimHeapWhenIdle } from ${JSON.stringify(new URL("./heap-trim.ts", import.meta.url).pathname)};
    const log = { debug: (fields, msg) => { process.stdout.write(JSON.stringify({ ...fields, msg }) + "\\n"); process.exit(0); } };
    trimHeapWhenIdle(log);
    setTimeout(() => process.exit(3), 30_000);
  `;
  const result = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
    const proc = spawn(process.execPath, ["--input-type=module", "-e", child], { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    proc.stdout.on("data", (d) => (stdout += d));
    proc.on("error", reject);
    proc.on("close", (code) => resolve({ code, stdout })); // after its output has ended too
  });
  assert.equal(result.code, 0, "the child never trimmed while idle after its start");
  assert.match(result.stdout, /heap trimmed/);
});
