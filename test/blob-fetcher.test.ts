// The content process's BlobFetcher (services/content/fetch.ts), called as the pull
// jobs call it, against a real berthd and Debian's docker-registry behind FaultProxy:
// a blob lands in the store with its labels and progress, a second call finds it; a
// dropped connection resumes with Range inside the call; a transient failure keeps the
// ingest and the next call asks only for the rest; a cancelled call keeps it too;
// wrong bytes, a 4xx and bad requests fail with a message naming the problem and leave
// no blob and no ingest; the caller's credentials never reach the registry's mirror,
// nor blob storage a redirect points to.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import http, { type IncomingMessage } from "node:http";
import { ClientError, Status } from "nice-grpc";
import { startDaemon, type Daemon } from "./harness.ts";
import { eventually, waitUntil } from "./fixtures/poll.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { blobInfo, RequestQueue } from "../core/content-client.ts";
import { WriteAction, type DeepPartial, type WriteContentRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import { BlobFetcherDefinition, type FetchBlobProgress, type FetchBlobRequest } from "../core/gen/berth/internal/v1/fetch.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { mediaTypes } from "../core/image/media-types.ts";
import { onDemandClient } from "../core/on-demand-client.ts";
import { RegistryClient, ingestRef, parseRegistryReference, pushBlob } from "../core/registry/index.ts";
import { blobOf, type Blob } from "./fixtures/archives.ts";
import { freePort, startFaultyRegistry, type FaultProxy, type FaultyRegistry, type TestRegistry } from "./fixtures/registry.ts";

let d: Daemon;
let registry: TestRegistry;
let proxy: FaultProxy;
let work: string;
let seedClient: RegistryClient;
let faulty: FaultyRegistry | undefined;
/** berthd's configured mirror for the registry (FaultProxy's host): it has nothing, and may ask for credentials. */
let mirror: http.Server;
let mirrorAsks = false;
const mirrorLog: { url: string; authorization?: string }[] = [];
/** A blob of fresh random bytes per test: neither a namespace nor the shared store has it yet. */
let blob: Blob;
const repo = "fetcher/blobs";
const source = "containerd.io/distribution.source.test";

const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);
const fetcher = () => onDemandClient(BlobFetcherDefinition, d.state, "content");
const isBlobGet = (req: IncomingMessage) => req.method === "GET" && req.url === `/v2/${repo}/blobs/${blob.digest}`;
const blobGets = () => proxy.log.filter((r) => r.method === "GET" && r.url.endsWith(`/blobs/${blob.digest}`));

function request(overrides: Partial<FetchBlobRequest> = {}): FetchBlobRequest {
  return {
    ref: `${proxy.host}/${repo}:1`,
    registry: { plainHttp: true, insecure: false, credentials: undefined },
    digest: blob.digest,
    mediaType: blob.mediaType,
    size: BigInt(blob.size),
    ingestRef: ingestRef(blob),
    labels: { [source]: repo },
    ...overrides,
  };
}

async function fetchAll(svc: ImageServices, req: FetchBlobRequest, signal?: AbortSignal): Promise<Partial<FetchBlobProgress>[]> {
  const out: Partial<FetchBlobProgress>[] = [];
  for await (const p of fetcher().fetch(req, { ...callOptions(svc), ...(signal ? { signal } : {}) })) out.push(p);
  return out;
}

async function ingestsOf(svc: ImageServices): Promise<{ ref: string; offset: number }[]> {
  const { statuses } = await svc.content.listStatuses({ filters: [] }, callOptions(svc));
  return statuses.map((s) => ({ ref: s.ref, offset: Number(s.offset) }));
}

async function assertNothingLeft(svc: ImageServices): Promise<void> {
  assert.equal(await blobInfo(svc.content, blob.digest, callOptions(svc)), undefined, "the blob was not committed");
  assert.deepEqual(await ingestsOf(svc), [], "no ingest is left behind");
}

/** An ingest under the blob's ref holding `data`, recorded with `total` bytes to come (a Write stream that went away). */
async function leaveIngest(svc: ImageServices, data: Buffer, total: number): Promise<void> {
  const requests = new RequestQueue<DeepPartial<WriteContentRequest>>();
  const responses = svc.content.write(requests, callOptions(svc))[Symbol.asyncIterator]();
  requests.push({ action: WriteAction.WRITE, ref: ingestRef(blob), offset: 0n, total: BigInt(total), data });
  await responses.next();
  requests.close();
  while (!(await responses.next()).done);
}

function rejectsWith(code: Status, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ClientError, String(err));
    assert.equal(Status[err.code], Status[code], err.details);
    assert.match(err.details, pattern);
    return true;
  };
}

before(async () => {
  faulty = await startFaultyRegistry("berth-blob-fetcher-");
  ({ work, registry, proxy, seedClient } = faulty);
  const mirrorPort = await freePort();
  mirror = http.createServer((req, res) => {
    mirrorLog.push({ url: req.url ?? "", ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    req.resume();
    if (mirrorAsks) res.writeHead(401, { "www-authenticate": 'Basic realm="mirror"', "content-length": "0" }).end();
    else res.writeHead(404, { "content-length": "0" }).end();
  });
  await new Promise<void>((resolve) => mirror.listen(mirrorPort, "127.0.0.1", resolve));
  const config = join(work, "berthd.json");
  writeFileSync(config, JSON.stringify({ registry: { mirrors: { [proxy.host]: [`http://127.0.0.1:${mirrorPort}`] } } }));
  d = await startDaemon({ args: ["--config", config] });
});

beforeEach(async () => {
  proxy.rule = undefined;
  proxy.log.length = 0;
  mirrorAsks = false;
  mirrorLog.length = 0;
  blob = blobOf(mediaTypes.ociLayer, randomBytes(3 * 1024 * 1024));
  // Straight into the registry, not through the proxy: its log stays the fetcher's.
  await pushBlob(seedClient, parseRegistryReference(`${registry.host}/${repo}:1`), blob, (async function* () {
    yield blob.data;
  })());
});

after(async () => {
  closeChannels();
  await d?.destroy();
  await new Promise((resolve) => (mirror ? mirror.close(resolve) : resolve(undefined)));
  await faulty?.close();
});

describe("BlobFetcher", () => {
  test("downloads a blob into the store with its labels, reporting rising progress; a second call finds it", async () => {
    const svc = ns("fetched");
    const progress = await fetchAll(svc, request());
    const last = progress.at(-1)!;
    assert.deepEqual({ committed: last.committed, existed: last.existed, done: last.done }, { committed: true, existed: false, done: BigInt(blob.size) });
    const done = progress.map((p) => Number(p.done));
    assert.ok(done.every((n, i) => i === 0 || n >= done[i - 1]!), `progress rises: ${done.join(", ")}`);
    const info = await blobInfo(svc.content, blob.digest, callOptions(svc));
    assert.equal(Number(info?.size), blob.size);
    assert.equal(info?.labels[source], repo);
    assert.deepEqual(await ingestsOf(svc), []);
    assert.equal(blobGets().length, 1);

    const again = await fetchAll(svc, request());
    assert.deepEqual(again.map((p) => [p.committed, p.existed]), [[true, true]]);
    assert.equal(blobGets().length, 1, "nothing downloaded again");
  });

  test("a connection dropped mid-blob resumes with a Range request within the call", async () => {
    let cut = false;
    proxy.rule = (req) => {
      if (!isBlobGet(req) || cut) return undefined;
      cut = true;
      return { cutAfter: 500_000 };
    };
    const svc = ns("resumed");
    const progress = await fetchAll(svc, request());
    assert.equal(progress.at(-1)?.committed, true);
    const ranges = blobGets().map((r) => r.range);
    assert.equal(ranges.length, 2);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? "")?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 500_000, `resumed at ${resumedAt}`);
    assert.equal(Number((await blobInfo(svc.content, blob.digest, callOptions(svc)))?.size), blob.size);
  });

  test("a redirect to blob storage elsewhere is followed without credentials, and a chunked answer is decoded", async () => {
    // "Storage": another host that answers the blob in chunks, as a CDN may.
    const seen: { authorization?: string }[] = [];
    const storage = http.createServer((req, res) => {
      seen.push({ ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
      res.writeHead(200, { "content-type": "application/octet-stream" }); // no length: chunked
      for (let at = 0; at < blob.size; at += 777_777) res.write(blob.data.subarray(at, at + 777_777));
      res.end();
    });
    const port = await freePort();
    await new Promise<void>((resolve) => storage.listen(port, "127.0.0.1", resolve));
    try {
      proxy.rule = (req) => (isBlobGet(req) ? { respond: { status: 307, headers: { location: `http://127.0.0.1:${port}/store/${blob.digest}?sig=1` } } } : undefined);
      const svc = ns("redirected");
      const progress = await fetchAll(svc, request({ registry: { plainHttp: true, insecure: false, credentials: { username: "u", password: "p" } } }));
      assert.equal(progress.at(-1)?.committed, true);
      assert.equal(Number((await blobInfo(svc.content, blob.digest, callOptions(svc)))?.size), blob.size);
      assert.deepEqual(seen, [{}], "storage was asked once, without the registry's credentials");
    } finally {
      storage.closeAllConnections();
      await new Promise((resolve) => storage.close(resolve));
    }
  });

  test("a transient failure keeps the ingest: the next call asks only for the missing bytes", async () => {
    let first = true;
    proxy.rule = (req) => {
      if (!isBlobGet(req)) return undefined;
      if (first) {
        first = false;
        return { cutAfter: 1024 * 1024 };
      }
      return { respond: { status: 503, body: "busy" } };
    };
    const svc = ns("kept");
    await assert.rejects(fetchAll(svc, request()), rejectsWith(Status.UNAVAILABLE, /503/));
    const [ingest] = await ingestsOf(svc);
    assert.equal(ingest?.ref, ingestRef(blob));
    assert.ok(ingest.offset > 0 && ingest.offset <= 1024 * 1024, `the ingest holds ${ingest.offset} bytes`);

    proxy.rule = undefined;
    proxy.log.length = 0;
    const progress = await fetchAll(svc, request());
    assert.equal(progress.at(-1)?.committed, true);
    assert.deepEqual(blobGets().map((r) => r.range), [`bytes=${ingest.offset}-`]);
    assert.equal(Number((await blobInfo(svc.content, blob.digest, callOptions(svc)))?.size), blob.size);
    assert.deepEqual(await ingestsOf(svc), []);
  });

  test("a cancelled call stops the download and keeps the ingest for a later call", async () => {
    let stalled = false;
    proxy.rule = (req) => (isBlobGet(req) ? { stallAfter: 1024 * 1024, onStall: () => (stalled = true) } : undefined);
    const svc = ns("cancelled");
    const abort = new AbortController();
    const call = fetchAll(svc, request(), abort.signal);
    await waitUntil("the download stalled", () => stalled);
    abort.abort();
    await assert.rejects(call);
    // The content process lets go of the ref once it sees the cancellation.
    await eventually("the ingest holds what came", async () => ((await ingestsOf(svc)).some((i) => i.offset > 0) ? true : undefined));
    assert.equal(await blobInfo(svc.content, blob.digest, callOptions(svc)), undefined);
    proxy.rule = undefined;
    // Until the cancelled session has let go of the ref, a call finds it locked (UNAVAILABLE,
    // as containerd answers) and its caller tries again.
    const progress = await eventually("the ref unlocked and the blob fetched", async () => {
      try {
        return await fetchAll(svc, request());
      } catch (err) {
        if (/UNAVAILABLE: ref \S+ locked since/.test((err as Error).message)) return undefined;
        throw err;
      }
    });
    assert.equal(progress.at(-1)?.committed, true);
    assert.match(blobGets().at(-1)?.range ?? "", /^bytes=[1-9]\d*-$/);
  });

  test("wrong bytes fail the digest check: nothing is committed and the ingest is gone", async () => {
    proxy.rule = (req) => (isBlobGet(req) ? { rewrite: (body) => Buffer.from(body).fill(7, 0, 10) } : undefined);
    const svc = ns("wrong");
    await assert.rejects(fetchAll(svc, request()), rejectsWith(Status.FAILED_PRECONDITION, new RegExp(`blob ${blob.digest} from ${proxy.host}/${repo}: unexpected commit digest sha256:[0-9a-f]{64}, expected ${blob.digest}; nothing was committed`)));
    await assertNothingLeft(svc);
  });

  test("an ingest recorded with another size fails the fetch and is removed; the next fetch starts afresh", async () => {
    const svc = ns("other-size");
    await leaveIngest(svc, Buffer.alloc(1000), blob.size + 1);
    await assert.rejects(fetchAll(svc, request()), rejectsWith(Status.FAILED_PRECONDITION, /provided total differs from status/));
    await assertNothingLeft(svc);
    assert.equal(blobGets().length, 0, "nothing was asked of the registry");
    const progress = await fetchAll(svc, request());
    assert.equal(progress.at(-1)?.committed, true);
    assert.deepEqual(blobGets().map((r) => r.range), [undefined]);
  });

  test("the caller's credentials go to the registry only, never to its mirror, even when the mirror asks for them", async () => {
    mirrorAsks = true;
    const svc = ns("mirrored");
    const progress = await fetchAll(svc, request({ registry: { plainHttp: true, insecure: false, credentials: { username: "alice", password: "secret" } } }));
    assert.equal(progress.at(-1)?.committed, true);
    assert.ok(mirrorLog.some((r) => r.url.endsWith(`/blobs/${blob.digest}`)), "the mirror was asked first");
    assert.deepEqual(mirrorLog.filter((r) => r.authorization), [], "no credentials went to the mirror");
    assert.equal(blobGets().length, 1, "the registry served the blob");
  });

  test("a 4xx fails with the registry's status and leaves nothing", async () => {
    proxy.rule = (req) => (isBlobGet(req) ? { respond: { status: 404, headers: { "content-type": "application/json" }, body: JSON.stringify({ errors: [{ code: "BLOB_UNKNOWN", message: "blob unknown to registry" }] }) } } : undefined);
    const svc = ns("missing");
    await assert.rejects(fetchAll(svc, request()), rejectsWith(Status.NOT_FOUND, /404.*BLOB_UNKNOWN/));
    await assertNothingLeft(svc);
  });

  test("bad requests fail with a message naming the problem and leave nothing", async () => {
    const svc = ns("bad");
    await assert.rejects(fetchAll(svc, request({ digest: "sha256:nothex" })), rejectsWith(Status.INVALID_ARGUMENT, /digest/));
    await assert.rejects(fetchAll(svc, request({ size: -1n })), rejectsWith(Status.INVALID_ARGUMENT, /size -1 is out of range/));
    await assert.rejects(fetchAll(svc, request({ ingestRef: "" })), rejectsWith(Status.INVALID_ARGUMENT, /ingest_ref is empty/));
    await assert.rejects(fetchAll(svc, request({ ref: "Not A/Reference" })), rejectsWith(Status.INVALID_ARGUMENT, /reference|invalid/i));
    await assert.rejects(fetchAll(svc, request({ size: BigInt(blob.size - 1) })), rejectsWith(Status.FAILED_PRECONDITION, /more than the \d+ bytes its descriptor names; nothing was committed/));
    await assert.rejects(
      (async () => {
        for await (const _ of fetcher().fetch(request(), {})) void _;
      })(),
      rejectsWith(Status.FAILED_PRECONDITION, /namespace is required/),
    );
    await assertNothingLeft(svc);
    assert.equal(blobGets().length, 1, "only the short-size request reached the registry");
  });
});
