// Garbage collection end to end, driven by the real ctr against a real berthd: what
// images rm --sync, leases, content prune references and expiry free, what they keep,
// namespace deletion racing writes, and a collector killed mid-run.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { distDir, startDaemon, ok, sleep, tableRows, type Daemon } from "./harness.ts";
import { writeBusyboxArchive } from "./fixtures/busybox-daemon.ts";
import { blobFiles, snapshotDirs } from "./fixtures/daemon-files.ts";
import { buildImage, descriptor, layoutEntries, tarOf } from "./fixtures/archives.ts";
import { grpcClient, inNamespace, closeChannels } from "../core/grpc-client.ts";
import { ContentDefinition, WriteAction } from "../core/gen/containerd/services/content/v1/content.ts";
import { NamespacesDefinition } from "../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { sha256Digest } from "../core/digest.ts";
import { Status } from "nice-grpc";

const image = "docker.io/library/busybox:latest";
let workdir: string;
let archive: string;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-gc-"));
  archive = await writeBusyboxArchive(workdir);
});

after(() => {
  closeChannels();
  rmSync(workdir, { recursive: true, force: true });
});

const contentDigests = (d: Daemon, ns = "default") => ok(d.ctr(["content", "ls", "-q"], undefined, ns), "content ls").stdout.split("\n").filter(Boolean);
const snapshotNames = (d: Daemon, ns = "default") => tableRows(ok(d.ctr(["snapshots", "ls"], undefined, ns), "snapshots ls").stdout).map((r) => r[0]);

/** A synchronous collection: ctr leases rm --sync of a lease made for it. */
function collectNow(d: Daemon, ns = "default"): void {
  const lease = ok(d.ctr(["leases", "create"], undefined, ns), "lease create").stdout.trim();
  ok(d.ctr(["leases", "rm", "--sync", lease], undefined, ns), "leases rm --sync");
}

/** Polls until `check` holds (collections triggered without --sync run in the background). */
async function eventually(what: string, check: () => boolean, timeoutMs = 20_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(everyMs);
  }
}

describe("garbage collection through ctr", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.destroy();
  });

  test("images rm --sync of the last image frees its blobs and snapshots; a second tag keeps them", () => {
    ok(d.ctr(["images", "import", archive]), "import");
    // ctr also stored the archive's own manifest and config, which only its lease held.
    collectNow(d);
    assert.equal(contentDigests(d).length, 3, "manifest, config, layer");
    assert.equal(snapshotNames(d).length, 1, "one layer unpacked");
    ok(d.ctr(["images", "tag", image, "docker.io/library/busybox:second"]), "tag");

    ok(d.ctr(["images", "rm", "--sync", image]), "rm first tag");
    assert.equal(contentDigests(d).length, 3, "the second tag keeps every blob");
    assert.equal(snapshotNames(d).length, 1, "and the snapshot");

    ok(d.ctr(["images", "rm", "--sync", "docker.io/library/busybox:second"]), "rm last tag");
    assert.deepEqual(contentDigests(d), [], "content ls is empty");
    assert.deepEqual(snapshotNames(d), [], "snapshots ls is empty");
    assert.deepEqual(blobFiles(d), [], "the blob files are gone from disk");
    assert.deepEqual(snapshotDirs(d), [], "the snapshot directories are gone from disk");
  });

  test("content prune references frees the layers only the pruned labels held", async () => {
    ok(d.ctr(["images", "import", "--no-unpack", archive], undefined, "prune"), "import without unpack");
    collectNow(d, "prune");
    assert.equal(contentDigests(d, "prune").length, 3);
    ok(d.ctr(["content", "prune", "references"], undefined, "prune"), "prune references");
    // The layer was referenced only by the manifest's gc.ref.content.l.0 label. (The
    // collection the pruning schedules spares objects younger than 30 s; a synchronous
    // one spares nothing.)
    collectNow(d, "prune");
    assert.equal(contentDigests(d, "prune").length, 2, "the layer blob is collected");
    ok(d.ctr(["images", "rm", "--sync", image], undefined, "prune"), "rm");
    assert.deepEqual(contentDigests(d, "prune"), []);
  });

  test("an expired lease is removed at the next collection, and what it held with it", async () => {
    const ns = "expiry";
    const lease = ok(d.ctr(["leases", "create", "--expires", "1s"], undefined, ns), "lease create").stdout.trim();
    const leased = lease === "" ? [] : [lease];
    assert.equal(leased.length, 1);
    const data = Buffer.from(`held by an expiring lease ${Date.now()}`);
    const content = grpcClient(ContentDefinition, d.address);
    await writeBlob(content, ns, data, lease);
    assert.deepEqual(contentDigests(d, ns), [sha256Digest(data)]);
    await sleep(1100); // the lease's own expiry time, not a wait for the daemon
    // Any synchronous collection covers it: a lease rm --sync of a second lease.
    const other = ok(d.ctr(["leases", "create"], undefined, ns), "second lease").stdout.trim();
    ok(d.ctr(["leases", "rm", "--sync", other], undefined, ns), "leases rm --sync");
    assert.deepEqual(tableRows(ok(d.ctr(["leases", "ls"], undefined, ns), "leases ls").stdout), [], "the expired lease is gone");
    assert.deepEqual(contentDigests(d, ns), [], "its blob went with it");
  });

  test("plugins ls lists the snapshotters, differ, content, metadata and gc plugins as containerd does", () => {
    const rows = tableRows(ok(d.ctr(["plugins", "ls"]), "plugins ls").stdout).map((r) => `${r[0]} ${r[1]} ${r[r.length - 1]}`);
    for (const plugin of [
      "io.containerd.content.v1 content ok",
      "io.containerd.snapshotter.v1 overlayfs ok",
      "io.containerd.snapshotter.v1 native ok",
      "io.containerd.metadata.v1 bolt ok",
      "io.containerd.differ.v1 walking ok",
      "io.containerd.gc.v1 scheduler ok",
      "io.containerd.grpc.v1 content ok",
      "io.containerd.grpc.v1 diff ok",
    ]) {
      assert.ok(rows.includes(plugin), `${plugin} in:\n${rows.join("\n")}`);
    }
  });

  test("leases ls orders by id", () => {
    const ns = "order";
    for (const id of ["b-lease", "c-lease", "a-lease"]) ok(d.ctr(["leases", "create", "--id", id], undefined, ns), `create ${id}`);
    assert.deepEqual(
      tableRows(ok(d.ctr(["leases", "ls"], undefined, ns), "ls").stdout).map((r) => r[0]),
      ["a-lease", "b-lease", "c-lease"],
    );
  });

  test("a namespace delete racing 50 concurrent writes never leaves an object in a deleted namespace", async () => {
    const ns = "race";
    const content = grpcClient(ContentDefinition, d.address);
    const namespaces = grpcClient(NamespacesDefinition, d.address);
    // 50 writers, each writing a blob and deleting it again, so the namespace is
    // empty now and then and a delete can succeed between two writes.
    let writing = true;
    const writers = Array.from({ length: 50 }, async (_, i) => {
      for (let round = 0; round < 5; round++) {
        const data = Buffer.from(`race ${i} ${round}`);
        await writeBlob(content, ns, data);
        await content.delete({ digest: sha256Digest(data) }, inNamespace(ns));
      }
    });
    let deleted = 0;
    const deleter = (async () => {
      while (writing) {
        try {
          await namespaces.delete({ name: ns });
          deleted++;
        } catch (err) {
          // FAILED_PRECONDITION while it holds blobs, NOT_FOUND between a delete and the next write.
          const code = (err as { code?: number }).code;
          assert.ok(code === Status.FAILED_PRECONDITION || code === Status.NOT_FOUND, String(err));
        }
      }
    })();
    await Promise.all(writers).finally(() => (writing = false));
    await deleter;
    const db = new DatabaseSync(join(d.root, "metadata.db"), { readOnly: true });
    try {
      for (const table of ["blobs", "images", "snapshots", "leases"]) {
        const { n } = db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE namespace NOT IN (SELECT name FROM namespaces)`).get() as { n: number };
        assert.equal(Number(n), 0, `${table} rows in a deleted namespace`);
      }
    } finally {
      db.close();
    }
    assert.ok(deleted >= 1, "the namespace was deleted at least once while the writes ran");
  });
});

describe("abandoned ingests", () => {
  test("a collection removes an ingest nobody touched for BERTH_INGEST_EXPIRY_MS unless a lease holds it", async () => {
    const d = await startDaemon({ env: { BERTH_INGEST_EXPIRY_MS: "1000" } });
    try {
      const content = grpcClient(ContentDefinition, d.address);
      const lease = ok(d.ctr(["leases", "create"]), "lease").stdout.trim();
      await writePartial(content, "abandoned-ref", undefined);
      await writePartial(content, "leased-ref", lease);
      const active = () => tableRows(ok(d.ctr(["content", "active"]), "content active").stdout).map((r) => r[0]).sort();
      assert.deepEqual(active(), ["abandoned-ref", "leased-ref"]);
      const written = Date.now();
      await eventually("the expiry time has passed", () => Date.now() - written > 1100);
      collectNow(d);
      assert.deepEqual(active(), ["leased-ref"], "only the leased ingest is left");
    } finally {
      await d.destroy();
    }
  });
});

describe("an import cut off by a dying service", () => {
  test("kill -9 of the snapshots process mid-import: berthctl fails, and a collection leaves nothing behind", async () => {
    const d = await startDaemon();
    try {
      // Two layers of 16 MiB random bytes: long enough an import to catch it unpacking.
      const image = await buildImage([
        { entries: [{ name: "a.bin", data: randomBytes(16 * 1024 * 1024) }] },
        { entries: [{ name: "b.bin", data: randomBytes(16 * 1024 * 1024) }] },
      ]);
      const big = join(workdir, "big-oci.tar");
      const annotations = { "org.opencontainers.image.ref.name": "berth.local/big:1", "io.containerd.image.name": "berth.local/big:1" };
      writeFileSync(big, await tarOf(layoutEntries(image.blobs, [descriptor(image.manifest, { annotations })])));
      const importing = spawn(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "images", "import", big], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      importing.stderr!.on("data", (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => importing.once("exit", (code) => resolve(code)));
      // The moment the diff process starts, the first layer's extract snapshot exists and
      // its Apply is on its way: freeze snapshots (so the import's own clean-up cannot
      // reach it), kill diff (so the Apply fails), then kill snapshots.
      let diffPid: number | undefined;
      await eventually("the diff process started", () => (diffPid = d.servicePid("diff")) !== undefined, 60_000, 2);
      // Started on demand by the import, which prepared the extract snapshot before calling diff.
      const pid = d.servicePid("snapshots");
      assert.ok(pid, "snapshots pid");
      process.kill(pid, "SIGSTOP");
      process.kill(diffPid!, "SIGKILL");
      await eventually("the diff process is gone", () => d.servicePid("diff") !== diffPid);
      process.kill(pid, "SIGKILL");
      const code = await exited;
      assert.notEqual(code, 0, `the import must fail: ${stderr}`);
      await d.waitForRestart("snapshots", pid);
      collectNow(d);
      assert.deepEqual(snapshotNames(d), [], "no extract snapshot is left");
      assert.deepEqual(contentDigests(d), [], "no blob is left");
      assert.deepEqual(tableRows(ok(d.ctr(["content", "active"]), "content active").stdout), [], "no ingest is left");
      assert.deepEqual(snapshotDirs(d), [], "no snapshot directory is left");
      assert.deepEqual(blobFiles(d), [], "no blob file is left");
    } finally {
      await d.destroy();
    }
  });
});

describe("a collector killed mid-run", () => {
  for (const point of ["after-mark", "after-commit"] as const) {
    test(`kill -9 ${point}: nothing referenced is lost, nothing unreferenced is kept after the next run`, async () => {
      const marker = join(workdir, `crashed-${point}`);
      const d = await startDaemon({ env: { BERTH_GC_CRASH_AT: `${point}:${marker}` } });
      try {
        const kept = "kept";
        ok(d.ctr(["images", "import", archive], undefined, kept), "import the image that stays");
        ok(d.ctr(["images", "import", archive]), "import the image to collect");
        // The collection this triggers kills the collector at `point`.
        d.ctr(["images", "rm", "--sync", image]);
        await eventually("the collector crashed once", () => readdirSync(workdir).includes(`crashed-${point}`));
        // The restarted collector runs again at start: the deleted image's namespace ends empty.
        await eventually("default's content is collected", () => {
          const r = d.ctr(["content", "ls", "-q"]);
          return r.code === 0 && r.stdout.trim() === "";
        });
        await eventually("default's snapshots are collected", () => {
          const r = d.ctr(["snapshots", "ls"]);
          return r.code === 0 && tableRows(r.stdout).length === 0;
        });
        // The other namespace keeps its image whole: manifest, config and layer, and its snapshot.
        const keptBlobs = contentDigests(d, kept);
        assert.equal(keptBlobs.length, 3, `blobs left in ${kept}: ${keptBlobs.join(" ")}`);
        for (const digest of keptBlobs) ok(d.ctr(["content", "get", digest], undefined, kept), `content get ${digest}`);
        assert.equal(snapshotNames(d, kept).length, 1, "and its snapshot");
        // On disk: exactly the blobs it holds, and its snapshot directory (the restarted
        // collector's first run sweeps what the killed one left).
        const keptFiles = keptBlobs.map((x) => x.slice("sha256:".length)).sort().join();
        await eventually("only the kept blob files remain", () => blobFiles(d).sort().join() === keptFiles);
        await eventually("only the kept snapshot directory remains", () => snapshotDirs(d).length === 1);
        ok(d.ctr(["images", "rm", "--sync", image], undefined, kept), "rm the other image");
        assert.deepEqual(blobFiles(d), []);
        assert.deepEqual(snapshotDirs(d), []);
      } finally {
        await d.destroy();
      }
    });
  }
});

/** Starts an ingest and leaves it unfinished (the stream ends after one WRITE). */
async function writePartial(client: ReturnType<typeof grpcClient<typeof ContentDefinition>>, ref: string, lease: string | undefined): Promise<void> {
  async function* requests() {
    yield { action: WriteAction.WRITE, ref, offset: 0n, total: 100n, expected: "", data: Buffer.alloc(10, 1), labels: {} };
  }
  for await (const _ of client.write(requests(), inNamespace("default", lease))) {
    // one reply
  }
}

/** Writes a small blob through the Content Writer, under a lease when given. */
async function writeBlob(client: ReturnType<typeof grpcClient<typeof ContentDefinition>>, ns: string, data: Buffer, lease?: string): Promise<void> {
  const digest = sha256Digest(data);
  async function* requests() {
    yield { action: WriteAction.COMMIT, ref: `ref-${digest}`, offset: 0n, total: BigInt(data.length), expected: digest, data, labels: {} };
  }
  for await (const _ of client.write(requests(), inNamespace(ns, lease))) {
    // one reply
  }
}
