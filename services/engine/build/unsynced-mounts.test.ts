import { test } from "node:test";
import assert from "node:assert/strict";
import { unsynced, volatileSupported } from "./unsynced-mounts.ts";

test("volatile is known from Linux 5.10 on", () => {
  assert.equal(volatileSupported("6.18.44-fc-v595"), true);
  assert.equal(volatileSupported("5.10.0-28-amd64"), true);
  assert.equal(volatileSupported("5.4.0-150-generic"), false);
  assert.equal(volatileSupported("4.19.0"), false);
  assert.equal(volatileSupported("not-a-version"), false);
});

test("only overlay mounts get volatile, once, and only where the kernel has it", () => {
  const overlay = { type: "overlay", source: "overlay", target: "", options: ["lowerdir=/a", "upperdir=/b", "workdir=/c"] };
  const bind = { type: "bind", source: "/d", target: "", options: ["rbind", "rw"] };
  assert.deepEqual(unsynced([overlay, bind], "6.1.0"), [{ ...overlay, options: [...overlay.options, "volatile"] }, bind]);
  assert.deepEqual(unsynced(unsynced([overlay], "6.1.0"), "6.1.0")[0]!.options.filter((o) => o === "volatile"), ["volatile"]);
  assert.deepEqual(unsynced([overlay, bind], "5.4.0"), [overlay, bind]);
  assert.deepEqual(overlay.options, ["lowerdir=/a", "upperdir=/b", "workdir=/c"]);
});
