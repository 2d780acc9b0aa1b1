import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDigest, digestHex, sha256Digest } from "./digest.ts";
import { validateIdentifier } from "./identifiers.ts";
import { applyLabelMask, validateLabels } from "./labels.ts";
import { BerthError } from "./errors.ts";

const invalid = (err: unknown) => err instanceof BerthError && err.kind === "invalid argument";

test("digests: only sha256:<64 hex> passes", () => {
  const good = sha256Digest("x");
  assert.equal(parseDigest(good), good);
  assert.equal(digestHex(good).length, 64);
  for (const bad of ["", "sha256:", "sha256:ABC", `sha256:${"a".repeat(63)}`, `md5:${"a".repeat(64)}`, `sha256:../../${"a".repeat(58)}`]) {
    assert.throws(() => parseDigest(bad), invalid, bad);
  }
});

test("identifiers follow containerd's rule", () => {
  for (const ok of ["default", "k8s.io", "a-b_c.d", "A1"]) assert.equal(validateIdentifier(ok), ok);
  for (const bad of ["", "-a", "a-", "a..b", "a/b", "x".repeat(77), "a b"]) assert.throws(() => validateIdentifier(bad), invalid, bad);
});

test("labels: key+value over 4096 bytes is refused", () => {
  assert.doesNotThrow(() => validateLabels({ k: "v".repeat(4095) }));
  assert.throws(() => validateLabels({ k: "v".repeat(4096) }), invalid);
  assert.throws(() => validateLabels({ "": "v" }), invalid);
});

test("labels: all of an object's labels over 256 KiB together are refused", () => {
  const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i).padStart(4, "0")}`, "v".repeat(4091)]));
  assert.doesNotThrow(() => validateLabels(labels(64)), "64 labels of 4096 bytes: exactly 256 KiB");
  assert.throws(() => validateLabels(labels(65)), (err: unknown) => invalid(err) && /labels total 266240 bytes/.test((err as Error).message));
});

test("label masks set, replace and delete keys", () => {
  const current = { a: "1", b: "2" };
  assert.deepEqual(applyLabelMask(current, { a: "9" }, ["labels.a"]), { a: "9", b: "2" });
  assert.deepEqual(applyLabelMask(current, {}, ["labels.b"]), { a: "1" });
  assert.deepEqual(applyLabelMask(current, { c: "3" }, ["labels"]), { c: "3" });
  assert.deepEqual(applyLabelMask(current, { "x.y/z": "1" }, ["labels.x.y/z"]), { a: "1", b: "2", "x.y/z": "1" });
});
