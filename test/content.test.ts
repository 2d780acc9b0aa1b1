// The content service against the real stack: the real `ctr` through the gateway,
// and a nice-grpc client for what ctr cannot provoke (bad input, races, a crash
// in the middle of an ingest).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, rmSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { ClientError, Status } from "nice-grpc";
import { grpcError, ok, startDaemon, sleep, type Daemon } from "./harness.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { RequestQueue } from "../core/content-client.ts";
import {
  ContentDefinition,
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from "../core/gen/containerd/services/content/v1/content.ts";
import { LeasesDefinition } from "../core/gen/containerd/services/leases/v1/leases.ts";
import { EventsDefinition } from "../core/gen/containerd/services/events/v1/events.ts";
import { ContentDelete } from "../core/gen/containerd/events/content.ts";

const MiB = 1024 * 1024;
const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** go-units HumanSize as ctr prints it: decimal units, 4 significant digits. */
function humanSize(size: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return `${Number(size.toPrecision(4))}${units[i]}`;
}

interface LsRow {
  digest: string;
  size: string;
  labels: string;
}

function contentLs(d: Daemon, ns = "default", filters: string[] = []): LsRow[] {
  const r = d.ctr(["content", "ls", ...filters], undefined, ns);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.match(lines[0]!, /^DIGEST\s+SIZE\s+AGE\s+LABELS/);
  return lines.slice(1).map((line) => {
    const cols = line.split(/\t+/);
    return { digest: cols[0]!, size: cols[1]!, labels: cols[cols.length - 1]! };
  });
}

/** `ctr content get` with stdout kept as bytes. */
function ctrGet(d: Daemon, digest: string, ns = "default"): { code: number; stdout: Buffer; stderr: string } {
  const r = spawnSync("ctr", ["--address", d.address, "--namespace", ns, "content", "get", digest], {
    encoding: "buffer",
    maxBuffer: 64 * MiB,
    timeout: 60_000,
  });
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr.toString() };
}

type ContentClient = ReturnType<typeof grpcClient<typeof ContentDefinition>>;

/** One Content/Write stream, driven in lockstep as ctr does. */
class Writer {
  private readonly requests = new RequestQueue<Partial<WriteContentRequest>>();
  private readonly responses: AsyncIterator<WriteContentResponse>;

  constructor(client: ContentClient, ns: string, lease?: string) {
    this.responses = client.write(this.requests, inNamespace(ns, lease))[Symbol.asyncIterator]();
  }

  async send(req: Partial<WriteContentRequest>): Promise<WriteContentResponse> {
    this.requests.push(req);
    const next = await this.responses.next();
    if (next.done) throw new Error("write stream ended without a reply");
    return next.value;
  }

  open(ref: string, total = 0, expected = ""): Promise<WriteContentResponse> {
    return this.send({ action: WriteAction.STAT, ref, total: BigInt(total), expected });
  }

  write(offset: number, data: Buffer): Promise<WriteContentResponse> {
    return this.send({ action: WriteAction.WRITE, offset: BigInt(offset), data });
  }

  commit(offset: number, total: number, expected: string, labels: Record<string, string> = {}): Promise<WriteContentResponse> {
    return this.send({ action: WriteAction.COMMIT, offset: BigInt(offset), total: BigInt(total), expected, labels });
  }

  close(): void {
    this.requests.close();
  }
}

/** Opens the ref again once the stream that held it has let go (a held ref answers UNAVAILABLE). */
async function reopen(client: ContentClient, ns: string, ref: string): Promise<WriteContentResponse | undefined> {
  for (let i = 0; i < 50; i++) {
    const w = new Writer(client, ns);
    try {
      return await w.open(ref);
    } catch (err) {
      if (!(err instanceof ClientError) || err.code !== Status.UNAVAILABLE) throw err;
      await sleep(20);
    } finally {
      w.close();
    }
  }
  return undefined;
}

async function rejectsWith(promise: Promise<unknown>, code: Status, message?: RegExp): Promise<ClientError> {
  const err = await grpcError(promise);
  assert.equal(Status[err.code], Status[code], err.details);
  if (message) assert.match(err.details, message);
  return err;
}

/** Retries while the daemon's socket is not (yet) answering. */
async function untilAvailable<T>(call: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (err) {
      if (i >= 100 || !(err instanceof ClientError) || err.code !== Status.UNAVAILABLE) throw err;
      await sleep(100);
    }
  }
}

/** Writes a whole blob through one stream; returns the commit reply. */
async function ingest(client: ContentClient, ns: string, ref: string, data: Buffer, labels: Record<string, string> = {}) {
  const w = new Writer(client, ns);
  try {
    const opened = await w.open(ref, data.length, sha256(data));
    assert.equal(opened.offset, 0n);
    await w.write(0, data);
    return await w.commit(data.length, data.length, sha256(data), labels);
  } finally {
    w.close();
  }
}

async function readAll(client: ContentClient, ns: string, digest: string, offset = 0, size = 0): Promise<{ data: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  const chunks: number[] = [];
  let expectedOffset = offset;
  for await (const chunk of client.read({ digest, offset: BigInt(offset), size: BigInt(size) }, inNamespace(ns))) {
    assert.equal(chunk.offset, BigInt(expectedOffset));
    parts.push(chunk.data);
    chunks.push(chunk.data.length);
    expectedOffset += chunk.data.length;
  }
  return { data: Buffer.concat(parts), chunks };
}

function blobFiles(d: Daemon): string[] {
  const dir = join(d.root, "content", "blobs", "sha256");
  return existsSync(dir) ? readdirSync(dir) : [];
}

const hexOf = (digest: string) => digest.slice("sha256:".length);

describe("content service", () => {
  let d: Daemon;
  let client: ContentClient;

  before(async () => {
    d = await startDaemon();
    client = grpcClient(ContentDefinition, d.address);
  });

  after(async () => {
    await d?.destroy();
  });

  test("ctr content ingest, ls, get, label, rm", async () => {
    const small = Buffer.from("hello from berth content\n");
    const smallDigest = sha256(small);
    let r = d.ctr(["content", "ingest", "small"], small);
    assert.equal(r.code, 0, r.stderr);

    const big = randomBytes(3 * MiB + 512 * 1024 + 7);
    const bigDigest = sha256(big);
    r = d.ctr(["content", "ingest", "--expected-size", String(big.length), "--expected-digest", bigDigest, "big"], big);
    assert.equal(r.code, 0, r.stderr);

    const rows = contentLs(d);
    const smallRow = rows.find((row) => row.digest === smallDigest);
    const bigRow = rows.find((row) => row.digest === bigDigest);
    assert.ok(smallRow && bigRow, `content ls: ${JSON.stringify(rows)}`);
    assert.equal(smallRow.size, humanSize(small.length));
    assert.equal(bigRow.size, humanSize(big.length));
    assert.equal(smallRow.labels, "-");

    // The ingests are gone once committed.
    r = d.ctr(["content", "active"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").slice(1), []);

    for (const [digest, data] of [[smallDigest, small], [bigDigest, big]] as const) {
      const got = ctrGet(d, digest);
      assert.equal(got.code, 0, got.stderr);
      assert.ok(got.stdout.equals(data), `content get ${digest} returned different bytes`);
      assert.ok(existsSync(join(d.root, "content", "blobs", "sha256", hexOf(digest))));
    }

    // The same bytes with a wrong expected size fail at commit and commit nothing new.
    r = d.ctr(["content", "ingest", "--expected-size", "5", "wrong-size"], Buffer.from("123456"));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unexpected commit size 6, expected 5/);
    assert.equal(contentLs(d).some((row) => row.digest === sha256(Buffer.from("123456"))), false);

    // An ingest of an already committed digest succeeds without a second copy.
    r = d.ctr(["content", "ingest", "--expected-digest", smallDigest, "again"], small);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(contentLs(d).filter((row) => row.digest === smallDigest).length, 1);

    r = d.ctr(["content", "label", smallDigest, "berth.test/color=blue", "other=x"]);
    assert.equal(r.code, 0, r.stderr);
    let row = contentLs(d).find((x) => x.digest === smallDigest)!;
    // ctr prints a Go map: any order.
    assert.deepEqual(row.labels.split(",").sort(), ["berth.test/color=blue", "other=x"]);
    assert.deepEqual(
      contentLs(d, "default", ["labels.\"berth.test/color\"==blue"]).map((x) => x.digest),
      [smallDigest],
    );
    // ctr sends `labels.<key>` with an empty value for "key=": that removes the label.
    r = d.ctr(["content", "label", smallDigest, "berth.test/color="]);
    assert.equal(r.code, 0, r.stderr);
    row = contentLs(d).find((x) => x.digest === smallDigest)!;
    assert.equal(row.labels, "other=x");

    // Delete publishes /content/delete.
    const events: { topic: string; digest: string }[] = [];
    const abort = new AbortController();
    const subscribed = (async () => {
      try {
        const stream = grpcClient(EventsDefinition, d.address).subscribe({ filters: ['topic=="/content/delete"'] }, { signal: abort.signal });
        for await (const env of stream) {
          events.push({ topic: env.topic, digest: ContentDelete.decode(env.event!.value).digest });
        }
      } catch {
        // aborted at the end of the test
      }
    })();
    await sleep(300);

    r = d.ctr(["content", "rm", smallDigest]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(contentLs(d).some((x) => x.digest === smallDigest), false);
    const gone = ctrGet(d, smallDigest);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /not found/);
    assert.equal(existsSync(join(d.root, "content", "blobs", "sha256", hexOf(smallDigest))), false);

    // rm of a digest that is not there: ctr ignores NOT_FOUND.
    r = d.ctr(["content", "rm", smallDigest]);
    assert.equal(r.code, 0, r.stderr);

    for (let i = 0; i < 100 && events.length === 0; i++) await sleep(50);
    abort.abort();
    await subscribed;
    assert.deepEqual(events, [{ topic: "/content/delete", digest: smallDigest }]);
  });

  test("Read honours offset and size, in chunks of at most 1 MiB", async () => {
    const data = randomBytes(3 * MiB + 100);
    await ingest(client, "default", "read-ranges", data);
    const digest = sha256(data);

    const whole = await readAll(client, "default", digest);
    assert.ok(whole.data.equals(data));
    assert.ok(whole.chunks.length >= 4 && whole.chunks.every((n) => n <= MiB), `chunks ${whole.chunks}`);

    assert.ok((await readAll(client, "default", digest, 1000, 32 * 1024)).data.equals(data.subarray(1000, 1000 + 32 * 1024)));
    assert.ok((await readAll(client, "default", digest, MiB + 3, 0)).data.equals(data.subarray(MiB + 3)));
    // A size running past the end is cut at the end.
    assert.ok((await readAll(client, "default", digest, data.length - 10, 100)).data.equals(data.subarray(data.length - 10)));
    assert.equal((await readAll(client, "default", digest, data.length, 0)).data.length, 0);
  });

  test("Read of a small blob (synchronous path) and of a large one: whole, ranges, a file cut short or gone", async () => {
    const small = randomBytes(4096);
    const large = randomBytes(MiB + 7);
    for (const [ref, data] of [["read-small", small], ["read-large", large]] as const) {
      await ingest(client, "default", ref, data);
      const digest = sha256(data);
      assert.ok((await readAll(client, "default", digest)).data.equals(data));
      assert.ok((await readAll(client, "default", digest, 100, 50)).data.equals(data.subarray(100, 150)));
      const file = join(d.root, "content", "blobs", "sha256", hexOf(digest));
      truncateSync(file, data.length - 10);
      await rejectsWith(readAll(client, "default", digest), Status.OUT_OF_RANGE, /shorter than its recorded size/);
      rmSync(file);
      await rejectsWith(readAll(client, "default", digest), Status.NOT_FOUND, /not found/);
      await client.delete({ digest }, inNamespace("default"));
    }
  });

  test("namespaces are separate; a blob shared in the store is linked, and removed with its last row", async () => {
    const data = randomBytes(64 * 1024);
    const digest = sha256(data);
    const r = d.ctr(["content", "ingest", "ns-a-blob"], data, "a");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(contentLs(d, "a").some((row) => row.digest === digest));
    assert.equal(contentLs(d, "b").some((row) => row.digest === digest), false);
    await rejectsWith(client.info({ digest }, inNamespace("b")), Status.NOT_FOUND, /not found/);
    await rejectsWith(readAll(client, "b", digest), Status.NOT_FOUND);
    assert.notEqual(ctrGet(d, digest, "b").code, 0);

    // Skip rule: the blob is in the shared store, so the open already reports it complete.
    const w = new Writer(client, "b");
    try {
      const opened = await w.open("ns-b-blob", data.length, digest);
      assert.equal(opened.offset, BigInt(data.length));
      assert.equal(opened.total, BigInt(data.length));
      assert.equal(opened.digest, digest);
      const committed = await w.commit(data.length, data.length, digest, { where: "b" });
      assert.equal(committed.digest, digest);
    } finally {
      w.close();
    }
    const infoB = (await client.info({ digest }, inNamespace("b"))).info!;
    assert.equal(infoB.size, BigInt(data.length));
    assert.deepEqual(infoB.labels, { where: "b" });
    assert.deepEqual((await client.info({ digest }, inNamespace("a"))).info!.labels, {});
    assert.ok((await readAll(client, "b", digest)).data.equals(data));

    // The file stays while namespace b still refers to it.
    await client.delete({ digest }, inNamespace("a"));
    await rejectsWith(client.info({ digest }, inNamespace("a")), Status.NOT_FOUND);
    assert.ok(blobFiles(d).includes(hexOf(digest)));
    assert.ok((await readAll(client, "b", digest)).data.equals(data));
    await client.delete({ digest }, inNamespace("b"));
    assert.equal(blobFiles(d).includes(hexOf(digest)), false);
  });

  test("a namespace holding blobs cannot be removed; it can once they are gone", async () => {
    const data = Buffer.from("usage blob");
    await ingest(client, "usage", "usage-1", data);
    const refused = d.ctr(["ns", "rm", "usage"]);
    assert.notEqual(refused.code, 0, "ns rm must refuse while a blob remains");
    assert.match(refused.stderr, /namespace "usage" must be empty, but it still has 1 blob: failed precondition/);
    await client.delete({ digest: sha256(data) }, inNamespace("usage"));
    ok(d.ctr(["ns", "rm", "usage"]), "ns rm after the blob is gone");
  });

  test("List sends batches of at most 100 and filters on digest, size and labels", async () => {
    const blobs = Array.from({ length: 130 }, (_, i) => Buffer.from(`list blob ${i}`));
    for (const [i, data] of blobs.entries()) await ingest(client, "list", `list-${i}`, data, i % 2 === 0 ? { even: "yes" } : {});
    const batches: number[] = [];
    const seen: string[] = [];
    for await (const msg of client.list({ filters: [] }, inNamespace("list"))) {
      batches.push(msg.info.length);
      for (const info of msg.info) {
        seen.push(info.digest);
        assert.ok(info.createdAt!.seconds > 0n && info.updatedAt!.seconds > 0n);
      }
    }
    assert.deepEqual(batches, [100, 30]);
    assert.deepEqual(seen.sort(), blobs.map((b) => sha256(b)).sort());

    const listed = async (filters: string[]) => {
      const out: string[] = [];
      for await (const msg of client.list({ filters }, inNamespace("list"))) out.push(...msg.info.map((x) => x.digest));
      return out.sort();
    };
    assert.deepEqual(await listed([`digest==${sha256(blobs[7]!)}`]), [sha256(blobs[7]!)]);
    assert.equal((await listed(["labels.even==yes"])).length, 65);
    // Two filter strings are ORed.
    assert.deepEqual(
      await listed([`digest==${sha256(blobs[1]!)}`, `digest==${sha256(blobs[2]!)}`]),
      [sha256(blobs[1]!), sha256(blobs[2]!)].sort(),
    );
    const sizeOfFirst = blobs[0]!.length;
    assert.equal((await listed([`size==${sizeOfFirst}`])).length, blobs.filter((b) => b.length === sizeOfFirst).length);
  });

  test("a cancelled write stream releases its ref", async () => {
    const abort = new AbortController();
    const requests = new RequestQueue<Partial<WriteContentRequest>>();
    const responses = client.write(requests, { ...inNamespace("t"), signal: abort.signal })[Symbol.asyncIterator]();
    requests.push({ action: WriteAction.STAT, ref: "cancel-ref" });
    await responses.next();
    requests.push({ action: WriteAction.WRITE, offset: 0n, data: Buffer.from("partial") });
    await responses.next();
    abort.abort();
    await responses.next().catch(() => undefined);
    assert.equal((await reopen(client, "t", "cancel-ref"))?.offset, 7n);
    await client.abort({ ref: "cancel-ref" }, inNamespace("t"));
  });

  test("Status, ListStatuses and Abort of ingests", async () => {
    const w = new Writer(client, "t");
    await w.open("status-ref", 10);
    await w.write(0, Buffer.from("abcd"));
    w.close();
    const other = new Writer(client, "t");
    await other.open("other-ref");
    other.close();

    const st = (await client.status({ ref: "status-ref" }, inNamespace("t"))).status!;
    assert.equal(st.ref, "status-ref");
    assert.equal(st.offset, 4n);
    assert.equal(st.total, 10n);
    assert.ok(st.startedAt && st.startedAt.seconds > 0n && st.updatedAt && st.updatedAt.seconds > 0n);

    const all = (await client.listStatuses({ filters: [""] }, inNamespace("t"))).statuses.map((s) => s.ref);
    assert.deepEqual(all, ["other-ref", "status-ref"]);
    const filtered = (await client.listStatuses({ filters: ["ref==status-ref"] }, inNamespace("t"))).statuses;
    assert.deepEqual(filtered.map((s) => [s.ref, s.offset]), [["status-ref", 4n]]);
    assert.deepEqual((await client.listStatuses({ filters: [] }, inNamespace("other-ns"))).statuses, []);

    await client.abort({ ref: "status-ref" }, inNamespace("t"));
    await client.abort({ ref: "other-ref" }, inNamespace("t"));
    await rejectsWith(client.status({ ref: "status-ref" }, inNamespace("t")), Status.NOT_FOUND);
    assert.deepEqual((await client.listStatuses({ filters: [] }, inNamespace("t"))).statuses, []);
  });

  test("Abort of a ref that a stream is writing fails that stream", async () => {
    const w = new Writer(client, "t");
    await w.open("aborted-ref");
    await w.write(0, Buffer.from("doomed"));
    await client.abort({ ref: "aborted-ref" }, inNamespace("t"));
    await rejectsWith(w.write(6, Buffer.from("more")), Status.NOT_FOUND, /aborted/);
    w.close();
    await rejectsWith(client.status({ ref: "aborted-ref" }, inNamespace("t")), Status.NOT_FOUND);
  });

  test("WRITE at offset 0 restarts the ingest; STAT reports the digest so far", async () => {
    const w = new Writer(client, "t");
    try {
      const opened = await w.open("restart-ref");
      assert.equal(opened.digest, sha256(Buffer.alloc(0)));
      await w.write(0, Buffer.from("first attempt"));
      const restarted = await w.write(0, Buffer.from("second"));
      assert.equal(restarted.offset, 6n);
      assert.equal(restarted.digest, sha256(Buffer.from("second")));
      const more = await w.write(6, Buffer.from(" try"));
      assert.equal(more.offset, 10n);
      const stat = await w.send({ action: WriteAction.STAT });
      assert.equal(stat.offset, 10n);
      assert.equal(stat.digest, sha256(Buffer.from("second try")));
      const done = await w.commit(10, 0, "", { k: "v" });
      assert.equal(done.digest, sha256(Buffer.from("second try")));
    } finally {
      w.close();
    }
    const info = (await client.info({ digest: sha256(Buffer.from("second try")) }, inNamespace("t"))).info!;
    assert.deepEqual(info.labels, { k: "v" });
    assert.ok(info.createdAt!.seconds > 0n && info.updatedAt!.seconds > 0n);
  });

  test("a write under a lease adds the ingest and then the content to the lease", async () => {
    const leases = grpcClient(LeasesDefinition, d.address);
    await leases.create({ id: "content-test-lease", labels: {} }, inNamespace("t"));
    const data = Buffer.from("leased blob");
    const w = new Writer(client, "t", "content-test-lease");
    try {
      await w.open("leased-ref", data.length, sha256(data));
      let resources = (await leases.listResources({ id: "content-test-lease" }, inNamespace("t"))).resources;
      assert.deepEqual(resources.map((x) => [x.type, x.id]), [["ingests", "leased-ref"]]);
      await w.write(0, data);
      await w.commit(data.length, data.length, sha256(data));
      resources = (await leases.listResources({ id: "content-test-lease" }, inNamespace("t"))).resources;
      assert.deepEqual(resources.map((x) => [x.type, x.id]), [["content", sha256(data)]]);
    } finally {
      w.close();
    }

    // A lease that does not exist fails the write and starts no ingest.
    const bad = new Writer(client, "t", "no-such-lease");
    await rejectsWith(bad.open("unleased-ref"), Status.NOT_FOUND, /lease "no-such-lease"/);
    bad.close();
    await rejectsWith(client.status({ ref: "unleased-ref" }, inNamespace("t")), Status.NOT_FOUND);
  });

  describe("bad input gets the right status and changes nothing", () => {
    const blob = Buffer.from("committed for the error tests");
    const blobDigest = sha256(blob);

    before(async () => {
      await ingest(client, "t", "error-tests-base", blob, { keep: "me" });
    });

    test("malformed digest: INVALID_ARGUMENT", async () => {
      await rejectsWith(client.info({ digest: "sha256:nothex" }, inNamespace("t")), Status.INVALID_ARGUMENT, /invalid digest/);
      await rejectsWith(client.info({ digest: "" }, inNamespace("t")), Status.INVALID_ARGUMENT);
      await rejectsWith(client.delete({ digest: "md5:abc" }, inNamespace("t")), Status.INVALID_ARGUMENT);
      await rejectsWith(readAll(client, "t", "../../etc/passwd"), Status.INVALID_ARGUMENT);
    });

    test("missing namespace header: FAILED_PRECONDITION", async () => {
      await rejectsWith(client.info({ digest: blobDigest }), Status.FAILED_PRECONDITION, /namespace is required/);
      await rejectsWith(client.listStatuses({ filters: [] }), Status.FAILED_PRECONDITION);
    });

    test("missing digest or ref: NOT_FOUND", async () => {
      const absent = sha256(Buffer.from("never written"));
      await rejectsWith(client.info({ digest: absent }, inNamespace("t")), Status.NOT_FOUND, /content digest sha256:[0-9a-f]{64}: not found/);
      await rejectsWith(client.delete({ digest: absent }, inNamespace("t")), Status.NOT_FOUND);
      await rejectsWith(client.update({ info: { digest: absent, labels: { a: "b" } } }, inNamespace("t")), Status.NOT_FOUND);
      await rejectsWith(client.abort({ ref: "no-such-ref" }, inNamespace("t")), Status.NOT_FOUND, /ingest ref "no-such-ref": not found/);
    });

    test("digest mismatch at commit: FAILED_PRECONDITION, nothing committed, ingest kept for abort", async () => {
      const data = Buffer.from("these bytes are not what was promised");
      const claimed = sha256(Buffer.from("something else"));
      const w = new Writer(client, "t");
      await w.open("mismatch-ref", data.length, claimed);
      await w.write(0, data);
      const err = await rejectsWith(w.commit(data.length, data.length, claimed), Status.FAILED_PRECONDITION);
      assert.equal(err.details, `unexpected commit digest ${sha256(data)}, expected ${claimed}: failed precondition`);
      w.close();
      await rejectsWith(client.info({ digest: sha256(data) }, inNamespace("t")), Status.NOT_FOUND);
      await rejectsWith(client.info({ digest: claimed }, inNamespace("t")), Status.NOT_FOUND);
      assert.equal(blobFiles(d).includes(hexOf(sha256(data))), false);
      assert.equal(blobFiles(d).includes(hexOf(claimed)), false);
      assert.equal((await client.status({ ref: "mismatch-ref" }, inNamespace("t"))).status!.offset, BigInt(data.length));
      await client.abort({ ref: "mismatch-ref" }, inNamespace("t"));
      await rejectsWith(client.status({ ref: "mismatch-ref" }, inNamespace("t")), Status.NOT_FOUND);
    });

    test("size mismatch at commit: FAILED_PRECONDITION", async () => {
      const data = Buffer.from("twelve bytes");
      const w = new Writer(client, "t");
      await w.open("size-ref");
      await w.write(0, data);
      await rejectsWith(w.commit(data.length, 20, ""), Status.FAILED_PRECONDITION, /^unexpected commit size 12, expected 20/);
      w.close();
      await rejectsWith(client.info({ digest: sha256(data) }, inNamespace("t")), Status.NOT_FOUND);
      await client.abort({ ref: "size-ref" }, inNamespace("t"));
    });

    test("two writers on one ref: UNAVAILABLE; the ref is free again when the first stream ends", async () => {
      const first = new Writer(client, "t");
      await first.open("busy-ref");
      await first.write(0, Buffer.from("mine"));
      const second = new Writer(client, "t");
      await rejectsWith(second.open("busy-ref"), Status.UNAVAILABLE, /^ref busy-ref locked/);
      second.close();
      // The same ref in another namespace is another ingest.
      const elsewhere = new Writer(client, "t2");
      assert.equal((await elsewhere.open("busy-ref")).offset, 0n);
      elsewhere.close();
      first.close();
      assert.equal((await reopen(client, "t", "busy-ref"))?.offset, 4n);
      await client.abort({ ref: "busy-ref" }, inNamespace("t"));
      await client.abort({ ref: "busy-ref" }, inNamespace("t2"));
    });

    test("open without a ref: INVALID_ARGUMENT", async () => {
      const w = new Writer(client, "t");
      await rejectsWith(w.open(""), Status.INVALID_ARGUMENT, /first message must have a reference/);
      w.close();
    });

    test("write at a wrong offset: OUT_OF_RANGE, the data so far is kept", async () => {
      const w = new Writer(client, "t");
      await w.open("offset-ref");
      await w.write(0, Buffer.from("abc"));
      await rejectsWith(w.write(7, Buffer.from("xyz")), Status.OUT_OF_RANGE, /write @7 must occur at current offset 3/);
      w.close();
      assert.equal((await client.status({ ref: "offset-ref" }, inNamespace("t"))).status!.offset, 3n);
      await client.abort({ ref: "offset-ref" }, inNamespace("t"));
    });

    test("invalid field-mask path: INVALID_ARGUMENT naming the path", async () => {
      await rejectsWith(
        client.update({ info: { digest: blobDigest, size: 1n, labels: { x: "y" } }, updateMask: ["labels.x", "size"] }, inNamespace("t")),
        Status.INVALID_ARGUMENT,
        /"size"/,
      );
      const info = (await client.info({ digest: blobDigest }, inNamespace("t"))).info!;
      assert.deepEqual(info.labels, { keep: "me" });
      assert.equal(info.size, BigInt(blob.length));
    });

    test("Update with labels.<key> paths, the labels path and no mask", async () => {
      let info = (await client.update({ info: { digest: blobDigest, labels: { a: "1", b: "2" } }, updateMask: ["labels.a"] }, inNamespace("t"))).info!;
      assert.deepEqual(info.labels, { keep: "me", a: "1" });
      info = (await client.update({ info: { digest: blobDigest, labels: {} }, updateMask: ["labels.a"] }, inNamespace("t"))).info!;
      assert.deepEqual(info.labels, { keep: "me" });
      info = (await client.update({ info: { digest: blobDigest, labels: { only: "this" } }, updateMask: ["labels"] }, inNamespace("t"))).info!;
      assert.deepEqual(info.labels, { only: "this" });
      info = (await client.update({ info: { digest: blobDigest, labels: { keep: "me" } } }, inNamespace("t"))).info!;
      assert.deepEqual(info.labels, { keep: "me" });
      assert.ok(info.updatedAt!.seconds >= info.createdAt!.seconds);
      assert.deepEqual((await client.info({ digest: blobDigest }, inNamespace("t"))).info!.labels, { keep: "me" });
    });

    test("oversized label: INVALID_ARGUMENT on Update and on commit", async () => {
      const huge = "x".repeat(5000);
      await rejectsWith(
        client.update({ info: { digest: blobDigest, labels: { big: huge } }, updateMask: ["labels.big"] }, inNamespace("t")),
        Status.INVALID_ARGUMENT,
        /label key and value length/,
      );
      assert.deepEqual((await client.info({ digest: blobDigest }, inNamespace("t"))).info!.labels, { keep: "me" });

      const data = Buffer.from("labelled too much");
      const w = new Writer(client, "t");
      await w.open("label-ref");
      await w.write(0, data);
      await rejectsWith(w.commit(data.length, data.length, sha256(data), { big: huge }), Status.INVALID_ARGUMENT, /label key and value length/);
      w.close();
      await rejectsWith(client.info({ digest: sha256(data) }, inNamespace("t")), Status.NOT_FOUND);
      await client.abort({ ref: "label-ref" }, inNamespace("t"));
    });

    test("Read past the end: OUT_OF_RANGE", async () => {
      await rejectsWith(readAll(client, "t", blobDigest, blob.length + 1), Status.OUT_OF_RANGE, /read past object length/);
    });

    test("bad filter: INVALID_ARGUMENT", async () => {
      const list = async () => {
        for await (const _ of client.list({ filters: ["labels.a=="] }, inNamespace("t"))) void _;
      };
      await rejectsWith(list(), Status.INVALID_ARGUMENT, /filter parse error/);
    });

    test("expected digest already present: ALREADY_EXISTS on open (and ctr treats it as success)", async () => {
      const w = new Writer(client, "t");
      await rejectsWith(w.open("dup-ref", blob.length, blobDigest), Status.ALREADY_EXISTS);
      w.close();
      await rejectsWith(client.status({ ref: "dup-ref" }, inNamespace("t")), Status.NOT_FOUND);
      // Committing the same bytes without announcing them ends with ALREADY_EXISTS too,
      // and leaves the first blob's labels alone.
      const again = new Writer(client, "t");
      await again.open("dup-ref-2");
      await again.write(0, blob);
      await rejectsWith(again.commit(blob.length, blob.length, ""), Status.ALREADY_EXISTS);
      again.close();
      assert.deepEqual((await client.info({ digest: blobDigest }, inNamespace("t"))).info!.labels, { keep: "me" });
      await rejectsWith(client.status({ ref: "dup-ref-2" }, inNamespace("t")), Status.NOT_FOUND);
    });
  });

  test("an ingest survives kill -9 of the content service and resumes at its offset", async () => {
    const data = randomBytes(4 * MiB);
    const digest = sha256(data);
    const half = 2 * MiB;
    const ref = "resume-ref";

    const first = new Writer(client, "t");
    const opened = await first.open(ref, data.length, digest);
    assert.equal(opened.offset, 0n);
    let offset = 0;
    for (; offset < half; offset += 512 * 1024) {
      const reply = await first.write(offset, data.subarray(offset, offset + 512 * 1024));
      assert.equal(reply.offset, BigInt(offset + 512 * 1024));
    }

    const oldPid = d.servicePid("content");
    assert.ok(oldPid, "content service pid");
    process.kill(oldPid, "SIGKILL");
    await d.waitForRestart("content", oldPid);
    first.close();

    // Partial content is invisible: no metadata row, no blob file.
    await rejectsWith(client.info({ digest }, inNamespace("t")), Status.NOT_FOUND);
    assert.equal(blobFiles(d).includes(hexOf(digest)), false);
    assert.equal(statSync(join(d.root, "content", "ingest", createHash("sha256").update(`t\0${ref}`).digest("hex"), "data")).size, half);

    // The gateway may need a moment to reach the new process.
    let w: Writer | undefined;
    let resumed: WriteContentResponse | undefined;
    for (let i = 0; i < 50 && !resumed; i++) {
      w = new Writer(client, "t");
      try {
        resumed = await w.open(ref, data.length, digest);
      } catch (err) {
        w.close();
        if (!(err instanceof ClientError) || err.code !== Status.UNAVAILABLE) throw err;
        await sleep(100);
      }
    }
    assert.ok(w && resumed);
    try {
      assert.equal(resumed.offset, BigInt(half));
      assert.equal(resumed.digest, sha256(data.subarray(0, half)));
      assert.equal(resumed.total, BigInt(data.length));
      await rejectsWith(client.info({ digest }, inNamespace("t")), Status.NOT_FOUND);

      for (offset = half; offset < data.length; offset += MiB) {
        await w.write(offset, data.subarray(offset, offset + MiB));
      }
      const committed = await w.commit(data.length, data.length, digest);
      assert.equal(committed.digest, digest);
      assert.equal(committed.offset, BigInt(data.length));
    } finally {
      w.close();
    }
    assert.ok((await readAll(client, "t", digest)).data.equals(data));
    assert.equal((await client.info({ digest }, inNamespace("t"))).info!.size, BigInt(data.length));
    assert.equal(existsSync(join(d.root, "content", "ingest", createHash("sha256").update(`t\0${ref}`).digest("hex"))), false);
  });

  test("committed content survives a daemon restart", async () => {
    const data = Buffer.from("persist me");
    // Referenced (a gc root), or the collection berthd runs at start would rightly free it.
    const labels = { p: "1", "containerd.io/gc.root": "kept" };
    await ingest(client, "persist", "persist-ref", data, labels);
    await d.stop();
    await d.start();
    const info = (await untilAvailable(() => client.info({ digest: sha256(data) }, inNamespace("persist")))).info!;
    assert.deepEqual(info.labels, labels);
    assert.ok((await readAll(client, "persist", sha256(data))).data.equals(data));
  });
});
