// Docker's reference rules as the engine applies them: normalization for the store,
// familiar names for display, and Docker's 400 wording for invalid references.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EngineError } from "./http.ts";
import { familiarName, familiarRef, imageIdPrefix, joinRepoTag, normalizeImageRef, normalizeRepository, splitStoreName } from "./references.ts";

test("short names normalize to docker.io/library with :latest", () => {
  assert.equal(normalizeImageRef("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeImageRef("busybox:1.36"), "docker.io/library/busybox:1.36");
  assert.equal(normalizeImageRef("user/app"), "docker.io/user/app:latest");
  assert.equal(normalizeImageRef("localhost:5000/x"), "localhost:5000/x:latest");
  assert.equal(normalizeImageRef("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
  assert.equal(normalizeImageRef("localhost/bb"), "localhost/bb:latest");
  const digest = `sha256:${"a".repeat(64)}`;
  assert.equal(normalizeImageRef(`busybox@${digest}`), `docker.io/library/busybox@${digest}`);
  assert.equal(normalizeImageRef(`busybox:1@${digest}`), `docker.io/library/busybox@${digest}`);
});

test("store names are shown in their familiar form", () => {
  assert.equal(familiarRef("docker.io/library/busybox:latest"), "busybox:latest");
  assert.equal(familiarRef("docker.io/user/app:2"), "user/app:2");
  assert.equal(familiarRef("127.0.0.1:5000/bb:1"), "127.0.0.1:5000/bb:1");
  assert.equal(familiarName("docker.io/library/a/b"), "library/a/b");
  assert.equal(familiarRef(`docker.io/library/busybox@sha256:${"b".repeat(64)}`), `busybox@sha256:${"b".repeat(64)}`);
});

test("store names that are not Docker references are left alone", () => {
  assert.equal(splitStoreName("busybox:latest"), undefined);
  assert.equal(splitStoreName("docker.io/library/busybox"), undefined);
  assert.deepEqual(splitStoreName("127.0.0.1:5000/bb:1"), { repository: "127.0.0.1:5000/bb", tag: "1" });
});

test("repo and tag given apart are joined", () => {
  assert.equal(joinRepoTag("busybox", "musl"), "docker.io/library/busybox:musl");
  assert.equal(joinRepoTag("127.0.0.1:5000/bb", ""), "127.0.0.1:5000/bb:latest");
  assert.equal(joinRepoTag("busybox:1", null), "docker.io/library/busybox:1");
  assert.equal(normalizeRepository("bb"), "docker.io/library/bb");
  assert.throws(() => joinRepoTag("busybox", "bad tag"), (err: EngineError) => err.status === 400 && err.message === "invalid tag format");
});

test("invalid references are 400s with Docker's wording", () => {
  const check = (ref: string, message: string) =>
    assert.throws(
      () => normalizeImageRef(ref),
      (err: unknown) => err instanceof EngineError && err.status === 400 && err.message === message,
      ref,
    );
  check("Busybox", "invalid reference format: repository name must be lowercase");
  check("busy box", "invalid reference format");
  check("", "invalid reference format");
  check("a:b:c", "invalid reference format");
  check("a".repeat(64), `invalid repository name (${"a".repeat(64)}), cannot specify 64-byte hexadecimal strings`);
  assert.throws(() => normalizeRepository("bb:1"), (err: EngineError) => err.status === 400);
});

test("image ID prefixes", () => {
  assert.equal(imageIdPrefix("966fb68f"), "sha256:966fb68f");
  assert.equal(imageIdPrefix("sha256:966f"), "sha256:966f");
  assert.equal(imageIdPrefix("busybox"), undefined);
});
