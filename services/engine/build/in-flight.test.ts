import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger } from "../../../core/log.ts";
import { InFlightRecord, type BuildProgress } from "./in-flight.ts";

/** The record's store as a queue of writes the test lets finish (or fail) one by one. */
function heldStore() {
  const writes: { state: BuildProgress; finish: () => void; fail: (err: Error) => void }[] = [];
  const save = (state: BuildProgress) =>
    new Promise<void>((resolve, reject) => {
      writes.push({ state, finish: resolve, fail: reject });
    });
  return { writes, save };
}

const settled = (p: Promise<unknown>) => p.then(() => "stored", (err: Error) => `failed: ${err.message}`);
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("a build's in-flight record", () => {
  test("changes made while a write is under way go out together in the next write, which holds the latest state", async () => {
    const store = heldStore();
    const record = new InFlightRecord(store.save, createLogger("test"));
    const first = settled(record.addLease("lease-1"));
    await turn();
    assert.equal(store.writes.length, 1);
    record.step("Step 2/3 : COPY a /a");
    const snapshot = settled(record.addSnapshot("overlayfs", "build-copy-1"));
    record.step("Step 3/3 : RUN true");
    await turn();
    assert.equal(store.writes.length, 1, "nothing else goes out while the first write is under way");
    store.writes[0]!.finish();
    assert.equal(await first, "stored");
    await turn();
    assert.equal(store.writes.length, 2, "the three changes made meanwhile: one write");
    assert.deepEqual(store.writes[1]!.state, { step: "Step 3/3 : RUN true", inFlight: { containers: [], snapshots: [{ snapshotter: "overlayfs", key: "build-copy-1" }], leases: ["lease-1"] } });
    let resolved = false;
    void snapshot.then(() => (resolved = true));
    await turn();
    assert.equal(resolved, false, "the snapshot's caller waits until a write holding it is stored");
    store.writes[1]!.finish();
    assert.equal(await snapshot, "stored");
    await record.flush();
    assert.deepEqual(store.writes.at(-1)!.state, record.current);
  });

  test("a change after a write started needs a write of its own; a failed write fails its callers, not the next", async () => {
    const store = heldStore();
    const record = new InFlightRecord(store.save, createLogger("test"));
    const lease = settled(record.addLease("lease-1"));
    await turn();
    const snapshot = settled(record.addSnapshot("overlayfs", "build-run-1"));
    store.writes[0]!.fail(new Error("redis went away"));
    assert.equal(await lease, "failed: redis went away");
    await turn();
    assert.equal(store.writes.length, 2);
    assert.deepEqual(store.writes[1]!.state.inFlight.snapshots, [{ snapshotter: "overlayfs", key: "build-run-1" }]);
    store.writes[1]!.finish();
    assert.equal(await snapshot, "stored");
    record.dropSnapshot("overlayfs", "build-run-1");
    await turn();
    store.writes[2]!.finish();
    await record.flush();
    assert.deepEqual(store.writes.map((w) => w.state.inFlight.snapshots.length), [0, 1, 0]);
  });
});
