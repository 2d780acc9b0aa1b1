// The images service end to end: records made through nice-grpc (via the gateway),
// listed, tagged and removed by the real ctr; every bad input refused with the right
// code and nothing changed; events, namespace bookkeeping and restarts.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Metadata, Status } from "nice-grpc";
import { startDaemon, grpcError, sleep, tableRows, type Daemon } from "./harness.ts";
import { closeChannels, grpcClient, inNamespace } from "../core/grpc-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { ImagesDefinition, type Image } from "../core/gen/containerd/services/images/v1/images.ts";
import { ImageCreate, ImageDelete, ImageUpdate } from "../core/gen/containerd/services/images/v1/events.ts";
import { EventsDefinition, type Envelope } from "../core/gen/containerd/services/events/v1/events.ts";
import type { DeepPartial } from "../core/gen/containerd/services/images/v1/images.ts";
import { ociManifestType, tinyImage, type Blob } from "./fixtures/archives.ts";

let d: Daemon;
const image = tinyImage("one");

const images = () => grpcClient(ImagesDefinition, d.address);
const inDefault = () => inNamespace("default");

function target(b: Blob = image.manifest) {
  return { mediaType: b.mediaType, digest: b.digest, size: BigInt(b.size) };
}

async function create(name: string, labels: Record<string, string> = {}, namespace = "default"): Promise<Image> {
  const { image: created } = await images().create({ image: { name, labels, target: target() } }, inNamespace(namespace));
  return created!;
}

const names = async (namespace = "default", filters: string[] = []) =>
  (await images().list({ filters }, inNamespace(namespace))).images.map((i) => i.name);

before(async () => {
  d = await startDaemon();
  for (const b of image.blobs) {
    const r = d.ctr(["content", "ingest", `ingest-${b.digest.slice(7, 19)}`], b.data);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  closeChannels();
  await d?.destroy();
});

describe("images with the real ctr", () => {
  test("an image created over gRPC is listed by ctr images ls with size and platform read from content", async () => {
    const created = await create("docker.io/library/tiny:1");
    assert.equal(created.name, "docker.io/library/tiny:1");
    assert.deepEqual(created.target, { ...target(), annotations: {} });
    assert.ok(created.createdAt && created.createdAt.seconds > 0n, "created_at is set by the server");
    assert.deepEqual(created.updatedAt, created.createdAt);

    const r = d.ctr(["images", "ls"]);
    assert.equal(r.code, 0, r.stderr);
    const header = r.stdout.split("\n")[0]!.trim().split(/\s+/);
    assert.deepEqual(header, ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]);
    const total = image.manifest.size + image.config.size + image.layer.size;
    const size = total < 1024 ? `${total.toFixed(1)} B` : `${(total / 1024).toFixed(1)} KiB`;
    assert.deepEqual(tableRows(r.stdout), [
      ["docker.io/library/tiny:1", ociManifestType, image.manifest.digest, ...size.split(" "), "linux/amd64", "-"],
    ]);
    assert.equal(r.stderr, "", "ctr found every blob it walked");

    const quiet = d.ctr(["images", "ls", "-q"]);
    assert.equal(quiet.stdout, "docker.io/library/tiny:1\n");
  });

  test("ctr images tag creates the second name; an existing one needs --force", async () => {
    const tagged = d.ctr(["images", "tag", "docker.io/library/tiny:1", "tiny:copy"]);
    assert.equal(tagged.code, 0, tagged.stderr);
    assert.equal(tagged.stdout, "tiny:copy\n");
    const { image: copy } = await images().get({ name: "tiny:copy" }, inDefault());
    assert.deepEqual(copy?.target, { ...target(), annotations: {} });
    assert.deepEqual(await names(), ["docker.io/library/tiny:1", "tiny:copy"]);

    const again = d.ctr(["images", "tag", "docker.io/library/tiny:1", "tiny:copy"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /image "tiny:copy": already exists/);

    await images().update({ image: { name: "tiny:copy", labels: { marker: "old" } }, updateMask: ["labels.marker"] }, inDefault());
    const forced = d.ctr(["images", "tag", "--force", "docker.io/library/tiny:1", "tiny:copy"]);
    assert.equal(forced.code, 0, forced.stderr);
    const { image: retagged } = await images().get({ name: "tiny:copy" }, inDefault());
    assert.deepEqual(retagged?.labels, {}, "--force replaced the old record (Delete + Create)");
  });

  test("ctr images rm removes; removing a missing image warns and exits 0", async () => {
    const r = d.ctr(["images", "rm", "tiny:copy"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "tiny:copy\n");
    assert.deepEqual(await names(), ["docker.io/library/tiny:1"]);
    const code = (await grpcError(images().get({ name: "tiny:copy" }, inDefault()))).code;
    assert.equal(code, Status.NOT_FOUND);

    const missing = d.ctr(["images", "rm", "--sync", "no-such:image"]);
    assert.equal(missing.code, 0, missing.stderr);
    assert.equal(missing.stdout, "");
    assert.match(missing.stderr, /no-such:image: image not found/);
  });

  test("ctr images label sets and clears labels through Update masks", async () => {
    const set = d.ctr(["images", "label", "docker.io/library/tiny:1", "a=1", "b.c/d=2"]);
    assert.equal(set.code, 0, set.stderr);
    const { image: labelled } = await images().get({ name: "docker.io/library/tiny:1" }, inDefault());
    assert.deepEqual(labelled?.labels, { a: "1", "b.c/d": "2" });
    const cleared = d.ctr(["images", "label", "docker.io/library/tiny:1", "a="]);
    assert.equal(cleared.code, 0, cleared.stderr);
    const { image: after } = await images().get({ name: "docker.io/library/tiny:1" }, inDefault());
    assert.deepEqual(after?.labels, { "b.c/d": "2" });
    assert.deepEqual(after?.createdAt, labelled?.createdAt, "created_at survives updates");
  });
});

describe("Images over gRPC", () => {
  test("Update: masks change only the named fields, an empty mask replaces all, created_at is kept", async () => {
    const base = await create("update:1", { keep: "k", drop: "d" });
    await sleep(5);
    const other = tinyImage("other").manifest;
    const { image: masked } = await images().update(
      { image: { name: "update:1", labels: { drop: "", add: "a" }, target: target(other) }, updateMask: ["labels.drop", "labels.add"] },
      inDefault(),
    );
    assert.deepEqual(masked?.labels, { keep: "k", add: "a" });
    assert.equal(masked?.target?.digest, image.manifest.digest, "target is not in the mask");
    assert.deepEqual(masked?.createdAt, base.createdAt);
    assert.ok(masked!.updatedAt!.seconds * 1_000_000_000n + BigInt(masked!.updatedAt!.nanos) > base.createdAt!.seconds * 1_000_000_000n + BigInt(base.createdAt!.nanos));

    const { image: retargeted } = await images().update({ image: { name: "update:1", target: target(other) }, updateMask: ["target"] }, inDefault());
    assert.equal(retargeted?.target?.digest, other.digest);
    assert.deepEqual(retargeted?.labels, { keep: "k", add: "a" });

    const { image: replaced } = await images().update({ image: { name: "update:1", labels: { only: "this" }, target: target() } }, inDefault());
    assert.deepEqual(replaced?.labels, { only: "this" });
    assert.equal(replaced?.target?.digest, image.manifest.digest);
    assert.deepEqual(replaced?.createdAt, base.createdAt);

    const { image: all } = await images().update({ image: { name: "update:1", labels: { x: "y" } }, updateMask: ["labels"] }, inDefault());
    assert.deepEqual(all?.labels, { x: "y" });
    await images().delete({ name: "update:1" }, inDefault());
  });

  test("List filters on name, target.digest, target.mediatype and labels", async () => {
    await create("filter:a", { tier: "gold", "org.example/role": "web" });
    await create("filter:b", { tier: "silver" });
    try {
      assert.deepEqual(await names("default", ["name==filter:a"]), ["filter:a"]);
      assert.deepEqual(await names("default", ["name~=^filter:"]), ["filter:a", "filter:b"]);
      assert.deepEqual(await names("default", ["labels.tier==silver"]), ["filter:b"]);
      assert.deepEqual(await names("default", ['labels."org.example/role"==web']), ["filter:a"]);
      assert.deepEqual(await names("default", ["labels.tier", "name==docker.io/library/tiny:1"]), ["docker.io/library/tiny:1", "filter:a", "filter:b"]);
      assert.deepEqual(await names("default", ["name~=^filter:,labels.tier!=gold"]), ["filter:b"]);
      assert.deepEqual((await names("default", [`target.digest==${image.manifest.digest}`])).length, 3);
      assert.deepEqual(await names("default", [`target.digest==${sha256Digest("nothing")}`]), []);
      assert.deepEqual((await names("default", [`target.mediatype==${ociManifestType}`])).length, 3);
      const r = d.ctr(["images", "ls", "-q", "labels.tier==gold"]);
      assert.equal(r.stdout, "filter:a\n");
    } finally {
      await images().delete({ name: "filter:a" }, inDefault());
      await images().delete({ name: "filter:b" }, inDefault());
    }
  });

  test("images live per namespace; Create makes the namespace; ns rm waits until it holds no image", async () => {
    await create("scoped:1", {}, "imgscope");
    assert.deepEqual(await names("imgscope"), ["scoped:1"]);
    assert.ok(!(await names()).includes("scoped:1"), "not visible in default");
    assert.equal((await grpcError(images().get({ name: "scoped:1" }, inDefault()))).code, Status.NOT_FOUND);

    const ls = d.ctr(["namespaces", "ls", "-q"]);
    assert.ok(ls.stdout.split("\n").includes("imgscope"), `implicitly created namespace listed:\n${ls.stdout}`);

    const refused = d.ctr(["namespaces", "rm", "imgscope"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /image/);
    assert.deepEqual(await names("imgscope"), ["scoped:1"]);

    assert.equal(d.ctr(["images", "rm", "scoped:1"], undefined, "imgscope").code, 0);
    const removed = d.ctr(["namespaces", "rm", "imgscope"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!d.ctr(["namespaces", "ls", "-q"]).stdout.split("\n").includes("imgscope"));

    // The deleted namespace comes back with the next write in it.
    await create("scoped:2", {}, "imgscope");
    assert.ok(d.ctr(["namespaces", "ls", "-q"]).stdout.split("\n").includes("imgscope"));
    await images().delete({ name: "scoped:2" }, inNamespace("imgscope"));
  });

  test("Create, Update and Delete publish /images/* events with the images.v1 type URLs", async () => {
    const events = grpcClient(EventsDefinition, d.address);
    const abort = new AbortController();
    const seen: Envelope[] = [];
    const done = (async () => {
      try {
        for await (const envelope of events.subscribe({ filters: [] }, { signal: abort.signal })) {
          if (!envelope.topic.startsWith("/images/")) continue;
          seen.push(envelope);
          if (seen.length === 3) break;
        }
      } catch (err) {
        if ((err as Error).name !== "AbortError") throw err;
      }
    })();
    await sleep(300); // let the subscription reach the metadata service
    await create("events:1", { e: "1" });
    await images().update({ image: { name: "events:1", labels: { e: "2" } }, updateMask: ["labels.e"] }, inDefault());
    await images().delete({ name: "events:1" }, inDefault());
    const timer = setTimeout(() => abort.abort(), 10_000);
    await done;
    clearTimeout(timer);

    assert.deepEqual(
      seen.map((e) => [e.namespace, e.topic, e.event?.typeUrl]),
      [
        ["default", "/images/create", "containerd.services.images.v1.ImageCreate"],
        ["default", "/images/update", "containerd.services.images.v1.ImageUpdate"],
        ["default", "/images/delete", "containerd.services.images.v1.ImageDelete"],
      ],
    );
    assert.deepEqual(ImageCreate.decode(seen[0]!.event!.value), { name: "events:1", labels: { e: "1" } });
    assert.deepEqual(ImageUpdate.decode(seen[1]!.event!.value), { name: "events:1", labels: { e: "2" } });
    assert.deepEqual(ImageDelete.decode(seen[2]!.event!.value), { name: "events:1" });
  });
});

describe("bad input is refused and changes nothing", () => {
  const cases: Array<[string, () => Promise<unknown>, Status, RegExp]> = [
    ["Create with an invalid digest", () => images().create({ image: { name: "bad:1", target: { ...target(), digest: "sha256:xyz" } } }, inDefault()), Status.INVALID_ARGUMENT, /invalid digest "sha256:xyz"/],
    ["Create with an upper-case digest", () => images().create({ image: { name: "bad:1", target: { ...target(), digest: image.manifest.digest.toUpperCase() } } }, inDefault()), Status.INVALID_ARGUMENT, /invalid digest/],
    ["Create with size zero", () => images().create({ image: { name: "bad:1", target: { ...target(), size: 0n } } }, inDefault()), Status.INVALID_ARGUMENT, /size must be greater than zero/],
    ["Create with a negative size", () => images().create({ image: { name: "bad:1", target: { ...target(), size: -5n } } }, inDefault()), Status.INVALID_ARGUMENT, /size must be greater than zero/],
    ["Create without a media type", () => images().create({ image: { name: "bad:1", target: { ...target(), mediaType: "" } } }, inDefault()), Status.INVALID_ARGUMENT, /media type must be set/],
    ["Create without a target", () => images().create({ image: { name: "bad:1" } }, inDefault()), Status.INVALID_ARGUMENT, /invalid digest/],
    ["Create with an empty name", () => images().create({ image: { name: "", target: target() } }, inDefault()), Status.INVALID_ARGUMENT, /name must not be empty/],
    ["Create without an image", () => images().create({}, inDefault()), Status.INVALID_ARGUMENT, /name must not be empty/],
    ["Create with an oversized label", () => images().create({ image: { name: "bad:1", labels: { big: "x".repeat(4094) }, target: target() } }, inDefault()), Status.INVALID_ARGUMENT, /greater than maximum size/],
    ["Create with an empty label key", () => images().create({ image: { name: "bad:1", labels: { "": "v" }, target: target() } }, inDefault()), Status.INVALID_ARGUMENT, /label key must not be empty/],
    ["Create of an existing name", () => images().create({ image: { name: "docker.io/library/tiny:1", target: target() } }, inDefault()), Status.ALREADY_EXISTS, /^image "docker.io\/library\/tiny:1": already exists$/],
    ["Update of a missing name", () => images().update({ image: { name: "missing:1", target: target() } }, inDefault()), Status.NOT_FOUND, /^image "missing:1": not found$/],
    ["Update with an unknown mask path", () => images().update({ image: { name: "docker.io/library/tiny:1" }, updateMask: ["labels.ok", "createdat"] }, inDefault()), Status.INVALID_ARGUMENT, /"createdat"/],
    ["Update with name as a mask path", () => images().update({ image: { name: "docker.io/library/tiny:1" }, updateMask: ["name"] }, inDefault()), Status.INVALID_ARGUMENT, /cannot update "name" field/],
    ["Update of the target to an invalid one", () => images().update({ image: { name: "docker.io/library/tiny:1", target: { ...target(), size: 0n } }, updateMask: ["target"] }, inDefault()), Status.INVALID_ARGUMENT, /size must be greater than zero/],
    ["Update with an oversized label", () => images().update({ image: { name: "docker.io/library/tiny:1", labels: { k: "v".repeat(5000) } }, updateMask: ["labels.k"] }, inDefault()), Status.INVALID_ARGUMENT, /greater than maximum size/],
    ["Update without a mask and without a target", () => images().update({ image: { name: "docker.io/library/tiny:1", labels: { a: "b" } } }, inDefault()), Status.INVALID_ARGUMENT, /invalid digest/],
    ["Update with an empty name", () => images().update({ image: { name: "" }, updateMask: ["labels.a"] }, inDefault()), Status.INVALID_ARGUMENT, /name is required/],
    ["Delete of a missing name", () => images().delete({ name: "missing:1" }, inDefault()), Status.NOT_FOUND, /^image "missing:1": not found$/],
    ["Get of a missing name", () => images().get({ name: "missing:1" }, inDefault()), Status.NOT_FOUND, /^image "missing:1": not found$/],
    ["List with a malformed filter", () => images().list({ filters: ["name=="] }, inDefault()), Status.INVALID_ARGUMENT, /filter/],
    ["a call without a namespace", () => images().list({}, { metadata: Metadata() }), Status.FAILED_PRECONDITION, /namespace is required/],
    ["a call in an invalid namespace", () => images().create({ image: { name: "bad:1", target: target() } }, inNamespace("bad namespace!")), Status.INVALID_ARGUMENT, /namespace/],
  ];

  for (const [what, call, code, message] of cases) {
    test(what, async () => {
      const before = await images().list({}, inDefault());
      const err = await grpcError(call());
      assert.equal(Status[err.code], Status[code], err.details);
      assert.match(err.details, message);
      const after = await images().list({}, inDefault());
      assert.deepEqual(after, before, "the store is unchanged");
    });
  }
});

describe("persistence", () => {
  test("records survive a daemon restart and a killed images service", async () => {
    const beforeRestart = await images().list({}, inDefault());
    assert.ok(beforeRestart.images.length > 0);
    await d.stop();
    await d.start();
    closeChannels(); // new connections to the restarted daemon
    const afterRestart = await images().list({}, inDefault());
    assert.deepEqual(afterRestart, beforeRestart);

    const pid = d.servicePid("images");
    assert.ok(pid, "images service runs");
    process.kill(pid, "SIGKILL");
    await d.waitForRestart("images", pid);
    const update: DeepPartial<Image> = { name: "docker.io/library/tiny:1", labels: { after: "kill" } };
    await images().update({ image: update, updateMask: ["labels.after"] }, inDefault());
    const { image: got } = await images().get({ name: "docker.io/library/tiny:1" }, inDefault());
    assert.equal(got?.labels.after, "kill");
    assert.deepEqual(got?.createdAt, beforeRestart.images.find((i) => i.name === "docker.io/library/tiny:1")?.createdAt);
  });
});
