import { test } from "node:test";
import assert from "node:assert/strict";
import { parentView } from "./step-layer.ts";

test("a step's parent view is its overlay's lower dirs, read-only; nothing for other mounts", () => {
  const overlay = (lowers: string) => ({ type: "overlay", source: "overlay", target: "", options: ["index=off", `lowerdir=${lowers}`, "upperdir=/s/9/fs", "workdir=/s/9/work", "volatile"] });
  assert.deepEqual(parentView([overlay("/s/2/fs:/s/1/fs")]), [{ type: "overlay", source: "overlay", target: "", options: ["ro", "lowerdir=/s/2/fs:/s/1/fs"] }]);
  assert.deepEqual(parentView([overlay("/s/1/fs")]), [{ type: "bind", source: "/s/1/fs", target: "", options: ["ro", "rbind"] }]);
  // No upper dir (a view), a bind (a snapshot without parent), several mounts: the caller asks the snapshotter instead.
  assert.equal(parentView([{ type: "overlay", source: "overlay", target: "", options: ["lowerdir=/a:/b"] }]), undefined);
  assert.equal(parentView([{ type: "bind", source: "/s/1/fs", target: "", options: ["rw", "rbind"] }]), undefined);
  assert.equal(parentView([overlay("/a:/b"), overlay("/c:/d")]), undefined);
  assert.equal(parentView([]), undefined);
});
