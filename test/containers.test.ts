// Container records through the real ctr and a gRPC client against a real berthd:
// create from an image (the snapshot prepared on the image's layers), ls, info, label
// updates, filters, events, the record as a garbage-collection root, and bad input.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Status } from "nice-grpc";
import { startDaemon, grpcError, ok, tableRows, type Daemon } from "./harness.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { skopeoArchives } from "./fixtures/archives.ts";
import { closeChannels, grpcClient, inNamespace } from "../core/grpc-client.ts";
import { ContainersDefinition, type Container } from "../core/gen/containerd/services/containers/v1/containers.ts";

const image = "docker.io/library/busybox:latest";
let d: Daemon;
let workdir: string;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-containers-"));
  d = await startDaemon();
  ok(d.ctr(["images", "import", skopeoArchives(workdir, await buildBusyboxImage()).dockerArchive]), "import busybox");
});

after(async () => {
  closeChannels();
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

const containers = () => grpcClient(ContainersDefinition, d.address);
const spec = { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Buffer.from('{"ociVersion":"1.0.2"}') };
const record = (id: string, extra: Partial<Container> = {}): Partial<Container> => ({
  id,
  image,
  runtime: { name: "io.containerd.runc.v2", options: undefined },
  spec,
  labels: {},
  extensions: {},
  snapshotter: "",
  snapshotKey: "",
  ...extra,
});

describe("containers through ctr", () => {
  test("create from an image, ls and info show it, the snapshot is its rootfs", () => {
    ok(d.ctr(["containers", "create", image, "c1", "echo", "hi"]), "containers create");
    const rows = tableRows(ok(d.ctr(["containers", "ls"]), "containers ls").stdout);
    assert.deepEqual(rows, [["c1", image, "io.containerd.runc.v2"]]);
    const info = JSON.parse(ok(d.ctr(["containers", "info", "c1"]), "containers info").stdout) as {
      ID: string;
      Image: string;
      Snapshotter: string;
      SnapshotKey: string;
      Spec: { process: { args: string[] } };
      Labels: Record<string, string>;
    };
    assert.equal(info.ID, "c1");
    assert.equal(info.Snapshotter, "overlayfs");
    assert.equal(info.SnapshotKey, "c1");
    assert.deepEqual(info.Spec.process.args, ["echo", "hi"]);
    assert.ok(info.Labels["io.containerd.image.config.stop-signal"], "the image's stop signal label");
    assert.ok(tableRows(ok(d.ctr(["snapshots", "ls"]), "snapshots ls").stdout).some((r) => r[0] === "c1" && r[2] === "Active"));
  });

  test("a container keeps its snapshot and image content through a collection", () => {
    const lease = ok(d.ctr(["leases", "create"]), "lease").stdout.trim();
    ok(d.ctr(["leases", "rm", "--sync", lease]), "leases rm --sync");
    assert.ok(tableRows(ok(d.ctr(["snapshots", "ls"]), "snapshots ls").stdout).some((r) => r[0] === "c1"));
  });

  test("a duplicate id is refused with ALREADY_EXISTS", () => {
    const r = d.ctr(["containers", "create", image, "c1"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already exists/);
  });
});

describe("containers through gRPC", () => {
  test("Create, Get, Update (labels, image, extensions), List with filters, ListStream, Delete", async () => {
    const ns = inNamespace("grpc");
    const created = (await containers().create({ container: record("g1", { labels: { team: "a" } }) }, ns)).container!;
    assert.ok(created.createdAt && created.updatedAt);
    await containers().create({ container: record("g2", { labels: { team: "b" } }) }, ns);

    const updated = await containers().update(
      { container: record("g1", { labels: { team: "", tier: "web" }, image: "other:1" }), updateMask: ["labels.team", "labels.tier", "image"] },
      ns,
    );
    assert.deepEqual(updated.container!.labels, { tier: "web" });
    assert.equal(updated.container!.image, "other:1");
    assert.equal((await containers().get({ id: "g1" }, ns)).container!.image, "other:1");

    const byLabel = await containers().list({ filters: ["labels.team==b"] }, ns);
    assert.deepEqual(byLabel.containers.map((c) => c.id), ["g2"]);
    const byRuntime = await containers().list({ filters: ["runtime.name==io.containerd.runc.v2"] }, ns);
    assert.deepEqual(byRuntime.containers.map((c) => c.id), ["g1", "g2"]);
    const streamed: string[] = [];
    for await (const m of containers().listStream({ filters: [] }, ns)) streamed.push(m.container!.id);
    assert.deepEqual(streamed, ["g1", "g2"]);

    await containers().delete({ id: "g1" }, ns);
    assert.equal((await grpcError(containers().get({ id: "g1" }, ns))).code, Status.NOT_FOUND);
    await containers().delete({ id: "g2" }, ns);
    ok(d.ctr(["namespaces", "rm", "grpc"]), "the namespace is empty again");
  });

  test("bad input: INVALID_ARGUMENT or NOT_FOUND naming the problem, nothing stored", async () => {
    const ns = inNamespace("bad");
    const cases: [Partial<Container>, RegExp][] = [
      [record("bad id!"), /container id/],
      [record("nort", { runtime: { name: "", options: undefined } }), /runtime name/],
      [record("nospec", { spec: undefined }), /Spec must be set/],
      [record("nosnapshotter", { snapshotKey: "k" }), /snapshotter must be set/],
    ];
    for (const [container, message] of cases) {
      const err = await grpcError(containers().create({ container }, ns));
      assert.equal(err.code, Status.INVALID_ARGUMENT, container.id);
      assert.match(err.details, message);
    }
    assert.deepEqual((await containers().list({ filters: [] }, ns)).containers, []);
    await containers().create({ container: record("ok1") }, ns);
    const immutable = await grpcError(containers().update({ container: record("ok1", { runtime: { name: "other", options: undefined } }), updateMask: [] }, ns));
    assert.equal(immutable.code, Status.INVALID_ARGUMENT);
    const badPath = await grpcError(containers().update({ container: record("ok1"), updateMask: ["createdat"] }, ns));
    assert.equal(badPath.code, Status.INVALID_ARGUMENT);
    assert.match(badPath.details, /cannot update "createdat" field/);
    const missing = await grpcError(containers().get({ id: "nope" }, ns));
    assert.equal(missing.code, Status.NOT_FOUND);
    assert.match(missing.details, /container "nope" in namespace "bad": not found/);
    assert.equal((await grpcError(containers().delete({ id: "nope" }, ns))).code, Status.NOT_FOUND);
    await containers().delete({ id: "ok1" }, ns);
  });
});
