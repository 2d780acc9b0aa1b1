// The metadata service end to end: namespaces, leases and events through the real
// ctr and through nice-grpc clients, against a real berthd (its Redis included).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { Status, type CompatServiceDefinition } from "nice-grpc";
import { startDaemon, closeFreshChannels, freshClient, grpcError, sleep, tableRows, type Daemon, type RunResult } from "./harness.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { NamespacesDefinition } from "../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { LeasesDefinition } from "../core/gen/containerd/services/leases/v1/leases.ts";
import { EventsDefinition, type Envelope } from "../core/gen/containerd/services/events/v1/events.ts";
import { NamespaceCreate } from "../core/gen/containerd/events/namespace.ts";

let d: Daemon;

const ctr = (args: string[], namespace = "default", input?: string | Buffer): RunResult => d.ctr(args, input, namespace);

const client = <D extends CompatServiceDefinition>(definition: D) => freshClient(definition, d.address);

const ns = (namespace: string) => inNamespace(namespace);

const grpcCode = async (call: Promise<unknown>) => (await grpcError(call)).code;

const namespaceNames = async () => (await client(NamespacesDefinition).list({})).namespaces.map((n) => n.name);

before(async () => {
  d = await startDaemon();
});

after(async () => {
  closeFreshChannels();
  await d?.destroy();
});

describe("namespaces through ctr", () => {
  test("create with labels, list, refuse a duplicate, remove", () => {
    const created = ctr(["namespaces", "create", "n1", "a=b"]);
    assert.equal(created.code, 0, created.stderr);

    const listed = ctr(["ns", "ls"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(tableRows(listed.stdout).find((r) => r[0] === "n1"), ["n1", "a=b"]);

    const duplicate = ctr(["namespaces", "create", "n1"]);
    assert.notEqual(duplicate.code, 0);
    assert.match(duplicate.stderr, /namespace "n1": already exists/);

    const removed = ctr(["ns", "rm", "n1"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!tableRows(ctr(["ns", "ls"]).stdout).some((r) => r[0] === "n1"), "n1 is gone");
  });

  test("removing a namespace that does not exist exits 0 (ctr ignores NOT_FOUND)", async () => {
    const removed = ctr(["ns", "rm", "never-made"]);
    assert.equal(removed.code, 0, removed.stderr);
    // …because the service really answered NOT_FOUND:
    assert.equal(await grpcCode(client(NamespacesDefinition).delete({ name: "never-made" })), Status.NOT_FOUND);
  });
});

describe("leases through ctr", () => {
  test("a lease creates its namespace implicitly, is listed and removed; a namespace holding only leases is removed with them", () => {
    const created = ctr(["leases", "create"], "x");
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    assert.match(id, /^\d+-[A-Za-z0-9_-]{4}$/, "containerd's generated id shape");

    assert.ok(tableRows(ctr(["ns", "ls"]).stdout).some((r) => r[0] === "x"), "namespace x exists implicitly");

    const listed = ctr(["leases", "ls"], "x");
    assert.equal(listed.code, 0, listed.stderr);
    const row = tableRows(listed.stdout).find((r) => r[0] === id);
    assert.ok(row, `lease ${id} listed:\n${listed.stdout}`);
    assert.match(row[2] ?? "", /^containerd\.io\/gc\.expire=/);
    // Leases are per namespace.
    assert.ok(!tableRows(ctr(["leases", "ls"], "default").stdout).some((r) => r[0] === id));

    const removed = ctr(["leases", "rm", id], "x");
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!tableRows(ctr(["leases", "ls"], "x").stdout).some((r) => r[0] === id), "lease gone");

    // containerd removes a namespace that holds only leases, and the leases with it.
    const second = ctr(["leases", "create"], "x");
    assert.equal(second.code, 0, second.stderr);
    const nsRemoved = ctr(["ns", "rm", "x"]);
    assert.equal(nsRemoved.code, 0, nsRemoved.stderr);
    assert.ok(!tableRows(ctr(["ns", "ls"]).stdout).some((r) => r[0] === "x"));
    assert.equal(tableRows(ctr(["leases", "ls"], "x").stdout).length, 0, "its leases went with it");
  });

  test("lease list filters on id and labels", async () => {
    const leases = client(LeasesDefinition);
    await leases.create({ id: "f-one", labels: { team: "a" } }, ns("lf"));
    await leases.create({ id: "f-two", labels: { team: "b" } }, ns("lf"));
    const byLabel = await leases.list({ filters: ["labels.team==b"] }, ns("lf"));
    assert.deepEqual(byLabel.leases.map((l) => l.id), ["f-two"]);
    const byId = await leases.list({ filters: ["id==f-one"] }, ns("lf"));
    assert.deepEqual(byId.leases.map((l) => l.id), ["f-one"]);
    assert.ok(byId.leases[0]!.createdAt!.seconds > 0n, "created_at is set");
    assert.equal(await grpcCode(leases.list({ filters: ["labels.team=="] }, ns("lf"))), Status.INVALID_ARGUMENT);
  });

  test("lease resources are added, listed and removed", async () => {
    const leases = client(LeasesDefinition);
    const digest = `sha256:${"a".repeat(64)}`;
    await leases.create({ id: "res", labels: {} }, ns("lr"));
    await leases.addResource({ id: "res", resource: { id: digest, type: "content" } }, ns("lr"));
    await leases.addResource({ id: "res", resource: { id: digest, type: "content" } }, ns("lr")); // idempotent
    await leases.addResource({ id: "res", resource: { id: "extract-1 sha256:x", type: "snapshots/overlayfs" } }, ns("lr"));
    await leases.addResource({ id: "res", resource: { id: "tar-blobs/sha256/ab", type: "ingests" } }, ns("lr"));
    const listed = await leases.listResources({ id: "res" }, ns("lr"));
    assert.deepEqual(listed.resources, [
      { id: digest, type: "content" },
      { id: "tar-blobs/sha256/ab", type: "ingests" },
      { id: "extract-1 sha256:x", type: "snapshots/overlayfs" },
    ]);
    await leases.deleteResource({ id: "res", resource: { id: digest, type: "content" } }, ns("lr"));
    const after = await leases.listResources({ id: "res" }, ns("lr"));
    assert.deepEqual(after.resources.map((r) => r.type), ["ingests", "snapshots/overlayfs"]);
  });
});

describe("namespace holders", () => {
  test("a namespace whose content still holds a blob cannot be removed", () => {
    const data = Buffer.from(`metadata test blob ${Date.now()}\n`);
    const ingested = ctr(["content", "ingest", "r1"], "y", data);
    assert.equal(ingested.code, 0, ingested.stderr);
    const listed = ctr(["content", "ls", "-q"], "y");
    const digest = listed.stdout.trim().split("\n")[0]!;
    assert.match(digest, /^sha256:[a-f0-9]{64}$/, listed.stdout + listed.stderr);

    const blocked = ctr(["ns", "rm", "y"]);
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.stderr, /namespace "y" must be empty, but it still has 1 blob: failed precondition/);

    const removedBlob = ctr(["content", "rm", digest], "y");
    assert.equal(removedBlob.code, 0, removedBlob.stderr);
    const removed = ctr(["ns", "rm", "y"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!tableRows(ctr(["ns", "ls"]).stdout).some((r) => r[0] === "y"));
  });
});

describe("events", () => {
  test("ctr events sees a namespace created by another ctr process", async () => {
    const events: ChildProcess = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    events.stdout!.on("data", (chunk) => (output += chunk));
    events.stderr!.on("data", (chunk) => (output += chunk));
    try {
      // The subscription goes live at an unknown moment: keep creating namespaces
      // until one of them is seen.
      let seen = false;
      for (let i = 0; i < 40 && !seen; i++) {
        const created = ctr(["ns", "create", `ev${i}`, "k=v"]);
        assert.equal(created.code, 0, created.stderr);
        await sleep(250);
        seen = new RegExp(`default /namespaces/create \\{"name":"ev\\d+","labels":\\{"k":"v"\\}\\}`).test(output);
      }
      assert.ok(seen, `ctr events output:\n${output}`);
    } finally {
      events.kill("SIGTERM");
    }
    // The delete event carries the deleted namespace as its envelope namespace.
    const names = (await namespaceNames()).filter((n) => /^ev\d+$/.test(n));
    for (const name of names) assert.equal(ctr(["ns", "rm", name]).code, 0);
  });

  test("Subscribe with a topic filter receives what another client publishes", async () => {
    const abort = new AbortController();
    const stream = client(EventsDefinition).subscribe({ filters: ['topic=="/namespaces/create"'] }, { signal: abort.signal });
    const received: Envelope[] = [];
    const reading = (async () => {
      for await (const envelope of stream) {
        received.push(envelope);
        if (received.length >= 1) break;
      }
    })().catch((err) => {
      if ((err as Error).name !== "AbortError") throw err;
    });
    const publisher = client(EventsDefinition);
    const value = Buffer.from(NamespaceCreate.encode({ name: "pub-ns", labels: { x: "y" } }).finish());
    for (let i = 0; i < 40 && received.length === 0; i++) {
      // The other topic must be filtered out.
      await publisher.publish({ topic: "/test/other", event: { typeUrl: "test.Other", value: Buffer.alloc(0) } }, ns("pubns"));
      await publisher.publish({ topic: "/namespaces/create", event: { typeUrl: "containerd.events.NamespaceCreate", value } }, ns("pubns"));
      await sleep(250);
    }
    abort.abort();
    await reading;
    assert.equal(received.length, 1, "an envelope arrived");
    const envelope = received[0]!;
    assert.equal(envelope.namespace, "pubns");
    assert.equal(envelope.topic, "/namespaces/create");
    assert.equal(envelope.event?.typeUrl, "containerd.events.NamespaceCreate");
    assert.deepEqual(NamespaceCreate.decode(envelope.event!.value), { name: "pub-ns", labels: { x: "y" } });
    assert.ok(envelope.timestamp!.seconds > 0n);
  });

  test("Subscribe with a namespace filter sees only that namespace; Forward keeps the envelope", async () => {
    const abort = new AbortController();
    const stream = client(EventsDefinition).subscribe({ filters: ["namespace==only-me"] }, { signal: abort.signal });
    const received: Envelope[] = [];
    const reading = (async () => {
      for await (const envelope of stream) received.push(envelope);
    })().catch((err) => {
      if ((err as Error).name !== "AbortError") throw err;
    });
    const events = client(EventsDefinition);
    const stamp = { seconds: 1_700_000_000n, nanos: 5 };
    for (let i = 0; i < 40 && received.length === 0; i++) {
      await events.publish({ topic: "/test/elsewhere", event: { typeUrl: "t.E", value: Buffer.from("no") } }, ns("someone-else"));
      await events.forward({ envelope: { timestamp: stamp, namespace: "only-me", topic: "/test/forwarded", event: { typeUrl: "t.F", value: Buffer.from("yes") } } });
      await sleep(250);
    }
    abort.abort();
    await reading;
    assert.ok(received.length >= 1, "forwarded envelope arrived");
    for (const envelope of received) {
      assert.equal(envelope.namespace, "only-me");
      assert.equal(envelope.topic, "/test/forwarded");
      assert.deepEqual(envelope.timestamp, stamp, "forward keeps the envelope's own timestamp");
      assert.equal(envelope.event?.value.toString(), "yes");
    }
  });
});

describe("bad input is refused and changes nothing", () => {
  test("namespace create: invalid name, oversized label", async () => {
    const namespaces = client(NamespacesDefinition);
    assert.equal(await grpcCode(namespaces.create({ namespace: { name: "bad name!", labels: {} } })), Status.INVALID_ARGUMENT);
    assert.equal(await grpcCode(namespaces.create({ namespace: { name: "", labels: {} } })), Status.INVALID_ARGUMENT);
    const big = { k: "v".repeat(5000) };
    assert.equal(await grpcCode(namespaces.create({ namespace: { name: "biglabel", labels: big } })), Status.INVALID_ARGUMENT);
    const names = await namespaceNames();
    assert.ok(!names.includes("bad name!") && !names.includes("biglabel"), names.join(","));
    // ctr reports the invalid name too.
    const viaCtr = ctr(["ns", "create", "bad..name"]);
    assert.notEqual(viaCtr.code, 0);
    assert.match(viaCtr.stderr, /invalid argument/);
  });

  test("namespace get of an unknown name is NOT_FOUND", async () => {
    assert.equal(await grpcCode(client(NamespacesDefinition).get({ name: "nobody-here" })), Status.NOT_FOUND);
  });

  test("namespace update: masks, unknown path, missing namespace, oversized label", async () => {
    const namespaces = client(NamespacesDefinition);
    await namespaces.create({ namespace: { name: "upd", labels: { keep: "1", drop: "2" } } });
    const masked = await namespaces.update({ namespace: { name: "upd", labels: { add: "3" } }, updateMask: ["labels.add", "labels.drop"] });
    assert.deepEqual(masked.namespace?.labels, { keep: "1", add: "3" });
    assert.deepEqual((await namespaces.get({ name: "upd" })).namespace?.labels, { keep: "1", add: "3" });

    assert.equal(await grpcCode(namespaces.update({ namespace: { name: "upd", labels: {} }, updateMask: ["name"] })), Status.INVALID_ARGUMENT);
    assert.equal(
      await grpcCode(namespaces.update({ namespace: { name: "upd", labels: { add: "x".repeat(5000) } }, updateMask: ["labels.add"] })),
      Status.INVALID_ARGUMENT,
    );
    assert.equal(await grpcCode(namespaces.update({ namespace: { name: "ghost", labels: {} }, updateMask: [] })), Status.NOT_FOUND);
    assert.deepEqual((await namespaces.get({ name: "upd" })).namespace?.labels, { keep: "1", add: "3" }, "unchanged");
    assert.ok(!(await namespaceNames()).includes("ghost"));

    const replaced = await namespaces.update({ namespace: { name: "upd", labels: { only: "this" } }, updateMask: [] });
    assert.deepEqual(replaced.namespace?.labels, { only: "this" });
  });

  test("namespace list: filter on name and labels; a bad filter is INVALID_ARGUMENT", async () => {
    const namespaces = client(NamespacesDefinition);
    await namespaces.create({ namespace: { name: "flt-a", labels: { tier: "gold" } } });
    await namespaces.create({ namespace: { name: "flt-b", labels: {} } });
    assert.deepEqual((await namespaces.list({ filter: "labels.tier==gold" })).namespaces.map((n) => n.name), ["flt-a"]);
    assert.deepEqual((await namespaces.list({ filter: "name~=^flt-" })).namespaces.map((n) => n.name), ["flt-a", "flt-b"]);
    assert.equal(await grpcCode(namespaces.list({ filter: "name==" })), Status.INVALID_ARGUMENT);
  });

  test("leases: duplicate id, missing lease, bad resources, oversized label, no namespace", async () => {
    const leases = client(LeasesDefinition);
    await leases.create({ id: "dup", labels: { n: "1" } }, ns("lb"));
    assert.equal(await grpcCode(leases.create({ id: "dup", labels: { n: "2" } }, ns("lb"))), Status.ALREADY_EXISTS);
    const listed = (await leases.list({ filters: [] }, ns("lb"))).leases;
    assert.deepEqual(listed.map((l) => [l.id, l.labels]), [["dup", { n: "1" }]], "the first lease is unchanged");

    const ok = { id: `sha256:${"b".repeat(64)}`, type: "content" };
    assert.equal(await grpcCode(leases.addResource({ id: "missing", resource: ok }, ns("lb"))), Status.NOT_FOUND);
    assert.equal(await grpcCode(leases.deleteResource({ id: "missing", resource: ok }, ns("lb"))), Status.NOT_FOUND);
    assert.equal(await grpcCode(leases.listResources({ id: "missing" }, ns("lb"))), Status.NOT_FOUND);
    assert.equal(await grpcCode(leases.delete({ id: "missing", sync: false }, ns("lb"))), Status.NOT_FOUND);
    for (const resource of [
      { id: "x", type: "bogus" },
      { id: "x", type: "snapshots" },
      { id: "x", type: "content/extra" },
      { id: "not-a-digest", type: "content" },
      { id: "", type: "ingests" },
    ]) {
      assert.equal(await grpcCode(leases.addResource({ id: "dup", resource }, ns("lb"))), Status.INVALID_ARGUMENT, JSON.stringify(resource));
    }
    assert.deepEqual((await leases.listResources({ id: "dup" }, ns("lb"))).resources, [], "no resource was added");

    assert.equal(await grpcCode(leases.create({ id: "big", labels: { k: "v".repeat(5000) } }, ns("lb"))), Status.INVALID_ARGUMENT);
    assert.equal(await grpcCode(leases.create({ id: "nons", labels: {} })), Status.FAILED_PRECONDITION);
    assert.deepEqual((await leases.list({ filters: [] }, ns("lb"))).leases.map((l) => l.id), ["dup"]);
  });

  test("events: bad topics, missing event, missing namespace, bad forwarded envelope", async () => {
    const events = client(EventsDefinition);
    const event = { typeUrl: "t.E", value: Buffer.alloc(0) };
    for (const topic of ["", "no-slash", "/", "/bad topic", "/a//b"]) {
      assert.equal(await grpcCode(events.publish({ topic, event }, ns("ev"))), Status.INVALID_ARGUMENT, topic);
    }
    assert.equal(await grpcCode(events.publish({ topic: "/ok" }, ns("ev"))), Status.INVALID_ARGUMENT);
    assert.equal(await grpcCode(events.publish({ topic: "/ok", event })), Status.FAILED_PRECONDITION);
    const stamp = { seconds: 1_700_000_000n, nanos: 0 };
    assert.equal(await grpcCode(events.forward({ envelope: { timestamp: stamp, namespace: "bad ns", topic: "/ok", event } })), Status.INVALID_ARGUMENT);
    assert.equal(await grpcCode(events.forward({ envelope: { timestamp: stamp, namespace: "ok", topic: "nope", event } })), Status.INVALID_ARGUMENT);
    assert.equal(await grpcCode(events.forward({ envelope: { namespace: "ok", topic: "/ok", event } })), Status.INVALID_ARGUMENT);
    // A subscription with an unparsable filter fails instead of streaming.
    const bad = events.subscribe({ filters: ["topic=="] });
    assert.equal(await grpcCode((async () => { for await (const _ of bad) break; })()), Status.INVALID_ARGUMENT);
  });
});

describe("persistence", () => {
  test("namespaces and leases with resources survive kill -9 of berthd", async () => {
    const digest = `sha256:${"c".repeat(64)}`;
    assert.equal(ctr(["ns", "create", "p1", "keep=yes"]).code, 0);
    const leases = client(LeasesDefinition);
    await leases.create({ id: "kept", labels: { why: "persistence" } }, ns("p1"));
    await leases.addResource({ id: "kept", resource: { id: digest, type: "content" } }, ns("p1"));
    await leases.addResource({ id: "kept", resource: { id: "snap-1", type: "snapshots/overlayfs" } }, ns("p1"));

    await d.kill9();
    await d.start();

    const listed = ctr(["ns", "ls"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(tableRows(listed.stdout).find((r) => r[0] === "p1"), ["p1", "keep=yes"]);
    const leaseRows = tableRows(ctr(["leases", "ls"], "p1").stdout);
    assert.ok(leaseRows.some((r) => r[0] === "kept" && r[2] === "why=persistence"), JSON.stringify(leaseRows));
    const after = client(LeasesDefinition);
    assert.deepEqual((await after.listResources({ id: "kept" }, ns("p1"))).resources, [
      { id: digest, type: "content" },
      { id: "snap-1", type: "snapshots/overlayfs" },
    ]);
    // A namespace holding only leases goes, with them (as containerd's does).
    assert.equal(ctr(["ns", "rm", "p1"]).code, 0);
  });
});
