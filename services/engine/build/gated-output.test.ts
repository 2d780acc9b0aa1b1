import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GatedOutput } from "./gated-output.ts";

/** A promise and its resolve/reject, to settle a gate when the test says so. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("gated build output", () => {
  test("lines after a gate wait for it, in order, and later gates wait for earlier ones", async () => {
    const written: string[] = [];
    const out = new GatedOutput<string>((line) => written.push(line));
    out.push("Step 1");
    const first = deferred();
    const second = deferred();
    out.gate(first.promise);
    out.push(" ---> a");
    out.push("Step 2");
    out.gate(second.promise);
    out.push(" ---> b");
    assert.deepEqual(written, ["Step 1"]);
    second.resolve();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(written, ["Step 1"], "the second gate's lines wait for the first gate");
    first.resolve();
    await out.idle();
    assert.deepEqual(written, ["Step 1", " ---> a", "Step 2", " ---> b"]);
    out.push("Step 3");
    assert.deepEqual(written.at(-1), "Step 3", "with no gate pending a line is written at once");
  });

  test("a failed gate drops the lines behind it and is the error idle() and failed report", async () => {
    const written: string[] = [];
    const out = new GatedOutput<string>((line) => written.push(line));
    const gate = deferred();
    out.gate(gate.promise);
    out.push(" ---> a");
    gate.reject(new Error("content write failed"));
    await assert.rejects(out.idle(), /content write failed/);
    assert.match(String((out.failed?.error as Error).message), /content write failed/);
    out.push("Step 2");
    assert.deepEqual(written, [], "nothing is shown for steps whose parent was not stored");
  });
});
