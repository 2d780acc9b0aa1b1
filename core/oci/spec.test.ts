// The generated OCI spec and the image-to-process rules, on their own (test/tasks.test.ts
// and the Engine API tests run containers from it with the real runc).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { containerSpec, defaultCapabilities, mergeEnv, processFromImage } from "./spec.ts";
import { resolveUser } from "./user.ts";

test("a container gets its own namespaces, a cgroup of its own and the default capabilities", () => {
  const spec = containerSpec({ namespace: "ns1", id: "c1", args: ["sh"] });
  assert.deepEqual(spec.linux.namespaces.map((n) => n.type), ["pid", "ipc", "uts", "mount", "network"]);
  assert.equal(spec.linux.cgroupsPath, "/ns1/c1");
  assert.deepEqual(spec.process.capabilities.bounding, [...defaultCapabilities]);
  assert.ok(spec.process.env[0]!.startsWith("PATH="));
  assert.ok(spec.linux.maskedPaths.includes("/proc/kcore"));
  assert.equal(spec.hostname, "c1");
});

test("host networking drops the network namespace and binds the host's resolver files", () => {
  const spec = containerSpec({ namespace: "n", id: "c", args: ["true"], network: { kind: "host" } });
  assert.ok(!spec.linux.namespaces.some((n) => n.type === "network"));
  assert.ok(spec.mounts.some((m) => m.destination === "/etc/resolv.conf" && m.source === "/etc/resolv.conf"));
});

test("a caller's mount replaces the default at the same destination; cap add and drop apply", () => {
  const spec = containerSpec({
    namespace: "n",
    id: "c",
    args: ["true"],
    mounts: [{ destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["size=1m"] }],
    capAdd: ["net_admin"],
    capDrop: ["CAP_CHOWN", "kill"],
  });
  assert.equal(spec.mounts.filter((m) => m.destination === "/dev/shm").length, 1);
  assert.deepEqual(spec.mounts.find((m) => m.destination === "/dev/shm")!.options, ["size=1m"]);
  const caps = spec.process.capabilities.effective;
  assert.ok(caps.includes("CAP_NET_ADMIN") && !caps.includes("CAP_CHOWN") && !caps.includes("CAP_KILL"));
});

test("an empty command is refused", () => {
  assert.throws(() => containerSpec({ namespace: "n", id: "c", args: [] }), /needs a command/);
});

test("process from image: entrypoint + cmd, a given entrypoint drops the image's cmd, env merged by name", () => {
  const image = { Entrypoint: ["/entry"], Cmd: ["a", "b"], Env: ["PATH=/bin", "A=1"], WorkingDir: "/w", User: "nobody" };
  assert.deepEqual(processFromImage(image).args, ["/entry", "a", "b"]);
  assert.deepEqual(processFromImage(image, { cmd: ["c"] }).args, ["/entry", "c"]);
  assert.deepEqual(processFromImage(image, { entrypoint: ["/other"] }).args, ["/other"]);
  const p = processFromImage(image, { env: ["A=2", "B=3"], workingDir: "/x", user: "0" });
  assert.deepEqual(p.env, ["PATH=/bin", "A=2", "B=3"]);
  assert.equal(p.cwd, "/x");
  assert.equal(p.user, "0");
  assert.deepEqual(mergeEnv(["X=1"], ["X=2", "Y"]), ["X=2", "Y"]);
});

test("users resolve from the rootfs's passwd and group files; unknown names are an error", () => {
  const root = mkdtempSync(join(tmpdir(), "berth-oci-user-"));
  try {
    mkdirSync(join(root, "etc"));
    writeFileSync(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n");
    writeFileSync(join(root, "etc", "group"), "root:x:0:\nwww:x:33:\nextra:x:50:www\n");
    assert.deepEqual(resolveUser("", root), { uid: 0, gid: 0 });
    assert.deepEqual(resolveUser("www", root), { uid: 33, gid: 33, additionalGids: [50] });
    assert.deepEqual(resolveUser("1000:1000", root), { uid: 1000, gid: 1000 });
    assert.deepEqual(resolveUser("www:extra", root), { uid: 33, gid: 50 });
    assert.throws(() => resolveUser("nosuch", root), /unable to find user nosuch/);
    assert.throws(() => resolveUser("www:nogroup", root), /unable to find group nogroup/);
    // A passwd that is a symlink could point out of the rootfs: it is not read.
    rmSync(join(root, "etc", "passwd"));
    symlinkSync("/etc/passwd", join(root, "etc", "passwd"));
    assert.throws(() => resolveUser("root", root), /unable to find user root/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
