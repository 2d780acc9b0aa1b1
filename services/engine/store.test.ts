// EngineStore.listShared: records parsed once and shared, yet never stale.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineStore, initialState, type ContainerRecord } from "./store.ts";

function record(id: string, name: string, created: string): ContainerRecord {
  return {
    Id: id, Name: name, Created: created, Path: "sleep", Args: ["1"], Config: { Image: "busybox", Labels: { a: "1" } }, HostConfig: {},
    Image: "sha256:00", State: initialState(), RestartCount: 0, LogPath: "/dev/null",
  } as ContainerRecord;
}

test("listShared: newest first, frozen, the same objects while unchanged, fresh ones after an update, none after a delete", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-engine-store-"));
  const store = new EngineStore(dir);
  try {
    store.insert(record("a".repeat(64), "/old", "2026-01-01T00:00:00.000000000Z"));
    store.insert(record("b".repeat(64), "/new", "2026-01-02T00:00:00.000000000Z"));
    const first = store.listShared();
    assert.deepEqual(first.map((r) => r.Name), ["/new", "/old"]);
    assert.ok(Object.isFrozen(first[0]) && Object.isFrozen(first[0]!.State) && Object.isFrozen(first[0]!.Config.Labels));
    assert.throws(() => {
      (first[0]!.State as { Running: boolean }).Running = true;
    }, TypeError);
    const again = store.listShared();
    assert.equal(again[0], first[0]);
    assert.equal(again[1], first[1]);

    const changed = store.get("a".repeat(64))!;
    changed.State = { ...changed.State, Running: true, Status: "running" };
    changed.Name = "/renamed";
    store.update(changed);
    const after = store.listShared();
    assert.equal(after[0], first[0], "the unchanged record is still shared");
    assert.notEqual(after[1], first[1]);
    assert.equal(after[1]!.Name, "/renamed");
    assert.equal(after[1]!.State.Running, true);
    // list() still hands out private copies that callers may change
    const own = store.list()[1]!;
    own.Name = "/mine";
    assert.equal(store.listShared()[1]!.Name, "/renamed");

    store.delete("b".repeat(64));
    assert.deepEqual(store.listShared().map((r) => r.Id), ["a".repeat(64)]);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
